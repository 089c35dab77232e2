//! Nodes as separate hosts: every mixnode and gateway runs as its own process
//! in its own network namespace, joined to the others through a bridge (see
//! `nym_integration_tests::netns`). Two `nym-client`s talk through them;
//! then one mixnode is cut off the network (its link goes down, the process
//! keeps running) and what is sent afterwards routes around it, arriving
//! exactly once. Skipped, with a message, where namespaces can't be made.
//!
//! Takes about 10 s. On failure the tail of every node's log is printed
//! (`NETNS_LOG_LINES`, default 15; `NETNS_RUST_LOG` sets the nodes' `RUST_LOG`).

use anyhow::{anyhow, bail, Result};
use nym_integration_tests::netns::{mixnet_binaries, Host, Lab};
use nym_integration_tests::*;
use serde_json::json;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

const MIX_PORT: u16 = 1789;
const GW_MIX_PORT: u16 = 1790;
const GW_CLIENTS_PORT: u16 = 9000;
/// Long enough that a node announcing every 0.5 s is not forgotten while the
/// machine is busy; the cut node is forgotten after this.
const EXPIRY_SECS: f64 = 6.0;

fn s(v: impl ToString) -> String {
    v.to_string()
}

fn reliable(c: &mut nym_client::config::Config) {
    fast(c);
    c.debug.gateway_reconnect_initial_backoff = 100;
    c.debug.gateway_reconnect_max_backoff = 1000;
    c.debug.topology_refresh_rate = 1000;
}

/// Can `addr` be connected to (TCP) within `within`?
async fn reachable(addr: &str, within: Duration) -> bool {
    matches!(tokio::time::timeout(within, tokio::net::TcpStream::connect(addr)).await, Ok(Ok(_)))
}

/// The last `received=` count in a node's stats log lines.
fn received(log: &str) -> u64 {
    log.lines()
        .filter_map(|l| l.split("stats: received=").nth(1))
        .filter_map(|r| r.split_whitespace().next()?.parse().ok())
        .last()
        .unwrap_or(0)
}

/// The next message text; `{"type": "error"}` frames (e.g. a gateway that
/// momentarily refused a first hop the directory had expired) are reported
/// and skipped: they are not messages.
async fn next_message(b: &mut Ws, within: Duration) -> Result<String> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        match recv(b, left).await? {
            Message::Text(t) => {
                let t = t.as_str();
                match serde_json::from_str::<serde_json::Value>(t) {
                    Ok(v) if v["type"] == "error" => eprintln!("(client reported an error: {v})"),
                    _ => return Ok(t.to_string()),
                }
            }
            other => bail!("unexpected frame {other:?}"),
        }
    }
}

/// Receives until `into` holds `n` messages, or fails with how many arrived.
async fn receive(b: &mut Ws, n: usize, within: Duration, into: &mut Vec<String>) -> Result<()> {
    let deadline = Instant::now() + within;
    while into.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match next_message(b, left).await {
            Ok(m) => into.push(m),
            Err(e) => bail!("after {} of {n} messages: {e:#}", into.len()),
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixnode_cut_off_the_network_is_routed_around() -> Result<()> {
    let started = Instant::now();
    let mut lab = match Lab::create()? {
        Ok(lab) => lab,
        Err(reason) => {
            eprintln!("skipping: network namespaces unavailable: {reason}");
            return Ok(());
        }
    };
    let result = run(&mut lab).await;
    if result.is_err() {
        for name in ["directory", "mix1a", "mix1b", "mix2a", "mix2b", "mix3a", "mix3b", "gw1", "gw2"] {
            let log = lab.log(name);
            let lines = std::env::var("NETNS_LOG_LINES").ok().and_then(|n| n.parse().ok()).unwrap_or(15);
            let tail: Vec<&str> = log.lines().rev().take(lines).collect();
            eprintln!("--- {name} (last lines) ---");
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
    eprintln!("netns test took {:.1} s", started.elapsed().as_secs_f64());
    result
}

async fn run(lab: &mut Lab) -> Result<()> {
    let bins = mixnet_binaries();
    let url = lab.start_directory(&bins.join("nym-directory"), EXPIRY_SECS)?;
    eprintln!("directory at {url}, nodes on {}.0/24", lab.subnet());

    let mut mixnodes: Vec<(u8, Host)> = Vec::new();
    for layer in 1..=3u8 {
        for side in ["a", "b"] {
            let name = format!("mix{layer}{side}");
            let host = lab.add_host(&name)?;
            let data = lab.data.path().join(&name);
            let args = vec![
                s("--layer"),
                s(layer),
                s("--listen"),
                format!("{}:{MIX_PORT}", host.ip),
                s("--directory"),
                url.clone(),
                s("--data-dir"),
                s(data.display()),
                s("--announce-interval"),
                s("0.5"),
                s("--workers"),
                s("1"),
                s("--stats-interval"),
                s("0.2"),
            ];
            lab.spawn(&name, Some(&host), &bins.join("nym-mixnode"), &args, false)?;
            mixnodes.push((layer, host));
        }
    }
    let mut gateways = Vec::new();
    for name in ["gw1", "gw2"] {
        let host = lab.add_host(name)?;
        let data = lab.data.path().join(name);
        let args = vec![
            s("--mix-listen"),
            format!("{}:{GW_MIX_PORT}", host.ip),
            s("--clients-listen"),
            format!("{}:{GW_CLIENTS_PORT}", host.ip),
            s("--directory"),
            url.clone(),
            s("--data-dir"),
            s(data.display()),
            s("--announce-interval"),
            s("0.5"),
        ];
        lab.spawn(name, Some(&host), &bins.join("nym-gateway"), &args, false)?;
        gateways.push(host);
    }

    // Every node announced itself from its own namespace address.
    let dir = nym_mixnet::http::DirectoryClient::new(&url)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let topo = loop {
        if let Ok(t) = dir.topology().await {
            if t.mix_nodes.len() == 6 && t.gateway_nodes.len() == 2 {
                break t;
            }
        }
        let dead = lab.exited();
        if !dead.is_empty() {
            bail!("exited early: {dead:?}");
        }
        if Instant::now() > deadline {
            bail!("the directory never listed all 8 nodes: {:?}", dir.topology().await);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for (_, h) in &mixnodes {
        let host = format!("{}:{MIX_PORT}", h.ip);
        if !topo.mix_nodes.iter().any(|m| m.host == host) {
            bail!("{host} not announced: {topo:?}");
        }
    }
    for g in &gateways {
        let l = format!("ws://{}:{GW_CLIENTS_PORT}", g.ip);
        if !topo.gateway_nodes.iter().any(|x| x.client_listener == l) {
            bail!("{l} not announced: {topo:?}");
        }
    }

    // Alice and Bob on different gateways, so their traffic crosses all three layers between hosts.
    let g0 = topo.gateway_nodes[0].identity_key.clone();
    let g1 = topo.gateway_nodes[1].identity_key.clone();
    let mut alice = TestClient::init_with(&url, "alice", &["--gateway", &g0], reliable)?;
    let mut bob = TestClient::init_with(&url, "bob", &["--gateway", &g1], reliable)?;
    alice.start().await?;
    bob.start().await?;
    let mut a = alice.connect().await?;
    let mut b = bob.connect().await?;
    request(&mut b, &json!({"type": "selfAddress"})).await?;

    let mut expected = BTreeSet::new();
    let mut got = Vec::new();
    for i in 0..10 {
        let m = format!("before {i:02}");
        assert!(send_id(&request(&mut a, &json!({"type": "send", "recipient": bob.address, "message": m})).await?).is_some());
        expected.insert(m);
    }
    receive(&mut b, 10, Duration::from_secs(60), &mut got)
        .await
        .map_err(|e| anyhow!("{e:#}\nalice:\n{}\nbob:\n{}", alice.log(), bob.log()))?;

    // Cut a layer-2 mixnode off: its process keeps running, its link is down.
    let (_, victim) = mixnodes.iter().find(|(l, _)| *l == 2).cloned().ok_or_else(|| anyhow!("no layer 2"))?;
    let victim_addr = format!("{}:{MIX_PORT}", victim.ip);
    let victim_name = victim.ns.rsplit('-').next().unwrap_or_default().to_string();
    // It was carrying traffic (messages, acks, loop cover) before the cut.
    let deadline = Instant::now() + Duration::from_secs(15);
    while received(&lab.log(&victim_name)) == 0 {
        if Instant::now() > deadline {
            bail!("{victim_name} never carried a packet:\n{}", lab.log(&victim_name));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !reachable(&victim_addr, Duration::from_secs(2)).await {
        bail!("{victim_addr} unreachable before the cut");
    }
    lab.cut(&victim)?;
    eprintln!("cut off {} ({victim_addr})", victim.ns);
    if reachable(&victim_addr, Duration::from_secs(1)).await {
        bail!("{victim_addr} still reachable after the cut");
    }

    // Sent right away, before the directory forgets the node: packets routed
    // through it are lost and retransmitted on fresh routes.
    let t0 = Instant::now();
    for i in 0..50 {
        let m = format!("after {i:02}");
        assert!(send_id(&request(&mut a, &json!({"type": "send", "recipient": bob.address, "message": m})).await?).is_some());
        expected.insert(m);
    }
    receive(&mut b, 60, Duration::from_secs(90), &mut got)
        .await
        .map_err(|e| anyhow!("{e:#}\nalice:\n{}\nbob:\n{}", alice.log(), bob.log()))?;
    eprintln!("50 messages after the cut arrived in {:.1} s", t0.elapsed().as_secs_f64());
    // Nothing more (no duplicates) within a while.
    if let Ok(m) = next_message(&mut b, Duration::from_secs(3)).await {
        bail!("a duplicate or stray message arrived: {m:?}");
    }
    let unique: BTreeSet<String> = got.iter().cloned().collect();
    assert_eq!(unique.len(), got.len(), "a message arrived twice");
    assert_eq!(unique, expected, "every message exactly once");

    // The directory forgets the node that can no longer announce itself; the others stay.
    let deadline = Instant::now() + Duration::from_secs_f64(EXPIRY_SECS + 10.0);
    loop {
        let t = dir.topology().await?;
        if !t.mix_nodes.iter().any(|m| m.host == victim_addr) {
            if t.mix_nodes.len() != 5 || t.gateway_nodes.len() != 2 {
                bail!("the directory forgot more than {victim_addr}: {t:?}");
            }
            break;
        }
        if Instant::now() > deadline {
            bail!("the directory still lists {victim_addr}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let dead = lab.exited();
    if !dead.is_empty() {
        bail!("nodes exited: {dead:?}");
    }
    let _ = a.close(None).await;
    let _ = b.close(None).await;
    alice.stop();
    bob.stop();
    Ok(())
}
