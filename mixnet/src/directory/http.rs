//! The directory's HTTP face: `GET` [`paths::TOPOLOGY`] serves the signed
//! document; `POST` [`paths::MIXNODES`] and [`paths::GATEWAYS`] take
//! announcements, read in order of cost: the source's rate first, then the
//! body (bounded by `--max-body`), then every check of [`super::state`].
//! Each answer is counted ([`super::metrics`]).

use super::refusals::{AnnounceRefusal as Why, Refused};
use super::state::DirectoryState;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use nym_wire::topology::paths;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use tower_http::cors::CorsLayer;

/// Reads and checks one announcement: source rate first, then the body
/// (bounded), then everything else.
async fn handle(state: &DirectoryState, req: Request, mix: bool) -> Response {
    let source = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    if let Err(r) = state.check_source(source) {
        state.announcements().refused(r.why);
        return r.into_response();
    }
    let max = state.config().max_body;
    let body = match axum::body::to_bytes(req.into_body(), max).await {
        Ok(b) => b,
        Err(_) => {
            state.announcements().refused(Why::BodyTooLarge);
            let reason = format!("announcements are at most {max} bytes (--max-body)");
            return Refused { status: StatusCode::PAYLOAD_TOO_LARGE, reason, why: Why::BodyTooLarge }.into_response();
        }
    };
    let result = if mix { state.announce_mixnode(&body) } else { state.announce_gateway(&body) };
    match result {
        Ok(()) => {
            state.announcements().accepted();
            StatusCode::CREATED.into_response()
        }
        Err(r) => {
            state.announcements().refused(r.why);
            tracing::debug!("refused an announcement from {source}: {} {}", r.status, r.reason);
            r.into_response()
        }
    }
}

async fn post_mixnode(State(s): State<DirectoryState>, req: Request) -> Response {
    handle(&s, req, true).await
}

async fn post_gateway(State(s): State<DirectoryState>, req: Request) -> Response {
    handle(&s, req, false).await
}

async fn get_topology(State(s): State<DirectoryState>) -> Response {
    let (_, text) = s.document();
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(text.as_str().to_owned()))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// The directory's routes. Served with connect info (as [`super::start_directory`]
/// does) the per-source limit is per IP; without it every request counts as
/// one source.
pub fn router(state: DirectoryState) -> Router {
    Router::new()
        .route(paths::TOPOLOGY, get(get_topology))
        .route(paths::MIXNODES, post(post_mixnode))
        .route(paths::GATEWAYS, post(post_gateway))
        .layer(CorsLayer::permissive())
        .with_state(state)
}
