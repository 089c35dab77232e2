//! The small Nym mixnet: a directory, mixnodes and gateways, each runnable as
//! its own binary or together in one process ([`localnet`]).
//!
//! Wire formats, topology JSON, key encodings and SURB-ACK handling come from
//! the `nym-wire` crate (shared with the client); nothing here redefines them,
//! and the servers do not depend on the client engine.
//!
//! Binaries: `nym-directory`, `nym-mixnode`, `nym-gateway`, `nym-localnet`
//! (`--help` on each). Data-dir files: `sphinx-keys/` (0700; mixnodes and
//! gateways): `epoch-N.pem` (0600), a Sphinx key per key epoch, and
//! `epoch-N.replay` (0600), its replay filter ([`epochs`]); `identity_private.pem` (0600)
//! and `identity_public.pem` (every node's ed25519 identity: it signs the
//! node's descriptor; a gateway's is also the gateway part of client
//! addresses), `directory_key.txt` (a node's directory key trusted on first
//! use, base58, when none is pinned), `gateway.sqlite` (gateway inbox and
//! registered clients, WAL); the directory's `directory_private.pem` (0600)
//! and `directory_public.pem`. Data dirs are 0700. The directory's rules and
//! the signed topology document: docs/topology-document.md.
//!
//! Every node keeps [`NodeStats`] counters, logged periodically and readable
//! in-process. Drop reasons: `dropped_malformed` (bad frame flag, truncated
//! frame at EOF, packet Sphinx refused), `dropped_replayed`,
//! `dropped_no_route` (undecodable next hop; a forward hop at a gateway; a
//! final hop at a mixnode), `dropped_unlisted_hop` (a next hop the node's
//! verified topology does not list: a mixnode's next layer, a gateway's
//! SURB-ACK first hop), `dropped_unknown_client` (gateway: never
//! registered), `dropped_queue_full` (peer/delay queue full; the gateway's
//! store queue full), `dropped_limit` (gateway: an inbox bound reached),
//! `dropped_peer_down` (lost when a peer connection broke mid-write),
//! `dropped_retired_key` (built for a key epoch the node no longer, or not
//! yet, holds). With
//! `--metrics HOST:PORT` a node serves them, and more, as Prometheus
//! metrics on `GET /metrics` ([`metrics`], docs/metrics.md).

pub mod directory;
pub mod epochs;
pub mod gateway;
pub mod http;
pub mod keyfiles;
pub mod localnet;
pub mod metrics;
pub mod mixnode;
pub mod pool;
pub mod ratelimit;
pub mod replay;
pub mod stats;

mod admission;
mod announce;
mod inbox;
mod processor;
mod trust;

pub use directory::{start_directory, DirectoryConfig, DirectoryHandle, DirectoryState};
pub use gateway::{Gateway, GatewayConfig};
pub use mixnode::{Mixnode, MixnodeConfig};
pub use stats::{Conn, ConnectionGuard, NodeStats, StatsSnapshot};

/// A `--...-interval` flag in seconds as a Duration; `what` names the flag in errors.
pub fn secs_flag(v: f64, what: &str) -> anyhow::Result<std::time::Duration> {
    std::time::Duration::try_from_secs_f64(v).map_err(|e| anyhow::anyhow!("bad {what}: {e}"))
}

/// A `--directory-key` flag (base58 ed25519 key) as key bytes.
pub fn directory_key_flag(v: Option<&str>) -> anyhow::Result<Option<[u8; 32]>> {
    v.map(keyfiles::parse_ed25519_b58).transpose().map_err(|e| anyhow::anyhow!("bad --directory-key: {e:#}"))
}

/// Resolves when the process gets Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `RUST_LOG`-driven logging, default `info`.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
}
