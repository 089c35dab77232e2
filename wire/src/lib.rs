//! What the Nym client and the Nym servers share, defined once.
//!
//! The client engine (`nym-client-core`, and through it the native and the
//! browser client) and the servers (`nym-mixnet`: directory, mixnodes,
//! gateways) both depend on this crate, and on nothing of each other's:
//!
//! - [`mix_frame`]: Sphinx packets between nodes over TCP (flag byte, key
//!   epoch, packet) and the packet sizes.
//! - [`epoch`]: key epochs: which Sphinx key a packet is built for.
//! - [`gateway`]: the client <-> gateway websocket protocol: an authenticated
//!   key exchange, then encrypted request/response frames.
//! - [`surb_ack`]: the SURB-ACK's size and how the recipient's gateway splits a
//!   final-hop payload into the ack to send on and the content to deliver.
//! - [`topology`]: the directory's topology JSON, its validation, node
//!   addresses inside Sphinx headers, and route selection.
//! - [`signed`]: node descriptors signed by their identity, the directory's
//!   signed topology document, and the one check of both ([`signed::verify_topology`]).
//! - [`vote`]: what directory authorities exchange each round (votes,
//!   signatures over the round's document).
//! - [`address`]: base58 public keys, as in addresses and topology JSON.
//! - [`keys`]: key material and its PEM files.
//!
//! Like the engine it is sans-IO: no sockets, no clock, no target-specific
//! code (it builds for `wasm32-unknown-unknown` as it is); randomness comes
//! from the caller's rng.

#![warn(missing_docs, unreachable_pub)]

pub mod address;
pub mod authority;
pub mod epoch;
pub mod error;
pub mod gateway;
pub mod keys;
pub mod mix_frame;
pub mod signed;
pub mod surb_ack;
pub mod topology;
pub mod vote;

pub use error::{Error, Result};

/// The protocol version the client and the nodes speak; a node's version
/// must match the client's major.minor (see [`topology::versions_compatible`]).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
