//! A mixnode: receive Sphinx packets, peel one layer, hold them for their
//! delay, forward them to the next hop.

use crate::announce::spawn_announcer;
use crate::http::DirectoryClient;
use crate::keyfiles::load_or_create_sphinx_key;
use crate::pool::{PeerPool, DEFAULT_PEER_QUEUE};
use crate::processor::{default_workers, forward, serve_mix_listener, spawn_delay_queue, start_workers, Handler, Processed};
use crate::stats::{inc, spawn_stats_logger, NodeStats};
use anyhow::{bail, Result};
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
    /// Directory base URL (`http://host:port`); None: do not announce.
    pub directory: Option<String>,
    pub data_dir: PathBuf,
    pub announce_interval: Duration,
    pub stats_interval: Duration,
    /// Sphinx worker threads; 0 = one per core.
    pub workers: usize,
    /// Packets queued per next hop before dropping.
    pub peer_queue: usize,
    pub location: String,
}

impl MixnodeConfig {
    pub fn new(layer: u8, data_dir: impl Into<PathBuf>) -> Self {
        MixnodeConfig {
            layer,
            listen: SocketAddr::from(([127, 0, 0, 1], 1789)),
            announce: None,
            directory: None,
            data_dir: data_dir.into(),
            announce_interval: Duration::from_secs(3),
            stats_interval: Duration::from_secs(10),
            workers: 0,
            peer_queue: DEFAULT_PEER_QUEUE,
            location: "localhost".into(),
        }
    }
}

/// A running mixnode.
pub struct Mixnode {
    layer: u8,
    listen_addr: SocketAddr,
    announce_addr: SocketAddr,
    public_key: PublicKey,
    stats: Arc<NodeStats>,
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
        let secret = load_or_create_sphinx_key(&config.data_dir)?;
        let public_key = PublicKey::from(&secret);
        let directory = config.directory.as_deref().map(DirectoryClient::new).transpose()?;
        let listener = TcpListener::bind(config.listen).await?;
        let listen_addr = listener.local_addr()?;
        let announce_addr = config.announce.unwrap_or(listen_addr);
        let stats = NodeStats::new();
        let cancel = CancellationToken::new();

        let pool = PeerPool::new(stats.clone(), config.peer_queue, cancel.clone());
        let delays = spawn_delay_queue(pool.clone(), stats.clone(), cancel.clone());
        let handler: Handler = {
            let stats = stats.clone();
            Arc::new(move |out| match out {
                Processed::Forward { addr, frame, delay } => forward(&pool, &delays, &stats, addr, frame, delay),
                // a mixnode is never a final hop
                Processed::Final { .. } => inc(&stats.dropped_no_route),
            })
        };
        let workers = if config.workers == 0 { default_workers() } else { config.workers };
        let (jobs, threads) = start_workers(workers, secret, stats.clone(), handler, cancel.clone());
        let accept_task = tokio::spawn(serve_mix_listener(listener, jobs, stats.clone(), cancel.clone()));

        let name = format!("mixnode L{} {announce_addr}", config.layer);
        spawn_stats_logger(name, stats.clone(), config.stats_interval, cancel.clone());
        let _stop_on_drop = cancel.clone().drop_guard();
        let node = Mixnode { layer: config.layer, listen_addr, announce_addr, public_key, stats, cancel, accept_task, threads, _stop_on_drop };
        if let Some(client) = directory {
            spawn_announcer(client, "/api/presence/mixnodes", node.json(&config.location), config.announce_interval, node.cancel.clone());
        }
        tracing::info!(
            "mixnode layer {} listening on {listen_addr} (announced as {announce_addr}), key {}",
            node.layer,
            node.public_key_b58()
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

    pub fn public_key(&self) -> PublicKey {
        self.public_key
    }

    pub fn public_key_b58(&self) -> String {
        encode_key(self.public_key.as_bytes())
    }

    pub fn stats(&self) -> Arc<NodeStats> {
        self.stats.clone()
    }

    /// The body this node announces to the directory.
    pub fn json(&self, location: &str) -> MixNodeJson {
        MixNodeJson {
            host: self.announce_addr.to_string(),
            pub_key: self.public_key_b58(),
            layer: self.layer,
            version: nym_wire::VERSION.to_string(),
            location: location.to_string(),
            last_seen: 0,
            ..Default::default()
        }
    }

    /// Stops everything: listener closed, connections dropped, workers joined.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        let _ = self.accept_task.await;
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
        tracing::info!("mixnode {} stopped", self.announce_addr);
    }
}
