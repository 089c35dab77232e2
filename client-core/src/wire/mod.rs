//! Wire formats shared by the client and the servers, defined once in the
//! `nym-wire` crate and re-exported here under their old paths.
//!
//! - [`mix_frame`]: Sphinx packets between nodes over TCP (flag byte, key
//!   epoch, packet).
//! - [`epoch`]: key epochs: which of the nodes' Sphinx keys a packet uses.
//! - [`gateway`]: the client <-> gateway websocket protocol: an authenticated
//!   key exchange, then encrypted request/response frames.

pub use nym_wire::{epoch, gateway, mix_frame};
