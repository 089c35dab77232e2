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
//! and `directory_public.pem`; `config.toml` (0600; written by `init`, read at
//! start: [`config_file`]). Data dirs are 0700. The directory's rules and
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
//!
//! ## Rooms
//! - [`node`]: the chassis mixnodes and gateways share (identity and keys,
//!   trusted topology, announcer, metrics endpoint, shutdown, common flags).
//! - [`mixnode`]: a mixnode's packet path on that chassis.
//! - [`gateway`]: a gateway (config, client sessions, the store pipeline and
//!   its writer thread, the inbox, admission, lifecycle).
//! - [`directory`]: the directory (config, state and its checks, refusals,
//!   HTTP, its metrics).
//! - [`metrics`]: the Prometheus text writer and the `/metrics` endpoint
//!   (what each node exports lives with the node).
//! - [`http`]: the one HTTP client of the directory (announcements,
//!   topology), for nodes and clients; the paths are `nym_wire::topology::paths`.
//! - [`epochs`], [`replay`]: Sphinx keys by epoch and their replay filters;
//!   [`pool`] (connections to next hops), [`stats`] (counters),
//!   [`keyfiles`], [`ratelimit`], [`cli`] (what every binary shares),
//!   [`config_file`] (`init` and `config.toml`, over every binary's flags), the one
//!   accept loop (`listener`),
//!   [`localnet`] (all of it in one process).

pub mod cli;
pub mod config_file;
pub mod directory;
pub mod epochs;
pub mod gateway;
pub mod http;
pub mod keyfiles;
pub mod localnet;
pub mod metrics;
pub mod mixnode;
pub mod node;
pub mod pool;
pub mod ratelimit;
pub mod replay;
pub mod stats;

mod listener;
mod processor;

pub use cli::{directory_key_flag, init_logging, secs_flag, shutdown_signal};
pub use directory::{start_directory, DirectoryConfig, DirectoryHandle, DirectoryState};
pub use gateway::{Gateway, GatewayConfig};
pub use mixnode::{Mixnode, MixnodeConfig};
pub use stats::{Conn, ConnectionGuard, NodeStats, StatsSnapshot};
