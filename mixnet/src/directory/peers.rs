//! The round task of a multi-authority network: it drives [`super::rounds`]
//! through each round and talks to the other authorities.
//!
//! Each round `r` (start `S = r*R`): at `S` vote (our live descriptors,
//! signed) and POST the vote to every peer; at the vote deadline `S + R/3`
//! GET every peer's votes for `r` (to take votes we missed, and to catch an
//! authority that voted differently to different peers); at `S + R/2`
//! compute the document, sign it and POST the signature to every peer.
//! Every peer request has a timeout within its phase: a dead or slow peer
//! never holds a round up. At start, and whenever the document served is
//! more than a round old, fetch the peers' documents and serve the newest
//! that carries enough signatures ("catching up").

use super::rounds::{PeerRefusal, Rounds};
use super::state::DirectoryState;
use crate::http::DirectoryClient;
use futures_util::future::join_all;
use nym_wire::topology::TopologyJson;
use nym_wire::vote::{paths, VoteJson, MAX_VOTE_BYTES};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

/// The system clock in Unix ms (the only clock of the rounds).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

struct Peer {
    url: String,
    client: DirectoryClient,
}

/// Sleeps until Unix ms `at`; false if cancelled first.
async fn sleep_until(at: u64, cancel: &CancellationToken) -> bool {
    let wait = Duration::from_millis(at.saturating_sub(now_ms()));
    tokio::select! {
        _ = tokio::time::sleep(wait) => true,
        _ = cancel.cancelled() => false,
    }
}

/// How long a peer request may take: a third of a round, between 200 ms and 5 s.
fn peer_timeout(rounds: &Rounds) -> Duration {
    Duration::from_millis((rounds.round_ms() / 3).clamp(200, 5000))
}

/// Starts the round task (and the first catch-up).
pub(super) fn spawn(
    state: DirectoryState,
    rounds: Arc<Rounds>,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let peers: Vec<Peer> = rounds
        .authorities()
        .list()
        .iter()
        .filter(|a| a.key != rounds.me())
        .filter_map(|a| match DirectoryClient::new(&a.url) {
            Ok(client) => Some(Peer {
                url: a.url.clone(),
                client,
            }),
            Err(e) => {
                tracing::warn!("authority {} is not reachable over plain http, skipped: {e:#}", a.url);
                None
            }
        })
        .collect();
    let peers = Arc::new(peers);
    tokio::spawn(async move {
        catch_up(&rounds, &peers).await;
        loop {
            let round = rounds.round_at(now_ms()) + 1;
            if !sleep_until(rounds.start_ms(round), &cancel).await {
                return;
            }
            run_round(&state, &rounds, &peers, round, &cancel).await;
            if cancel.is_cancelled() {
                return;
            }
        }
    })
}

async fn run_round(
    state: &DirectoryState,
    rounds: &Arc<Rounds>,
    peers: &Arc<Vec<Peer>>,
    round: u64,
    cancel: &CancellationToken,
) {
    let timeout = peer_timeout(rounds);
    if rounds.served_round().is_none_or(|s| s + 1 < round) {
        let (r, p) = (rounds.clone(), peers.clone());
        tokio::spawn(async move { catch_up(&r, &p).await });
    }
    // (a) vote
    let (mix_nodes, gateway_nodes) = state.live_descriptors();
    let vote = rounds.own_vote(round, mix_nodes, gateway_nodes, now_ms());
    let vote = Arc::new(vote);
    for peer in peers.iter() {
        let (client, url, vote) = (peer.client.clone(), peer.url.clone(), vote.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(timeout, client.announce(paths::VOTES, &*vote)).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(refusal))) => tracing::warn!("authority {url} refused our vote for round {round}: {refusal}"),
                Ok(Err(e)) => tracing::debug!("could not send our vote to {url}: {e:#}"),
                Err(_) => tracing::debug!("authority {url} did not take our vote within {timeout:?}"),
            }
        });
    }
    // (b) after the deadline: every peer's votes for the round
    if !sleep_until(rounds.vote_deadline_ms(round), cancel).await {
        return;
    }
    // Each peer's list is taken as it comes: a silent peer holds up no other.
    let path = paths::VOTES_OF_ROUND.replace("{round}", &round.to_string());
    let until_compute = Duration::from_millis(rounds.compute_at_ms(round).saturating_sub(now_ms()));
    let fetches = peers.iter().map(|p| {
        let path = path.clone();
        async move {
            match p
                .client
                .get_bounded(&path, 4 * MAX_VOTE_BYTES, until_compute.min(timeout))
                .await
            {
                Ok(body) => match serde_json::from_slice::<Vec<VoteJson>>(&body) {
                    Ok(votes) => take_exchanged(rounds, votes, round),
                    Err(e) => tracing::warn!("authority {} sent bad votes for round {round}: {e}", p.url),
                },
                Err(e) => tracing::debug!("no votes of round {round} from {}: {e:#}", p.url),
            }
        }
    });
    let _ = tokio::time::timeout(until_compute, join_all(fetches)).await;
    // (c) compute and sign; (d) send our signature
    if !sleep_until(rounds.compute_at_ms(round), cancel).await {
        return;
    }
    let Some(signature) = rounds.compute(round, now_ms()) else {
        return;
    };
    let signature = Arc::new(signature);
    for peer in peers.iter() {
        let (client, url, signature) = (peer.client.clone(), peer.url.clone(), signature.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(timeout, client.announce(paths::SIGNATURES, &*signature)).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(refusal))) => {
                    tracing::info!("authority {url} did not take our signature of round {round}: {refusal}")
                }
                Ok(Err(e)) => tracing::debug!("could not send our signature to {url}: {e:#}"),
                Err(_) => tracing::debug!("authority {url} did not take our signature within {timeout:?}"),
            }
        });
    }
}

/// Votes from a peer's list for `round`: each checked as if sent by its
/// author (but after the deadline); a different vote by an author we hold
/// a vote of is equivocation.
fn take_exchanged(rounds: &Rounds, votes: Vec<VoteJson>, round: u64) {
    // A list longer than two votes per authority is not an honest one.
    for vote in votes.into_iter().take(2 * rounds.authorities().list().len()) {
        let Ok(key) = vote.verify() else {
            rounds.counters.vote_refused(PeerRefusal::Bad);
            continue;
        };
        if let Err(e) = rounds.receive_vote(vote, key, now_ms(), Some(round)) {
            if e.why == PeerRefusal::Equivocation {
                rounds.counters.vote_refused(e.why);
            }
        }
    }
}

/// Fetches every peer's document and serves the newest with enough signatures.
async fn catch_up(rounds: &Rounds, peers: &[Peer]) {
    let timeout = peer_timeout(rounds).max(Duration::from_secs(1));
    let fetches = peers.iter().map(|p| async move {
        (
            p.url.clone(),
            tokio::time::timeout(timeout, p.client.topology_text()).await,
        )
    });
    let mut adopted = None;
    for (url, text) in join_all(fetches).await {
        let Ok(Ok(text)) = text else { continue };
        let Ok(doc) = serde_json::from_str::<TopologyJson>(&text) else {
            continue;
        };
        let round = doc.round;
        match rounds.adopt(doc, now_ms()) {
            Ok(true) => adopted = Some((round, url)),
            Ok(false) => {}
            Err(e) => tracing::debug!("the document from {url} is not one to serve: {e}"),
        }
    }
    if let Some((round, url)) = adopted {
        tracing::info!("caught up: serving the document of round {round} (from {url})");
    }
}
