//! The directory: nodes announce themselves, clients fetch the topology.

use anyhow::Result;
use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use nym_wire::topology::{Gateway, GatewayJson, MixNode, MixNodeJson, TopologyJson};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::cors::CorsLayer;

pub const DEFAULT_EXPIRY: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Entries {
    mixnodes: HashMap<String, (MixNodeJson, Instant)>,
    gateways: HashMap<String, (GatewayJson, Instant)>,
}

/// The directory's state; cheap to clone.
#[derive(Clone)]
pub struct DirectoryState {
    entries: Arc<Mutex<Entries>>,
    expiry: Duration,
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

impl DirectoryState {
    pub fn new(expiry: Duration) -> Self {
        DirectoryState { entries: Arc::default(), expiry }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The live (not expired) topology.
    pub fn topology(&self) -> TopologyJson {
        let mut e = self.lock();
        let expiry = self.expiry;
        e.mixnodes.retain(|_, (_, t)| t.elapsed() <= expiry);
        e.gateways.retain(|_, (_, t)| t.elapsed() <= expiry);
        let mut mix_nodes: Vec<MixNodeJson> = e.mixnodes.values().map(|(j, _)| j.clone()).collect();
        mix_nodes.sort_by(|a, b| (a.layer, &a.host).cmp(&(b.layer, &b.host)));
        let mut gateway_nodes: Vec<GatewayJson> = e.gateways.values().map(|(j, _)| j.clone()).collect();
        gateway_nodes.sort_by(|a, b| a.mixnet_listener.cmp(&b.mixnet_listener));
        TopologyJson { mix_nodes, gateway_nodes, ..Default::default() }
    }

    pub fn announce_mixnode(&self, mut node: MixNodeJson) -> Result<(), String> {
        MixNode::from_json(&node).map_err(|e| e.to_string())?;
        node.last_seen = now_ns();
        self.lock().mixnodes.insert(node.host.clone(), (node, Instant::now()));
        Ok(())
    }

    pub fn announce_gateway(&self, mut node: GatewayJson) -> Result<(), String> {
        Gateway::from_json(&node).map_err(|e| e.to_string())?;
        node.last_seen = now_ns();
        self.lock().gateways.insert(node.identity_key.clone(), (node, Instant::now()));
        Ok(())
    }
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(serde_json::json!({ "error": message }))).into_response()
}

async fn post_mixnode(State(s): State<DirectoryState>, body: Result<Json<MixNodeJson>, JsonRejection>) -> Response {
    match body {
        Err(e) => bad_request(format!("bad mixnode JSON: {}", e.body_text())),
        Ok(Json(node)) => match s.announce_mixnode(node) {
            Ok(()) => StatusCode::CREATED.into_response(),
            Err(e) => bad_request(format!("bad mixnode: {e}")),
        },
    }
}

async fn post_gateway(State(s): State<DirectoryState>, body: Result<Json<GatewayJson>, JsonRejection>) -> Response {
    match body {
        Err(e) => bad_request(format!("bad gateway JSON: {}", e.body_text())),
        Ok(Json(node)) => match s.announce_gateway(node) {
            Ok(()) => StatusCode::CREATED.into_response(),
            Err(e) => bad_request(format!("bad gateway: {e}")),
        },
    }
}

async fn get_topology(State(s): State<DirectoryState>) -> Json<TopologyJson> {
    Json(s.topology())
}

pub fn router(state: DirectoryState) -> Router {
    Router::new()
        .route("/api/presence/topology", get(get_topology))
        .route("/api/presence/mixnodes", post(post_mixnode))
        .route("/api/presence/gateways", post(post_gateway))
        .layer(CorsLayer::permissive())
        .with_state(state)
}

/// A running directory.
pub struct DirectoryHandle {
    pub addr: SocketAddr,
    pub state: DirectoryState,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl DirectoryHandle {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn shutdown(self) {
        self.cancel.cancel();
        let mut task = self.task;
        // Kept-alive client connections can hold a graceful shutdown open.
        if tokio::time::timeout(Duration::from_secs(1), &mut task).await.is_err() {
            task.abort();
        }
    }
}

/// Serves the directory on `listen` (port 0 picks a free port) until shut down.
pub async fn start_directory(listen: SocketAddr, expiry: Duration) -> Result<DirectoryHandle> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let state = DirectoryState::new(expiry);
    let cancel = CancellationToken::new();
    let app = router(state.clone());
    let c = cancel.clone();
    let task = tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move { c.cancelled().await });
        if let Err(e) = serve.await {
            tracing::error!("directory server failed: {e}");
        }
    });
    tracing::info!("directory listening on http://{addr}");
    Ok(DirectoryHandle { addr, state, cancel, task })
}
