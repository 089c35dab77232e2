//! Prometheus metrics for every node: with `--metrics HOST:PORT` (the
//! `metrics` field of [`crate::MixnodeConfig`], [`crate::GatewayConfig`],
//! [`crate::DirectoryConfig`]) a node serves `GET /metrics` in the text
//! exposition format 0.0.4. Off unless asked for, except in the localnet
//! (127.0.0.1, free ports). Every name, type and label is a contract:
//! docs/metrics.md lists them.
//!
//! The endpoint answers before any authentication, so it is bounded like
//! everything else that does: at most [`MAX_CONNECTIONS`] connections at
//! once (one more is closed at accept, counted in
//! `nym_metrics_refused_connections_total`), a request line and headers of
//! at most [`MAX_REQUEST_HEAD`] bytes (431 past it), [`REQUEST_TIMEOUT`] to
//! send them, one request per connection, [`CONNECTION_TIMEOUT`] for the
//! whole exchange. Only `GET /metrics` is served: another path gets 404,
//! another method 405, bytes that are not HTTP 400. A request costs a
//! render of a few dozen lines from counters the node keeps anyway (no
//! database query, no scan).

use crate::directory::DirectoryState;
use crate::inbox::InboxGauges;
use crate::stats::{Conn, NodeStats, StatsSnapshot};
use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::{header, Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Metrics connections open at once; one more is closed at accept.
pub const MAX_CONNECTIONS: usize = 8;
/// Largest request line + headers, in bytes (hyper's smallest read buffer);
/// a longer head gets 431.
pub const MAX_REQUEST_HEAD: usize = 8192;
/// Time to send the request head; then the connection is closed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a metrics connection lives (one request, one answer).
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// The one path served.
pub const PATH: &str = "/metrics";
/// The answer's content type (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The `reason` label values of `nym_packets_dropped_total`, every one
/// present on every mixnode and gateway (0 where it can't happen).
pub const DROP_REASONS: [&str; 9] = [
    "malformed",
    "replayed",
    "no_route",
    "unknown_client",
    "queue_full",
    "limit",
    "unlisted_hop",
    "peer_down",
    "retired_key",
];

fn drops(s: &StatsSnapshot) -> [(&'static str, u64); DROP_REASONS.len()] {
    [
        ("malformed", s.dropped_malformed),
        ("replayed", s.dropped_replayed),
        ("no_route", s.dropped_no_route),
        ("unknown_client", s.dropped_unknown_client),
        ("queue_full", s.dropped_queue_full),
        ("limit", s.dropped_limit),
        ("unlisted_hop", s.dropped_unlisted_hop),
        ("peer_down", s.dropped_peer_down),
        ("retired_key", s.dropped_retired_key),
    ]
}

/// Why the directory refused an announcement: the `reason` label of
/// `nym_directory_announcements_total{result="refused"}` (docs/metrics.md
/// and docs/topology-document.md say when each applies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnounceRefusal {
    /// 429: past `--source-rate`/`--source-burst` for its source IP.
    SourceRate,
    /// 429: `--max-sources` source IPs are tracked already.
    TooManySources,
    /// 413: the body is over `--max-body`.
    BodyTooLarge,
    /// 400: not a descriptor's JSON.
    BadJson,
    /// 400: the descriptor's signature does not verify.
    BadSignature,
    /// 403: the identity is not on the `--admit` list.
    NotAdmitted,
    /// 400: a key, address or layer in the descriptor is invalid.
    BadDescriptor,
    /// 400: a version this directory does not serve.
    Version,
    /// 400: signed further in the future than `--max-clock-skew-secs`.
    ClockSkew,
    /// 400: its Sphinx keys are not for the epoch it was signed in and the
    /// next (under the directory's `--epoch-secs`).
    EpochKeys,
    /// 409: signed longer ago than `--max-descriptor-age-secs`.
    Stale,
    /// 409: a seq not greater than the last accepted from the identity.
    Replayed,
    /// 429: past `--identity-rate`/`--identity-burst` for its identity.
    IdentityRate,
    /// 429: too many identities announcing or remembered.
    TooManyIdentities,
    /// 409: a live mixnode announcing as a gateway, or the other way round.
    RoleConflict,
    /// 409: an address (mix listener or client listener) held by another live node.
    AddressHeld,
    /// 429: the directory lists `--max-nodes` already.
    Full,
}

impl AnnounceRefusal {
    pub const ALL: [AnnounceRefusal; 17] = [
        AnnounceRefusal::SourceRate,
        AnnounceRefusal::TooManySources,
        AnnounceRefusal::BodyTooLarge,
        AnnounceRefusal::BadJson,
        AnnounceRefusal::BadSignature,
        AnnounceRefusal::NotAdmitted,
        AnnounceRefusal::BadDescriptor,
        AnnounceRefusal::Version,
        AnnounceRefusal::ClockSkew,
        AnnounceRefusal::EpochKeys,
        AnnounceRefusal::Stale,
        AnnounceRefusal::Replayed,
        AnnounceRefusal::IdentityRate,
        AnnounceRefusal::TooManyIdentities,
        AnnounceRefusal::RoleConflict,
        AnnounceRefusal::AddressHeld,
        AnnounceRefusal::Full,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            AnnounceRefusal::SourceRate => "source_rate",
            AnnounceRefusal::TooManySources => "too_many_sources",
            AnnounceRefusal::BodyTooLarge => "body_too_large",
            AnnounceRefusal::BadJson => "bad_json",
            AnnounceRefusal::BadSignature => "bad_signature",
            AnnounceRefusal::NotAdmitted => "not_admitted",
            AnnounceRefusal::BadDescriptor => "bad_descriptor",
            AnnounceRefusal::Version => "version",
            AnnounceRefusal::ClockSkew => "clock_skew",
            AnnounceRefusal::EpochKeys => "epoch_keys",
            AnnounceRefusal::Stale => "stale",
            AnnounceRefusal::Replayed => "replayed",
            AnnounceRefusal::IdentityRate => "identity_rate",
            AnnounceRefusal::TooManyIdentities => "too_many_identities",
            AnnounceRefusal::RoleConflict => "role_conflict",
            AnnounceRefusal::AddressHeld => "address_held",
            AnnounceRefusal::Full => "full",
        }
    }
}

/// The directory's announcement counters (HTTP announcements only).
#[derive(Debug, Default)]
pub struct AnnouncementCounters {
    accepted: AtomicU64,
    refused: [AtomicU64; AnnounceRefusal::ALL.len()],
}

impl AnnouncementCounters {
    pub fn accepted(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }

    pub fn refused(&self, why: AnnounceRefusal) {
        self.refused[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn accepted_count(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    pub fn refused_count(&self, why: AnnounceRefusal) -> u64 {
        self.refused[why as usize].load(Ordering::Relaxed)
    }
}

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// Exposition text being written: one `# HELP`, one `# TYPE` and the
/// samples of each family, label values escaped.
#[derive(Debug, Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    /// A family with one sample per entry of `series` (labels, value).
    pub fn family(&mut self, name: &str, kind: Kind, help: &str, series: &[(&[(&str, &str)], u64)]) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
        for (labels, value) in series {
            self.text.push_str(name);
            if !labels.is_empty() {
                self.text.push('{');
                for (i, (k, v)) in labels.iter().enumerate() {
                    if i > 0 {
                        self.text.push(',');
                    }
                    let v = v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
                    let _ = write!(self.text, "{k}=\"{v}\"");
                }
                self.text.push('}');
            }
            let _ = writeln!(self.text, " {value}");
        }
    }

    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, Kind::Counter, help, &[(&[], value)]);
    }

    pub fn gauge(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, Kind::Gauge, help, &[(&[], value)]);
    }

    /// A family with one label.
    pub fn labelled(&mut self, name: &str, kind: Kind, help: &str, label: &str, series: &[(&str, u64)]) {
        let labels: Vec<[(&str, &str); 1]> = series.iter().map(|(v, _)| [(label, *v)]).collect();
        let series: Vec<(&[(&str, &str)], u64)> = labels.iter().zip(series).map(|(l, (_, n))| (&l[..], *n)).collect();
        self.family(name, kind, help, &series);
    }

    pub fn into_text(self) -> String {
        self.text
    }
}

/// What a node's endpoint shows; called per request on a blocking thread.
pub(crate) type Render = Arc<dyn Fn(&mut Exposition) + Send + Sync>;

fn info(out: &mut Exposition, role: &str) {
    out.family(
        "nym_node_info",
        Kind::Gauge,
        "Always 1; the labels say what the node is: role (mixnode, gateway, directory) and version.",
        &[(&[("role", role), ("version", nym_wire::VERSION)], 1)],
    );
}

/// What mixnodes and gateways share: packets in, out and dropped, connections, the key epoch.
fn packets(out: &mut Exposition, stats: &NodeStats, conns: &[Conn]) -> StatsSnapshot {
    let s = stats.snapshot();
    out.counter("nym_packets_received_total", "Whole Sphinx packets read from the mixnet listener (a gateway's clients' forwards are not counted: they go straight to layer 1).", s.received);
    out.counter("nym_packets_forwarded_total", "Packets written to a next hop's connection (mixnode: the next layer or a gateway; gateway: SURB-ACKs and clients' forwards to layer 1).", s.forwarded);
    out.labelled(
        "nym_packets_dropped_total",
        Kind::Counter,
        "Packets dropped, by reason.",
        "reason",
        &drops(&s),
    );
    out.counter(
        "nym_bad_connections_total",
        "Mixnet connections closed because their framing was corrupt.",
        s.bad_connections,
    );
    let open: Vec<(&str, u64)> = conns.iter().map(|c| (c.label(), stats.open_connections(*c))).collect();
    out.labelled(
        "nym_open_connections",
        Kind::Gauge,
        "Connections open now, by kind.",
        "kind",
        &open,
    );
    out.gauge(
        "nym_sphinx_key_epoch",
        "The id of the node's current Sphinx key epoch (0 until key epochs are in use).",
        s.epoch,
    );
    s
}

/// A mixnode's metrics.
pub(crate) fn mixnode(stats: Arc<NodeStats>, layer: u8) -> Render {
    Arc::new(move |out: &mut Exposition| {
        info(out, "mixnode");
        out.gauge("nym_mixnode_layer", "The mixnode's layer (1 to 3).", u64::from(layer));
        packets(out, &stats, &[Conn::MixIn, Conn::PeerOut]);
    })
}

/// A gateway's metrics.
pub(crate) fn gateway(stats: Arc<NodeStats>, inbox: Arc<InboxGauges>) -> Render {
    Arc::new(move |out: &mut Exposition| {
        info(out, "gateway");
        let s = packets(
            out,
            &stats,
            &[Conn::MixIn, Conn::PeerOut, Conn::Client, Conn::ClientAuthenticated],
        );
        out.counter(
            "nym_packets_stored_total",
            "Final-hop payloads committed to the inbox (then their SURB-ACKs were sent).",
            s.stored,
        );
        out.counter(
            "nym_packets_delivered_total",
            "Stored payloads their client acknowledged (and that were deleted).",
            s.delivered,
        );
        out.counter(
            "nym_packets_pushed_total",
            "Deliveries written to client connections (again after a reconnect when unacknowledged).",
            s.pushed,
        );
        out.counter(
            "nym_gateway_bad_acks_total",
            "Acknowledged delivery ids that named nothing outstanding on their connection (ignored).",
            s.bad_acks,
        );
        out.counter(
            "nym_gateway_expired_total",
            "Stored messages deleted unread after --inbox-expiry-secs.",
            s.expired,
        );
        out.counter(
            "nym_gateway_refused_connections_total",
            "Client connections refused before authentication (admission limits, registration rate or cap).",
            s.refused_connections,
        );
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        out.gauge(
            "nym_gateway_registered_clients",
            "Clients registered with this gateway (what --max-clients bounds).",
            g(&inbox.registered),
        );
        out.gauge(
            "nym_gateway_inbox_messages",
            "Messages stored in all inboxes, not yet acknowledged.",
            g(&inbox.messages),
        );
        out.gauge(
            "nym_gateway_inbox_bytes",
            "Payload bytes stored in all inboxes (what --inbox-disk-budget bounds).",
            g(&inbox.bytes),
        );
    })
}

/// The directory's metrics.
pub(crate) fn directory(state: DirectoryState) -> Render {
    Arc::new(move |out: &mut Exposition| {
        info(out, "directory");
        let counters = state.announcements();
        let mut series: Vec<(&[(&str, &str)], u64)> = vec![(&[("result", "accepted")], counters.accepted_count())];
        let labels: Vec<[(&str, &str); 2]> = AnnounceRefusal::ALL
            .iter()
            .map(|r| [("result", "refused"), ("reason", r.label())])
            .collect();
        for (l, r) in labels.iter().zip(AnnounceRefusal::ALL) {
            series.push((&l[..], counters.refused_count(r)));
        }
        out.family(
            "nym_directory_announcements_total",
            Kind::Counter,
            "Announcements (POST /api/presence/mixnodes, /api/presence/gateways): accepted, or refused by reason.",
            &series,
        );
        let (mixnodes, gateways) = state.listed();
        out.labelled(
            "nym_directory_listed_nodes",
            Kind::Gauge,
            "Nodes the topology document lists now (unexpired), by role.",
            "role",
            &[("mixnode", mixnodes as u64), ("gateway", gateways as u64)],
        );
    })
}

struct Endpoint {
    render: Render,
    slots: Arc<Semaphore>,
    refused: AtomicU64,
}

/// Serves `render` on `listen` until `cancel`, when `listen` is given;
/// returns the bound address. `node` names the node in logs.
pub(crate) async fn start(
    listen: Option<SocketAddr>,
    node: &str,
    render: Render,
    cancel: &CancellationToken,
) -> Result<Option<SocketAddr>> {
    let Some(listen) = listen else { return Ok(None) };
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot serve metrics on {listen} (--metrics)"))?;
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() {
        tracing::warn!("{node}: metrics on {addr} are readable by anyone who can reach that address");
    }
    let endpoint = Arc::new(Endpoint {
        render,
        slots: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
        refused: AtomicU64::new(0),
    });
    tokio::spawn(accept(listener, endpoint, cancel.clone()));
    Ok(Some(addr))
}

/// `http://ADDR/metrics`.
pub fn url(addr: SocketAddr) -> String {
    format!("http://{addr}{PATH}")
}

async fn accept(listener: TcpListener, endpoint: Arc<Endpoint>, cancel: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!("metrics accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = endpoint.slots.clone().try_acquire_owned() else {
            // Closed at once: nothing read.
            endpoint.refused.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let (endpoint, cancel) = (endpoint.clone(), cancel.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let service = {
                let endpoint = endpoint.clone();
                hyper::service::service_fn(move |req| {
                    let endpoint = endpoint.clone();
                    async move { Ok::<_, Infallible>(endpoint.respond(req).await) }
                })
            };
            let mut http = http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(REQUEST_TIMEOUT)
                .max_buf_size(MAX_REQUEST_HEAD)
                .keep_alive(false);
            let conn = http.serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = tokio::time::timeout(CONNECTION_TIMEOUT, conn) => {}
            }
        });
    }
}

fn plain(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(text.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

impl Endpoint {
    async fn respond(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        if req.uri().path() != PATH {
            return plain(
                StatusCode::NOT_FOUND,
                "not found: this endpoint serves only GET /metrics\n",
            );
        }
        if req.method() != Method::GET {
            let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET /metrics is served\n");
            r.headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static("GET"));
            return r;
        }
        let render = self.render.clone();
        let open = (MAX_CONNECTIONS - self.slots.available_permits()) as u64;
        let refused = self.refused.load(Ordering::Relaxed);
        let text = tokio::task::spawn_blocking(move || {
            let mut out = Exposition::default();
            render(&mut out);
            out.gauge(
                "nym_metrics_open_connections",
                "Connections to this metrics endpoint open now (this one included).",
                open,
            );
            out.counter(
                "nym_metrics_refused_connections_total",
                "Connections to this metrics endpoint closed at accept because MAX_CONNECTIONS (8) were open.",
                refused,
            );
            out.into_text()
        })
        .await;
        match text {
            Ok(text) => {
                let mut r = Response::new(Full::new(Bytes::from(text)));
                r.headers_mut()
                    .insert(header::CONTENT_TYPE, header::HeaderValue::from_static(CONTENT_TYPE));
                r
            }
            Err(_) => plain(StatusCode::INTERNAL_SERVER_ERROR, "metrics could not be rendered\n"),
        }
    }
}

/// One sample of exposition text: name, labels, value.
pub type Sample = (String, Vec<(String, String)>, f64);

/// Parses exposition text (what this module writes: one sample a line,
/// `name{k="v",...} value`, `#` lines are comments); an error names the
/// first line that is not a sample. For tests and tools.
pub fn parse(text: &str) -> std::result::Result<Vec<Sample>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |why: &str| format!("line {}: {why}: {line}", n + 1);
        let name_end = line.find(['{', ' ']).ok_or_else(|| bad("no value"))?;
        let name = &line[..name_end];
        let valid_name = name
            .chars()
            .enumerate()
            .all(|(i, c)| c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit()));
        if name.is_empty() || !valid_name {
            return Err(bad("bad metric name"));
        }
        let mut rest = &line[name_end..];
        let mut labels = Vec::new();
        if let Some(inner) = rest.strip_prefix('{') {
            let (parsed, used) = parse_labels(inner).map_err(|why| bad(&why))?;
            labels = parsed;
            rest = &inner[used..];
        }
        let value = rest.strip_prefix(' ').ok_or_else(|| bad("no space before the value"))?;
        let value = value.split(' ').next().unwrap_or("");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().map_err(|_| bad("bad value"))?,
        };
        out.push((name.to_string(), labels, value));
    }
    Ok(out)
}

/// Labels `k="v",k2="v2"}` (after a `{` or a `,`): the labels and the bytes
/// used, the closing `}` included.
fn parse_labels(s: &str) -> std::result::Result<(Vec<(String, String)>, usize), String> {
    let mut labels = Vec::new();
    let mut pos = 0;
    loop {
        let rest = &s[pos..];
        if rest.starts_with('}') {
            return Ok((labels, pos + 1));
        }
        let eq = rest.find("=\"").ok_or("label without =\"")?;
        let key = &rest[..eq];
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err("bad label name".into());
        }
        let mut value = String::new();
        let mut chars = rest[eq + 2..].char_indices();
        let mut closed = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err("dangling escape".into()),
                },
                '"' => {
                    closed = Some(pos + eq + 2 + i + 1);
                    break;
                }
                c => value.push(c),
            }
        }
        pos = closed.ok_or("unterminated label value")?;
        labels.push((key.to_string(), value));
        match s[pos..].chars().next() {
            Some(',') => pos += 1,
            Some('}') => {}
            _ => return Err("expected , or } after a label".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: Vec<(String, String)> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut found = samples.iter().filter(|(n, l, _)| n == name && *l == want);
        let v = found.next().map(|s| s.2);
        assert!(found.next().is_none(), "{name}{labels:?} appears twice");
        v
    }

    /// Every family has one HELP and one TYPE line, before its samples, and
    /// every other line is a sample that parses.
    fn well_formed(text: &str) -> Vec<Sample> {
        let (mut helped, mut typed) = (HashSet::new(), HashSet::new());
        for line in text.lines() {
            let mut words = line.split(' ');
            match (words.next(), words.next(), words.next()) {
                (Some("#"), Some("HELP"), Some(name)) => {
                    assert!(helped.insert(name.to_string()), "two HELP lines for {name}")
                }
                (Some("#"), Some("TYPE"), Some(name)) => {
                    assert!(typed.insert(name.to_string()), "two TYPE lines for {name}");
                    assert!(matches!(words.next(), Some("counter" | "gauge")), "{line}");
                }
                (Some("#"), ..) => panic!("stray comment: {line}"),
                _ => {
                    let samples = parse(line).unwrap_or_else(|e| panic!("{e}"));
                    assert_eq!(samples.len(), 1, "{line}");
                    let name = &samples[0].0;
                    assert!(
                        typed.contains(name) && helped.contains(name),
                        "{name} sampled before its HELP and TYPE"
                    );
                    assert!(
                        !name.ends_with("_total") || text.contains(&format!("# TYPE {name} counter")),
                        "{name}: a _total that is not a counter"
                    );
                }
            }
        }
        parse(text).unwrap()
    }

    #[test]
    fn exposition_text_parses_back_with_escaped_labels() {
        let mut out = Exposition::default();
        out.counter("a_total", "A counter.\nTwo lines.", 7);
        out.gauge("b", "A gauge.", 0);
        out.family(
            "c_total",
            Kind::Counter,
            "Labels.",
            &[(&[("x", "plain"), ("y", "q\"uo\\te\nnl")], 3), (&[("x", "")], u64::MAX)],
        );
        out.labelled("d", Kind::Gauge, "One label.", "kind", &[("one", 1), ("two", 2)]);
        let text = out.into_text();
        assert!(text.contains("# HELP a_total A counter.\\nTwo lines.\n"), "{text}");
        let samples = well_formed(&text);
        assert_eq!(samples.len(), 6);
        assert_eq!(value(&samples, "a_total", &[]), Some(7.0));
        assert_eq!(
            value(&samples, "c_total", &[("x", "plain"), ("y", "q\"uo\\te\nnl")]),
            Some(3.0)
        );
        assert_eq!(value(&samples, "c_total", &[("x", "")]), Some(u64::MAX as f64));
        assert_eq!(value(&samples, "d", &[("kind", "two")]), Some(2.0));
    }

    #[test]
    fn lines_that_are_not_samples_are_refused_by_line() {
        for bad in [
            "novalue",
            "x{a=\"1\" 2",
            "x{a=1} 2",
            "x{=\"1\"} 2",
            "x 1.2.3",
            "9x 1",
            "x{a=\"1\"}2",
            "x{a=\"\\",
            "x{a=\"1\";b=\"2\"} 1",
        ] {
            let e = parse(&format!("# HELP x fine\n{bad}\n")).expect_err(bad);
            assert!(e.starts_with("line 2:"), "{bad}: {e}");
        }
        assert_eq!(parse("x{a=\"1\",b=\"2\"} 3 1700000000\ny +Inf\n").unwrap().len(), 2);
    }

    #[test]
    fn a_mixnode_and_a_gateway_expose_every_counter_as_it_is() {
        let stats = NodeStats::new();
        let fields = [
            (&stats.dropped_malformed, "malformed"),
            (&stats.dropped_replayed, "replayed"),
            (&stats.dropped_no_route, "no_route"),
            (&stats.dropped_unknown_client, "unknown_client"),
            (&stats.dropped_queue_full, "queue_full"),
            (&stats.dropped_limit, "limit"),
            (&stats.dropped_unlisted_hop, "unlisted_hop"),
            (&stats.dropped_peer_down, "peer_down"),
            (&stats.dropped_retired_key, "retired_key"),
        ];
        assert_eq!(fields.iter().map(|f| f.1).collect::<Vec<_>>(), DROP_REASONS);
        for (i, (counter, _)) in fields.iter().enumerate() {
            counter.store(100 + i as u64, Ordering::Relaxed);
        }
        stats.received.store(11, Ordering::Relaxed);
        stats.forwarded.store(12, Ordering::Relaxed);
        stats.stored.store(13, Ordering::Relaxed);
        stats.delivered.store(14, Ordering::Relaxed);
        stats.epoch.store(42, Ordering::Relaxed);
        let peer = stats.open_connection(Conn::PeerOut);
        let clients = [stats.open_connection(Conn::Client), stats.open_connection(Conn::Client)];

        let mut out = Exposition::default();
        mixnode(stats.clone(), 2)(&mut out);
        let m = well_formed(&out.into_text());
        let inbox = Arc::new(InboxGauges::default());
        inbox.bytes.store(999, Ordering::Relaxed);
        inbox.registered.store(2, Ordering::Relaxed);
        let mut out = Exposition::default();
        gateway(stats.clone(), inbox)(&mut out);
        let g = well_formed(&out.into_text());

        for samples in [&m, &g] {
            for (i, reason) in DROP_REASONS.iter().enumerate() {
                assert_eq!(
                    value(samples, "nym_packets_dropped_total", &[("reason", reason)]),
                    Some(100.0 + i as f64),
                    "{reason}"
                );
            }
            assert_eq!(value(samples, "nym_packets_received_total", &[]), Some(11.0));
            assert_eq!(value(samples, "nym_packets_forwarded_total", &[]), Some(12.0));
            assert_eq!(value(samples, "nym_sphinx_key_epoch", &[]), Some(42.0));
            assert_eq!(
                value(samples, "nym_open_connections", &[("kind", "peer_out")]),
                Some(1.0)
            );
            assert_eq!(value(samples, "nym_open_connections", &[("kind", "mix_in")]), Some(0.0));
        }
        assert_eq!(
            value(
                &m,
                "nym_node_info",
                &[("role", "mixnode"), ("version", nym_wire::VERSION)]
            ),
            Some(1.0)
        );
        assert_eq!(value(&m, "nym_mixnode_layer", &[]), Some(2.0));
        assert_eq!(value(&m, "nym_packets_stored_total", &[]), None, "gateway-only");
        assert_eq!(
            value(
                &g,
                "nym_node_info",
                &[("role", "gateway"), ("version", nym_wire::VERSION)]
            ),
            Some(1.0)
        );
        assert_eq!(value(&g, "nym_packets_stored_total", &[]), Some(13.0));
        assert_eq!(value(&g, "nym_packets_delivered_total", &[]), Some(14.0));
        assert_eq!(value(&g, "nym_open_connections", &[("kind", "client")]), Some(2.0));
        assert_eq!(value(&g, "nym_gateway_inbox_bytes", &[]), Some(999.0));
        assert_eq!(value(&g, "nym_gateway_registered_clients", &[]), Some(2.0));
        // the guards give their connections back
        drop(clients);
        drop(peer);
        assert_eq!(
            (
                stats.open_connections(Conn::Client),
                stats.open_connections(Conn::PeerOut)
            ),
            (0, 0)
        );
    }

    #[test]
    fn every_refusal_has_its_own_label() {
        let labels: HashSet<&str> = AnnounceRefusal::ALL.iter().map(|r| r.label()).collect();
        assert_eq!(labels.len(), AnnounceRefusal::ALL.len());
        for (i, r) in AnnounceRefusal::ALL.iter().enumerate() {
            assert_eq!(
                *r as usize, i,
                "ALL is in declaration order (the counters are indexed by it)"
            );
        }
    }
}
