//! Node keys on disk: PEM files (nym-wire's tags), private halves 0600.

use anyhow::{anyhow, bail, Context, Result};
use ed25519_dalek::SigningKey;
use nym_wire::address::{decode_key, encode_key};
use nym_wire::keys::{decode_pem32, encode_pem, ED25519_PRIVATE_TAG, ED25519_PUBLIC_TAG};
use std::fs;
use std::io::Write;
use std::path::Path;

pub const IDENTITY_PRIVATE_FILE: &str = "identity_private.pem";
pub const IDENTITY_PUBLIC_FILE: &str = "identity_public.pem";
pub const DIRECTORY_PRIVATE_FILE: &str = "directory_private.pem";
pub const DIRECTORY_PUBLIC_FILE: &str = "directory_public.pem";
/// Where a node keeps the directory key it trusted on first use.
pub const LEARNED_DIRECTORY_KEY_FILE: &str = "directory_key.txt";

pub(crate) fn ensure_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create data dir {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    }
    Ok(())
}

fn write_file(path: &Path, contents: &str, private: bool) -> Result<()> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(if private { 0o600 } else { 0o644 });
    }
    let mut f = opts.open(path).with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

fn read_pem(path: &Path, tag: &str) -> Result<[u8; 32]> {
    let text = fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    decode_pem32(&text, tag).with_context(|| format!("bad key file {}", path.display()))
}

fn random32() -> [u8; 32] {
    let mut b = [0u8; 32];
    rand::fill(&mut b);
    b
}

/// A node's (mixnode's or gateway's) long-term ed25519 identity key: loaded,
/// or generated and saved on first start. It signs the node's descriptor;
/// for a gateway it is also the gateway part of client addresses.
pub fn load_or_create_identity_key(dir: &Path) -> Result<SigningKey> {
    load_or_create_ed25519(dir, IDENTITY_PRIVATE_FILE, IDENTITY_PUBLIC_FILE)
}

/// The directory's ed25519 key (it signs the topology document): loaded, or
/// generated and saved on first start.
pub fn load_or_create_directory_key(dir: &Path) -> Result<SigningKey> {
    load_or_create_ed25519(dir, DIRECTORY_PRIVATE_FILE, DIRECTORY_PUBLIC_FILE)
}

fn load_or_create_ed25519(dir: &Path, private_name: &str, public_name: &str) -> Result<SigningKey> {
    ensure_dir(dir)?;
    let private = dir.join(private_name);
    if private.exists() {
        let key = SigningKey::from_bytes(&read_pem(&private, ED25519_PRIVATE_TAG)?);
        let public_path = dir.join(public_name);
        if public_path.exists() && read_pem(&public_path, ED25519_PUBLIC_TAG)? != key.verifying_key().to_bytes() {
            bail!("{} does not match {}", public_path.display(), private.display());
        }
        return Ok(key);
    }
    let key = SigningKey::from_bytes(&random32());
    write_file(&private, &encode_pem(ED25519_PRIVATE_TAG, &key.to_bytes()), true)?;
    write_file(&dir.join(public_name), &encode_pem(ED25519_PUBLIC_TAG, key.verifying_key().as_bytes()), false)?;
    Ok(key)
}

/// The directory key a node learned on first use (`directory_key.txt`,
/// base58), if it has one.
pub fn read_learned_directory_key(dir: &Path) -> Result<Option<[u8; 32]>> {
    let path = dir.join(LEARNED_DIRECTORY_KEY_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let text = fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let key = parse_ed25519_b58(text.trim()).with_context(|| format!("bad directory key in {}", path.display()))?;
    Ok(Some(key))
}

/// Remembers the directory key learned on first use.
pub fn write_learned_directory_key(dir: &Path, key: &[u8; 32]) -> Result<()> {
    ensure_dir(dir)?;
    write_file(&dir.join(LEARNED_DIRECTORY_KEY_FILE), &format!("{}\n", encode_key(key)), false)
}

/// One base58 ed25519 public key (a node identity, the directory's key).
pub fn parse_ed25519_b58(text: &str) -> Result<[u8; 32]> {
    let bytes = decode_key(text, "key")?;
    ed25519_dalek::VerifyingKey::from_bytes(&bytes).map_err(|_| anyhow!("'{text}' is not an ed25519 public key"))?;
    Ok(bytes)
}
