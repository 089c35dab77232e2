//! A client's address: `base58(client key)@base58(gateway identity key)`.
//!
//! The client key is the client's x25519 public key: it is both the Sphinx
//! destination its gateway delivers to and the key fragments are encrypted to
//! end to end. The gateway key is the gateway's ed25519 identity. Its 64-byte
//! binary form (32 + 32, no separator) is what the websocket's binary frame
//! starts with.
//!
//! The key encoding itself (base58, 32 bytes) is `nym_wire::address`.
//! `Recipient` stays in the client: the servers never parse one, and its
//! `FromStr` error is the client's [`Error`].

use crate::error::{Error, Result};
use std::fmt;
use std::str::FromStr;

// Key text is shared with the servers (topology JSON names keys the same way).
pub(crate) use nym_wire::address::{decode_key, encode_key, KEY_LENGTH};

/// Length of an address's binary form: the client key, then the gateway key.
pub const ADDRESS_BYTES: usize = 2 * KEY_LENGTH;

/// Where a message goes: a client, behind the gateway that holds its mail.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Recipient {
    /// The client's x25519 key: its gateway delivers to it, payloads are sealed to it.
    pub client_key: [u8; KEY_LENGTH],
    /// The gateway's ed25519 identity key.
    pub gateway_key: [u8; KEY_LENGTH],
}

impl Recipient {
    /// The address of `client_key` behind gateway `gateway_key`.
    pub fn new(client_key: [u8; KEY_LENGTH], gateway_key: [u8; KEY_LENGTH]) -> Self {
        Recipient { client_key, gateway_key }
    }

    /// The 64-byte binary form (client key, then gateway key) that starts a
    /// websocket binary frame.
    pub fn to_bytes(&self) -> [u8; ADDRESS_BYTES] {
        let mut out = [0u8; ADDRESS_BYTES];
        out[..KEY_LENGTH].copy_from_slice(&self.client_key);
        out[KEY_LENGTH..].copy_from_slice(&self.gateway_key);
        out
    }

    /// Reads the 64-byte binary form; `bytes` must be exactly 64 bytes long.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != ADDRESS_BYTES {
            return Err(nym_wire::Error::Address(format!(
                "binary address must be {ADDRESS_BYTES} bytes, got {}",
                bytes.len()
            )).into());
        }
        let mut client_key = [0u8; KEY_LENGTH];
        let mut gateway_key = [0u8; KEY_LENGTH];
        client_key.copy_from_slice(&bytes[..KEY_LENGTH]);
        gateway_key.copy_from_slice(&bytes[KEY_LENGTH..]);
        Ok(Recipient { client_key, gateway_key })
    }
}

impl FromStr for Recipient {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let (client, gateway) = s.split_once('@').ok_or_else(|| {
            nym_wire::Error::Address("missing '@' between client key and gateway key".into())
        })?;
        if gateway.contains('@') {
            return Err(nym_wire::Error::Address("more than one '@'".into()).into());
        }
        Ok(Recipient {
            client_key: decode_key(client, "client key")?,
            gateway_key: decode_key(gateway, "gateway key")?,
        })
    }
}

impl fmt::Display for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", encode_key(&self.client_key), encode_key(&self.gateway_key))
    }
}

impl fmt::Debug for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Recipient({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn text_and_binary_forms_round_trip(c in any::<[u8; 32]>(), g in any::<[u8; 32]>()) {
            let r = Recipient::new(c, g);
            let text = r.to_string();
            prop_assert_eq!(text.parse::<Recipient>().unwrap(), r);
            prop_assert_eq!(Recipient::from_bytes(&r.to_bytes()).unwrap(), r);
        }

        #[test]
        fn arbitrary_strings_never_panic(s in ".*") {
            let _ = s.parse::<Recipient>();
        }
    }

    fn err(s: &str) -> String {
        s.parse::<Recipient>().unwrap_err().to_string()
    }

    #[test]
    fn bad_addresses_say_what_is_wrong() {
        let k = encode_key(&[7u8; 32]);
        assert!(err(&format!("{k}{k}")).contains("missing '@'"));
        assert!(err(&format!("{k}@0OIl")).contains("gateway key is not valid base58"));
        assert!(err(&format!("0OIl@{k}")).contains("client key is not valid base58"));
        let short = encode_key(&[7u8; 31]);
        assert!(err(&format!("{short}@{k}")).contains("client key must decode to 32 bytes, got 31"));
        assert!(err(&format!("{k}@{short}")).contains("gateway key must decode to 32 bytes, got 31"));
        assert!(err(&format!("@{k}")).contains("client key is empty"));
        assert!(err(&format!("{k}@{k}@{k}")).contains("more than one '@'"));
        assert!(Recipient::from_bytes(&[0u8; 63]).unwrap_err().to_string().contains("64 bytes, got 63"));
    }
}
