//! The directory's own metrics: announcements accepted and refused by
//! reason (counted here as the HTTP handlers decide), the nodes listed,
//! whether it is open, and (several authorities) its rounds. Also the
//! flood log: one summary line of refusals every [`FLOOD_LOG_EVERY`].

use super::refusals::AnnounceRefusal;
use super::rounds::{PeerRefusal, Rounds};
use crate::metrics::{node_info, Exposition, Kind, Render};
use nym_wire::address::encode_key;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

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

/// The directory's metrics: its announcement `counters`, and the nodes
/// `listed` (mixnodes, gateways) at the time of the request.
pub(crate) fn render(
    counters: Arc<AnnouncementCounters>,
    rounds: Option<Arc<Rounds>>,
    open: bool,
    listed: impl Fn() -> (usize, usize) + Send + Sync + 'static,
) -> Render {
    Arc::new(move |out: &mut Exposition| {
        node_info(out, "directory");
        out.gauge(
            "nym_directory_open",
            "1 if this directory admits any identity (--open, a Sybil risk), else 0.",
            u64::from(open),
        );
        if let Some(r) = &rounds {
            render_rounds(out, r);
        }
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
        let (mixnodes, gateways) = listed();
        out.labelled(
            "nym_directory_listed_nodes",
            Kind::Gauge,
            "Nodes the topology document lists now (unexpired), by role.",
            "role",
            &[("mixnode", mixnodes as u64), ("gateway", gateways as u64)],
        );
    })
}

fn render_rounds(out: &mut Exposition, rounds: &Rounds) {
    let c = &rounds.counters;
    out.counter(
        "nym_directory_rounds_completed_total",
        "Consensus rounds this authority computed a document for.",
        c.rounds_completed.load(Ordering::Relaxed),
    );
    let keys: Vec<String> = rounds.authorities().list().iter().map(|a| encode_key(&a.key)).collect();
    let received = c.votes_received();
    let labels: Vec<[(&str, &str); 1]> = keys.iter().map(|k| [("authority", k.as_str())]).collect();
    let series: Vec<(&[(&str, &str)], u64)> = labels.iter().zip(received).map(|(l, n)| (&l[..], n)).collect();
    out.family(
        "nym_directory_votes_received_total",
        Kind::Counter,
        "Votes accepted from each other authority (by its key).",
        &series,
    );
    let reasons: Vec<[(&str, &str); 1]> = PeerRefusal::ALL.iter().map(|r| [("reason", r.label())]).collect();
    let votes: Vec<(&[(&str, &str)], u64)> = reasons
        .iter()
        .zip(PeerRefusal::ALL)
        .map(|(l, r)| (&l[..], c.vote_refusals(r)))
        .collect();
    out.family(
        "nym_directory_vote_refusals_total",
        Kind::Counter,
        "Votes refused, by reason.",
        &votes,
    );
    let sigs: Vec<(&[(&str, &str)], u64)> = reasons
        .iter()
        .zip(PeerRefusal::ALL)
        .map(|(l, r)| (&l[..], c.signature_refusals(r)))
        .collect();
    out.family(
        "nym_directory_signature_refusals_total",
        Kind::Counter,
        "Round signatures refused or ignored, by reason (mismatch: over another document).",
        &sigs,
    );
    out.gauge(
        "nym_directory_signatures_latest",
        "Valid signatures (its own included) on the latest document this authority computed.",
        c.signatures_latest.load(Ordering::Relaxed),
    );
    out.counter(
        "nym_directory_signatures_collected_total",
        "Valid signatures collected on this authority's documents (its own included).",
        c.signatures_collected.load(Ordering::Relaxed),
    );
    out.counter(
        "nym_directory_documents_served_total",
        "Consensus documents served (GET /api/presence/topology).",
        c.documents_served.load(Ordering::Relaxed),
    );
    out.gauge(
        "nym_directory_served_round",
        "Round of the document served now (0: none with enough signatures yet).",
        c.served_round.load(Ordering::Relaxed),
    );
}

/// How often refused announcements are summed up in the log.
pub const FLOOD_LOG_EVERY: Duration = Duration::from_secs(10);

/// Logs, every [`FLOOD_LOG_EVERY`] in which announcements were refused,
/// one line with the counts by reason (never a line per request).
pub(crate) fn spawn_flood_log(counters: Arc<AnnouncementCounters>, cancel: CancellationToken) {
    tokio::spawn(async move {
        let snapshot = |c: &AnnouncementCounters| AnnounceRefusal::ALL.map(|r| c.refused_count(r));
        let mut last = snapshot(&counters);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(FLOOD_LOG_EVERY) => {}
                _ = cancel.cancelled() => return,
            }
            let now = snapshot(&counters);
            let parts: Vec<String> = AnnounceRefusal::ALL
                .iter()
                .zip(now.iter().zip(last.iter()))
                .filter(|(_, (n, l))| n > l)
                .map(|(r, (n, l))| format!("{} {}", n - l, r.label()))
                .collect();
            if !parts.is_empty() {
                tracing::warn!(
                    "refused announcements in the last {:?}: {} (nym_directory_announcements_total has them all)",
                    FLOOD_LOG_EVERY,
                    parts.join(", ")
                );
            }
            last = now;
        }
    });
}
