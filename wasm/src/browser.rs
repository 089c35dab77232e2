//! wasm-bindgen bindings: `NymClient` for JavaScript, over the engine's
//! [`Driver`] (the same one the native client runs).
//!
//! This shim only does what a browser must: it opens the gateway WebSocket
//! the driver asks for and feeds its events back, arms one timer for the
//! driver's `poll_timeout`, fetches the topology when asked, keeps the
//! driver's stores in localStorage, and turns deliveries and events into JS
//! callbacks. JS callbacks run only after the driver's borrow is released,
//! so they may call back into the client (e.g. reply from `onMessage`).

use crate::bench::BenchSetup;
use gloo_timers::callback::Timeout;
use js_sys::{Function, Object, Promise, Reflect, Uint8Array};
use nym_client_core::address::{decode_key, encode_key};
use nym_client_core::keys::ClientKeys;
use nym_client_core::reply::{decode_sender_tag, encode_sender_tag};
use nym_client_core::{verify_topology, VerifiedTopology};
use nym_client_core::app_api::{AppRequest, AppResponse};
use nym_client_core::driver::{defaults, AppId, ConnectionId, Disconnect, Driver, DriverConfig, DriverEvent, Output, Restored, StoreName, StoreWrite};
use nym_client_core::{ReceivedMessage, Recipient};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::rc::{Rc, Weak};
use std::time::Duration;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{BinaryType, CloseEvent, Event, MessageEvent, WebSocket};

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &'static str = r#"
/** Options of `NymClient.start`. Every field is optional. */
export interface NymClientOptions {
  /** base58 identity key of the gateway to use. Default: the saved identity's gateway, else a random gateway from the topology. */
  gateway?: string;
  /** base58 ed25519 key of the directory, as its operator publishes it: only topologies signed by it are believed. Default: the key kept with the saved identity (localStorage `nym-client-wasm/<storageKey>/directory-key`), else the key the directory presents on first contact (trust on first use), then kept with the identity. */
  directoryKey?: string;
  /** Don't read or write the identity in localStorage: a fresh address every start. Default false. */
  ephemeral?: boolean;
  /** Name of the saved identity (localStorage key `nym-client-wasm/<storageKey>`; its reply store, SURBs and reply keys, under `nym-client-wasm/<storageKey>/replies`; messages kept for an `onMessage` callback not registered yet under `nym-client-wasm/<storageKey>/received`), to keep several on one origin. Default "default". */
  storageKey?: string;
  /** Mean gap (ms) of the main Poisson stream (real or cover packets). 0: no throttling, real packets go out at once and this stream sends no cover. Default 20. */
  averagePacketDelayMs?: number;
  /** Mean per-hop mixing delay (ms) put in each packet. 0: no delay. Default 15. */
  averageHopDelayMs?: number;
  /** Mean gap (ms) of the loop cover stream. 0: off. Default 200. */
  loopCoverDelayMs?: number;
  /** How often (ms) to fetch the topology again. Default 30000. */
  topologyRefreshMs?: number;
  /** How long (ms) a connection to the gateway may take from opening to a completed handshake: `start` rejects when its first connection doesn't make it; later connections are retried with backoff. Default 15000. */
  connectTimeoutMs?: number;
}

/**
 * The `onMessage` callback. `senderTag` is the base58 sender tag of an anonymous
 * message (sent with `sendAnonymous`): answer it with `client.reply(senderTag, ...)`.
 * It is `undefined` for plain messages and for replies to our own anonymous messages.
 */
export type NymMessageCallback = (message: string | Uint8Array, senderTag: string | undefined) => void;

/** What `NymClient.stats()` returns: the engine's counters. */
export interface NymClientStats {
  connected: boolean;
  queuedPackets: number;
  realPacketsSent: number;
  coverPacketsSent: number;
  packetsReceived: number;
  coverPacketsReceived: number;
  messagesReceived: number;
  duplicateFragments: number;
  malformedPackets: number;
}
"#;

#[wasm_bindgen]
extern "C" {
    /// `NymClientOptions` of the TypeScript section above.
    #[wasm_bindgen(typescript_type = "NymClientOptions")]
    pub type NymClientOptions;
}

const STORAGE_PREFIX: &str = "nym-client-wasm/";
/// Suffix of the reply store's localStorage key, after the identity's key.
const REPLIES_SUFFIX: &str = "/replies";
/// Suffix of the received-message store's key: messages kept for an
/// `onMessage` callback not registered yet, and which were handed over.
const RECEIVED_SUFFIX: &str = "/received";
/// Suffix of the pinned directory key's entry (base58).
const DIRECTORY_KEY_SUFFIX: &str = "/directory-key";

fn directory_key_entry(storage_key: &str) -> String {
    format!("{STORAGE_PREFIX}{storage_key}{DIRECTORY_KEY_SUFFIX}")
}

/// The wall clock, for topology expiry: Unix milliseconds.
fn unix_time_ms() -> u64 {
    js_sys::Date::now().max(0.0) as u64
}

fn js_error(message: impl AsRef<str>) -> JsValue {
    js_sys::Error::new(message.as_ref()).into()
}

/// The text of a thrown JS value: an Error's message, a string, or its debug form.
fn describe(value: &JsValue) -> String {
    if let Some(e) = value.dyn_ref::<js_sys::Error>() {
        return String::from(e.message());
    }
    value.as_string().unwrap_or_else(|| format!("{value:?}"))
}

fn now() -> Duration {
    let ms = web_sys::window().and_then(|w| w.performance()).map(|p| p.now()).unwrap_or_else(js_sys::Date::now);
    Duration::from_secs_f64(ms.max(0.0) / 1000.0)
}

fn warn(message: &str) {
    web_sys::console::warn_1(&JsValue::from_str(message));
}

struct Options {
    gateway: Option<String>,
    directory_key: Option<[u8; 32]>,
    ephemeral: bool,
    storage_key: String,
    config: DriverConfig,
}

fn get(options: &Object, name: &str) -> Result<Option<JsValue>, JsValue> {
    let value = Reflect::get(options, &JsValue::from_str(name))?;
    Ok((!value.is_undefined() && !value.is_null()).then_some(value))
}

fn get_ms(options: &Object, name: &str) -> Result<Option<f64>, JsValue> {
    match get(options, name)? {
        None => Ok(None),
        Some(v) => match v.as_f64() {
            Some(ms) if (0.0..=86_400_000.0).contains(&ms) => Ok(Some(ms)),
            _ => Err(js_error(format!("option {name} must be a number of milliseconds (0 to 86400000)"))),
        },
    }
}

fn get_string(options: &Object, name: &str) -> Result<Option<String>, JsValue> {
    match get(options, name)? {
        None => Ok(None),
        Some(v) => v.as_string().map(Some).ok_or_else(|| js_error(format!("option {name} must be a string"))),
    }
}

impl Options {
    fn read(options: Option<&Object>) -> Result<Self, JsValue> {
        let mut o = Options {
            gateway: None,
            directory_key: None,
            ephemeral: false,
            storage_key: "default".into(),
            config: DriverConfig { max_applications: 1, ..DriverConfig::default() },
        };
        let Some(options) = options.filter(|o| !o.is_undefined() && !o.is_null()) else { return Ok(o) };
        if !options.is_object() {
            return Err(js_error("the options must be an object"));
        }
        let ms = |v: f64| Duration::from_secs_f64(v / 1000.0);
        o.gateway = get_string(options, "gateway")?;
        if let Some(key) = get_string(options, "directoryKey")? {
            o.directory_key = Some(decode_key(key.trim(), "option directoryKey").map_err(|e| js_error(e.to_string()))?);
        }
        if let Some(v) = get(options, "ephemeral")? {
            o.ephemeral = v.as_bool().ok_or_else(|| js_error("option ephemeral must be a boolean"))?;
        }
        if let Some(key) = get_string(options, "storageKey")? {
            o.storage_key = key;
        }
        if let Some(v) = get_ms(options, "averagePacketDelayMs")? {
            o.config.client.average_packet_delay = ms(v);
        }
        if let Some(v) = get_ms(options, "averageHopDelayMs")? {
            o.config.client.average_hop_delay = ms(v);
        }
        if let Some(v) = get_ms(options, "loopCoverDelayMs")? {
            o.config.client.loop_cover_delay = ms(v);
        }
        if let Some(v) = get_ms(options, "topologyRefreshMs")? {
            o.config.topology_refresh = ms(v.max(1000.0));
        }
        if let Some(v) = get_ms(options, "connectTimeoutMs")? {
            o.config.handshake_timeout = ms(v.max(1.0));
        }
        Ok(o)
    }
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

fn local_storage() -> Result<web_sys::Storage, JsValue> {
    web_sys::window()
        .ok_or_else(|| js_error("no window"))?
        .local_storage()
        .map_err(|e| js_error(format!("localStorage is not available: {}", describe(&e))))?
        .ok_or_else(|| js_error("localStorage is not available (pass { ephemeral: true } to run without it)"))
}

fn load_identity(storage_key: &str) -> Result<Option<(ClientKeys, [u8; 32])>, JsValue> {
    let key = format!("{STORAGE_PREFIX}{storage_key}");
    let Some(text) = local_storage()?.get_item(&key)? else { return Ok(None) };
    let unreadable = |e: String| {
        js_error(format!(
            "the saved identity in localStorage['{key}'] is unreadable: {e} (remove it, or use another storageKey)"
        ))
    };
    let saved: SavedIdentity = serde_json::from_str(&text).map_err(|e| unreadable(e.to_string()))?;
    let keys = ClientKeys::from_pem(&saved.private_pem, &saved.public_pem).map_err(|e| unreadable(e.to_string()))?;
    let gateway = decode_key(&saved.gateway, "gateway key").map_err(|e| unreadable(e.to_string()))?;
    Ok(Some((keys, gateway)))
}

fn save_identity(storage_key: &str, keys: &ClientKeys, gateway: &[u8; 32]) -> Result<(), JsValue> {
    let saved = SavedIdentity { private_pem: keys.private_pem(), public_pem: keys.public_pem(), gateway: encode_key(gateway) };
    let text = serde_json::to_string(&saved).map_err(|e| js_error(format!("cannot save the identity: {e}")))?;
    local_storage()?
        .set_item(&format!("{STORAGE_PREFIX}{storage_key}"), &text)
        .map_err(|e| js_error(format!("cannot save the identity in localStorage: {}", describe(&e))))
}

fn replies_key(storage_key: &str) -> String {
    format!("{STORAGE_PREFIX}{storage_key}{REPLIES_SUFFIX}")
}

/// Bytes as base64 (the window's `btoa` over a binary string).
fn to_base64(bytes: &[u8]) -> Result<String, JsValue> {
    let binary: String = bytes.iter().map(|&b| char::from(b)).collect();
    web_sys::window().ok_or_else(|| js_error("no window"))?.btoa(&binary)
}

fn from_base64(text: &str) -> Result<Vec<u8>, JsValue> {
    let binary = web_sys::window().ok_or_else(|| js_error("no window"))?.atob(text.trim())?;
    binary
        .chars()
        .map(|c| u8::try_from(u32::from(c)).map_err(|_| js_error("not a binary string")))
        .collect()
}

/// The saved reply store (SURBs we hold, keys to read replies), if any.
fn load_reply_store(storage_key: &str) -> Result<Option<Vec<u8>>, JsValue> {
    let key = replies_key(storage_key);
    let Some(text) = local_storage()?.get_item(&key)? else { return Ok(None) };
    from_base64(&text).map(Some).map_err(|e| {
        js_error(format!(
            "the saved reply store in localStorage['{key}'] is unreadable: {} (remove it, or use another storageKey)",
            describe(&e)
        ))
    })
}

/// Stores `bytes` as base64 under `key`; `what` names them in the error.
fn save_base64(key: &str, bytes: &[u8], what: &str) -> Result<(), JsValue> {
    let text = to_base64(bytes)?;
    local_storage()?
        .set_item(key, &text)
        .map_err(|e| js_error(format!("cannot save {what} in localStorage['{key}']: {}", describe(&e))))
}

fn received_key(storage_key: &str) -> String {
    format!("{STORAGE_PREFIX}{storage_key}{RECEIVED_SUFFIX}")
}

/// The saved received-message log; what can't be read is skipped (its
/// messages were not acknowledged, so the gateway delivers them again).
fn load_received(storage_key: &str) -> Result<Option<Vec<u8>>, JsValue> {
    let key = received_key(storage_key);
    let Some(text) = local_storage()?.get_item(&key)? else { return Ok(None) };
    match from_base64(&text) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(_) => {
            warn(&format!("nym-client-wasm: localStorage['{key}'] is unreadable; starting with no kept messages"));
            Ok(None)
        }
    }
}

/// The topology at start, checked by [`verify_topology`] (later ones the
/// driver asks for and checks the same way): signed by `pinned`, or with
/// `None` by the key it names (trust on first use).
async fn fetch_topology(directory: &str, pinned: Option<&[u8; 32]>) -> Result<VerifiedTopology, JsValue> {
    let text = fetch_topology_text(directory).await?;
    verify_topology(&text, pinned, unix_time_ms(), nym_client_core::VERSION)
        .map_err(|e| js_error(format!("directory {directory}: {e}")))
}

/// The directory key kept with a saved identity, if any.
fn load_directory_key(storage_key: &str) -> Result<Option<[u8; 32]>, JsValue> {
    let entry = directory_key_entry(storage_key);
    let Some(text) = local_storage()?.get_item(&entry)? else { return Ok(None) };
    decode_key(text.trim(), "the saved directory key")
        .map(Some)
        .map_err(|e| js_error(format!("{e} (localStorage['{entry}']; remove it to trust the directory's key again)")))
}

async fn fetch_topology_text(directory: &str) -> Result<String, JsValue> {
    let url = format!("{directory}/api/presence/topology");
    let window = web_sys::window().ok_or_else(|| js_error("no window: NymClient runs in a browser page"))?;
    let unreachable = |e: JsValue| js_error(format!("cannot reach the directory at {url}: {}", describe(&e)));
    let response = JsFuture::from(window.fetch_with_str(&url)).await.map_err(unreachable)?;
    let response: web_sys::Response = response.dyn_into().map_err(unreachable)?;
    if !response.ok() {
        return Err(js_error(format!("the directory at {url} answered HTTP {} {}", response.status(), response.status_text())));
    }
    let text = JsFuture::from(response.text().map_err(unreachable)?).await.map_err(unreachable)?;
    text.as_string().ok_or_else(|| js_error(format!("the directory at {url} sent no text")))
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
    directory: String,
    /// The gateway socket the driver asked for, with its handlers.
    ws: Option<(ConnectionId, WebSocket, Handlers)>,
    /// Handlers of closed sockets: dropped at the next connect, never inside their own call.
    old_handlers: Vec<Handlers>,
    timer: Option<(Duration, Timeout)>,
    /// `start`'s promise, until the first handshake completes or fails.
    starting: Option<(Function, Function)>,
    on_message: Option<(AppId, Function)>,
    on_error: Option<Function>,
    /// localStorage keys of the reply store and the received log; `None` when ephemeral.
    replies_key: Option<String>,
    received_key: Option<String>,
    /// The received log as stored (localStorage cannot append: the shim keeps it).
    received_log: Vec<u8>,
}

type Shared = Rc<RefCell<Inner>>;

/// What to tell JavaScript once the engine is released.
enum Notice {
    /// A message and its sender tag (a base58 string, or undefined).
    Message(JsValue, JsValue),
    Started,
    StartFailed(String),
    Error(String),
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
        let mut notices = Vec::new();
        while let Some(output) = self.driver.poll_output(now()) {
            match output {
                Output::Transmit { conn, frame } => match &self.ws {
                    Some((c, ws, _)) if *c == conn && ws.ready_state() == WebSocket::OPEN => {
                        if let Err(e) = ws.send_with_u8_array(&frame) {
                            notices.push(Notice::Error(format!("cannot send to the gateway: {}", describe(&e))));
                        }
                    }
                    _ => {}
                },
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
                Output::FetchTopology => {
                    let (weak, directory) = (weak.clone(), self.directory.clone());
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
                    if let Err(e) = self.persist(store, write) {
                        notices.push(Notice::Error(describe(&e)));
                    }
                }
                Output::Deliver { message, .. } => notices.push(message_notice(message)),
                Output::Event(event) => match event {
                    DriverEvent::Connected { .. } if self.state == State::Starting => notices.push(Notice::Started),
                    DriverEvent::Connected { .. } | DriverEvent::GatewayMoved { .. } => {}
                    DriverEvent::Disconnected { reason, url, .. } if self.state == State::Starting => {
                        notices.push(Notice::StartFailed(start_failure(&url, &reason)))
                    }
                    other => notices.push(Notice::Error(other.to_string())),
                },
            }
        }
        self.arm_timer(weak);
        notices
    }

    fn persist(&mut self, store: StoreName, write: StoreWrite) -> Result<(), JsValue> {
        match store {
            StoreName::ReplyStore => match (&self.replies_key, write) {
                (Some(key), StoreWrite::Replace(bytes)) => save_base64(key, &bytes, "the reply store"),
                _ => Ok(()),
            },
            StoreName::ReceivedMessages => {
                let Some(key) = &self.received_key else { return Ok(()) };
                match write {
                    StoreWrite::Replace(bytes) => self.received_log = bytes,
                    StoreWrite::Append { bytes, .. } => self.received_log.extend_from_slice(&bytes),
                }
                save_base64(key, &self.received_log, "received messages")
            }
        }
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

/// A Nym mixnet client running in this page: the nym-client-core engine,
/// connected to its gateway over a WebSocket.
///
/// ```js
/// import init, { NymClient } from "nym-client-wasm";
/// await init();
/// const client = await NymClient.start("http://127.0.0.1:8080");
/// client.onMessage((msg, senderTag) => console.log(msg, senderTag));
/// await client.send(client.selfAddress(), "hello");
/// ```
#[wasm_bindgen]
pub struct NymClient {
    shared: Shared,
}

#[wasm_bindgen]
impl NymClient {
    /// Fetches the topology from the directory (`GET {directoryUrl}/api/presence/topology`),
    /// loads or creates the identity (kept in localStorage unless `ephemeral`), connects to
    /// the gateway and resolves once the gateway handshake has completed.
    ///
    /// Rejects with an Error saying what went wrong: the directory is unreachable or sent
    /// no usable topology (among others: not signed by `directoryKey` or by the key kept
    /// with the identity, expired, a node descriptor with a bad signature), the gateway is unknown, the connection closed, the gateway
    /// refused the handshake, or it timed out (`connectTimeoutMs`).
    pub async fn start(
        #[wasm_bindgen(js_name = directoryUrl)] directory_url: String,
        options: Option<NymClientOptions>,
    ) -> Result<NymClient, JsValue> {
        let options = Options::read(options.as_ref().map(|o| o.unchecked_ref::<Object>()))?;
        let directory = directory_url.trim().trim_end_matches('/').to_string();
        if !(directory.starts_with("http://") || directory.starts_with("https://")) {
            return Err(js_error(format!("the directory URL must start with http:// or https://, got '{directory_url}'")));
        }
        let pinned = match (options.directory_key, options.ephemeral) {
            (Some(key), _) => Some(key),
            (None, false) => load_directory_key(&options.storage_key)?,
            (None, true) => None,
        };
        let topology = fetch_topology(&directory, pinned.as_ref()).await?;
        if pinned.is_none() {
            warn(&format!(
                "trusting directory key {} on first use (pass {{ directoryKey }} to pin the one your directory's operator publishes)",
                encode_key(&topology.directory_key)
            ));
        }

        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| js_error(format!("no secure random numbers: {e}")))?;
        let mut rng = StdRng::from_seed(seed);

        let saved = if options.ephemeral { None } else { load_identity(&options.storage_key)? };
        let requested = match &options.gateway {
            Some(g) => Some(decode_key(g.trim(), "gateway key").map_err(|e| js_error(e.to_string()))?),
            None => None,
        };
        let (keys, saved_gateway) = match saved {
            Some((keys, gateway)) => (keys, Some(gateway)),
            None => (ClientKeys::generate(&mut rng), None),
        };
        let gateway = match (requested, saved_gateway) {
            (Some(g), _) | (None, Some(g)) => topology.topology.gateway(&g).cloned().ok_or_else(|| {
                js_error(format!(
                    "gateway {} is not in the directory's topology ({} gateways listed)",
                    encode_key(&g),
                    topology.topology.gateways().len()
                ))
            })?,
            (None, None) => topology
                .topology
                .gateways()
                .choose(&mut rng)
                .cloned()
                .ok_or_else(|| js_error("the directory lists no gateway"))?,
        };
        // The stores belong to the saved identity: a new identity starts without them.
        let reply_store = match (&saved_gateway, options.ephemeral) {
            (_, true) => None,
            (Some(_), false) => load_reply_store(&options.storage_key)?,
            (None, false) => {
                local_storage()?.remove_item(&replies_key(&options.storage_key))?;
                None
            }
        };
        if !options.ephemeral {
            save_identity(&options.storage_key, &keys, &gateway.identity_key)?;
            local_storage()?
                .set_item(&directory_key_entry(&options.storage_key), &encode_key(&topology.directory_key))
                .map_err(|e| js_error(format!("cannot save the directory key in localStorage: {}", describe(&e))))?;
        }

        // Messages kept for a callback, and the sets of those handed over
        // (the gateway may deliver them again).
        let received = match (&saved_gateway, options.ephemeral) {
            (Some(_), false) => load_received(&options.storage_key)?,
            (None, false) => {
                local_storage()?.remove_item(&received_key(&options.storage_key))?;
                None
            }
            (_, true) => None,
        };
        let received_log = received.clone().unwrap_or_default();

        let mut engine_seed = [0u8; 32];
        getrandom::fill(&mut engine_seed).map_err(|e| js_error(format!("no secure random numbers: {e}")))?;
        let restored = Restored { reply_store, received_messages: received };
        let (driver, _) = Driver::new(keys, gateway.identity_key, topology, options.config.clone(), engine_seed, restored)
            .map_err(|e| {
                js_error(format!(
                    "{e} (remove localStorage['{}'], or use another storageKey)",
                    replies_key(&options.storage_key)
                ))
            })?;

        let shared: Shared = Rc::new(RefCell::new(Inner {
            driver,
            state: State::Starting,
            directory: directory.clone(),
            ws: None,
            old_handlers: Vec::new(),
            timer: None,
            starting: None,
            on_message: None,
            on_error: None,
            replies_key: (!options.ephemeral).then(|| replies_key(&options.storage_key)),
            received_key: (!options.ephemeral).then(|| received_key(&options.storage_key)),
            received_log,
        }));
        let handshake = Promise::new(&mut |resolve, reject| {
            shared.borrow_mut().starting = Some((resolve, reject));
        });
        with_engine(&shared, |inner| inner.driver.start(now()));
        if let Err(e) = JsFuture::from(handshake).await {
            shared.borrow_mut().shut_down();
            return Err(e);
        }
        Ok(NymClient { shared })
    }

    /// This client's address, `<base58 client key>@<base58 gateway identity key>`.
    #[wasm_bindgen(js_name = selfAddress)]
    pub fn self_address(&self) -> String {
        self.shared.borrow().driver.address().to_string()
    }

    /// Queues `message` (a string is sent as UTF-8, a Uint8Array as is) for `recipient`
    /// (`<client key>@<gateway key>`). Resolves once the message is queued in the engine
    /// (its packets then leave at the configured rate); rejects with the engine's error
    /// text for a bad address, a recipient gateway missing from the topology, a message
    /// too large, or a stopped client.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn send(&self, recipient: &str, #[wasm_bindgen(unchecked_param_type = "string | Uint8Array")] message: JsValue) -> Promise {
        settle(self.queue(recipient, &message, |recipient, message| AppRequest::Send { recipient, message }))
    }

    /// Like `send`, but anonymous: the recipient never learns this client's address,
    /// only a sender tag, and gets `replySurbs` (default 10, at most 200) single-use
    /// reply blocks to answer with (`client.reply`). Replies arrive through `onMessage`
    /// without a sender tag. Resolves once queued; rejects with the engine's error text.
    #[wasm_bindgen(js_name = sendAnonymous, unchecked_return_type = "Promise<void>")]
    pub fn send_anonymous(
        &self,
        recipient: &str,
        #[wasm_bindgen(unchecked_param_type = "string | Uint8Array")] message: JsValue,
        #[wasm_bindgen(js_name = replySurbs)] reply_surbs: Option<f64>,
    ) -> Promise {
        let surbs = match reply_surbs {
            None => Ok(defaults::REPLY_SURBS),
            Some(n) if n >= 0.0 && n.fract() == 0.0 && n <= 1e6 => Ok(n as usize),
            Some(_) => Err(js_error("replySurbs must be a whole number (0 to 200)")),
        };
        settle(surbs.and_then(|surbs| {
            self.queue(recipient, &message, |recipient, message| AppRequest::SendAnonymous { recipient, message, reply_surbs: surbs })
        }))
    }

    /// Answers an anonymous message through the reply blocks its sender gave: `senderTag`
    /// is the second argument `onMessage` got with it. When they run low, the engine asks
    /// the sender for more by itself. Resolves once queued; rejects for a malformed or
    /// unknown tag, a tag with no reply blocks left, a message too large or a stopped client.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
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

    /// Registers the callback for whole messages: a string when the bytes are valid
    /// UTF-8, else a Uint8Array; the second argument is the base58 sender tag of an
    /// anonymous message (answer with `reply`), `undefined` otherwise. Messages that
    /// arrived before it was set are delivered now, with their tags.
    #[wasm_bindgen(js_name = onMessage)]
    pub fn on_message(&self, #[wasm_bindgen(unchecked_param_type = "NymMessageCallback")] callback: Function) {
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

    /// Registers the callback for problems after start: lost connection (the client
    /// reconnects by itself), gateway errors, dropped messages, failed topology refresh.
    /// Without one they are logged with console.warn.
    #[wasm_bindgen(js_name = onError)]
    pub fn on_error(&self, #[wasm_bindgen(unchecked_param_type = "(error: Error) => void")] callback: Function) {
        self.shared.borrow_mut().on_error = Some(callback);
    }

    /// Whether the gateway session is up.
    #[wasm_bindgen(js_name = isConnected)]
    pub fn is_connected(&self) -> bool {
        self.shared.borrow().driver.is_connected()
    }

    /// The engine's packet counters.
    #[wasm_bindgen(unchecked_return_type = "NymClientStats")]
    pub fn stats(&self) -> Object {
        let inner = self.shared.borrow();
        let client = inner.driver.client();
        let s = client.stats();
        let o = Object::new();
        let set = |k: &str, v: JsValue| {
            let _ = Reflect::set(&o, &JsValue::from_str(k), &v);
        };
        set("connected", inner.driver.is_connected().into());
        set("queuedPackets", (client.queued_packets() as f64).into());
        set("realPacketsSent", (s.real_packets_sent as f64).into());
        set("coverPacketsSent", (s.cover_packets_sent as f64).into());
        set("packetsReceived", (s.packets_received as f64).into());
        set("coverPacketsReceived", (s.cover_packets_received as f64).into());
        set("messagesReceived", (s.messages_received as f64).into());
        set("duplicateFragments", (s.duplicate_fragments as f64).into());
        set("malformedPackets", (s.malformed_packets as f64).into());
        o
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

fn settle(result: Result<(), JsValue>) -> Promise {
    match result {
        Ok(()) => Promise::resolve(&JsValue::UNDEFINED),
        Err(e) => Promise::reject(&e),
    }
}

impl NymClient {
    /// Parses the recipient and the message into a request for the driver.
    fn queue(
        &self,
        recipient: &str,
        message: &JsValue,
        request: impl FnOnce(Recipient, Vec<u8>) -> AppRequest,
    ) -> Result<(), JsValue> {
        let recipient: Recipient = recipient.trim().parse().map_err(|e: nym_client_core::Error| js_error(e.to_string()))?;
        let bytes = message_bytes(message)?;
        self.request(request(recipient, bytes))
    }

    /// Hands a request to a running driver (then drains it); its error as a JS Error.
    fn request(&self, request: AppRequest) -> Result<(), JsValue> {
        let mut result = Ok(());
        with_engine(&self.shared, |inner| {
            result = if inner.state == State::Stopped {
                Err(js_error("the client is stopped"))
            } else {
                match inner.driver.handle_request(request, now()) {
                    AppResponse::Error(e) => Err(js_error(e)),
                    _ => Ok(()),
                }
            };
        });
        result
    }
}

/// Removes the identity saved under `storageKey` (default "default") from localStorage,
/// with its reply store, its kept messages and its pinned directory key.
#[wasm_bindgen(js_name = forgetIdentity)]
pub fn forget_identity(#[wasm_bindgen(js_name = storageKey)] storage_key: Option<String>) -> Result<(), JsValue> {
    let key = storage_key.unwrap_or_else(|| "default".into());
    let storage = local_storage()?;
    storage.remove_item(&replies_key(&key))?;
    storage.remove_item(&received_key(&key))?;
    storage.remove_item(&directory_key_entry(&key))?;
    storage.remove_item(&format!("{STORAGE_PREFIX}{key}"))
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
