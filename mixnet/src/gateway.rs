//! A gateway: the last mix hop, and the clients' entry point. Clients'
//! `Forward` requests go into the mixnet.
//!
//! ## What a gateway keeps until its client has it
//! Every final-hop payload for a registered client is written to the SQLite
//! inbox first (a writer thread commits whatever arrived meanwhile in one
//! transaction), and only then does its SURB-ACK go back to the sender: an
//! acknowledged message is on disk. A connected client is then sent the
//! stored message with a delivery id of its connection, and the row is
//! deleted only when the client's `Ack` names that id. What is unacknowledged
//! when a connection ends (closed, cut, the client frozen or killed, the
//! gateway restarted) stays stored and is delivered again on the next
//! connection. A payload that can't be stored (unknown client, full inbox,
//! writer queue full) is dropped and counted, with no SURB-ACK, so the sender
//! retransmits or learns of the failure.
//!
//! ## Bounded before and after authentication
//! Before a client has proved its key the gateway holds little for it: a
//! bounded number of such connections, a handshake rate per source address,
//! a byte allowance for the whole handshake, and a rate and a cap for new
//! registrations ([`crate::admission`]). After, what it keeps is bounded and
//! expires ([`crate::inbox::InboxLimits`]): a payload past a bound is not
//! stored and not acknowledged, and counted in `dropped_limit`.

use crate::admission::{Admission, Gated, Unauthenticated};
use crate::announce::spawn_announcer;
use crate::http::DirectoryClient;
use crate::inbox::{unix_now, Inbox, RegisterError, StoreResult};
use crate::epochs::{start_keys, EpochSettings, SphinxKeys};
use crate::keyfiles::load_or_create_identity_key;
use crate::pool::{PeerPool, DEFAULT_PEER_QUEUE};
use crate::processor::{default_workers, serve_mix_listener, start_workers, Handler, Processed};
use crate::stats::{inc, spawn_stats_logger, Conn, NodeStats};
use anyhow::{anyhow, Result};
use ed25519_dalek::SigningKey;
use futures_util::{SinkExt, StreamExt};
use nym_wire::address::encode_key;
use nym_wire::gateway::{ClientRequest, GatewayHandshake, GatewayResponse, Session};
use nym_wire::mix_frame;
use crate::trust::{HopFilter, TopologyTrust};
use nym_wire::topology::{decode_node_address, GatewayJson, Topology};
use sphinx_packet::route::NodeAddressBytes;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;
use x25519_dalek::PublicKey;

pub use crate::admission::{AdmissionLimits, DEFAULT_ADMISSION};
pub use crate::inbox::{InboxLimits, DB_FILE, DEFAULT_INBOX_LIMITS};

pub const DEFAULT_INBOX_LIMIT: u64 = DEFAULT_INBOX_LIMITS.messages_per_client;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default largest websocket message (and frame) a client may send, before
/// and after authentication (`--max-client-message`). The largest legitimate
/// one is a sealed forward of an Extended32 packet (about 33 KiB);
/// tungstenite refuses a longer frame from its header, before buffering it,
/// so an unauthenticated peer can't make the gateway hold tungstenite's
/// default 64 MiB per connection.
pub const DEFAULT_MAX_CLIENT_MESSAGE: usize = 64 * 1024;
/// Below this a legitimate Extended32 packet would not fit.
pub const MIN_MAX_CLIENT_MESSAGE: usize = 40 * 1024;
/// Stored messages waiting in memory for a connection to send them; past it
/// the connection reads them from the inbox instead.
const CLIENT_QUEUE: usize = 1024;
const PUSH_BATCH: usize = 128;
/// Final-hop payloads waiting for the inbox writer; past it they are dropped
/// unacknowledged (the senders retransmit).
const STORE_QUEUE: usize = 8192;
/// Most payloads one inbox transaction commits.
const STORE_BATCH: usize = 512;

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Mixnet (TCP) listener; port 0 picks a free port.
    pub mix_listen: SocketAddr,
    /// Client (websocket) listener; port 0 picks a free port.
    pub clients_listen: SocketAddr,
    /// Host announced to the directory; defaults to the listeners' IPs.
    pub announce_host: Option<String>,
    /// Directory URL; None: no announcements, and any first hop is allowed.
    pub directory: Option<String>,
    /// The directory's key (`--directory-key`); None: trust the first
    /// verified document's key and remember it (`directory_key.txt`).
    pub directory_key: Option<[u8; 32]>,
    pub data_dir: PathBuf,
    pub announce_interval: Duration,
    pub topology_refresh: Duration,
    pub stats_interval: Duration,
    pub workers: usize,
    pub peer_queue: usize,
    /// What the inbox keeps, and for how long.
    pub inbox: InboxLimits,
    /// What a connection may do before it is authenticated.
    pub admission: AdmissionLimits,
    /// Largest websocket message a client may send (at least
    /// [`MIN_MAX_CLIENT_MESSAGE`]); more closes the connection.
    pub max_client_message: usize,
    pub location: String,
    /// Key epochs and replay filters.
    pub epochs: EpochSettings,
    /// `--metrics`: serve Prometheus metrics on `GET /metrics` here (port 0
    /// picks a free port); None: no metrics listener.
    pub metrics: Option<SocketAddr>,
}

impl GatewayConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        GatewayConfig {
            mix_listen: SocketAddr::from(([127, 0, 0, 1], 1790)),
            clients_listen: SocketAddr::from(([127, 0, 0, 1], 9000)),
            announce_host: None,
            directory: None,
            directory_key: None,
            data_dir: data_dir.into(),
            announce_interval: Duration::from_secs(3),
            topology_refresh: Duration::from_secs(5),
            stats_interval: Duration::from_secs(10),
            workers: 0,
            peer_queue: DEFAULT_PEER_QUEUE,
            inbox: DEFAULT_INBOX_LIMITS,
            admission: DEFAULT_ADMISSION,
            max_client_message: DEFAULT_MAX_CLIENT_MESSAGE,
            location: "localhost".into(),
            epochs: EpochSettings::default(),
            metrics: None,
        }
    }
}

/// A connected client, as the inbox writer sees it.
struct ClientSlot {
    conn_id: u64,
    /// Freshly stored messages (inbox id, payload), in id order.
    tx: mpsc::Sender<(i64, Vec<u8>)>,
    /// The channel was full once: nothing more goes into it until the
    /// connection has read the inbox again (so the ids it sees never skip).
    overflowed: bool,
    wake: Arc<Notify>,
}

/// A final-hop payload on its way to the inbox, with its SURB-ACK.
struct Inbound {
    destination: [u8; 32],
    payload: Vec<u8>,
    ack: Option<(SocketAddr, Vec<u8>)>,
}

struct Inner {
    inbox: Inbox,
    clients: HashMap<[u8; 32], ClientSlot>,
}

struct Shared {
    /// The store and the connected clients. A fair lock: under a flood of
    /// stores (the cover traffic of many clients) the writer thread takes it
    /// again right after every batch, and a connection waiting to read its
    /// inbox must not wait behind batch after batch.
    inner: parking_lot::Mutex<Inner>,
    store_queue: std::sync::mpsc::SyncSender<Inbound>,
    stats: Arc<NodeStats>,
    pool: Arc<PeerPool>,
    identity: SigningKey,
    /// Layer-1 mixnodes of the last verified topology (with a directory).
    first_hops: Option<Arc<HopFilter>>,
    next_conn: AtomicU64,
    /// Bumped to drop every client connection at once (`cut_client_connections`).
    cut: tokio::sync::watch::Sender<u64>,
    max_client_message: usize,
    admission: Admission,
}

impl Shared {
    fn lock(&self) -> parking_lot::MutexGuard<'_, Inner> {
        self.inner.lock()
    }

    /// A final-hop payload (runs on a worker thread): to the inbox writer.
    fn deliver(&self, inbound: Inbound) {
        if self.store_queue.try_send(inbound).is_err() {
            inc(&self.stats.dropped_queue_full);
        }
    }

    /// Stores a batch in one transaction; then, for what was stored, sends
    /// the SURB-ACKs and hands the messages to connected clients.
    fn store_batch(&self, batch: Vec<Inbound>) {
        let mut inner = self.lock();
        let results = match inner.inbox.store_batch(batch.iter().map(|i| (&i.destination, i.payload.as_slice()))) {
            Ok(r) => r,
            Err(e) => {
                // Nothing stored and nothing acknowledged: the senders retransmit.
                tracing::error!("cannot store {} messages: {e:#}", batch.len());
                self.stats.dropped_queue_full.fetch_add(batch.len() as u64, Ordering::Relaxed);
                return;
            }
        };
        for (inbound, result) in batch.into_iter().zip(results) {
            let id = match result {
                StoreResult::Stored(id) => id,
                StoreResult::UnknownClient => {
                    inc(&self.stats.dropped_unknown_client);
                    continue;
                }
                StoreResult::OverLimit(which) => {
                    tracing::debug!("not stored for {}: {which} reached", encode_key(&inbound.destination));
                    inc(&self.stats.dropped_limit);
                    continue;
                }
            };
            inc(&self.stats.stored);
            // Durable now: the sender may hear so. Only via a layer-1 mixnode.
            if let Some((first_hop, frame)) = inbound.ack {
                if self.first_hops.as_ref().is_none_or(|h| h.allowed(&first_hop)) {
                    self.pool.send(first_hop, frame);
                } else {
                    inc(&self.stats.dropped_unlisted_hop);
                }
            }
            if let Some(slot) = inner.clients.get_mut(&inbound.destination) {
                if !slot.overflowed && slot.tx.try_send((id, inbound.payload)).is_err() {
                    slot.overflowed = true;
                    slot.wake.notify_one();
                }
            }
        }
        // The next batch is usually waiting already: let a connection that
        // waits for the store (to read its inbox) have it first.
        parking_lot::MutexGuard::unlock_fair(inner);
    }

    /// Checks a client's next hop: a layer-1 mixnode of the current verified
    /// topology (fetched again first if it is not listed).
    async fn check_next_hop(&self, addr: &SocketAddr) -> Result<(), String> {
        let Some(hops) = &self.first_hops else { return Ok(()) };
        if hops.allowed(addr) {
            return Ok(());
        }
        hops.recheck(Instant::now()).await;
        if hops.allowed(addr) {
            return Ok(());
        }
        Err(format!("next hop {addr} is not a layer-1 mixnode"))
    }
}

/// A running gateway.
pub struct Gateway {
    identity_key: [u8; 32],
    keys: Arc<SphinxKeys>,
    mix_addr: SocketAddr,
    clients_addr: SocketAddr,
    announce_host: String,
    stats: Arc<NodeStats>,
    metrics_addr: Option<SocketAddr>,
    cancel: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    shared: Arc<Shared>,
    /// Dropping the node without `shutdown` still stops it.
    _stop_on_drop: tokio_util::sync::DropGuard,
}

impl Gateway {
    pub async fn start(config: GatewayConfig) -> Result<Gateway> {
        let identity = load_or_create_identity_key(&config.data_dir)?;
        let inbox = {
            let dir = config.data_dir.clone();
            let limits = config.inbox;
            tokio::task::spawn_blocking(move || Inbox::open(&dir, limits)).await.map_err(|e| anyhow!("{e}"))??
        };
        let directory = config.directory.as_deref().map(DirectoryClient::new).transpose()?;
        let first_hops = match &directory {
            Some(client) => {
                let trust = TopologyTrust::new(client.clone(), config.directory_key, config.data_dir.clone())?;
                Some(Arc::new(HopFilter::new(trust, |t: &Topology| t.layer(1).iter().map(|m| m.address).collect())))
            }
            None => None,
        };
        let mix_listener = TcpListener::bind(config.mix_listen).await?;
        let clients_listener = TcpListener::bind(config.clients_listen).await?;
        let mix_addr = mix_listener.local_addr()?;
        let clients_addr = clients_listener.local_addr()?;
        let announce_host = match config.announce_host.clone().unwrap_or_else(|| mix_addr.ip().to_string()) {
            h if h.parse::<std::net::Ipv6Addr>().is_ok() => format!("[{h}]"),
            h => h,
        };
        let stats = NodeStats::new();
        let cancel = CancellationToken::new();
        let keys = start_keys(&config.data_dir, config.epochs.clone(), stats.clone(), cancel.clone())?;
        let metrics = crate::metrics::gateway(stats.clone(), inbox.gauges());
        let metrics_addr = crate::metrics::start(config.metrics, "gateway", metrics, &cancel).await?;
        let pool = PeerPool::new(stats.clone(), config.peer_queue, cancel.clone());
        let identity_key = identity.verifying_key().to_bytes();
        let (store_queue, store_rx) = std::sync::mpsc::sync_channel(STORE_QUEUE);
        let shared = Arc::new(Shared {
            store_queue,
            inner: parking_lot::Mutex::new(Inner { inbox, clients: HashMap::new() }),
            stats: stats.clone(),
            pool,
            identity,
            first_hops: first_hops.clone(),
            next_conn: AtomicU64::new(1),
            cut: tokio::sync::watch::Sender::new(0),
            max_client_message: config.max_client_message.max(MIN_MAX_CLIENT_MESSAGE),
            admission: Admission::new(config.admission),
        });

        let handler: Handler = {
            let shared = shared.clone();
            Arc::new(move |out| match out {
                Processed::Final { destination, deliver, ack } => {
                    shared.deliver(Inbound { destination, payload: deliver, ack })
                }
                // a gateway is always the last hop
                Processed::Forward { .. } => inc(&shared.stats.dropped_no_route),
            })
        };
        let workers = if config.workers == 0 { default_workers() } else { config.workers };
        let (jobs, mut threads) = start_workers(workers, keys.clone(), stats.clone(), handler, cancel.clone());
        threads.push(start_inbox_writer(shared.clone(), store_rx, cancel.clone())?);
        let mut tasks = vec![tokio::spawn(serve_mix_listener(mix_listener, jobs, stats.clone(), cancel.clone()))];
        tasks.push(tokio::spawn(serve_clients(clients_listener, shared.clone(), cancel.clone())));
        tasks.push(tokio::spawn(expire_periodically(shared.clone(), config.inbox.expiry, cancel.clone())));

        if let Some(h) = &first_hops {
            h.spawn_refresher(config.topology_refresh, cancel.clone());
        }

        let gw = Gateway {
            identity_key,
            keys,
            mix_addr,
            clients_addr,
            announce_host,
            stats: stats.clone(),
            metrics_addr,
            cancel: cancel.clone(),
            tasks,
            threads,
            shared,
            _stop_on_drop: cancel.clone().drop_guard(),
        };
        spawn_stats_logger(format!("gateway {}", gw.mix_announce()), stats, config.stats_interval, cancel.clone());
        if let Some(client) = directory {
            let unsigned = gw.unsigned_json(&config.location);
            let (identity, keys) = (gw.shared.identity.clone(), gw.keys.clone());
            let sign = move |seq| sign_descriptor(&unsigned, &keys, &identity, seq);
            spawn_announcer(client, "/api/presence/gateways", sign, config.announce_interval, cancel);
        }
        let (i, a) = (config.inbox, config.admission);
        tracing::info!(
            "gateway {} listening: mixnet {mix_addr}, clients ws://{clients_addr}; limits: inbox {} messages \
             (--inbox-limit) and {} bytes (--inbox-max-bytes) per client, {} bytes in all (--inbox-disk-budget), \
             kept {} s (--inbox-expiry-secs), {} clients (--max-clients), {} new clients/s \
             (--registrations-per-sec); {} connections in their handshake (--max-unauthenticated), {} handshakes/s \
             per address (--handshakes-per-source), {} bytes per handshake (--max-handshake-bytes), {} bytes per \
             client websocket message (--max-client-message); key epoch {} of {} s (--epoch-secs), replay \
             filters for {} packets/s (--rated-packets-per-sec) at a false-positive rate of {} (--replay-fp-rate), \
             saved every {} s (--replay-save-secs){}{}",
            gw.identity_key_b58(),
            i.messages_per_client,
            i.bytes_per_client,
            i.total_bytes,
            i.expiry.as_secs(),
            i.clients,
            a.registrations_per_sec,
            a.max_unauthenticated,
            a.handshakes_per_source,
            a.max_handshake_bytes,
            config.max_client_message.max(MIN_MAX_CLIENT_MESSAGE),
            gw.keys.current_epoch(),
            config.epochs.epoch_secs,
            config.epochs.rated_packets_per_sec,
            config.epochs.replay_fp_rate,
            config.epochs.replay_save_interval.as_secs(),
            match (&config.directory, config.directory_key) {
                (None, _) => String::new(),
                (Some(_), Some(k)) => format!("; directory key {} (pinned)", encode_key(&k)),
                (Some(_), None) => "; directory key: trusted on first use".to_string(),
            },
            metrics_addr.map(|a| format!("; metrics {}", crate::metrics::url(a))).unwrap_or_default()
        );
        Ok(gw)
    }

    /// ed25519 identity public key: the gateway part of client addresses.
    pub fn identity_key(&self) -> [u8; 32] {
        self.identity_key
    }

    pub fn identity_key_b58(&self) -> String {
        encode_key(&self.identity_key)
    }

    /// The Sphinx key of the current key epoch.
    pub fn sphinx_key(&self) -> PublicKey {
        self.keys.current_public()
    }

    pub fn sphinx_key_b58(&self) -> String {
        encode_key(self.sphinx_key().as_bytes())
    }

    /// The gateway's Sphinx keys by epoch.
    pub fn sphinx_keys(&self) -> Arc<SphinxKeys> {
        self.keys.clone()
    }

    pub fn mix_addr(&self) -> SocketAddr {
        self.mix_addr
    }

    pub fn clients_addr(&self) -> SocketAddr {
        self.clients_addr
    }

    fn mix_announce(&self) -> String {
        format!("{}:{}", self.announce_host, self.mix_addr.port())
    }

    /// `ws://host:port` as announced.
    pub fn client_listener_url(&self) -> String {
        format!("ws://{}:{}", self.announce_host, self.clients_addr.port())
    }

    pub fn stats(&self) -> Arc<NodeStats> {
        self.stats.clone()
    }

    /// Where `GET /metrics` is served (`GatewayConfig::metrics`).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Messages waiting in the inbox of `client` (x25519 public key).
    pub fn stored_count(&self, client: &[u8; 32]) -> u64 {
        self.shared.lock().inbox.count(client)
    }

    /// Payload bytes waiting in the inbox of `client`.
    pub fn stored_bytes(&self, client: &[u8; 32]) -> u64 {
        self.shared.lock().inbox.bytes(client)
    }

    /// Payload bytes waiting in all inboxes (what `--inbox-disk-budget` bounds).
    pub fn stored_bytes_total(&self) -> u64 {
        self.shared.lock().inbox.total_bytes()
    }

    /// Clients registered with this gateway.
    pub fn registered_clients(&self) -> usize {
        self.shared.lock().inbox.registered_count()
    }

    /// Drops every client connection at once, with a TCP reset and no
    /// websocket close, as a network failure would. What the clients had not
    /// acknowledged stays stored and is delivered again when they reconnect.
    /// For fault tests, and for an operator who must shed its clients.
    /// Returns how many authenticated connections there were.
    pub fn cut_client_connections(&self) -> usize {
        let open = self.shared.cut.receiver_count();
        self.shared.cut.send_modify(|n| *n += 1);
        open
    }

    pub fn is_registered(&self, client: &[u8; 32]) -> bool {
        self.shared.lock().inbox.is_registered(client)
    }

    /// The directory key this gateway verifies topologies with (pinned, or
    /// learned on first use; None before the first verified document).
    pub fn directory_key(&self) -> Option<[u8; 32]> {
        self.shared.first_hops.as_ref().and_then(|h| h.directory_key())
    }

    fn unsigned_json(&self, location: &str) -> GatewayJson {
        GatewayJson {
            client_listener: self.client_listener_url(),
            mixnet_listener: self.mix_announce(),
            identity_key: self.identity_key_b58(),
            version: nym_wire::VERSION.to_string(),
            location: location.to_string(),
            ..GatewayJson::default()
        }
    }

    /// The descriptor this gateway announces, signed with `seq` (Unix ms:
    /// its keys are those of that moment's epoch and the next).
    pub fn json(&self, location: &str, seq: u64) -> GatewayJson {
        sign_descriptor(&self.unsigned_json(location), &self.keys, &self.shared.identity, seq)
    }

    pub async fn shutdown(self) {
        self.cancel.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
        let threads = self.threads;
        let keys = self.keys.clone();
        // the workers are done: the replay filters are complete; saved clean
        let saved = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
            keys.save(true)
        })
        .await;
        // let connection tasks finish storing what they held
        let deadline = Instant::now() + Duration::from_secs(2);
        while Arc::strong_count(&self.shared) > 1 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        match saved {
            Ok(Ok(())) => tracing::info!("gateway {} stopped; replay filters saved", self.mix_addr),
            Ok(Err(e)) => tracing::error!("gateway {} stopped; {e:#}", self.mix_addr),
            Err(e) => tracing::error!("gateway {} stopped; saving replay filters failed: {e}", self.mix_addr),
        }
    }
}

async fn serve_clients(listener: TcpListener, shared: Arc<Shared>, cancel: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                let slot = match shared.admission.admit(peer.ip(), Instant::now()) {
                    Ok(slot) => slot,
                    Err(refusal) => {
                        // Closed at once: nothing read, nothing kept.
                        inc(&shared.stats.refused_connections);
                        tracing::debug!("client {peer} refused: {refusal}");
                        continue;
                    }
                };
                let shared = shared.clone();
                let cancel = cancel.clone();
                let open = shared.stats.open_connection(Conn::Client);
                tokio::spawn(async move {
                    let _open = open;
                    if let Err(e) = handle_client(stream, slot, shared, cancel).await {
                        tracing::debug!("client {peer}: {e:#}");
                    }
                });
            }
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

type Ws = WebSocketStream<Gated<TcpStream>>;

/// Deletes expired messages and forgotten registrations, at start and then
/// every tenth of the expiry (at most hourly).
async fn expire_periodically(shared: Arc<Shared>, expiry: Duration, cancel: CancellationToken) {
    let every = (expiry / 10).clamp(Duration::from_millis(200), Duration::from_secs(3600));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let shared = shared.clone();
        let done = tokio::task::spawn_blocking(move || {
            let mut inner = shared.lock();
            let connected: HashSet<[u8; 32]> = inner.clients.keys().copied().collect();
            let removed = inner.inbox.expire(unix_now(), &connected);
            if let Ok((messages, _)) = removed {
                shared.stats.expired.fetch_add(messages, Ordering::Relaxed);
            }
            removed
        })
        .await;
        match done {
            Ok(Ok((0, 0))) => {}
            Ok(Ok((messages, clients))) => {
                tracing::info!("expired {messages} stored messages and {clients} idle registrations (--inbox-expiry-secs)")
            }
            Ok(Err(e)) => tracing::warn!("inbox expiry failed: {e:#}"),
            Err(e) => tracing::warn!("inbox expiry task failed: {e}"),
        }
    }
}

/// The next binary frame (pings are answered by tungstenite).
async fn next_binary(ws: &mut Ws) -> Result<Vec<u8>> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Binary(b))) => return Ok(b.to_vec()),
            Some(Ok(Message::Close(_))) | None => return Err(anyhow!("client closed")),
            Some(Ok(Message::Text(_))) => return Err(anyhow!("client sent text during the handshake")),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
        }
    }
}

async fn handle_client(
    stream: TcpStream,
    unauthenticated: Unauthenticated,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) -> Result<()> {
    let _ = stream.set_nodelay(true);
    let (stream, gate) = Gated::new(stream, shared.admission.limits().max_handshake_bytes);
    let limits = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(shared.max_client_message))
        .max_frame_size(Some(shared.max_client_message));
    let mut ws = tokio::time::timeout(HANDSHAKE_TIMEOUT, tokio_tungstenite::accept_async_with_config(stream, Some(limits)))
        .await
        .map_err(|_| anyhow!("websocket handshake timed out"))??;
    let hello = tokio::time::timeout(HANDSHAKE_TIMEOUT, next_binary(&mut ws)).await.map_err(|_| anyhow!("no HELLO"))??;
    let responded = {
        let mut rng = rand::rng();
        GatewayHandshake::respond(&mut rng, &shared.identity, &hello)
    };
    let (pending, reply) = match responded {
        Ok(x) => x,
        Err(e) => {
            let _ = ws.close(None).await;
            return Err(e.into());
        }
    };
    ws.send(Message::Binary(reply.into())).await?;
    let auth = tokio::time::timeout(HANDSHAKE_TIMEOUT, next_binary(&mut ws)).await.map_err(|_| anyhow!("no Authenticate"))??;
    let (mut session, client_key) = match pending.verify(&auth) {
        Ok(x) => x,
        Err(e) => {
            // a client that cannot prove its key gets nothing
            let _ = ws.close(None).await;
            return Err(e.into());
        }
    };

    let conn_id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = mpsc::channel::<(i64, Vec<u8>)>(CLIENT_QUEUE);
    let wake = Arc::new(Notify::new());
    let stored = {
        let shared = shared.clone();
        let wake = wake.clone();
        tokio::task::spawn_blocking(move || -> Result<std::result::Result<u64, String>> {
            let mut inner = shared.lock();
            if !inner.inbox.is_registered(&client_key) {
                if let Err(refusal) = shared.admission.admit_registration(Instant::now()) {
                    return Ok(Err(refusal.to_string()));
                }
            }
            match inner.inbox.register(&client_key) {
                Ok(()) => {}
                Err(RegisterError::Full(n)) => return Ok(Err(format!("this gateway serves its maximum of {n} clients"))),
                Err(RegisterError::Db(e)) => return Err(anyhow!("cannot register the client: {e}")),
            }
            // A newer connection of the same client takes over; the older
            // one's unacknowledged messages are still in the inbox.
            inner.clients.insert(client_key, ClientSlot { conn_id, tx, overflowed: false, wake });
            Ok(Ok(inner.inbox.count(&client_key)))
        })
        .await
        .map_err(|e| anyhow!("{e}"))??
    };
    let stored = match stored {
        Ok(n) => n,
        Err(refusal) => {
            // The session is up, so the client can read why.
            inc(&shared.stats.refused_connections);
            let frame = session.seal(&GatewayResponse::Error { message: refusal.clone() }.encode());
            let _ = ws.send(Message::Binary(frame.into())).await;
            let _ = ws.close(None).await;
            return Err(anyhow!("registration refused: {refusal}"));
        }
    };
    // Authenticated: the handshake allowance and slot no longer apply.
    gate.open();
    drop(unauthenticated);
    let _authenticated = shared.stats.open_connection(Conn::ClientAuthenticated);
    tracing::debug!("client {} authenticated, {stored} stored messages", encode_key(&client_key));

    let mut conn = ClientConnection {
        cut: shared.cut.subscribe(),
        ws,
        session,
        shared: shared.clone(),
        client_key,
        conn_id,
        rx,
        wake,
        last_sent: 0,
        read_inbox: true,
        next_delivery: 1,
        outstanding: HashMap::new(),
    };
    let result = conn.run(stored, &cancel).await;
    let was_cut = matches!(result, Ok(Ended::Cut));
    // Whatever it did not acknowledge stays in the inbox for the next connection.
    let shared2 = shared.clone();
    let _ = tokio::task::spawn_blocking(move || {
        let mut inner = shared2.lock();
        if inner.clients.get(&client_key).is_some_and(|s| s.conn_id == conn_id) {
            inner.clients.remove(&client_key);
        }
    })
    .await;
    if was_cut {
        // A reset, no close: frames in flight either way are lost.
        #[allow(deprecated)]
        let _ = conn.ws.get_ref().get_ref().set_linger(Some(Duration::ZERO));
        return Err(anyhow!("connection cut"));
    }
    let _ = conn.ws.close(None).await;
    result.map(|_| ())
}

/// How a client connection ended without an error.
enum Ended {
    Closed,
    Cut,
}

/// One authenticated client connection.
struct ClientConnection {
    cut: tokio::sync::watch::Receiver<u64>,
    ws: Ws,
    session: Session,
    shared: Arc<Shared>,
    client_key: [u8; 32],
    conn_id: u64,
    rx: mpsc::Receiver<(i64, Vec<u8>)>,
    wake: Arc<Notify>,
    /// Highest inbox id sent on this connection; messages go out in id order.
    last_sent: i64,
    /// The inbox may hold messages not sent yet: read it before the channel.
    read_inbox: bool,
    next_delivery: u64,
    /// Delivery id -> inbox id, sent and not yet acknowledged.
    outstanding: HashMap<u64, i64>,
}

impl ClientConnection {
    async fn run(&mut self, stored: u64, cancel: &CancellationToken) -> Result<Ended> {
        let stored = u32::try_from(stored).unwrap_or(u32::MAX);
        self.send(&GatewayResponse::Authenticated { stored }).await?;
        loop {
            if self.read_inbox {
                self.push_from_inbox().await?;
            }
            tokio::select! {
                _ = cancel.cancelled() => return Ok(Ended::Closed),
                _ = self.cut.changed() => return Ok(Ended::Cut),
                msg = self.rx.recv(), if !self.read_inbox => {
                    let Some((id, payload)) = msg else { return Ok(Ended::Closed) };
                    // Already sent when it was read from the inbox.
                    if id > self.last_sent {
                        self.push(id, payload).await?;
                    }
                }
                _ = self.wake.notified() => self.read_inbox = true,
                _ = std::future::ready(()), if self.read_inbox => {}
                frame = self.ws.next() => {
                    let bytes = match frame {
                        Some(Ok(Message::Binary(b))) => b,
                        Some(Ok(Message::Close(_))) | None => return Ok(Ended::Closed),
                        Some(Ok(Message::Text(_))) => {
                            self.send(&GatewayResponse::Error { message: "only binary frames are accepted".into() }).await?;
                            continue;
                        }
                        Some(Ok(_)) => continue,
                        Some(Err(e)) => return Err(e.into()),
                    };
                    let request = self.session.open(&bytes).and_then(|pt| ClientRequest::decode(&pt));
                    let result = match request {
                        Ok(ClientRequest::Ack { ids }) => self.acknowledged(&ids).await,
                        Ok(ClientRequest::Forward { next_hop, frame }) => match forward(&self.shared, next_hop, frame).await {
                            Err(Forwarded::Refused { packet }) => {
                                // Not an error of the client's: the node left. It
                                // learns which packet to send again, on a live route.
                                inc(&self.shared.stats.dropped_no_route);
                                self.send(&GatewayResponse::Refused { next_hop, packet }).await?;
                                Ok(())
                            }
                            Err(Forwarded::Bad(message)) => Err(message),
                            Ok(()) => Ok(()),
                        },
                        Ok(ClientRequest::Authenticate) => Err("already authenticated".into()),
                        Err(e) => Err(e.to_string()),
                    };
                    if let Err(message) = result {
                        self.send(&GatewayResponse::Error { message }).await?;
                    }
                }
            }
        }
    }

    async fn send(&mut self, response: &GatewayResponse) -> Result<()> {
        let frame = self.session.seal(&response.encode());
        self.ws.send(Message::Binary(frame.into())).await?;
        Ok(())
    }

    async fn push(&mut self, inbox_id: i64, payload: Vec<u8>) -> Result<()> {
        let id = self.next_delivery;
        self.next_delivery += 1;
        self.outstanding.insert(id, inbox_id);
        self.last_sent = inbox_id;
        inc(&self.shared.stats.pushed);
        self.send(&GatewayResponse::Deliver { id, payload }).await
    }

    /// Sends the next batch of stored messages not sent on this connection;
    /// stops reading the inbox once it is caught up.
    async fn push_from_inbox(&mut self) -> Result<()> {
        let batch = {
            let shared = self.shared.clone();
            let (key, conn_id, after) = (self.client_key, self.conn_id, self.last_sent);
            tokio::task::spawn_blocking(move || {
                let mut inner = shared.lock();
                // Cleared and read under one lock: whatever the writer stores
                // after this goes into the channel, in order.
                if let Some(slot) = inner.clients.get_mut(&key).filter(|s| s.conn_id == conn_id) {
                    slot.overflowed = false;
                }
                inner.inbox.load(&key, after, PUSH_BATCH)
            })
            .await
            .map_err(|e| anyhow!("{e}"))??
        };
        if batch.len() < PUSH_BATCH {
            self.read_inbox = false;
        }
        for (inbox_id, payload) in batch {
            self.push(inbox_id, payload).await?;
        }
        Ok(())
    }

    /// The client has these deliveries: delete them from the inbox.
    async fn acknowledged(&mut self, ids: &[u64]) -> Result<(), String> {
        let inbox_ids: Vec<i64> = ids.iter().filter_map(|id| self.outstanding.remove(id)).collect();
        let unknown = (ids.len() - inbox_ids.len()) as u64;
        if unknown > 0 {
            self.shared.stats.bad_acks.fetch_add(unknown, Ordering::Relaxed);
        }
        if inbox_ids.is_empty() {
            return Ok(());
        }
        let shared = self.shared.clone();
        let key = self.client_key;
        let deleted = tokio::task::spawn_blocking(move || shared.lock().inbox.delete(&key, &inbox_ids))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| {
                tracing::error!("cannot delete acknowledged messages: {e:#}");
                "the gateway could not record the acknowledgement; the messages may come again".to_string()
            })?;
        self.shared.stats.delivered.fetch_add(deleted, Ordering::Relaxed);
        Ok(())
    }
}

/// Stores what the workers hand over, in group commits, until cancelled.
fn start_inbox_writer(
    shared: Arc<Shared>,
    rx: std::sync::mpsc::Receiver<Inbound>,
    cancel: CancellationToken,
) -> Result<std::thread::JoinHandle<()>> {
    let thread = std::thread::Builder::new().name("inbox-writer".into()).spawn(move || {
        while !cancel.is_cancelled() {
            let first = match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(first) => first,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
            };
            let mut batch = vec![first];
            while batch.len() < STORE_BATCH {
                match rx.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            shared.store_batch(batch);
        }
    })?;
    Ok(thread)
}

fn sign_descriptor(unsigned: &GatewayJson, keys: &SphinxKeys, identity: &ed25519_dalek::SigningKey, seq: u64) -> GatewayJson {
    let mut d = unsigned.clone();
    d.sphinx_keys = keys.published(seq);
    d.sphinx_key = d.sphinx_keys.first().map(|k| k.key.clone()).unwrap_or_default();
    d.sign(identity, seq);
    d
}

/// Why a client's `Forward` (a well-framed packet to a layer-1 mixnode) was not sent.
enum Forwarded {
    /// Its first hop is not a layer-1 mixnode of the topology: `packet` is
    /// the packet's tag.
    Refused { packet: [u8; 32] },
    /// Malformed.
    Bad(String),
}

async fn forward(shared: &Arc<Shared>, next_hop: [u8; 32], frame: Vec<u8>) -> Result<(), Forwarded> {
    let (_, _, packet) = mix_frame::decode(&frame).map_err(|e| Forwarded::Bad(e.to_string()))?;
    let tag = mix_frame::packet_tag(packet);
    let addr = decode_node_address(&NodeAddressBytes::from_bytes(next_hop)).map_err(|e| Forwarded::Bad(e.to_string()))?;
    if shared.check_next_hop(&addr).await.is_err() {
        return Err(Forwarded::Refused { packet: tag });
    }
    shared.pool.send(addr, frame);
    Ok(())
}
