//! The chassis a mixnode and a gateway are both built on: what a node is
//! besides what it does with packets.
//!
//! A [`Chassis`] holds the node's identity (`identity_private.pem`), its
//! Sphinx keys by epoch and their replay filters ([`crate::epochs`]), its
//! counters ([`crate::stats`]), its metrics endpoint, the topology it
//! trusts ([`trust`]: pinned or first-use directory key, the next hops it
//! may send to) and the announcer that signs and posts its descriptor
//! ([`announce`]); and one cancellation token that stops all of it, also when
//! the node is dropped. Rooms: [`flags`] (the command-line flags every node
//! binary shares), [`metrics`] (the counters every node with packets
//! exports), [`announce`], [`trust`].

pub(crate) mod announce;
pub mod flags;
pub(crate) mod metrics;
pub(crate) mod trust;

pub use metrics::DROP_REASONS;

use crate::epochs::{start_keys, EpochSettings, SphinxKeys};
use crate::keyfiles::load_or_create_identity_key;
use crate::metrics::Render;
use crate::stats::{spawn_stats_logger, NodeStats};
use anyhow::{anyhow, bail, Result};
use ed25519_dalek::SigningKey;
use nym_wire::authority::Authorities;
use nym_wire::topology::{paths, EpochKeyJson, GatewayJson, MixNodeJson, Topology};
use serde::Serialize;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::{CancellationToken, DropGuard};
use trust::{HopFilter, TopologyTrust, TrustRoot};
pub use trust::{TopologyState, REFUSAL_REASONS};

/// What a node is: its name in logs and in `nym_node_info{role}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Mixnode,
    Gateway,
}

impl Role {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Role::Mixnode => "mixnode",
            Role::Gateway => "gateway",
        }
    }
}

/// What the chassis is told: the part of `MixnodeConfig` and `GatewayConfig`
/// they have in common.
pub(crate) struct ChassisConfig<'a> {
    pub(crate) role: Role,
    pub(crate) data_dir: &'a Path,
    /// The network's authorities (exclusive with `directory`).
    pub(crate) authorities: Option<&'a Authorities>,
    /// Directory URL; None (and no authorities): no announcements, no
    /// topology, any next hop.
    pub(crate) directory: Option<&'a str>,
    /// `--directory-key`; None: trusted on first use.
    pub(crate) directory_key: Option<[u8; 32]>,
    /// Without a directory, the key epochs; with one, everything but the
    /// length, which comes from the authorities' document.
    pub(crate) epochs: &'a EpochSettings,
    /// `--epoch-secs` when given: a document stating another length stops the start.
    pub(crate) expected_epoch_secs: Option<u64>,
    /// `--metrics`.
    pub(crate) metrics: Option<SocketAddr>,
}

/// A node's identity, keys, counters, metrics endpoint, trusted topology and
/// announcer, stopped together.
pub(crate) struct Chassis {
    role: Role,
    pub(crate) identity: SigningKey,
    pub(crate) keys: Arc<SphinxKeys>,
    pub(crate) stats: Arc<NodeStats>,
    /// The next hops the last verified topology allows (with a directory).
    pub(crate) hops: Option<Arc<HopFilter>>,
    metrics_addr: Option<SocketAddr>,
    pub(crate) cancel: CancellationToken,
    /// Dropping the node without `shutdown` still stops it.
    _stop_on_drop: DropGuard,
}

impl Chassis {
    /// Loads (or makes) the identity and the Sphinx keys, starts the key
    /// rotation and, with `config.metrics`, the metrics endpoint (showing
    /// what `render` makes of the node's counters). With a directory, the
    /// topology is trusted as [`trust`] says, and `next_hops` names the hops
    /// a verified topology allows.
    pub(crate) async fn start(
        config: ChassisConfig<'_>,
        next_hops: impl Fn(&Topology) -> HashSet<SocketAddr> + Send + Sync + 'static,
        render: impl FnOnce(Arc<NodeStats>) -> Render,
    ) -> Result<Chassis> {
        let identity = load_or_create_identity_key(config.data_dir)?;
        let root = match (config.authorities, config.directory) {
            (Some(_), Some(_)) => bail!("a node takes either authorities or one directory, not both"),
            (Some(a), None) => Some(TrustRoot::Authorities(a.clone())),
            (None, Some(url)) => Some(match config.directory_key {
                Some(key) => TrustRoot::Authorities(Authorities::single(key, url)),
                None => TrustRoot::FirstUse { url: url.to_string() },
            }),
            (None, None) => None,
        };
        let trust = root
            .map(|r| TopologyTrust::new(r, config.data_dir.to_path_buf()))
            .transpose()?;
        let mut epochs = config.epochs.clone();
        if let Some(trust) = &trust {
            epochs.epoch_secs = epoch_secs_from_document(trust, config.expected_epoch_secs).await?;
            epochs
                .validate()
                .map_err(|e| anyhow!("the authorities' document: {e:#}"))?;
            trust.set_epoch_secs(epochs.epoch_secs);
        }
        let trust_metrics = trust.as_ref().map(|t| t.metrics.clone());
        let hops = trust.map(|trust| Arc::new(HopFilter::new(trust, next_hops)));
        let stats = NodeStats::new();
        let cancel = CancellationToken::new();
        let _stop_on_drop = cancel.clone().drop_guard();
        let keys = start_keys(config.data_dir, epochs, stats.clone(), cancel.clone())?;
        let render = render(stats.clone());
        let render: Render = match trust_metrics {
            Some(topology) => Arc::new(move |out| {
                render(out);
                topology.render(out);
            }),
            None => render,
        };
        let metrics_addr = crate::metrics::start(config.metrics, config.role.name(), render, &cancel).await?;
        Ok(Chassis {
            role: config.role,
            identity,
            keys,
            stats,
            hops,
            metrics_addr,
            cancel,
            _stop_on_drop,
        })
    }

    /// The ed25519 identity's public key.
    pub(crate) fn identity_key(&self) -> [u8; 32] {
        self.identity.verifying_key().to_bytes()
    }

    pub(crate) fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The authorities topologies are verified with (with one directory:
    /// its pinned key, or the one learned on first use; None before that,
    /// and without a directory).
    pub(crate) fn authorities(&self) -> Option<Authorities> {
        self.hops.as_ref().and_then(|h| h.trust.authorities())
    }

    /// With one authority, its key (pinned, or learned on first use).
    pub(crate) fn directory_key(&self) -> Option<[u8; 32]> {
        self.authorities()
            .filter(|a| a.list().len() == 1)
            .map(|a| a.list()[0].key)
    }

    /// Where the node stands with its topology (None without a directory).
    pub(crate) fn topology_state(&self) -> Option<TopologyState> {
        self.hops.as_ref().map(|h| h.trust.state())
    }

    /// Starts fetching the topology every `every` (with a directory).
    pub(crate) fn spawn_topology_refresher(&self, every: Duration) {
        if let Some(h) = &self.hops {
            h.spawn_refresher(every, self.cancel.clone());
        }
    }

    /// Logs the counters every `interval` as `name`.
    pub(crate) fn spawn_stats_logger(&self, name: String, interval: Duration) {
        spawn_stats_logger(name, self.stats.clone(), interval, self.cancel.clone());
    }

    /// `unsigned` with the keys of `seq`'s epoch and the next, signed with
    /// `seq` (Unix ms) by the identity.
    pub(crate) fn sign_descriptor<D: Descriptor>(&self, unsigned: &D, seq: u64) -> D {
        sign_descriptor(unsigned, &self.keys, &self.identity, seq)
    }

    /// With a directory: announces `unsigned`, signed afresh, every
    /// `interval`, to every authority (each its own announcer).
    pub(crate) fn spawn_announcer<D: Descriptor>(&self, unsigned: D, interval: Duration) {
        let Some(hops) = &self.hops else { return };
        for client in hops.trust.clients() {
            let (identity, keys, unsigned) = (self.identity.clone(), self.keys.clone(), unsigned.clone());
            let sign = move |seq| sign_descriptor(&unsigned, &keys, &identity, seq);
            announce::spawn_announcer(client.clone(), D::PATH, sign, interval, self.cancel.clone());
        }
    }

    /// The start line's word on the directory key and the metrics URL, each
    /// after `sep` (empty when there is nothing to say).
    pub(crate) fn describe(&self, sep: &str) -> String {
        let directory = match (&self.hops, self.authorities()) {
            (None, _) => String::new(),
            (Some(_), Some(a)) if a.list().len() == 1 => {
                format!("{sep} directory key {} (pinned)", a.list()[0].key_b58())
            }
            (Some(_), Some(a)) => format!(
                "{sep} {} authorities ({}), {} signatures needed",
                a.list().len(),
                a.list().iter().map(|x| x.url.as_str()).collect::<Vec<_>>().join(", "),
                a.threshold()
            ),
            (Some(_), None) => format!("{sep} directory key: trusted on first use"),
        };
        let metrics = self
            .metrics_addr
            .map(|a| format!("{sep} metrics {}", crate::metrics::url(a)))
            .unwrap_or_default();
        format!("{directory}{metrics}")
    }

    /// Stops the node: everything cancelled, `tasks` awaited, then, with the
    /// worker `threads` joined (the replay filters are complete), the filters
    /// saved and marked clean.
    pub(crate) async fn stop(
        &self,
        tasks: Vec<tokio::task::JoinHandle<()>>,
        threads: Vec<std::thread::JoinHandle<()>>,
    ) -> Stopped {
        self.cancel.cancel();
        for t in tasks {
            let _ = t.await;
        }
        let keys = self.keys.clone();
        let saved = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
            keys.save(true)
        })
        .await;
        Stopped { role: self.role, saved }
    }
}

/// How saving the replay filters at shutdown went; logged by [`Stopped::log`].
pub(crate) struct Stopped {
    role: Role,
    saved: std::result::Result<Result<()>, tokio::task::JoinError>,
}

impl Stopped {
    /// `<role> <name> stopped; ...`.
    pub(crate) fn log(self, name: impl std::fmt::Display) {
        let role = self.role.name();
        match self.saved {
            Ok(Ok(())) => tracing::info!("{role} {name} stopped; replay filters saved"),
            Ok(Err(e)) => tracing::error!("{role} {name} stopped; {e:#}"),
            Err(e) => tracing::error!("{role} {name} stopped; saving replay filters failed: {e}"),
        }
    }
}

/// The key epoch length the authorities' document states, fetched (and
/// retried, logging why) until one verifies; `expected` (`--epoch-secs`)
/// must match it.
async fn epoch_secs_from_document(trust: &TopologyTrust, expected: Option<u64>) -> Result<u64> {
    let urls: Vec<&str> = trust.clients().iter().map(|c| c.base()).collect();
    tracing::info!(
        "fetching the topology document from {} for the network's key epoch length",
        urls.join(", ")
    );
    let never = CancellationToken::new();
    let document = trust
        .wait_for_document(&never)
        .await
        .ok_or_else(|| anyhow!("stopped"))?;
    let secs = document.epoch_length_secs;
    if let Some(want) = expected {
        if want != secs {
            bail!(
                "--epoch-secs {want} but the authorities' document states key epochs of {secs} s: drop --epoch-secs \
                 (the node takes the length from the document) or check that this is the network you meant"
            );
        }
    }
    Ok(secs)
}

/// A node's descriptor, as it is announced.
pub(crate) trait Descriptor: Clone + Serialize + Send + Sync + 'static {
    /// Where the directory takes it.
    const PATH: &'static str;
    /// Puts in the Sphinx keys to publish (and the one-key field older
    /// readers use: the first of them).
    fn set_keys(&mut self, keys: Vec<EpochKeyJson>);
    fn sign(&mut self, identity: &SigningKey, seq: u64);
}

impl Descriptor for MixNodeJson {
    const PATH: &'static str = paths::MIXNODES;
    fn set_keys(&mut self, keys: Vec<EpochKeyJson>) {
        self.pub_key = keys.first().map(|k| k.key.clone()).unwrap_or_default();
        self.sphinx_keys = keys;
    }
    fn sign(&mut self, identity: &SigningKey, seq: u64) {
        MixNodeJson::sign(self, identity, seq)
    }
}

impl Descriptor for GatewayJson {
    const PATH: &'static str = paths::GATEWAYS;
    fn set_keys(&mut self, keys: Vec<EpochKeyJson>) {
        self.sphinx_key = keys.first().map(|k| k.key.clone()).unwrap_or_default();
        self.sphinx_keys = keys;
    }
    fn sign(&mut self, identity: &SigningKey, seq: u64) {
        GatewayJson::sign(self, identity, seq)
    }
}

fn sign_descriptor<D: Descriptor>(unsigned: &D, keys: &SphinxKeys, identity: &SigningKey, seq: u64) -> D {
    let mut d = unsigned.clone();
    d.set_keys(keys.published(seq));
    d.sign(identity, seq);
    d
}
