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
//!
//! Rooms: [`exposition`] writes the text format; this file serves it. What
//! each node exports is the node's own: mixnodes' and gateways' packet
//! counters in `crate::node::metrics`, the gateway's inbox in
//! `crate::gateway::metrics`, the directory's announcements in
//! [`crate::directory::metrics`].

pub(crate) mod exposition;

pub use exposition::{Exposition, Kind};

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::{header, Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
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

/// What a node's endpoint shows; called per request on a blocking thread.
pub(crate) type Render = Arc<dyn Fn(&mut Exposition) + Send + Sync>;

/// `nym_node_info`: every node's first family.
pub(crate) fn node_info(out: &mut Exposition, role: &str) {
    out.family(
        "nym_node_info",
        Kind::Gauge,
        "Always 1; the labels say what the node is: role (mixnode, gateway, directory) and version.",
        &[(&[("role", role), ("version", nym_wire::VERSION)], 1)],
    );
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
    let listener =
        TcpListener::bind(listen).await.with_context(|| format!("cannot serve metrics on {listen} (--metrics)"))?;
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() {
        tracing::warn!("{node}: metrics on {addr} are readable by anyone who can reach that address");
    }
    let endpoint =
        Arc::new(Endpoint { render, slots: Arc::new(Semaphore::new(MAX_CONNECTIONS)), refused: AtomicU64::new(0) });
    tokio::spawn(accept(listener, endpoint, cancel.clone()));
    Ok(Some(addr))
}

/// `http://ADDR/metrics`.
pub fn url(addr: SocketAddr) -> String {
    format!("http://{addr}{PATH}")
}

async fn accept(listener: TcpListener, endpoint: Arc<Endpoint>, cancel: CancellationToken) {
    crate::listener::accept_until_cancelled(listener, &cancel.clone(), "metrics accept failed", |stream, _| {
        let Ok(slot) = endpoint.slots.clone().try_acquire_owned() else {
            // Closed at once: nothing read.
            endpoint.refused.fetch_add(1, Ordering::Relaxed);
            return;
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
    })
    .await
}

fn plain(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(text.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

impl Endpoint {
    async fn respond(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        if req.uri().path() != PATH {
            return plain(StatusCode::NOT_FOUND, "not found: this endpoint serves only GET /metrics\n");
        }
        if req.method() != Method::GET {
            let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET /metrics is served\n");
            r.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static("GET"));
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
                r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(CONTENT_TYPE));
                r
            }
            Err(_) => plain(StatusCode::INTERNAL_SERVER_ERROR, "metrics could not be rendered\n"),
        }
    }
}
