//! A whole small mixnet in one process: `authorities` directory authorities
//! (3 by default, reaching consensus every `round`), `mixnodes_per_layer` x 3
//! mixnodes and `gateways` gateways, on loopback, free ports by default.
//! The authorities file is written in the data dir ([`AUTHORITIES_FILE`]);
//! every node trusts it (a majority must sign). The first authority keeps
//! the data dir `directory/` a one-directory localnet had, so its key (what
//! `nym-client run --localnet` pinned) stays the same.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use nym_mixnet::localnet::{Localnet, LocalnetConfig};
//! let net = Localnet::start(LocalnetConfig::new("/tmp/localnet")).await?;
//! println!("{}", net.directory_url());
//! net.shutdown().await;
//! # Ok(()) }
//! ```

use crate::directory::{start_directory, DirectoryConfig, DirectoryHandle};
use crate::epochs::EpochSettings;
use crate::gateway::{Gateway, GatewayConfig};
use crate::keyfiles::{load_or_create_directory_key, load_or_create_identity_key};
use crate::mixnode::{Mixnode, MixnodeConfig};
use crate::stats::NodeStats;
use anyhow::{anyhow, bail, Result};
use nym_wire::address::encode_key;
use nym_wire::authority::{Authorities, Authority};
use nym_wire::topology::{TopologyJson, LAYERS};
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A localnet gateway's handshake and registration rates: all its clients
/// share one source address, and tests start many at once.
const LOOPBACK_HANDSHAKES_PER_SEC: f64 = 200.0;

/// Authorities a localnet runs by default (`nym-localnet --authorities N`).
pub const DEFAULT_AUTHORITIES: usize = 3;
/// The authorities file a localnet writes in its data dir.
pub const AUTHORITIES_FILE: &str = "authorities.txt";

#[derive(Debug, Clone)]
pub struct LocalnetConfig {
    /// IP every node binds and announces (default 127.0.0.1).
    pub host: IpAddr,
    /// The first authority's port (the others take the next ones); 0
    /// picks free ones.
    pub directory_port: u16,
    /// How many directory authorities (1 = a single directory).
    pub authorities: usize,
    /// The authorities' consensus round.
    pub round: Duration,
    /// Node keys (and gateway inboxes) live in per-node subdirectories here.
    pub data_dir: PathBuf,
    pub mixnodes_per_layer: usize,
    pub gateways: usize,
    pub announce_interval: Duration,
    /// Directory entry lifetime without re-announcement.
    pub expiry: Duration,
    pub topology_refresh: Duration,
    pub stats_interval: Duration,
    /// Sphinx worker threads per node (all nodes share this process).
    pub workers_per_node: usize,
    /// How long `start` waits for the topology to be complete.
    pub start_timeout: Duration,
    /// Identities of nodes run outside the localnet (as their own
    /// processes) that its directory admits beside its own.
    pub also_admit: Vec<[u8; 32]>,
    /// Key epochs (the directory's and every node's) and replay filters.
    pub epochs: EpochSettings,
    /// Every node serves Prometheus metrics (`GET /metrics`) on a free
    /// 127.0.0.1 port (on by default; `nym-localnet --no-metrics`).
    pub metrics: bool,
}

/// A localnet's key epochs: an hour (keys do rotate while one runs), filters
/// sized for 100 packets/s, so eight nodes' filters stay a few MB.
pub fn localnet_epochs() -> EpochSettings {
    EpochSettings {
        epoch_secs: 3600,
        rated_packets_per_sec: 100,
        ..EpochSettings::default()
    }
}

impl LocalnetConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        LocalnetConfig {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            directory_port: 0,
            authorities: DEFAULT_AUTHORITIES,
            round: Duration::from_secs(1),
            data_dir: data_dir.into(),
            mixnodes_per_layer: 2,
            gateways: 2,
            announce_interval: Duration::from_secs(2),
            expiry: crate::directory::DEFAULT_EXPIRY,
            topology_refresh: Duration::from_secs(5),
            stats_interval: Duration::from_secs(30),
            workers_per_node: 1,
            start_timeout: Duration::from_secs(20),
            also_admit: Vec::new(),
            epochs: localnet_epochs(),
            metrics: true,
        }
    }

    /// Short announce interval and expiry, for tests.
    pub fn fast(data_dir: impl Into<PathBuf>) -> Self {
        LocalnetConfig {
            announce_interval: Duration::from_millis(200),
            expiry: Duration::from_secs(2),
            topology_refresh: Duration::from_millis(500),
            ..Self::new(data_dir)
        }
    }

    /// `$HOME/.nym/localnet` (or `./.nym/localnet` without HOME).
    pub fn default_data_dir() -> PathBuf {
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."))
            .join(".nym")
            .join("localnet")
    }
}

impl Default for LocalnetConfig {
    fn default() -> Self {
        Self::new(Self::default_data_dir())
    }
}

/// A mixnode of the localnet (stays valid while the node is killed).
#[derive(Debug, Clone)]
pub struct MixnodeInfo {
    pub layer: u8,
    /// base58 ed25519 identity (signs its descriptor).
    pub identity_key: String,
    pub address: SocketAddr,
    /// base58 x25519 Sphinx key.
    pub public_key: String,
    pub data_dir: PathBuf,
    pub running: bool,
    /// Where it serves `GET /metrics` (the same port after a restart).
    pub metrics: Option<SocketAddr>,
}

#[derive(Debug, Clone)]
pub struct GatewayInfo {
    /// base58 ed25519 identity: the gateway part of client addresses.
    pub identity_key: String,
    /// base58 x25519 Sphinx key.
    pub sphinx_key: String,
    pub mix_address: SocketAddr,
    /// `ws://host:port`.
    pub client_listener: String,
    pub data_dir: PathBuf,
    pub running: bool,
    /// Where it serves `GET /metrics` (the same port after a restart).
    pub metrics: Option<SocketAddr>,
}

struct MixSlot {
    config: MixnodeConfig,
    info: MixnodeInfo,
    node: Option<Mixnode>,
}

struct GatewaySlot {
    config: GatewayConfig,
    info: GatewayInfo,
    node: Option<Gateway>,
}

struct AuthoritySlot {
    config: DirectoryConfig,
    handle: Option<DirectoryHandle>,
}

pub struct Localnet {
    config: LocalnetConfig,
    authorities: Authorities,
    directories: Vec<AuthoritySlot>,
    mixnodes: Vec<MixSlot>,
    gateways: Vec<GatewaySlot>,
}

fn mix_info(node: &Mixnode, data_dir: PathBuf) -> MixnodeInfo {
    MixnodeInfo {
        layer: node.layer(),
        identity_key: node.identity_key_b58(),
        address: node.announce_addr(),
        public_key: node.public_key_b58(),
        data_dir,
        running: true,
        metrics: node.metrics_addr(),
    }
}

fn gateway_info(gw: &Gateway, data_dir: PathBuf) -> GatewayInfo {
    GatewayInfo {
        identity_key: gw.identity_key_b58(),
        sphinx_key: gw.sphinx_key_b58(),
        mix_address: gw.mix_addr(),
        client_listener: gw.client_listener_url(),
        data_dir,
        running: true,
        metrics: gw.metrics_addr(),
    }
}

impl Localnet {
    /// Starts everything and returns once the directory lists every node.
    pub async fn start(config: LocalnetConfig) -> Result<Localnet> {
        if config.mixnodes_per_layer == 0 || config.gateways == 0 {
            bail!("a localnet needs at least one mixnode per layer and one gateway");
        }
        crate::keyfiles::ensure_dir(&config.data_dir)?;
        // Every node's identity first: the directory admits exactly these.
        let mix_dirs: Vec<(u8, PathBuf)> = (1..=LAYERS)
            .flat_map(|layer| (0..config.mixnodes_per_layer).map(move |n| (layer, format!("mixnode-l{layer}-{n}"))))
            .map(|(layer, name)| (layer, config.data_dir.join(name)))
            .collect();
        let gateway_dirs: Vec<PathBuf> = (0..config.gateways)
            .map(|n| config.data_dir.join(format!("gateway-{n}")))
            .collect();
        let mut admit = HashSet::new();
        for dir in mix_dirs.iter().map(|(_, d)| d).chain(&gateway_dirs) {
            admit.insert(load_or_create_identity_key(dir)?.verifying_key().to_bytes());
        }
        admit.extend(config.also_admit.iter().copied());
        // Metrics on loopback only, whatever `host` is.
        let metrics = config
            .metrics
            .then_some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0));
        let (authorities, directories) = start_authorities(&config, &admit, metrics).await?;
        std::fs::write(
            config.data_dir.join(AUTHORITIES_FILE),
            authorities_file_text(&authorities),
        )?;
        let mut net = Localnet {
            config: config.clone(),
            authorities: authorities.clone(),
            directories,
            mixnodes: Vec::new(),
            gateways: Vec::new(),
        };
        let started = async {
            for (layer, dir) in &mix_dirs {
                let mut c = MixnodeConfig::new(*layer, dir);
                c.listen = SocketAddr::new(config.host, 0);
                c.authorities = Some(authorities.clone());
                c.announce_interval = config.announce_interval;
                c.topology_refresh = config.topology_refresh;
                c.stats_interval = config.stats_interval;
                c.workers = config.workers_per_node;
                c.epochs = config.epochs.clone();
                c.expected_epoch_secs = Some(config.epochs.epoch_secs);
                c.metrics = metrics;
                let node = Mixnode::start(c.clone()).await?;
                // a restart must come back on the same address
                c.listen = node.listen_addr();
                c.metrics = node.metrics_addr();
                net.mixnodes.push(MixSlot {
                    config: c,
                    info: mix_info(&node, dir.clone()),
                    node: Some(node),
                });
            }
            for dir in &gateway_dirs {
                let mut c = GatewayConfig::new(dir);
                c.mix_listen = SocketAddr::new(config.host, 0);
                c.clients_listen = SocketAddr::new(config.host, 0);
                c.authorities = Some(authorities.clone());
                c.announce_interval = config.announce_interval;
                c.topology_refresh = config.topology_refresh;
                c.stats_interval = config.stats_interval;
                c.workers = config.workers_per_node;
                c.epochs = config.epochs.clone();
                c.expected_epoch_secs = Some(config.epochs.epoch_secs);
                // Every client of a local net comes from the same loopback
                // address: the per-source handshake rate is the whole net's.
                c.admission.handshakes_per_source = c.admission.handshakes_per_source.max(LOOPBACK_HANDSHAKES_PER_SEC);
                c.admission.registrations_per_sec = c.admission.registrations_per_sec.max(LOOPBACK_HANDSHAKES_PER_SEC);
                c.metrics = metrics;
                let gw = Gateway::start(c.clone()).await?;
                c.mix_listen = gw.mix_addr();
                c.clients_listen = gw.clients_addr();
                c.metrics = gw.metrics_addr();
                net.gateways.push(GatewaySlot {
                    config: c,
                    info: gateway_info(&gw, dir.clone()),
                    node: Some(gw),
                });
            }
            net.wait_for_topology(config.start_timeout).await
        };
        match started.await {
            Ok(_) => Ok(net),
            Err(e) => {
                net.shutdown().await;
                Err(e)
            }
        }
    }

    pub fn config(&self) -> &LocalnetConfig {
        &self.config
    }

    /// `http://host:port` of the first authority (what `nym-client init
    /// --directory` takes: a client trusting it alone accepts the documents
    /// it signed with the others).
    pub fn directory_url(&self) -> String {
        self.authorities.list()[0].url.clone()
    }

    /// Where the first authority serves `GET /metrics` (`LocalnetConfig::metrics`).
    pub fn directory_metrics_addr(&self) -> Option<SocketAddr> {
        self.directories[0].config.metrics
    }

    /// The first authority's key.
    pub fn directory_key(&self) -> [u8; 32] {
        self.authorities.list()[0].key
    }

    /// Every authority (keys, URLs, threshold); every node trusts these.
    pub fn authorities(&self) -> &Authorities {
        &self.authorities
    }

    /// The authorities file in the data dir (`nym-client init --authorities`).
    pub fn authorities_file(&self) -> PathBuf {
        self.config.data_dir.join(AUTHORITIES_FILE)
    }

    /// Where authority `i` serves `GET /metrics`.
    pub fn authority_metrics_addr(&self, i: usize) -> Option<SocketAddr> {
        self.directories.get(i).and_then(|d| d.config.metrics)
    }

    /// Stops authority `i` (its port closes).
    pub async fn kill_authority(&mut self, i: usize) -> Result<()> {
        let slot = self.directories.get_mut(i).ok_or_else(|| anyhow!("no authority {i}"))?;
        if let Some(d) = slot.handle.take() {
            d.shutdown().await;
        }
        Ok(())
    }

    /// (Re)starts authority `i` with the same key and address.
    pub async fn restart_authority(&mut self, i: usize) -> Result<()> {
        self.kill_authority(i).await?;
        let slot = self.directories.get_mut(i).ok_or_else(|| anyhow!("no authority {i}"))?;
        slot.handle = Some(start_retrying(|| start_directory(slot.config.clone())).await?);
        Ok(())
    }

    /// The first running authority's current (unexpired) view, as its state
    /// signs it (without the other authorities' signatures). Empty when
    /// every authority is stopped.
    pub fn topology(&self) -> TopologyJson {
        self.directories
            .iter()
            .find_map(|d| d.handle.as_ref())
            .map(|d| d.state.topology())
            .unwrap_or_default()
    }

    /// The document the first running authority serves (`GET
    /// /api/presence/topology`): what nodes and clients fetch.
    pub async fn served_topology(&self) -> Result<TopologyJson> {
        let i = self
            .directories
            .iter()
            .position(|d| d.handle.is_some())
            .ok_or_else(|| anyhow!("every authority is stopped"))?;
        crate::http::DirectoryClient::new(&self.authorities.list()[i].url)?
            .topology()
            .await
    }

    /// Waits until every running node is in the document the first running authority serves.
    pub async fn wait_for_topology(&self, timeout: Duration) -> Result<TopologyJson> {
        let deadline = Instant::now() + timeout;
        loop {
            let topo = self.served_topology().await.unwrap_or_default();
            let mix_ok = self.mixnodes.iter().filter(|s| s.node.is_some()).all(|s| {
                topo.mix_nodes
                    .iter()
                    .any(|m| m.host == s.info.address.to_string() && m.pub_key == s.info.public_key)
            });
            let gw_ok = self.gateways.iter().filter(|s| s.node.is_some()).all(|s| {
                topo.gateway_nodes.iter().any(|g| {
                    g.identity_key == s.info.identity_key && g.mixnet_listener == s.info.mix_address.to_string()
                })
            });
            if mix_ok && gw_ok {
                return Ok(topo);
            }
            if Instant::now() >= deadline {
                bail!(
                    "topology incomplete after {timeout:?}: {} mixnodes, {} gateways listed",
                    topo.mix_nodes.len(),
                    topo.gateway_nodes.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Mixnodes in layer order (index i is layer i / mixnodes_per_layer + 1).
    pub fn mixnodes(&self) -> Vec<MixnodeInfo> {
        self.mixnodes
            .iter()
            .map(|s| MixnodeInfo {
                running: s.node.is_some(),
                ..s.info.clone()
            })
            .collect()
    }

    pub fn gateways(&self) -> Vec<GatewayInfo> {
        self.gateways
            .iter()
            .map(|s| GatewayInfo {
                running: s.node.is_some(),
                ..s.info.clone()
            })
            .collect()
    }

    /// The running mixnode `i` (None when killed or out of range).
    pub fn mixnode(&self, i: usize) -> Option<&Mixnode> {
        self.mixnodes.get(i).and_then(|s| s.node.as_ref())
    }

    pub fn gateway(&self, i: usize) -> Option<&Gateway> {
        self.gateways.get(i).and_then(|s| s.node.as_ref())
    }

    /// Counters of the running mixnode `i` (a restart starts new counters).
    pub fn mixnode_stats(&self, i: usize) -> Option<Arc<NodeStats>> {
        self.mixnode(i).map(Mixnode::stats)
    }

    pub fn gateway_stats(&self, i: usize) -> Option<Arc<NodeStats>> {
        self.gateway(i).map(Gateway::stats)
    }

    /// Stops mixnode `i` (its port closes; the directory forgets it after the expiry).
    pub async fn kill_mixnode(&mut self, i: usize) -> Result<()> {
        let slot = self.mixnodes.get_mut(i).ok_or_else(|| anyhow!("no mixnode {i}"))?;
        if let Some(node) = slot.node.take() {
            node.shutdown().await;
        }
        Ok(())
    }

    /// (Re)starts mixnode `i` with the same key and address, and waits until it is announced.
    pub async fn restart_mixnode(&mut self, i: usize) -> Result<()> {
        self.kill_mixnode(i).await?;
        let slot = self.mixnodes.get_mut(i).ok_or_else(|| anyhow!("no mixnode {i}"))?;
        let node = start_retrying(|| Mixnode::start(slot.config.clone())).await?;
        slot.node = Some(node);
        self.wait_for_topology(self.config.start_timeout).await.map(|_| ())
    }

    /// Stops gateway `i`; its inbox stays on disk.
    pub async fn kill_gateway(&mut self, i: usize) -> Result<()> {
        let slot = self.gateways.get_mut(i).ok_or_else(|| anyhow!("no gateway {i}"))?;
        if let Some(gw) = slot.node.take() {
            gw.shutdown().await;
        }
        Ok(())
    }

    /// (Re)starts gateway `i` on the same data dir (keys, inbox) and addresses.
    pub async fn restart_gateway(&mut self, i: usize) -> Result<()> {
        self.kill_gateway(i).await?;
        let slot = self.gateways.get_mut(i).ok_or_else(|| anyhow!("no gateway {i}"))?;
        let gw = start_retrying(|| Gateway::start(slot.config.clone())).await?;
        slot.node = Some(gw);
        self.wait_for_topology(self.config.start_timeout).await.map(|_| ())
    }

    /// Stops every node, then the authorities.
    pub async fn shutdown(self) {
        for slot in self.mixnodes {
            if let Some(n) = slot.node {
                n.shutdown().await;
            }
        }
        for slot in self.gateways {
            if let Some(g) = slot.node {
                g.shutdown().await;
            }
        }
        for slot in self.directories {
            if let Some(d) = slot.handle {
                d.shutdown().await;
            }
        }
    }

    /// A human-readable listing (what `nym-localnet` prints).
    pub fn describe(&self) -> String {
        let mut out = format!(
            "directory: {}\ndirectory key: {}\nauthorities: {}\n",
            self.directory_url(),
            encode_key(&self.directory_key()),
            self.authorities_file().display()
        );
        for (i, a) in self.authorities.list().iter().enumerate() {
            out.push_str(&format!("authority {i}  {}  key {}\n", a.url, a.key_b58()));
        }
        for m in self.mixnodes() {
            out.push_str(&format!(
                "mixnode  layer {}  {}  key {}  identity {}\n",
                m.layer, m.address, m.public_key, m.identity_key
            ));
        }
        for g in self.gateways() {
            out.push_str(&format!(
                "gateway  mixnet {}  clients {}  identity {}  sphinx {}\n",
                g.mix_address, g.client_listener, g.identity_key, g.sphinx_key
            ));
        }
        // Metrics URLs last: scripts read the lines above by position.
        let url = crate::metrics::url;
        for i in 0..self.directories.len() {
            if let Some(a) = self.authority_metrics_addr(i) {
                let what = if i == 0 {
                    "directory".to_string()
                } else {
                    format!("authority {i}")
                };
                out.push_str(&format!("metrics  {what}  {}\n", url(a)));
            }
        }
        for m in self.mixnodes() {
            if let Some(a) = m.metrics {
                out.push_str(&format!(
                    "metrics  mixnode layer {} {}  {}\n",
                    m.layer,
                    m.address,
                    url(a)
                ));
            }
        }
        for g in self.gateways() {
            if let Some(a) = g.metrics {
                out.push_str(&format!("metrics  gateway {}  {}\n", g.mix_address, url(a)));
            }
        }
        out
    }
}

/// A port just closed can take a moment to be bindable again.
async fn start_retrying<T, F, Fut>(mut start: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut last = None;
    for _ in 0..50 {
        match start().await {
            Ok(n) => return Ok(n),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(last.unwrap_or_else(|| anyhow!("node did not start")))
}

/// The authorities file of `authorities`, with a comment saying what it is.
fn authorities_file_text(authorities: &Authorities) -> String {
    format!(
        "# the localnet's directory authorities: <base58 ed25519 key> <url>; {} of {} must sign\n{}",
        authorities.threshold(),
        authorities.list().len(),
        authorities.to_file_text()
    )
}

/// Authority `i`'s data dir: the first keeps the one-directory localnet's.
fn authority_dir(config: &LocalnetConfig, i: usize) -> PathBuf {
    config.data_dir.join(if i == 0 {
        "directory".to_string()
    } else {
        format!("authority-{i}")
    })
}

/// Starts the localnet's authorities, each knowing the others' keys and
/// URLs. Their ports: `directory_port` and the next ones, or free ones
/// found by binding port 0 (every authority must know every other's URL
/// before any starts, so these are released and bound again: if another
/// process takes one meanwhile, all are started again on new ports).
async fn start_authorities(
    config: &LocalnetConfig,
    admit: &HashSet<[u8; 32]>,
    metrics: Option<SocketAddr>,
) -> Result<(Authorities, Vec<AuthoritySlot>)> {
    let n = config.authorities;
    if n == 0 || n > nym_wire::authority::MAX_AUTHORITIES {
        bail!(
            "a localnet needs 1 to {} authorities, got {n}",
            nym_wire::authority::MAX_AUTHORITIES
        );
    }
    let keys = (0..n)
        .map(|i| load_or_create_directory_key(&authority_dir(config, i)).map(|k| k.verifying_key().to_bytes()))
        .collect::<Result<Vec<_>>>()?;
    let mut last_error = None;
    for _attempt in 0..5 {
        let ports: Vec<u16> = if config.directory_port != 0 {
            (0..n)
                .map(|i| {
                    config
                        .directory_port
                        .checked_add(i as u16)
                        .ok_or_else(|| anyhow!("--directory-port too high for {n} authorities"))
                })
                .collect::<Result<_>>()?
        } else {
            let held = (0..n)
                .map(|_| std::net::TcpListener::bind(SocketAddr::new(config.host, 0)))
                .collect::<std::io::Result<Vec<_>>>()?;
            held.iter()
                .map(|l| l.local_addr().map(|a| a.port()))
                .collect::<std::io::Result<_>>()?
        };
        let list = keys
            .iter()
            .zip(&ports)
            .map(|(key, port)| Authority {
                key: *key,
                url: format!("http://{}", SocketAddr::new(config.host, *port)),
            })
            .collect();
        let authorities = Authorities::new(list, None).map_err(|e| anyhow!("{e}"))?;
        let mut slots = Vec::new();
        let mut failed = None;
        for (i, port) in ports.iter().enumerate() {
            let mut dc = DirectoryConfig::new(authority_dir(config, i));
            dc.listen = SocketAddr::new(config.host, *port);
            dc.expiry = config.expiry;
            dc.admit = Some(admit.clone());
            dc.epoch_secs = config.epochs.epoch_secs;
            dc.metrics = metrics;
            dc.authorities = (n > 1).then(|| authorities.clone());
            dc.round = config.round;
            dc.open = false;
            match start_directory(dc.clone()).await {
                Ok(handle) => {
                    // a restart comes back on the same metrics port
                    dc.metrics = handle.metrics_addr();
                    slots.push(AuthoritySlot {
                        config: dc,
                        handle: Some(handle),
                    });
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        match failed {
            None => return Ok((authorities, slots)),
            Some(e) => {
                for slot in slots {
                    if let Some(h) = slot.handle {
                        h.shutdown().await;
                    }
                }
                if config.directory_port != 0 {
                    return Err(e);
                }
                last_error = Some(e);
            }
        }
    }
    Err(last_error.unwrap_or_else(|| anyhow!("the authorities did not start")))
}
