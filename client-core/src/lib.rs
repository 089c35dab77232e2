//! The Nym client engine, sans-IO.
//!
//! Nothing here opens a socket, spawns a task, reads a clock or sleeps: time
//! comes in as an argument (`now`, a [`std::time::Duration`] since any fixed
//! origin the driver picks) and randomness from a seedable rng. The native
//! (tokio) and wasm (browser) shims feed bytes and timer expiries in and
//! carry out what [`Client`] asks for.

pub mod ack;
pub mod address;
pub mod app_api;
pub mod client;
pub mod driver;
pub mod error;
pub mod fragment;
pub mod keys;
pub mod payload;
pub mod received_store;
pub mod reply;
pub mod topology;
pub mod wire;

pub use address::Recipient;
pub use error::{Error, Result};

/// The version this engine speaks; the directory's nodes must match major.minor.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub use client::{Client, ClientConfig, ClientEvent, ReceivedMessage};
