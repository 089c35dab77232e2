//! End-to-end latency and throughput between two `nym-client` processes on an
//! in-process localnet, beside the raw Sphinx crypto bound.
//!
//! `cargo run --release -p nym-integration-tests --bin e2e-bench [-- MESSAGES MIB]`
//! (defaults: 200 latency messages, a 10 MiB transfer). Prints a markdown
//! section; every figure is measured in this run.
//!
//! `... --bin e2e-bench -- --quick`: a check that the benchmark still works,
//! as scripts/test.sh runs it: the same steps (crypto bound, both
//! configurations, latency probes, one binary transfer) with 3 messages and a
//! 512 KiB transfer (more packets than the client's 256 in flight, so acks
//! gate the sender), shorter timeouts; exits non-zero when any step fails.

use anyhow::{anyhow, bail, Result};
use nym_client_core::fuzzing::fragment::HEADER_LEN;
use nym_client_core::fuzzing::packet::build_sphinx_packet;
use nym_client_core::fuzzing::payload::body_capacity;
use nym_client_core::{PacketSize, Recipient};
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

/// What one run does.
struct Plan {
    /// `--quick`: a check that it works, not figures.
    quick: bool,
    messages: usize,
    /// Size of the one transfer.
    bytes: usize,
    /// Packets built and processed for the crypto bound.
    crypto_packets: usize,
    /// Longest wait for one latency probe and for the transfer.
    message_timeout: Duration,
    transfer_timeout: Duration,
}

impl Plan {
    /// `[--quick] [MESSAGES MIB]`
    fn from_args(args: &[String]) -> Result<Plan> {
        let quick = args.iter().any(|a| a == "--quick");
        let numbers: Vec<&String> = args.iter().filter(|a| *a != "--quick").collect();
        let number = |i: usize| -> Result<Option<usize>> {
            numbers
                .get(i)
                .map(|s| s.parse().map_err(|_| anyhow!("not a number: {s:?} (usage: e2e-bench [--quick] [MESSAGES MIB])")))
                .transpose()
        };
        let messages = number(0)?.unwrap_or(if quick { 3 } else { 200 });
        let bytes = match number(1)? {
            None if quick => 512 << 10,
            None => 10 << 20,
            Some(mib) => mib.checked_mul(1 << 20).ok_or_else(|| anyhow!("MIB too large: {mib}"))?,
        };
        if messages == 0 || bytes == 0 {
            bail!("MESSAGES and MIB must be at least 1");
        }
        Ok(if quick {
            Plan {
                quick,
                messages,
                bytes,
                crypto_packets: 10,
                message_timeout: Duration::from_secs(30),
                transfer_timeout: Duration::from_secs(120),
            }
        } else {
            Plan {
                quick,
                messages,
                bytes,
                crypto_packets: 300,
                message_timeout: Duration::from_secs(60),
                transfer_timeout: Duration::from_secs(900),
            }
        })
    }
}

/// "10 MiB", "512 KiB".
fn size(bytes: usize) -> String {
    if bytes % (1 << 20) == 0 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{} KiB", bytes.div_ceil(1024))
    }
}

async fn measure(dir: &str, label: &str, tweak: fn(&mut nym_client::config::Config), plan: &Plan) -> Result<Figures> {
    let mut alice = TestClient::init(dir, "alice", tweak)?;
    let mut bob = TestClient::init(dir, "bob", tweak)?;
    alice.start().await?;
    bob.start().await?;
    let mut a = alice.connect().await?;
    let mut b = bob.connect().await?;
    request(&mut b, &json!({"type": "selfAddress"})).await?;
    // Warm up: one message through.
    request(&mut a, &json!({"type": "send", "message": "warm-up", "recipient": bob.address})).await?;
    recv(&mut b, plan.message_timeout).await?;

    let mut lat = Vec::with_capacity(plan.messages);
    for i in 0..plan.messages {
        let body = format!("latency probe {i}");
        let t = Instant::now();
        let r = request(&mut a, &json!({"type": "send", "message": body, "recipient": bob.address})).await?;
        if r["type"] != "send" {
            bail!("send refused: {r}");
        }
        match recv(&mut b, plan.message_timeout).await? {
            Message::Text(got) if got.as_str() == body => lat.push(t.elapsed()),
            other => bail!("unexpected delivery {other:?}"),
        }
    }
    lat.sort();
    let mean = lat.iter().sum::<Duration>() / lat.len().max(1) as u32;
    eprintln!("[{label}] latency done: p50 {:?}", percentile(&lat, 50.0));

    let data = random_bytes(plan.bytes);
    let mut frame = binary_address(&bob.address)?;
    frame.extend_from_slice(&data);
    let t = Instant::now();
    let r = request_binary(&mut a, frame).await?;
    if r["type"] != "send" {
        bail!("send refused: {r}");
    }
    let got = recv(&mut b, plan.transfer_timeout).await?;
    let transfer = t.elapsed();
    match got {
        Message::Binary(m) if m.as_ref() == data.as_slice() => {}
        Message::Text(m) if m.as_bytes() == data.as_slice() => {}
        other => return Err(anyhow!("transfer arrived different ({} bytes)", other.len())),
    }
    eprintln!("[{label}] {} in {transfer:?}", size(plan.bytes));
    Ok(Figures { p50: percentile(&lat, 50.0), p99: percentile(&lat, 99.0), mean, transfer })
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let plan = Plan::from_args(&args)?;
    let quick = plan.quick;
    let (messages, transfer) = (plan.messages, size(plan.bytes));
    let mib = plan.bytes as f64 / (1 << 20) as f64;

    let (build, hop) = crypto_bound(plan.crypto_packets)?;
    let per_packet = build + hop * 4;
    let capacity = body_capacity(PacketSize::Regular) - HEADER_LEN;
    let packets = plan.bytes.div_ceil(capacity);
    eprintln!("crypto: build {build:?}, hop {hop:?}");

    let data = tempfile::tempdir()?;
    let net = start_localnet(data.path()).await?;
    let dir = net.directory_url();
    let fast_fig = measure(&dir, "no delay, no throttling", fast, &plan).await?;
    let default_fig = measure(&dir, "default rates", |_| {}, &plan).await?;
    net.shutdown().await;

    println!("## End-to-end latency and throughput (issue 4)\n");
    if quick {
        println!("(quick mode: a check that the benchmark works; sizes too small for figures to quote)\n");
    }
    let command = if quick { " -- --quick" } else { "" };
    println!("`cargo run --release -p nym-integration-tests --bin e2e-bench{command}` ({messages} messages, {transfer}; release build, 2 vCPU, loopback).");
    println!("Two `nym-client` processes (alice, bob, each on its own gateway or the same one, as init picked) on an in-process");
    println!("localnet (directory, 3x2 mixnodes, 2 gateways). Latency: alice's application sends a short text message to bob,");
    println!("timed from the websocket send to bob's application receiving it, one message at a time. Transfer: one {transfer} binary");
    println!("message (~{packets} Regular packets), from the send to bob receiving the whole message.\n");
    println!("| configuration | latency p50 | latency p99 | latency mean | {transfer} transfer | throughput |");
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
            mib / f.transfer.as_secs_f64()
        );
    }
    println!();
    println!(
        "Raw crypto bound, same run: building one Regular Sphinx packet {:.0} us, processing one hop {:.0} us, so one packet's build + 4 hops = {:.0} us \
         (the floor for one message's latency with no delays). For {transfer}, {packets} packets x {:.0} us = {:.2} s of crypto on one core, \
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
