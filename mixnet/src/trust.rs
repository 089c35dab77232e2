//! How a node (gateway or mixnode) decides which topology to believe: the
//! document must pass `nym_wire::signed::verify_topology_json` with the
//! pinned directory key (`--directory-key`), or else with the key it trusted
//! on first use, remembered in its data dir (`directory_key.txt`).

use crate::http::DirectoryClient;
use crate::keyfiles::{read_learned_directory_key, write_learned_directory_key, LEARNED_DIRECTORY_KEY_FILE};
use anyhow::{anyhow, Result};
use nym_wire::address::encode_key;
use nym_wire::signed::{verify_topology_json, VerifiedTopology};
use nym_wire::topology::TopologyJson;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

pub(crate) struct TopologyTrust {
    client: DirectoryClient,
    /// The key documents must be signed with (pinned, or learned).
    key: Mutex<Option<[u8; 32]>>,
    pinned: bool,
    data_dir: PathBuf,
    /// The last refusal logged (logged again only when it changes).
    last_problem: Mutex<Option<String>>,
}

impl TopologyTrust {
    /// `pinned` wins over a key learned earlier; without either, the first
    /// verified document's key is trusted and saved.
    pub(crate) fn new(client: DirectoryClient, pinned: Option<[u8; 32]>, data_dir: PathBuf) -> Result<Self> {
        let key = match pinned {
            Some(k) => Some(k),
            None => read_learned_directory_key(&data_dir)?,
        };
        if let (None, Some(k)) = (pinned, key) {
            tracing::info!("trusting directory key {} (learned earlier, {})", encode_key(&k), LEARNED_DIRECTORY_KEY_FILE);
        }
        Ok(TopologyTrust { client, key: Mutex::new(key), pinned: pinned.is_some(), data_dir, last_problem: Mutex::new(None) })
    }

    pub(crate) fn directory_key(&self) -> Option<[u8; 32]> {
        *self.key.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Checks a fetched document; on first use, remembers the key.
    pub(crate) fn verify(&self, json: &TopologyJson) -> Result<VerifiedTopology> {
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        let key = self.directory_key();
        let verified = verify_topology_json(json, key.as_ref(), now_ms, nym_wire::VERSION).map_err(|e| anyhow!("{e}"))?;
        if key.is_none() {
            let mut slot = self.key.lock().unwrap_or_else(|p| p.into_inner());
            if slot.is_none() {
                *slot = Some(verified.directory_key);
                tracing::info!(
                    "trusting directory key {} on first use (saved in {}; pin it with --directory-key)",
                    encode_key(&verified.directory_key),
                    self.data_dir.join(LEARNED_DIRECTORY_KEY_FILE).display()
                );
                if let Err(e) = write_learned_directory_key(&self.data_dir, &verified.directory_key) {
                    tracing::warn!("cannot save the directory key: {e:#}");
                }
            }
        }
        Ok(verified)
    }

    /// Fetches and verifies the current document. A failure is logged (once
    /// per change of reason) and returned; the caller keeps what it had.
    pub(crate) async fn fetch(&self) -> Result<VerifiedTopology> {
        let result = match self.client.topology().await {
            Ok(json) => self.verify(&json).map_err(|e| anyhow!("refused the directory's topology (keeping the last good one): {e:#}")),
            Err(e) => Err(anyhow!("cannot fetch the topology (keeping the last good one): {e:#}")),
        };
        let problem = result.as_ref().err().map(|e| format!("{e:#}"));
        let mut last = self.last_problem.lock().unwrap_or_else(|p| p.into_inner());
        if *last != problem {
            match &problem {
                Some(p) => tracing::warn!("{p}"),
                None => tracing::info!("topology from {} verified{}", self.client.base(), if self.pinned { " (pinned key)" } else { "" }),
            }
            *last = problem;
        }
        result
    }
}

/// Which of a topology's addresses a node may send to.
type SelectHops = Box<dyn Fn(&nym_wire::topology::Topology) -> HashSet<SocketAddr> + Send + Sync>;

/// The next hops a node may send to, from its last verified topology.
pub(crate) struct HopFilter {
    trust: TopologyTrust,
    select: SelectHops,
    allowed: RwLock<HashSet<SocketAddr>>,
    /// When the last fetch started; refreshes are serialised through it.
    last_attempt: tokio::sync::Mutex<Option<Instant>>,
}

/// Refreshes asked for by unknown next hops come at most this often.
const MIN_REFRESH_GAP: Duration = Duration::from_millis(250);

impl HopFilter {
    pub(crate) fn new(
        trust: TopologyTrust,
        select: impl Fn(&nym_wire::topology::Topology) -> HashSet<SocketAddr> + Send + Sync + 'static,
    ) -> Self {
        HopFilter { trust, select: Box::new(select), allowed: RwLock::default(), last_attempt: tokio::sync::Mutex::new(None) }
    }

    pub(crate) fn allowed(&self, addr: &SocketAddr) -> bool {
        self.allowed.read().unwrap_or_else(|p| p.into_inner()).contains(addr)
    }

    pub(crate) fn directory_key(&self) -> Option<[u8; 32]> {
        self.trust.directory_key()
    }

    async fn fetch_locked(&self, last: &mut Option<Instant>) {
        *last = Some(Instant::now());
        if let Ok(verified) = self.trust.fetch().await {
            let hops = (self.select)(&verified.topology);
            *self.allowed.write().unwrap_or_else(|p| p.into_inner()) = hops;
        }
    }

    /// The periodic refresh.
    pub(crate) async fn refresh(&self) {
        let mut last = self.last_attempt.lock().await;
        self.fetch_locked(&mut last).await;
    }

    /// A next hop was not allowed at `seen`: fetch again unless a fetch
    /// started since then (waiting out [`MIN_REFRESH_GAP`] after the last one).
    pub(crate) async fn recheck(&self, seen: Instant) {
        let mut last = self.last_attempt.lock().await;
        if let Some(t) = *last {
            if t >= seen {
                return;
            }
            tokio::time::sleep_until((t + MIN_REFRESH_GAP).into()).await;
        }
        self.fetch_locked(&mut last).await;
    }

    /// Refreshes every `every` until cancelled.
    pub(crate) fn spawn_refresher(self: &Arc<Self>, every: Duration, cancel: CancellationToken) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tick.tick() => {}
                }
                me.refresh().await;
            }
        });
    }
}
