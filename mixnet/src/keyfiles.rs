//! Node keys on disk: PEM files (nym-wire's tags), private halves 0600.

use anyhow::{bail, Context, Result};
use ed25519_dalek::SigningKey;
use nym_wire::keys::{
    decode_pem32, encode_pem, ED25519_PRIVATE_TAG, ED25519_PUBLIC_TAG, X25519_PRIVATE_TAG, X25519_PUBLIC_TAG,
};
use std::fs;
use std::io::Write;
use std::path::Path;
use x25519_dalek::{PublicKey, StaticSecret};

pub const SPHINX_PRIVATE_FILE: &str = "sphinx_private.pem";
pub const SPHINX_PUBLIC_FILE: &str = "sphinx_public.pem";
pub const IDENTITY_PRIVATE_FILE: &str = "identity_private.pem";
pub const IDENTITY_PUBLIC_FILE: &str = "identity_public.pem";

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

/// The node's x25519 Sphinx key: loaded from `dir`, or generated and saved on first start.
pub fn load_or_create_sphinx_key(dir: &Path) -> Result<StaticSecret> {
    ensure_dir(dir)?;
    let private = dir.join(SPHINX_PRIVATE_FILE);
    if private.exists() {
        let secret = StaticSecret::from(read_pem(&private, X25519_PRIVATE_TAG)?);
        let public_path = dir.join(SPHINX_PUBLIC_FILE);
        if public_path.exists() && read_pem(&public_path, X25519_PUBLIC_TAG)? != *PublicKey::from(&secret).as_bytes() {
            bail!("{} does not match {}", public_path.display(), private.display());
        }
        return Ok(secret);
    }
    let secret = StaticSecret::from(random32());
    write_file(&private, &encode_pem(X25519_PRIVATE_TAG, secret.as_bytes()), true)?;
    write_file(&dir.join(SPHINX_PUBLIC_FILE), &encode_pem(X25519_PUBLIC_TAG, PublicKey::from(&secret).as_bytes()), false)?;
    Ok(secret)
}

/// The gateway's ed25519 identity key: loaded, or generated and saved on first start.
pub fn load_or_create_identity_key(dir: &Path) -> Result<SigningKey> {
    ensure_dir(dir)?;
    let private = dir.join(IDENTITY_PRIVATE_FILE);
    if private.exists() {
        let key = SigningKey::from_bytes(&read_pem(&private, ED25519_PRIVATE_TAG)?);
        let public_path = dir.join(IDENTITY_PUBLIC_FILE);
        if public_path.exists() && read_pem(&public_path, ED25519_PUBLIC_TAG)? != key.verifying_key().to_bytes() {
            bail!("{} does not match {}", public_path.display(), private.display());
        }
        return Ok(key);
    }
    let key = SigningKey::from_bytes(&random32());
    write_file(&private, &encode_pem(ED25519_PRIVATE_TAG, &key.to_bytes()), true)?;
    write_file(&dir.join(IDENTITY_PUBLIC_FILE), &encode_pem(ED25519_PUBLIC_TAG, key.verifying_key().as_bytes()), false)?;
    Ok(key)
}
