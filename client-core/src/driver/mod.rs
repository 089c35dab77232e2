//! The driver: everything a shim needs above [`Client`], written once.
//!
//! [`Client`] speaks to one gateway connection at a time and knows nothing
//! of sockets coming and going, of directories or of applications. The
//! native (tokio) and browser (wasm-bindgen) shims need the same things
//! around it, so they live here, sans-IO like the engine:
//!
//! - **start-up** (`start.rs`): the first topology fetch and its retries,
//!   its verification, trust on first use of a single directory's key, the
//!   gateway choice; a clear [`StartError`] when it cannot start;
//! - **the gateway connection's life**: when to open one, how long a
//!   handshake may take, how long to wait before the next try (exponential
//!   backoff, reset only by a connection that stayed up), which URL to dial
//!   (the gateway's current one, from the latest topology);
//! - **the topology**: when to fetch it again, from which authority
//!   (`trust.rs`: a random one first, the next one after a failure or a
//!   refusal), and whether to believe what came back: signed by at least
//!   the threshold of the pinned authorities (or by the one directory
//!   trusted on first use), not expired, not older than the one in use,
//!   every node descriptor signed by its node
//!   ([`nym_wire::signed::verify_topology`]), our version spoken and our
//!   gateway still listed; anything else is refused and the last good
//!   topology stays until it expires ([`DriverEvent::NoCurrentTopology`]
//!   then names each authority's last failure);
//! - **what must survive a restart** (the reply store, the received-message
//!   log, a directory key learned on first use), as "write these bytes under this name" outputs, always before the
//!   frames that depend on them;
//! - **deliveries**: to every attached application, or kept (bounded) until
//!   one attaches;
//! - **requests** from applications (send, sendAnonymous, reply, selfAddress).
//!
//! The settings and their one rule of bounds are in `config.rs`; what
//! crosses to the shim (outputs, events, stores, errors) in `outputs.rs`.
//!
//! A shim makes the driver with [`Driver::new`] and calls [`Driver::start`];
//! the first output is [`Output::FetchTopology`]. It feeds inputs
//! (`handle_*`, each with `now`), then takes every
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
//!
//! And the two start-up behaviours they disagreed on:
//! 5. the first topology fetch is retried [`defaults::FIRST_FETCH_ATTEMPTS`]
//!    times with a doubling wait ([`defaults::first_fetch_retry`]), then the
//!    driver reports [`DriverEvent::StartFailed`] and stops;
//! 6. applications hear what [`DriverEvent::for_applications`] says, in
//!    both shims.

mod config;
mod outputs;
mod start;
mod trust;

pub use config::{defaults, DriverConfig};
pub use outputs::{
    AppId, AttachError, ConnectionId, DeliverTo, Disconnect, DriverEvent, Output, RestoreReport, Restored, StartError,
    StoreName, StoreWrite,
};
pub use start::{choose_gateway, verify_first_topology};
pub use trust::{DirectoryStats, DirectoryTrust};

use crate::app_api::{AppRequest, AppResponse};
use crate::client::{Client, ClientEvent, ReceivedMessage};
use crate::received_store::ReceivedStore;
use crate::Recipient;
use nym_wire::authority::Authorities;
use nym_wire::keys::ClientKeys;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use start::Stage;
use std::collections::VecDeque;
use std::time::Duration;
use trust::Directories;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// Not started, or stopped.
    Idle,
    /// Waiting to connect again.
    Waiting {
        retry_at: Duration,
    },
    /// Asked for a connection; no completed handshake yet.
    Opening {
        conn: ConnectionId,
        deadline: Duration,
        open: bool,
    },
    Up {
        conn: ConnectionId,
        since: Duration,
    },
}

/// The client above [`Client`]: start-up, the gateway connection, the
/// topology, stores, deliveries and requests (see the module doc).
pub struct Driver {
    client: Client,
    config: DriverConfig,
    /// Descriptors verified in the document in use: a refresh checks only new ones.
    descriptors: nym_wire::signed::DescriptorCache,
    /// For the gateway choice.
    rng: StdRng,
    stage: Stage,
    /// The gateway our address belongs to: named by the shim, or chosen
    /// from the first topology (then `None` until it came).
    gateway_identity: Option<[u8; 32]>,
    /// Our gateway's URL in the latest topology (empty before the first).
    gateway_url: String,
    /// The authorities every topology must be signed by (pinned by the
    /// shim, or one learned from the first document: trust on first use),
    /// and which of them the next fetch goes to.
    directories: Directories,
    /// `issuedAt` of the topology in use: an older one is a replay.
    topology_issued_at: u64,
    /// When the topology in use expires, on the driver's clock.
    topology_expiry: Option<Duration>,
    /// It expired with no acceptable successor ([`DriverEvent::NoCurrentTopology`] told).
    topology_expired: bool,
    /// A refresh fetch is out and counts as failed at this time.
    fetch_deadline: Option<Duration>,
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
    /// A driver for the identity `keys`, before any network contact.
    ///
    /// - `trust`: the authorities topologies must be signed by (at least
    ///   their threshold), or one directory trusted on first use (its key
    ///   comes out as a [`StoreName::DirectoryKey`] write to keep);
    /// - `gateway`: the gateway our address belongs to (registered, or
    ///   asked for); `None`: one at random from the first topology;
    ///   either way [`DriverEvent::GatewayChosen`] tells which;
    /// - `config`: held to [`DriverConfig::bounded`];
    /// - `restored`: what the shim read from its stores.
    ///
    /// Fails only when the restored reply store cannot be read. Nothing
    /// happens until [`Driver::start`].
    pub fn new(
        keys: ClientKeys,
        trust: DirectoryTrust,
        gateway: Option<[u8; 32]>,
        config: DriverConfig,
        rng_seed: [u8; 32],
        restored: Restored,
    ) -> Result<(Self, RestoreReport), StartError> {
        let config = config.bounded();
        let mut rng = StdRng::from_seed(rng_seed);
        let mut client_seed = [0u8; 32];
        rng.fill_bytes(&mut client_seed);
        // Until a gateway is chosen the engine is bound to none (all zeros):
        // nothing reaches a gateway before the choice.
        let mut client = Client::new(keys, gateway.unwrap_or_default(), config.client.clone(), client_seed);
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
        let directories = Directories::new(trust, &mut rng);
        let driver = Driver {
            descriptors: nym_wire::signed::DescriptorCache::default(),
            client,
            rng,
            stage: Stage::New,
            gateway_identity: gateway,
            gateway_url: String::new(),
            directories,
            topology_issued_at: 0,
            topology_expiry: None,
            topology_expired: false,
            fetch_deadline: None,
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

    /// This client's address, once its gateway is settled
    /// ([`DriverEvent::GatewayChosen`]; at once when the shim named it).
    pub fn address(&self) -> Option<Recipient> {
        self.gateway_identity.map(|_| self.client.address())
    }

    /// The identity key of our gateway, once settled.
    pub fn gateway_identity(&self) -> Option<[u8; 32]> {
        self.gateway_identity
    }

    /// The gateway URL the next connection goes to (`None` before the first topology).
    pub fn gateway_url(&self) -> Option<&str> {
        Some(self.gateway_url.as_str()).filter(|url| !url.is_empty())
    }

    /// Whether the gateway session is up (handshake completed).
    pub fn is_connected(&self) -> bool {
        matches!(self.link, Link::Up { .. })
    }

    /// Received messages kept for the next application.
    pub fn kept_messages(&self) -> usize {
        self.received.kept_count()
    }

    /// Starts: asks for the first topology ([`Output::FetchTopology`]);
    /// once it verified, the first connection and the refresh schedule
    /// follow. Only a new driver starts; later calls do nothing.
    pub fn start(&mut self, now: Duration) {
        if self.stage == Stage::New {
            self.fetch_first(1, now);
        }
    }

    /// Stops: closes the connection, no timers, nothing more to do.
    pub fn stop(&mut self, now: Duration) {
        self.stage = Stage::Stopped;
        if let Link::Opening { conn, .. } | Link::Up { conn, .. } = self.link {
            self.outputs.push_back(Output::Close { conn });
            self.client.handle_gateway_disconnected(now);
        }
        self.link = Link::Idle;
        self.refresh_at = None;
        self.fetch_deadline = None;
        self.topology_expiry = None;
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
        self.outputs.push_back(Output::Event(DriverEvent::Disconnected {
            url: self.gateway_url.clone(),
            reason,
            retry_in,
        }));
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

    /// The answer to [`Output::FetchTopology`]: the authority's body, or why
    /// there is none, and the wall clock (Unix milliseconds) to judge its
    /// expiry by. A topology that fails [`crate::verify_topology`] with the
    /// pinned authorities (fewer than their threshold of valid signatures,
    /// expired...), is older than the one in use (a replay), or no longer
    /// lists our gateway is refused ([`DriverEvent::TopologyRefused`] says
    /// why and from where), the previous one stays, and the next fetch goes
    /// to the next authority: at once while some authority has not failed
    /// since the last good document, else after the refresh period.
    ///
    /// The first answer starts the driver instead ([`Driver::start`]); an
    /// answer to a stopped driver is ignored.
    pub fn handle_topology_fetched(&mut self, fetched: Result<&str, String>, now: Duration, unix_time_ms: u64) {
        match self.stage {
            Stage::FirstFetch { .. } => return self.first_topology_fetched(fetched, now, unix_time_ms),
            Stage::New | Stage::Stopped => return,
            Stage::Running => {}
        }
        self.fetch_deadline = None;
        self.client.handle_clock(now, unix_time_ms);
        match self.accept_topology(fetched, now, unix_time_ms) {
            Ok(newer) => {
                if newer {
                    self.directories.succeeded();
                } else {
                    self.directories.not_newer();
                }
                if self.link != Link::Idle {
                    self.refresh_at = Some(now + self.config.topology_refresh);
                }
            }
            Err(why) => self.fetch_failed(why, now),
        }
    }

    /// Verifies and takes a refreshed topology: whether it is newer than
    /// the one in use (else the same one again); why not, if refused.
    fn accept_topology(
        &mut self,
        fetched: Result<&str, String>,
        now: Duration,
        unix_time_ms: u64,
    ) -> Result<bool, String> {
        let pinned = self.directories.trust().authorities();
        let cache = &mut self.descriptors;
        let verified = fetched.and_then(|text| {
            let json: nym_wire::topology::TopologyJson =
                serde_json::from_str(text).map_err(|e| format!("not topology JSON: {e}"))?;
            nym_wire::signed::verify_topology_cached(&json, pinned, unix_time_ms, crate::VERSION, cache)
                .map_err(|e| e.to_string())
        })?;
        if verified.issued_at() < self.topology_issued_at {
            return Err(format!(
                "it was issued {} ms before the one in use (a replayed document?)",
                self.topology_issued_at - verified.issued_at()
            ));
        }
        let Some(gateway) = self.gateway_identity.and_then(|id| verified.topology.gateway(&id)) else {
            return Err("our gateway is missing from it".into());
        };
        if gateway.client_listener != self.gateway_url {
            self.gateway_url = gateway.client_listener.clone();
            self.outputs.push_back(Output::Event(DriverEvent::GatewayMoved { url: self.gateway_url.clone() }));
        }
        let newer = verified.issued_at() > self.topology_issued_at;
        self.took_topology(&verified, now, unix_time_ms);
        self.client.handle_topology(verified.topology);
        Ok(newer)
    }

    /// A verified document is in use from now: remember where from, when
    /// it expires, and tell if service resumes after an expiry.
    fn took_topology(&mut self, verified: &crate::VerifiedTopology, now: Duration, unix_time_ms: u64) {
        self.topology_issued_at = verified.issued_at();
        self.topology_expiry = Some(now + Duration::from_millis(verified.expires_at().saturating_sub(unix_time_ms)));
        if std::mem::take(&mut self.topology_expired) {
            let url = self.directories.url();
            self.outputs.push_back(Output::Event(DriverEvent::TopologyRestored { url }));
        }
    }

    /// A refresh failed, timed out or was refused: say so, naming the
    /// authority, and ask the next one.
    fn fetch_failed(&mut self, why: String, now: Duration) {
        let named = self.directories.named(&why);
        let wait = self.directories.failed(&why);
        self.outputs.push_back(Output::Event(DriverEvent::TopologyRefused(named)));
        if self.link != Link::Idle {
            let at = if wait { now + self.config.topology_refresh } else { now };
            self.refresh_at = Some(self.refresh_at.map_or(at, |r| r.min(at)));
        }
    }

    /// Whom topologies must be signed by: the pinned authorities, or the
    /// one learned from the first topology (`None` until then).
    pub fn authorities(&self) -> Option<&Authorities> {
        self.directories.trust().authorities()
    }

    /// Which authority the topology in use came from, failovers, and the
    /// threshold, for the shims' stats.
    pub fn directory_stats(&self) -> DirectoryStats {
        self.directories.stats()
    }

    /// The timer armed for [`Driver::poll_timeout`] fired (or any time later).
    pub fn handle_timeout(&mut self, now: Duration) {
        if self.stage != Stage::Running {
            return self.first_fetch_timeout(now);
        }
        match self.link {
            Link::Opening { deadline, .. } if deadline <= now => {
                self.lost(now, Disconnect::HandshakeTimeout(self.config.handshake_timeout), true);
            }
            Link::Waiting { retry_at } if retry_at <= now => self.connect(now),
            _ => {}
        }
        if self.fetch_deadline.is_some_and(|at| at <= now) {
            self.fetch_deadline = None;
            let secs = defaults::TOPOLOGY_FETCH_TIMEOUT.as_secs();
            self.fetch_failed(format!("the authority did not answer within {secs} s"), now);
        }
        if self.refresh_at.is_some_and(|at| at <= now) {
            self.refresh_at = None;
            self.last_fetch = Some(now);
            self.fetch_deadline = Some(now + defaults::TOPOLOGY_FETCH_TIMEOUT);
            self.outputs.push_back(Output::FetchTopology { url: self.directories.url() });
        }
        if self.topology_expiry.is_some_and(|at| at <= now) {
            self.topology_expiry = None;
            self.topology_expired = true;
            let reason = self.directories.why_none();
            self.outputs.push_back(Output::Event(DriverEvent::NoCurrentTopology { reason }));
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
        if self.stage != Stage::Running {
            return self.first_fetch_deadline();
        }
        if self.link == Link::Idle {
            return None;
        }
        let link = match self.link {
            Link::Waiting { retry_at } => Some(retry_at),
            Link::Opening { deadline, .. } => Some(deadline),
            Link::Idle | Link::Up { .. } => None,
        };
        [self.client.poll_timeout(), link, self.refresh_at, self.fetch_deadline, self.topology_expiry]
            .into_iter()
            .flatten()
            .min()
    }

    /// An application attached; messages kept while none was go to it.
    /// Refused past [`DriverConfig::max_applications`].
    pub fn attach_app(&mut self) -> Result<AppId, AttachError> {
        if self.apps.len() >= self.config.max_applications {
            return Err(AttachError::TooManyApplications { attached: self.apps.len() });
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

    /// Applications attached now.
    pub fn applications(&self) -> usize {
        self.apps.len()
    }

    /// Carries out an application's request; the answer for it. An
    /// accepted send is answered with its message id
    /// ([`AppResponse::Send`]), the one a later [`DriverEvent::SendFailed`]
    /// about it names.
    pub fn handle_request(&mut self, request: AppRequest, now: Duration) -> AppResponse {
        match self.stage {
            Stage::Running => {}
            Stage::Stopped => return AppResponse::Error("the client is stopped".into()),
            Stage::New | Stage::FirstFetch { .. } => {
                return AppResponse::Error("the client has not started yet (no topology and gateway yet)".into())
            }
        }
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
            Ok(id) => AppResponse::Send { id },
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

    /// Brings the next topology fetch forward to now (or to
    /// [`defaults::EARLY_TOPOLOGY_FETCH_GAP`] after the last one); nothing
    /// when a fetch is out or the driver is stopped.
    fn fetch_topology_soon(&mut self, now: Duration) {
        if let Some(at) = self.refresh_at {
            let earliest = self.last_fetch.map_or(now, |t| (t + defaults::EARLY_TOPOLOGY_FETCH_GAP).max(now));
            self.refresh_at = Some(at.min(earliest));
        }
    }

    /// Moves the engine's events into outputs, then what they changed in
    /// the stores.
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
            self.outputs.push_back(Output::Persist {
                store: StoreName::ReceivedMessages,
                write: StoreWrite::Replace(snapshot),
            });
        } else if !self.received_append.is_empty() {
            let bytes = std::mem::take(&mut self.received_append);
            let sync = std::mem::take(&mut self.received_sync);
            self.outputs.push_back(Output::Persist {
                store: StoreName::ReceivedMessages,
                write: StoreWrite::Append { bytes, sync },
            });
        }
        if std::mem::take(&mut self.reply_store_changed) {
            let bytes = self.client.export_reply_store();
            self.outputs.push_back(Output::Persist { store: StoreName::ReplyStore, write: StoreWrite::Replace(bytes) });
        }
    }
}
