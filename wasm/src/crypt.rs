//! Stored records encrypted with a passphrase, as the browser client offers
//! with `{ passphrase }`: a 256-bit key from Argon2id (salt and parameters
//! kept, in clear, in the store's `crypt` record), every record sealed with
//! ChaCha20-Poly1305 under a fresh random nonce, its name and its store
//! bound in as associated data (so records can't be swapped between names
//! or identities). The `crypt` record also holds a sealed check value, so a
//! wrong passphrase is told apart from damaged data.
//!
//! Plain Rust, no browser: its tests run natively.

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use serde::{Deserialize, Serialize};

/// Argon2id memory cost (KiB), iterations and lanes: OWASP's minimum for
/// Argon2id (19 MiB, 2 passes, 1 lane).
pub const KDF_MEMORY_KIB: u32 = 19 * 1024;
pub const KDF_ITERATIONS: u32 = 2;
pub const KDF_LANES: u32 = 1;
pub const SALT_LEN: usize = 16;
pub const NONCE_LEN: usize = 12;
const CHECK_PLAINTEXT: &[u8] = b"nym-client-wasm passphrase check";
const CHECK_NAME: &str = "crypt-check";

/// The `crypt` record: how the key was derived, and the sealed check value.
#[derive(Serialize, Deserialize)]
struct Header {
    kdf: String,
    memory_kib: u32,
    iterations: u32,
    lanes: u32,
    salt: Vec<u8>,
    check: Vec<u8>,
}

/// Seals and opens the records of one store (`scope` names it).
pub struct Sealer {
    cipher: Option<ChaCha20Poly1305>,
    scope: String,
}

#[derive(Debug, PartialEq, Eq)]
pub enum OpenError {
    /// The passphrase does not open the store.
    WrongPassphrase,
    /// The record or the header is damaged, or not what this version writes.
    Damaged(String),
}

fn derive_key(passphrase: &str, salt: &[u8], memory_kib: u32, iterations: u32, lanes: u32) -> Result<ChaCha20Poly1305, String> {
    let params = Params::new(memory_kib, iterations, lanes, Some(32)).map_err(|e| format!("Argon2id parameters: {e}"))?;
    let mut key = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase.as_bytes(), salt, &mut key)
        .map_err(|e| format!("Argon2id: {e}"))?;
    let cipher = ChaCha20Poly1305::new(Key::from_slice(&key));
    key.fill(0);
    Ok(cipher)
}

impl Sealer {
    /// Records stored as they are.
    pub fn plain(scope: &str) -> Self {
        Sealer { cipher: None, scope: scope.to_string() }
    }

    /// A new key for `passphrase`; returns the sealer and the `crypt` record to store.
    pub fn create(passphrase: &str, scope: &str, salt: [u8; SALT_LEN], nonce: [u8; NONCE_LEN]) -> Result<(Self, Vec<u8>), String> {
        let cipher = derive_key(passphrase, &salt, KDF_MEMORY_KIB, KDF_ITERATIONS, KDF_LANES)?;
        let sealer = Sealer { cipher: Some(cipher), scope: scope.to_string() };
        let check = sealer.seal(CHECK_NAME, CHECK_PLAINTEXT, nonce)?;
        let header = Header {
            kdf: "argon2id".into(),
            memory_kib: KDF_MEMORY_KIB,
            iterations: KDF_ITERATIONS,
            lanes: KDF_LANES,
            salt: salt.to_vec(),
            check,
        };
        let bytes = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
        Ok((sealer, bytes))
    }

    /// The key of a store whose `crypt` record is `header`, if `passphrase` is right.
    pub fn unlock(passphrase: &str, scope: &str, header: &[u8]) -> Result<Self, OpenError> {
        let header: Header = serde_json::from_slice(header).map_err(|e| OpenError::Damaged(format!("its crypt record: {e}")))?;
        if header.kdf != "argon2id" || header.salt.len() < 8 || header.memory_kib > 1024 * 1024 || header.iterations > 64 || header.lanes > 16 {
            return Err(OpenError::Damaged("its crypt record names parameters this version does not use".into()));
        }
        let cipher = derive_key(passphrase, &header.salt, header.memory_kib, header.iterations, header.lanes).map_err(OpenError::Damaged)?;
        let sealer = Sealer { cipher: Some(cipher), scope: scope.to_string() };
        match sealer.open(CHECK_NAME, &header.check) {
            Ok(check) if check == CHECK_PLAINTEXT => Ok(sealer),
            _ => Err(OpenError::WrongPassphrase),
        }
    }

    pub fn is_encrypted(&self) -> bool {
        self.cipher.is_some()
    }

    fn aad(&self, name: &str) -> Vec<u8> {
        format!("{}/{name}", self.scope).into_bytes()
    }

    /// `nonce || ciphertext` (or `bytes` as they are without a passphrase).
    pub fn seal(&self, name: &str, bytes: &[u8], nonce: [u8; NONCE_LEN]) -> Result<Vec<u8>, String> {
        let Some(cipher) = &self.cipher else { return Ok(bytes.to_vec()) };
        let aad = self.aad(name);
        let sealed = cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: bytes, aad: &aad })
            .map_err(|_| "encryption failed".to_string())?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    pub fn open(&self, name: &str, bytes: &[u8]) -> Result<Vec<u8>, OpenError> {
        let Some(cipher) = &self.cipher else { return Ok(bytes.to_vec()) };
        if bytes.len() < NONCE_LEN + 16 {
            return Err(OpenError::Damaged(format!("record '{name}' is too short to be sealed")));
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let aad = self.aad(name);
        cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad: &aad })
            .map_err(|_| OpenError::Damaged(format!("record '{name}' does not decrypt (damaged, or from another store)")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_records_open_with_the_passphrase_only() {
        let (sealer, header) = Sealer::create("correct horse", "nym-client-wasm/a", [7; SALT_LEN], [1; NONCE_LEN]).unwrap();
        let sealed = sealer.seal("identity", b"-----BEGIN X25519 PRIVATE KEY-----", [2; NONCE_LEN]).unwrap();
        assert!(!sealed.windows(5).any(|w| w == b"BEGIN"), "the plaintext shows through");
        let again = Sealer::unlock("correct horse", "nym-client-wasm/a", &header).unwrap();
        assert_eq!(again.open("identity", &sealed).unwrap(), b"-----BEGIN X25519 PRIVATE KEY-----");
        assert_eq!(Sealer::unlock("wrong", "nym-client-wasm/a", &header).err(), Some(OpenError::WrongPassphrase));
    }

    #[test]
    fn records_are_bound_to_their_name_and_store() {
        let (sealer, header) = Sealer::create("pw", "nym-client-wasm/a", [7; SALT_LEN], [1; NONCE_LEN]).unwrap();
        let sealed = sealer.seal("identity", b"secret", [3; NONCE_LEN]).unwrap();
        assert!(matches!(sealer.open("replies", &sealed), Err(OpenError::Damaged(_))));
        let other = Sealer::unlock("pw", "nym-client-wasm/b", &header);
        // The check value is bound to its store too: another store's header does not unlock.
        assert_eq!(other.err(), Some(OpenError::WrongPassphrase));
        let mut flipped = sealed.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(matches!(sealer.open("identity", &flipped), Err(OpenError::Damaged(_))));
        assert!(matches!(sealer.open("identity", &sealed[..10]), Err(OpenError::Damaged(_))));
    }

    #[test]
    fn damaged_headers_are_refused_not_trusted() {
        assert!(matches!(Sealer::unlock("pw", "s", b"not json"), Err(OpenError::Damaged(_))));
        let h = br#"{"kdf":"argon2id","memory_kib":4294967295,"iterations":1,"lanes":1,"salt":[1,2,3,4,5,6,7,8],"check":[]}"#;
        assert!(matches!(Sealer::unlock("pw", "s", h), Err(OpenError::Damaged(_))));
    }

    #[test]
    fn without_a_passphrase_records_are_stored_as_they_are() {
        let sealer = Sealer::plain("s");
        assert!(!sealer.is_encrypted());
        assert_eq!(sealer.seal("x", b"abc", [0; NONCE_LEN]).unwrap(), b"abc");
        assert_eq!(sealer.open("x", b"abc").unwrap(), b"abc");
    }
}
