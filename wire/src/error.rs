//! The one error type of the shared formats: what a parser, a handshake or
//! route selection can refuse. Messages are the ones the client has always
//! shown; `nym_client_core::Error` converts each variant to its own variant
//! of the same name and text.

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
    #[error("malformed packet: {0}")]
    MalformedPacket(String),
    #[error("malformed frame: {0}")]
    MalformedFrame(String),
    #[error("handshake failed: {0}")]
    Handshake(String),
}

pub type Result<T> = std::result::Result<T, Error>;
