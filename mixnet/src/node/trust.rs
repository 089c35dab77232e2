//! How a node (gateway or mixnode) decides which topology to believe: the
//! document must pass `nym_wire::signed::verify_topology_json` with the
//! pinned directory key (`--directory-key`), or else with the key it trusted
//! on first use, remembered in its data dir (`directory_key.txt`).

use crate::http::DirectoryClient;
use crate::keyfiles::{read_learned_directory_key, write_learned_directory_key, LEARNED_DIRECTORY_KEY_FILE};
use anyhow::{anyhow, Result};
use nym_wire::address::encode_key;
use nym_wire::authority::Authorities;
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
    /// `issuedAt` of the newest document accepted: an older one (a replay
    /// of a document still within its validity) is refused.
    newest: Mutex<u64>,
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
        Ok(TopologyTrust { client, key: Mutex::new(key), pinned: pinned.is_some(), data_dir, last_problem: Mutex::new(None), newest: Mutex::new(0) })
    }

    pub(crate) fn directory_key(&self) -> Option<[u8; 32]> {
        *self.key.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Checks a fetched document; on first use, remembers the key.
    pub(crate) fn verify(&self, json: &TopologyJson) -> Result<VerifiedTopology> {
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        let key = self.directory_key();
        let authorities = key.map(|k| Authorities::single(k, self.client.base()));
        let verified =
            verify_topology_json(json, authorities.as_ref(), now_ms, nym_wire::VERSION).map_err(|e| anyhow!("{e}"))?;
        {
            let mut newest = self.newest.lock().unwrap_or_else(|p| p.into_inner());
            if verified.issued_at() < *newest {
                return Err(anyhow!(
                    "the topology was issued {} ms before the newest one already accepted (a replayed document?)",
                    *newest - verified.issued_at()
                ));
            }
            *newest = verified.issued_at();
        }
        if key.is_none() {
            let mut slot = self.key.lock().unwrap_or_else(|p| p.into_inner());
            if let (None, Some(learned)) = (*slot, verified.document.signers.learned) {
                *slot = Some(learned);
                tracing::info!(
                    "trusting directory key {} on first use (saved in {}; pin it with --directory-key)",
                    encode_key(&learned),
                    self.data_dir.join(LEARNED_DIRECTORY_KEY_FILE).display()
                );
                if let Err(e) = write_learned_directory_key(&self.data_dir, &learned) {
                    tracing::warn!("cannot save the directory key: {e:#}");
                }
            }
        }
        Ok(verified)
    }

    /// Fetches and verifies the current document. A failure is logged (once
    /// per change of reason) and returned; the caller keeps what it had.
    pub(crate) async fn fetch(&self) -> Result<VerifiedTopology> {
        // a document signed by the right key but not usable yet (a network
        // still starting: a layer or the gateways missing) before we ever had
        // a good one is expected: logged at info, not as a warning
        let mut starting = false;
        let result = match self.client.topology().await {
            Ok(json) => self.verify(&json).map_err(|e| {
                starting = *self.newest.lock().unwrap_or_else(|p| p.into_inner()) == 0
                    && json
                        .verify_signatures(self.directory_key().map(|k| Authorities::single(k, self.client.base())).as_ref())
                        .is_ok();
                anyhow!("refused the directory's topology (keeping the last good one): {e:#}")
            }),
            Err(e) => Err(anyhow!("cannot fetch the topology (keeping the last good one): {e:#}")),
        };
        let problem = result.as_ref().err().map(|e| format!("{e:#}"));
        let mut last = self.last_problem.lock().unwrap_or_else(|p| p.into_inner());
        if *last != problem {
            match &problem {
                Some(p) if starting => tracing::info!("no usable topology yet: {p}"),
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

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use nym_wire::topology::{GatewayJson, MixNodeJson};
    use x25519_dalek::{PublicKey, StaticSecret};

    fn x25519(seed: u8) -> String {
        encode_key(PublicKey::from(&StaticSecret::from([seed; 32])).as_bytes())
    }

    /// The keys of the epoch of `at` (from `seed`) and the next.
    fn keys(seed: u8, at: u64) -> Vec<nym_wire::topology::EpochKeyJson> {
        let epoch = nym_wire::epoch::epoch_at(at, 3_600_000);
        vec![
            nym_wire::topology::EpochKeyJson { epoch, key: x25519(seed) },
            nym_wire::topology::EpochKeyJson { epoch: epoch + 1, key: x25519(seed.wrapping_add(50)) },
        ]
    }

    fn document(directory: &SigningKey, issued_at: u64) -> TopologyJson {
        let mix_nodes = (1..=3u8)
            .map(|l| {
                let mut m = MixNodeJson {
                    host: format!("127.0.0.1:{l}"),
                    pub_key: x25519(l),
                    sphinx_keys: keys(l, issued_at),
                    layer: l,
                    version: nym_wire::VERSION.into(),
                    ..MixNodeJson::default()
                };
                m.sign(&SigningKey::from_bytes(&[l; 32]), issued_at);
                m
            })
            .collect();
        let mut g = GatewayJson {
            client_listener: "ws://127.0.0.1:9".into(),
            mixnet_listener: "127.0.0.1:8".into(),
            sphinx_key: x25519(8),
            sphinx_keys: keys(8, issued_at),
            version: nym_wire::VERSION.into(),
            ..GatewayJson::default()
        };
        g.sign(&SigningKey::from_bytes(&[8; 32]), issued_at);
        let mut t = TopologyJson {
            mix_nodes,
            gateway_nodes: vec![g],
            epoch_length_secs: 3600,
            round: issued_at / 1000,
            issued_at,
            expires_at: issued_at + 60_000,
            served_by: encode_key(directory.verifying_key().as_bytes()),
            ..TopologyJson::default()
        };
        t.sign(directory);
        t
    }

    fn now() -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
    }

    #[test]
    fn first_use_keeps_the_key_and_older_or_foreign_documents_are_refused() {
        let data = tempfile::tempdir().unwrap();
        let client = DirectoryClient::new("http://127.0.0.1:1").unwrap();
        let trust = TopologyTrust::new(client.clone(), None, data.path().to_path_buf()).unwrap();
        let (directory, other) = (SigningKey::from_bytes(&[100; 32]), SigningKey::from_bytes(&[101; 32]));
        let t0 = now() - 10_000;
        trust.verify(&document(&directory, t0)).unwrap();
        assert_eq!(trust.directory_key(), Some(directory.verifying_key().to_bytes()));
        let saved = std::fs::read_to_string(data.path().join(LEARNED_DIRECTORY_KEY_FILE)).unwrap();
        assert_eq!(saved.trim(), encode_key(directory.verifying_key().as_bytes()));
        // the same document again, and a newer one, pass
        trust.verify(&document(&directory, t0)).unwrap();
        trust.verify(&document(&directory, t0 + 1000)).unwrap();
        // an older one (still valid) is a replay
        let e = trust.verify(&document(&directory, t0 + 500)).unwrap_err().to_string();
        assert!(e.contains("before the newest one"), "{e}");
        // another key, even newer, is not believed
        let e = trust.verify(&document(&other, t0 + 2000)).unwrap_err().to_string();
        assert!(e.contains("not signed by the pinned directory key"), "{e}");
        // a restarted node keeps the key it learned; a pinned key wins
        let again = TopologyTrust::new(client.clone(), None, data.path().to_path_buf()).unwrap();
        assert_eq!(again.directory_key(), Some(directory.verifying_key().to_bytes()));
        assert!(again.verify(&document(&other, t0)).is_err());
        let pinned = TopologyTrust::new(client, Some(other.verifying_key().to_bytes()), data.path().to_path_buf()).unwrap();
        pinned.verify(&document(&other, t0)).unwrap();
    }
}
