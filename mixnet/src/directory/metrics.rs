//! The directory's own metrics: announcements accepted and refused by
//! reason (counted here as the HTTP handlers decide), and the nodes listed.

use super::refusals::AnnounceRefusal;
use crate::metrics::{node_info, Exposition, Kind, Render};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

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
    listed: impl Fn() -> (usize, usize) + Send + Sync + 'static,
) -> Render {
    Arc::new(move |out: &mut Exposition| {
        node_info(out, "directory");
        let mut series: Vec<(&[(&str, &str)], u64)> = vec![(&[("result", "accepted")], counters.accepted_count())];
        let labels: Vec<[(&str, &str); 2]> =
            AnnounceRefusal::ALL.iter().map(|r| [("result", "refused"), ("reason", r.label())]).collect();
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
