//! `nym-client run`: drives the sans-IO engine with tokio.
//!
//! One task owns the [`Client`] engine and is the only one touching it; the
//! gateway connection, the topology refresher and every application websocket
//! talk to it over channels:
//!
//! ```text
//!  app websocket(s) ──AppSend/Attach──▶ ┌────────┐ ──frames──▶ gateway websocket task
//!                   ◀──deliveries──────  │ engine │ ◀──frames── (reconnects with backoff)
//!  topology refresher ──Topology──────▶ └────────┘
//! ```

use crate::config::Config;
use crate::directory;
use anyhow::{anyhow, Context, Result};
use futures_util::{SinkExt, StreamExt};
use nym_client_core::app_api::{self, AppRequest, AppResponse, DeliveryFrame};
use nym_client_core::client::{Client, ClientEvent};
use nym_client_core::keys::ClientKeys;
use nym_client_core::topology::Topology;
use nym_client_core::{ReceivedMessage, Recipient};
use crate::origin::OriginPolicy;
use crate::received::ReceivedFile;
use std::sync::Arc;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{handshake, http, Message};

/// Most frames the engine hands out in one go before it looks at its inputs again.
const TRANSMIT_BATCH: usize = 32;
/// A gateway connection that lived this long resets the reconnect backoff.
const STABLE_CONNECTION: Duration = Duration::from_secs(10);
/// Bytes of received messages kept while no application is connected.
const STORED_BYTES_LIMIT: usize = 256 * 1024 * 1024;

/// What `run` tells its caller once applications can connect.
#[derive(Debug, Clone)]
pub struct Ready {
    pub address: Recipient,
    pub listen_addr: SocketAddr,
}

enum Input {
    GatewayConnected { conn: u64, writer: mpsc::UnboundedSender<Vec<u8>> },
    GatewayFrame { conn: u64, frame: Vec<u8> },
    GatewayDisconnected { conn: u64 },
    Topology(Box<Topology>),
    /// An application connected; `accepted` says whether it is served, or why not.
    AppAttach { app: u64, tx: mpsc::UnboundedSender<Delivery>, accepted: oneshot::Sender<Result<(), String>> },
    AppDetach { app: u64, undelivered: Vec<ReceivedMessage> },
    /// A send, sendAnonymous or reply request.
    AppSend { request: AppRequest, reply: oneshot::Sender<Result<(), String>> },
}

enum Delivery {
    Message(ReceivedMessage),
    Error(String),
}

/// Runs the client until `shutdown` resolves (Ctrl-C in the binary).
/// `directory` overrides the configured directory server.
pub async fn run(
    config: Config,
    directory: Option<String>,
    ready: Option<oneshot::Sender<Ready>>,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let directory = directory.unwrap_or_else(|| config.client.directory_server.clone());
    let keys = config.load_keys()?;
    let gateway_identity = config.gateway_identity()?;
    let core_config = config.debug.client_config()?;
    let max_message_size = core_config.max_message_size;

    let topology = directory::fetch_topology_retrying(&directory, 5).await?;
    let gateway_url = topology
        .gateway(&gateway_identity)
        .ok_or_else(|| {
            anyhow!(
                "our gateway {} is not in the topology from {directory}; is the network up? \
                 (re-initialise the client with another --id to pick another gateway)",
                config.client.gateway_id
            )
        })?
        .client_listener
        .clone();

    let mut client = Client::new(keys, gateway_identity, core_config, random_seed()?);
    client.handle_topology(topology);
    let reply_store_file = config.reply_store_file();
    match std::fs::read(&reply_store_file) {
        Ok(bytes) => client
            .import_reply_store(&bytes)
            .with_context(|| format!("cannot load {}", reply_store_file.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(anyhow!("cannot read {}: {e}", reply_store_file.display())),
    }
    // Messages kept for an application, and those handed over before a
    // restart: the gateway may deliver them again; they are not new.
    let received = ReceivedFile::open(config.received_messages_file())?;
    client.import_delivered_sets(&received.store().known_sets());
    if received.store().kept_count() > 0 {
        tracing::info!("{} received messages are kept for the next application", received.store().kept_count());
    }
    let address = client.address();

    let listen_addr = SocketAddr::from(([127, 0, 0, 1], config.socket.listening_port));
    let listener = TcpListener::bind(listen_addr)
        .await
        .with_context(|| format!("cannot listen on {listen_addr} (is another client running on that port?)"))?;
    let listen_addr = listener.local_addr().unwrap_or(listen_addr);

    let (tx, rx) = mpsc::channel::<Input>(4096);
    let (url_tx, url_rx) = watch::channel(gateway_url);
    let backoff = (
        Duration::from_millis(config.debug.gateway_reconnect_initial_backoff.max(1)),
        Duration::from_millis(config.debug.gateway_reconnect_max_backoff.max(1)),
    );
    let gateway_task = tokio::spawn(gateway_connection(url_rx, tx.clone(), backoff));
    let refresh = Duration::from_millis(config.debug.topology_refresh_rate.max(1000));
    let topology_task =
        tokio::spawn(topology_refresher(directory.clone(), gateway_identity, refresh, tx.clone(), url_tx));
    let origins = Arc::new(
        OriginPolicy::new(&config.socket.allowed_origins).map_err(|e| anyhow!("[socket] allowed_origins: {e}"))?,
    );
    tracing::info!(
        "web pages allowed to use the websocket API (by Origin): {}; programs that send no Origin are always served",
        origins.describe()
    );
    let server_task = tokio::spawn(app_server(listener, tx.clone(), address, max_message_size, origins));

    tracing::info!("client address: {address}");
    tracing::info!("websocket API listening on ws://{listen_addr}");
    if let Some(ready) = ready {
        let _ = ready.send(Ready { address, listen_addr });
    }

    let engine = Engine {
        client,
        start: Instant::now(),
        writer: None,
        conn: 0,
        connected_at: None,
        handshake_timeout: Duration::from_millis(config.debug.gateway_response_timeout.max(1)),
        apps: Vec::new(),
        max_apps: config.socket.max_applications.max(1),
        received,
        stored_limit: config.debug.stored_messages_limit,
        reply_store_file,
    };
    drop(tx);
    engine.run(rx, shutdown).await;

    server_task.abort();
    topology_task.abort();
    // The engine dropped the gateway writer: give the connection a moment to close politely.
    let _ = tokio::time::timeout(Duration::from_millis(500), gateway_task).await;
    tracing::info!("client stopped");
    Ok(())
}

pub fn random_seed() -> Result<[u8; 32]> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow!("no randomness from the OS: {e}"))?;
    Ok(seed)
}

struct Engine {
    client: Client,
    start: Instant,
    writer: Option<mpsc::UnboundedSender<Vec<u8>>>,
    conn: u64,
    /// When the current gateway connection opened, while its handshake is pending.
    connected_at: Option<Duration>,
    handshake_timeout: Duration,
    /// Connected applications: every received message goes to each.
    apps: Vec<(u64, mpsc::UnboundedSender<Delivery>)>,
    max_apps: usize,
    /// Received messages kept while no application is connected, on disk.
    received: ReceivedFile,
    stored_limit: usize,
    reply_store_file: std::path::PathBuf,
}

impl Engine {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Input>, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut more = false;
        loop {
            let deadline = [self.client.poll_timeout(), self.connected_at.map(|t| t + self.handshake_timeout)]
                .into_iter()
                .flatten()
                .min();
            let wake = deadline.map(|at| tokio::time::Instant::from_std(self.start + at));
            let sleep = async move {
                match wake {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut shutdown => break,
                input = rx.recv() => match input {
                    Some(input) => self.handle(input),
                    None => break,
                },
                _ = sleep => {
                    let now = self.now();
                    if self.connected_at.is_some_and(|t| t + self.handshake_timeout <= now) {
                        tracing::warn!("the gateway did not complete the handshake in {:?}; reconnecting", self.handshake_timeout);
                        self.drop_gateway();
                    }
                    self.client.handle_timeout(now);
                }
                _ = std::future::ready(()), if more => {}
            }
            more = self.flush();
        }
        self.writer = None;
    }

    fn handle(&mut self, input: Input) {
        let now = self.now();
        match input {
            Input::GatewayConnected { conn, writer } => {
                tracing::info!("connected to the gateway; authenticating");
                self.conn = conn;
                self.writer = Some(writer);
                self.connected_at = Some(now);
                self.client.handle_gateway_connected(now);
            }
            Input::GatewayFrame { conn, frame } => {
                if conn == self.conn && self.writer.is_some() {
                    self.client.handle_gateway_frame(&frame, now);
                }
            }
            Input::GatewayDisconnected { conn } => {
                if conn == self.conn && self.writer.is_some() {
                    tracing::warn!("lost the gateway connection; queued messages are kept");
                    self.writer = None;
                    self.connected_at = None;
                    self.client.handle_gateway_disconnected(now);
                }
            }
            Input::Topology(topology) => self.client.handle_topology(*topology),
            Input::AppAttach { app, tx, accepted } => {
                self.apps.retain(|(_, t)| !t.is_closed());
                if self.apps.len() >= self.max_apps {
                    let _ = accepted.send(Err(format!(
                        "too many applications are connected to this client ({}, [socket] max_applications); \
                         try again when one has left",
                        self.max_apps
                    )));
                    return;
                }
                if accepted.send(Ok(())).is_err() {
                    return;
                }
                tracing::info!("application connected ({} now)", self.apps.len() + 1);
                // What was kept while none was connected goes to the first that connects.
                for m in self.received.take_kept() {
                    if let Err(mpsc::error::SendError(Delivery::Message(m))) = tx.send(Delivery::Message(m)) {
                        self.received.keep(m);
                    }
                }
                self.received.sync();
                self.apps.push((app, tx));
            }
            Input::AppDetach { app, undelivered } => {
                self.apps.retain(|(id, t)| *id != app && !t.is_closed());
                tracing::info!("application disconnected ({} left)", self.apps.len());
                // The others had these too; with none left they are kept.
                if self.apps.is_empty() {
                    for m in undelivered {
                        self.received.keep(m);
                    }
                }
                self.received.trim(self.stored_limit, STORED_BYTES_LIMIT);
                self.received.sync();
            }
            Input::AppSend { request, reply } => {
                let result = match request {
                    AppRequest::Send { recipient, message } => self.client.send(recipient, message, now),
                    AppRequest::SendAnonymous { recipient, message, reply_surbs } => {
                        self.client.send_anonymous(recipient, message, reply_surbs, now)
                    }
                    AppRequest::Reply { sender_tag, message } => self.client.reply(sender_tag, message, now),
                    AppRequest::SelfAddress => Ok(0),
                };
                let _ = reply.send(result.map(|_| ()).map_err(|e| e.to_string()));
            }
        }
    }

    /// Hands out what the engine produced; true when frames are still pending.
    /// Events first: a received message is with the application or on disk
    /// before the frames that acknowledge it to the gateway go out.
    fn flush(&mut self) -> bool {
        self.handle_events();
        let mut sent = 0;
        let mut more = false;
        while sent < TRANSMIT_BATCH {
            match self.client.poll_transmit() {
                Some(frame) => {
                    sent += 1;
                    if let Some(w) = &self.writer {
                        if w.send(frame).is_err() {
                            self.writer = None;
                        }
                    }
                }
                None => break,
            }
        }
        if sent == TRANSMIT_BATCH {
            more = true;
        }
        more
    }

    fn handle_events(&mut self) {
        let mut reply_store_changed = false;
        while let Some(event) = self.client.poll_event() {
            match event {
                ClientEvent::ReplyStoreChanged => reply_store_changed = true,
                ClientEvent::SendFailed { message_id, recipient, reason } => {
                    let to = recipient.map_or_else(|| "a reply".to_string(), |r| format!("a message to {r}"));
                    let e = format!("{to} (message {message_id}) could not be delivered: {reason}");
                    tracing::warn!("{e}");
                    self.tell_apps(&e);
                }
                ClientEvent::Connected => {
                    tracing::info!("authenticated with the gateway; sending traffic");
                    self.connected_at = None;
                }
                ClientEvent::Received(message) => self.deliver(message),
                ClientEvent::GatewayError(e) => {
                    tracing::warn!("gateway: {e}");
                    self.tell_apps(&e);
                    if self.writer.is_some() && !self.client.is_connected() {
                        // The handshake failed: start over on a new connection.
                        self.drop_gateway();
                    }
                }
            }
        }
        if reply_store_changed {
            self.save_reply_store();
        }
        self.received.trim(self.stored_limit, STORED_BYTES_LIMIT);
        self.received.sync();
    }

    /// SURBs and reply keys must survive a restart: rewritten (0600) after
    /// every change, via a temporary file so a crash never leaves half of one.
    fn save_reply_store(&self) {
        let tmp = self.reply_store_file.with_extension("bin.tmp");
        let saved = crate::config::write_file(&tmp, &self.client.export_reply_store(), true)
            .and_then(|()| std::fs::rename(&tmp, &self.reply_store_file).map_err(Into::into));
        if let Err(e) = saved {
            tracing::warn!("cannot save the reply store: {e:#}");
        }
    }

    fn drop_gateway(&mut self) {
        self.writer = None;
        self.connected_at = None;
        self.client.handle_gateway_disconnected(self.now());
    }

    /// Errors and failure notices go to every connected application.
    fn tell_apps(&self, error: &str) {
        for (_, app) in &self.apps {
            let _ = app.send(Delivery::Error(error.to_string()));
        }
    }

    /// To every connected application, or into the store until one connects.
    fn deliver(&mut self, message: ReceivedMessage) {
        self.apps.retain(|(_, t)| !t.is_closed());
        let handed = self.apps.iter().filter(|(_, app)| app.send(Delivery::Message(message.clone())).is_ok()).count();
        if handed > 0 {
            self.received.handed_over(&message.sets);
        } else {
            self.received.keep(message);
        }
    }
}

/// Keeps one websocket to the gateway open, reconnecting with exponential backoff.
async fn gateway_connection(url: watch::Receiver<String>, tx: mpsc::Sender<Input>, (initial, max): (Duration, Duration)) {
    let mut backoff = initial;
    let mut conn = 0u64;
    loop {
        let target = url.borrow().clone();
        let config = WebSocketConfig::default().max_message_size(Some(64 << 20)).max_frame_size(Some(64 << 20));
        match tokio_tungstenite::connect_async_with_config(target.as_str(), Some(config), true).await {
            Ok((ws, _)) => {
                conn += 1;
                let opened = Instant::now();
                let (writer, mut out) = mpsc::unbounded_channel::<Vec<u8>>();
                if tx.send(Input::GatewayConnected { conn, writer }).await.is_err() {
                    return;
                }
                let (mut sink, mut stream) = ws.split();
                loop {
                    tokio::select! {
                        frame = out.recv() => match frame {
                            Some(frame) => {
                                let mut ok = sink.feed(Message::binary(frame)).await.is_ok();
                                let mut n = 0;
                                while ok && n < 64 {
                                    match out.try_recv() {
                                        Ok(f) => { ok = sink.feed(Message::binary(f)).await.is_ok(); n += 1; }
                                        Err(_) => break,
                                    }
                                }
                                if !ok || sink.flush().await.is_err() { break; }
                            }
                            None => {
                                // The engine gave this connection up (or is stopping).
                                let _ = sink.close().await;
                                break;
                            }
                        },
                        msg = stream.next() => match msg {
                            Some(Ok(Message::Binary(frame))) => {
                                if tx.send(Input::GatewayFrame { conn, frame: frame.to_vec() }).await.is_err() { return; }
                            }
                            Some(Ok(Message::Close(_))) | None => break,
                            Some(Ok(_)) => {}
                            Some(Err(e)) => { tracing::warn!("gateway websocket error: {e}"); break; }
                        }
                    }
                }
                if tx.send(Input::GatewayDisconnected { conn }).await.is_err() {
                    return;
                }
                if opened.elapsed() >= STABLE_CONNECTION {
                    backoff = initial;
                }
            }
            Err(e) => tracing::warn!("cannot connect to the gateway at {target}: {e}; retrying in {backoff:?}"),
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(max);
    }
}

async fn topology_refresher(
    directory: String,
    gateway: [u8; 32],
    every: Duration,
    tx: mpsc::Sender<Input>,
    url: watch::Sender<String>,
) {
    loop {
        tokio::time::sleep(every).await;
        match directory::fetch_topology(&directory).await {
            Ok(t) => {
                match t.gateway(&gateway) {
                    Some(g) => {
                        url.send_if_modified(|u| {
                            let changed = *u != g.client_listener;
                            if changed {
                                u.clone_from(&g.client_listener);
                            }
                            changed
                        });
                    }
                    None => tracing::warn!("our gateway is missing from the latest topology"),
                }
                if tx.send(Input::Topology(Box::new(t))).await.is_err() {
                    return;
                }
            }
            Err(e) => tracing::warn!("topology refresh failed (keeping the previous one): {e:#}"),
        }
    }
}

async fn app_server(
    listener: TcpListener,
    tx: mpsc::Sender<Input>,
    address: Recipient,
    max_message_size: usize,
    origins: Arc<OriginPolicy>,
) {
    let mut next_app = 0u64;
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                next_app += 1;
                tokio::spawn(app_connection(stream, peer, next_app, tx.clone(), address, max_message_size, origins.clone()));
            }
            Err(e) => {
                tracing::warn!("accepting an application connection failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Serves one application websocket.
async fn app_connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: u64,
    tx: mpsc::Sender<Input>,
    address: Recipient,
    max_message_size: usize,
    origins: Arc<OriginPolicy>,
) {
    // Room for a JSON-escaped message at the engine's limit, so that an
    // oversize message reaches the engine and gets a clear error.
    let limit = max_message_size.saturating_mul(2).saturating_add(1 << 20);
    let config = WebSocketConfig::default().max_message_size(Some(limit)).max_frame_size(Some(limit));
    let ws = match tokio_tungstenite::accept_hdr_async_with_config(stream, check_origin(&origins), Some(config)).await {
        Ok(ws) => ws,
        Err(e) => {
            tracing::warn!("websocket handshake with {peer} failed: {e}");
            return;
        }
    };
    let (mut sink, mut source) = ws.split();
    let (dtx, mut drx) = mpsc::unbounded_channel();
    let (accepted_tx, accepted_rx) = oneshot::channel();
    if tx.send(Input::AppAttach { app, tx: dtx, accepted: accepted_tx }).await.is_err() {
        return;
    }
    let refusal = match accepted_rx.await {
        Ok(Ok(())) => None,
        Ok(Err(why)) => Some(why),
        Err(_) => Some("the client is shutting down".to_string()),
    };
    if let Some(why) = refusal {
        let _ = sink.send(Message::text(AppResponse::Error(why).to_json())).await;
        let _ = sink.close().await;
        return;
    }
    let self_address = address.to_string();
    let mut last_was_text = false;
    loop {
        tokio::select! {
            msg = source.next() => {
                let response = match msg {
                    Some(Ok(Message::Text(text))) => {
                        last_was_text = true;
                        match app_api::parse_text_request(text.as_str()) {
                            Ok(req) => serve(req, &tx, &self_address).await,
                            Err(e) => AppResponse::Error(e),
                        }
                    }
                    Some(Ok(Message::Binary(bytes))) => {
                        last_was_text = false;
                        match app_api::parse_binary_request(&bytes) {
                            Ok(req) => serve(req, &tx, &self_address).await,
                            Err(e) => AppResponse::Error(e),
                        }
                    }
                    Some(Ok(Message::Close(_))) => {
                        // tungstenite queued the answer (the same code): send it.
                        let _ = sink.flush().await;
                        break;
                    }
                    None => break,
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => {
                        tracing::warn!("application websocket error: {e}");
                        let _ = sink.send(Message::text(AppResponse::Error(format!("websocket error: {e}")).to_json())).await;
                        break;
                    }
                };
                if sink.send(Message::text(response.to_json())).await.is_err() {
                    break;
                }
            }
            delivery = drx.recv() => {
                let sent = match delivery {
                    Some(Delivery::Message(m)) => match app_frame(m, last_was_text) {
                        DeliveryFrame::Text(t) => sink.send(Message::text(t)).await,
                        DeliveryFrame::Binary(b) => sink.send(Message::binary(b)).await,
                    },
                    Some(Delivery::Error(e)) => sink.send(Message::text(AppResponse::Error(e).to_json())).await,
                    None => break,
                };
                if sent.is_err() {
                    break;
                }
            }
        }
    }
    drx.close();
    let mut undelivered = Vec::new();
    while let Ok(d) = drx.try_recv() {
        if let Delivery::Message(m) = d {
            undelivered.push(m);
        }
    }
    let _ = tx.send(Input::AppDetach { app, undelivered }).await;
}

/// The upgrade callback: a request from a web page (it carries an `Origin`)
/// is refused with 403 unless the page's origin is allowed.
fn check_origin(
    origins: &OriginPolicy,
) -> impl FnOnce(&handshake::server::Request, handshake::server::Response) -> Result<handshake::server::Response, handshake::server::ErrorResponse> + '_
{
    move |request, response| {
        let Some(origin) = request.headers().get(http::header::ORIGIN) else { return Ok(response) };
        let origin = String::from_utf8_lossy(origin.as_bytes()).into_owned();
        if origins.allows(&origin) {
            return Ok(response);
        }
        tracing::warn!("refused a websocket connection from a web page of origin '{origin}' (not in [socket] allowed_origins)");
        let mut refusal = handshake::server::ErrorResponse::new(Some(format!(
            "web pages of origin '{origin}' may not use this client; allow it with [socket] allowed_origins or --allow-origin\n"
        )));
        *refusal.status_mut() = http::StatusCode::FORBIDDEN;
        Err(refusal)
    }
}

/// A received message as the application sees it: anonymous ones as
/// `received` JSON with their sender tag, others as sent.
fn app_frame(message: ReceivedMessage, last_was_text: bool) -> DeliveryFrame {
    let bytes = match &message.sender_tag {
        Some(tag) => app_api::received_json(&message.message, tag).into_bytes(),
        None => message.message,
    };
    app_api::delivery_frame(bytes, last_was_text)
}

async fn serve(req: AppRequest, tx: &mpsc::Sender<Input>, self_address: &str) -> AppResponse {
    match req {
        AppRequest::SelfAddress => AppResponse::SelfAddress(self_address.to_string()),
        request => {
            let (reply, result) = oneshot::channel();
            if tx.send(Input::AppSend { request, reply }).await.is_err() {
                return AppResponse::Error("the client is shutting down".into());
            }
            match result.await {
                Ok(Ok(())) => AppResponse::Send,
                Ok(Err(e)) => AppResponse::Error(e),
                Err(_) => AppResponse::Error("the client is shutting down".into()),
            }
        }
    }
}

/// Connects to the gateway once and completes the handshake: the gateway
/// records the client as registered. Used by `init`.
pub async fn register(keys: &ClientKeys, gateway_identity: [u8; 32], url: &str, topology: Topology, timeout: Duration) -> Result<()> {
    let config = nym_client_core::client::ClientConfig {
        // Registration sends no traffic.
        average_packet_delay: Duration::ZERO,
        loop_cover_delay: Duration::ZERO,
        ..Default::default()
    };
    let mut client = Client::new(keys.clone(), gateway_identity, config, random_seed()?);
    client.handle_topology(topology);
    let start = Instant::now();
    let work = async {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .with_context(|| format!("cannot connect to the gateway at {url}"))?;
        let (mut sink, mut stream) = ws.split();
        client.handle_gateway_connected(start.elapsed());
        loop {
            while let Some(frame) = client.poll_transmit() {
                sink.send(Message::binary(frame)).await.context("writing to the gateway")?;
            }
            while let Some(event) = client.poll_event() {
                match event {
                    ClientEvent::Connected => {
                        let _ = sink.close().await;
                        return Ok(());
                    }
                    ClientEvent::GatewayError(e) => return Err(anyhow!("the gateway refused registration: {e}")),
                    _ => {}
                }
            }
            match stream.next().await {
                Some(Ok(Message::Binary(frame))) => client.handle_gateway_frame(&frame, start.elapsed()),
                Some(Ok(Message::Close(_))) | None => return Err(anyhow!("the gateway closed the connection during registration")),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(anyhow!("gateway websocket error during registration: {e}")),
            }
        }
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| anyhow!("the gateway at {url} did not complete registration within {timeout:?}"))?
}
