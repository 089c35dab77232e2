//! The Nym client engine, sans-IO.
//!
//! Nothing here opens a socket, spawns a task, reads a clock or sleeps: time
//! comes in as an argument (`now`, a [`std::time::Duration`] since any fixed
//! origin the shim picks) and randomness from a seedable rng. The native
//! (tokio) and wasm (browser) shims feed bytes and timer expiries in and
//! carry out what the [`Driver`] asks for.
//!
//! The crate root is the whole API: the [`Driver`] the shims run and the
//! types it speaks in, the [`Client`] state machine beneath it, the local
//! websocket protocol ([`AppRequest`], [`AppResponse`]), the received-message
//! log ([`ReceivedStore`]), and the few shared formats a caller names
//! ([`ClientKeys`], [`Topology`], [`verify_topology`], [`PacketSize`]; the
//! rest of them is the `nym_wire` crate's). Each item has one path.
//!
//! ## Rooms, bottom up (private modules)
//! | layer | module | what it is |
//! |---|---|---|
//! | packets | `packet` | a Sphinx packet along a route with exponential delays |
//! | acks, payloads, fragments, replies | `ack`, `payload`, `fragment`, `reply` | the SURB-ACK every packet carries, end-to-end sealing, splitting and reassembly, single-use reply blocks and the reply store |
//! | the client | `client` | [`Client`]: one gateway session's state machine (schedule, send queue, retransmission, replies, receiving) |
//! | the driver | `driver` | [`Driver`]: connection lifecycle, topology refresh, stores, deliveries, requests: what both shims run |
//! | applications | `app_api`, `received_store` | the local websocket protocol's parsing and formatting; the received-message log |
//!
//! With the `fuzzing` feature, the module `fuzzing` opens the internals the fuzz
//! targets, the simulations and the benchmarks drive directly, and the test
//! harness they share (a fake gateway, a test network); it is not a stable
//! API.

#![warn(missing_docs, unreachable_pub)]

// Their items are public for `fuzzing` alone; without it they are crate-internal.
mod ack;
mod address;
mod app_api;
mod client;
mod driver;
mod error;
#[cfg_attr(not(feature = "fuzzing"), allow(unreachable_pub))]
mod fragment;
#[cfg_attr(not(feature = "fuzzing"), allow(unreachable_pub))]
mod packet;
#[cfg_attr(not(feature = "fuzzing"), allow(unreachable_pub))]
mod payload;
mod received_store;
#[cfg_attr(not(feature = "fuzzing"), allow(unreachable_pub))]
mod reply;

#[cfg(feature = "fuzzing")]
pub mod fuzzing;

pub use address::{Recipient, ADDRESS_BYTES};
pub use app_api::{
    delivery_frame, parse_binary_request, parse_text_request, received_json, AppRequest, AppResponse, DeliveryFrame,
};
pub use client::{Client, ClientConfig, ClientEvent, ClientStats, ReceivedMessage};
pub use driver::{
    choose_gateway, defaults, verify_first_topology, AppId, AttachError, ConnectionId, DeliverTo, DirectoryStats,
    DirectoryTrust, Disconnect, Driver, DriverConfig, DriverEvent, Output, RestoreReport, Restored, StartError,
    StoreName, StoreWrite,
};
pub use error::{Error, Result};
pub use received_store::{LoadReport, ReceivedStore};
pub use reply::{decode_sender_tag, encode_sender_tag, SenderTag};

/// Base58 keys, as in addresses and configuration files.
pub use nym_wire::address::{decode_key, encode_key};
/// The network's directory authorities and their threshold (what
/// [`DirectoryTrust::Authorities`] pins; the authorities file's format).
pub use nym_wire::authority::{Authorities, Authority};
/// The client's keys: what [`Client::new`] and [`Driver::new`] take.
pub use nym_wire::keys::ClientKeys;
/// Packet sizes, as [`ClientConfig::packet_size`] names them.
pub use nym_wire::mix_frame::PacketSize;
/// The one check of a topology document (see `nym_wire::signed`); the
/// driver runs it on the first fetch (through [`verify_first_topology`]) and
/// on every refresh.
pub use nym_wire::signed::{verify_topology, VerifiedTopology};
/// The network as routes are drawn from it ([`Client::handle_topology`]).
pub use nym_wire::topology::Topology;
/// The version this engine speaks; the directory's nodes must match major.minor.
pub use nym_wire::VERSION;
