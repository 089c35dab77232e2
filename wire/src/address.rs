//! Public keys as text: base58 of the 32 key bytes.
//!
//! A client's address is `base58(client key)@base58(gateway identity key)`
//! (`nym_client_core::Recipient`), and the directory's topology JSON names
//! every node's keys the same way.

use crate::error::{Error, Result};

/// Bytes of every public key the network names (x25519 and ed25519 alike).
pub const KEY_LENGTH: usize = 32;

/// Decodes one base58 key of exactly 32 bytes; `what` names it in errors.
pub fn decode_key(text: &str, what: &str) -> Result<[u8; KEY_LENGTH]> {
    if text.is_empty() {
        return Err(Error::Address(format!("{what} is empty")));
    }
    let bytes = bs58::decode(text)
        .into_vec()
        .map_err(|e| Error::Address(format!("{what} is not valid base58: {e}")))?;
    <[u8; KEY_LENGTH]>::try_from(bytes.as_slice()).map_err(|_| {
        Error::Address(format!(
            "{what} must decode to {KEY_LENGTH} bytes, got {}",
            bytes.len()
        ))
    })
}

/// A key as text: base58, as addresses and topology JSON write it.
pub fn encode_key(key: &[u8]) -> String {
    bs58::encode(key).into_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn keys_round_trip(k in any::<[u8; 32]>()) {
            prop_assert_eq!(decode_key(&encode_key(&k), "key").unwrap(), k);
        }

        #[test]
        fn arbitrary_strings_never_panic(s in ".*") {
            let _ = decode_key(&s, "key");
        }
    }

    #[test]
    fn bad_keys_say_what_is_wrong() {
        let err = |s: &str| decode_key(s, "gateway key").unwrap_err().to_string();
        assert!(err("0OIl").contains("gateway key is not valid base58"));
        assert!(err(&encode_key(&[7u8; 31])).contains("gateway key must decode to 32 bytes, got 31"));
        assert!(err("").contains("gateway key is empty"));
    }
}
