//! The directory: nodes announce signed descriptors, clients fetch the
//! signed topology document.
//!
//! Every announcement (`POST /api/presence/mixnodes`, `POST
//! /api/presence/gateways`) is a descriptor signed by the node's identity key
//! (see `nym_wire::signed`); entries are keyed by that identity, so only its
//! holder can change its entry. `GET /api/presence/topology` serves every
//! live descriptor in a document the directory signs with its own key. The
//! rules, refusals and limits are in docs/topology-document.md.

use crate::keyfiles::load_or_create_directory_key;
use crate::metrics::{AnnounceRefusal as Why, AnnouncementCounters};
use crate::ratelimit::{RateLimiter, RateRefusal};
use anyhow::{anyhow, Context, Result};
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ed25519_dalek::SigningKey;
use nym_wire::address::encode_key;
use nym_wire::topology::{versions_compatible, Gateway, GatewayJson, MixNode, MixNodeJson, TopologyJson};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::cors::CorsLayer;

/// How long an entry lives without being re-announced (`--expiry-secs`).
pub const DEFAULT_EXPIRY: Duration = Duration::from_secs(10);
/// `expiresAt - issuedAt` of the topology document (`--topology-validity-secs`).
pub const DEFAULT_TOPOLOGY_VALIDITY: Duration = Duration::from_secs(300);
/// Most nodes listed at once (`--max-nodes`).
pub const DEFAULT_MAX_NODES: usize = 1000;
/// A descriptor signed longer ago than this is refused (`--max-descriptor-age-secs`).
pub const DEFAULT_MAX_DESCRIPTOR_AGE: Duration = Duration::from_secs(60);
/// A descriptor signed further in the future than this is refused (`--max-clock-skew-secs`).
pub const DEFAULT_MAX_CLOCK_SKEW: Duration = Duration::from_secs(60);
/// Announcements per second per source IP, and the burst (`--source-rate`, `--source-burst`).
pub const DEFAULT_SOURCE_RATE: f64 = 100.0;
pub const DEFAULT_SOURCE_BURST: u32 = 200;
/// Announcements per second per identity, and the burst (`--identity-rate`, `--identity-burst`).
pub const DEFAULT_IDENTITY_RATE: f64 = 10.0;
pub const DEFAULT_IDENTITY_BURST: u32 = 20;
/// Source IPs the rate limiter tracks at once (`--max-sources`).
pub const DEFAULT_MAX_SOURCES: usize = 10_000;
/// Largest announcement body in bytes (`--max-body`); a real descriptor is under 1 KiB.
pub const DEFAULT_MAX_BODY: usize = 4096;

/// Everything the directory is told at start.
#[derive(Debug, Clone)]
pub struct DirectoryConfig {
    /// Port 0 picks a free port.
    pub listen: SocketAddr,
    /// The directory's key lives here (`directory_private.pem` 0600,
    /// `directory_public.pem`); made on first start.
    pub data_dir: PathBuf,
    pub expiry: Duration,
    pub topology_validity: Duration,
    /// `Some`: only these identities may announce (403 for everyone else).
    /// `None`: open, within the limits below.
    pub admit: Option<HashSet<[u8; 32]>>,
    pub max_nodes: usize,
    pub max_descriptor_age: Duration,
    pub max_clock_skew: Duration,
    pub source_rate: f64,
    pub source_burst: u32,
    pub identity_rate: f64,
    pub identity_burst: u32,
    pub max_sources: usize,
    pub max_body: usize,
    /// The network's key epoch length (`--epoch-secs`): stated in every
    /// document; descriptors must carry the keys of their signing epoch and
    /// the next under it.
    pub epoch_secs: u64,
    /// `--metrics`: serve Prometheus metrics on `GET /metrics` here (port 0
    /// picks a free port); None: no metrics listener.
    pub metrics: Option<SocketAddr>,
}

impl DirectoryConfig {
    /// Defaults: 127.0.0.1:8080, open, the limits above.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        DirectoryConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: data_dir.into(),
            expiry: DEFAULT_EXPIRY,
            topology_validity: DEFAULT_TOPOLOGY_VALIDITY,
            admit: None,
            max_nodes: DEFAULT_MAX_NODES,
            max_descriptor_age: DEFAULT_MAX_DESCRIPTOR_AGE,
            max_clock_skew: DEFAULT_MAX_CLOCK_SKEW,
            source_rate: DEFAULT_SOURCE_RATE,
            source_burst: DEFAULT_SOURCE_BURST,
            identity_rate: DEFAULT_IDENTITY_RATE,
            identity_burst: DEFAULT_IDENTITY_BURST,
            max_sources: DEFAULT_MAX_SOURCES,
            max_body: DEFAULT_MAX_BODY,
            epoch_secs: nym_wire::epoch::DEFAULT_EPOCH_SECS,
            metrics: None,
        }
    }

    /// `$HOME/.nym/directory` (or `./.nym/directory` without HOME).
    pub fn default_data_dir() -> PathBuf {
        std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(".")).join(".nym").join("directory")
    }

    /// Identities remembered (with the highest seq accepted from each) at
    /// once: the seq of every identity heard from within the descriptor age.
    fn max_remembered(&self) -> usize {
        self.max_nodes.saturating_mul(4).max(1024) + self.admit.as_ref().map_or(0, HashSet::len)
    }

    /// The startup log line's list of limits.
    pub fn describe_limits(&self) -> String {
        format!(
            "entries expire after {:?} (--expiry-secs); documents valid {:?} (--topology-validity-secs); at most {} nodes \
             (--max-nodes); descriptors at most {:?} old (--max-descriptor-age-secs) and {:?} ahead \
             (--max-clock-skew-secs); {}/s burst {} announcements per source IP (--source-rate, --source-burst), \
             {} sources tracked (--max-sources); {}/s burst {} per identity (--identity-rate, --identity-burst); \
             bodies up to {} bytes (--max-body); key epochs of {} s (--epoch-secs)",
            self.expiry,
            self.topology_validity,
            self.max_nodes,
            self.max_descriptor_age,
            self.max_clock_skew,
            self.source_rate,
            self.source_burst,
            self.max_sources,
            self.identity_rate,
            self.identity_burst,
            self.max_body,
            self.epoch_secs
        )
    }
}

/// Reads an `--admit` file: one base58 ed25519 key per line; `#` starts a
/// comment; blank lines are allowed. A bad line is an error naming it.
pub fn parse_admit_file(text: &str) -> Result<HashSet<[u8; 32]>> {
    let mut keys = HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let key = crate::keyfiles::parse_ed25519_b58(line).map_err(|e| anyhow!("line {}: {e:#}", i + 1))?;
        keys.insert(key);
    }
    Ok(keys)
}

/// [`parse_admit_file`] of a file.
pub fn load_admit_file(path: &Path) -> Result<HashSet<[u8; 32]>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse_admit_file(&text).with_context(|| format!("bad admit file {}", path.display()))
}

/// A refused announcement: the status and the `error` text, and which
/// refusal it is (the `reason` label of its metric).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub status: StatusCode,
    pub reason: String,
    pub why: Why,
}

fn refuse<T>(why: Why, status: StatusCode, reason: impl Into<String>) -> Result<T, Refused> {
    Err(Refused { status, reason: reason.into(), why })
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        (self.status, Json(serde_json::json!({ "error": self.reason }))).into_response()
    }
}

struct Entry<T> {
    json: T,
    seen: Instant,
}

/// A descriptor after its signature verified.
enum Descriptor {
    Mix(MixNodeJson),
    Gateway(GatewayJson),
}

impl Descriptor {
    fn seq(&self) -> u64 {
        match self {
            Descriptor::Mix(m) => m.seq,
            Descriptor::Gateway(g) => g.seq,
        }
    }

    fn version(&self) -> &str {
        match self {
            Descriptor::Mix(m) => &m.version,
            Descriptor::Gateway(g) => &g.version,
        }
    }

    fn sphinx_keys(&self) -> &[nym_wire::topology::EpochKeyJson] {
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
        self.last_seq.retain(|id, seq| *seq >= cutoff || m.contains_key(id) || g.contains_key(id));
    }

    fn listed(&self, id: &[u8; 32]) -> bool {
        self.mixnodes.contains_key(id) || self.gateways.contains_key(id)
    }

    /// The live identity other than `id` that holds this mix address.
    fn mix_address_holder(&self, id: &[u8; 32], addr: &str) -> Option<[u8; 32]> {
        let m = self.mixnodes.iter().find(|(k, e)| *k != id && same_socket(&e.json.host, addr)).map(|(k, _)| *k);
        m.or_else(|| self.gateways.iter().find(|(k, e)| *k != id && same_socket(&e.json.mixnet_listener, addr)).map(|(k, _)| *k))
    }

    fn client_listener_holder(&self, id: &[u8; 32], url: &str) -> Option<[u8; 32]> {
        self.gateways.iter().find(|(k, e)| *k != id && same_url(&e.json.client_listener, url)).map(|(k, _)| *k)
    }
}

fn held(what: &str, addr: &str, holder: &[u8; 32]) -> Refused {
    Refused {
        why: Why::AddressHeld,
        status: StatusCode::CONFLICT,
        reason: format!(
            "{what} {addr} is held by another live node (identity {}); it is free again when that entry expires",
            encode_key(holder)
        ),
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
        DirectoryState {
            inner: Arc::new(Mutex::new(inner)),
            config: Arc::new(config),
            key: Arc::new(key),
            announcements: Arc::default(),
        }
    }

    /// Announcements accepted and refused over HTTP so far.
    pub fn announcements(&self) -> &AnnouncementCounters {
        &self.announcements
    }

    /// Mixnodes and gateways listed now (unexpired).
    pub fn listed(&self) -> (usize, usize) {
        let mut inner = self.lock();
        inner.prune(self.config.expiry, self.config.max_descriptor_age.as_millis() as u64, unix_now().as_millis() as u64);
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
    fn document(&self) -> (Arc<TopologyJson>, Arc<String>) {
        let now = unix_now();
        let now_ms = now.as_millis() as u64;
        let mut inner = self.lock();
        inner.prune(self.config.expiry, self.config.max_descriptor_age.as_millis() as u64, now_ms);
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
        let mut doc = TopologyJson { mix_nodes, gateway_nodes, epoch_length_secs: self.config.epoch_secs, ..TopologyJson::default() };
        doc.sign(&self.key, now_ms, now_ms.saturating_add(validity_ms));
        // serde_json can't fail on these plain structs; an empty body would
        // be refused by every reader anyway.
        let text = Arc::new(serde_json::to_string(&doc).unwrap_or_default());
        let json = Arc::new(doc);
        inner.cache = Some(Cached { generation: inner.generation, issued_at: now_ms, json: json.clone(), text: text.clone() });
        (json, text)
    }

    /// The live topology, signed.
    pub fn topology(&self) -> TopologyJson {
        (*self.document().0).clone()
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
                format!("too many sources are announcing ({}, --max-sources); try again later", self.config.max_sources),
            ),
        }
    }

    /// A mixnode's announcement (body already read): every check, then the entry.
    pub fn announce_mixnode(&self, body: &[u8]) -> Result<(), Refused> {
        let node: MixNodeJson = serde_json::from_slice(body)
            .or_else(|e| refuse(Why::BadJson, StatusCode::BAD_REQUEST, format!("bad mixnode JSON: {e}")))?;
        let id = node.verify_signature().or_else(|e| refuse(Why::BadSignature, StatusCode::BAD_REQUEST, e.to_string()))?;
        self.announce(id, Descriptor::Mix(node))
    }

    /// A gateway's announcement (body already read).
    pub fn announce_gateway(&self, body: &[u8]) -> Result<(), Refused> {
        let node: GatewayJson = serde_json::from_slice(body)
            .or_else(|e| refuse(Why::BadJson, StatusCode::BAD_REQUEST, format!("bad gateway JSON: {e}")))?;
        let id = node.verify_signature().or_else(|e| refuse(Why::BadSignature, StatusCode::BAD_REQUEST, e.to_string()))?;
        self.announce(id, Descriptor::Gateway(node))
    }

    fn announce(&self, id: [u8; 32], node: Descriptor) -> Result<(), Refused> {
        let who = encode_key(&id);
        if let Some(admit) = &self.config.admit {
            if !admit.contains(&id) {
                return refuse(Why::NotAdmitted, StatusCode::FORBIDDEN, format!("identity {who} is not admitted by this directory (--admit)"));
            }
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
                format!("version {} is not served by this directory: it accepts {series}.x (its own is {ours})", node.version()),
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
                    return refuse(Why::RoleConflict, StatusCode::CONFLICT, format!("identity {who} is a live gateway; one identity can't also be a mixnode"));
                }
                if let Some(h) = inner.mix_address_holder(&id, &m.host) {
                    return Err(held("address", &m.host, &h));
                }
            }
            Descriptor::Gateway(g) => {
                if inner.mixnodes.contains_key(&id) {
                    return refuse(Why::RoleConflict, StatusCode::CONFLICT, format!("identity {who} is a live mixnode; one identity can't also be a gateway"));
                }
                if let Some(h) = inner.mix_address_holder(&id, &g.mixnet_listener) {
                    return Err(held("address", &g.mixnet_listener, &h));
                }
                if let Some(h) = inner.client_listener_holder(&id, &g.client_listener) {
                    return Err(held("client listener", &g.client_listener, &h));
                }
            }
        }
        if !listed && inner.mixnodes.len() + inner.gateways.len() >= self.config.max_nodes {
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
            return refuse(Why::TooManyIdentities, StatusCode::TOO_MANY_REQUESTS, "too many identities announced recently; try again later");
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

    /// Reads and checks one announcement: source rate first, then the body
    /// (bounded), then everything else.
    async fn handle(&self, req: Request, mix: bool) -> Response {
        let source = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        if let Err(r) = self.check_source(source) {
            self.announcements.refused(r.why);
            return r.into_response();
        }
        let max = self.config.max_body;
        let body = match axum::body::to_bytes(req.into_body(), max).await {
            Ok(b) => b,
            Err(_) => {
                self.announcements.refused(Why::BodyTooLarge);
                let reason = format!("announcements are at most {max} bytes (--max-body)");
                return Refused { status: StatusCode::PAYLOAD_TOO_LARGE, reason, why: Why::BodyTooLarge }.into_response();
            }
        };
        let result = if mix { self.announce_mixnode(&body) } else { self.announce_gateway(&body) };
        match result {
            Ok(()) => {
                self.announcements.accepted();
                StatusCode::CREATED.into_response()
            }
            Err(r) => {
                self.announcements.refused(r.why);
                tracing::debug!("refused an announcement from {source}: {} {}", r.status, r.reason);
                r.into_response()
            }
        }
    }
}

async fn post_mixnode(State(s): State<DirectoryState>, req: Request) -> Response {
    s.handle(req, true).await
}

async fn post_gateway(State(s): State<DirectoryState>, req: Request) -> Response {
    s.handle(req, false).await
}

async fn get_topology(State(s): State<DirectoryState>) -> Response {
    let (_, text) = s.document();
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(text.as_str().to_owned()))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// The directory's routes. Served with connect info (as [`start_directory`]
/// does) the per-source limit is per IP; without it every request counts as
/// one source.
pub fn router(state: DirectoryState) -> Router {
    Router::new()
        .route("/api/presence/topology", get(get_topology))
        .route("/api/presence/mixnodes", post(post_mixnode))
        .route("/api/presence/gateways", post(post_gateway))
        .layer(CorsLayer::permissive())
        .with_state(state)
}

/// A running directory.
pub struct DirectoryHandle {
    pub addr: SocketAddr,
    pub state: DirectoryState,
    metrics_addr: Option<SocketAddr>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl DirectoryHandle {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The public key the topology document is signed with.
    pub fn directory_key(&self) -> [u8; 32] {
        self.state.directory_key()
    }

    pub fn directory_key_b58(&self) -> String {
        encode_key(&self.directory_key())
    }

    /// Where `GET /metrics` is served (`DirectoryConfig::metrics`).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    pub async fn shutdown(self) {
        self.cancel.cancel();
        let mut task = self.task;
        // Kept-alive client connections can hold a graceful shutdown open.
        if tokio::time::timeout(Duration::from_secs(1), &mut task).await.is_err() {
            task.abort();
        }
    }
}

/// Serves the directory on `config.listen` (port 0 picks a free port) until
/// shut down; the key comes from (or is made in) `config.data_dir`. Logs its
/// address, key, admission and limits.
pub async fn start_directory(config: DirectoryConfig) -> Result<DirectoryHandle> {
    let dir = start_directory_unlogged(config).await?;
    dir.log_start();
    Ok(dir)
}

/// [`start_directory`] without the startup log line (`nym-directory` prints
/// its URL and key on stdout first, then logs it with [`DirectoryHandle::log_start`]).
pub async fn start_directory_unlogged(config: DirectoryConfig) -> Result<DirectoryHandle> {
    let key = load_or_create_directory_key(&config.data_dir)?;
    let listener = TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let metrics = config.metrics;
    let state = DirectoryState::new(config, key);
    let cancel = CancellationToken::new();
    let metrics_addr = crate::metrics::start(metrics, "directory", crate::metrics::directory(state.clone()), &cancel).await?;
    let app = router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let c = cancel.clone();
    let task = tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move { c.cancelled().await });
        if let Err(e) = serve.await {
            tracing::error!("directory server failed: {e}");
        }
    });
    Ok(DirectoryHandle { addr, state, metrics_addr, cancel, task })
}

impl DirectoryHandle {
    /// Logs the address, the key, admission and every limit.
    pub fn log_start(&self) {
        let config = self.state.config();
        let admission = match &config.admit {
            Some(ids) => format!("admitting only the {} identities listed (--admit)", ids.len()),
            None => "OPEN: any node may announce (no --admit), within the limits".to_string(),
        };
        tracing::info!(
            "directory listening on {}, directory key {}; {admission}; {}{}",
            self.url(),
            self.directory_key_b58(),
            config.describe_limits(),
            self.metrics_addr.map(|a| format!("; metrics {}", crate::metrics::url(a))).unwrap_or_default()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b58(seed: u8) -> String {
        encode_key(SigningKey::from_bytes(&[seed; 32]).verifying_key().as_bytes())
    }

    #[test]
    fn admit_files_allow_comments_and_blank_lines_and_name_a_bad_line() {
        let text = format!("# our nodes\n\n{}\n  {}  # gateway\n\n", b58(1), b58(2));
        let keys = parse_admit_file(&text).unwrap();
        assert_eq!(keys.len(), 2);
        assert!(keys.contains(&SigningKey::from_bytes(&[1; 32]).verifying_key().to_bytes()));
        assert!(parse_admit_file("").unwrap().is_empty());

        let e = format!("{:#}", parse_admit_file(&format!("{}\n# ok\nnot-a-key\n", b58(1))).unwrap_err());
        assert!(e.contains("line 3") && e.contains("base58"), "{e}");
        let short = encode_key(&[7u8; 31]);
        let e = format!("{:#}", parse_admit_file(&format!("\n{short}\n")).unwrap_err());
        assert!(e.contains("line 2") && e.contains("32 bytes"), "{e}");
        // 32 bytes that are not a curve point
        let mut not_a_point = [0u8; 32];
        not_a_point[0] = 2;
        not_a_point[31] = 0x7f;
        if ed25519_dalek::VerifyingKey::from_bytes(&not_a_point).is_err() {
            let e = format!("{:#}", parse_admit_file(&encode_key(&not_a_point)).unwrap_err());
            assert!(e.contains("line 1") && e.contains("not an ed25519"), "{e}");
        }
        // two keys on one line are one bad line
        let e = format!("{:#}", parse_admit_file(&format!("{} {}", b58(1), b58(2))).unwrap_err());
        assert!(e.contains("line 1"), "{e}");
    }
}
