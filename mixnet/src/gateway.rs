//! A gateway: the last mix hop, and the clients' entry point. Final-hop
//! payloads go to the connected client, or into its SQLite inbox until it
//! next authenticates. Clients' `Forward` requests go into the mixnet.

use crate::announce::spawn_announcer;
use crate::http::DirectoryClient;
use crate::inbox::{Inbox, StoreResult};
use crate::keyfiles::{load_or_create_identity_key, load_or_create_sphinx_key};
use crate::pool::{PeerPool, DEFAULT_PEER_QUEUE};
use crate::processor::{default_workers, serve_mix_listener, start_workers, Handler, Processed};
use crate::stats::{inc, spawn_stats_logger, NodeStats};
use anyhow::{anyhow, Result};
use ed25519_dalek::SigningKey;
use futures_util::{SinkExt, StreamExt};
use nym_client_core::address::encode_key;
use nym_client_core::topology::{decode_node_address, versions_compatible, GatewayJson};
use nym_client_core::wire::gateway::{ClientRequest, GatewayHandshake, GatewayResponse, Session};
use nym_client_core::wire::mix_frame;
use sphinx_packet::route::NodeAddressBytes;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;
use x25519_dalek::PublicKey;

pub use crate::inbox::DB_FILE;

pub const DEFAULT_INBOX_LIMIT: u64 = 100_000;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const CLIENT_QUEUE: usize = 1024;
const PUSH_BATCH: usize = 128;

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Mixnet (TCP) listener; port 0 picks a free port.
    pub mix_listen: SocketAddr,
    /// Client (websocket) listener; port 0 picks a free port.
    pub clients_listen: SocketAddr,
    /// Host announced to the directory; defaults to the listeners' IPs.
    pub announce_host: Option<String>,
    pub directory: Option<String>,
    pub data_dir: PathBuf,
    pub announce_interval: Duration,
    pub topology_refresh: Duration,
    pub stats_interval: Duration,
    pub workers: usize,
    pub peer_queue: usize,
    pub inbox_limit: u64,
    pub location: String,
}

impl GatewayConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        GatewayConfig {
            mix_listen: SocketAddr::from(([127, 0, 0, 1], 1790)),
            clients_listen: SocketAddr::from(([127, 0, 0, 1], 9000)),
            announce_host: None,
            directory: None,
            data_dir: data_dir.into(),
            announce_interval: Duration::from_secs(3),
            topology_refresh: Duration::from_secs(5),
            stats_interval: Duration::from_secs(10),
            workers: 0,
            peer_queue: DEFAULT_PEER_QUEUE,
            inbox_limit: DEFAULT_INBOX_LIMIT,
            location: "localhost".into(),
        }
    }
}

struct ClientSlot {
    conn_id: u64,
    tx: mpsc::Sender<Vec<u8>>,
    /// Set when a message for this connected client went to the database.
    db_pending: Arc<AtomicBool>,
}

struct Inner {
    inbox: Inbox,
    clients: HashMap<[u8; 32], ClientSlot>,
}

struct FirstHops {
    allowed: HashSet<SocketAddr>,
    refreshed: Option<Instant>,
}

struct Shared {
    inner: Mutex<Inner>,
    stats: Arc<NodeStats>,
    pool: Arc<PeerPool>,
    identity: SigningKey,
    directory: Option<DirectoryClient>,
    first_hops: RwLock<FirstHops>,
    next_conn: AtomicU64,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A final-hop payload for `dest` (runs on a worker thread).
    fn deliver(&self, dest: [u8; 32], plaintext: Vec<u8>) {
        let mut inner = self.lock();
        if !inner.inbox.is_registered(&dest) {
            inc(&self.stats.dropped_unknown_client);
            return;
        }
        let mut plaintext = plaintext;
        if let Some(slot) = inner.clients.get(&dest) {
            match slot.tx.try_send(plaintext) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(p)) | Err(mpsc::error::TrySendError::Closed(p)) => {
                    slot.db_pending.store(true, Ordering::SeqCst);
                    plaintext = p;
                }
            }
        }
        match inner.inbox.store(&dest, &plaintext) {
            Ok(StoreResult::Stored) => inc(&self.stats.stored),
            Ok(StoreResult::InboxFull) => inc(&self.stats.dropped_queue_full),
            Err(e) => {
                tracing::error!("cannot store a message: {e:#}");
                inc(&self.stats.dropped_queue_full);
            }
        }
    }

    fn set_first_hops(&self, allowed: HashSet<SocketAddr>) {
        let mut f = self.first_hops.write().unwrap_or_else(|p| p.into_inner());
        f.allowed = allowed;
        f.refreshed = Some(Instant::now());
    }

    fn first_hop_allowed(&self, addr: &SocketAddr) -> bool {
        self.first_hops.read().unwrap_or_else(|p| p.into_inner()).allowed.contains(addr)
    }

    async fn refresh_first_hops(&self) -> Result<()> {
        let Some(dir) = &self.directory else { return Ok(()) };
        let topo = dir.topology().await?;
        let allowed = topo
            .mix_nodes
            .iter()
            .filter(|m| m.layer == 1 && versions_compatible(&m.version, nym_client_core::VERSION))
            .filter_map(|m| m.host.parse().ok())
            .collect();
        self.set_first_hops(allowed);
        Ok(())
    }

    /// Checks a client's next hop: a layer-1 mixnode of the current topology.
    async fn check_next_hop(&self, addr: &SocketAddr) -> Result<(), String> {
        if self.directory.is_none() || self.first_hop_allowed(addr) {
            return Ok(());
        }
        let stale = self
            .first_hops
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .refreshed
            .is_none_or(|t| t.elapsed() > Duration::from_secs(1));
        if stale {
            if let Err(e) = self.refresh_first_hops().await {
                tracing::debug!("topology refresh failed: {e:#}");
            }
            if self.first_hop_allowed(addr) {
                return Ok(());
            }
        }
        Err(format!("next hop {addr} is not a layer-1 mixnode"))
    }
}

/// A running gateway.
pub struct Gateway {
    identity_key: [u8; 32],
    sphinx_key: PublicKey,
    mix_addr: SocketAddr,
    clients_addr: SocketAddr,
    announce_host: String,
    stats: Arc<NodeStats>,
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
        let sphinx_secret = load_or_create_sphinx_key(&config.data_dir)?;
        let inbox = {
            let dir = config.data_dir.clone();
            let limit = config.inbox_limit;
            tokio::task::spawn_blocking(move || Inbox::open(&dir, limit)).await.map_err(|e| anyhow!("{e}"))??
        };
        let directory = config.directory.as_deref().map(DirectoryClient::new).transpose()?;
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
        let pool = PeerPool::new(stats.clone(), config.peer_queue, cancel.clone());
        let identity_key = identity.verifying_key().to_bytes();
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner { inbox, clients: HashMap::new() }),
            stats: stats.clone(),
            pool,
            identity,
            directory: directory.clone(),
            first_hops: RwLock::new(FirstHops { allowed: HashSet::new(), refreshed: None }),
            next_conn: AtomicU64::new(1),
        });

        let handler: Handler = {
            let shared = shared.clone();
            Arc::new(move |out| match out {
                Processed::Final { destination, deliver, ack } => {
                    // The SURB-ACK goes back into the mixnet, but only to a layer-1 mixnode.
                    if let Some((first_hop, frame)) = ack {
                        if shared.directory.is_none() || shared.first_hop_allowed(&first_hop) {
                            shared.pool.send(first_hop, frame);
                        } else {
                            inc(&shared.stats.dropped_no_route);
                        }
                    }
                    shared.deliver(destination, deliver)
                }
                // a gateway is always the last hop
                Processed::Forward { .. } => inc(&shared.stats.dropped_no_route),
            })
        };
        let workers = if config.workers == 0 { default_workers() } else { config.workers };
        let (jobs, threads) = start_workers(workers, sphinx_secret.clone(), stats.clone(), handler, cancel.clone());
        let mut tasks = vec![tokio::spawn(serve_mix_listener(mix_listener, jobs, stats.clone(), cancel.clone()))];
        tasks.push(tokio::spawn(serve_clients(clients_listener, shared.clone(), cancel.clone())));

        if directory.is_some() {
            let shared = shared.clone();
            let cancel = cancel.clone();
            let every = config.topology_refresh.max(Duration::from_millis(100));
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tick.tick() => {}
                    }
                    if let Err(e) = shared.refresh_first_hops().await {
                        tracing::debug!("topology refresh failed: {e:#}");
                    }
                }
            });
        }

        let gw = Gateway {
            identity_key,
            sphinx_key: PublicKey::from(&sphinx_secret),
            mix_addr,
            clients_addr,
            announce_host,
            stats: stats.clone(),
            cancel: cancel.clone(),
            tasks,
            threads,
            shared,
            _stop_on_drop: cancel.clone().drop_guard(),
        };
        spawn_stats_logger(format!("gateway {}", gw.mix_announce()), stats, config.stats_interval, cancel.clone());
        if let Some(client) = directory {
            spawn_announcer(client, "/api/presence/gateways", gw.json(&config.location), config.announce_interval, cancel);
        }
        tracing::info!(
            "gateway {} listening: mixnet {mix_addr}, clients ws://{clients_addr}",
            gw.identity_key_b58()
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

    pub fn sphinx_key(&self) -> PublicKey {
        self.sphinx_key
    }

    pub fn sphinx_key_b58(&self) -> String {
        encode_key(self.sphinx_key.as_bytes())
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

    /// Messages waiting in the inbox of `client` (x25519 public key).
    pub fn stored_count(&self, client: &[u8; 32]) -> u64 {
        self.shared.lock().inbox.count(client)
    }

    pub fn is_registered(&self, client: &[u8; 32]) -> bool {
        self.shared.lock().inbox.is_registered(client)
    }

    pub fn json(&self, location: &str) -> GatewayJson {
        GatewayJson {
            client_listener: self.client_listener_url(),
            mixnet_listener: self.mix_announce(),
            identity_key: self.identity_key_b58(),
            sphinx_key: self.sphinx_key_b58(),
            version: nym_client_core::VERSION.to_string(),
            location: location.to_string(),
            last_seen: 0,
        }
    }

    pub async fn shutdown(self) {
        self.cancel.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
        // let connection tasks finish storing what they held
        let deadline = Instant::now() + Duration::from_secs(2);
        while Arc::strong_count(&self.shared) > 1 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tracing::info!("gateway {} stopped", self.mix_addr);
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
                let shared = shared.clone();
                let cancel = cancel.clone();
                tokio::spawn(async move {
                    if let Err(e) = handle_client(stream, shared, cancel).await {
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

type Ws = WebSocketStream<TcpStream>;

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

async fn send_sealed(ws: &mut Ws, session: &mut Session, resp: &GatewayResponse) -> Result<()> {
    let frame = session.seal(&resp.encode());
    ws.send(Message::Binary(frame.into())).await?;
    Ok(())
}

async fn handle_client(stream: TcpStream, shared: Arc<Shared>, cancel: CancellationToken) -> Result<()> {
    let _ = stream.set_nodelay(true);
    let mut ws = tokio::time::timeout(HANDSHAKE_TIMEOUT, tokio_tungstenite::accept_async(stream))
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
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(CLIENT_QUEUE);
    let db_pending = Arc::new(AtomicBool::new(false));
    let stored = {
        let shared = shared.clone();
        let db_pending = db_pending.clone();
        tokio::task::spawn_blocking(move || -> Result<u64> {
            let mut inner = shared.lock();
            inner.inbox.register(&client_key)?;
            inner.clients.insert(client_key, ClientSlot { conn_id, tx, db_pending });
            Ok(inner.inbox.count(&client_key))
        })
        .await
        .map_err(|e| anyhow!("{e}"))??
    };
    tracing::debug!("client {} authenticated, {stored} stored messages", encode_key(&client_key));

    let result = client_loop(&mut ws, &mut session, &shared, client_key, stored, &mut rx, &db_pending, &cancel).await;

    // detach, then keep whatever was queued for this connection
    let shared2 = shared.clone();
    let _ = tokio::task::spawn_blocking(move || {
        let mut inner = shared2.lock();
        if inner.clients.get(&client_key).is_some_and(|s| s.conn_id == conn_id) {
            inner.clients.remove(&client_key);
        }
        rx.close();
        while let Ok(msg) = rx.try_recv() {
            match inner.inbox.store(&client_key, &msg) {
                Ok(StoreResult::Stored) => inc(&shared2.stats.stored),
                _ => inc(&shared2.stats.dropped_queue_full),
            }
        }
    })
    .await;
    let _ = ws.close(None).await;
    result
}

/// Pushes every stored message, deleting each batch after it was written.
async fn push_stored(ws: &mut Ws, session: &mut Session, shared: &Arc<Shared>, client_key: [u8; 32]) -> Result<()> {
    let mut after = 0i64;
    loop {
        let batch = {
            let shared = shared.clone();
            tokio::task::spawn_blocking(move || shared.lock().inbox.load(&client_key, after, PUSH_BATCH))
                .await
                .map_err(|e| anyhow!("{e}"))??
        };
        if batch.is_empty() {
            return Ok(());
        }
        let mut ids = Vec::with_capacity(batch.len());
        for (id, payload) in batch {
            send_sealed(ws, session, &GatewayResponse::Deliver { payload }).await?;
            ids.push(id);
            after = id;
            inc(&shared.stats.delivered);
        }
        ws.flush().await?;
        let shared = shared.clone();
        tokio::task::spawn_blocking(move || shared.lock().inbox.delete(&client_key, &ids))
            .await
            .map_err(|e| anyhow!("{e}"))??;
    }
}

#[allow(clippy::too_many_arguments)]
async fn client_loop(
    ws: &mut Ws,
    session: &mut Session,
    shared: &Arc<Shared>,
    client_key: [u8; 32],
    stored: u64,
    rx: &mut mpsc::Receiver<Vec<u8>>,
    db_pending: &AtomicBool,
    cancel: &CancellationToken,
) -> Result<()> {
    send_sealed(ws, session, &GatewayResponse::Authenticated { stored: u32::try_from(stored).unwrap_or(u32::MAX) }).await?;
    push_stored(ws, session, shared, client_key).await?;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            msg = rx.recv() => {
                let Some(payload) = msg else { return Ok(()) };
                send_sealed(ws, session, &GatewayResponse::Deliver { payload }).await?;
                inc(&shared.stats.delivered);
            }
            _ = tick.tick() => {
                if db_pending.swap(false, Ordering::SeqCst) {
                    push_stored(ws, session, shared, client_key).await?;
                }
            }
            frame = ws.next() => {
                let bytes = match frame {
                    Some(Ok(Message::Binary(b))) => b,
                    Some(Ok(Message::Close(_))) | None => return Ok(()),
                    Some(Ok(Message::Text(_))) => {
                        send_sealed(ws, session, &GatewayResponse::Error { message: "only binary frames are accepted".into() }).await?;
                        continue;
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(e.into()),
                };
                if let Err(message) = handle_request(session, shared, &bytes).await {
                    send_sealed(ws, session, &GatewayResponse::Error { message }).await?;
                }
            }
        }
    }
}

async fn handle_request(session: &mut Session, shared: &Arc<Shared>, frame: &[u8]) -> Result<(), String> {
    let plaintext = session.open(frame).map_err(|e| e.to_string())?;
    match ClientRequest::decode(&plaintext).map_err(|e| e.to_string())? {
        ClientRequest::Authenticate => Err("already authenticated".into()),
        ClientRequest::Forward { next_hop, frame } => {
            mix_frame::decode(&frame).map_err(|e| e.to_string())?;
            let addr = decode_node_address(&NodeAddressBytes::from_bytes(next_hop)).map_err(|e| e.to_string())?;
            shared.check_next_hop(&addr).await?;
            shared.pool.send(addr, frame);
            Ok(())
        }
    }
}
