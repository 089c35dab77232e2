//! The driver: everything a shim needs above [`Client`], written once.
//!
//! [`Client`] speaks to one gateway connection at a time and knows nothing
//! of sockets coming and going, of directories or of applications. The
//! native (tokio) and browser (wasm-bindgen) shims need the same things
//! around it, so they live here, sans-IO like the engine:
//!
//! - **the gateway connection's life**: when to open one, how long a
//!   handshake may take, how long to wait before the next try (exponential
//!   backoff, reset only by a connection that stayed up), which URL to dial
//!   (the gateway's current one, from the latest topology);
//! - **the topology**: when to fetch it again, and whether to believe what
//!   came back: signed by the directory key the client pinned, not expired,
//!   not older than the one in use, every node descriptor signed by its node
//!   ([`nym_wire::signed::verify_topology`]), our version spoken and our
//!   gateway still listed; anything else is refused and the last good
//!   topology stays;
//! - **what must survive a restart** (the reply store, the received-message
//!   log), as "write these bytes under this name" outputs, always before the
//!   frames that depend on them;
//! - **deliveries**: to every attached application, or kept (bounded) until
//!   one attaches;
//! - **requests** from applications (send, sendAnonymous, reply, selfAddress).
//!
//! A shim feeds inputs (`handle_*`, each with `now`), then takes every
//! [`Output`] from [`Driver::poll_output`] in order and carries it out, then
//! arms one timer for [`Driver::poll_timeout`] that calls
//! [`Driver::handle_timeout`]. It holds no timers, backoff or retry logic of
//! its own.
//!
//! The four behaviours the two shims used to disagree on, settled here:
//! 1. a failed handshake closes the connection and the driver reconnects
//!    (after the backoff), like any other lost connection;
//! 2. every connection attempt, first or not, has the handshake timeout,
//!    counted from the moment the driver asks for the connection (so a
//!    connect that hangs is covered too);
//! 3. a new URL for our gateway in a fetched topology is used from the next
//!    connection on (a working connection is not dropped for it);
//! 4. the backoff goes back to its initial value only when a connection that
//!    completed its handshake closes after [`DriverConfig::stable_connection`]:
//!    a gateway that accepts and drops at once is not hammered.

use crate::app_api::{AppRequest, AppResponse};
use crate::client::{Client, ClientConfig, ClientEvent, ReceivedMessage};
use crate::keys::ClientKeys;
use crate::received_store::ReceivedStore;
use crate::VerifiedTopology;
use crate::{Error, Recipient};
use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

/// Every default of the client that the native config and the browser
/// options share, in one place.
pub mod defaults {
    use std::time::Duration;

    /// How often the topology is fetched again.
    pub const TOPOLOGY_REFRESH: Duration = Duration::from_secs(30);
    /// After the gateway refused a departed first hop, the topology is
    /// fetched at once, but at most this often.
    pub const EARLY_TOPOLOGY_FETCH_GAP: Duration = Duration::from_secs(2);
    /// First wait before reconnecting to the gateway; doubles per failure.
    pub const RECONNECT_INITIAL: Duration = Duration::from_millis(500);
    /// Longest wait between reconnection attempts.
    pub const RECONNECT_MAX: Duration = Duration::from_secs(30);
    /// From asking for a connection to a completed handshake.
    pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
    /// A connection that lived this long resets the reconnect backoff.
    pub const STABLE_CONNECTION: Duration = Duration::from_secs(10);
    /// Received messages kept while no application is attached.
    pub const KEPT_MESSAGES: usize = 1000;
    /// Bytes of received messages kept while no application is attached.
    pub const KEPT_BYTES: usize = 256 * 1024 * 1024;
    /// Applications attached at once.
    pub const MAX_APPLICATIONS: usize = 16;
    /// SURBs sent with an anonymous message when the application names no count.
    pub const REPLY_SURBS: usize = crate::app_api::DEFAULT_REPLY_SURBS;
}

/// What the driver needs besides the engine's own [`ClientConfig`].
#[derive(Debug, Clone, PartialEq)]
pub struct DriverConfig {
    pub client: ClientConfig,
    /// From asking for a connection to a completed handshake; then the
    /// connection is closed and counts as failed.
    pub handshake_timeout: Duration,
    pub reconnect_initial: Duration,
    pub reconnect_max: Duration,
    /// A handshaken connection that closes after this long resets the backoff.
    pub stable_connection: Duration,
    pub topology_refresh: Duration,
    pub max_applications: usize,
    /// Received messages kept while no application is attached (the oldest
    /// go first, down to nine tenths, past either limit).
    pub kept_messages: usize,
    pub kept_bytes: usize,
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            client: ClientConfig::default(),
            handshake_timeout: defaults::HANDSHAKE_TIMEOUT,
            reconnect_initial: defaults::RECONNECT_INITIAL,
            reconnect_max: defaults::RECONNECT_MAX,
            stable_connection: defaults::STABLE_CONNECTION,
            topology_refresh: defaults::TOPOLOGY_REFRESH,
            max_applications: defaults::MAX_APPLICATIONS,
            kept_messages: defaults::KEPT_MESSAGES,
            kept_bytes: defaults::KEPT_BYTES,
        }
    }
}

/// One gateway connection the driver asked for. Inputs naming an older one
/// are ignored, so a shim never has to sort out late events of a socket the
/// driver gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnectionId(u64);

/// An attached application (a websocket of the native API, the page's
/// `onMessage` callback).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AppId(u64);

/// What the driver keeps across restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreName {
    /// SURBs we hold and the keys to read replies ([`Client::export_reply_store`]).
    ReplyStore,
    /// The received-message log ([`crate::received_store`]).
    ReceivedMessages,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreWrite {
    /// Replace the whole store with these bytes (atomically, if you can).
    Replace(Vec<u8>),
    /// Append these bytes; `sync`: make them durable before going on (a
    /// kept message is in them, and its gateway ack follows).
    Append { bytes: Vec<u8>, sync: bool },
}

/// Who gets a delivered message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliverTo {
    /// Every attached application.
    All,
    /// One application (messages kept while none was attached go to the first that attaches).
    One(AppId),
}

/// Why a gateway connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disconnect {
    /// The socket could not be opened, or closed before the handshake.
    Closed(String),
    /// No completed handshake within [`DriverConfig::handshake_timeout`].
    HandshakeTimeout(Duration),
    /// The gateway refused us or its handshake was bad.
    HandshakeFailed(String),
}

impl fmt::Display for Disconnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Disconnect::Closed(why) => write!(f, "{why}"),
            Disconnect::HandshakeTimeout(t) => write!(f, "the gateway did not complete the handshake within {t:?}"),
            Disconnect::HandshakeFailed(why) => write!(f, "{why}"),
        }
    }
}

/// News for the shim (to log) and its applications (to hear).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriverEvent {
    /// The gateway accepted our handshake; traffic flows.
    Connected { url: String },
    /// A connection (or an attempt) ended; the next attempt is in `retry_in`.
    /// Queued messages stay queued.
    Disconnected { url: String, reason: Disconnect, retry_in: Duration },
    /// A message could not be delivered; `recipient` is `None` for replies.
    SendFailed { message_id: u64, recipient: Option<Recipient>, reason: String },
    /// The gateway reported a problem on a working connection.
    GatewayError(String),
    /// A topology fetch failed or was refused; the previous one stays.
    TopologyRefused(String),
    /// Our gateway's URL changed in the topology; used from the next connection.
    GatewayMoved { url: String },
    /// The gateway refused a first hop that left the network; the packet went
    /// again on a live route and the topology is fetched early.
    RouteRefused { first_hop: String },
    /// No application attached and the kept messages passed a limit: the oldest went.
    KeptMessagesDropped { count: usize, bytes: usize },
}

impl DriverEvent {
    /// Whether applications should hear of it (the rest is for the log).
    pub fn concerns_applications(&self) -> bool {
        matches!(self, DriverEvent::SendFailed { .. } | DriverEvent::GatewayError(_))
    }
}

impl fmt::Display for DriverEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DriverEvent::Connected { url } => write!(f, "authenticated with the gateway at {url}"),
            DriverEvent::Disconnected { url, reason, retry_in } => {
                write!(f, "lost the connection to the gateway at {url} ({reason}); reconnecting in {} ms", retry_in.as_millis())
            }
            DriverEvent::SendFailed { message_id, recipient, reason } => {
                let to = recipient.map_or_else(|| "a reply".to_string(), |r| format!("a message to {r}"));
                write!(f, "{to} (message {message_id}) could not be delivered: {reason}")
            }
            DriverEvent::GatewayError(e) => write!(f, "gateway: {e}"),
            DriverEvent::TopologyRefused(e) => write!(f, "topology refresh failed (keeping the previous one): {e}"),
            DriverEvent::GatewayMoved { url } => write!(f, "our gateway moved to {url}; using it from the next connection"),
            DriverEvent::RouteRefused { first_hop } => write!(
                f,
                "the gateway no longer forwards to {first_hop} (it left the network): sent again on a live route; fetching the topology"
            ),
            DriverEvent::KeptMessagesDropped { count, bytes } => write!(
                f,
                "no application attached: dropped the {count} oldest kept messages ({bytes} bytes) to stay within the limits"
            ),
        }
    }
}

/// What the shim must do, in the order [`Driver::poll_output`] gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Open a websocket to `url`; report [`Driver::handle_connected`], then
    /// frames, then [`Driver::handle_closed`] (also when it cannot open).
    Connect { conn: ConnectionId, url: String },
    /// Close this connection (no more input from it is needed).
    Close { conn: ConnectionId },
    /// Send a binary frame on this connection.
    Transmit { conn: ConnectionId, frame: Vec<u8> },
    /// Fetch the topology from the directory; answer with
    /// [`Driver::handle_topology_fetched`].
    FetchTopology,
    /// Write to a store before carrying out the outputs after this one.
    Persist { store: StoreName, write: StoreWrite },
    /// Hand a message to applications. Delivered means taken: a shim that
    /// cannot hand it over gives it back with [`Driver::detach_app`].
    Deliver { to: DeliverTo, message: ReceivedMessage },
    Event(DriverEvent),
}

/// Why the driver cannot start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    #[error("our gateway {0} is not in the topology")]
    GatewayNotInTopology(String),
    #[error("the saved reply store is unreadable: {0}")]
    ReplyStore(Error),
}

/// What the shim read from its stores at start.
#[derive(Debug, Clone, Default)]
pub struct Restored {
    pub reply_store: Option<Vec<u8>>,
    pub received_messages: Option<Vec<u8>>,
}

/// What loading the stores found, for the shim's log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreReport {
    pub kept_messages: usize,
    /// Bytes of an unfinished last record in the received log (a crash
    /// mid-write; that message comes again from the gateway).
    pub torn_bytes: usize,
    pub damaged_records: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// Not started, or stopped.
    Idle,
    /// Waiting to connect again.
    Waiting { retry_at: Duration },
    /// Asked for a connection; no completed handshake yet.
    Opening { conn: ConnectionId, deadline: Duration, open: bool },
    Up { conn: ConnectionId, since: Duration },
}

pub struct Driver {
    client: Client,
    config: DriverConfig,
    gateway_identity: [u8; 32],
    gateway_url: String,
    /// The directory key every topology must be signed by.
    directory_key: [u8; 32],
    /// `issuedAt` of the topology in use: an older one is a replay.
    topology_issued_at: u64,
    /// The wall clock (Unix ms) when the first topology was checked: the
    /// engine's clock until the first refresh brings a fresh reading.
    clock_at_start: u64,
    link: Link,
    next_conn: u64,
    backoff: Duration,
    /// When to fetch the topology next; `None` while a fetch is out or stopped.
    refresh_at: Option<Duration>,
    /// When the last topology fetch was asked for.
    last_fetch: Option<Duration>,
    outputs: VecDeque<Output>,
    received: ReceivedStore,
    /// Received-log bytes to append at the end of this step.
    received_append: Vec<u8>,
    received_sync: bool,
    /// The received log must be rewritten (a trim or a compaction).
    received_rewrite: bool,
    reply_store_changed: bool,
    apps: Vec<AppId>,
    next_app: u64,
}

impl Driver {
    /// A driver for an engine with these keys, whose address belongs to
    /// `gateway_identity`, starting from `topology` (the shim fetched it to
    /// start and checked it with [`crate::verify_topology`]; later ones the
    /// driver asks for, and they must be signed by the same directory key)
    /// and what the shim restored.
    pub fn new(
        keys: ClientKeys,
        gateway_identity: [u8; 32],
        topology: VerifiedTopology,
        config: DriverConfig,
        rng_seed: [u8; 32],
        restored: Restored,
    ) -> Result<(Self, RestoreReport), StartError> {
        let VerifiedTopology { topology, directory_key, issued_at, verified_at, .. } = topology;
        let gateway_url = topology
            .gateway(&gateway_identity)
            .ok_or_else(|| StartError::GatewayNotInTopology(crate::address::encode_key(&gateway_identity)))?
            .client_listener
            .clone();
        let mut client = Client::new(keys, gateway_identity, config.client.clone(), rng_seed);
        client.handle_topology(topology);
        if let Some(bytes) = &restored.reply_store {
            client.import_reply_store(bytes).map_err(StartError::ReplyStore)?;
        }
        let (received, load) = ReceivedStore::load(restored.received_messages.as_deref().unwrap_or_default());
        // Messages kept for an application, and those handed over before a
        // restart: the gateway may deliver them again; they are not new.
        client.import_delivered_sets(&received.known_sets());
        let report = RestoreReport {
            kept_messages: received.kept_count(),
            torn_bytes: load.torn_bytes,
            damaged_records: load.bad_records,
        };
        let backoff = config.reconnect_initial;
        let driver = Driver {
            client,
            gateway_identity,
            gateway_url,
            directory_key,
            topology_issued_at: issued_at,
            clock_at_start: verified_at,
            link: Link::Idle,
            next_conn: 0,
            backoff,
            refresh_at: None,
            last_fetch: None,
            outputs: VecDeque::new(),
            received,
            received_append: Vec::new(),
            received_sync: false,
            // What could not be read is dropped from the log for good.
            received_rewrite: load.torn_bytes > 0 || load.bad_records > 0,
            reply_store_changed: false,
            apps: Vec::new(),
            next_app: 0,
            config,
        };
        Ok((driver, report))
    }

    /// The engine, for its address, counters and queue sizes.
    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn address(&self) -> Recipient {
        self.client.address()
    }

    /// The gateway URL the next connection goes to.
    pub fn gateway_url(&self) -> &str {
        &self.gateway_url
    }

    pub fn is_connected(&self) -> bool {
        matches!(self.link, Link::Up { .. })
    }

    /// Received messages kept for the next application.
    pub fn kept_messages(&self) -> usize {
        self.received.kept_count()
    }

    /// Starts: the first connection, and the topology refresh schedule.
    pub fn start(&mut self, now: Duration) {
        if self.link == Link::Idle {
            self.client.handle_clock(now, self.clock_at_start);
            self.connect(now);
            self.refresh_at = Some(now + self.config.topology_refresh);
        }
    }

    /// Stops: closes the connection, no timers, nothing more to do.
    pub fn stop(&mut self, now: Duration) {
        if let Link::Opening { conn, .. } | Link::Up { conn, .. } = self.link {
            self.outputs.push_back(Output::Close { conn });
            self.client.handle_gateway_disconnected(now);
        }
        self.link = Link::Idle;
        self.refresh_at = None;
    }

    fn connect(&mut self, now: Duration) {
        self.next_conn += 1;
        let conn = ConnectionId(self.next_conn);
        self.link = Link::Opening { conn, deadline: now + self.config.handshake_timeout, open: false };
        self.outputs.push_back(Output::Connect { conn, url: self.gateway_url.clone() });
    }

    /// The connection ended (or never opened): tell, and schedule the next.
    fn lost(&mut self, now: Duration, reason: Disconnect, close: bool) {
        let conn = match self.link {
            Link::Opening { conn, .. } => conn,
            Link::Up { conn, since } => {
                if now.saturating_sub(since) >= self.config.stable_connection {
                    self.backoff = self.config.reconnect_initial;
                }
                conn
            }
            Link::Idle | Link::Waiting { .. } => return,
        };
        if close {
            self.outputs.push_back(Output::Close { conn });
        }
        self.client.handle_gateway_disconnected(now);
        let retry_in = self.backoff;
        self.backoff = (self.backoff * 2).min(self.config.reconnect_max).max(self.config.reconnect_initial);
        self.link = Link::Waiting { retry_at: now + retry_in };
        self.outputs
            .push_back(Output::Event(DriverEvent::Disconnected { url: self.gateway_url.clone(), reason, retry_in }));
    }

    fn is_current(&self, conn: ConnectionId) -> bool {
        matches!(self.link, Link::Opening { conn: c, .. } | Link::Up { conn: c, .. } if c == conn)
    }

    /// The websocket `conn` is open.
    pub fn handle_connected(&mut self, conn: ConnectionId, now: Duration) {
        if let Link::Opening { conn: c, deadline, open: false } = self.link {
            if c == conn {
                self.link = Link::Opening { conn, deadline, open: true };
                self.client.handle_gateway_connected(now);
            }
        }
    }

    /// A binary frame arrived on `conn`.
    pub fn handle_frame(&mut self, conn: ConnectionId, frame: &[u8], now: Duration) {
        if self.is_current(conn) {
            self.client.handle_gateway_frame(frame, now);
            self.take_client_events(now);
        }
    }

    /// `conn` closed, or could not be opened; `why` in words for the log.
    pub fn handle_closed(&mut self, conn: ConnectionId, why: &str, now: Duration) {
        if self.is_current(conn) {
            self.lost(now, Disconnect::Closed(why.to_string()), false);
        }
    }

    /// The answer to [`Output::FetchTopology`]: the directory's body, or why
    /// there is none, and the wall clock (Unix milliseconds) to judge its
    /// expiry by. A topology that fails [`crate::verify_topology`] with the
    /// pinned directory key, is older than the one in use, or no longer lists
    /// our gateway is refused ([`DriverEvent::TopologyRefused`] says why) and
    /// the previous one stays.
    pub fn handle_topology_fetched(&mut self, fetched: Result<&str, String>, now: Duration, unix_time_ms: u64) {
        if self.link != Link::Idle {
            self.refresh_at = Some(now + self.config.topology_refresh);
        }
        self.client.handle_clock(now, unix_time_ms);
        let verified = fetched.and_then(|text| {
            crate::verify_topology(text, Some(&self.directory_key), unix_time_ms, crate::VERSION)
                .map_err(|e| e.to_string())
        });
        let verified = match verified {
            Ok(v) => v,
            Err(e) => return self.refuse_topology(e),
        };
        if verified.issued_at < self.topology_issued_at {
            return self.refuse_topology(format!(
                "it was issued {} ms before the one in use (a replayed document?)",
                self.topology_issued_at - verified.issued_at
            ));
        }
        let Some(gateway) = verified.topology.gateway(&self.gateway_identity) else {
            return self.refuse_topology("our gateway is missing from it".into());
        };
        if gateway.client_listener != self.gateway_url {
            self.gateway_url = gateway.client_listener.clone();
            self.outputs.push_back(Output::Event(DriverEvent::GatewayMoved { url: self.gateway_url.clone() }));
        }
        self.topology_issued_at = verified.issued_at;
        self.client.handle_topology(verified.topology);
    }

    fn refuse_topology(&mut self, why: String) {
        self.outputs.push_back(Output::Event(DriverEvent::TopologyRefused(why)));
    }

    /// The directory key topologies must be signed by.
    pub fn directory_key(&self) -> [u8; 32] {
        self.directory_key
    }

    /// The timer armed for [`Driver::poll_timeout`] fired (or any time later).
    pub fn handle_timeout(&mut self, now: Duration) {
        match self.link {
            Link::Opening { deadline, .. } if deadline <= now => {
                self.lost(now, Disconnect::HandshakeTimeout(self.config.handshake_timeout), true);
            }
            Link::Waiting { retry_at } if retry_at <= now => self.connect(now),
            _ => {}
        }
        if self.refresh_at.is_some_and(|at| at <= now) {
            self.refresh_at = None;
            self.last_fetch = Some(now);
            self.outputs.push_back(Output::FetchTopology);
        }
        let retransmitted = self.client.stats().retransmissions;
        self.client.handle_timeout(now);
        if self.client.stats().retransmissions > retransmitted {
            // A packet went unacknowledged: a node may have changed (left,
            // or rotated its key early after a crash); look sooner.
            self.fetch_topology_soon(now);
        }
        self.take_client_events(now);
    }

    /// When [`Driver::handle_timeout`] wants to run next.
    pub fn poll_timeout(&self) -> Option<Duration> {
        if self.link == Link::Idle {
            return None;
        }
        let link = match self.link {
            Link::Waiting { retry_at } => Some(retry_at),
            Link::Opening { deadline, .. } => Some(deadline),
            Link::Idle | Link::Up { .. } => None,
        };
        [self.client.poll_timeout(), link, self.refresh_at].into_iter().flatten().min()
    }

    /// An application attached; messages kept while none was go to it.
    /// Refused past [`DriverConfig::max_applications`].
    pub fn attach_app(&mut self) -> Result<AppId, String> {
        if self.apps.len() >= self.config.max_applications.max(1) {
            return Err(format!(
                "too many applications are connected to this client ({}); try again when one has left",
                self.apps.len()
            ));
        }
        self.next_app += 1;
        let app = AppId(self.next_app);
        self.apps.push(app);
        let (kept, bytes) = self.received.take_kept();
        if !kept.is_empty() {
            self.received_append.extend_from_slice(&bytes);
            self.received_sync = true;
        }
        for message in kept {
            self.outputs.push_back(Output::Deliver { to: DeliverTo::One(app), message });
        }
        self.flush_stores();
        Ok(app)
    }

    /// An application left; `undelivered`: messages it was given and could
    /// not take (kept for the next one if it was the last).
    pub fn detach_app(&mut self, app: AppId, undelivered: Vec<ReceivedMessage>) {
        self.apps.retain(|a| *a != app);
        if self.apps.is_empty() {
            for message in undelivered {
                let bytes = self.received.keep(message);
                self.received_append.extend_from_slice(&bytes);
                self.received_sync = true;
            }
        }
        self.flush_stores();
    }

    pub fn applications(&self) -> usize {
        self.apps.len()
    }

    /// Carries out an application's request; the answer for it.
    pub fn handle_request(&mut self, request: AppRequest, now: Duration) -> AppResponse {
        let queued = match request {
            AppRequest::SelfAddress => return AppResponse::SelfAddress(self.client.address().to_string()),
            AppRequest::Send { recipient, message } => self.client.send(recipient, message, now),
            AppRequest::SendAnonymous { recipient, message, reply_surbs } => {
                self.client.send_anonymous(recipient, message, reply_surbs, now)
            }
            AppRequest::Reply { sender_tag, message } => self.client.reply(sender_tag, message, now),
        };
        self.take_client_events(now);
        match queued {
            Ok(_) => AppResponse::Send,
            Err(e) => AppResponse::Error(e.to_string()),
        }
    }

    /// The next thing to do. Stores and deliveries always come before the
    /// frames that acknowledge their messages to the gateway.
    pub fn poll_output(&mut self, now: Duration) -> Option<Output> {
        if let Some(output) = self.outputs.pop_front() {
            return Some(output);
        }
        let conn = match self.link {
            Link::Opening { conn, open: true, .. } | Link::Up { conn, .. } => conn,
            _ => return None,
        };
        self.client.poll_transmit(now).map(|frame| Output::Transmit { conn, frame })
    }

    /// Moves the engine's events into outputs, then what they changed in
    /// the stores.
    /// Brings the next topology fetch forward to now (or to
    /// [`defaults::EARLY_TOPOLOGY_FETCH_GAP`] after the last one); nothing
    /// when a fetch is out or the driver is stopped.
    fn fetch_topology_soon(&mut self, now: Duration) {
        if let Some(at) = self.refresh_at {
            let earliest = self.last_fetch.map_or(now, |t| (t + defaults::EARLY_TOPOLOGY_FETCH_GAP).max(now));
            self.refresh_at = Some(at.min(earliest));
        }
    }

    fn take_client_events(&mut self, now: Duration) {
        while let Some(event) = self.client.poll_event() {
            match event {
                ClientEvent::Connected => {
                    if let Link::Opening { conn, .. } = self.link {
                        self.link = Link::Up { conn, since: now };
                        self.outputs.push_back(Output::Event(DriverEvent::Connected { url: self.gateway_url.clone() }));
                    }
                }
                ClientEvent::HandshakeFailed(why) => self.lost(now, Disconnect::HandshakeFailed(why), true),
                ClientEvent::GatewayError(e) => self.outputs.push_back(Output::Event(DriverEvent::GatewayError(e))),
                ClientEvent::SendFailed { message_id, recipient, reason } => {
                    self.outputs.push_back(Output::Event(DriverEvent::SendFailed { message_id, recipient, reason }))
                }
                ClientEvent::ReplyStoreChanged => self.reply_store_changed = true,
                ClientEvent::RouteRefused { first_hop } => {
                    self.fetch_topology_soon(now);
                    self.outputs.push_back(Output::Event(DriverEvent::RouteRefused { first_hop }));
                }
                ClientEvent::Received(message) => self.receive(message),
            }
        }
        self.flush_stores();
    }

    fn receive(&mut self, message: ReceivedMessage) {
        if self.apps.is_empty() {
            let bytes = self.received.keep(message);
            self.received_append.extend_from_slice(&bytes);
            self.received_sync = true;
        } else {
            let bytes = self.received.handed_over(&message.sets);
            self.received_append.extend_from_slice(&bytes);
            self.outputs.push_back(Output::Deliver { to: DeliverTo::All, message });
        }
    }

    /// Queues the store writes this step made, ahead of any frame.
    fn flush_stores(&mut self) {
        let dropped = self.received.trim(self.config.kept_messages, self.config.kept_bytes);
        if !dropped.is_empty() {
            let bytes = dropped.iter().map(|m| m.message.len()).sum();
            self.outputs.push_back(Output::Event(DriverEvent::KeptMessagesDropped { count: dropped.len(), bytes }));
            self.received_rewrite = true;
        }
        if self.received.wants_compaction() {
            self.received_rewrite = true;
        }
        if self.received_rewrite {
            self.received_rewrite = false;
            self.received_append.clear();
            self.received_sync = false;
            let snapshot = self.received.snapshot();
            self.outputs.push_back(Output::Persist { store: StoreName::ReceivedMessages, write: StoreWrite::Replace(snapshot) });
        } else if !self.received_append.is_empty() {
            let bytes = std::mem::take(&mut self.received_append);
            let sync = std::mem::take(&mut self.received_sync);
            self.outputs.push_back(Output::Persist { store: StoreName::ReceivedMessages, write: StoreWrite::Append { bytes, sync } });
        }
        if std::mem::take(&mut self.reply_store_changed) {
            let bytes = self.client.export_reply_store();
            self.outputs.push_back(Output::Persist { store: StoreName::ReplyStore, write: StoreWrite::Replace(bytes) });
        }
    }
}
