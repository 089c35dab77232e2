//! End-to-end latency and throughput between two `nym-client` processes on an
//! in-process localnet, beside the raw Sphinx crypto bound.
//!
//! `cargo run --release -p nym-integration-tests --bin e2e-bench [-- MESSAGES MIB]`
//! (defaults: 200 latency messages, a 10 MiB transfer). Prints a markdown
//! section; every figure is measured in this run.

use anyhow::{anyhow, bail, Result};
use nym_client_core::client::build_sphinx_packet;
use nym_client_core::wire::mix_frame::PacketSize;
use nym_client_core::Recipient;
use nym_integration_tests::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::json;
use sphinx_packet::packet::ProcessedPacketData;
use sphinx_packet::route::{Node, NodeAddressBytes};
use sphinx_packet::SphinxPacket;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use x25519_dalek::{PublicKey, StaticSecret};

struct Figures {
    p50: Duration,
    p99: Duration,
    mean: Duration,
    transfer: Duration,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Mean time to build one packet and to process one hop, over `n` packets.
fn crypto_bound(n: usize) -> Result<(Duration, Duration)> {
    let mut rng = StdRng::from_seed([5; 32]);
    let secrets: Vec<StaticSecret> = (0..4).map(|_| StaticSecret::random_from_rng(&mut rng)).collect();
    let route: Vec<Node> = secrets
        .iter()
        .enumerate()
        .map(|(i, s)| Node::new(NodeAddressBytes::from_bytes([i as u8; 32]), PublicKey::from(s)))
        .collect();
    let recipient = Recipient::new([1; 32], [2; 32]);
    let size = PacketSize::Regular;
    let payload = vec![0x5Au8; size.plaintext_size()];
    let mut build = Duration::ZERO;
    let mut process = Duration::ZERO;
    for _ in 0..n {
        let t = Instant::now();
        let (mut bytes, _) = build_sphinx_packet(&mut rng, &route, &recipient, &payload, Duration::ZERO, size)?;
        build += t.elapsed();
        let t = Instant::now();
        for s in &secrets {
            let processed = SphinxPacket::from_bytes(&bytes)?.process(s)?;
            match processed.data {
                ProcessedPacketData::ForwardHop { next_hop_packet, .. } => bytes = next_hop_packet.to_bytes(),
                ProcessedPacketData::FinalHop { .. } => break,
            }
        }
        process += t.elapsed();
    }
    Ok((build / n as u32, process / (4 * n) as u32))
}

async fn measure(dir: &str, label: &str, tweak: fn(&mut nym_client::config::Config), messages: usize, mib: usize) -> Result<Figures> {
    let mut alice = TestClient::init(dir, "alice", tweak)?;
    let mut bob = TestClient::init(dir, "bob", tweak)?;
    alice.start().await?;
    bob.start().await?;
    let mut a = alice.connect().await?;
    let mut b = bob.connect().await?;
    request(&mut b, &json!({"type": "selfAddress"})).await?;
    // Warm up: one message through.
    request(&mut a, &json!({"type": "send", "message": "warm-up", "recipient": bob.address})).await?;
    recv(&mut b, Duration::from_secs(60)).await?;

    let mut lat = Vec::with_capacity(messages);
    for i in 0..messages {
        let body = format!("latency probe {i}");
        let t = Instant::now();
        let r = request(&mut a, &json!({"type": "send", "message": body, "recipient": bob.address})).await?;
        if r["type"] != "send" {
            bail!("send refused: {r}");
        }
        match recv(&mut b, Duration::from_secs(60)).await? {
            Message::Text(got) if got.as_str() == body => lat.push(t.elapsed()),
            other => bail!("unexpected delivery {other:?}"),
        }
    }
    lat.sort();
    let mean = lat.iter().sum::<Duration>() / lat.len().max(1) as u32;
    eprintln!("[{label}] latency done: p50 {:?}", percentile(&lat, 50.0));

    let data = random_bytes(mib * 1024 * 1024);
    let mut frame = binary_address(&bob.address)?;
    frame.extend_from_slice(&data);
    let t = Instant::now();
    let r = request_binary(&mut a, frame).await?;
    if r["type"] != "send" {
        bail!("send refused: {r}");
    }
    let got = recv(&mut b, Duration::from_secs(900)).await?;
    let transfer = t.elapsed();
    match got {
        Message::Binary(m) if m.as_ref() == data.as_slice() => {}
        Message::Text(m) if m.as_bytes() == data.as_slice() => {}
        other => return Err(anyhow!("transfer arrived different ({} bytes)", other.len())),
    }
    eprintln!("[{label}] {mib} MiB in {transfer:?}");
    Ok(Figures { p50: percentile(&lat, 50.0), p99: percentile(&lat, 99.0), mean, transfer })
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let messages: usize = args.first().and_then(|s| s.parse().ok()).unwrap_or(200);
    let mib: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10);

    let (build, hop) = crypto_bound(300)?;
    let per_packet = build + hop * 4;
    let capacity = nym_client_core::payload::body_capacity(PacketSize::Regular) - nym_client_core::fragment::HEADER_LEN;
    let packets = (mib * 1024 * 1024).div_ceil(capacity);
    eprintln!("crypto: build {build:?}, hop {hop:?}");

    let data = tempfile::tempdir()?;
    let net = start_localnet(data.path()).await?;
    let dir = net.directory_url();
    let fast_fig = measure(&dir, "no delay, no throttling", fast, messages, mib).await?;
    let default_fig = measure(&dir, "default rates", |_| {}, messages, mib).await?;
    net.shutdown().await;

    println!("## End-to-end latency and throughput (issue 4)\n");
    println!("`cargo run --release -p nym-integration-tests --bin e2e-bench` ({messages} messages, {mib} MiB; release build, 2 vCPU, loopback).");
    println!("Two `nym-client` processes (alice, bob, each on its own gateway or the same one, as init picked) on an in-process");
    println!("localnet (directory, 3x2 mixnodes, 2 gateways). Latency: alice's application sends a short text message to bob,");
    println!("timed from the websocket send to bob's application receiving it, one message at a time. Transfer: one {mib} MiB binary");
    println!("message (~{packets} Regular packets), from the send to bob receiving the whole message.\n");
    println!("| configuration | latency p50 | latency p99 | latency mean | {mib} MiB transfer | throughput |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for (name, f) in [
        ("(a) average_hop_delay = 0, average_packet_delay = 0 (no throttling), loop cover 200 ms", &fast_fig),
        ("(b) defaults: hop delay 15 ms, packet delay 20 ms, loop cover 200 ms", &default_fig),
    ] {
        println!(
            "| {name} | {} | {} | {} | {:.2} s | {:.2} MiB/s |",
            ms(f.p50),
            ms(f.p99),
            ms(f.mean),
            f.transfer.as_secs_f64(),
            mib as f64 / f.transfer.as_secs_f64()
        );
    }
    println!();
    println!(
        "Raw crypto bound, same run: building one Regular Sphinx packet {:.0} us, processing one hop {:.0} us, so one packet's build + 4 hops = {:.0} us \
         (the floor for one message's latency with no delays). For {mib} MiB, {packets} packets x {:.0} us = {:.2} s of crypto on one core, \
         {:.2} s spread over this machine's 2 cores.",
        build.as_secs_f64() * 1e6,
        hop.as_secs_f64() * 1e6,
        per_packet.as_secs_f64() * 1e6,
        per_packet.as_secs_f64() * 1e6,
        per_packet.as_secs_f64() * packets as f64,
        per_packet.as_secs_f64() * packets as f64 / 2.0
    );
    Ok(())
}
