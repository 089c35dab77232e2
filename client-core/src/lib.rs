//! The Nym client engine, sans-IO.
//!
//! Nothing here opens a socket, spawns a task, reads a clock or sleeps: time
//! comes in as an argument (`now`, a [`std::time::Duration`] since any fixed
//! origin the driver picks) and randomness from a seedable rng. The native
//! (tokio) and wasm (browser) shims feed bytes and timer expiries in and
//! carry out what [`Client`] asks for.
//!
//! What the servers share with the client (mix frames, the gateway protocol,
//! SURB-ACK sizes, topology JSON, key encodings and PEM files) is the
//! `nym-wire` crate; it is re-exported here under its old paths
//! ([`keys`], [`topology`], [`wire`], and in [`address`] and [`ack`]).

pub mod ack;
pub mod address;
pub mod app_api;
pub mod client;
pub mod driver;
pub mod error;
pub mod fragment;
pub mod payload;
pub mod received_store;
pub mod reply;
pub mod wire;

pub use nym_wire::{keys, topology};

pub use address::Recipient;
pub use error::{Error, Result};

/// The version this engine speaks; the directory's nodes must match major.minor.
pub use nym_wire::VERSION;
pub use client::{Client, ClientConfig, ClientEvent, ReceivedMessage};
