//! The directory's HTTP face: `GET` [`paths::TOPOLOGY`] serves the signed
//! document; `POST` [`paths::MIXNODES`] and [`paths::GATEWAYS`] take
//! announcements, read in order of cost: the source's rate first, then the
//! body (bounded by `--max-body`), then every check of [`super::state`].
//! Each answer is counted ([`super::metrics`]). In a network of several
//! authorities, the authority-to-authority routes `POST /api/authority/votes`,
//! `GET /api/authority/votes/{round}` and `POST /api/authority/signatures`
//! feed [`super::rounds`].

use super::peers::now_ms;
use super::refusals::{AnnounceRefusal as Why, Refused};
use super::rounds::PeerRefusal;
use super::state::DirectoryState;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use nym_wire::topology::paths;
use nym_wire::vote::{parse_vote, paths as vote_paths, RoundSignature, MAX_VOTE_BYTES};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
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
            return Refused {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                reason,
                why: Why::BodyTooLarge,
            }
            .into_response();
        }
    };
    let result = if mix {
        state.announce_mixnode(&body)
    } else {
        state.announce_gateway(&body)
    };
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

fn json_text(text: &str) -> Response {
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(text.to_owned()))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn error(status: StatusCode, reason: impl Into<String>) -> Response {
    (status, axum::Json(serde_json::json!({ "error": reason.into() }))).into_response()
}

async fn get_topology(State(s): State<DirectoryState>) -> Response {
    let Some(rounds) = s.rounds() else {
        let (_, text) = s.document();
        return json_text(&text);
    };
    match rounds.document() {
        Some(d) => {
            rounds.counters.documents_served.fetch_add(1, Ordering::Relaxed);
            json_text(&d.text)
        }
        None => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no consensus document yet: the first round has not ended and no peer had one",
        ),
    }
}

fn not_multi() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "this directory is a network of one authority (no --authorities file)",
    )
}

/// `POST /api/authority/votes`: a peer's vote for the current round.
async fn post_vote(State(s): State<DirectoryState>, req: Request) -> Response {
    let Some(rounds) = s.rounds() else { return not_multi() };
    let refuse = |why: PeerRefusal, reason: String| {
        rounds.counters.vote_refused(why);
        tracing::info!("refused a vote: {reason}");
        error(why.status(), reason)
    };
    let body = match axum::body::to_bytes(req.into_body(), MAX_VOTE_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return refuse(
                PeerRefusal::TooLarge,
                format!("votes are at most {MAX_VOTE_BYTES} bytes"),
            )
        }
    };
    let (vote, key) = match parse_vote(&body) {
        Ok(v) => v,
        Err(e) => return refuse(PeerRefusal::Bad, e.to_string()),
    };
    match rounds.receive_vote(vote, key, now_ms(), None) {
        Ok(_) => StatusCode::ACCEPTED.into_response(),
        Err(e) => refuse(e.why, e.reason),
    }
}

/// `GET /api/authority/votes/{round}`: the votes held for a round.
async fn get_votes(State(s): State<DirectoryState>, Path(round): Path<u64>) -> Response {
    let Some(rounds) = s.rounds() else { return not_multi() };
    // serde_json can't fail on these plain structs.
    json_text(&serde_json::to_string(&rounds.votes_of(round)).unwrap_or_default())
}

/// `POST /api/authority/signatures`: a peer's signature over its document of a round.
async fn post_signature(State(s): State<DirectoryState>, req: Request) -> Response {
    let Some(rounds) = s.rounds() else { return not_multi() };
    let refuse = |why: PeerRefusal, reason: String| {
        rounds.counters.signature_refused(why);
        error(why.status(), reason)
    };
    let body = match axum::body::to_bytes(req.into_body(), MAX_SIGNATURE_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return refuse(
                PeerRefusal::TooLarge,
                format!("signatures are at most {MAX_SIGNATURE_BYTES} bytes"),
            )
        }
    };
    let sig: RoundSignature = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(e) => return refuse(PeerRefusal::Bad, format!("not a round signature: {e}")),
    };
    match rounds.receive_signature(sig, now_ms()) {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(e) => refuse(e.why, e.reason),
    }
}

/// The largest round signature body read.
const MAX_SIGNATURE_BYTES: usize = 1024;

/// The directory's routes. Served with connect info (as [`super::start_directory`]
/// does) the per-source limit is per IP; without it every request counts as
/// one source.
pub fn router(state: DirectoryState) -> Router {
    Router::new()
        .route(paths::TOPOLOGY, get(get_topology))
        .route(paths::MIXNODES, post(post_mixnode))
        .route(paths::GATEWAYS, post(post_gateway))
        .route(vote_paths::VOTES, post(post_vote))
        .route(vote_paths::VOTES_OF_ROUND, get(get_votes))
        .route(vote_paths::SIGNATURES, post(post_signature))
        .layer(CorsLayer::permissive())
        .with_state(state)
}
