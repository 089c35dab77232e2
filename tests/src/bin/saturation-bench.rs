//! Saturation: N `nym-client` processes at default rates (Poisson sending,
//! cover traffic, mixing delays) on one in-process localnet, for N from 1 to
//! past the point this machine saturates. Per N: how long an application
//! waits for a `selfAddress` answer (p50, p99, max), messages lost, failure
//! reports for messages that were in fact delivered, and what the nodes
//! dropped for full queues.
//!
//! `cargo run --release -p nym-integration-tests --bin saturation-bench [-- N,N,... SECONDS]`
//! (defaults: N = 1,4,8,16,24,32 for 20 s each). Prints a markdown section;
//! every figure is measured in this run.
//!
//! `... -- --quick`: a check that the benchmark works, as scripts/test.sh runs
//! it: N = 1,2 for 3 s each; exits non-zero when a step fails. Both modes
//! check the same things, exactly: every client answers, something was sent,
//! and each client received only messages sent to it.
//!
//! Each client sends one text message a second to the next client (a ring)
//! and asks `selfAddress` every 250 ms on the same connection, reading what
//! is pushed in between. After the sending time, every client gets a grace
//! period for what is still on its way; a message not received by then is
//! lost. A failure report (`… could not be delivered …`) is false when the
//! sender's messages all arrived: per sender, false reports are its reports
//! beyond its lost messages.

use anyhow::{anyhow, bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use nym_integration_tests::*;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

struct Plan {
    quick: bool,
    sizes: Vec<usize>,
    sending: Duration,
    grace: Duration,
}

impl Plan {
    fn from_args(args: &[String]) -> Result<Plan> {
        let quick = args.iter().any(|a| a == "--quick");
        let rest: Vec<&String> = args.iter().filter(|a| *a != "--quick").collect();
        let usage = "usage: saturation-bench [--quick] [N,N,... SECONDS]";
        let sizes = match rest.first() {
            Some(list) => list
                .split(',')
                .map(|n| n.trim().parse::<usize>().ok().filter(|n| *n >= 1))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| anyhow!("bad client counts {list:?} ({usage})"))?,
            None if quick => vec![1, 2],
            None => vec![1, 4, 8, 16, 24, 32],
        };
        let secs = match rest.get(1) {
            Some(s) => s.parse::<u64>().ok().filter(|s| *s >= 1).ok_or_else(|| anyhow!("bad SECONDS {s:?} ({usage})"))?,
            None if quick => 3,
            None => 20,
        };
        let grace = Duration::from_secs(if quick { 30 } else { 90 });
        Ok(Plan { quick, sizes, sending: Duration::from_secs(secs), grace })
    }
}

/// What one client saw.
#[derive(Default)]
struct Seen {
    probes: Vec<Duration>,
    sent: u64,
    /// Message bodies received (from the previous client in the ring).
    received: HashSet<String>,
    failure_reports: u64,
    refused_sends: u64,
}

fn is_failure_report(v: &Value) -> bool {
    v["type"] == "error" && v["message"].as_str().is_some_and(|m| m.contains("could not be delivered"))
}

/// Reads one frame: a message body (recorded), a failure report (counted),
/// or an answer (returned).
async fn read_one(ws: &mut Ws, seen: &mut Seen, timeout: Duration) -> Result<Option<Value>> {
    let frame = match tokio::time::timeout(timeout, ws.next()).await {
        Err(_) => return Ok(None),
        Ok(None) => bail!("the client closed the websocket"),
        Ok(Some(frame)) => frame.context("websocket")?,
    };
    let Message::Text(text) = frame else { return Ok(None) };
    if text.starts_with("m|") {
        seen.received.insert(text.to_string());
        return Ok(None);
    }
    let v: Value = serde_json::from_str(&text).with_context(|| format!("not JSON: {text}"))?;
    if is_failure_report(&v) {
        seen.failure_reports += 1;
        return Ok(None);
    }
    Ok(Some(v))
}

/// Sends `request` and reads until its answer (of type `want`, or an error).
async fn ask(ws: &mut Ws, seen: &mut Seen, request: &Value, want: &str) -> Result<Value> {
    ws.send(Message::text(request.to_string())).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("no answer to {request} within 120 s");
        }
        if let Some(v) = read_one(ws, seen, left).await? {
            if v["type"] == want || v["type"] == "error" {
                return Ok(v);
            }
        }
    }
}

/// How many messages each client sent, once it stopped sending.
type SentCounts = Arc<Vec<AtomicU64>>;
const STILL_SENDING: u64 = u64::MAX;

/// One client's part: a message a second to `next`, `selfAddress` every
/// 250 ms, until `until`; then reading until everything the previous client
/// sent arrived, or `grace` passed.
async fn drive(mut ws: Ws, me: usize, next: String, until: Instant, grace: Duration, counts: SentCounts) -> Result<Seen> {
    let mut seen = Seen::default();
    let mut send_tick = tokio::time::interval(Duration::from_secs(1));
    let mut probe_tick = tokio::time::interval(Duration::from_millis(250));
    while Instant::now() < until {
        tokio::select! {
            _ = send_tick.tick() => {
                let body = format!("m|{me}|{}", seen.sent);
                let answer = ask(&mut ws, &mut seen, &json!({"type": "send", "message": body, "recipient": next}), "send").await?;
                if answer["type"] == "send" { seen.sent += 1 } else { seen.refused_sends += 1 }
            }
            _ = probe_tick.tick() => {
                let t = Instant::now();
                let answer = ask(&mut ws, &mut seen, &json!({"type": "selfAddress"}), "selfAddress").await?;
                if answer["type"] != "selfAddress" {
                    bail!("selfAddress answered {answer}");
                }
                seen.probes.push(t.elapsed());
            }
            r = read_one(&mut ws, &mut seen, Duration::from_millis(50)) => { r?; }
        }
    }
    counts[me].store(seen.sent, Ordering::SeqCst);
    let previous = (me + counts.len() - 1) % counts.len();
    let end = Instant::now() + grace;
    while Instant::now() < end {
        let want = counts[previous].load(Ordering::SeqCst);
        if want != STILL_SENDING && seen.received.len() as u64 >= want {
            break;
        }
        read_one(&mut ws, &mut seen, Duration::from_millis(200)).await?;
    }
    // Failure reports may trail the last delivery: a short look more.
    let tail = Instant::now() + Duration::from_secs(2);
    while Instant::now() < tail {
        read_one(&mut ws, &mut seen, tail.saturating_duration_since(Instant::now())).await?;
    }
    Ok(seen)
}

struct Row {
    n: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
    sent: u64,
    lost: u64,
    failure_reports: u64,
    false_reports: u64,
    node_queue_drops: u64,
}

async fn run(net: &nym_mixnet::localnet::Localnet, n: usize, plan: &Plan) -> Result<Row> {
    let dir = net.directory_url();
    let drops_before = node_queue_drops(net);
    let mut clients = Vec::with_capacity(n);
    for i in 0..n {
        // Default rates: nothing tweaked.
        clients.push(TestClient::init(&dir, &format!("n{n}-c{i}"), |_| {})?);
    }
    for c in &mut clients {
        c.start().await?;
    }
    let mut sockets = Vec::with_capacity(n);
    for c in &clients {
        let mut ws = c.connect().await?;
        request(&mut ws, &json!({"type": "selfAddress"})).await?;
        sockets.push(ws);
    }
    let until = Instant::now() + plan.sending;
    let counts: SentCounts = Arc::new((0..n).map(|_| AtomicU64::new(STILL_SENDING)).collect());
    let mut tasks = Vec::new();
    for (i, ws) in sockets.into_iter().enumerate() {
        let next = clients[(i + 1) % n].address.clone();
        tasks.push(tokio::spawn(drive(ws, i, next, until, plan.grace, counts.clone())));
    }
    let mut seen = Vec::new();
    for t in tasks {
        seen.push(t.await.map_err(|e| anyhow!("{e}"))??);
    }
    let mut probes: Vec<Duration> = seen.iter().flat_map(|s| s.probes.iter().copied()).collect();
    probes.sort();
    let (mut sent, mut lost, mut reports, mut false_reports) = (0, 0, 0, 0);
    for (i, s) in seen.iter().enumerate() {
        let receiver = &seen[(i + 1) % n];
        let arrived = (0..s.sent).filter(|k| receiver.received.contains(&format!("m|{i}|{k}"))).count() as u64;
        // Exact in every mode: what arrived is what was sent, no more.
        if receiver.received.len() as u64 != arrived {
            bail!("N={n}: client {} received {} messages, {arrived} of them sent to it", (i + 1) % n, receiver.received.len());
        }
        let lost_i = s.sent - arrived;
        sent += s.sent;
        lost += lost_i;
        reports += s.failure_reports;
        false_reports += s.failure_reports.saturating_sub(lost_i);
        if s.refused_sends > 0 {
            eprintln!("[N={n}] client {i}: {} sends refused", s.refused_sends);
        }
        if lost_i > 0 && lost == lost_i {
            // The first sender with losses: what its client and the receiver's logged.
            for (who, c) in [("sender", &clients[i]), ("receiver", &clients[(i + 1) % n])] {
                let log = c.log();
                let tail: Vec<&str> = log.lines().rev().take(12).collect();
                eprintln!("[N={n}] {who} {} lost {lost_i} of {}; its log ends:", c.id, s.sent);
                for line in tail.iter().rev() {
                    eprintln!("    {line}");
                }
            }
        }
    }
    for c in &mut clients {
        c.stop();
    }
    if sent == 0 {
        bail!("N={n}: no message was sent");
    }
    Ok(Row {
        n,
        p50: percentile(&probes, 50.0),
        p99: percentile(&probes, 99.0),
        max: probes.last().copied().unwrap_or_default(),
        sent,
        lost,
        failure_reports: reports,
        false_reports,
        node_queue_drops: node_queue_drops(net) - drops_before,
    })
}

/// Every node's counters so far, summed.
fn node_totals(net: &nym_mixnet::localnet::Localnet) -> nym_mixnet::StatsSnapshot {
    let mut t = nym_mixnet::StatsSnapshot::default();
    let stats = (0..net.mixnodes().len())
        .filter_map(|i| net.mixnode_stats(i))
        .chain((0..net.gateways().len()).filter_map(|i| net.gateway_stats(i)));
    for s in stats {
        let s = s.snapshot();
        t.received += s.received;
        t.forwarded += s.forwarded;
        t.stored += s.stored;
        t.pushed += s.pushed;
        t.delivered += s.delivered;
        t.bad_acks += s.bad_acks;
        t.dropped_malformed += s.dropped_malformed;
        t.dropped_replayed += s.dropped_replayed;
        t.dropped_no_route += s.dropped_no_route;
        t.dropped_unlisted_hop += s.dropped_unlisted_hop;
        t.dropped_unknown_client += s.dropped_unknown_client;
        t.dropped_queue_full += s.dropped_queue_full;
        t.dropped_peer_down += s.dropped_peer_down;
        t.dropped_limit += s.dropped_limit;
    }
    t
}

/// Packets every node of the localnet dropped for a full queue so far.
fn node_queue_drops(net: &nym_mixnet::localnet::Localnet) -> u64 {
    node_totals(net).dropped_queue_full
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let plan = Plan::from_args(&args)?;
    let data = tempfile::tempdir()?;
    let net = nym_mixnet::localnet::Localnet::start(nym_mixnet::localnet::LocalnetConfig::new(data.path())).await?;
    let mut rows = Vec::new();
    for &n in &plan.sizes {
        let row = run(&net, n, &plan).await?;
        eprintln!("[N={n}] selfAddress p99 {:?}, {} of {} lost, {} false failure reports", row.p99, row.lost, row.sent, row.false_reports);
        eprintln!("[N={n}] all nodes so far: {}", node_totals(&net));
        rows.push(row);
    }
    net.shutdown().await;

    println!("## Saturation: N clients at default rates on one machine (issue 13)\n");
    if plan.quick {
        println!("(quick mode: a check that the benchmark works; too short for figures to quote)\n");
    }
    let sizes: Vec<String> = plan.sizes.iter().map(|n| n.to_string()).collect();
    let command = if plan.quick { " -- --quick".to_string() } else { String::new() };
    println!(
        "`cargo run --release -p nym-integration-tests --bin saturation-bench{command}` (N = {}, {} s of sending each; release build, 2 vCPU, loopback).",
        sizes.join(", "),
        plan.sending.as_secs()
    );
    println!("N `nym-client` processes at default rates (packet delay 20 ms, hop delay 15 ms, loop cover 200 ms) on one in-process localnet");
    println!("(directory, 3x2 mixnodes, 2 gateways), all on this machine. Each client sends a message a second to the next and asks");
    println!("`selfAddress` every 250 ms on the same websocket. Lost: not received {} s after sending stopped. False reports: failure", plan.grace.as_secs());
    println!("reports beyond the sender's lost messages (a delivered message reported as failed).\n");
    println!("| N | selfAddress p50 | p99 | max | messages | lost | failure reports | false reports | node queue-full drops |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.n,
            ms(r.p50),
            ms(r.p99),
            ms(r.max),
            r.sent,
            r.lost,
            r.failure_reports,
            r.false_reports,
            r.node_queue_drops
        );
    }
    Ok(())
}
