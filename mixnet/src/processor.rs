//! Sphinx processing shared by mixnodes and gateways: connection readers feed
//! a small pool of worker threads (the CPU-heavy part), which hand results to
//! the node; delayed forward hops wait in one heap-driven delay task.

use crate::epochs::SphinxKeys;
use crate::pool::PeerPool;
use crate::stats::{inc, NodeStats};
use nym_wire::mix_frame::{self, FrameDecoder, MixPacket};
use nym_wire::surb_ack::gateway_final_hop;
use nym_wire::topology::decode_node_address;
use sphinx_packet::{ProcessedPacketData, SphinxPacket};
use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What a worker made of one packet.
pub(crate) enum Processed {
    Forward { addr: SocketAddr, frame: Vec<u8>, delay: Duration },
    /// For a client of this gateway: `deliver` goes to the client; `ack`
    /// (the SURB-ACK's packet, as a frame) goes on to its first hop.
    Final { destination: [u8; 32], deliver: Vec<u8>, ack: Option<(SocketAddr, Vec<u8>)> },
}

pub(crate) type Handler = Arc<dyn Fn(Processed) + Send + Sync>;

pub(crate) fn default_workers() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).max(1)
}

enum Rejected {
    Malformed,
    Replayed,
    NoRoute,
    /// Built for a key epoch the node does not hold (retired, or not yet).
    RetiredKey,
}

fn process_one(keys: &SphinxKeys, packet: MixPacket) -> Result<Processed, Rejected> {
    let key = keys.get(packet.epoch).ok_or(Rejected::RetiredKey)?;
    let epoch = packet.epoch;
    let packet = SphinxPacket::from_bytes(&packet.packet).map_err(|_| Rejected::Malformed)?;
    let expanded = packet.header.compute_expanded_shared_secret(&key.secret);
    let tag = *expanded.replay_tag();
    // Verify (MAC) before remembering the tag, so garbage cannot fill the filter.
    let processed = packet.process_with_expanded_secret(&expanded).map_err(|_| Rejected::Malformed)?;
    if !key.check_tag(tag) {
        return Err(Rejected::Replayed);
    }
    match processed.data {
        ProcessedPacketData::ForwardHop { next_hop_packet, next_hop_address, delay } => {
            let addr = decode_node_address(&next_hop_address).map_err(|_| Rejected::NoRoute)?;
            // every hop of a packet uses the same epoch's keys
            let frame = mix_frame::encode(&next_hop_packet.to_bytes(), epoch).map_err(|_| Rejected::Malformed)?;
            Ok(Processed::Forward { addr, frame, delay: delay.to_duration() })
        }
        ProcessedPacketData::FinalHop { destination, identifier, payload } => {
            let (deliver, ack) = gateway_final_hop(identifier, payload, epoch).map_err(|_| Rejected::Malformed)?;
            // A SURB-ACK with a nonsense address is dropped; the message still arrives.
            let ack = ack.and_then(|(first_hop, frame)| Some((decode_node_address(&first_hop).ok()?, frame)));
            Ok(Processed::Final { destination: destination.as_bytes(), deliver, ack })
        }
    }
}

/// Starts `n` worker threads; returns the queue to feed framed packets into.
pub(crate) fn start_workers(
    n: usize,
    keys: Arc<SphinxKeys>,
    stats: Arc<NodeStats>,
    handler: Handler,
    cancel: CancellationToken,
) -> (flume::Sender<MixPacket>, Vec<std::thread::JoinHandle<()>>) {
    let (tx, rx) = flume::bounded::<MixPacket>(4096);
    let mut threads = Vec::new();
    for i in 0..n.max(1) {
        let (rx, keys, stats, handler, cancel) = (rx.clone(), keys.clone(), stats.clone(), handler.clone(), cancel.clone());
        let spawned = std::thread::Builder::new().name(format!("sphinx-{i}")).spawn(move || loop {
            if cancel.is_cancelled() {
                break;
            }
            let packet = match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(p) => p,
                Err(flume::RecvTimeoutError::Timeout) => continue,
                Err(flume::RecvTimeoutError::Disconnected) => break,
            };
            match process_one(&keys, packet) {
                Ok(out) => handler(out),
                Err(Rejected::Malformed) => inc(&stats.dropped_malformed),
                Err(Rejected::Replayed) => inc(&stats.dropped_replayed),
                Err(Rejected::NoRoute) => inc(&stats.dropped_no_route),
                Err(Rejected::RetiredKey) => inc(&stats.dropped_retired_key),
            }
        });
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => tracing::error!("cannot spawn sphinx worker: {e}"),
        }
    }
    (tx, threads)
}

/// Accepts mixnet connections until cancelled; each connection's packets go to `jobs`.
pub(crate) async fn serve_mix_listener(
    listener: TcpListener,
    jobs: flume::Sender<MixPacket>,
    stats: Arc<NodeStats>,
    cancel: CancellationToken,
) {
    crate::listener::accept_until_cancelled(listener, &cancel.clone(), "accept failed", |stream, peer| {
        tracing::debug!("mixnet connection from {peer}");
        tokio::spawn(read_mix_connection(stream, jobs.clone(), stats.clone(), cancel.clone()));
    })
    .await
}

async fn read_mix_connection(mut stream: TcpStream, jobs: flume::Sender<MixPacket>, stats: Arc<NodeStats>, cancel: CancellationToken) {
    let _open = stats.open_connection(crate::stats::Conn::MixIn);
    let _ = stream.set_nodelay(true);
    let mut decoder = FrameDecoder::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let read = tokio::select! {
            _ = cancel.cancelled() => return,
            r = stream.read(&mut buf) => r,
        };
        match read {
            Ok(0) | Err(_) => {
                if decoder.pending() > 0 {
                    // a truncated frame at EOF
                    inc(&stats.dropped_malformed);
                }
                return;
            }
            Ok(n) => decoder.push(&buf[..n]),
        }
        loop {
            match decoder.next_packet() {
                Ok(Some(packet)) => {
                    inc(&stats.received);
                    if jobs.send_async(packet).await.is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!("closing mixnet connection: {e}");
                    inc(&stats.dropped_malformed);
                    inc(&stats.bad_connections);
                    return;
                }
            }
        }
    }
}

struct Delayed {
    at: Instant,
    seq: u64,
    addr: SocketAddr,
    frame: Vec<u8>,
}

impl PartialEq for Delayed {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Delayed {}
impl PartialOrd for Delayed {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Delayed {
    // reversed: BinaryHeap is a max-heap, we want the earliest first
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

pub(crate) const MAX_DELAYED: usize = 500_000;

/// The single delay queue of a node: one task, one heap, one timer.
pub(crate) fn spawn_delay_queue(pool: Arc<PeerPool>, stats: Arc<NodeStats>, cancel: CancellationToken) -> mpsc::Sender<(Instant, SocketAddr, Vec<u8>)> {
    let (tx, mut rx) = mpsc::channel::<(Instant, SocketAddr, Vec<u8>)>(8192);
    tokio::spawn(async move {
        let mut heap: BinaryHeap<Delayed> = BinaryHeap::new();
        let mut seq = 0u64;
        loop {
            let next = heap.peek().map(|d| d.at);
            tokio::select! {
                _ = cancel.cancelled() => return,
                item = rx.recv() => match item {
                    Some((at, addr, frame)) => {
                        if heap.len() >= MAX_DELAYED {
                            inc(&stats.dropped_queue_full);
                        } else {
                            seq += 1;
                            heap.push(Delayed { at, seq, addr, frame });
                        }
                    }
                    None => return,
                },
                _ = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {}
            }
            let now = Instant::now();
            while heap.peek().is_some_and(|d| d.at <= now) {
                if let Some(d) = heap.pop() {
                    pool.send(d.addr, d.frame);
                }
            }
        }
    });
    tx
}

/// Sends a forward hop now, or through the delay queue.
pub(crate) fn forward(
    pool: &PeerPool,
    delays: &mpsc::Sender<(Instant, SocketAddr, Vec<u8>)>,
    stats: &NodeStats,
    addr: SocketAddr,
    frame: Vec<u8>,
    delay: Duration,
) {
    if delay.is_zero() {
        pool.send(addr, frame);
    } else if delays.try_send((Instant::now() + delay.min(Duration::from_secs(3600)), addr, frame)).is_err() {
        inc(&stats.dropped_queue_full);
    }
}
