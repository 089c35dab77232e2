//! The one error type of the shared formats: what a parser, a handshake or
//! route selection can refuse. Messages are the ones the client has always
//! shown; `nym_client_core::Error` wraps it whole (`Error::Wire`), text
//! unchanged.

use thiserror::Error;

/// What the shared formats refuse, each variant with the reason as text.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// A client address or a base58 key in one is not what it must be.
    #[error("invalid address: {0}")]
    Address(String),
    /// A key file or key bytes are not a usable key.
    #[error("invalid key: {0}")]
    Key(String),
    /// A topology document is unreadable, badly signed, stale, or unusable.
    #[error("invalid topology: {0}")]
    Topology(String),
    /// No route can be drawn: a layer or the recipient's gateway is missing,
    /// or has no key for the epoch.
    #[error("no route: {0}")]
    NoRoute(String),
    /// A packet or payload does not parse or does not open.
    #[error("malformed packet: {0}")]
    MalformedPacket(String),
    /// A mix frame, gateway frame or stored file does not parse.
    #[error("malformed frame: {0}")]
    MalformedFrame(String),
    /// The client <-> gateway key exchange failed.
    #[error("handshake failed: {0}")]
    Handshake(String),
}

/// The shared formats' results.
pub type Result<T> = std::result::Result<T, Error>;
