//! How a node (gateway or mixnode) decides which topology to believe, and
//! where it gets it.
//!
//! A document must pass `nym_wire::signed::verify_topology_cached` (the one
//! check, skipping descriptors verified in the document in use) with the
//! node's authorities: the authorities file (`--authorities`, threshold
//! `--threshold`, default a majority), or one directory with its pinned key
//! (`--directory-key`), or one directory whose key was trusted on first use
//! and remembered in the data dir (`directory_key.txt`). A document issued
//! before the one in use is refused (a replay).
//!
//! Fetching fails over: the node asks one authority (a random one first,
//! then the one that last answered), and when it is unreachable, slow (the
//! HTTP client's timeout) or its document is refused, the next one, until
//! one gives an acceptable document. With none, the last good document is
//! used until it expires; then the node has no current topology
//! ([`TopologyState::Expired`]), forwards nowhere, and says so once, with
//! every authority's last error. The next acceptable document restores it.

use crate::http::DirectoryClient;
use crate::keyfiles::{read_learned_directory_key, write_learned_directory_key, LEARNED_DIRECTORY_KEY_FILE};
use crate::metrics::{Exposition, Kind};
use anyhow::{anyhow, Result};
use nym_wire::address::encode_key;
use nym_wire::authority::Authorities;
use nym_wire::signed::{verify_document, verify_topology_cached, DescriptorCache, VerifiedDocument, MAX_CLOCK_SKEW_MS};
use nym_wire::topology::{Topology, TopologyJson};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Whom a node believes: a list of authorities with a threshold, or one
/// directory whose key it will trust on first use.
#[derive(Debug, Clone)]
pub(crate) enum TrustRoot {
    Authorities(Authorities),
    FirstUse { url: String },
}

/// Where a node stands with its topology (`Mixnode::topology_state`,
/// `Gateway::topology_state`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopologyState {
    /// No document verified yet.
    Waiting,
    /// An unexpired document, last fetched from `authority` (its URL).
    Current {
        authority: String,
        issued_at: u64,
        expires_at: u64,
    },
    /// The last good document expired at `expired_at` (Unix ms) and no
    /// authority has given a newer acceptable one since: the node forwards
    /// nowhere until one does.
    Expired { expired_at: u64 },
}

/// Why a document was refused: the `reason` label of `nym_topology_refused_total`.
pub const REFUSAL_REASONS: [&str; 4] = ["signatures", "time", "replayed", "invalid"];

/// What a node's `/metrics` says about its topology.
pub(crate) struct TrustMetrics {
    urls: Vec<String>,
    /// Index of the authority the last acceptable document came from (usize::MAX: none yet).
    last_from: AtomicUsize,
    failovers: AtomicU64,
    refused: [AtomicU64; REFUSAL_REASONS.len()],
    /// `expiresAt` of the document in use (0: none).
    expires_at: AtomicU64,
}

impl TrustMetrics {
    pub(crate) fn render(&self, out: &mut Exposition) {
        let from = self.last_from.load(Ordering::Relaxed);
        let series: Vec<(&str, u64)> = self
            .urls
            .iter()
            .enumerate()
            .map(|(i, u)| (u.as_str(), u64::from(i == from)))
            .collect();
        out.labelled(
            "nym_topology_authority",
            Kind::Gauge,
            "1 for the authority the node last fetched an acceptable topology from, 0 for the others.",
            "url",
            &series,
        );
        out.counter(
            "nym_topology_failovers_total",
            "Times a topology fetch moved on to the next authority because the one asked failed or was refused.",
            self.failovers.load(Ordering::Relaxed),
        );
        let refused: Vec<(&str, u64)> = REFUSAL_REASONS
            .iter()
            .zip(&self.refused)
            .map(|(r, c)| (*r, c.load(Ordering::Relaxed)))
            .collect();
        out.labelled(
            "nym_topology_refused_total",
            Kind::Counter,
            "Topology documents fetched and refused, by reason.",
            "reason",
            &refused,
        );
        let expires = self.expires_at.load(Ordering::Relaxed);
        out.gauge(
            "nym_topology_current",
            "1 while the node holds an unexpired verified topology, else 0.",
            u64::from(expires > now_ms()),
        );
        out.gauge(
            "nym_topology_expires_at_seconds",
            "Unix time the topology in use expires (0: none).",
            expires / 1000,
        );
    }
}

/// What the fetch loop remembers between fetches.
struct FetchState {
    /// The authority asked first next time.
    next: usize,
    /// `issuedAt` of the newest document accepted: an older one is a replay.
    newest: u64,
    /// Each authority's last error (None: its last answer was accepted).
    errors: Vec<Option<String>>,
    /// The last problem logged (logged again only when it changes).
    last_problem: Option<String>,
    /// "No current topology" was said for the document that expired at this time.
    expiry_logged: u64,
    /// A document's other key epoch length was warned about (0: none).
    epoch_warned: u64,
}

/// What a fetch got: the verified document and, unless only the document
/// was asked for, the topology it describes.
pub(crate) struct Fetched {
    pub(crate) document: VerifiedDocument,
    pub(crate) topology: Option<Topology>,
}

pub(crate) struct TopologyTrust {
    clients: Vec<DirectoryClient>,
    /// Whom documents must be signed by (None: first use, nothing learned yet).
    authorities: RwLock<Option<Authorities>>,
    pinned: bool,
    data_dir: PathBuf,
    state: Mutex<FetchState>,
    pub(crate) metrics: Arc<TrustMetrics>,
    /// The key epoch length the node's keys use (0: not known yet): a document
    /// with another is warned about.
    epoch_secs: AtomicU64,
    /// Descriptors verified in the document in use: a refresh checks only new ones.
    descriptors: Mutex<DescriptorCache>,
}

impl TopologyTrust {
    /// With authorities, their keys; on first use a key learned earlier
    /// (`directory_key.txt`), or else the first verified document's key,
    /// which is then saved.
    pub(crate) fn new(root: TrustRoot, data_dir: PathBuf) -> Result<Self> {
        let (urls, authorities, pinned) = match root {
            TrustRoot::Authorities(a) => (
                a.list().iter().map(|x| x.url.clone()).collect::<Vec<_>>(),
                Some(a),
                true,
            ),
            TrustRoot::FirstUse { url } => {
                let learned = read_learned_directory_key(&data_dir)?;
                if let Some(k) = learned {
                    tracing::info!(
                        "trusting directory key {} (learned earlier, {})",
                        encode_key(&k),
                        LEARNED_DIRECTORY_KEY_FILE
                    );
                }
                let client = DirectoryClient::new(&url)?;
                let authorities = learned.map(|k| Authorities::single(k, client.base()));
                (vec![client.base().to_string()], authorities, false)
            }
        };
        let clients = urls
            .iter()
            .map(|u| DirectoryClient::new(u))
            .collect::<Result<Vec<_>>>()?;
        let n = clients.len();
        let metrics = Arc::new(TrustMetrics {
            urls: clients.iter().map(|c| c.base().to_string()).collect(),
            last_from: AtomicUsize::new(usize::MAX),
            failovers: AtomicU64::new(0),
            refused: Default::default(),
            expires_at: AtomicU64::new(0),
        });
        let state = FetchState {
            next: if n > 1 { rand::random_range(0..n) } else { 0 },
            newest: 0,
            errors: vec![None; n],
            last_problem: None,
            expiry_logged: 0,
            epoch_warned: 0,
        };
        Ok(TopologyTrust {
            clients,
            authorities: RwLock::new(authorities),
            pinned,
            data_dir,
            state: Mutex::new(state),
            metrics,
            epoch_secs: AtomicU64::new(0),
            descriptors: Mutex::new(DescriptorCache::default()),
        })
    }

    /// One HTTP client per authority, in file order (where to announce).
    pub(crate) fn clients(&self) -> &[DirectoryClient] {
        &self.clients
    }

    /// The authorities documents are verified with (None before a
    /// first-use key is learned).
    pub(crate) fn authorities(&self) -> Option<Authorities> {
        self.authorities.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The key epoch length the node's keys use: a document with another is warned about.
    pub(crate) fn set_epoch_secs(&self, secs: u64) {
        self.epoch_secs.store(secs, Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FetchState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where the node stands now.
    pub(crate) fn state(&self) -> TopologyState {
        let expires_at = self.metrics.expires_at.load(Ordering::Relaxed);
        let from = self.metrics.last_from.load(Ordering::Relaxed);
        if expires_at == 0 {
            return TopologyState::Waiting;
        }
        if expires_at <= now_ms() {
            return TopologyState::Expired { expired_at: expires_at };
        }
        let authority = self.clients.get(from).map(|c| c.base().to_string()).unwrap_or_default();
        TopologyState::Current {
            authority,
            issued_at: self.lock().newest,
            expires_at,
        }
    }

    /// Whether the document in use has not expired.
    pub(crate) fn is_current(&self) -> bool {
        self.metrics.expires_at.load(Ordering::Relaxed) > now_ms()
    }

    /// Checks a fetched document (only its signatures and times when
    /// `topology` is false); a document older than the newest accepted is
    /// refused; on first use, the key is remembered.
    pub(crate) fn verify(&self, json: &TopologyJson, topology: bool) -> Result<Fetched> {
        let now = now_ms();
        let authorities = self.authorities();
        let checked = if topology {
            let mut cache = self.descriptors.lock().unwrap_or_else(|p| p.into_inner());
            verify_topology_cached(json, authorities.as_ref(), now, nym_wire::VERSION, &mut cache).map(|v| Fetched {
                document: v.document,
                topology: Some(v.topology),
            })
        } else {
            verify_document(json, authorities.as_ref(), now).map(|document| Fetched {
                document,
                topology: None,
            })
        };
        let fetched = checked.map_err(|e| {
            let reason = if json.verify_signatures(authorities.as_ref()).is_err() {
                0
            } else if json.expires_at <= now || json.issued_at > now.saturating_add(MAX_CLOCK_SKEW_MS) {
                1
            } else {
                3
            };
            self.metrics.refused[reason].fetch_add(1, Ordering::Relaxed);
            anyhow!("{e}")
        })?;
        {
            let mut state = self.lock();
            if fetched.document.issued_at < state.newest {
                self.metrics.refused[2].fetch_add(1, Ordering::Relaxed);
                return Err(anyhow!(
                    "the topology was issued {} ms before the newest one already accepted (a replayed document?)",
                    state.newest - fetched.document.issued_at
                ));
            }
            state.newest = fetched.document.issued_at;
        }
        if authorities.is_none() {
            self.learn(&fetched.document);
        }
        Ok(fetched)
    }

    /// Trust on first use: pins the key that signed the first verified document.
    fn learn(&self, document: &VerifiedDocument) {
        let Some(learned) = document.signers.learned else {
            return;
        };
        let mut slot = self.authorities.write().unwrap_or_else(|p| p.into_inner());
        if slot.is_some() {
            return;
        }
        *slot = Some(Authorities::single(learned, self.clients[0].base()));
        tracing::info!(
            "trusting directory key {} on first use (saved in {}; pin it with --directory-key)",
            encode_key(&learned),
            self.data_dir.join(LEARNED_DIRECTORY_KEY_FILE).display()
        );
        if let Err(e) = write_learned_directory_key(&self.data_dir, &learned) {
            tracing::warn!("cannot save the directory key: {e:#}");
        }
    }

    async fn fetch_from(&self, i: usize, topology: bool) -> Result<Fetched> {
        let client = &self.clients[i];
        let json = client
            .topology()
            .await
            .map_err(|e| anyhow!("cannot fetch the topology: {e:#}"))?;
        self.verify(&json, topology)
            .map_err(|e| anyhow!("refused its topology: {e:#}"))
    }

    /// Fetches and verifies the current document from the first authority
    /// that gives an acceptable one (see the module doc). A failure is
    /// logged (once per change of reason) and returned; the caller keeps
    /// what it had.
    pub(crate) async fn fetch(&self, topology: bool) -> Result<Fetched> {
        let n = self.clients.len();
        let start = self.lock().next;
        let mut failures = Vec::new();
        for step in 0..n {
            let i = (start + step) % n;
            if step > 0 {
                self.metrics.failovers.fetch_add(1, Ordering::Relaxed);
            }
            match self.fetch_from(i, topology).await {
                Ok(fetched) => {
                    self.accepted(i, &fetched, topology, &failures);
                    return Ok(fetched);
                }
                Err(e) => {
                    let e = format!("{e:#}");
                    self.lock().errors[i] = Some(e.clone());
                    failures.push(format!("{}: {e}", self.clients[i].base()));
                }
            }
        }
        let why = failures.join("; ");
        let problem = if n == 1 {
            format!("no acceptable topology (keeping the last good one): {why}")
        } else {
            format!("no authority gave an acceptable topology (keeping the last good one): {why}")
        };
        let mut state = self.lock();
        if state.last_problem.as_deref() != Some(problem.as_str()) {
            // before the first good document, a network still starting (no
            // layer filled yet) is expected: said at info
            if state.newest == 0 && !problem.contains("signature") && !problem.contains("signed") {
                tracing::info!("{problem}");
            } else {
                tracing::warn!("{problem}");
            }
            state.last_problem = Some(problem);
        }
        let expired_at = self.metrics.expires_at.load(Ordering::Relaxed);
        if topology && expired_at != 0 && expired_at <= now_ms() && state.expiry_logged != expired_at {
            state.expiry_logged = expired_at;
            let each: Vec<String> = self
                .clients
                .iter()
                .zip(&state.errors)
                .map(|(c, e)| format!("{}: {}", c.base(), e.as_deref().unwrap_or("no error")))
                .collect();
            tracing::warn!(
                "no current topology exists: the last good one expired {} s ago and no authority gave a newer \
                 acceptable one; forwarding nowhere until one does. Each authority's last error: {}",
                (now_ms() - expired_at) / 1000,
                each.join("; ")
            );
        }
        Err(anyhow!("{}", state.last_problem.clone().unwrap_or_default()))
    }

    fn accepted(&self, i: usize, fetched: &Fetched, topology: bool, failures: &[String]) {
        let mut state = self.lock();
        state.errors[i] = None;
        state.next = i;
        let recovered = state.last_problem.is_some();
        state.last_problem = None;
        let url = self.clients[i].base();
        if !topology {
            tracing::info!(
                "topology document from {url} verified (key epochs of {} s)",
                fetched.document.epoch_length_secs
            );
            return;
        }
        let was = self
            .metrics
            .expires_at
            .swap(fetched.document.expires_at, Ordering::Relaxed);
        let previous = self.metrics.last_from.swap(i, Ordering::Relaxed);
        if was != 0 && was <= now_ms() {
            tracing::info!("a current topology again, from {url}");
        } else if recovered || previous != i {
            let skipped = if failures.is_empty() {
                String::new()
            } else {
                format!(" (after {})", failures.join("; "))
            };
            tracing::info!(
                "topology from {url} verified{}{skipped}",
                if self.pinned { "" } else { " (first-use key)" }
            );
        }
        let ours = self.epoch_secs.load(Ordering::Relaxed);
        let theirs = fetched.document.epoch_length_secs;
        if ours != 0 && theirs != ours && state.epoch_warned != theirs {
            state.epoch_warned = theirs;
            tracing::error!(
                "the authorities now state key epochs of {theirs} s but this node's keys use {ours} s: its descriptors \
                 will be refused; RESTART THE NODE to take the new epoch length"
            );
        }
    }

    /// At start: a verified document (signatures and times only: a network
    /// with no nodes yet has one), retried with backoff until one comes,
    /// logging why not. None when cancelled.
    pub(crate) async fn wait_for_document(&self, cancel: &CancellationToken) -> Option<VerifiedDocument> {
        let mut delay = Duration::from_millis(100);
        loop {
            if let Ok(fetched) = self.fetch(false).await {
                return Some(fetched.document);
            }
            tokio::select! {
                _ = cancel.cancelled() => return None,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }
}

/// Which of a topology's addresses a node may send to.
type SelectHops = Box<dyn Fn(&Topology) -> HashSet<SocketAddr> + Send + Sync>;

/// The next hops a node may send to, from its last verified topology while it has not expired.
pub(crate) struct HopFilter {
    pub(crate) trust: TopologyTrust,
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
        select: impl Fn(&Topology) -> HashSet<SocketAddr> + Send + Sync + 'static,
    ) -> Self {
        HopFilter {
            trust,
            select: Box::new(select),
            allowed: RwLock::default(),
            last_attempt: tokio::sync::Mutex::new(None),
        }
    }

    /// Whether `addr` is a next hop of the current (unexpired) topology.
    pub(crate) fn allowed(&self, addr: &SocketAddr) -> bool {
        self.trust.is_current() && self.allowed.read().unwrap_or_else(|p| p.into_inner()).contains(addr)
    }

    async fn fetch_locked(&self, last: &mut Option<Instant>) {
        *last = Some(Instant::now());
        if let Ok(Fetched {
            topology: Some(topology),
            ..
        }) = self.trust.fetch(true).await
        {
            let hops = (self.select)(&topology);
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
            nym_wire::topology::EpochKeyJson {
                epoch,
                key: x25519(seed),
            },
            nym_wire::topology::EpochKeyJson {
                epoch: epoch + 1,
                key: x25519(seed.wrapping_add(50)),
            },
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

    fn first_use(data: &std::path::Path) -> TopologyTrust {
        TopologyTrust::new(
            TrustRoot::FirstUse {
                url: "http://127.0.0.1:1".into(),
            },
            data.to_path_buf(),
        )
        .unwrap()
    }

    fn key_of(t: &TopologyTrust) -> Option<[u8; 32]> {
        t.authorities().map(|a| a.list()[0].key)
    }

    #[test]
    fn first_use_keeps_the_key_and_older_or_foreign_documents_are_refused() {
        let data = tempfile::tempdir().unwrap();
        let trust = first_use(data.path());
        let (directory, other) = (SigningKey::from_bytes(&[100; 32]), SigningKey::from_bytes(&[101; 32]));
        let t0 = now_ms() - 10_000;
        trust.verify(&document(&directory, t0), true).unwrap();
        assert_eq!(key_of(&trust), Some(directory.verifying_key().to_bytes()));
        let saved = std::fs::read_to_string(data.path().join(LEARNED_DIRECTORY_KEY_FILE)).unwrap();
        assert_eq!(saved.trim(), encode_key(directory.verifying_key().as_bytes()));
        // the same document again, and a newer one, pass
        trust.verify(&document(&directory, t0), true).unwrap();
        trust.verify(&document(&directory, t0 + 1000), true).unwrap();
        // an older one (still valid) is a replay
        let e = trust
            .verify(&document(&directory, t0 + 500), true)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("before the newest one"), "{e}");
        // another key, even newer, is not believed
        let e = trust
            .verify(&document(&other, t0 + 2000), true)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("not signed by the pinned directory key"), "{e}");
        assert_eq!(trust.metrics.refused[2].load(Ordering::Relaxed), 1, "one replay");
        assert_eq!(trust.metrics.refused[0].load(Ordering::Relaxed), 1, "one bad signature");
        // a restarted node keeps the key it learned; a pinned key wins
        let again = first_use(data.path());
        assert_eq!(key_of(&again), Some(directory.verifying_key().to_bytes()));
        assert!(again.verify(&document(&other, t0), true).is_err());
        let pinned = Authorities::single(other.verifying_key().to_bytes(), "http://127.0.0.1:1");
        let pinned = TopologyTrust::new(TrustRoot::Authorities(pinned), data.path().to_path_buf()).unwrap();
        pinned.verify(&document(&other, t0), true).unwrap();
    }
}
