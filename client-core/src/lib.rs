//! The Nym client engine, sans-IO.
//!
//! Nothing here opens a socket, spawns a task, reads a clock or sleeps: time
//! comes in as an argument (`now`, a [`std::time::Duration`] since any fixed
//! origin the shim picks) and randomness from a seedable rng. The native
//! (tokio) and wasm (browser) shims feed bytes and timer expiries in and
//! carry out what the [`Driver`] asks for.
//!
//! ## Layers, bottom up
//! | layer | modules | what it is |
//! |---|---|---|
//! | shared formats | [`wire`], [`topology`], [`keys`] (`nym-wire`, re-exported) | mix frames and sizes, the gateway protocol, the gateway's final-hop split, topology JSON and routes, key files: what the nodes speak too |
//! | packets | [`packet`] | a Sphinx packet along a route with exponential delays |
//! | acks, payloads, fragments, replies | [`ack`], [`payload`], [`fragment`], [`reply`] | the SURB-ACK every packet carries, end-to-end sealing, splitting and reassembly, single-use reply blocks and the reply store |
//! | the client | [`client`] | [`Client`]: one gateway session's state machine (schedule, send queue, retransmission, replies, receiving) |
//! | the driver | [`driver`] | [`Driver`]: connection lifecycle, topology refresh, stores, deliveries, requests: what both shims run |
//! | applications | [`app_api`], [`received_store`] | the local websocket protocol's parsing and formatting; the received-message log |
//!
//! A shim needs only what the crate root re-exports; the lower modules are
//! public for the fuzz targets, the simulations and the benchmarks.

pub mod ack;
pub mod address;
pub mod app_api;
pub mod client;
pub mod driver;
pub mod error;
pub mod fragment;
pub mod packet;
pub mod payload;
pub mod received_store;
pub mod reply;
pub mod wire;

pub use nym_wire::{keys, signed, topology};

pub use address::Recipient;
pub use app_api::{AppRequest, AppResponse};
pub use client::{Client, ClientConfig, ClientEvent, ClientStats, ReceivedMessage};
pub use driver::{
    defaults, AppId, AttachError, ConnectionId, DeliverTo, Disconnect, Driver, DriverConfig, DriverEvent, Output, RestoreReport,
    Restored, StartError, StoreName, StoreWrite,
};
pub use error::{Error, Result};
pub use reply::SenderTag;

/// The version this engine speaks; the directory's nodes must match major.minor.
pub use nym_wire::VERSION;
/// The one check of a topology document (see [`nym_wire::signed`]); the
/// driver runs it on every refresh, the shims on the first fetch.
pub use nym_wire::signed::{verify_topology, VerifiedTopology};
