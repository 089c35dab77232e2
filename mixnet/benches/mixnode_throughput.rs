//! Mixnode throughput vs raw Sphinx processing, measured in the same run.
//!
//! `cargo bench -p nym-mixnet --bench mixnode_throughput`
//! (env: BENCH_PACKETS, default 20000; BENCH_RAW, default 3000)
//!
//! Test mode (`cargo bench ... -- --test`, or `cargo test --bench ...`, as
//! with criterion): 200 and 50 packets, a 60 s deadline, the same checks.
//! Either way it fails unless exactly every packet comes out at the sink, as
//! whole frames of the wire crate's sizes (the sink decodes them with
//! `nym_wire::mix_frame::FrameDecoder`), and the node counted each one in and
//! out once.
//!
//! Pre-builds N packets (zero delays) routed mixnode -> sink, pushes them into
//! one in-process mixnode over one loopback TCP connection, and counts the
//! packets per second that come out at the sink; beside it, the rate of
//! `SphinxPacket::process()` on one core.

use nym_mixnet::{Mixnode, MixnodeConfig};
use nym_wire::epoch::KeyEpoch;
use nym_wire::mix_frame::{self, PacketSize};
use nym_wire::topology::encode_node_address;
use sphinx_packet::header::delays::Delay;
use sphinx_packet::packet::builder::SphinxPacketBuilder;
use sphinx_packet::route::{Destination, DestinationAddressBytes, Node};
use sphinx_packet::SphinxPacket;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use x25519_dalek::{PublicKey, StaticSecret};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn secret() -> StaticSecret {
    let mut b = [0u8; 32];
    rand::fill(&mut b);
    StaticSecret::from(b)
}

fn build_packets(n: usize, route: &[Node], dest: &PublicKey, epoch: KeyEpoch) -> Vec<Vec<u8>> {
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let per = n.div_ceil(threads);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let route = route.to_vec();
            let dest = *dest;
            let count = per.min(n.saturating_sub(t * per));
            std::thread::spawn(move || {
                let destination = Destination::new(DestinationAddressBytes::from_bytes(*dest.as_bytes()), [0; 16]);
                let delays = vec![Delay::new_from_nanos(0); route.len()];
                let builder = SphinxPacketBuilder::new().with_payload_size(PacketSize::Regular.sphinx_payload_size());
                (0..count)
                    .map(|i| {
                        let msg = (i as u64).to_be_bytes();
                        let p = builder.build_packet(msg, &route, &destination, &delays).expect("build");
                        mix_frame::encode(&p.to_bytes(), epoch).expect("frame")
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    handles.into_iter().flat_map(|h| h.join().expect("builder thread")).collect()
}

fn main() {
    // Like criterion: `cargo bench` passes `--bench`; `-- --test`, or no
    // `--bench` at all (`cargo test`), means run once, small, to check it works.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let test_mode = args.iter().any(|a| a == "--test") || !args.iter().any(|a| a == "--bench");
    let (n, raw_n, wait) = if test_mode {
        (env_usize("BENCH_PACKETS", 200), env_usize("BENCH_RAW", 50), Duration::from_secs(60))
    } else {
        (env_usize("BENCH_PACKETS", 20_000), env_usize("BENCH_RAW", 3_000), Duration::from_secs(300))
    };
    assert!(n > 0 && raw_n > 0, "BENCH_PACKETS and BENCH_RAW must be at least 1");
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(cores).enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");

    rt.block_on(async move {
        // sink: decodes the frames as a next hop would (sizes from the wire
        // crate) and counts whole packets; a stray byte fails the run
        let sink = TcpListener::bind("127.0.0.1:0").await.expect("sink");
        let sink_addr = sink.local_addr().expect("addr");
        let received = Arc::new(AtomicU64::new(0));
        let bad = Arc::new(AtomicU64::new(0));
        let (r, b) = (received.clone(), bad.clone());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = sink.accept().await {
                let (r, b) = (r.clone(), b.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 256 * 1024];
                    let mut frames = mix_frame::FrameDecoder::new();
                    while let Ok(k) = s.read(&mut buf).await {
                        if k == 0 {
                            break;
                        }
                        frames.push(&buf[..k]);
                        loop {
                            match frames.next_packet() {
                                Ok(Some(p)) if p.size == PacketSize::Regular => {
                                    r.fetch_add(1, Ordering::Relaxed);
                                }
                                Ok(Some(_)) | Err(_) => {
                                    b.fetch_add(1, Ordering::Relaxed);
                                    return;
                                }
                                Ok(None) => break,
                            }
                        }
                    }
                    if frames.pending() != 0 {
                        b.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });

        let mut config = MixnodeConfig::new(1, dir.path());
        config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.stats_interval = Duration::from_secs(3600);
        let node = Mixnode::start(config).await.expect("mixnode");
        let keys = node.sphinx_keys();
        let epoch = keys.current_epoch();
        let node_secret = keys.get(epoch).expect("the current key").secret.clone();
        let sink_key = PublicKey::from(&secret());
        let route = vec![
            Node::new(encode_node_address(node.listen_addr()), node.public_key()),
            Node::new(encode_node_address(sink_addr), sink_key),
        ];

        eprintln!("building {} packets ...", n + raw_n);
        let frames = tokio::task::spawn_blocking({
            let route = route.clone();
            move || build_packets(n + raw_n, &route, &sink_key, epoch)
        })
        .await
        .expect("build");
        let (raw_frames, frames) = frames.split_at(raw_n);

        // raw: SphinxPacket::process() on one core (parsing excluded)
        let packets: Vec<SphinxPacket> = raw_frames
            .iter()
            .map(|f| SphinxPacket::from_bytes(&f[mix_frame::FRAME_HEADER_LEN..]).expect("parse"))
            .collect();
        let t = Instant::now();
        for p in packets {
            std::hint::black_box(p.process(&node_secret).expect("process"));
        }
        let raw_secs = t.elapsed().as_secs_f64();
        let raw_rate = raw_n as f64 / raw_secs;

        // through the node
        let mut stream: Vec<u8> = Vec::with_capacity(frames.len() * PacketSize::Regular.frame_len());
        for f in frames {
            assert_eq!(f.len(), PacketSize::Regular.frame_len(), "a frame as the wire crate sizes it");
            stream.extend_from_slice(f);
        }
        let mut conn = TcpStream::connect(node.listen_addr()).await.expect("connect");
        conn.set_nodelay(true).expect("nodelay");
        let t = Instant::now();
        let writer = tokio::spawn(async move {
            for chunk in stream.chunks(64 * 1024) {
                conn.write_all(chunk).await.expect("write");
            }
            conn.flush().await.expect("flush");
            conn
        });
        let deadline = Instant::now() + wait;
        while received.load(Ordering::Relaxed) < n as u64
            && bad.load(Ordering::Relaxed) == 0
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let node_secs = t.elapsed().as_secs_f64();
        let got = received.load(Ordering::Relaxed);
        let _conn = writer.await.expect("writer");
        let node_rate = got as f64 / node_secs;
        let stats = node.stats();
        let s = stats.snapshot();

        println!("machine: {cores} cores ({})", std::env::consts::ARCH);
        println!("raw SphinxPacket::process(), 1 core: {raw_n} packets in {raw_secs:.3} s = {raw_rate:.0} packets/s");
        println!(
            "mixnode over loopback TCP: {got}/{n} packets forwarded in {node_secs:.3} s = {node_rate:.0} packets/s"
        );
        println!("ratio node/raw: {:.2}", node_rate / raw_rate);
        println!("node stats: {s}");
        node.shutdown().await;
        assert_eq!(got, n as u64, "the sink got {got} of {n} packets within {wait:?}");
        assert_eq!(bad.load(Ordering::Relaxed), 0, "the sink got bytes that are not whole regular frames");
        // counted once the node stopped: every packet in went out once, none dropped
        let s = stats.snapshot();
        assert_eq!((s.received, s.forwarded), (n as u64, n as u64), "node stats: {s}");
    });
}
