//! The directory: nodes announce signed descriptors, clients fetch the
//! signed topology document.
//!
//! Every announcement (`POST /api/presence/mixnodes`, `POST
//! /api/presence/gateways`) is a descriptor signed by the node's identity key
//! (see `nym_wire::signed`); entries are keyed by that identity, so only its
//! holder can change its entry. `GET /api/presence/topology` serves every
//! live descriptor in a document the directory signs with its own key. The
//! rules, refusals and limits are in docs/topology-document.md.
//!
//! With several authorities (`--authorities FILE`) the document is the
//! round's consensus: [`consensus`] (the pure rule), [`rounds`] (what one
//! authority holds of each round, and what peers may send it), [`peers`]
//! (the round task and the peer exchange).
//!
//! Rooms: [`config`] (what it is told at start, the `--admit` file),
//! [`state`] (the live entries, every check, the signed document),
//! [`refusals`] (why an announcement is refused), [`http`] (routes and the
//! order requests are read in), [`metrics`] (what its `/metrics` shows); this
//! file starts and stops it.

pub mod config;
pub mod consensus;
pub mod http;
pub mod metrics;
pub mod peers;
pub mod refusals;
pub mod rounds;
pub mod state;

pub use config::*;
pub use http::router;
pub use metrics::AnnouncementCounters;
pub use refusals::{AnnounceRefusal, Refused};
pub use state::DirectoryState;

use crate::keyfiles::load_or_create_directory_key;
use anyhow::Result;
use nym_wire::address::encode_key;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A running directory.
pub struct DirectoryHandle {
    pub addr: SocketAddr,
    pub state: DirectoryState,
    metrics_addr: Option<SocketAddr>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl DirectoryHandle {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The public key the topology document is signed with.
    pub fn directory_key(&self) -> [u8; 32] {
        self.state.directory_key()
    }

    pub fn directory_key_b58(&self) -> String {
        encode_key(&self.directory_key())
    }

    /// Where `GET /metrics` is served (`DirectoryConfig::metrics`).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    pub async fn shutdown(self) {
        self.cancel.cancel();
        let mut task = self.task;
        // Kept-alive client connections can hold a graceful shutdown open.
        if tokio::time::timeout(Duration::from_secs(1), &mut task).await.is_err() {
            task.abort();
        }
    }
}

/// Serves the directory on `config.listen` (port 0 picks a free port) until
/// shut down; the key comes from (or is made in) `config.data_dir`. Logs its
/// address, key, admission and limits.
pub async fn start_directory(config: DirectoryConfig) -> Result<DirectoryHandle> {
    let dir = start_directory_unlogged(config).await?;
    dir.log_start();
    Ok(dir)
}

/// [`start_directory`] without the startup log line (`nym-directory` prints
/// its URL and key on stdout first, then logs it with [`DirectoryHandle::log_start`]).
pub async fn start_directory_unlogged(config: DirectoryConfig) -> Result<DirectoryHandle> {
    let listener = TcpListener::bind(config.listen).await?;
    start_directory_on(config, listener).await
}

/// [`start_directory_unlogged`] on a listener already bound (`config.listen`
/// is not used): so the authorities file can name every authority's
/// address before any starts, without binding a port twice.
pub async fn start_directory_on(config: DirectoryConfig, listener: TcpListener) -> Result<DirectoryHandle> {
    let key = load_or_create_directory_key(&config.data_dir)?;
    if let Some(authorities) = &config.authorities {
        if !authorities.contains(key.verifying_key().as_bytes()) {
            anyhow::bail!(
                "this authority's key {} (in {}) is not in the authorities file: add the line `{} <its http://host:port>` \
                 to the file on every authority, node and client (or start it with the data dir of a listed key)",
                encode_key(key.verifying_key().as_bytes()),
                config.data_dir.display(),
                encode_key(key.verifying_key().as_bytes())
            );
        }
    }
    let addr = listener.local_addr()?;
    let metrics = config.metrics;
    let open = config.admit.is_none() && config.open;
    let state = DirectoryState::new(config, key);
    let cancel = CancellationToken::new();
    let render = metrics::render(state.announcement_counters(), state.rounds().cloned(), open, {
        let state = state.clone();
        move || state.listed()
    });
    let metrics_addr = crate::metrics::start(metrics, "directory", render, &cancel).await?;
    if let Some(rounds) = state.rounds() {
        peers::spawn(state.clone(), rounds.clone(), cancel.clone());
    }
    metrics::spawn_flood_log(state.announcement_counters(), cancel.clone());
    let app = router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let c = cancel.clone();
    let task = tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move { c.cancelled().await });
        if let Err(e) = serve.await {
            tracing::error!("directory server failed: {e}");
        }
    });
    Ok(DirectoryHandle {
        addr,
        state,
        metrics_addr,
        cancel,
        task,
    })
}

impl DirectoryHandle {
    /// Logs the address, the key, admission and every limit.
    pub fn log_start(&self) {
        let config = self.state.config();
        let admission = match &config.admit {
            Some(ids) => format!("admitting only the {} identities listed (--admit)", ids.len()),
            None if config.open => {
                tracing::warn!(
                    "this directory is OPEN (--open): it admits ANY identity that announces, so anyone can list as \
                     many nodes as they make keys (a Sybil attack); use --admit FILE on a real network"
                );
                "OPEN: any node may announce (--open), within the limits".to_string()
            }
            None => "CLOSED: no --admit file and not --open, so every announcement is refused".to_string(),
        };
        let network = match self.state.rounds() {
            Some(r) => format!(
                "one of {} authorities (threshold {}), rounds of {:?}; ",
                r.authorities().list().len(),
                r.authorities().threshold(),
                config.round
            ),
            None => "the network's only authority; ".to_string(),
        };
        tracing::info!(
            "directory listening on {}, directory key {}; {network}{admission}; {}{}",
            self.url(),
            self.directory_key_b58(),
            config.describe_limits(),
            self.metrics_addr
                .map(|a| format!("; metrics {}", crate::metrics::url(a)))
                .unwrap_or_default()
        );
    }
}
