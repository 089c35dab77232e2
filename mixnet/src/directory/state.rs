//! The directory's state: the live descriptors by identity, every check an
//! announcement passes before it is listed, and the signed topology document
//! (cached while nothing changed).

use super::config::DirectoryConfig;
use super::metrics::AnnouncementCounters;
use super::refusals::{held, refuse, AnnounceRefusal as Why, Refused};
use crate::ratelimit::{RateLimiter, RateRefusal};
use axum::http::StatusCode;
use ed25519_dalek::SigningKey;
use nym_wire::address::encode_key;
use nym_wire::topology::{versions_compatible, Gateway, GatewayJson, MixNode, MixNodeJson, TopologyJson};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

struct Entry<T> {
    json: T,
    seen: Instant,
}

/// A node's descriptor, either role: what an announcement carries, and
/// what a vote lists (`super::consensus` adds its own rules to it).
#[derive(Clone)]
pub(super) enum Descriptor {
    Mix(MixNodeJson),
    Gateway(GatewayJson),
}

impl Descriptor {
    pub(super) fn seq(&self) -> u64 {
        match self {
            Descriptor::Mix(m) => m.seq,
            Descriptor::Gateway(g) => g.seq,
        }
    }

    pub(super) fn signature(&self) -> &str {
        match self {
            Descriptor::Mix(m) => &m.signature,
            Descriptor::Gateway(g) => &g.signature,
        }
    }

    pub(super) fn version(&self) -> &str {
        match self {
            Descriptor::Mix(m) => &m.version,
            Descriptor::Gateway(g) => &g.version,
        }
    }

    pub(super) fn sphinx_keys(&self) -> &[nym_wire::topology::EpochKeyJson] {
        match self {
            Descriptor::Mix(m) => &m.sphinx_keys,
            Descriptor::Gateway(g) => &g.sphinx_keys,
        }
    }
}

struct Cached {
    generation: u64,
    issued_at: u64,
    json: Arc<TopologyJson>,
    text: Arc<String>,
}

struct Inner {
    mixnodes: HashMap<[u8; 32], Entry<MixNodeJson>>,
    gateways: HashMap<[u8; 32], Entry<GatewayJson>>,
    /// Highest seq accepted per identity, kept beyond the entry's expiry
    /// (until the descriptor age makes the seq check moot).
    last_seq: HashMap<[u8; 32], u64>,
    sources: RateLimiter<IpAddr>,
    identities: RateLimiter<[u8; 32]>,
    /// Bumped on every change of what the document would say.
    generation: u64,
    cache: Option<Cached>,
}

/// The directory's state; cheap to clone.
#[derive(Clone)]
pub struct DirectoryState {
    inner: Arc<Mutex<Inner>>,
    config: Arc<DirectoryConfig>,
    key: Arc<SigningKey>,
    announcements: Arc<AnnouncementCounters>,
    /// A network of several authorities: the rounds (None: this one alone,
    /// whose document is its live view, signed on request).
    rounds: Option<Arc<super::rounds::Rounds>>,
}

fn unix_now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

fn same_socket(a: &str, b: &str) -> bool {
    match (a.parse::<SocketAddr>(), b.parse::<SocketAddr>()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a.eq_ignore_ascii_case(b),
    }
}

fn same_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/').eq_ignore_ascii_case(b.trim_end_matches('/'))
}

impl Inner {
    fn prune(&mut self, expiry: Duration, max_age_ms: u64, now_ms: u64) {
        let before = self.mixnodes.len() + self.gateways.len();
        self.mixnodes.retain(|_, e| e.seen.elapsed() <= expiry);
        self.gateways.retain(|_, e| e.seen.elapsed() <= expiry);
        if self.mixnodes.len() + self.gateways.len() != before {
            self.generation += 1;
        }
        // A seq older than the descriptor age is refused by age anyway.
        let cutoff = now_ms.saturating_sub(max_age_ms);
        let (m, g) = (&self.mixnodes, &self.gateways);
        self.last_seq
            .retain(|id, seq| *seq >= cutoff || m.contains_key(id) || g.contains_key(id));
    }

    fn listed(&self, id: &[u8; 32]) -> bool {
        self.mixnodes.contains_key(id) || self.gateways.contains_key(id)
    }

    /// The live identity other than `id` that holds this mix address.
    fn mix_address_holder(&self, id: &[u8; 32], addr: &str) -> Option<[u8; 32]> {
        let m = self
            .mixnodes
            .iter()
            .find(|(k, e)| *k != id && same_socket(&e.json.host, addr))
            .map(|(k, _)| *k);
        m.or_else(|| {
            self.gateways
                .iter()
                .find(|(k, e)| *k != id && same_socket(&e.json.mixnet_listener, addr))
                .map(|(k, _)| *k)
        })
    }

    fn client_listener_holder(&self, id: &[u8; 32], url: &str) -> Option<[u8; 32]> {
        self.gateways
            .iter()
            .find(|(k, e)| *k != id && same_url(&e.json.client_listener, url))
            .map(|(k, _)| *k)
    }
}

impl DirectoryState {
    pub fn new(config: DirectoryConfig, key: SigningKey) -> Self {
        let inner = Inner {
            mixnodes: HashMap::new(),
            gateways: HashMap::new(),
            last_seq: HashMap::new(),
            sources: RateLimiter::new(config.source_rate, config.source_burst, config.max_sources),
            identities: RateLimiter::new(config.identity_rate, config.identity_burst, config.max_remembered()),
            generation: 0,
            cache: None,
        };
        let rounds = config
            .authorities
            .as_ref()
            .filter(|a| a.list().len() > 1 && a.contains(key.verifying_key().as_bytes()))
            .map(|a| {
                Arc::new(super::rounds::Rounds::new(
                    a.clone(),
                    key.clone(),
                    config.round.as_millis().max(1) as u64,
                    config.topology_validity.as_millis() as u64,
                    config.epoch_secs,
                ))
            });
        DirectoryState {
            inner: Arc::new(Mutex::new(inner)),
            config: Arc::new(config),
            key: Arc::new(key),
            announcements: Arc::default(),
            rounds,
        }
    }

    /// The rounds of a network of several authorities.
    pub fn rounds(&self) -> Option<&Arc<super::rounds::Rounds>> {
        self.rounds.as_ref()
    }

    /// Announcements accepted and refused over HTTP so far.
    pub fn announcements(&self) -> &AnnouncementCounters {
        &self.announcements
    }

    /// The counters, shared (the metrics endpoint reads them).
    pub(super) fn announcement_counters(&self) -> Arc<AnnouncementCounters> {
        self.announcements.clone()
    }

    /// Mixnodes and gateways listed now (unexpired).
    pub fn listed(&self) -> (usize, usize) {
        let mut inner = self.lock();
        inner.prune(
            self.config.expiry,
            self.config.max_descriptor_age.as_millis() as u64,
            unix_now().as_millis() as u64,
        );
        (inner.mixnodes.len(), inner.gateways.len())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn config(&self) -> &DirectoryConfig {
        &self.config
    }

    /// The directory's public key (what nodes and clients pin).
    pub fn directory_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The signed document of the live topology, and its JSON text: the
    /// cached one while nothing changed and it is less than a tenth of its
    /// validity old.
    pub(super) fn document(&self) -> (Arc<TopologyJson>, Arc<String>) {
        let now = unix_now();
        let now_ms = now.as_millis() as u64;
        let mut inner = self.lock();
        inner.prune(
            self.config.expiry,
            self.config.max_descriptor_age.as_millis() as u64,
            now_ms,
        );
        let validity_ms = self.config.topology_validity.as_millis() as u64;
        if let Some(c) = &inner.cache {
            if c.generation == inner.generation && now_ms.saturating_sub(c.issued_at) < validity_ms / 10 {
                return (c.json.clone(), c.text.clone());
            }
        }
        let mut mix_nodes: Vec<MixNodeJson> = inner.mixnodes.values().map(|e| e.json.clone()).collect();
        mix_nodes.sort_by(|a, b| (a.layer, &a.host).cmp(&(b.layer, &b.host)));
        let mut gateway_nodes: Vec<GatewayJson> = inner.gateways.values().map(|e| e.json.clone()).collect();
        gateway_nodes.sort_by(|a, b| a.mixnet_listener.cmp(&b.mixnet_listener));
        let mut doc = TopologyJson {
            mix_nodes,
            gateway_nodes,
            epoch_length_secs: self.config.epoch_secs,
            round: now_ms / 1000,
            issued_at: now_ms,
            expires_at: now_ms.saturating_add(validity_ms),
            served_by: encode_key(self.key.verifying_key().as_bytes()),
            ..TopologyJson::default()
        };
        doc.sign(&self.key);
        // serde_json can't fail on these plain structs; an empty body would
        // be refused by every reader anyway.
        let text = Arc::new(serde_json::to_string(&doc).unwrap_or_default());
        let json = Arc::new(doc);
        inner.cache = Some(Cached {
            generation: inner.generation,
            issued_at: now_ms,
            json: json.clone(),
            text: text.clone(),
        });
        (json, text)
    }

    /// The descriptors of every live (admitted, unexpired) node, as their
    /// nodes signed them: this authority's vote.
    pub fn live_descriptors(&self) -> (Vec<MixNodeJson>, Vec<GatewayJson>) {
        let mut inner = self.lock();
        inner.prune(
            self.config.expiry,
            self.config.max_descriptor_age.as_millis() as u64,
            unix_now().as_millis() as u64,
        );
        let mut mix: Vec<MixNodeJson> = inner.mixnodes.values().map(|e| e.json.clone()).collect();
        mix.sort_by(|a, b| a.identity_key.cmp(&b.identity_key));
        let mut gateways: Vec<GatewayJson> = inner.gateways.values().map(|e| e.json.clone()).collect();
        gateways.sort_by(|a, b| a.identity_key.cmp(&b.identity_key));
        (mix, gateways)
    }

    /// The live topology, signed (one authority), or the consensus
    /// document served now (several; an empty default before the first).
    pub fn topology(&self) -> TopologyJson {
        match &self.rounds {
            Some(r) => r.document().map(|d| (*d.json).clone()).unwrap_or_default(),
            None => (*self.document().0).clone(),
        }
    }

    /// First check of an announcement, before its body is read: the
    /// per-source rate limit.
    pub fn check_source(&self, source: IpAddr) -> Result<(), Refused> {
        match self.lock().sources.check(&source, Instant::now(), false) {
            Ok(()) => Ok(()),
            Err(RateRefusal::Limited) => refuse(
                Why::SourceRate,
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "too many announcements from {source} (more than {}/s, burst {}: --source-rate, --source-burst)",
                    self.config.source_rate, self.config.source_burst
                ),
            ),
            Err(RateRefusal::TooManyKeys) => refuse(
                Why::TooManySources,
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "too many sources are announcing ({}, --max-sources); try again later",
                    self.config.max_sources
                ),
            ),
        }
    }

    /// A mixnode's announcement (body already read): every check, then the entry.
    pub fn announce_mixnode(&self, body: &[u8]) -> Result<(), Refused> {
        let node: MixNodeJson = serde_json::from_slice(body)
            .or_else(|e| refuse(Why::BadJson, StatusCode::BAD_REQUEST, format!("bad mixnode JSON: {e}")))?;
        let id = node
            .verify_signature()
            .or_else(|e| refuse(Why::BadSignature, StatusCode::BAD_REQUEST, e.to_string()))?;
        self.announce(id, Descriptor::Mix(node))
    }

    /// A gateway's announcement (body already read).
    pub fn announce_gateway(&self, body: &[u8]) -> Result<(), Refused> {
        let node: GatewayJson = serde_json::from_slice(body)
            .or_else(|e| refuse(Why::BadJson, StatusCode::BAD_REQUEST, format!("bad gateway JSON: {e}")))?;
        let id = node
            .verify_signature()
            .or_else(|e| refuse(Why::BadSignature, StatusCode::BAD_REQUEST, e.to_string()))?;
        self.announce(id, Descriptor::Gateway(node))
    }

    fn announce(&self, id: [u8; 32], node: Descriptor) -> Result<(), Refused> {
        let who = encode_key(&id);
        match &self.config.admit {
            Some(admit) if !admit.contains(&id) => {
                return refuse(
                    Why::NotAdmitted,
                    StatusCode::FORBIDDEN,
                    format!("identity {who} is not admitted by this directory (--admit)"),
                );
            }
            None if !self.config.open => {
                return refuse(
                    Why::Closed,
                    StatusCode::FORBIDDEN,
                    format!(
                        "identity {who} is not admitted: this directory admits only the identities in its --admit \
                         file, and it has none (--open would admit anyone)"
                    ),
                );
            }
            _ => {}
        }
        let seq = node.seq();
        match &node {
            Descriptor::Mix(m) => MixNode::from_json(m).map(|_| ()),
            Descriptor::Gateway(g) => Gateway::from_json(g).map(|_| ()),
        }
        .or_else(|e| refuse(Why::BadDescriptor, StatusCode::BAD_REQUEST, e.to_string()))?;
        if !versions_compatible(node.version(), nym_wire::VERSION) {
            let ours = nym_wire::VERSION;
            let series = ours.splitn(3, '.').take(2).collect::<Vec<_>>().join(".");
            return refuse(
                Why::Version,
                StatusCode::BAD_REQUEST,
                format!(
                    "version {} is not served by this directory: it accepts {series}.x (its own is {ours})",
                    node.version()
                ),
            );
        }
        let now = unix_now();
        let now_ms = now.as_millis() as u64;
        let skew_ms = self.config.max_clock_skew.as_millis() as u64;
        let max_age_ms = self.config.max_descriptor_age.as_millis() as u64;
        if seq > now_ms.saturating_add(skew_ms) {
            return refuse(
                Why::ClockSkew,
                StatusCode::BAD_REQUEST,
                format!(
                    "descriptor signed {} s in the future (seq {seq}; more than the {} s clock skew allowed, --max-clock-skew-secs): check the node's clock",
                    (seq - now_ms) / 1000,
                    skew_ms / 1000
                ),
            );
        }
        if seq.saturating_add(max_age_ms) < now_ms {
            return refuse(
                Why::Stale,
                StatusCode::CONFLICT,
                format!(
                    "descriptor signed {} s ago (seq {seq}; older than {} s, --max-descriptor-age-secs): stale or replayed",
                    (now_ms - seq) / 1000,
                    max_age_ms / 1000
                ),
            );
        }

        let epoch = nym_wire::epoch::epoch_at(seq, self.config.epoch_secs.saturating_mul(1000));
        let epochs: Vec<u32> = node.sphinx_keys().iter().map(|k| k.epoch).collect();
        if epochs != [epoch, epoch.saturating_add(1)] {
            return refuse(
                Why::EpochKeys,
                StatusCode::BAD_REQUEST,
                format!(
                    "sphinx keys for epochs {epochs:?}, not for {epoch} (when it was signed) and {}: this directory's \
                     epochs are {} s long (--epoch-secs; every node's must be the same)",
                    epoch.saturating_add(1),
                    self.config.epoch_secs
                ),
            );
        }

        let mut inner = self.lock();
        inner.prune(self.config.expiry, max_age_ms, now_ms);
        if let Some(last) = inner.last_seq.get(&id) {
            if seq <= *last {
                return refuse(
                    Why::Replayed,
                    StatusCode::CONFLICT,
                    format!("replayed or out-of-order descriptor: seq {seq} is not greater than {last}, the last accepted from {who}"),
                );
            }
        }
        // Only now, for a fresh descriptor (which only the identity's holder
        // can make), is the identity's rate budget spent: neither forgeries
        // nor replays of its descriptors can starve its refreshes.
        let listed = inner.listed(&id);
        match inner.identities.check(&id, Instant::now(), listed) {
            Ok(()) => {}
            Err(RateRefusal::Limited) => {
                return refuse(
                    Why::IdentityRate,
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "too many announcements for identity {who} (more than {}/s, burst {}: --identity-rate, --identity-burst)",
                        self.config.identity_rate, self.config.identity_burst
                    ),
                )
            }
            Err(RateRefusal::TooManyKeys) => {
                return refuse(Why::TooManyIdentities, StatusCode::TOO_MANY_REQUESTS, "too many identities are announcing; try again later")
            }
        }
        match &node {
            Descriptor::Mix(m) => {
                if inner.gateways.contains_key(&id) {
                    return refuse(
                        Why::RoleConflict,
                        StatusCode::CONFLICT,
                        format!("identity {who} is a live gateway; one identity can't also be a mixnode"),
                    );
                }
                if let Some(h) = inner.mix_address_holder(&id, &m.host) {
                    return Err(held("address", &m.host, &h));
                }
            }
            Descriptor::Gateway(g) => {
                if inner.mixnodes.contains_key(&id) {
                    return refuse(
                        Why::RoleConflict,
                        StatusCode::CONFLICT,
                        format!("identity {who} is a live mixnode; one identity can't also be a gateway"),
                    );
                }
                if let Some(h) = inner.mix_address_holder(&id, &g.mixnet_listener) {
                    return Err(held("address", &g.mixnet_listener, &h));
                }
                if let Some(h) = inner.client_listener_holder(&id, &g.client_listener) {
                    return Err(held("client listener", &g.client_listener, &h));
                }
            }
        }
        // A node listed before and still remembered (its last seq is kept
        // for the descriptor age) is admitted over the cap: a flood of new
        // identities never locks out a node that restarts.
        let remembered = inner.last_seq.contains_key(&id);
        if !listed && !remembered && inner.mixnodes.len() + inner.gateways.len() >= self.config.max_nodes {
            return refuse(
                Why::Full,
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "the directory is full ({} nodes, --max-nodes); listed nodes' refreshes still pass; try again later",
                    self.config.max_nodes
                ),
            );
        }
        if !inner.last_seq.contains_key(&id) && !listed && inner.last_seq.len() >= self.config.max_remembered() {
            return refuse(
                Why::TooManyIdentities,
                StatusCode::TOO_MANY_REQUESTS,
                "too many identities announced recently; try again later",
            );
        }
        inner.last_seq.insert(id, seq);
        let last_seen = now.as_nanos() as u64;
        let seen = Instant::now();
        match node {
            Descriptor::Mix(mut m) => {
                m.last_seen = last_seen;
                inner.mixnodes.insert(id, Entry { json: m, seen });
            }
            Descriptor::Gateway(mut g) => {
                g.last_seen = last_seen;
                inner.gateways.insert(id, Entry { json: g, seen });
            }
        }
        inner.generation += 1;
        Ok(())
    }
}
