//! Files for the driver's stores: the received-message log
//! (`data/received_messages.log`) and the reply store
//! (`data/reply_store.bin`), both 0600. The driver says what to write
//! ([`StoreWrite`]); this only writes it, durably when asked.

use anyhow::Result;
use nym_client_core::StoreWrite;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct StoreFile {
    path: PathBuf,
    /// Open for appending (the received log); `None` for replace-only stores.
    file: Option<File>,
}

impl StoreFile {
    /// The file's current bytes (empty when it does not exist yet).
    pub fn read(path: &Path) -> Result<Option<Vec<u8>>> {
        match std::fs::read(path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
        }
    }

    /// A store written by appending (kept open).
    pub fn appendable(path: PathBuf) -> Result<Self> {
        let file = crate::config::open_secret_append(&path)?;
        Ok(StoreFile { path, file: Some(file) })
    }

    /// A store only ever replaced whole.
    pub fn replaceable(path: PathBuf) -> Self {
        StoreFile { path, file: None }
    }

    /// Carries out a write; a failure is logged (the store on disk is then
    /// behind, which costs a repeated message after a crash, never a lost one:
    /// the gateway keeps what the client has not acknowledged).
    pub fn write(&mut self, write: StoreWrite) {
        if let Err(e) = self.try_write(write) {
            tracing::warn!("cannot write {}: {e:#}", self.path.display());
        }
    }

    fn try_write(&mut self, write: StoreWrite) -> Result<()> {
        match write {
            StoreWrite::Append { bytes, sync } => {
                let file = match &mut self.file {
                    Some(f) => f,
                    None => self.file.insert(crate::config::open_secret_append(&self.path)?),
                };
                file.write_all(&bytes)?;
                if sync {
                    file.sync_data()?;
                }
                Ok(())
            }
            StoreWrite::Replace(bytes) => self.replace(&bytes),
        }
    }

    /// Replaces the file via a synced temporary, so a crash leaves the old
    /// or the new one, never half of one.
    fn replace(&mut self, bytes: &[u8]) -> Result<()> {
        let tmp = self.path.with_extension("tmp");
        crate::config::write_file(&tmp, bytes, true)?;
        File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        if self.file.is_some() {
            self.file = Some(crate::config::open_secret_append(&self.path)?);
        }
        Ok(())
    }
}
