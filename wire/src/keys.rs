//! Key material and its PEM form.
//!
//! A client has one x25519 key pair (`private_identity.pem`,
//! `public_identity.pem`): its public half is the client part of its address,
//! the Sphinx destination, the key fragments are encrypted to, and what it
//! proves possession of in the gateway handshake. Nodes keep an x25519
//! Sphinx key pair and an ed25519 identity in PEM files with the tags below.
//! This crate only converts keys to and from text; writing files (with 0600)
//! is the caller's job (the client shims, the servers' key files).

use crate::error::{Error, Result};
use rand::CryptoRng;
use std::fmt;
use x25519_dalek::{PublicKey, StaticSecret};

/// PEM tag of an x25519 private key file (clients, nodes' Sphinx keys).
pub const X25519_PRIVATE_TAG: &str = "X25519 PRIVATE KEY";
/// PEM tag of an x25519 public key file.
pub const X25519_PUBLIC_TAG: &str = "X25519 PUBLIC KEY";
/// PEM tag of an ed25519 private key file (node and directory identities).
pub const ED25519_PRIVATE_TAG: &str = "ED25519 PRIVATE KEY";
/// PEM tag of an ed25519 public key file.
pub const ED25519_PUBLIC_TAG: &str = "ED25519 PUBLIC KEY";

/// `bytes` as a PEM block tagged `tag`.
pub fn encode_pem(tag: &str, bytes: &[u8]) -> String {
    pem::encode(&pem::Pem::new(tag, bytes.to_vec()))
}

/// Parses a PEM block that must carry `tag` and exactly 32 bytes.
pub fn decode_pem32(text: &str, tag: &str) -> Result<[u8; 32]> {
    let block = pem::parse(text).map_err(|e| Error::Key(format!("not a PEM block: {e}")))?;
    if block.tag() != tag {
        return Err(Error::Key(format!(
            "expected a '{tag}' PEM block, found '{}'",
            block.tag()
        )));
    }
    <[u8; 32]>::try_from(block.contents()).map_err(|_| {
        Error::Key(format!(
            "'{tag}' must hold 32 bytes, found {}",
            block.contents().len()
        ))
    })
}

/// A client's x25519 key pair: its address's first half, the key packets
/// are sealed to, and its proof to its gateway.
#[derive(Clone)]
pub struct ClientKeys {
    secret: StaticSecret,
    public: PublicKey,
}

impl ClientKeys {
    /// A fresh key pair from `rng`.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self::from_secret(StaticSecret::random_from_rng(rng))
    }

    /// The pair of `secret`.
    pub fn from_secret(secret: StaticSecret) -> Self {
        let public = PublicKey::from(&secret);
        ClientKeys { secret, public }
    }

    /// The private key.
    pub fn secret(&self) -> &StaticSecret {
        &self.secret
    }

    /// The public key.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// The private key file's text (write it 0600).
    pub fn private_pem(&self) -> String {
        encode_pem(X25519_PRIVATE_TAG, self.secret.as_bytes())
    }

    /// The public key file's text.
    pub fn public_pem(&self) -> String {
        encode_pem(X25519_PUBLIC_TAG, self.public.as_bytes())
    }

    /// Loads a key pair, refusing a public key that does not belong to the private one.
    pub fn from_pem(private_pem: &str, public_pem: &str) -> Result<Self> {
        let keys = Self::from_secret(StaticSecret::from(decode_pem32(private_pem, X25519_PRIVATE_TAG)?));
        let public = decode_pem32(public_pem, X25519_PUBLIC_TAG)?;
        if public != *keys.public.as_bytes() {
            return Err(Error::Key("public key does not match the private key".into()));
        }
        Ok(keys)
    }
}

impl fmt::Debug for ClientKeys {
    // Keys are secrets: never print the private half.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientKeys(public: {})", crate::address::encode_key(self.public.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;

    proptest! {
        #[test]
        fn pem_round_trip(seed in any::<[u8; 32]>()) {
            let mut rng = rand::rngs::StdRng::from_seed(seed);
            let keys = ClientKeys::generate(&mut rng);
            let back = ClientKeys::from_pem(&keys.private_pem(), &keys.public_pem()).unwrap();
            prop_assert_eq!(back.secret().to_bytes(), keys.secret().to_bytes());
            prop_assert_eq!(back.public(), keys.public());
        }
    }

    #[test]
    fn mismatched_or_mislabelled_pem_is_refused() {
        let mut rng = rand::rngs::StdRng::from_seed([1; 32]);
        let a = ClientKeys::generate(&mut rng);
        let b = ClientKeys::generate(&mut rng);
        let e = ClientKeys::from_pem(&a.private_pem(), &b.public_pem()).unwrap_err();
        assert!(e.to_string().contains("does not match"));
        let e = ClientKeys::from_pem(&a.public_pem(), &a.public_pem()).unwrap_err();
        assert!(e.to_string().contains("expected a 'X25519 PRIVATE KEY'"));
        let e = decode_pem32(&encode_pem(X25519_PUBLIC_TAG, &[1, 2, 3]), X25519_PUBLIC_TAG).unwrap_err();
        assert!(e.to_string().contains("found 3"));
        assert!(decode_pem32("garbage", X25519_PUBLIC_TAG).is_err());
        assert!(!format!("{a:?}").contains(&a.private_pem()));
    }
}
