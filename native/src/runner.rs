//! `nym-client run`: the tokio shim around the sans-IO [`Driver`].
//!
//! One task owns the driver and is the only one touching it. It carries out
//! what the driver asks (open or close a gateway websocket, send a frame,
//! fetch the topology, write a store, hand a message to the applications)
//! and fires its one timer; everything else talks to it over a channel
//! (`inputs.rs`). It first carries out the driver's start-up (the first
//! topology fetch and its retries; a directory key learned on first use is
//! pinned in `config.toml`) and only then listens for applications; a
//! driver that cannot start ends `run` with its error:
//!
//! ```text
//!  app websockets ──attach/request/detach──▶ ┌────────┐ ──Connect/Transmit──▶ gateway websocket task
//!  (app_socket.rs) ◀──────deliveries──────── │ driver │ ◀──frames/closed──── (one per connection)
//!  topology fetch  ──────────fetched───────▶ └────────┘
//! ```

use crate::app_socket::{self, AppServer};
use crate::config::Config;
use crate::directory;
use crate::inputs::{AppDelivery, Input};
use crate::origin::OriginPolicy;
use crate::received::StoreFile;
use anyhow::{anyhow, bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use nym_client_core::{
    AppId, Client, ClientEvent, ClientKeys, ConnectionId, DeliverTo, Driver, DriverEvent, Output, ReceivedMessage,
    Recipient, Restored, StartError, StoreName, StoreWrite, Topology,
};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// Most frames handed to the gateway in one go before the engine looks at
/// its inputs again (IO fairness, not protocol).
const TRANSMIT_BATCH: usize = 32;

/// What `run` tells its caller once applications can connect.
#[derive(Debug, Clone)]
pub struct Ready {
    pub address: Recipient,
    pub listen_addr: SocketAddr,
}

/// Runs the client until `shutdown` resolves (Ctrl-C in the binary).
/// `directory` overrides the configured directory server.
pub async fn run(
    config: Config,
    directory: Option<String>,
    ready: Option<oneshot::Sender<Ready>>,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let trust = config.directory_trust(directory.as_deref())?;
    let directory = directory.unwrap_or_else(|| config.client.directory_server.clone());
    let keys = config.load_keys()?;
    let gateway_identity = config.gateway_identity()?;
    let driver_config = config.driver_config()?;
    let max_message_size = driver_config.client.max_message_size;
    let restored = Restored {
        reply_store: StoreFile::read(&config.reply_store_file())?,
        received_messages: StoreFile::read(&config.received_messages_file())?,
    };
    let (driver, report) = Driver::new(keys, trust, Some(gateway_identity), driver_config, random_seed()?, restored)
        .map_err(|e| {
            anyhow!("{e} ({} can be removed, losing the reply blocks it held)", config.reply_store_file().display())
        })?;
    if report.torn_bytes > 0 || report.damaged_records > 0 {
        tracing::warn!(
            "{}: skipped {} damaged records and {} bytes of an unfinished one (the gateway delivers those again)",
            config.received_messages_file().display(),
            report.damaged_records,
            report.torn_bytes
        );
    }
    if report.kept_messages > 0 {
        tracing::info!("{} received messages are kept for the next application", report.kept_messages);
    }

    let (tx, mut rx) = mpsc::channel::<Input>(4096);
    let mut engine = Engine {
        driver,
        start: Instant::now(),
        inputs: tx,
        directory,
        gateway: None,
        opening: None,
        apps: HashMap::new(),
        reply_store: StoreFile::replaceable(config.reply_store_file()),
        received: StoreFile::appendable(config.received_messages_file())?,
        config,
    };
    engine.start_up(&mut rx).await?;
    let config = engine.config.clone();
    let address = engine.driver.address().ok_or_else(|| anyhow!("the client started without a gateway"))?;

    let listen_addr = SocketAddr::from(([127, 0, 0, 1], config.socket.listening_port));
    let listener = TcpListener::bind(listen_addr)
        .await
        .with_context(|| format!("cannot listen on {listen_addr} (is another client running on that port?)"))?;
    let listen_addr = listener.local_addr().unwrap_or(listen_addr);

    // Applications have a queue of their own, which the engine reads first:
    // a request never waits behind gateway traffic.
    let (app_tx, app_rx) = mpsc::channel::<Input>(1024);
    let origins = Arc::new(
        OriginPolicy::new(&config.socket.allowed_origins).map_err(|e| anyhow!("[socket] allowed_origins: {e}"))?,
    );
    tracing::info!(
        "web pages allowed to use the websocket API (by Origin): {}; programs that send no Origin are always served",
        origins.describe()
    );
    let server = AppServer {
        engine: app_tx,
        address: address.to_string(),
        max_message_size,
        origins,
        push_after_quiet: Duration::from_millis(config.socket.push_after_quiet_ms),
    };
    let server_task = tokio::spawn(app_socket::serve(listener, server));

    tracing::info!("client address: {address}");
    tracing::info!("websocket API listening on ws://{listen_addr}");
    if let Some(ready) = ready {
        let _ = ready.send(Ready { address, listen_addr });
    }

    let gateway_task = engine.run(rx, app_rx, shutdown).await;

    server_task.abort();
    // The engine dropped the gateway writer: give the connection a moment to close politely.
    if let Some(task) = gateway_task {
        let _ = tokio::time::timeout(Duration::from_millis(500), task).await;
    }
    tracing::info!("client stopped");
    Ok(())
}

pub fn random_seed() -> Result<[u8; 32]> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow!("no randomness from the OS: {e}"))?;
    Ok(seed)
}

struct Engine {
    driver: Driver,
    start: Instant,
    /// For the tasks the engine spawns (connections, fetches).
    inputs: mpsc::Sender<Input>,
    directory: String,
    /// The open gateway connection and its writer.
    gateway: Option<(ConnectionId, mpsc::UnboundedSender<Vec<u8>>)>,
    /// The latest connection's task (opening or open).
    opening: Option<(ConnectionId, tokio::task::JoinHandle<()>)>,
    apps: HashMap<AppId, mpsc::UnboundedSender<AppDelivery>>,
    reply_store: StoreFile,
    received: StoreFile,
    /// Where a directory key learned on first use is pinned (`[client] directory_key`).
    config: Config,
}

impl Engine {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Returns the last gateway connection's task, to let it close.
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Input>,
        mut app_rx: mpsc::Receiver<Input>,
        shutdown: impl Future<Output = ()>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        tokio::pin!(shutdown);
        let mut more = self.carry_out();
        loop {
            let sleep = self.next_wake();
            tokio::select! {
                // In this order: applications before the gateway's frames.
                biased;
                _ = &mut shutdown => break,
                Some(input) = app_rx.recv() => self.handle(input),
                input = rx.recv() => match input {
                    Some(input) => self.handle(input),
                    None => break,
                },
                _ = sleep => self.driver.handle_timeout(self.now()),
                _ = std::future::ready(()), if more => {}
            }
            more = self.carry_out();
        }
        self.driver.stop(self.now());
        self.carry_out();
        self.opening.take().map(|(_, task)| task)
    }

    /// Sleeps until the driver's next timer (forever when it has none).
    fn next_wake(&self) -> impl Future<Output = ()> {
        let wake = self.driver.poll_timeout().map(|at| tokio::time::Instant::from_std(self.start + at));
        async move {
            match wake {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        }
    }

    /// Starts the driver and carries out its start-up (the first topology,
    /// retried as the driver says; a learned directory key pinned in the
    /// config) until it has its gateway, or fails to start.
    async fn start_up(&mut self, rx: &mut mpsc::Receiver<Input>) -> Result<()> {
        self.driver.start(self.now());
        loop {
            while let Some(output) = self.driver.poll_output(self.now()) {
                match output {
                    Output::Event(DriverEvent::StartFailed(e)) => return Err(self.start_failure(e)),
                    Output::Event(event @ DriverEvent::GatewayChosen { .. }) => {
                        self.report(event);
                        // The rest (the first connection) is the running engine's.
                        return Ok(());
                    }
                    Output::Persist { store: StoreName::DirectoryKey, write } => self.pin_directory_key(write)?,
                    other => self.execute(other),
                }
            }
            let sleep = self.next_wake();
            tokio::select! {
                input = rx.recv() => match input {
                    Some(input) => self.handle(input),
                    None => bail!("the client stopped while starting"),
                },
                _ = sleep => self.driver.handle_timeout(self.now()),
            }
        }
    }

    /// The error `run` exits with when the driver could not start.
    fn start_failure(&self, e: StartError) -> anyhow::Error {
        let directory = &self.directory;
        match e {
            StartError::Topology { .. } if !self.config.client.authorities.is_empty() => anyhow!(
                "{e} (the topology must be signed by at least the threshold of the [[client.authorities]] in config.toml)"
            ),
            StartError::Topology { .. } if self.config.client.directory_key.is_some() => anyhow!(
                "{e} (from {directory}; the topology must be signed by the directory key in [client] directory_key of config.toml)"
            ),
            StartError::Topology { .. } => anyhow!("{e} (from {directory})"),
            StartError::GatewayNotInTopology(_) | StartError::NoGateway => anyhow!(
                "{e} from {directory}; is the network up? (re-initialise the client with another --id to pick another gateway)"
            ),
            StartError::ReplyStore(_) => anyhow!("{e}"),
        }
    }

    /// Trust on first use: the driver learned the directory key (a config
    /// from before directory keys); pinned in the config from now on.
    fn pin_directory_key(&mut self, write: StoreWrite) -> Result<()> {
        let StoreWrite::Replace(bytes) = write else { bail!("the directory key is only ever replaced") };
        let key = String::from_utf8(bytes).context("the learned directory key is not text")?;
        self.config.client.directory_key = Some(key.clone());
        self.config.save()?;
        tracing::warn!(
            "no directory key was pinned: trusting {key} from {} from now on (saved as [client] directory_key; \
             compare it with the one the directory's operator publishes)",
            self.directory
        );
        Ok(())
    }

    fn handle(&mut self, input: Input) {
        let now = self.now();
        match input {
            Input::GatewayOpen { conn, writer } => {
                if self.opening.as_ref().is_some_and(|(c, _)| *c == conn) && self.gateway.is_none() {
                    self.gateway = Some((conn, writer));
                    tracing::info!("connected to the gateway; authenticating");
                    self.driver.handle_connected(conn, now);
                } // else the driver gave it up: dropping the writer closes it
            }
            Input::GatewayFrame { conn, frame } => self.driver.handle_frame(conn, &frame, now),
            Input::GatewayClosed { conn, why } => {
                if self.gateway.as_ref().is_some_and(|(c, _)| *c == conn) {
                    self.gateway = None;
                }
                self.driver.handle_closed(conn, &why, now);
            }
            Input::TopologyFetched(fetched) => self.driver.handle_topology_fetched(
                fetched.as_deref().map_err(Clone::clone),
                now,
                directory::unix_time_ms(),
            ),
            Input::AppAttach { tx, accepted } => {
                // An application that left is removed by its AppDetach (or by
                // the first delivery that fails), together with the driver's count.
                match self.driver.attach_app() {
                    Ok(app) => {
                        if accepted.send(Ok(app)).is_ok() {
                            tracing::info!("application connected ({} now)", self.driver.applications());
                            self.apps.insert(app, tx);
                        } else {
                            self.driver.detach_app(app, Vec::new());
                        }
                    }
                    Err(why) => {
                        let _ = accepted.send(Err(why));
                    }
                }
            }
            Input::AppDetach { app, undelivered } => {
                self.apps.remove(&app);
                self.driver.detach_app(app, undelivered);
                tracing::info!("application disconnected ({} left)", self.driver.applications());
            }
            Input::AppRequest { request, answer } => {
                let _ = answer.send(self.driver.handle_request(request, now));
            }
        }
    }

    /// Does what the driver asks, in order; true when frames are still pending.
    fn carry_out(&mut self) -> bool {
        let mut sent = 0;
        while let Some(output) = self.driver.poll_output(self.now()) {
            let transmit = matches!(output, Output::Transmit { .. });
            self.execute(output);
            if transmit {
                sent += 1;
                if sent == TRANSMIT_BATCH {
                    return true;
                }
            }
        }
        false
    }

    /// Carries out one output of the driver.
    fn execute(&mut self, output: Output) {
        match output {
            Output::Transmit { conn, frame } => {
                if let Some((c, writer)) = &self.gateway {
                    if *c == conn && writer.send(frame).is_err() {
                        self.gateway = None;
                    }
                }
            }
            Output::Connect { conn, url } => {
                let task = tokio::spawn(gateway_connection(conn, url, self.inputs.clone()));
                if let Some((_, old)) = self.opening.replace((conn, task)) {
                    old.abort();
                }
            }
            Output::Close { conn } => {
                if self.gateway.as_ref().is_some_and(|(c, _)| *c == conn) {
                    self.gateway = None; // its task sees the writer gone and closes politely
                } else if self.opening.as_ref().is_some_and(|(c, _)| *c == conn) {
                    if let Some((_, task)) = self.opening.take() {
                        task.abort(); // still connecting
                    }
                }
            }
            Output::FetchTopology { url } => {
                let inputs = self.inputs.clone();
                tokio::spawn(async move {
                    let fetched = directory::fetch_topology_text(&url).await.map_err(|e| format!("{e:#}"));
                    let _ = inputs.send(Input::TopologyFetched(fetched)).await;
                });
            }
            Output::Persist { store, write } => match store {
                StoreName::ReplyStore => self.reply_store.write(write),
                StoreName::ReceivedMessages => self.received.write(write),
                StoreName::DirectoryKey => {
                    if let Err(e) = self.pin_directory_key(write) {
                        tracing::error!("cannot pin the directory key: {e:#}");
                    }
                }
            },
            Output::Deliver { to, message } => self.deliver(to, message),
            Output::Event(event) => self.report(event),
        }
    }

    fn deliver(&mut self, to: DeliverTo, message: ReceivedMessage) {
        let targets: Vec<AppId> = match to {
            DeliverTo::All => self.apps.keys().copied().collect(),
            DeliverTo::One(app) => vec![app],
        };
        for app in targets {
            let sent = self.apps.get(&app).is_some_and(|tx| tx.send(AppDelivery::Message(message.clone())).is_ok());
            if !sent {
                // Gone before its detach arrived: with no one left, the message is kept.
                self.apps.remove(&app);
                self.driver.detach_app(app, vec![message.clone()]);
            }
        }
    }

    fn report(&self, event: DriverEvent) {
        match &event {
            DriverEvent::Connected { .. } => tracing::info!("{event}; sending traffic"),
            DriverEvent::GatewayChosen { .. }
            | DriverEvent::GatewayMoved { .. }
            | DriverEvent::RouteRefused { .. }
            | DriverEvent::TopologyRestored { .. } => {
                tracing::info!("{event}")
            }
            _ => tracing::warn!("{event}"),
        }
        if let Some(notice) = event.for_applications() {
            for app in self.apps.values() {
                let _ = app.send(AppDelivery::Notice(notice.clone()));
            }
        }
    }
}

/// One websocket to the gateway, from open to close; frames both ways.
async fn gateway_connection(conn: ConnectionId, url: String, tx: mpsc::Sender<Input>) {
    let config = WebSocketConfig::default().max_message_size(Some(64 << 20)).max_frame_size(Some(64 << 20));
    let ws = match tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config), true).await {
        Ok((ws, _)) => ws,
        Err(e) => {
            let _ = tx.send(Input::GatewayClosed { conn, why: format!("cannot connect: {e}") }).await;
            return;
        }
    };
    let (writer, mut out) = mpsc::unbounded_channel::<Vec<u8>>();
    if tx.send(Input::GatewayOpen { conn, writer }).await.is_err() {
        return;
    }
    let (mut sink, mut stream) = ws.split();
    let why = loop {
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
                    if !ok || sink.flush().await.is_err() { break "writing failed".to_string(); }
                }
                None => {
                    // The driver gave this connection up (or is stopping).
                    let _ = sink.close().await;
                    return;
                }
            },
            msg = stream.next() => match msg {
                Some(Ok(Message::Binary(frame))) => {
                    if tx.send(Input::GatewayFrame { conn, frame: frame.to_vec() }).await.is_err() { return; }
                }
                Some(Ok(Message::Close(close))) => {
                    break close.map_or_else(|| "closed by the gateway".to_string(), |c| format!("closed by the gateway ({} {})", c.code, c.reason));
                }
                None => break "connection closed".to_string(),
                Some(Ok(_)) => {}
                Some(Err(e)) => break format!("websocket error: {e}"),
            }
        }
    };
    let _ = tx.send(Input::GatewayClosed { conn, why }).await;
}

/// Connects to the gateway once and completes the handshake: the gateway
/// records the client as registered. Used by `init`.
pub async fn register(
    keys: &ClientKeys,
    gateway_identity: [u8; 32],
    url: &str,
    topology: Topology,
    timeout: Duration,
) -> Result<()> {
    let config = nym_client_core::ClientConfig {
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
            while let Some(frame) = client.poll_transmit(start.elapsed()) {
                sink.send(Message::binary(frame)).await.context("writing to the gateway")?;
            }
            while let Some(event) = client.poll_event() {
                match event {
                    ClientEvent::Connected => {
                        let _ = sink.close().await;
                        return Ok(());
                    }
                    ClientEvent::HandshakeFailed(e) | ClientEvent::GatewayError(e) => {
                        return Err(anyhow!("the gateway refused registration: {e}"))
                    }
                    _ => {}
                }
            }
            match stream.next().await {
                Some(Ok(Message::Binary(frame))) => client.handle_gateway_frame(&frame, start.elapsed()),
                Some(Ok(Message::Close(_))) | None => {
                    return Err(anyhow!("the gateway closed the connection during registration"))
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(anyhow!("gateway websocket error during registration: {e}")),
            }
        }
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| anyhow!("the gateway at {url} did not complete registration within {timeout:?}"))?
}
