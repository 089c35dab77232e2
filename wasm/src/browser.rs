//! wasm-bindgen bindings: `NymEngine`, over the engine's [`Driver`] (the
//! same one the native client runs). The package's JavaScript (`wasm/js/`)
//! runs it in a Web Worker (or in the page with `{ worker: false }`) behind
//! the documented `NymClient`.
//!
//! This shim only does what a browser must: it opens the gateway WebSocket
//! the driver asks for and feeds its events back, arms one timer for the
//! driver's `poll_timeout`, fetches the topology when asked, keeps the
//! driver's stores in the key-value store the JS side opens (IndexedDB;
//! sealed with the passphrase's key when there is one, [`crate::crypt`]),
//! and turns deliveries and events into JS callbacks. Frames wait while a
//! store write is in flight, so an acknowledgement never leaves before what
//! it acknowledges is stored. JS callbacks run only after the driver's
//! borrow is released, so they may call back into the client (e.g. reply
//! from `onMessage`). Options, stats, events and the topology cross the
//! boundary through serde-wasm-bindgen. Works alike in a window and in a
//! worker (only globals both have: `fetch`, `performance`, `WebSocket`,
//! `setTimeout`, `crypto`).

use crate::authorities::{AuthorityJs, Given, KeptAuthorities};
use crate::bench::BenchSetup;
use crate::crypt::{OpenError, Sealer, NONCE_LEN, SALT_LEN};
use gloo_timers::callback::Timeout;
use js_sys::{Function, Promise, Uint8Array};
use nym_client_core::{
    decode_key, decode_sender_tag, defaults, encode_key, encode_sender_tag, AppId, AppRequest, AppResponse,
    Authorities, ClientKeys, ConnectionId, DirectoryTrust, Disconnect, Driver, DriverConfig, DriverEvent, Output, ReceivedMessage, Recipient,
    Restored, StartError, StoreName, StoreWrite,
};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::{Rc, Weak};
use std::time::Duration;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{BinaryType, CloseEvent, Event, MessageEvent, WebSocket};

#[wasm_bindgen]
extern "C" {
    /// The key-value store of one identity that the package's JS opens
    /// (`wasm/js/storage.js`: one IndexedDB database per identity name).
    /// Values are bytes; every method returns a Promise.
    pub type Kv;
    #[wasm_bindgen(method, catch)]
    fn get(this: &Kv, name: &str) -> Result<Promise, JsValue>;
    #[wasm_bindgen(method, catch)]
    fn put(this: &Kv, name: &str, value: &Uint8Array) -> Result<Promise, JsValue>;
    #[wasm_bindgen(method, catch, js_name = delete)]
    fn remove(this: &Kv, name: &str) -> Result<Promise, JsValue>;

    #[wasm_bindgen(js_namespace = performance, js_name = now)]
    fn performance_now() -> f64;
    #[wasm_bindgen(js_name = fetch)]
    fn global_fetch(url: &str) -> Promise;
}

/// The records of an identity's store.
const IDENTITY: &str = "identity";
const REPLIES: &str = "replies";
const RECEIVED: &str = "received";
const DIRECTORY_KEY: &str = "directory-key";
/// The authorities given to the last start with a list (JSON [`KeptAuthorities`]).
const AUTHORITIES: &str = "authorities";
/// The passphrase's salt, parameters and check value (in clear).
const CRYPT: &str = "crypt";

/// The wall clock, for topology expiry: Unix milliseconds.
fn unix_time_ms() -> u64 {
    js_sys::Date::now().max(0.0) as u64
}

fn js_error(message: impl AsRef<str>) -> JsValue {
    js_sys::Error::new(message.as_ref()).into()
}

/// The text of a thrown JS value: an Error's (or DOMException's) name and message, a string, or its debug form.
fn describe(value: &JsValue) -> String {
    if let Some(e) = value.dyn_ref::<js_sys::Error>() {
        return String::from(e.message());
    }
    if let Some(text) = value.as_string() {
        return text;
    }
    // DOMException (IndexedDB's errors) is not an Error in every engine's prototype chain.
    let field = |name: &str| js_sys::Reflect::get(value, &JsValue::from_str(name)).ok().and_then(|v| v.as_string());
    match (field("name"), field("message")) {
        (Some(name), Some(message)) => format!("{name}: {message}"),
        (None, Some(message)) | (Some(message), None) => message,
        (None, None) => format!("{value:?}"),
    }
}

fn now() -> Duration {
    Duration::from_secs_f64(performance_now().max(0.0) / 1000.0)
}

fn warn(message: &str) {
    web_sys::console::warn_1(&JsValue::from_str(message));
}

fn random_bytes<const N: usize>() -> Result<[u8; N], JsValue> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| js_error(format!("no secure random numbers: {e}")))?;
    Ok(bytes)
}

/// `NymClient.start`'s options as JS passes them (every field optional; unknown ones ignored).
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct JsOptions {
    gateway: Option<String>,
    directory_key: Option<String>,
    threshold: Option<f64>,
    ephemeral: Option<bool>,
    storage_key: Option<String>,
    passphrase: Option<String>,
    average_packet_delay_ms: Option<f64>,
    average_hop_delay_ms: Option<f64>,
    loop_cover_delay_ms: Option<f64>,
    topology_refresh_ms: Option<f64>,
    connect_timeout_ms: Option<f64>,
    flush_slice_ms: Option<f64>,
}

struct Options {
    gateway: Option<String>,
    directory_key: Option<[u8; 32]>,
    threshold: Option<f64>,
    ephemeral: bool,
    storage_key: String,
    passphrase: Option<String>,
    config: DriverConfig,
    /// `None`: never yield within a flush.
    flush_slice: Option<Duration>,
}

fn check_ms(name: &str, value: Option<f64>) -> Result<Option<Duration>, JsValue> {
    match value {
        None => Ok(None),
        Some(ms) if (0.0..=86_400_000.0).contains(&ms) => Ok(Some(Duration::from_secs_f64(ms / 1000.0))),
        Some(_) => Err(js_error(format!("option {name} must be a number of milliseconds (0 to 86400000)"))),
    }
}

impl Options {
    fn read(options: &JsValue) -> Result<Self, JsValue> {
        let js: JsOptions = if options.is_undefined() || options.is_null() {
            JsOptions::default()
        } else if !options.is_object() {
            return Err(js_error("the options must be an object"));
        } else {
            serde_wasm_bindgen::from_value(options.clone()).map_err(|e| js_error(format!("invalid options: {e}")))?
        };
        let mut config = DriverConfig { max_applications: 1, ..DriverConfig::default() };
        if let Some(d) = check_ms("averagePacketDelayMs", js.average_packet_delay_ms)? {
            config.client.average_packet_delay = d;
        }
        if let Some(d) = check_ms("averageHopDelayMs", js.average_hop_delay_ms)? {
            config.client.average_hop_delay = d;
        }
        if let Some(d) = check_ms("loopCoverDelayMs", js.loop_cover_delay_ms)? {
            config.client.loop_cover_delay = d;
        }
        // Bounds (a refresh of at least a second...) are the driver's one rule.
        if let Some(d) = check_ms("topologyRefreshMs", js.topology_refresh_ms)? {
            config.topology_refresh = d;
        }
        if let Some(d) = check_ms("connectTimeoutMs", js.connect_timeout_ms)? {
            config.handshake_timeout = d;
        }
        let directory_key = match &js.directory_key {
            Some(key) => Some(decode_key(key.trim(), "option directoryKey").map_err(|e| js_error(e.to_string()))?),
            None => None,
        };
        let flush_slice = match check_ms("flushSliceMs", js.flush_slice_ms)? {
            None => Some(FLUSH_SLICE),
            Some(d) if d.is_zero() => None,
            Some(d) => Some(d),
        };
        let passphrase = js.passphrase.filter(|p| !p.is_empty());
        let ephemeral = js.ephemeral.unwrap_or(false);
        if passphrase.is_some() && ephemeral {
            return Err(js_error("option passphrase protects stored data: it makes no sense with ephemeral: true"));
        }
        Ok(Options {
            gateway: js.gateway,
            directory_key,
            threshold: js.threshold,
            ephemeral,
            storage_key: js.storage_key.unwrap_or_else(|| "default".into()),
            passphrase,
            config,
            flush_slice,
        })
    }
}

/// What the page found in localStorage under the identity's name, from the
/// version before IndexedDB (the JS side reads it: workers have no
/// localStorage); moved into the store once when the store has no identity.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Legacy {
    identity: Option<String>,
    replies: Option<serde_bytes::ByteBuf>,
    received: Option<serde_bytes::ByteBuf>,
    directory_key: Option<String>,
}

/// The identity kept across page loads.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SavedIdentity {
    private_pem: String,
    public_pem: String,
    /// base58 identity key of the gateway the address belongs to.
    gateway: String,
}

/// One identity's records: the JS store, sealed with the passphrase's key if any.
struct Store {
    kv: Kv,
    sealer: Sealer,
    /// The database's name, for messages.
    name: String,
}

async fn settled(promise: Result<Promise, JsValue>) -> Result<JsValue, JsValue> {
    JsFuture::from(promise?).await
}

fn storage_error(what: &str, name: &str, e: &JsValue) -> JsValue {
    js_error(format!(
        "storage: cannot {what} in IndexedDB ('{name}'): {} (quota full, private mode or storage disabled? pass {{ ephemeral: true }}, or {{ fallbackToEphemeral: true }} to run without storage when it fails)",
        describe(e)
    ))
}

impl Store {
    async fn raw(kv: &Kv, db: &str, record: &str) -> Result<Option<Vec<u8>>, JsValue> {
        let value = settled(kv.get(record)).await.map_err(|e| storage_error(&format!("read '{record}'"), db, &e))?;
        if value.is_undefined() || value.is_null() {
            return Ok(None);
        }
        let bytes = value
            .dyn_into::<Uint8Array>()
            .map_err(|_| js_error(format!("storage: record '{record}' of '{db}' is not bytes (remove it with forgetIdentity)")))?;
        Ok(Some(bytes.to_vec()))
    }

    /// Opens the store of `options.storage_key`: unlocks it with the passphrase
    /// (or sets one up on a new store), and moves `legacy` in when it has no identity.
    /// Returns the store and whether it migrated.
    async fn open(kv: Kv, options: &Options, legacy: Legacy) -> Result<(Store, bool), JsValue> {
        let name = format!("nym-client-wasm/{}", options.storage_key);
        let header = Self::raw(&kv, &name, CRYPT).await?;
        let has_identity = Self::raw(&kv, &name, IDENTITY).await?.is_some();
        let identity_name = &options.storage_key;
        let sealer = match (header, &options.passphrase) {
            (Some(header), Some(passphrase)) => Sealer::unlock(passphrase, &name, &header).map_err(|e| match e {
                OpenError::WrongPassphrase => js_error(format!("wrong passphrase for the stored identity '{identity_name}'")),
                OpenError::Damaged(why) => js_error(format!("the stored identity '{identity_name}' is unreadable: {why} (forgetIdentity('{identity_name}') removes it)")),
            })?,
            (Some(_), None) => {
                return Err(js_error(format!("the stored identity '{identity_name}' is encrypted: pass {{ passphrase }}")));
            }
            (None, Some(_)) if has_identity => {
                return Err(js_error(format!(
                    "the stored identity '{identity_name}' is not encrypted: start it without a passphrase, or forgetIdentity('{identity_name}') and start afresh"
                )));
            }
            (None, Some(passphrase)) => {
                let (sealer, header) = Sealer::create(passphrase, &name, random_bytes::<SALT_LEN>()?, random_bytes::<NONCE_LEN>()?)
                    .map_err(|e| js_error(format!("cannot set up the passphrase: {e}")))?;
                settled(kv.put(CRYPT, &Uint8Array::from(&header[..])))
                    .await
                    .map_err(|e| storage_error("save the passphrase's salt", &name, &e))?;
                sealer
            }
            (None, None) => Sealer::plain(&name),
        };
        let store = Store { kv, sealer, name };
        let mut migrated = false;
        if let (false, Some(identity)) = (has_identity, &legacy.identity) {
            // Checked before it is moved: what can't be read stays where it is.
            let saved: SavedIdentity = serde_json::from_str(identity).map_err(|e| {
                js_error(format!(
                    "the identity saved in localStorage['nym-client-wasm/{identity_name}'] is unreadable: {e} (remove it, or use another storageKey)"
                ))
            })?;
            store.write_now(IDENTITY, &serde_json::to_vec(&saved).map_err(|e| js_error(e.to_string()))?).await?;
            if let Some(replies) = &legacy.replies {
                store.write_now(REPLIES, replies).await?;
            }
            if let Some(received) = &legacy.received {
                store.write_now(RECEIVED, received).await?;
            }
            if let Some(key) = &legacy.directory_key {
                store.write_now(DIRECTORY_KEY, key.trim().as_bytes()).await?;
            }
            migrated = true;
        }
        Ok((store, migrated))
    }

    async fn read(&self, record: &str) -> Result<Option<Vec<u8>>, JsValue> {
        let Some(bytes) = Self::raw(&self.kv, &self.name, record).await? else { return Ok(None) };
        self.sealer.open(record, &bytes).map(Some).map_err(|e| {
            let why = match e {
                OpenError::WrongPassphrase => "wrong passphrase".to_string(),
                OpenError::Damaged(why) => why,
            };
            js_error(format!("storage: record '{record}' of '{}' is unreadable: {why}", self.name))
        })
    }

    /// Starts writing `record`; the Promise settles when it is stored.
    fn write(&self, record: &str, bytes: &[u8]) -> Result<Promise, JsValue> {
        let sealed = self.sealer.seal(record, bytes, random_bytes::<NONCE_LEN>()?).map_err(|e| js_error(format!("cannot encrypt {record}: {e}")))?;
        self.kv.put(record, &Uint8Array::from(&sealed[..]))
    }

    async fn write_now(&self, record: &str, bytes: &[u8]) -> Result<(), JsValue> {
        settled(self.write(record, bytes)).await.map(|_| ()).map_err(|e| storage_error(&format!("save '{record}'"), &self.name, &e))
    }

    async fn remove_now(&self, record: &str) -> Result<(), JsValue> {
        settled(self.kv.remove(record)).await.map(|_| ()).map_err(|e| storage_error(&format!("remove '{record}'"), &self.name, &e))
    }
}

async fn fetch_topology_text(directory: &str) -> Result<String, JsValue> {
    let url = format!("{directory}{}", nym_wire::topology::paths::TOPOLOGY);
    let unreachable = |e: JsValue| js_error(format!("cannot reach the directory at {url}: {}", describe(&e)));
    let response = JsFuture::from(global_fetch(&url)).await.map_err(unreachable)?;
    let response: web_sys::Response = response.dyn_into().map_err(unreachable)?;
    if !response.ok() {
        return Err(js_error(format!("the directory at {url} answered HTTP {} {}", response.status(), response.status_text())));
    }
    let text = JsFuture::from(response.text().map_err(unreachable)?).await.map_err(unreachable)?;
    text.as_string().ok_or_else(|| js_error(format!("the directory at {url} sent no text")))
}

/// Serializes to plain JS objects and numbers (no Map, no BigInt).
fn to_js<T: Serialize>(value: &T) -> JsValue {
    value.serialize(&serde_wasm_bindgen::Serializer::json_compatible()).unwrap_or(JsValue::UNDEFINED)
}

/// `stats()`: the engine's counters.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Stats {
    connected: bool,
    queued_packets: usize,
    real_packets_sent: u64,
    cover_packets_sent: u64,
    packets_received: u64,
    cover_packets_received: u64,
    messages_received: u64,
    duplicate_fragments: u64,
    malformed_packets: u64,
    expired_sets: u64,
    acks_received: u64,
    retransmissions: u64,
    rerouted_packets: u64,
    deliveries_acknowledged: u64,
    /// The URL of the authority the topology in use came from.
    last_authority: Option<String>,
    /// Fetches that failed or were refused, after which the next went to another authority.
    authority_failovers: u64,
}

/// `topology()`: the network the client routes through, as drawn by the demo.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TopologyView {
    layers: Vec<LayerView>,
    gateways: Vec<GatewayView>,
    /// The identity key of this client's gateway.
    our_gateway: String,
}

#[derive(Serialize)]
struct LayerView {
    layer: u8,
    /// The mixnodes' `host:port`.
    nodes: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GatewayView {
    identity_key: String,
    mix_address: String,
}

/// What `onEvent` gets: the driver's events, `type` naming each, with `message` (their text).
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
enum EventView {
    #[serde(rename_all = "camelCase")]
    FirstFetchFailed { attempt: u32, attempts: u32, retry_in_ms: u64, reason: String },
    StartFailed { reason: String },
    GatewayChosen { gateway: String, url: String },
    Connected { url: String },
    #[serde(rename_all = "camelCase")]
    Disconnected { url: String, reason: String, retry_in_ms: u64 },
    #[serde(rename_all = "camelCase")]
    SendFailed { message_id: u64, recipient: Option<String>, reason: String },
    GatewayError { reason: String },
    TopologyRefused { reason: String },
    NoCurrentTopology { reason: String },
    TopologyRestored { url: String },
    GatewayMoved { url: String },
    #[serde(rename_all = "camelCase")]
    RouteRefused { first_hop: String },
    KeptMessagesDropped { count: usize, bytes: usize },
}

#[derive(Serialize)]
struct EventWithText {
    #[serde(flatten)]
    event: EventView,
    message: String,
}

fn event_view(event: &DriverEvent) -> JsValue {
    let view = match event.clone() {
        DriverEvent::FirstFetchFailed { attempt, attempts, retry_in, reason } => {
            EventView::FirstFetchFailed { attempt, attempts, retry_in_ms: retry_in.as_millis() as u64, reason }
        }
        DriverEvent::StartFailed(e) => EventView::StartFailed { reason: e.to_string() },
        DriverEvent::GatewayChosen { gateway, url } => EventView::GatewayChosen { gateway, url },
        DriverEvent::Connected { url } => EventView::Connected { url },
        DriverEvent::Disconnected { url, reason, retry_in } => {
            EventView::Disconnected { url, reason: reason.to_string(), retry_in_ms: retry_in.as_millis() as u64 }
        }
        DriverEvent::SendFailed { message_id, recipient, reason } => {
            EventView::SendFailed { message_id, recipient: recipient.map(|r| r.to_string()), reason }
        }
        DriverEvent::GatewayError(reason) => EventView::GatewayError { reason },
        DriverEvent::TopologyRefused(reason) => EventView::TopologyRefused { reason },
        DriverEvent::NoCurrentTopology { reason } => EventView::NoCurrentTopology { reason },
        DriverEvent::TopologyRestored { url } => EventView::TopologyRestored { url },
        DriverEvent::GatewayMoved { url } => EventView::GatewayMoved { url },
        DriverEvent::RouteRefused { first_hop } => EventView::RouteRefused { first_hop },
        DriverEvent::KeptMessagesDropped { count, bytes } => EventView::KeptMessagesDropped { count, bytes },
    };
    to_js(&EventWithText { event: view, message: event.to_string() })
}

struct Handlers {
    _open: Closure<dyn FnMut(Event)>,
    _message: Closure<dyn FnMut(MessageEvent)>,
    _close: Closure<dyn FnMut(CloseEvent)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Starting,
    Running,
    Stopped,
}

struct Inner {
    driver: Driver,
    state: State,
    /// The gateway socket the driver asked for, with its handlers.
    ws: Option<(ConnectionId, WebSocket, Handlers)>,
    /// Handlers of closed sockets: dropped at the next connect, never inside their own call.
    old_handlers: Vec<Handlers>,
    timer: Option<(Duration, Timeout)>,
    /// `start`'s promise, until the first handshake completes or fails.
    starting: Option<(Function, Function)>,
    on_message: Option<(AppId, Function)>,
    on_error: Option<Function>,
    on_event: Option<Function>,
    /// The identity's store; `None` when ephemeral.
    store: Option<Store>,
    /// The identity's keys (PEM), kept with its gateway once the driver
    /// settled it ([`DriverEvent::GatewayChosen`]).
    identity_pems: (String, String),
    /// `start`'s `directoryKey` option, kept with the identity once it started.
    given_directory_key: Option<[u8; 32]>,
    /// `start`'s list of authorities, kept with the identity once it started.
    given_authorities: Option<KeptAuthorities>,
    /// The received log as stored (rewritten whole: the shim keeps it).
    received_log: Vec<u8>,
    /// Store writes not yet settled; while any is, frames wait in `held`
    /// (an acknowledgement must not leave before what it acknowledges is stored).
    writes_in_flight: usize,
    held: VecDeque<(ConnectionId, Vec<u8>)>,
    /// News from outside the driver (a store write that failed), told at the next flush.
    pending: Vec<Notice>,
    /// Wakes the engine in a new task (a MessageChannel: no timer clamping)
    /// to go on with a flush cut short after [`FLUSH_SLICE`].
    wake: Option<Wake>,
    wake_pending: bool,
    flush_slice: Option<Duration>,
}

/// A MessageChannel's two ports and the handler on the first.
struct Wake {
    port1: web_sys::MessagePort,
    port2: web_sys::MessagePort,
    _handler: Closure<dyn FnMut(MessageEvent)>,
}

/// How long one flush may build and send before it yields to the event loop
/// (an unthrottled client builds up to 256 packets when asked; at ~2.5 ms a
/// packet in wasm that would hold the thread for over half a second, and
/// the acks that arrive meanwhile wait).
const FLUSH_SLICE: Duration = Duration::from_millis(20);

type Shared = Rc<RefCell<Inner>>;

/// What to tell JavaScript once the engine is released.
enum Notice {
    /// A message and its sender tag (a base58 string, or undefined).
    Message(JsValue, JsValue),
    Started,
    StartFailed(String),
    Error(String),
    /// A driver event for `onEvent` (serialized).
    Event(JsValue),
}

fn message_notice(message: ReceivedMessage) -> Notice {
    let tag = message.sender_tag.map_or(JsValue::UNDEFINED, |t| JsValue::from_str(&encode_sender_tag(&t)));
    Notice::Message(message_value(message.message), tag)
}

fn message_value(bytes: Vec<u8>) -> JsValue {
    match String::from_utf8(bytes) {
        Ok(text) => JsValue::from_str(&text),
        Err(e) => Uint8Array::from(e.as_bytes()).into(),
    }
}

impl Inner {
    /// Carries out what the driver asks, in its order (stores and the
    /// page's messages before the frames that acknowledge them); returns the
    /// news for JS (called right after, in this same task).
    fn flush(&mut self, weak: &Weak<RefCell<Inner>>) -> Vec<Notice> {
        let mut notices = std::mem::take(&mut self.pending);
        if self.writes_in_flight == 0 {
            while let Some((conn, frame)) = self.held.pop_front() {
                self.transmit(conn, &frame, &mut notices);
            }
        }
        let started = now();
        while let Some(output) = self.driver.poll_output(now()) {
            match output {
                Output::Transmit { conn, frame } => {
                    if self.writes_in_flight > 0 {
                        self.held.push_back((conn, frame));
                    } else {
                        self.transmit(conn, &frame, &mut notices);
                    }
                    if self.flush_slice.is_some_and(|slice| now().saturating_sub(started) >= slice) && self.state != State::Stopped {
                        // The rest in a later task: acks and timers get their turn.
                        self.wake_later(weak);
                        break;
                    }
                }
                Output::Connect { conn, url } => {
                    if let Err(e) = self.connect(conn, &url, weak) {
                        self.driver.handle_closed(conn, &describe(&e), now());
                    }
                }
                Output::Close { conn } => {
                    if self.ws.as_ref().is_some_and(|(c, _, _)| *c == conn) {
                        self.close_socket();
                    }
                }
                Output::FetchTopology { url: directory } => {
                    let weak = weak.clone();
                    wasm_bindgen_futures::spawn_local(async move {
                        let fetched = fetch_topology_text(&directory).await.map_err(|e| describe(&e));
                        if let Some(shared) = weak.upgrade() {
                            with_engine(&shared, |inner| {
                                inner.driver.handle_topology_fetched(fetched.as_deref().map_err(Clone::clone), now(), unix_time_ms())
                            });
                        }
                    });
                }
                Output::Persist { store, write } => {
                    if let Err(e) = self.persist(store, write, weak) {
                        notices.push(Notice::Error(describe(&e)));
                    }
                }
                Output::Deliver { message, .. } => notices.push(message_notice(message)),
                Output::Event(event) => {
                    if self.on_event.is_some() {
                        notices.push(Notice::Event(event_view(&event)));
                    }
                    // What `onError` hears is the core's decision.
                    if let Some(AppResponse::Error(message) | AppResponse::SendFailed { message, .. }) =
                        event.for_applications()
                    {
                        notices.push(Notice::Error(message));
                    }
                    // `start`'s Promise: settled by the first handshake, or the start failure.
                    match event {
                        DriverEvent::GatewayChosen { .. } => {
                            if let Err(e) = self.keep_identity(weak) {
                                notices.push(Notice::Error(describe(&e)));
                            }
                        }
                        DriverEvent::Connected { .. } if self.state == State::Starting => notices.push(Notice::Started),
                        DriverEvent::Disconnected { reason, url, .. } if self.state == State::Starting => {
                            notices.push(Notice::StartFailed(start_failure(&url, &reason)))
                        }
                        DriverEvent::StartFailed(e) => notices.push(Notice::StartFailed(start_error(&e))),
                        _ => {}
                    }
                }
            }
        }
        self.arm_timer(weak);
        notices
    }

    fn transmit(&self, conn: ConnectionId, frame: &[u8], notices: &mut Vec<Notice>) {
        match &self.ws {
            Some((c, ws, _)) if *c == conn && ws.ready_state() == WebSocket::OPEN => {
                if let Err(e) = ws.send_with_u8_array(frame) {
                    notices.push(Notice::Error(format!("cannot send to the gateway: {}", describe(&e))));
                }
            }
            _ => {}
        }
    }

    /// Asks for a flush in a new task, soon (once).
    fn wake_later(&mut self, weak: &Weak<RefCell<Inner>>) {
        if self.wake_pending {
            return;
        }
        if self.wake.is_none() {
            let Ok(channel) = web_sys::MessageChannel::new() else { return };
            let w = weak.clone();
            let closure = Closure::<dyn FnMut(MessageEvent)>::new(move |_: MessageEvent| {
                if let Some(shared) = w.upgrade() {
                    with_engine(&shared, |inner| inner.wake_pending = false);
                }
            });
            channel.port1().set_onmessage(Some(closure.as_ref().unchecked_ref()));
            self.wake = Some(Wake { port1: channel.port1(), port2: channel.port2(), _handler: closure });
        }
        if let Some(wake) = &self.wake {
            self.wake_pending = wake.port2.post_message(&JsValue::UNDEFINED).is_ok();
        }
    }

    /// Starts the store write; frames wait until it settles.
    fn persist(&mut self, store: StoreName, write: StoreWrite, weak: &Weak<RefCell<Inner>>) -> Result<(), JsValue> {
        if store == StoreName::DirectoryKey {
            if let StoreWrite::Replace(key) = &write {
                warn(&format!(
                    "trusting directory key {} on first use (pass {{ directoryKey }} to pin the one your directory's operator publishes)",
                    String::from_utf8_lossy(key)
                ));
            }
        }
        let Some(kv) = &self.store else { return Ok(()) };
        let (what, promise) = match store {
            StoreName::ReplyStore => match write {
                StoreWrite::Replace(bytes) => ("the reply store", kv.write(REPLIES, &bytes)),
                StoreWrite::Append { .. } => return Ok(()),
            },
            StoreName::ReceivedMessages => {
                match write {
                    StoreWrite::Replace(bytes) => self.received_log = bytes,
                    StoreWrite::Append { bytes, .. } => self.received_log.extend_from_slice(&bytes),
                }
                ("received messages", kv.write(RECEIVED, &self.received_log))
            }
            StoreName::DirectoryKey => match write {
                StoreWrite::Replace(bytes) => ("the directory key", kv.write(DIRECTORY_KEY, &bytes)),
                StoreWrite::Append { .. } => return Ok(()),
            },
        };
        self.track_write(what, promise, weak)
    }

    /// The identity with its gateway, now settled (and a `directoryKey`
    /// option's key with it): the next start uses both.
    fn keep_identity(&mut self, weak: &Weak<RefCell<Inner>>) -> Result<(), JsValue> {
        let (Some(kv), Some(gateway)) = (&self.store, self.driver.gateway_identity()) else { return Ok(()) };
        let (private_pem, public_pem) = self.identity_pems.clone();
        let saved = SavedIdentity { private_pem, public_pem, gateway: encode_key(&gateway) };
        let bytes = serde_json::to_vec(&saved).map_err(|e| js_error(format!("cannot save the identity: {e}")))?;
        let identity = kv.write(IDENTITY, &bytes);
        let key = self.given_directory_key.map(|key| kv.write(DIRECTORY_KEY, encode_key(&key).as_bytes()));
        let authorities = match &self.given_authorities {
            Some(kept) => {
                let json = serde_json::to_vec(kept).map_err(|e| js_error(format!("cannot save the authorities: {e}")))?;
                Some(kv.write(AUTHORITIES, &json))
            }
            None => None,
        };
        self.track_write("the identity", identity, weak)?;
        if let Some(promise) = authorities {
            self.track_write("the authorities", promise, weak)?;
        }
        match key {
            Some(promise) => self.track_write("the directory key", promise, weak),
            None => Ok(()),
        }
    }

    /// Counts a store write in flight until it settles (frames wait); a
    /// failure is told at the next flush.
    fn track_write(&mut self, what: &'static str, promise: Result<Promise, JsValue>, weak: &Weak<RefCell<Inner>>) -> Result<(), JsValue> {
        let Some(kv) = &self.store else { return Ok(()) };
        let db = kv.name.clone();
        let promise = promise.map_err(|e| storage_error(&format!("save {what}"), &db, &e))?;
        self.writes_in_flight += 1;
        let weak = weak.clone();
        wasm_bindgen_futures::spawn_local(async move {
            let result = JsFuture::from(promise).await;
            if let Some(shared) = weak.upgrade() {
                with_engine(&shared, |inner| {
                    inner.writes_in_flight = inner.writes_in_flight.saturating_sub(1);
                    if let Err(e) = result {
                        inner.pending.push(Notice::Error(describe(&storage_error(&format!("save {what}"), &db, &e))));
                    }
                });
            }
        });
        Ok(())
    }

    fn arm_timer(&mut self, weak: &Weak<RefCell<Inner>>) {
        let next = if self.state == State::Stopped { None } else { self.driver.poll_timeout() };
        if next == self.timer.as_ref().map(|(at, _)| *at) {
            return;
        }
        self.timer = next.map(|at| {
            let ms = at.saturating_sub(now()).as_secs_f64() * 1000.0;
            let weak = weak.clone();
            let timeout = Timeout::new(ms.ceil().min(f64::from(u32::MAX)) as u32, move || {
                if let Some(shared) = weak.upgrade() {
                    with_engine(&shared, |inner| {
                        inner.timer = None;
                        inner.driver.handle_timeout(now());
                    });
                }
            });
            (at, timeout)
        });
    }

    /// Opens the websocket to the gateway and wires its events to the driver.
    fn connect(&mut self, conn: ConnectionId, url: &str, weak: &Weak<RefCell<Inner>>) -> Result<(), JsValue> {
        // Handlers of sockets closed before: none of them is running now. The
        // one closed here keeps its handlers until the next connect.
        self.old_handlers.clear();
        self.close_socket();
        let ws = WebSocket::new(url)
            .map_err(|e| js_error(format!("cannot open a websocket to the gateway at {url}: {}", describe(&e))))?;
        ws.set_binary_type(BinaryType::Arraybuffer);
        let w = weak.clone();
        let open = Closure::<dyn FnMut(Event)>::new(move |_: Event| {
            if let Some(shared) = w.upgrade() {
                with_engine(&shared, |inner| inner.driver.handle_connected(conn, now()));
            }
        });
        let w = weak.clone();
        let message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            let Some(shared) = w.upgrade() else { return };
            match event.data().dyn_into::<js_sys::ArrayBuffer>() {
                Ok(buffer) => {
                    let frame = Uint8Array::new(&buffer).to_vec();
                    with_engine(&shared, |inner| inner.driver.handle_frame(conn, &frame, now()));
                }
                Err(_) => warn("nym-client-wasm: ignored a non-binary frame from the gateway"),
            }
        });
        let w = weak.clone();
        let close = Closure::<dyn FnMut(CloseEvent)>::new(move |event: CloseEvent| {
            let Some(shared) = w.upgrade() else { return };
            let reason = if event.reason().is_empty() { String::new() } else { format!(", {}", event.reason()) };
            let why = format!("code {}{reason}", event.code());
            with_engine(&shared, |inner| {
                if let Some((_, _, handlers)) = inner.ws.take_if(|(c, _, _)| *c == conn) {
                    inner.old_handlers.push(handlers);
                }
                inner.driver.handle_closed(conn, &why, now());
            });
        });
        ws.set_onopen(Some(open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(close.as_ref().unchecked_ref()));
        self.ws = Some((conn, ws, Handlers { _open: open, _message: message, _close: close }));
        Ok(())
    }

    fn close_socket(&mut self) {
        if let Some((_, ws, handlers)) = self.ws.take() {
            ws.set_onopen(None);
            ws.set_onmessage(None);
            ws.set_onclose(None);
            let _ = ws.close_with_code_and_reason(1000, "client stopped");
            self.old_handlers.push(handlers);
        }
    }

    fn shut_down(&mut self) {
        self.state = State::Stopped;
        self.driver.stop(now());
        self.close_socket();
        self.timer = None;
    }
}

impl Drop for Inner {
    /// A client freed without `stop()`: detach and close the socket so no
    /// event reaches a dropped closure.
    fn drop(&mut self) {
        self.close_socket();
        if let Some(wake) = self.wake.take() {
            wake.port1.set_onmessage(None);
            wake.port1.close();
        }
    }
}

/// Runs `f` on the engine, then drains it and tells JS what happened.
fn with_engine(shared: &Shared, f: impl FnOnce(&mut Inner)) {
    let weak = Rc::downgrade(shared);
    let notices = match shared.try_borrow_mut() {
        Ok(mut inner) => {
            f(&mut inner);
            inner.flush(&weak)
        }
        Err(_) => return, // not reentrant: JS callbacks run after the borrow ends
    };
    dispatch(shared, notices);
}

fn report_throw(result: Result<JsValue, JsValue>) {
    if let Err(e) = result {
        web_sys::console::error_2(&JsValue::from_str("nym-client-wasm: a callback threw:"), &e);
    }
}

fn call(callback: &Function, value: &JsValue) {
    report_throw(callback.call1(&JsValue::NULL, value));
}

fn dispatch(shared: &Shared, notices: Vec<Notice>) {
    for notice in notices {
        match notice {
            Notice::Message(value, sender_tag) => {
                // The driver delivers only with a callback attached.
                let callback = shared.borrow().on_message.as_ref().map(|(_, cb)| cb.clone());
                if let Some(cb) = callback {
                    report_throw(cb.call2(&JsValue::NULL, &value, &sender_tag));
                }
            }
            Notice::Started => {
                let starting = {
                    let mut inner = shared.borrow_mut();
                    inner.state = State::Running;
                    inner.starting.take()
                };
                if let Some((resolve, _)) = starting {
                    let _ = resolve.call0(&JsValue::NULL);
                }
            }
            Notice::StartFailed(message) => fail_start(shared, message),
            Notice::Event(event) => {
                let callback = shared.borrow().on_event.clone();
                if let Some(cb) = callback {
                    call(&cb, &event);
                }
            }
            Notice::Error(message) => {
                let callback = shared.borrow().on_error.clone();
                match callback {
                    Some(cb) => call(&cb, &js_error(&message)),
                    None => warn(&format!("nym-client-wasm: {message}")),
                }
            }
        }
    }
}

/// Why `start` rejects, when its first connection did not make it.
fn start_failure(url: &str, reason: &Disconnect) -> String {
    match reason {
        Disconnect::Closed(why) => format!("the connection to the gateway at {url} closed before the handshake completed ({why})"),
        Disconnect::HandshakeTimeout(t) => format!("no handshake with the gateway at {url} within {} ms", t.as_millis()),
        Disconnect::HandshakeFailed(why) => why.clone(),
    }
}

/// Why `start` rejects, when the driver could not start (the directory,
/// the topology, or the gateway named).
fn start_error(e: &StartError) -> String {
    match e {
        StartError::GatewayNotInTopology(gateway) => format!("gateway {gateway} is not in the directory's topology"),
        other => other.to_string(),
    }
}

fn fail_start(shared: &Shared, message: String) {
    let starting = {
        let mut inner = shared.borrow_mut();
        inner.shut_down();
        inner.starting.take()
    };
    if let Some((_, reject)) = starting {
        let _ = reject.call1(&JsValue::NULL, &js_error(message));
    }
}

/// The Nym mixnet client engine: the nym-client-core driver, connected to its
/// gateway over a WebSocket. The package's `NymClient` (wasm/js/index.js)
/// runs it in a Web Worker, or in the page with `{ worker: false }`; use that.
#[wasm_bindgen(js_name = NymEngine)]
pub struct Engine {
    shared: Shared,
    migrated: bool,
}

#[wasm_bindgen(js_class = NymEngine)]
impl Engine {
    /// Fetches the topology (`GET {url}/api/presence/topology`) from the directory at
    /// `authorities` (a URL string), or from one of `authorities` (an array of
    /// `{ url, key }`, base58 ed25519 keys: a topology needs `threshold` of their signatures,
    /// default a majority; the next one is asked when one fails), as the driver's start-up
    /// says: up to 5 attempts, waiting 250 ms, doubling, between,
    /// loads or creates the identity (kept in `kv`, the identity's store, unless it is
    /// null: ephemeral), connects to the gateway and resolves once the gateway handshake
    /// has completed. `legacy`: what localStorage held for this identity name before
    /// IndexedDB (`{ identity, replies, received, directoryKey }`), moved into `kv`
    /// when it has no identity.
    ///
    /// Rejects with an Error saying what went wrong: storage refused, wrong passphrase,
    /// the directory is unreachable or sent no usable topology (among others: not signed
    /// by `directoryKey` or by the key kept with the identity, fewer than `threshold` valid
    /// signatures by the authorities, expired, a node descriptor
    /// with a bad signature), the gateway is unknown, the connection closed, the gateway
    /// refused the handshake, or it timed out (`connectTimeoutMs`).
    pub async fn start(authorities: JsValue, options: JsValue, kv: Option<Kv>, legacy: JsValue) -> Result<Engine, JsValue> {
        let mut options = Options::read(&options)?;
        let given = if let Some(url) = authorities.as_string() {
            crate::authorities::check(Some(&url), None, options.threshold)
        } else if js_sys::Array::is_array(&authorities) {
            let list: Vec<AuthorityJs> = serde_wasm_bindgen::from_value(authorities)
                .map_err(|e| js_error(format!("the authorities must be a list of {{ url, key }}: {e}")))?;
            crate::authorities::check(None, Some(list), options.threshold)
        } else {
            crate::authorities::check(None, None, options.threshold)
        }
        .map_err(js_error)?;
        if matches!(given, Given::Authorities(_)) && options.directory_key.is_some() {
            return Err(js_error("option directoryKey goes with one directory URL; a list of authorities carries each one's key"));
        }
        let legacy: Legacy = if legacy.is_undefined() || legacy.is_null() {
            Legacy::default()
        } else {
            serde_wasm_bindgen::from_value(legacy).map_err(|e| js_error(format!("the localStorage identity to migrate: {e}")))?
        };
        let kv = if options.ephemeral { None } else { kv };
        options.ephemeral = kv.is_none();
        let (store, migrated) = match kv {
            Some(kv) => {
                let (store, migrated) = Store::open(kv, &options, legacy).await?;
                (Some(store), migrated)
            }
            None => (None, false),
        };

        if let (Given::Authorities(a), Some(store)) = (&given, &store) {
            let kept = store.read(AUTHORITIES).await?.and_then(|bytes| serde_json::from_slice::<KeptAuthorities>(&bytes).ok());
            if kept.is_some_and(|k| k != KeptAuthorities::of(a)) {
                warn(&format!(
                    "the authorities given differ from those kept with the identity '{}': using the given ones and keeping them",
                    options.storage_key
                ));
            }
        }
        let pinned = match (options.directory_key, &store) {
            (Some(key), _) => Some(key),
            (None, Some(store)) => match store.read(DIRECTORY_KEY).await? {
                None => None,
                Some(bytes) => Some(
                    decode_key(String::from_utf8_lossy(&bytes).trim(), "the saved directory key")
                        .map_err(|e| js_error(format!("{e} (forgetIdentity('{}') removes it)", options.storage_key)))?,
                ),
            },
            (None, None) => None,
        };

        let saved = match &store {
            None => None,
            Some(store) => match store.read(IDENTITY).await? {
                None => None,
                Some(bytes) => {
                    let unreadable = |e: String| {
                        js_error(format!(
                            "the saved identity '{}' is unreadable: {e} (forgetIdentity removes it, or use another storageKey)",
                            options.storage_key
                        ))
                    };
                    let saved: SavedIdentity = serde_json::from_slice(&bytes).map_err(|e| unreadable(e.to_string()))?;
                    let keys = ClientKeys::from_pem(&saved.private_pem, &saved.public_pem).map_err(|e| unreadable(e.to_string()))?;
                    let gateway = decode_key(&saved.gateway, "gateway key").map_err(|e| unreadable(e.to_string()))?;
                    Some((keys, gateway))
                }
            },
        };
        let requested = match &options.gateway {
            Some(g) => Some(decode_key(g.trim(), "gateway key").map_err(|e| js_error(e.to_string()))?),
            None => None,
        };
        let (keys, saved_gateway) = match saved {
            Some((keys, gateway)) => (keys, Some(gateway)),
            None => (ClientKeys::generate(&mut StdRng::from_seed(random_bytes::<32>()?)), None),
        };
        // The driver checks the gateway against the first topology, or
        // chooses one when neither the options nor the store name it.
        let gateway = requested.or(saved_gateway);

        // The stores belong to the saved identity: a new identity starts without them.
        let (reply_store, received) = match (&store, saved_gateway.is_some()) {
            (Some(store), true) => (store.read(REPLIES).await?, store.read(RECEIVED).await?),
            (Some(store), false) => {
                store.remove_now(REPLIES).await?;
                store.remove_now(RECEIVED).await?;
                (None, None)
            }
            (None, _) => (None, None),
        };
        let received_log = received.clone().unwrap_or_default();
        let identity_pems = (keys.private_pem(), keys.public_pem());

        let restored = Restored { reply_store, received_messages: received };
        let storage_key = options.storage_key.clone();
        let given_authorities = match &given {
            Given::Authorities(a) => Some(KeptAuthorities::of(a)),
            Given::Url(_) => None,
        };
        let trust = match given {
            Given::Authorities(a) => DirectoryTrust::Authorities(a),
            Given::Url(url) => match pinned {
                Some(key) => DirectoryTrust::Authorities(Authorities::single(key, url)),
                None => DirectoryTrust::FirstUse { url },
            },
        };
        let (driver, _) = Driver::new(keys, trust, gateway, options.config.clone(), random_bytes::<32>()?, restored)
            .map_err(|e| js_error(format!("{e} (the stored reply store of '{storage_key}'; forgetIdentity removes it, or use another storageKey)")))?;

        let shared: Shared = Rc::new(RefCell::new(Inner {
            driver,
            state: State::Starting,
            ws: None,
            old_handlers: Vec::new(),
            timer: None,
            starting: None,
            on_message: None,
            on_error: None,
            on_event: None,
            store,
            identity_pems,
            given_directory_key: options.directory_key,
            given_authorities,
            received_log,
            writes_in_flight: 0,
            held: VecDeque::new(),
            pending: Vec::new(),
            wake: None,
            wake_pending: false,
            flush_slice: options.flush_slice,
        }));
        let handshake = Promise::new(&mut |resolve, reject| {
            shared.borrow_mut().starting = Some((resolve, reject));
        });
        with_engine(&shared, |inner| inner.driver.start(now()));
        if let Err(e) = JsFuture::from(handshake).await {
            shared.borrow_mut().shut_down();
            return Err(e);
        }
        Ok(Engine { shared, migrated })
    }

    /// Whether `start` moved an identity from localStorage into the store
    /// (the caller then removes the localStorage entries).
    #[wasm_bindgen(getter)]
    pub fn migrated(&self) -> bool {
        self.migrated
    }

    /// Whether the identity is kept in storage (false: ephemeral).
    #[wasm_bindgen(getter)]
    pub fn persistent(&self) -> bool {
        self.shared.borrow().store.is_some()
    }

    /// This client's address, `<base58 client key>@<base58 gateway identity key>`.
    #[wasm_bindgen(js_name = selfAddress)]
    pub fn self_address(&self) -> String {
        // Known once `start` resolved (the gateway is settled by then).
        self.shared.borrow().driver.address().map(|a| a.to_string()).unwrap_or_default()
    }

    /// Queues `message` (a string is sent as UTF-8, a Uint8Array as is) for
    /// `recipient`; resolves to the message's id (the `messageId` of a later
    /// `sendFailed` event about it).
    #[wasm_bindgen(unchecked_return_type = "Promise<number>")]
    pub fn send(&self, recipient: &str, #[wasm_bindgen(unchecked_param_type = "string | Uint8Array")] message: JsValue) -> Promise {
        settle(self.queue(recipient, &message, |recipient, message| AppRequest::Send { recipient, message }))
    }

    /// Like `send`, anonymous, with `replySurbs` (default 10, at most 200)
    /// reply blocks; resolves to the message's id.
    #[wasm_bindgen(js_name = sendAnonymous, unchecked_return_type = "Promise<number>")]
    pub fn send_anonymous(
        &self,
        recipient: &str,
        #[wasm_bindgen(unchecked_param_type = "string | Uint8Array")] message: JsValue,
        #[wasm_bindgen(js_name = replySurbs)] reply_surbs: JsValue,
    ) -> Promise {
        let surbs = if reply_surbs.is_undefined() || reply_surbs.is_null() {
            Ok(defaults::REPLY_SURBS)
        } else {
            match reply_surbs.as_f64() {
                Some(n) if n >= 0.0 && n.fract() == 0.0 && n <= 1e6 => Ok(n as usize),
                _ => Err(js_error("replySurbs must be a whole number (0 to 200)")),
            }
        };
        settle(surbs.and_then(|surbs| {
            self.queue(recipient, &message, |recipient, message| AppRequest::SendAnonymous { recipient, message, reply_surbs: surbs })
        }))
    }

    /// Answers an anonymous message through its sender's reply blocks;
    /// resolves to the reply's message id.
    #[wasm_bindgen(unchecked_return_type = "Promise<number>")]
    pub fn reply(
        &self,
        #[wasm_bindgen(js_name = senderTag, unchecked_param_type = "string")] sender_tag: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string | Uint8Array")] message: JsValue,
    ) -> Promise {
        let result = (|| {
            let text = sender_tag.as_string().ok_or_else(|| js_error("the sender tag must be a string (onMessage's second argument)"))?;
            let tag = decode_sender_tag(text.trim()).map_err(|e| js_error(e.to_string()))?;
            let bytes = message_bytes(&message)?;
            self.request(AppRequest::Reply { sender_tag: tag, message: bytes })
        })();
        settle(result)
    }

    /// Registers the callback for whole messages (string for UTF-8, else Uint8Array;
    /// second argument: the sender tag of an anonymous message, else undefined).
    /// Messages that arrived before it was set are delivered now.
    #[wasm_bindgen(js_name = onMessage)]
    pub fn on_message(&self, callback: Function) {
        with_engine(&self.shared, |inner| {
            let app = match inner.on_message.take() {
                Some((app, _)) => Some(app),
                None if inner.state == State::Stopped => None,
                // Messages kept meanwhile come out of the driver now.
                None => inner.driver.attach_app().ok(),
            };
            inner.on_message = app.map(|app| (app, callback));
        });
    }

    /// Registers the callback for problems after start (an Error each): what
    /// the driver says applications hear (`DriverEvent::for_applications`: a
    /// message that could not be delivered, a gateway's error), as the native
    /// websocket API pushes them. Everything else is for `onEvent`.
    #[wasm_bindgen(js_name = onError)]
    pub fn on_error(&self, callback: Function) {
        self.shared.borrow_mut().on_error = Some(callback);
    }

    /// Registers the callback for every driver event (`{ type, message, ... }`).
    #[wasm_bindgen(js_name = onEvent)]
    pub fn on_event(&self, callback: Function) {
        self.shared.borrow_mut().on_event = Some(callback);
    }

    /// Whether the gateway session is up.
    #[wasm_bindgen(js_name = isConnected)]
    pub fn is_connected(&self) -> bool {
        self.shared.borrow().driver.is_connected()
    }

    /// The engine's packet counters.
    pub fn stats(&self) -> JsValue {
        let inner = self.shared.borrow();
        let client = inner.driver.client();
        let s = client.stats();
        to_js(&Stats {
            connected: inner.driver.is_connected(),
            queued_packets: client.queued_packets(),
            real_packets_sent: s.real_packets_sent,
            cover_packets_sent: s.cover_packets_sent,
            packets_received: s.packets_received,
            cover_packets_received: s.cover_packets_received,
            messages_received: s.messages_received,
            duplicate_fragments: s.duplicate_fragments,
            malformed_packets: s.malformed_packets,
            expired_sets: s.expired_sets,
            acks_received: s.acks_received,
            retransmissions: s.retransmissions,
            rerouted_packets: s.rerouted_packets,
            deliveries_acknowledged: s.deliveries_acknowledged,
            last_authority: inner.driver.directory_stats().last_good_from,
            authority_failovers: inner.driver.directory_stats().failovers,
        })
    }

    /// The topology in use: mixnodes by layer, the gateways, ours.
    pub fn topology(&self) -> JsValue {
        let inner = self.shared.borrow();
        let our_gateway = inner.driver.gateway_identity().map(|g| encode_key(&g)).unwrap_or_default();
        let Some(topology) = inner.driver.client().topology() else { return JsValue::NULL };
        let layers = (1..=3u8)
            .map(|layer| LayerView { layer, nodes: topology.layer(layer).iter().map(|n| n.address.to_string()).collect() })
            .collect();
        let gateways = topology
            .gateways()
            .iter()
            .map(|g| GatewayView { identity_key: g.identity_b58(), mix_address: g.mix_address.to_string() })
            .collect();
        to_js(&TopologyView { layers, gateways, our_gateway })
    }

    /// Closes the gateway connection and stops all timers. Messages still queued are dropped.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn stop(&self) -> Promise {
        with_engine(&self.shared, Inner::shut_down);
        Promise::resolve(&JsValue::UNDEFINED)
    }
}

/// A message argument as bytes: a string as UTF-8, a Uint8Array or ArrayBuffer as is.
fn message_bytes(message: &JsValue) -> Result<Vec<u8>, JsValue> {
    if let Some(text) = message.as_string() {
        Ok(text.into_bytes())
    } else if let Some(array) = message.dyn_ref::<Uint8Array>() {
        Ok(array.to_vec())
    } else if let Some(buffer) = message.dyn_ref::<js_sys::ArrayBuffer>() {
        Ok(Uint8Array::new(buffer).to_vec())
    } else {
        Err(js_error("the message must be a string or a Uint8Array"))
    }
}

/// A request's Promise: the message id (a JS number: ids stay far below
/// 2^53), or the Error.
fn settle(result: Result<u64, JsValue>) -> Promise {
    match result {
        Ok(id) => Promise::resolve(&JsValue::from_f64(id as f64)),
        Err(e) => Promise::reject(&e),
    }
}

impl Engine {
    /// Parses the recipient and the message into a request for the driver.
    fn queue(
        &self,
        recipient: &str,
        message: &JsValue,
        request: impl FnOnce(Recipient, Vec<u8>) -> AppRequest,
    ) -> Result<u64, JsValue> {
        let recipient: Recipient = recipient.trim().parse().map_err(|e: nym_client_core::Error| js_error(e.to_string()))?;
        let bytes = message_bytes(message)?;
        self.request(request(recipient, bytes))
    }

    /// Hands a send request to a running driver (then drains it): the
    /// message id, or the error as a JS Error.
    fn request(&self, request: AppRequest) -> Result<u64, JsValue> {
        let mut result = Err(js_error("the client is busy"));
        with_engine(&self.shared, |inner| {
            result = if inner.state == State::Stopped {
                Err(js_error("the client is stopped"))
            } else {
                match inner.driver.handle_request(request, now()) {
                    AppResponse::Send { id } => Ok(id),
                    AppResponse::Error(e) | AppResponse::SendFailed { message: e, .. } => Err(js_error(e)),
                    AppResponse::SelfAddress(_) => Err(js_error("not a send request")),
                }
            };
        });
        result
    }
}

/// Benchmark: builds `n` real Sphinx packets (end-to-end sealed payload, 3 mixnodes +
/// gateway route, Regular size) after a short warm-up; returns milliseconds per packet.
#[wasm_bindgen(js_name = benchPacketBuild)]
pub fn bench_packet_build(n: u32) -> Result<f64, JsValue> {
    let n = n.max(1);
    let mut setup = BenchSetup::new();
    setup.build(n / 10 + 1).map_err(|e| js_error(e.to_string()))?;
    let start = now();
    setup.build(n).map_err(|e| js_error(e.to_string()))?;
    Ok((now() - start).as_secs_f64() * 1000.0 / f64::from(n))
}

/// The engine version this package speaks (nodes must match major.minor).
#[wasm_bindgen]
pub fn version() -> String {
    nym_client_core::VERSION.to_string()
}
