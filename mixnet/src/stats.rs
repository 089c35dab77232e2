//! Per-node counters: atomics readable in-process (tests assert on them) and
//! printed as a periodic log line.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Default)]
pub struct NodeStats {
    /// Whole packets read from the mixnet listener (or from clients, at a gateway).
    pub received: AtomicU64,
    /// Packets written to the next hop's socket.
    pub forwarded: AtomicU64,
    /// Gateway: stored payloads the client acknowledged (then deleted).
    pub delivered: AtomicU64,
    /// Gateway: deliveries written to a client connection (again after a
    /// reconnect when unacknowledged).
    pub pushed: AtomicU64,
    /// Gateway: acknowledged ids that named nothing outstanding on that
    /// connection (duplicate, forged or late acks): ignored.
    pub bad_acks: AtomicU64,
    /// Gateway: payloads committed to the SQLite inbox.
    pub stored: AtomicU64,
    /// Bad frame flag, truncated frame, or a packet Sphinx refused.
    pub dropped_malformed: AtomicU64,
    pub dropped_replayed: AtomicU64,
    /// Next hop address undecodable, not allowed, or a forward hop at a gateway.
    pub dropped_no_route: AtomicU64,
    /// A next hop the node's verified topology does not list (mixnode: not
    /// a node of the next layer; gateway: a SURB-ACK's first hop that is not
    /// a layer-1 mixnode). Only counted when a directory is configured.
    pub dropped_unlisted_hop: AtomicU64,
    /// Gateway: destination never registered, or its inbox is full.
    pub dropped_unknown_client: AtomicU64,
    /// A per-peer (or delay) queue was full.
    pub dropped_queue_full: AtomicU64,
    /// Lost when a peer connection broke mid-write.
    pub dropped_peer_down: AtomicU64,
    /// Connections closed because their framing was corrupt.
    pub bad_connections: AtomicU64,
    /// Gateway: payloads not stored (so not acknowledged) because a bound
    /// was reached: messages or bytes per client, the disk budget.
    pub dropped_limit: AtomicU64,
    /// Gateway: client connections refused before authentication (too many
    /// unauthenticated at once, too many handshakes from one address, a
    /// handshake over its byte allowance, the registration rate or cap).
    pub refused_connections: AtomicU64,
    /// Gateway: stored messages deleted unread after the inbox expiry.
    pub expired: AtomicU64,
    /// A packet built for a key epoch the node does not hold (retired:
    /// older than the previous epoch; or beyond the next): dropped.
    pub dropped_retired_key: AtomicU64,
    /// The current key epoch (a gauge; docs/key-epochs.md).
    pub epoch: AtomicU64,
    /// Open connections by kind ([`Conn`]), kept by [`ConnectionGuard`]s.
    open: [AtomicU64; Conn::ALL.len()],
}

/// A kind of connection counted in [`NodeStats::open_connections`] (the
/// `kind` label of `nym_open_connections`, docs/metrics.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conn {
    /// Mixnet TCP connections accepted (packets from clients' gateways,
    /// mixnodes of the previous layer).
    MixIn,
    /// Connected TCP connections to next hops (the peer pool).
    PeerOut,
    /// Gateway: client websocket connections accepted past admission, in
    /// their handshake or authenticated.
    Client,
    /// Gateway: client connections that completed their handshake.
    ClientAuthenticated,
}

impl Conn {
    pub const ALL: [Conn; 4] = [Conn::MixIn, Conn::PeerOut, Conn::Client, Conn::ClientAuthenticated];

    /// The metric label value.
    pub fn label(self) -> &'static str {
        match self {
            Conn::MixIn => "mix_in",
            Conn::PeerOut => "peer_out",
            Conn::Client => "client",
            Conn::ClientAuthenticated => "client_authenticated",
        }
    }
}

/// Counts one open connection of its kind while it lives.
#[derive(Debug)]
pub struct ConnectionGuard {
    stats: Arc<NodeStats>,
    kind: Conn,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.stats.open[self.kind as usize].fetch_sub(1, Ordering::Relaxed);
    }
}

/// A plain copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub received: u64,
    pub forwarded: u64,
    pub delivered: u64,
    pub pushed: u64,
    pub bad_acks: u64,
    pub stored: u64,
    pub dropped_malformed: u64,
    pub dropped_replayed: u64,
    pub dropped_no_route: u64,
    pub dropped_unlisted_hop: u64,
    pub dropped_unknown_client: u64,
    pub dropped_queue_full: u64,
    pub dropped_peer_down: u64,
    pub bad_connections: u64,
    pub dropped_limit: u64,
    pub refused_connections: u64,
    pub expired: u64,
    pub dropped_retired_key: u64,
    pub epoch: u64,
}

pub(crate) fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl NodeStats {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            received: g(&self.received),
            forwarded: g(&self.forwarded),
            delivered: g(&self.delivered),
            pushed: g(&self.pushed),
            bad_acks: g(&self.bad_acks),
            stored: g(&self.stored),
            dropped_malformed: g(&self.dropped_malformed),
            dropped_replayed: g(&self.dropped_replayed),
            dropped_no_route: g(&self.dropped_no_route),
            dropped_unlisted_hop: g(&self.dropped_unlisted_hop),
            dropped_unknown_client: g(&self.dropped_unknown_client),
            dropped_queue_full: g(&self.dropped_queue_full),
            dropped_peer_down: g(&self.dropped_peer_down),
            bad_connections: g(&self.bad_connections),
            dropped_limit: g(&self.dropped_limit),
            refused_connections: g(&self.refused_connections),
            expired: g(&self.expired),
            dropped_retired_key: g(&self.dropped_retired_key),
            epoch: g(&self.epoch),
        }
    }

    /// Counts a connection of `kind` as open until the guard is dropped:
    /// `let _open = stats.open_connection(Conn::MixIn);` where it is accepted.
    pub fn open_connection(self: &Arc<Self>, kind: Conn) -> ConnectionGuard {
        self.open[kind as usize].fetch_add(1, Ordering::Relaxed);
        ConnectionGuard { stats: self.clone(), kind }
    }

    /// Connections of `kind` open now.
    pub fn open_connections(&self, kind: Conn) -> u64 {
        self.open[kind as usize].load(Ordering::Relaxed)
    }
}

impl fmt::Display for StatsSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "received={} forwarded={} delivered={} pushed={} bad_acks={} stored={} dropped: malformed={} replayed={} no_route={} unlisted_hop={} unknown_client={} queue_full={} peer_down={} limit={} retired_key={} bad_connections={} refused_connections={} expired={} epoch={}",
            self.received,
            self.forwarded,
            self.delivered,
            self.pushed,
            self.bad_acks,
            self.stored,
            self.dropped_malformed,
            self.dropped_replayed,
            self.dropped_no_route,
            self.dropped_unlisted_hop,
            self.dropped_unknown_client,
            self.dropped_queue_full,
            self.dropped_peer_down,
            self.dropped_limit,
            self.dropped_retired_key,
            self.bad_connections,
            self.refused_connections,
            self.expired,
            self.epoch
        )
    }
}

/// Logs the counters every `interval` while they change.
pub(crate) fn spawn_stats_logger(name: String, stats: Arc<NodeStats>, interval: Duration, cancel: CancellationToken) {
    tokio::spawn(async move {
        let mut last = StatsSnapshot::default();
        let mut tick = tokio::time::interval(interval.max(Duration::from_millis(100)));
        tick.tick().await;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tick.tick() => {
                    let now = stats.snapshot();
                    if now != last {
                        tracing::info!(node = %name, "stats: {now}");
                        last = now;
                    }
                }
            }
        }
    });
}
