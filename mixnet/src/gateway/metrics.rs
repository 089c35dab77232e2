//! A gateway's metrics: what every node with packets exports
//! ([`crate::node::metrics::packets`]) and its store: messages stored,
//! delivered, pushed and expired, refused connections, the inbox's size.

use super::inbox::InboxGauges;
use crate::metrics::{node_info, Exposition, Render};
use crate::node::metrics::packets;
use crate::stats::{Conn, NodeStats};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A gateway's metrics.
pub(crate) fn render(stats: Arc<NodeStats>, inbox: Arc<InboxGauges>) -> Render {
    Arc::new(move |out: &mut Exposition| {
        node_info(out, "gateway");
        let s = packets(out, &stats, &[Conn::MixIn, Conn::PeerOut, Conn::Client, Conn::ClientAuthenticated]);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::exposition::written::{assert_well_formed, value};
    use crate::node::metrics::tests::{assert_packets, counted};

    #[test]
    fn a_gateway_exposes_every_counter_as_it_is() {
        let stats = counted();
        let peer = stats.open_connection(Conn::PeerOut);
        let clients = [stats.open_connection(Conn::Client), stats.open_connection(Conn::Client)];
        let inbox = Arc::new(InboxGauges::default());
        inbox.bytes.store(999, Ordering::Relaxed);
        inbox.registered.store(2, Ordering::Relaxed);
        let mut out = Exposition::default();
        render(stats.clone(), inbox)(&mut out);
        let text = out.into_text();
        assert_well_formed(&text);
        assert_packets(&text);
        let info = format!("nym_node_info{{role=\"gateway\",version=\"{}\"}}", nym_wire::VERSION);
        assert_eq!(value(&text, &info), Some(1));
        assert_eq!(value(&text, "nym_packets_stored_total"), Some(13));
        assert_eq!(value(&text, "nym_packets_delivered_total"), Some(14));
        assert_eq!(value(&text, r#"nym_open_connections{kind="client"}"#), Some(2));
        assert_eq!(value(&text, "nym_gateway_inbox_bytes"), Some(999));
        assert_eq!(value(&text, "nym_gateway_registered_clients"), Some(2));
        assert_eq!(value(&text, "nym_mixnode_layer"), None, "mixnode-only");
        // the guards give their connections back
        drop(clients);
        drop(peer);
        assert_eq!((stats.open_connections(Conn::Client), stats.open_connections(Conn::PeerOut)), (0, 0));
    }
}
