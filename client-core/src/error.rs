//! One error type for everything the engine can refuse.
//!
//! The shared formats (`nym_wire`) have their own error; each of its variants
//! becomes the variant of the same name here, with the same text, so `?`
//! works and callers still match on `nym_client_core::Error`.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Error {
    #[error("invalid address: {0}")]
    Address(String),
    #[error("invalid key: {0}")]
    Key(String),
    #[error("invalid topology: {0}")]
    Topology(String),
    #[error("no route: {0}")]
    NoRoute(String),
    #[error("sphinx: {0}")]
    Sphinx(String),
    #[error("malformed packet: {0}")]
    MalformedPacket(String),
    #[error("malformed frame: {0}")]
    MalformedFrame(String),
    #[error("handshake failed: {0}")]
    Handshake(String),
    #[error("message too large: {size} bytes (limit {limit})")]
    MessageTooLarge { size: usize, limit: usize },
    #[error("not connected to the gateway")]
    NotConnected,
    #[error("unknown sender tag: {0}")]
    UnknownSenderTag(String),
    #[error("no reply SURBs left for sender tag {0}")]
    NoSurbsLeft(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl From<sphinx_packet::Error> for Error {
    fn from(e: sphinx_packet::Error) -> Self {
        Error::Sphinx(e.to_string())
    }
}

impl From<nym_wire::Error> for Error {
    fn from(e: nym_wire::Error) -> Self {
        match e {
            nym_wire::Error::Address(m) => Error::Address(m),
            nym_wire::Error::Key(m) => Error::Key(m),
            nym_wire::Error::Topology(m) => Error::Topology(m),
            nym_wire::Error::NoRoute(m) => Error::NoRoute(m),
            nym_wire::Error::MalformedPacket(m) => Error::MalformedPacket(m),
            nym_wire::Error::MalformedFrame(m) => Error::MalformedFrame(m),
            nym_wire::Error::Handshake(m) => Error::Handshake(m),
        }
    }
}
