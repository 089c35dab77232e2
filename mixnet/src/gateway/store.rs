//! The store pipeline: a final-hop payload goes from a Sphinx worker into a
//! bounded queue, the writer thread commits whatever arrived meanwhile in
//! one SQLite transaction ([`super::inbox`]), and only then are the
//! SURB-ACKs sent and the messages handed to connected clients. Expired
//! messages and forgotten registrations are deleted periodically. [`Shared`]
//! is what the workers, the writer and the client sessions share.

use super::admission::Admission;
use super::inbox::{unix_now, Inbox, StoreResult};
use crate::node::trust::HopFilter;
use crate::pool::PeerPool;
use crate::stats::{inc, NodeStats};
use anyhow::Result;
use ed25519_dalek::SigningKey;
use nym_wire::address::encode_key;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

/// Final-hop payloads waiting for the inbox writer; past it they are dropped
/// unacknowledged (the senders retransmit).
pub(super) const STORE_QUEUE: usize = 8192;
/// Most payloads one inbox transaction commits.
const STORE_BATCH: usize = 512;

/// A connected client, as the inbox writer sees it.
pub(super) struct ClientSlot {
    pub(super) conn_id: u64,
    /// Freshly stored messages (inbox id, payload), in id order.
    pub(super) tx: mpsc::Sender<(i64, Vec<u8>)>,
    /// The channel was full once: nothing more goes into it until the
    /// connection has read the inbox again (so the ids it sees never skip).
    pub(super) overflowed: bool,
    pub(super) wake: Arc<Notify>,
}

/// A final-hop payload on its way to the inbox, with its SURB-ACK.
pub(super) struct Inbound {
    pub(super) destination: [u8; 32],
    pub(super) payload: Vec<u8>,
    pub(super) ack: Option<(SocketAddr, Vec<u8>)>,
}

pub(super) struct Inner {
    pub(super) inbox: Inbox,
    pub(super) clients: HashMap<[u8; 32], ClientSlot>,
}

pub(super) struct Shared {
    /// The store and the connected clients. A fair lock: under a flood of
    /// stores (the cover traffic of many clients) the writer thread takes it
    /// again right after every batch, and a connection waiting to read its
    /// inbox must not wait behind batch after batch.
    pub(super) inner: parking_lot::Mutex<Inner>,
    pub(super) store_queue: std::sync::mpsc::SyncSender<Inbound>,
    pub(super) stats: Arc<NodeStats>,
    pub(super) pool: Arc<PeerPool>,
    pub(super) identity: SigningKey,
    /// Layer-1 mixnodes of the last verified topology (with a directory).
    pub(super) first_hops: Option<Arc<HopFilter>>,
    pub(super) next_conn: AtomicU64,
    /// Bumped to drop every client connection at once (`cut_client_connections`).
    pub(super) cut: tokio::sync::watch::Sender<u64>,
    pub(super) max_client_message: usize,
    pub(super) admission: Admission,
}

impl Shared {
    pub(super) fn lock(&self) -> parking_lot::MutexGuard<'_, Inner> {
        self.inner.lock()
    }

    /// A final-hop payload (runs on a worker thread): to the inbox writer.
    pub(super) fn deliver(&self, inbound: Inbound) {
        if self.store_queue.try_send(inbound).is_err() {
            inc(&self.stats.dropped_queue_full);
        }
    }

    /// Stores a batch in one transaction; then, for what was stored, sends
    /// the SURB-ACKs and hands the messages to connected clients.
    pub(super) fn store_batch(&self, batch: Vec<Inbound>) {
        let mut inner = self.lock();
        let results = match inner.inbox.store_batch(batch.iter().map(|i| (&i.destination, i.payload.as_slice()))) {
            Ok(r) => r,
            Err(e) => {
                // Nothing stored and nothing acknowledged: the senders retransmit.
                tracing::error!("cannot store {} messages: {e:#}", batch.len());
                self.stats.dropped_queue_full.fetch_add(batch.len() as u64, Ordering::Relaxed);
                return;
            }
        };
        for (inbound, result) in batch.into_iter().zip(results) {
            let id = match result {
                StoreResult::Stored(id) => id,
                StoreResult::UnknownClient => {
                    inc(&self.stats.dropped_unknown_client);
                    continue;
                }
                StoreResult::OverLimit(which) => {
                    tracing::debug!("not stored for {}: {which} reached", encode_key(&inbound.destination));
                    inc(&self.stats.dropped_limit);
                    continue;
                }
            };
            inc(&self.stats.stored);
            // Durable now: the sender may hear so. Only via a layer-1 mixnode.
            if let Some((first_hop, frame)) = inbound.ack {
                if self.first_hops.as_ref().is_none_or(|h| h.allowed(&first_hop)) {
                    self.pool.send(first_hop, frame);
                } else {
                    inc(&self.stats.dropped_unlisted_hop);
                }
            }
            if let Some(slot) = inner.clients.get_mut(&inbound.destination) {
                if !slot.overflowed && slot.tx.try_send((id, inbound.payload)).is_err() {
                    slot.overflowed = true;
                    slot.wake.notify_one();
                }
            }
        }
        // The next batch is usually waiting already: let a connection that
        // waits for the store (to read its inbox) have it first.
        parking_lot::MutexGuard::unlock_fair(inner);
    }

    /// Checks a client's next hop: a layer-1 mixnode of the current verified
    /// topology (fetched again first if it is not listed).
    pub(super) async fn check_next_hop(&self, addr: &SocketAddr) -> Result<(), String> {
        let Some(hops) = &self.first_hops else { return Ok(()) };
        if hops.allowed(addr) {
            return Ok(());
        }
        hops.recheck(Instant::now()).await;
        if hops.allowed(addr) {
            return Ok(());
        }
        Err(format!("next hop {addr} is not a layer-1 mixnode"))
    }
}

/// Deletes expired messages and forgotten registrations, at start and then
/// every tenth of the expiry (at most hourly).
pub(super) async fn expire_periodically(shared: Arc<Shared>, expiry: Duration, cancel: CancellationToken) {
    let every = (expiry / 10).clamp(Duration::from_millis(200), Duration::from_secs(3600));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let shared = shared.clone();
        let done = tokio::task::spawn_blocking(move || {
            let mut inner = shared.lock();
            let connected: HashSet<[u8; 32]> = inner.clients.keys().copied().collect();
            let removed = inner.inbox.expire(unix_now(), &connected);
            if let Ok((messages, _)) = removed {
                shared.stats.expired.fetch_add(messages, Ordering::Relaxed);
            }
            removed
        })
        .await;
        match done {
            Ok(Ok((0, 0))) => {}
            Ok(Ok((messages, clients))) => {
                tracing::info!(
                    "expired {messages} stored messages and {clients} idle registrations (--inbox-expiry-secs)"
                )
            }
            Ok(Err(e)) => tracing::warn!("inbox expiry failed: {e:#}"),
            Err(e) => tracing::warn!("inbox expiry task failed: {e}"),
        }
    }
}

/// Stores what the workers hand over, in group commits, until cancelled.
pub(super) fn start_inbox_writer(
    shared: Arc<Shared>,
    rx: std::sync::mpsc::Receiver<Inbound>,
    cancel: CancellationToken,
) -> Result<std::thread::JoinHandle<()>> {
    let thread = std::thread::Builder::new().name("inbox-writer".into()).spawn(move || {
        while !cancel.is_cancelled() {
            let first = match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(first) => first,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
            };
            let mut batch = vec![first];
            while batch.len() < STORE_BATCH {
                match rx.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            shared.store_batch(batch);
        }
    })?;
    Ok(thread)
}
