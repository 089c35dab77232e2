//! What mixnodes and gateways export alike: packets in, out and dropped by
//! reason, connections, the key epoch ([`packets`]); and a mixnode's whole
//! set, which is that and its layer. The gateway adds its inbox
//! (`crate::gateway::metrics`).

use crate::metrics::{node_info, Exposition, Kind, Render};
use crate::stats::{Conn, NodeStats, StatsSnapshot};
use std::sync::Arc;

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

/// What mixnodes and gateways share: packets in, out and dropped, connections, the key epoch.
pub(crate) fn packets(out: &mut Exposition, stats: &NodeStats, conns: &[Conn]) -> StatsSnapshot {
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
        node_info(out, "mixnode");
        out.gauge("nym_mixnode_layer", "The mixnode's layer (1 to 3).", u64::from(layer));
        packets(out, &stats, &[Conn::MixIn, Conn::PeerOut]);
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::metrics::exposition::written::{assert_well_formed, value};
    use std::sync::atomic::Ordering;

    /// Every drop counter at 100 + its index in DROP_REASONS, received 11,
    /// forwarded 12, stored 13, delivered 14, epoch 42.
    pub(crate) fn counted() -> Arc<NodeStats> {
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
        stats
    }

    /// What [`packets`] wrote into `text`, as `counted()` set it, with one
    /// peer connection open.
    pub(crate) fn assert_packets(text: &str) {
        for (i, reason) in DROP_REASONS.iter().enumerate() {
            let series = format!("nym_packets_dropped_total{{reason=\"{reason}\"}}");
            assert_eq!(value(text, &series), Some(100 + i as u64), "{reason}");
        }
        assert_eq!(value(text, "nym_packets_received_total"), Some(11));
        assert_eq!(value(text, "nym_packets_forwarded_total"), Some(12));
        assert_eq!(value(text, "nym_sphinx_key_epoch"), Some(42));
        assert_eq!(value(text, r#"nym_open_connections{kind="peer_out"}"#), Some(1));
        assert_eq!(value(text, r#"nym_open_connections{kind="mix_in"}"#), Some(0));
    }

    #[test]
    fn a_mixnode_exposes_every_counter_as_it_is() {
        let stats = counted();
        let peer = stats.open_connection(Conn::PeerOut);
        let mut out = Exposition::default();
        mixnode(stats.clone(), 2)(&mut out);
        let text = out.into_text();
        assert_well_formed(&text);
        assert_packets(&text);
        let info = format!("nym_node_info{{role=\"mixnode\",version=\"{}\"}}", nym_wire::VERSION);
        assert_eq!(value(&text, &info), Some(1));
        assert_eq!(value(&text, "nym_mixnode_layer"), Some(2));
        assert_eq!(value(&text, "nym_packets_stored_total"), None, "gateway-only");
        assert_eq!(
            value(&text, r#"nym_open_connections{kind="client"}"#),
            None,
            "gateway-only"
        );
        // the guard gives its connection back
        drop(peer);
        assert_eq!(stats.open_connections(Conn::PeerOut), 0);
    }
}
