//! The Nym mixnet client in the browser.
//!
//! A shim only: every protocol decision lives in [`nym_client_core::Client`];
//! this crate carries its bytes over a browser `WebSocket`, feeds it
//! `performance.now()` and timer expiries, fetches the topology from the
//! directory and keeps the identity in IndexedDB (through the package's JS),
//! optionally encrypted ([`crypt`]). The engine is [`browser::Engine`]
//! (wasm32 only; `NymEngine` in JS, behind the package's `NymClient`);
//! [`bench`] is the packet-creation benchmark, built for both the browser and native.

pub mod authorities;
pub mod bench;
pub mod crypt;

#[cfg(target_arch = "wasm32")]
pub mod browser;
