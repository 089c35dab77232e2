//! Wire formats shared by the client and the servers: defined once, here.
//!
//! - [`mix_frame`]: Sphinx packets between nodes over TCP (flag byte + packet).
//! - [`gateway`]: the client <-> gateway websocket protocol: an authenticated
//!   key exchange, then encrypted request/response frames.

pub mod gateway;
pub mod mix_frame;
