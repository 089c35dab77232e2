//! One persistent TCP connection per next hop: a bounded queue per peer and a
//! writer task that (re)connects with backoff. When a peer is down its queue
//! fills and further packets for it are dropped and counted.

use crate::stats::{inc, Conn, NodeStats};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio_util::sync::CancellationToken;

pub const DEFAULT_PEER_QUEUE: usize = 10_000;
const MAX_BACKOFF: Duration = Duration::from_secs(1);
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const GIVE_UP_AFTER: Duration = Duration::from_secs(60);

pub struct PeerPool {
    peers: Mutex<HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>>,
    stats: Arc<NodeStats>,
    queue: usize,
    runtime: tokio::runtime::Handle,
    cancel: CancellationToken,
}

impl PeerPool {
    /// Must be called inside a tokio runtime; writer tasks run on it.
    pub fn new(stats: Arc<NodeStats>, queue: usize, cancel: CancellationToken) -> Arc<Self> {
        Arc::new(PeerPool {
            peers: Mutex::default(),
            stats,
            queue: queue.max(1),
            runtime: tokio::runtime::Handle::current(),
            cancel,
        })
    }

    fn spawn_writer(&self, addr: SocketAddr) -> mpsc::Sender<Vec<u8>> {
        let (tx, rx) = mpsc::channel(self.queue);
        self.runtime.spawn(writer(addr, rx, self.stats.clone(), self.cancel.clone()));
        tx
    }

    /// Queues a whole mix frame for `addr`; never blocks (callable from any thread).
    pub fn send(&self, addr: SocketAddr, frame: Vec<u8>) {
        if self.cancel.is_cancelled() {
            return;
        }
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        let tx = peers.entry(addr).or_insert_with(|| self.spawn_writer(addr));
        match tx.try_send(frame) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => inc(&self.stats.dropped_queue_full),
            Err(TrySendError::Closed(frame)) => {
                let tx = self.spawn_writer(addr);
                if tx.try_send(frame).is_err() {
                    inc(&self.stats.dropped_queue_full);
                }
                peers.insert(addr, tx);
            }
        }
    }
}

async fn writer(addr: SocketAddr, mut rx: mpsc::Receiver<Vec<u8>>, stats: Arc<NodeStats>, cancel: CancellationToken) {
    let mut backoff = MIN_BACKOFF;
    let mut failing_since: Option<std::time::Instant> = None;
    loop {
        // A peer unreachable for long gives up its task (and queue); the pool
        // starts a new writer if packets for it come again.
        if failing_since.is_some_and(|t| t.elapsed() > GIVE_UP_AFTER) {
            rx.close();
            while rx.try_recv().is_ok() {
                inc(&stats.dropped_peer_down);
            }
            tracing::debug!("giving up on peer {addr}");
            return;
        }
        let connect = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr));
        let stream = tokio::select! {
            _ = cancel.cancelled() => return,
            r = connect => r,
        };
        let stream = match stream {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                failing_since.get_or_insert_with(std::time::Instant::now);
                tracing::debug!("cannot connect to {addr}: {e}; retrying in {backoff:?}");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
            Err(_) => {
                failing_since.get_or_insert_with(std::time::Instant::now);
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        backoff = MIN_BACKOFF;
        failing_since = None;
        let _ = stream.set_nodelay(true);
        let _open = stats.open_connection(Conn::PeerOut);
        tracing::debug!("connected to peer {addr}");
        // Peers never send on this connection: a readable read half means it closed.
        let (mut rd, wr) = stream.into_split();
        let mut probe = [0u8; 64];
        let mut w = BufWriter::with_capacity(64 * 1024, wr);
        'conn: loop {
            let frame = tokio::select! {
                _ = cancel.cancelled() => return,
                r = rd.read(&mut probe) => match r {
                    Ok(0) | Err(_) => break 'conn,
                    Ok(_) => continue,
                },
                f = rx.recv() => match f { Some(f) => f, None => return },
            };
            if w.write_all(&frame).await.is_err() {
                inc(&stats.dropped_peer_down);
                break 'conn;
            }
            inc(&stats.forwarded);
            // Batch whatever else is already queued before flushing.
            for _ in 0..64 {
                let Ok(frame) = rx.try_recv() else { break };
                if w.write_all(&frame).await.is_err() {
                    inc(&stats.dropped_peer_down);
                    break 'conn;
                }
                inc(&stats.forwarded);
            }
            if w.flush().await.is_err() {
                break 'conn;
            }
        }
        tracing::debug!("lost connection to peer {addr}; reconnecting");
    }
}
