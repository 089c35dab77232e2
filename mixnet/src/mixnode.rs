//! A mixnode: receive Sphinx packets, peel one layer, hold them for their
//! delay, forward them to the next hop.

use crate::announce::spawn_announcer;
use crate::http::DirectoryClient;
use crate::epochs::{start_keys, EpochSettings, SphinxKeys};
use crate::pool::{PeerPool, DEFAULT_PEER_QUEUE};
use crate::processor::{default_workers, forward, serve_mix_listener, spawn_delay_queue, start_workers, Handler, Processed};
use crate::stats::{inc, spawn_stats_logger, NodeStats};
use crate::keyfiles::load_or_create_identity_key;
use crate::trust::{HopFilter, TopologyTrust};
use anyhow::{bail, Result};
use ed25519_dalek::SigningKey;
use nym_wire::topology::Topology;
use std::collections::HashSet;
use std::time::Instant;
use tokio::sync::mpsc;
use nym_wire::address::encode_key;
use nym_wire::topology::MixNodeJson;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
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
    /// Directory base URL (`http://host:port`); None: do not announce, and
    /// forward to any next hop.
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
    /// Key epochs and replay filters.
    pub epochs: EpochSettings,
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
            metrics: None,
        }
    }
}

/// A running mixnode.
pub struct Mixnode {
    layer: u8,
    listen_addr: SocketAddr,
    announce_addr: SocketAddr,
    keys: Arc<SphinxKeys>,
    identity: SigningKey,
    hops: Option<Arc<HopFilter>>,
    stats: Arc<NodeStats>,
    metrics_addr: Option<SocketAddr>,
    cancel: CancellationToken,
    accept_task: tokio::task::JoinHandle<()>,
    threads: Vec<std::thread::JoinHandle<()>>,
    /// Dropping the node without `shutdown` still stops it.
    _stop_on_drop: tokio_util::sync::DropGuard,
}

impl Mixnode {
    pub async fn start(config: MixnodeConfig) -> Result<Mixnode> {
        if !(1..=nym_wire::topology::LAYERS).contains(&config.layer) {
            bail!("layer must be 1..=3, got {}", config.layer);
        }
        let identity = load_or_create_identity_key(&config.data_dir)?;
        let directory = config.directory.as_deref().map(DirectoryClient::new).transpose()?;
        let hops = match &directory {
            Some(client) => {
                let trust = TopologyTrust::new(client.clone(), config.directory_key, config.data_dir.clone())?;
                let layer = config.layer;
                Some(Arc::new(HopFilter::new(trust, move |t: &Topology| next_hops(t, layer))))
            }
            None => None,
        };
        let listener = TcpListener::bind(config.listen).await?;
        let listen_addr = listener.local_addr()?;
        let announce_addr = config.announce.unwrap_or(listen_addr);
        let stats = NodeStats::new();
        let cancel = CancellationToken::new();
        let keys = start_keys(&config.data_dir, config.epochs.clone(), stats.clone(), cancel.clone())?;
        let metrics = crate::metrics::mixnode(stats.clone(), config.layer);
        let metrics_addr = crate::metrics::start(config.metrics, "mixnode", metrics, &cancel).await?;

        let pool = PeerPool::new(stats.clone(), config.peer_queue, cancel.clone());
        let delays = spawn_delay_queue(pool.clone(), stats.clone(), cancel.clone());
        // next hops the topology did not list (yet): looked at again after a refresh
        let (recheck_tx, recheck_rx) = mpsc::channel::<Unlisted>(RECHECK_QUEUE);
        let handler: Handler = {
            let stats = stats.clone();
            let hops = hops.clone();
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
        if let Some(h) = &hops {
            h.spawn_refresher(config.topology_refresh, cancel.clone());
            spawn_rechecker(h.clone(), recheck_rx, pool, delays, stats.clone(), cancel.clone());
        }
        let workers = if config.workers == 0 { default_workers() } else { config.workers };
        let (jobs, threads) = start_workers(workers, keys.clone(), stats.clone(), handler, cancel.clone());
        let accept_task = tokio::spawn(serve_mix_listener(listener, jobs, stats.clone(), cancel.clone()));

        let name = format!("mixnode L{} {announce_addr}", config.layer);
        spawn_stats_logger(name, stats.clone(), config.stats_interval, cancel.clone());
        let _stop_on_drop = cancel.clone().drop_guard();
        let node = Mixnode {
            layer: config.layer,
            listen_addr,
            announce_addr,
            keys,
            identity,
            hops,
            stats,
            metrics_addr,
            cancel,
            accept_task,
            threads,
            _stop_on_drop,
        };
        if let Some(client) = directory {
            let unsigned = node.unsigned_json(&config.location);
            let (identity, keys) = (node.identity.clone(), node.keys.clone());
            let sign = move |seq| sign_descriptor(&unsigned, &keys, &identity, seq);
            spawn_announcer(client, "/api/presence/mixnodes", sign, config.announce_interval, node.cancel.clone());
        }
        tracing::info!(
            "mixnode layer {} listening on {listen_addr} (announced as {announce_addr}), identity {}, sphinx key {} \
             (key epoch {} of {} s, --epoch-secs; replay filters for {} packets/s at a false-positive rate of {}, \
             saved every {} s){}{}",
            node.layer,
            node.identity_key_b58(),
            node.public_key_b58(),
            node.keys.current_epoch(),
            config.epochs.epoch_secs,
            config.epochs.rated_packets_per_sec,
            config.epochs.replay_fp_rate,
            config.epochs.replay_save_interval.as_secs(),
            match (&config.directory, config.directory_key) {
                (None, _) => String::new(),
                (Some(_), Some(k)) => format!(", directory key {} (pinned)", encode_key(&k)),
                (Some(_), None) => ", directory key: trusted on first use".to_string(),
            },
            metrics_addr.map(|a| format!(", metrics {}", crate::metrics::url(a))).unwrap_or_default()
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
        self.keys.current_public()
    }

    /// The node's Sphinx keys by epoch.
    pub fn sphinx_keys(&self) -> Arc<SphinxKeys> {
        self.keys.clone()
    }

    pub fn public_key_b58(&self) -> String {
        encode_key(self.public_key().as_bytes())
    }

    pub fn stats(&self) -> Arc<NodeStats> {
        self.stats.clone()
    }

    /// Where `GET /metrics` is served (`MixnodeConfig::metrics`).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The node's ed25519 identity (signs its descriptor; what `--admit` lists).
    pub fn identity_key(&self) -> [u8; 32] {
        self.identity.verifying_key().to_bytes()
    }

    pub fn identity_key_b58(&self) -> String {
        encode_key(&self.identity_key())
    }

    /// The directory key this node verifies topologies with (pinned, or
    /// learned on first use; None before the first verified document).
    pub fn directory_key(&self) -> Option<[u8; 32]> {
        self.hops.as_ref().and_then(|h| h.directory_key())
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
        sign_descriptor(&self.unsigned_json(location), &self.keys, &self.identity, seq)
    }

    /// Stops everything: listener closed, connections dropped, workers
    /// joined, then the replay filters saved, marked clean.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        let _ = self.accept_task.await;
        let threads = self.threads;
        let keys = self.keys.clone();
        let saved = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
            keys.save(true)
        })
        .await;
        match saved {
            Ok(Ok(())) => tracing::info!("mixnode {} stopped; replay filters saved", self.announce_addr),
            Ok(Err(e)) => tracing::error!("mixnode {} stopped; {e:#}", self.announce_addr),
            Err(e) => tracing::error!("mixnode {} stopped; saving replay filters failed: {e}", self.announce_addr),
        }
    }
}

fn sign_descriptor(unsigned: &MixNodeJson, keys: &SphinxKeys, identity: &SigningKey, seq: u64) -> MixNodeJson {
    let mut d = unsigned.clone();
    d.sphinx_keys = keys.published(seq);
    d.pub_key = d.sphinx_keys.first().map(|k| k.key.clone()).unwrap_or_default();
    d.sign(identity, seq);
    d
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
