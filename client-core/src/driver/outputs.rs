//! What crosses between the driver and its shim: the outputs to carry out,
//! the events to log or pass on, the stores, and the errors of start-up and
//! of attaching an application.

use crate::app_api::AppResponse;
use crate::client::ReceivedMessage;
use crate::{Error, Recipient};
use std::fmt;
use std::time::Duration;

/// One gateway connection the driver asked for. Inputs naming an older one
/// are ignored, so a shim never has to sort out late events of a socket the
/// driver gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnectionId(pub(super) u64);

/// An attached application (a websocket of the native API, the page's
/// `onMessage` callback).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AppId(pub(super) u64);

/// What the driver keeps across restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreName {
    /// SURBs we hold and the keys to read replies ([`crate::Client::export_reply_store`]).
    ReplyStore,
    /// The received-message log ([`crate::received_store`]).
    ReceivedMessages,
    /// The directory key learned on first contact (trust on first use): its
    /// base58 text, always as [`StoreWrite::Replace`]. Hand it back as the
    /// pinned key to [`super::Driver::new`] from then on.
    DirectoryKey,
}

/// How a store changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreWrite {
    /// Replace the whole store with these bytes (atomically, if you can).
    Replace(Vec<u8>),
    /// Append these bytes; `sync`: make them durable before going on (a
    /// kept message is in them, and its gateway ack follows).
    Append {
        /// The bytes to append.
        bytes: Vec<u8>,
        /// Make them durable before the next output.
        sync: bool,
    },
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
    /// No completed handshake within [`super::DriverConfig::handshake_timeout`].
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

/// Why the driver cannot start. [`super::Driver::new`] returns it for what
/// the shim restored; later it comes as [`DriverEvent::StartFailed`], after
/// which the driver does nothing more (the shim exits or rejects its start).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    /// Every attempt at the first topology fetch failed (unreachable,
    /// refused, or a document that did not verify); `reason` is the last one's.
    #[error("no usable topology from the directory after {attempts} attempts: {reason}")]
    Topology {
        /// How many attempts were made.
        attempts: u32,
        /// Why the last one failed.
        reason: String,
    },
    /// The gateway the shim named (base58) is not in the first topology.
    #[error("our gateway {0} is not in the topology")]
    GatewayNotInTopology(String),
    /// No gateway was named and the first topology lists none to choose.
    #[error("the directory lists no gateway")]
    NoGateway,
    /// The restored reply store cannot be read.
    #[error("the saved reply store is unreadable: {0}")]
    ReplyStore(Error),
}

/// Why [`super::Driver::attach_app`] refused an application.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttachError {
    /// [`super::DriverConfig::max_applications`] are attached already.
    #[error("too many applications are connected to this client ({attached}); try again when one has left")]
    TooManyApplications {
        /// How many are attached.
        attached: usize,
    },
}

/// News for the shim (to log) and its applications (to hear, as
/// [`DriverEvent::for_applications`] decides).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriverEvent {
    /// An attempt at the first topology fetch failed; the next is in `retry_in`.
    FirstFetchFailed {
        /// The attempt that failed (1-based).
        attempt: u32,
        /// Attempts in all ([`super::defaults::FIRST_FETCH_ATTEMPTS`]).
        attempts: u32,
        /// When the next attempt goes.
        retry_in: Duration,
        /// Why it failed.
        reason: String,
    },
    /// The driver cannot start; it does nothing more.
    StartFailed(StartError),
    /// The first topology verified and the gateway is settled: the one the
    /// shim named, or one chosen at random. The address is now
    /// [`super::Driver::address`]; a shim that keeps the identity keeps the
    /// gateway with it.
    GatewayChosen {
        /// The gateway's identity key, base58.
        gateway: String,
        /// Where it listens for clients.
        url: String,
    },
    /// The gateway accepted our handshake; traffic flows.
    Connected {
        /// The gateway's URL.
        url: String,
    },
    /// A connection (or an attempt) ended; the next attempt is in `retry_in`.
    /// Queued messages stay queued.
    Disconnected {
        /// The gateway's URL.
        url: String,
        /// Why it ended.
        reason: Disconnect,
        /// When the next attempt goes.
        retry_in: Duration,
    },
    /// A message could not be delivered; `recipient` is `None` for replies.
    SendFailed {
        /// The id its send request was answered with ([`AppResponse::Send`]).
        message_id: u64,
        /// Whom it was for (`None`: a reply).
        recipient: Option<Recipient>,
        /// Why.
        reason: String,
    },
    /// The gateway reported a problem on a working connection.
    GatewayError(String),
    /// A topology fetch failed or was refused (the text names the
    /// authority); the previous one stays and the next fetch goes to the
    /// next authority.
    TopologyRefused(String),
    /// The topology in use expired and no authority served an acceptable
    /// successor: routes are drawn from the expired one until one does.
    /// `reason` is each authority's last failure.
    NoCurrentTopology {
        /// Why no document is acceptable, per authority.
        reason: String,
    },
    /// After [`DriverEvent::NoCurrentTopology`], an authority served an
    /// acceptable document: service resumes.
    TopologyRestored {
        /// The authority it came from.
        url: String,
    },
    /// Our gateway's URL changed in the topology; used from the next connection.
    GatewayMoved {
        /// The new URL.
        url: String,
    },
    /// The gateway refused a first hop that left the network; the packet went
    /// again on a live route and the topology is fetched early.
    RouteRefused {
        /// The departed node's address.
        first_hop: String,
    },
    /// No application attached and the kept messages passed a limit: the oldest went.
    KeptMessagesDropped {
        /// How many messages went.
        count: usize,
        /// Their bytes.
        bytes: usize,
    },
}

impl DriverEvent {
    /// What applications hear of this event, as the websocket API puts it
    /// (the browser's `onError` gets its message): a message that could not
    /// be delivered (naming its id) and a gateway's complaint. The rest is
    /// for the log (and the browser's `onEvent`); a start failure is the
    /// shim's to report as its own failure.
    pub fn for_applications(&self) -> Option<AppResponse> {
        match self {
            DriverEvent::SendFailed { message_id, .. } => {
                Some(AppResponse::SendFailed { id: *message_id, message: self.to_string() })
            }
            DriverEvent::GatewayError(e) => Some(AppResponse::Error(e.clone())),
            DriverEvent::NoCurrentTopology { .. } => Some(AppResponse::Error(self.to_string())),
            _ => None,
        }
    }

    /// Whether applications should hear of it ([`DriverEvent::for_applications`]).
    pub fn concerns_applications(&self) -> bool {
        self.for_applications().is_some()
    }
}

impl fmt::Display for DriverEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DriverEvent::FirstFetchFailed { attempt, attempts, retry_in, reason } => write!(
                f,
                "topology fetch {attempt}/{attempts} failed: {reason}; trying again in {} ms",
                retry_in.as_millis()
            ),
            DriverEvent::StartFailed(e) => write!(f, "cannot start: {e}"),
            DriverEvent::GatewayChosen { gateway, url } => write!(f, "using the gateway {gateway} at {url}"),
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
            DriverEvent::NoCurrentTopology { reason } => {
                write!(f, "no current topology: the one in use expired and no authority served an acceptable one ({reason})")
            }
            DriverEvent::TopologyRestored { url } => write!(f, "a current topology again, from {url}"),
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

/// What the shim must do, in the order [`super::Driver::poll_output`] gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Open a websocket to `url`; report [`super::Driver::handle_connected`], then
    /// frames, then [`super::Driver::handle_closed`] (also when it cannot open).
    Connect {
        /// The connection's id, for the inputs about it.
        conn: ConnectionId,
        /// The gateway's URL.
        url: String,
    },
    /// Close this connection (no more input from it is needed).
    Close {
        /// Which one.
        conn: ConnectionId,
    },
    /// Send a binary frame on this connection.
    Transmit {
        /// On which connection.
        conn: ConnectionId,
        /// The frame.
        frame: Vec<u8>,
    },
    /// Fetch the topology (`GET {url}/api/presence/topology`) from this
    /// authority; answer with [`super::Driver::handle_topology_fetched`].
    /// The first one starts the driver.
    FetchTopology {
        /// The authority's base URL (`http://host:port`).
        url: String,
    },
    /// Write to a store before carrying out the outputs after this one.
    Persist {
        /// Which store.
        store: StoreName,
        /// What to write.
        write: StoreWrite,
    },
    /// Hand a message to applications. Delivered means taken: a shim that
    /// cannot hand it over gives it back with [`super::Driver::detach_app`].
    Deliver {
        /// To whom.
        to: DeliverTo,
        /// The message.
        message: ReceivedMessage,
    },
    /// News to log, and to pass on to applications where
    /// [`DriverEvent::for_applications`] says so.
    Event(DriverEvent),
}

/// What the shim read from its stores at start.
#[derive(Debug, Clone, Default)]
pub struct Restored {
    /// The [`StoreName::ReplyStore`] bytes, if any.
    pub reply_store: Option<Vec<u8>>,
    /// The [`StoreName::ReceivedMessages`] bytes, if any.
    pub received_messages: Option<Vec<u8>>,
}

/// What loading the stores found, for the shim's log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Received messages kept for the next application.
    pub kept_messages: usize,
    /// Bytes of an unfinished last record in the received log (a crash
    /// mid-write; that message comes again from the gateway).
    pub torn_bytes: usize,
    /// Records of the received log that could not be read.
    pub damaged_records: usize,
}
