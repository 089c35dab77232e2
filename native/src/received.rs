//! The native client's store of received messages: an append-only log
//! (`data/received_messages.log`, 0600) in the format of
//! [`nym_client_core::received_store`]. A message received while no
//! application is connected is written (and synced) here before the gateway
//! hears that the client has it, so a crash of the client loses nothing;
//! messages handed to an application are recorded too, so a message the
//! gateway delivers again after a restart is recognised.

use anyhow::Result;
use nym_client_core::received_store::ReceivedStore;
use nym_client_core::ReceivedMessage;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;

pub struct ReceivedFile {
    store: ReceivedStore,
    path: PathBuf,
    file: File,
    /// Kept messages written since the last sync.
    unsynced: bool,
}

impl ReceivedFile {
    /// Opens (or creates) the log; what can't be read in it is reported and skipped.
    pub fn open(path: PathBuf) -> Result<Self> {
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
        };
        let (store, report) = ReceivedStore::load(&bytes);
        if report.torn_bytes > 0 {
            tracing::info!(
                "{}: ignored {} bytes of an unfinished record (the gateway delivers that message again)",
                path.display(),
                report.torn_bytes
            );
        }
        if report.bad_records > 0 {
            tracing::warn!("{}: skipped {} damaged records", path.display(), report.bad_records);
        }
        let file = crate::config::open_secret_append(&path)?;
        let mut received = ReceivedFile { store, path, file, unsynced: false };
        if report.torn_bytes > 0 || report.bad_records > 0 {
            received.rewrite();
        }
        Ok(received)
    }

    pub fn store(&self) -> &ReceivedStore {
        &self.store
    }

    fn append(&mut self, bytes: &[u8]) {
        if let Err(e) = self.file.write_all(bytes) {
            tracing::warn!("cannot write {}: {e}", self.path.display());
        }
    }

    /// Keeps a message for a later application.
    pub fn keep(&mut self, message: ReceivedMessage) {
        let bytes = self.store.keep(message);
        self.append(&bytes);
        self.unsynced = true;
    }

    /// Records that an application has this message.
    pub fn handed_over(&mut self, sets: &[u32]) {
        let bytes = self.store.handed_over(sets);
        self.append(&bytes);
    }

    /// Every kept message, for an application that connected.
    pub fn take_kept(&mut self) -> Vec<ReceivedMessage> {
        let (kept, bytes) = self.store.take_kept();
        self.append(&bytes);
        kept
    }

    /// Over either limit, drops the oldest kept messages (down to nine
    /// tenths of it) and rewrites the log once.
    pub fn trim(&mut self, max_messages: usize, max_bytes: usize) {
        let dropped = self.store.trim(max_messages, max_bytes);
        if !dropped.is_empty() {
            let bytes: usize = dropped.iter().map(|m| m.message.len()).sum();
            tracing::warn!(
                "no application connected: dropped the {} oldest kept messages ({bytes} bytes) to stay within \
                 stored_messages_limit ({max_messages}) and {max_bytes} bytes",
                dropped.len()
            );
            self.rewrite();
        }
    }

    /// Makes what was written safe on disk (before the gateway is told),
    /// and compacts the log when it has grown past what it holds.
    pub fn sync(&mut self) {
        if self.store.wants_compaction() {
            self.rewrite();
        } else if self.unsynced {
            if let Err(e) = self.file.sync_data() {
                tracing::warn!("cannot sync {}: {e}", self.path.display());
            }
        }
        self.unsynced = false;
    }

    /// Replaces the log with a snapshot, via a temporary file.
    fn rewrite(&mut self) {
        let tmp = self.path.with_extension("log.tmp");
        let snapshot = self.store.snapshot();
        let written = crate::config::write_file(&tmp, &snapshot, true)
            .and_then(|()| File::open(&tmp).and_then(|f| f.sync_all()).map_err(Into::into))
            .and_then(|()| std::fs::rename(&tmp, &self.path).map_err(Into::into))
            .and_then(|()| crate::config::open_secret_append(&self.path));
        match written {
            Ok(file) => self.file = file,
            Err(e) => tracing::warn!("cannot rewrite {}: {e:#}", self.path.display()),
        }
    }
}
