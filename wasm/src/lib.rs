//! The Nym mixnet client in the browser.
//!
//! A shim only: every protocol decision lives in [`nym_client_core::Client`];
//! this crate carries its bytes over a browser `WebSocket`, feeds it
//! `performance.now()` and timer expiries, fetches the topology from the
//! directory and keeps the identity in `localStorage`. The JS API is
//! [`browser::NymClient`] (wasm32 only); [`bench`] is the packet-creation
//! benchmark, built for both the browser and native.

pub mod bench;

#[cfg(target_arch = "wasm32")]
pub mod browser;
