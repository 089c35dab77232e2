//! A mixnode: receive Sphinx packets, peel one layer, hold them for their
//! delay, forward them to the next hop: the next layer's mixnodes (from
//! layer 3, the gateways) of the verified topology. Identity, keys, trust,
//! metrics and announcements are the [`Chassis`]'s.

use crate::epochs::{EpochSettings, SphinxKeys};
use crate::node::trust::HopFilter;
use crate::node::{Chassis, ChassisConfig, Role};
use crate::pool::{PeerPool, DEFAULT_PEER_QUEUE};
use crate::processor::{
    default_workers, forward, serve_mix_listener, spawn_delay_queue, start_workers, Handler, Processed,
};
use crate::stats::{inc, NodeStats};
use anyhow::{bail, Result};
use nym_wire::address::encode_key;
use nym_wire::authority::Authorities;
use nym_wire::topology::{MixNodeJson, Topology};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use x25519_dalek::PublicKey;

#[derive(Debug, Clone)]
pub struct MixnodeConfig {
    pub layer: u8,
    /// Port 0 picks a free port.
    pub listen: SocketAddr,
    /// Address announced to the directory (and put in Sphinx headers by
    /// clients); defaults to the bound listen address.
    pub announce: Option<SocketAddr>,
    /// The network's authorities (`--authorities`): announced to, fetched
    /// from with failover, and a topology needs their threshold of
    /// signatures. Exclusive with `directory`.
    pub authorities: Option<Authorities>,
    /// Directory base URL (`http://host:port`): one authority. None (and no
    /// `authorities`): do not announce, and forward to any next hop.
    pub directory: Option<String>,
    /// The directory's key (`--directory-key`); None: trust the first
    /// verified document's key and remember it (`directory_key.txt`).
    pub directory_key: Option<[u8; 32]>,
    /// How often the topology is fetched (with a directory).
    pub topology_refresh: Duration,
    pub data_dir: PathBuf,
    pub announce_interval: Duration,
    pub stats_interval: Duration,
    /// Sphinx worker threads; 0 = one per core.
    pub workers: usize,
    /// Packets queued per next hop before dropping.
    pub peer_queue: usize,
    pub location: String,
    /// Key epochs and replay filters. With a directory, the epoch length is
    /// the authorities' document's, whatever `epochs.epoch_secs` says.
    pub epochs: EpochSettings,
    /// `--epoch-secs` when given: the node refuses to start if the
    /// authorities' document states another key epoch length.
    pub expected_epoch_secs: Option<u64>,
    /// `--metrics`: serve Prometheus metrics on `GET /metrics` here (port 0
    /// picks a free port); None: no metrics listener.
    pub metrics: Option<SocketAddr>,
}

impl MixnodeConfig {
    pub fn new(layer: u8, data_dir: impl Into<PathBuf>) -> Self {
        MixnodeConfig {
            layer,
            listen: SocketAddr::from(([127, 0, 0, 1], 1789)),
            announce: None,
            authorities: None,
            directory: None,
            directory_key: None,
            topology_refresh: Duration::from_secs(5),
            data_dir: data_dir.into(),
            announce_interval: Duration::from_secs(3),
            stats_interval: Duration::from_secs(10),
            workers: 0,
            peer_queue: DEFAULT_PEER_QUEUE,
            location: "localhost".into(),
            epochs: EpochSettings::default(),
            expected_epoch_secs: None,
            metrics: None,
        }
    }
}

/// A running mixnode.
pub struct Mixnode {
    chassis: Chassis,
    layer: u8,
    listen_addr: SocketAddr,
    announce_addr: SocketAddr,
    accept_task: tokio::task::JoinHandle<()>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Mixnode {
    pub async fn start(config: MixnodeConfig) -> Result<Mixnode> {
        if !(1..=nym_wire::topology::LAYERS).contains(&config.layer) {
            bail!("layer must be 1..=3, got {}", config.layer);
        }
        let layer = config.layer;
        let chassis = Chassis::start(
            ChassisConfig {
                role: Role::Mixnode,
                data_dir: &config.data_dir,
                authorities: config.authorities.as_ref(),
                directory: config.directory.as_deref(),
                directory_key: config.directory_key,
                epochs: &config.epochs,
                expected_epoch_secs: config.expected_epoch_secs,
                metrics: config.metrics,
            },
            move |t: &Topology| next_hops(t, layer),
            |stats| crate::node::metrics::mixnode(stats, layer),
        )
        .await?;
        let listener = TcpListener::bind(config.listen).await?;
        let listen_addr = listener.local_addr()?;
        let announce_addr = config.announce.unwrap_or(listen_addr);
        let (stats, keys, cancel) = (chassis.stats.clone(), chassis.keys.clone(), chassis.cancel.clone());

        let pool = PeerPool::new(stats.clone(), config.peer_queue, cancel.clone());
        let delays = spawn_delay_queue(pool.clone(), stats.clone(), cancel.clone());
        // next hops the topology did not list (yet): looked at again after a refresh
        let (recheck_tx, recheck_rx) = mpsc::channel::<Unlisted>(RECHECK_QUEUE);
        let handler: Handler = {
            let stats = stats.clone();
            let hops = chassis.hops.clone();
            let (pool, delays) = (pool.clone(), delays.clone());
            Arc::new(move |out| match out {
                Processed::Forward { addr, frame, delay } => match &hops {
                    Some(h) if !h.allowed(&addr) => {
                        if recheck_tx.try_send((addr, frame, delay, Instant::now())).is_err() {
                            inc(&stats.dropped_unlisted_hop);
                        }
                    }
                    _ => forward(&pool, &delays, &stats, addr, frame, delay),
                },
                // a mixnode is never a final hop
                Processed::Final { .. } => inc(&stats.dropped_no_route),
            })
        };
        chassis.spawn_topology_refresher(config.topology_refresh);
        if let Some(h) = &chassis.hops {
            spawn_rechecker(h.clone(), recheck_rx, pool, delays, stats.clone(), cancel.clone());
        }
        let workers = if config.workers == 0 {
            default_workers()
        } else {
            config.workers
        };
        let (jobs, threads) = start_workers(workers, keys, stats.clone(), handler, cancel.clone());
        let accept_task = tokio::spawn(serve_mix_listener(listener, jobs, stats, cancel));

        chassis.spawn_stats_logger(
            format!("mixnode L{} {announce_addr}", config.layer),
            config.stats_interval,
        );
        let node = Mixnode {
            chassis,
            layer: config.layer,
            listen_addr,
            announce_addr,
            accept_task,
            threads,
        };
        node.chassis
            .spawn_announcer(node.unsigned_json(&config.location), config.announce_interval);
        tracing::info!(
            "mixnode layer {} listening on {listen_addr} (announced as {announce_addr}), identity {}, sphinx key {} \
             (key epoch {} of {} s; replay filters for {} packets/s at a false-positive rate of {}, \
             saved every {} s){}",
            node.layer,
            node.identity_key_b58(),
            node.public_key_b58(),
            node.chassis.keys.current_epoch(),
            node.chassis.keys.settings().epoch_secs,
            config.epochs.rated_packets_per_sec,
            config.epochs.replay_fp_rate,
            config.epochs.replay_save_interval.as_secs(),
            node.chassis.describe(",")
        );
        Ok(node)
    }

    pub fn layer(&self) -> u8 {
        self.layer
    }

    pub fn listen_addr(&self) -> SocketAddr {
        self.listen_addr
    }

    pub fn announce_addr(&self) -> SocketAddr {
        self.announce_addr
    }

    /// The Sphinx key of the current key epoch.
    pub fn public_key(&self) -> PublicKey {
        self.chassis.keys.current_public()
    }

    /// The node's Sphinx keys by epoch.
    pub fn sphinx_keys(&self) -> Arc<SphinxKeys> {
        self.chassis.keys.clone()
    }

    pub fn public_key_b58(&self) -> String {
        encode_key(self.public_key().as_bytes())
    }

    pub fn stats(&self) -> Arc<NodeStats> {
        self.chassis.stats.clone()
    }

    /// Where `GET /metrics` is served (`MixnodeConfig::metrics`).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.chassis.metrics_addr()
    }

    /// The node's ed25519 identity (signs its descriptor; what `--admit` lists).
    pub fn identity_key(&self) -> [u8; 32] {
        self.chassis.identity_key()
    }

    pub fn identity_key_b58(&self) -> String {
        encode_key(&self.identity_key())
    }

    /// The directory key this node verifies topologies with (pinned, or
    /// learned on first use; None before the first verified document). With
    /// several authorities: None (see `authorities`).
    pub fn directory_key(&self) -> Option<[u8; 32]> {
        self.chassis.directory_key()
    }

    /// The authorities this node verifies topologies with (with one
    /// directory: its pinned key, or the key learned on first use; None
    /// before that, and without a directory).
    pub fn authorities(&self) -> Option<nym_wire::authority::Authorities> {
        self.chassis.authorities()
    }

    /// Where the node stands with its topology: waiting for the first,
    /// current (and from which authority), or expired with no newer one
    /// acceptable. None without a directory.
    pub fn topology_state(&self) -> Option<crate::node::TopologyState> {
        self.chassis.topology_state()
    }

    fn unsigned_json(&self, location: &str) -> MixNodeJson {
        MixNodeJson {
            identity_key: self.identity_key_b58(),
            host: self.announce_addr.to_string(),
            layer: self.layer,
            version: nym_wire::VERSION.to_string(),
            location: location.to_string(),
            ..MixNodeJson::default()
        }
    }

    /// The descriptor this node announces, signed with `seq` (Unix ms: its
    /// keys are those of that moment's epoch and the next).
    pub fn json(&self, location: &str, seq: u64) -> MixNodeJson {
        self.chassis.sign_descriptor(&self.unsigned_json(location), seq)
    }

    /// Stops everything: listener closed, connections dropped, workers
    /// joined, then the replay filters saved, marked clean.
    pub async fn shutdown(self) {
        let stopped = self.chassis.stop(vec![self.accept_task], self.threads).await;
        stopped.log(self.announce_addr);
    }
}

/// Packets to next hops the last topology did not list, waiting for a refresh.
const RECHECK_QUEUE: usize = 1024;

type Unlisted = (SocketAddr, Vec<u8>, Duration, Instant);

/// Where a layer-`layer` mixnode may send: the next layer's mixnodes, or
/// (from layer 3) the gateways.
fn next_hops(t: &Topology, layer: u8) -> HashSet<SocketAddr> {
    if layer < nym_wire::topology::LAYERS {
        t.layer(layer + 1).iter().map(|m| m.address).collect()
    } else {
        t.gateways().iter().map(|g| g.mix_address).collect()
    }
}

/// A packet whose next hop was not listed is forwarded if a topology fetched
/// after it arrived lists the hop; else dropped (`dropped_unlisted_hop`).
fn spawn_rechecker(
    hops: Arc<HopFilter>,
    mut rx: mpsc::Receiver<Unlisted>,
    pool: Arc<PeerPool>,
    delays: mpsc::Sender<(tokio::time::Instant, SocketAddr, Vec<u8>)>,
    stats: Arc<NodeStats>,
    cancel: CancellationToken,
) {
    tokio::spawn(async move {
        loop {
            let (addr, frame, delay, seen) = tokio::select! {
                _ = cancel.cancelled() => return,
                item = rx.recv() => match item {
                    Some(item) => item,
                    None => return,
                },
            };
            if !hops.allowed(&addr) {
                hops.recheck(seen).await;
            }
            if hops.allowed(&addr) {
                forward(&pool, &delays, &stats, addr, frame, delay);
            } else {
                inc(&stats.dropped_unlisted_hop);
            }
        }
    });
}
