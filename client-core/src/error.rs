//! One error type for everything the engine can refuse.
//!
//! What the shared formats refuse (an address, a key, a topology, a route,
//! a packet, a frame, a handshake) is a [`nym_wire::Error`], wrapped whole in
//! [`Error::Wire`] with its own message; the engine reuses those kinds for
//! its own refusals of the same sort (no route yet, a malformed payload).
//! The other variants are what only the engine decides.

use thiserror::Error;

/// What the engine refused, and why; its text is what applications are shown.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// A refusal of the shared formats: a bad address, key, topology,
    /// packet or frame, no route, a failed handshake. Shown as it is.
    #[error(transparent)]
    Wire(#[from] nym_wire::Error),
    /// sphinx-packet could not build or open a packet (its text).
    #[error("sphinx: {0}")]
    Sphinx(String),
    /// A message (or its reply SURBs) is over the configured limit.
    #[error("message too large: {size} bytes (limit {limit})")]
    MessageTooLarge {
        /// What was asked for.
        size: usize,
        /// The most that is accepted.
        limit: usize,
    },
    /// A packet was to be built while no gateway session is up.
    #[error("not connected to the gateway")]
    NotConnected,
    /// A reply names a sender tag this client never received (base58 tag).
    #[error("unknown sender tag: {0}")]
    UnknownSenderTag(String),
    /// A reply's sender tag is known, but every SURB for it is spent or
    /// retired (the tag, and why when it is retirement).
    #[error("no reply SURBs left for sender tag {0}")]
    NoSurbsLeft(String),
}

/// The engine's results.
pub type Result<T> = std::result::Result<T, Error>;

impl From<sphinx_packet::Error> for Error {
    fn from(e: sphinx_packet::Error) -> Self {
        Error::Sphinx(e.to_string())
    }
}
