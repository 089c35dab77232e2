//! A mixnode fed garbage, bad flags, truncated frames and replays counts them
//! and keeps forwarding good traffic; delays are honoured.

mod common;

use common::*;
use nym_mixnet::{Mixnode, MixnodeConfig};
use nym_wire::mix_frame::{PacketSize, FRAME_HEADER_LEN};
use sphinx_packet::packet::ProcessedPacketData;
use sphinx_packet::SphinxPacket;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use x25519_dalek::PublicKey;

const T: Duration = Duration::from_secs(10);

async fn mixnode(dir: &std::path::Path) -> Mixnode {
    let mut c = MixnodeConfig::new(1, dir);
    c.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    Mixnode::start(c).await.unwrap()
}

/// A packet that goes through the mixnode to the sink (a fake next hop).
fn good_frame(mix: &Mixnode, sink: &Sink, msg: &[u8], delay_ms: u64) -> Vec<u8> {
    let sink_key = PublicKey::from(&random_secret());
    let route = [node(mix.listen_addr(), mix.public_key()), node(sink.addr, sink_key)];
    build_frame(msg, &route, &sink_key, &[delay_ms, 0], mix.sphinx_keys().current_epoch())
}

/// What the mixnode sends on for `frame`: its packet, one layer peeled
/// (Sphinx processing is deterministic under the node's key).
fn next_hop_packet(mix: &Mixnode, frame: &[u8]) -> Vec<u8> {
    let keys = mix.sphinx_keys();
    let secret = keys.get(keys.current_epoch()).expect("the current key").secret.clone();
    let packet = SphinxPacket::from_bytes(&frame[FRAME_HEADER_LEN..]).expect("a Sphinx packet");
    match packet.process(&secret).expect("processed").data {
        ProcessedPacketData::ForwardHop { next_hop_packet, .. } => next_hop_packet.to_bytes(),
        ProcessedPacketData::FinalHop { .. } => panic!("a forward hop"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bad_flags_truncation_and_replays_are_counted_and_good_traffic_flows() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(true).await;
    let mix = mixnode(dir.path()).await;
    let stats = mix.stats();
    let addr = mix.listen_addr();

    // good traffic on one long-lived connection, interleaved with abuse on others
    let mut good = TcpStream::connect(addr).await.unwrap();
    let first = good_frame(&mix, &sink, b"one", 0);
    good.write_all(&first).await.unwrap();
    assert!(wait_until(T, || sink.count() == 1).await);

    // 1. unknown flag byte: counted, that connection is closed
    let mut bad = TcpStream::connect(addr).await.unwrap();
    bad.write_all(&[0xEE; 5000]).await.unwrap();
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(T, bad.read(&mut buf)).await.expect("closed in time");
    assert!(matches!(closed, Ok(0) | Err(_)), "connection with a bad flag is closed");
    assert!(wait_until(T, || stats.snapshot().bad_connections == 1).await);

    // 2. a well-framed packet of random bytes: Sphinx refuses it
    let mut junk = vec![PacketSize::Regular.flag()];
    junk.extend(mix.sphinx_keys().current_epoch().to_be_bytes());
    junk.extend((0..PacketSize::Regular.packet_len()).map(|i| (i * 7 + 3) as u8));
    send_tcp(addr, &junk).await;
    // 3. a truncated frame, then EOF
    send_tcp(addr, &first[..1000]).await;
    // 4. a replay of a packet already processed
    good.write_all(&first).await.unwrap();
    // 5. pure noise with a valid first flag on the good connection's sibling
    assert!(wait_until(T, || {
        let s = stats.snapshot();
        s.dropped_malformed >= 3 && s.dropped_replayed == 1
    })
    .await, "{}", stats.snapshot());

    // the good connection still works and the node keeps forwarding
    let msgs: Vec<Vec<u8>> = (0..50u8).map(|i| vec![i; 64]).collect();
    for m in &msgs {
        good.write_all(&good_frame(&mix, &sink, m, 0)).await.unwrap();
    }
    assert!(wait_until(T, || sink.count() == 51).await, "sink got {}", sink.count());
    let s = stats.snapshot();
    assert_eq!(s.forwarded, 51, "{s}");
    assert_eq!(s.dropped_replayed, 1, "{s}");
    assert_eq!(s.dropped_malformed, 3, "bad flag + junk packet + truncated: {s}");
    assert_eq!(s.bad_connections, 1, "{s}");
    let _ = first;
    // every forwarded packet is a valid next-hop Sphinx packet of the same size
    for p in sink.packets.lock().unwrap().iter() {
        assert_eq!(p.len(), PacketSize::Regular.packet_len());
    }
    mix.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delays_are_honoured_and_key_persists() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(true).await;
    let mix = mixnode(dir.path()).await;
    let key = mix.public_key();
    let (slow, fast) = (good_frame(&mix, &sink, b"slow", 300), good_frame(&mix, &sink, b"fast", 0));
    let start = Instant::now();
    let mut conn = TcpStream::connect(mix.listen_addr()).await.unwrap();
    conn.write_all(&slow).await.unwrap();
    conn.write_all(&fast).await.unwrap();
    assert!(wait_until(T, || sink.count() == 2).await, "sink got {}", sink.count());
    assert!(start.elapsed() >= Duration::from_millis(300), "the delayed packet waited");
    // sent second, out first: the undelayed packet did not wait behind the delayed one
    let out = sink.packets.lock().unwrap().clone();
    assert_eq!(out, [next_hop_packet(&mix, &fast), next_hop_packet(&mix, &slow)], "the undelayed packet came out first");
    mix.shutdown().await;

    // restart on the same data dir: same key (a clean stop kept it with its
    // replay filter); the key and filter files are 0600
    let mix = mixnode(dir.path()).await;
    assert_eq!(mix.public_key(), key);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let epoch = mix.sphinx_keys().current_epoch();
        let keys = dir.path().join(nym_mixnet::epochs::KEYS_DIR);
        for file in [format!("epoch-{epoch}.pem"), format!("epoch-{epoch}.replay")] {
            let mode = std::fs::metadata(keys.join(&file)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
    }
    mix.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_peer_fills_its_queue_and_drops_are_counted_then_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = MixnodeConfig::new(1, dir.path());
    c.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    c.peer_queue = 10;
    let mix = Mixnode::start(c).await.unwrap();
    // a port with nobody listening
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let dead_key = PublicKey::from(&random_secret());
    let route = [node(mix.listen_addr(), mix.public_key()), node(dead, dead_key)];
    let mut conn = TcpStream::connect(mix.listen_addr()).await.unwrap();
    for i in 0..30u8 {
        conn.write_all(&build_frame(&[i], &route, &dead_key, &[0, 0], mix.sphinx_keys().current_epoch())).await.unwrap();
    }
    let stats = mix.stats();
    assert!(wait_until(T, || stats.snapshot().dropped_queue_full >= 19).await, "{}", stats.snapshot());
    // other peers are unaffected
    let sink = Sink::start(false).await;
    conn.write_all(&good_frame(&mix, &sink, b"alive", 0)).await.unwrap();
    assert!(wait_until(T, || sink.count() == 1).await);
    mix.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_delayed_packets_all_come_out() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(false).await;
    let mix = mixnode(dir.path()).await;
    let sink_key = PublicKey::from(&random_secret());
    let route = [node(mix.listen_addr(), mix.public_key()), node(sink.addr, sink_key)];
    let mut bytes = Vec::new();
    for i in 0..2000u64 {
        bytes.extend(build_frame(&i.to_be_bytes(), &route, &sink_key, &[i % 97, 0], mix.sphinx_keys().current_epoch()));
    }
    let mut conn = TcpStream::connect(mix.listen_addr()).await.unwrap();
    conn.write_all(&bytes).await.unwrap();
    assert!(wait_until(T, || sink.count() == 2000).await, "sink got {}", sink.count());
    let s = mix.stats().snapshot();
    assert_eq!((s.received, s.forwarded, s.dropped_queue_full), (2000, 2000, 0), "{s}");
    mix.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_for_epochs_the_node_does_not_hold_are_dropped_as_retired() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(false).await;
    let mix = mixnode(dir.path()).await;
    let epoch = mix.sphinx_keys().current_epoch();
    assert_eq!(mix.sphinx_keys().epochs(), vec![epoch, epoch + 1], "a fresh node: this epoch's key and the next");
    let sink_key = PublicKey::from(&random_secret());
    let route = [node(mix.listen_addr(), mix.public_key()), node(sink.addr, sink_key)];
    let mut bytes = Vec::new();
    for e in [epoch - 2, epoch - 1, epoch + 2, u32::MAX] {
        bytes.extend(build_frame(b"old or unborn", &route, &sink_key, &[0, 0], e));
    }
    // the next epoch's key is held, but this packet was built with the
    // current key: it opens nothing under the next one
    bytes.extend(build_frame(b"wrong key", &route, &sink_key, &[0, 0], epoch + 1));
    bytes.extend(build_frame(b"good", &route, &sink_key, &[0, 0], epoch));
    send_tcp(mix.listen_addr(), &bytes).await;
    assert!(wait_until(T, || sink.count() == 1).await, "the good packet went on");
    let s = mix.stats().snapshot();
    assert_eq!(s.dropped_retired_key, 4, "{s}");
    assert_eq!(s.dropped_malformed, 1, "{s}");
    mix.shutdown().await;
}
