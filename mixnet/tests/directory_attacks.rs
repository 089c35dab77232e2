//! The attacks on the directory from the issue, against the real
//! `nym-directory` binary (and real node binaries where it matters): each is
//! refused with a clear reason, and nothing legitimate is lost.

mod common;

use common::*;
use nym_mixnet::http::{DirectoryClient, Refusal};
use nym_wire::address::{decode_key, encode_key};
use nym_wire::topology::{GatewayJson, MixNodeJson, Topology, TopologyJson};
use serde::Serialize;
use std::collections::HashSet;
use std::io::BufRead;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufStream};
use tokio::net::{TcpSocket, TcpStream};
use x25519_dalek::PublicKey;


fn s(v: impl ToString) -> String {
    v.to_string()
}

struct Dir {
    url: String,
    key: [u8; 32],
    addr: SocketAddr,
    client: DirectoryClient,
}

/// Starts `nym-directory` on a free loopback port; reads its two stdout lines.
fn start_directory(procs: &mut Procs, data: &Path, extra: &[String]) -> Dir {
    let mut child = Command::new(env!("CARGO_BIN_EXE_nym-directory"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.join("directory"))
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    procs.0.push(child);
    let mut lines = std::io::BufReader::new(stdout);
    let (mut first, mut second) = (String::new(), String::new());
    lines.read_line(&mut first).unwrap();
    lines.read_line(&mut second).unwrap();
    // keep draining, so the directory never blocks on a full pipe
    std::thread::spawn(move || std::io::copy(&mut lines, &mut std::io::sink()));
    let url = first.trim().strip_prefix("directory: ").expect("first line: directory: URL").to_string();
    let key = second.trim().strip_prefix("directory key: ").expect("second line: directory key: KEY");
    let key = decode_key(key, "directory key").unwrap();
    let addr = url.strip_prefix("http://").unwrap().parse().unwrap();
    Dir { client: DirectoryClient::new(&url).unwrap(), url, key, addr }
}

/// Posts an announcement; Ok or the directory's refusal.
async fn announce<T: Serialize>(dir: &Dir, path: &str, body: &T) -> Result<(), Refusal> {
    dir.client.announce(path, body).await.expect("directory reachable")
}

async fn mix(dir: &Dir, m: &MixNodeJson) -> Result<(), Refusal> {
    announce(dir, "/api/presence/mixnodes", m).await
}

async fn gateway(dir: &Dir, g: &GatewayJson) -> Result<(), Refusal> {
    announce(dir, "/api/presence/gateways", g).await
}

fn refused(r: Result<(), Refusal>, status: u16, words: &[&str]) {
    let r = r.expect_err("must be refused");
    assert_eq!(r.status, status, "{r}");
    for w in words {
        assert!(r.reason.contains(w), "'{w}' missing from: {r}");
    }
}

/// The directory's document, checked with its pinned key.
async fn document(dir: &Dir) -> TopologyJson {
    let t = dir.client.topology().await.unwrap();
    t.verify_signatures(Some(&nym_wire::authority::Authorities::single(dir.key, "http://127.0.0.1:1")))
        .expect("signed by the directory key");
    for m in &t.mix_nodes {
        m.verify_signature().unwrap();
    }
    for g in &t.gateway_nodes {
        g.verify_signature().unwrap();
    }
    t
}

/// What the document says about a node, minus what the directory sets.
fn strip_mix(t: &TopologyJson) -> Vec<MixNodeJson> {
    t.mix_nodes.iter().map(|m| MixNodeJson { last_seen: 0, ..m.clone() }).collect()
}

fn strip_gw(t: &TopologyJson) -> Vec<GatewayJson> {
    t.gateway_nodes.iter().map(|g| GatewayJson { last_seen: 0, ..g.clone() }).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_spoofed_conflicting_and_replayed_descriptors_are_refused_and_change_nothing() {
    let data = tempfile::tempdir().unwrap();
    let mut procs = Procs(Vec::new());
    let dir = start_directory(&mut procs, data.path(), &[s("--open")]);
    // the real network: three mixnodes and a gateway
    let seq0 = now_ms() - 1000;
    let real_mix: Vec<MixNodeJson> =
        (1..=3u8).map(|l| signed_mix(&identity(l), l, &format!("127.0.0.1:{}", 4000 + u16::from(l)), seq0)).collect();
    let real_gw = signed_gateway(&identity(9), "127.0.0.1:4009", "127.0.0.1:4010", seq0);
    for m in &real_mix {
        mix(&dir, m).await.unwrap();
    }
    gateway(&dir, &real_gw).await.unwrap();
    let before = document(&dir).await;
    assert_eq!((before.mix_nodes.len(), before.gateway_nodes.len()), (3, 1));
    let attacker = identity(66);

    // (a) the real gateway's identityKey with the attacker's sphinxKey and
    // mixnetListener, signed by the attacker
    let mut forged = real_gw.clone();
    forged.sphinx_key = b58_x25519(66);
    forged.mixnet_listener = "127.0.0.66:1789".into();
    forged.sign(&attacker, now_ms());
    forged.identity_key = real_gw.identity_key.clone();
    refused(gateway(&dir, &forged).await, 400, &["gateway 127.0.0.66:1789: the signature does not verify"]);
    // the same with the real signature left in place
    let mut tampered = real_gw.clone();
    tampered.sphinx_key = b58_x25519(66);
    tampered.seq = now_ms();
    refused(gateway(&dir, &tampered).await, 400, &["signature does not verify"]);

    // (b) version spoof: real entries re-posted as 9.9.9 (their signatures
    // fail), and the attacker's own validly signed node of 9.9.9
    for m in &real_mix {
        let mut spoof = m.clone();
        spoof.version = "9.9.9".into();
        spoof.seq = now_ms();
        refused(mix(&dir, &spoof).await, 400, &["signature does not verify"]);
    }
    let mut spoof = real_gw.clone();
    spoof.version = "9.9.9".into();
    refused(gateway(&dir, &spoof).await, 400, &["signature does not verify"]);
    let mut own = signed_mix(&attacker, 1, "127.0.0.66:1", now_ms());
    own.version = "9.9.9".into();
    own.sign(&attacker, now_ms());
    let series: Vec<&str> = nym_wire::VERSION.split('.').take(2).collect();
    let accepts = format!("it accepts {}.x", series.join("."));
    refused(mix(&dir, &own).await, 400, &["version 9.9.9 is not served", &accepts]);

    // (c) an identity's entry changed by another key
    let mut moved = real_mix[0].clone();
    moved.host = "127.0.0.66:4001".into();
    moved.pub_key = b58_x25519(67);
    moved.sign(&attacker, now_ms());
    moved.identity_key = real_mix[0].identity_key.clone();
    refused(mix(&dir, &moved).await, 400, &["the signature does not verify"]);

    // (d) an address held by one live identity claimed by another
    refused(mix(&dir, &signed_mix(&attacker, 2, "127.0.0.1:4001", now_ms())).await, 409, &["127.0.0.1:4001 is held by another live node"]);
    // a mixnode's address as a gateway's mixnet listener, and the other way round
    refused(
        gateway(&dir, &signed_gateway(&attacker, "127.0.0.1:4002", "127.0.0.66:2", now_ms())).await,
        409,
        &["127.0.0.1:4002 is held"],
    );
    refused(mix(&dir, &signed_mix(&attacker, 1, "127.0.0.1:4009", now_ms())).await, 409, &["127.0.0.1:4009 is held"]);
    // the gateway's client listener
    refused(
        gateway(&dir, &signed_gateway(&attacker, "127.0.0.66:3", "127.0.0.1:4010", now_ms())).await,
        409,
        &["client listener ws://127.0.0.1:4010 is held"],
    );
    // one identity can't be a mixnode and a gateway
    let mut role = signed_gateway(&identity(1), "127.0.0.66:5", "127.0.0.66:6", now_ms());
    role.sign(&identity(1), now_ms());
    refused(gateway(&dir, &role).await, 409, &["is a live mixnode"]);

    // (e) replays: the first descriptor after a newer one, the latest again,
    // one signed long ago, one signed in the future
    let newer = signed_mix(&identity(1), 1, "127.0.0.1:4001", now_ms());
    mix(&dir, &newer).await.unwrap();
    refused(mix(&dir, &real_mix[0]).await, 409, &["replayed or out-of-order", "not greater"]);
    refused(mix(&dir, &newer).await, 409, &["replayed or out-of-order"]);
    let departed = identity(70);
    let hour_ago = now_ms() - 3_600_000;
    refused(mix(&dir, &signed_mix(&departed, 1, "127.0.0.70:1", hour_ago)).await, 409, &["signed 3600 s ago", "stale or replayed"]);
    refused(
        mix(&dir, &signed_mix(&departed, 1, "127.0.0.70:1", now_ms() + 3_600_000)).await,
        400,
        &["in the future", "clock"],
    );

    // nothing legitimate changed: the same descriptors (the refreshed one
    // aside), every signature good
    let after = document(&dir).await;
    let mut want = strip_mix(&before);
    want[0] = MixNodeJson { last_seen: 0, ..newer.clone() };
    assert_eq!(strip_mix(&after), want);
    assert_eq!(strip_gw(&after), strip_gw(&before));
    let v = nym_wire::signed::verify_topology_json(
        &after,
        Some(&nym_wire::authority::Authorities::single(dir.key, "http://127.0.0.1:1")),
        now_ms(),
        nym_wire::VERSION,
    ).unwrap();
    assert_eq!(v.topology.gateways()[0].mix_address.to_string(), "127.0.0.1:4009");
    // and the attacker got nothing in
    let ids: HashSet<String> = after.mix_nodes.iter().map(|m| m.identity_key.clone()).collect();
    assert!(!ids.contains(&encode_key(attacker.verifying_key().as_bytes())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_admit_only_listed_identities_are_served() {
    let data = tempfile::tempdir().unwrap();
    let mut procs = Procs(Vec::new());
    // a real mixnode whose identity the operator lists, and one it does not
    let listed_dir = data.path().join("listed");
    let unlisted_dir = data.path().join("unlisted");
    let listed = nym_mixnet::keyfiles::load_or_create_identity_key(&listed_dir).unwrap();
    let unlisted = nym_mixnet::keyfiles::load_or_create_identity_key(&unlisted_dir).unwrap();
    let also = identity(5);
    let admit = data.path().join("admit.txt");
    std::fs::write(
        &admit,
        format!(
            "# the operator's nodes\n{}\n\n{}   # a test node\n",
            encode_key(listed.verifying_key().as_bytes()),
            encode_key(also.verifying_key().as_bytes())
        ),
    )
    .unwrap();
    let dir = start_directory(&mut procs, data.path(), &[s("--admit"), s(admit.display())]);
    let mixnode = |layer: u8, d: &Path, stdout: Stdio| {
        Command::new(env!("CARGO_BIN_EXE_nym-mixnode"))
            .args(["--layer", &s(layer), "--listen", "127.0.0.1:0", "--directory", &dir.url, "--directory-key", &encode_key(&dir.key)])
            .args(["--announce-interval", "0.2", "--workers", "1", "--data-dir"])
            .arg(d)
            .env("RUST_LOG", "warn")
            .stdout(stdout)
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    procs.0.push(mixnode(1, &listed_dir, Stdio::null()));
    // its log (on stdout) tells why it is refused
    let mut unlisted_node = Procs(vec![mixnode(2, &unlisted_dir, Stdio::piped())]);
    let listed_b58 = encode_key(listed.verifying_key().as_bytes());
    // wait until the listed node has been refreshed twice: the unlisted one
    // announced as often meanwhile
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut seen = Vec::new();
    let t = loop {
        let t = document(&dir).await;
        if let Some(m) = t.mix_nodes.iter().find(|m| m.identity_key == listed_b58) {
            if seen.last() != Some(&m.seq) {
                seen.push(m.seq);
            }
        }
        if seen.len() >= 3 {
            break t;
        }
        assert!(Instant::now() < deadline, "the admitted node was never listed and refreshed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(t.mix_nodes.len(), 1, "only the admitted node: {:?}", t.mix_nodes);
    // the refused node said why, once, though it tried at every tick
    let unlisted_node = unlisted_node.0.pop().unwrap();
    let _ = Command::new("kill").arg("-TERM").arg(unlisted_node.id().to_string()).status();
    let out = unlisted_node.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stdout);
    eprintln!("unlisted node's log: {log}");
    let refusals: Vec<&str> = log.lines().filter(|l| l.contains("refused our announcement")).collect();
    assert_eq!(refusals.len(), 1, "{log}");
    assert!(refusals[0].contains("403") && refusals[0].contains("is not admitted by this directory"), "{log}");
    // what the unlisted node hears, and any other stranger
    let stranger = signed_mix(&unlisted, 2, "127.0.0.1:4999", now_ms());
    refused(mix(&dir, &stranger).await, 403, &["is not admitted", "--admit"]);
    refused(
        gateway(&dir, &signed_gateway(&identity(77), "127.0.0.77:1", "127.0.0.77:2", now_ms())).await,
        403,
        &["not admitted"],
    );
    // a listed identity that is not a running node is served too
    gateway(&dir, &signed_gateway(&also, "127.0.0.5:1", "127.0.0.5:2", now_ms())).await.unwrap();
    assert_eq!(document(&dir).await.gateway_nodes.len(), 1);

    // a bad admit file stops the directory at start, naming the line
    std::fs::write(&admit, format!("# ok\n{}\nnot-a-key\n", encode_key(also.verifying_key().as_bytes()))).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_nym-directory"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path().join("directory"))
        .arg("--admit")
        .arg(&admit)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 3") && err.contains("admit.txt"), "{err}");
}

/// A connection from `local` (another loopback address) to the directory.
async fn connect_from(local: IpAddr, to: SocketAddr) -> std::io::Result<BufStream<TcpStream>> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(local, 0))?;
    Ok(BufStream::new(socket.connect(to).await?))
}

/// One keep-alive POST; the status, or None if the connection broke.
async fn post_on(stream: &mut BufStream<TcpStream>, path: &str, body: &str) -> Option<u16> {
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).await.ok()?;
    stream.flush().await.ok()?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await.ok()?;
    Some(status)
}

fn spawn_node(procs: &mut Procs, args: Vec<String>) {
    let bin = if args[0] == "--layer" { env!("CARGO_BIN_EXE_nym-mixnode") } else { env!("CARGO_BIN_EXE_nym-gateway") };
    procs.0.push(Command::new(bin).args(args).env("RUST_LOG", "warn").stdout(Stdio::null()).stderr(Stdio::inherit()).spawn().unwrap());
}

/// Sends `n` messages from `a` to `b` over routes of the real nodes only;
/// asserts they all arrive.
async fn exchange(a: &mut TestClient, b: &mut TestClient, bob: &PublicKey, real: &Topology, gw: [u8; 32], tag: u8, n: u8) {
    let mut sent = Vec::new();
    for i in 0..n {
        let msg = vec![tag ^ i; 1200];
        let epoch = real.epoch_at(now_ms());
        let route = real.random_route(&mut rand::rng(), &gw, epoch).unwrap();
        a.forward(*route[0].address.as_bytes(), build_frame(&msg, &route, bob, &[5, 5, 5, 5], epoch)).await;
        sent.push(msg);
    }
    let mut got = b.recv_deliveries(sent.len(), Duration::from_secs(10)).await;
    b.ack_all().await;
    got.sort();
    sent.sort();
    assert_eq!(got, sent, "messages lost (tag {tag})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_gateway_and_a_flood_of_identities_leave_a_real_network_working() {
    const MAX_NODES: usize = 30;
    let data = tempfile::tempdir().unwrap();
    let mut procs = Procs(Vec::new());
    let dir = start_directory(&mut procs, data.path(), &[s("--open"), s("--max-nodes"), s(MAX_NODES)]);
    let pinned = encode_key(&dir.key);
    // the real nodes, with their identities known before they start
    let mut real_ids = HashSet::new();
    for layer in 1..=3 {
        let d = data.path().join(format!("mix{layer}"));
        real_ids.insert(encode_key(nym_mixnet::keyfiles::load_or_create_identity_key(&d).unwrap().verifying_key().as_bytes()));
        spawn_node(
            &mut procs,
            vec![s("--layer"), s(layer), s("--listen"), s("127.0.0.1:0"), s("--directory"), dir.url.clone(), s("--directory-key"), pinned.clone()]
                .into_iter()
                .chain([s("--data-dir"), s(d.display()), s("--announce-interval"), s("0.3"), s("--topology-refresh"), s("0.5"), s("--workers"), s("1")])
                .collect(),
        );
    }
    let gd = data.path().join("gw");
    let gw_identity = nym_mixnet::keyfiles::load_or_create_identity_key(&gd).unwrap();
    real_ids.insert(encode_key(gw_identity.verifying_key().as_bytes()));
    spawn_node(
        &mut procs,
        vec![s("--mix-listen"), s("127.0.0.1:0"), s("--clients-listen"), s("127.0.0.1:0"), s("--directory"), dir.url.clone()]
            .into_iter()
            .chain([s("--directory-key"), pinned.clone(), s("--data-dir"), s(gd.display()), s("--announce-interval"), s("0.3")])
            .chain([s("--topology-refresh"), s("0.5")])
            .collect(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let doc = loop {
        let t = document(&dir).await;
        if Topology::from_json(&t, nym_wire::VERSION).is_ok() {
            break t;
        }
        assert!(Instant::now() < deadline, "the real network never completed: {t:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let real = Topology::from_json(&doc, nym_wire::VERSION).unwrap();
    let gw = gateway_identity(&doc, 0);
    let real_gw = doc.gateway_nodes[0].clone();
    let (alice, bob) = (random_secret(), random_secret());
    let mut a = TestClient::connect(&real_gw.client_listener, &alice, gw).await.unwrap();
    let mut b = TestClient::connect(&real_gw.client_listener, &bob, gw).await.unwrap();
    let bob_pub = PublicKey::from(&bob);
    exchange(&mut a, &mut b, &bob_pub, &real, gw, 1, 5).await;

    // (a) the gateway forged: its identity, the attacker's keys and address
    let attacker = identity(66);
    let mut forged = real_gw.clone();
    forged.sphinx_key = b58_x25519(66);
    forged.mixnet_listener = "127.0.0.66:1789".into();
    forged.sign(&attacker, now_ms());
    forged.identity_key = real_gw.identity_key.clone();
    refused(gateway(&dir, &forged).await, 400, &["signature does not verify"]);
    // or under its own identity, on the real gateway's addresses
    let mut squat = real_gw.clone();
    let seq = now_ms();
    squat.sphinx_key = b58_x25519(66);
    squat.sphinx_keys = epoch_keys(66, seq);
    squat.sign(&attacker, seq);
    refused(gateway(&dir, &squat).await, 409, &["is held by another live node"]);
    let listed = document(&dir).await;
    assert_eq!(listed.gateway_nodes.len(), 1);
    assert_eq!(GatewayJson { last_seen: 0, seq: 0, signature: String::new(), ..listed.gateway_nodes[0].clone() }, GatewayJson {
        last_seen: 0,
        seq: 0,
        signature: String::new(),
        ..real_gw.clone()
    });
    exchange(&mut a, &mut b, &bob_pub, &real, gw, 2, 5).await;

    // (g) a flood of fresh identities from another loopback source, while
    // the clients talk
    let Ok(mut flood_conn) = connect_from("127.0.0.2".parse().unwrap(), dir.addr).await else {
        eprintln!("skipping the flood: cannot bind 127.0.0.2 (no 127.0.0.0/8 on lo?)");
        return;
    };
    let flood_start = now_ms();
    let bodies: Vec<String> = (0..3000u32)
        .map(|i| {
            let mut seed = [0xA5u8; 32];
            seed[..4].copy_from_slice(&i.to_le_bytes());
            let key = ed25519_dalek::SigningKey::from_bytes(&seed);
            let m = signed_mix(&key, (i % 3) as u8 + 1, &format!("127.0.{}.{}:{}", 1 + i / 250, 1 + i % 250, 10_000 + i), now_ms());
            serde_json::to_string(&m).unwrap()
        })
        .collect();
    let addr = dir.addr;
    let flood = tokio::spawn(async move {
        let mut statuses = std::collections::HashMap::<u16, usize>::new();
        for body in &bodies {
            let status = match post_on(&mut flood_conn, "/api/presence/mixnodes", body).await {
                Some(st) => st,
                None => {
                    flood_conn = connect_from("127.0.0.2".parse().unwrap(), addr).await.unwrap();
                    post_on(&mut flood_conn, "/api/presence/mixnodes", body).await.unwrap_or(0)
                }
            };
            *statuses.entry(status).or_default() += 1;
        }
        statuses
    });
    exchange(&mut a, &mut b, &bob_pub, &real, gw, 3, 5).await;
    let statuses = flood.await.unwrap();
    eprintln!("flood answers by status: {statuses:?}");
    let accepted = statuses.get(&201).copied().unwrap_or(0);
    assert!(accepted <= MAX_NODES - real_ids.len(), "{statuses:?}");
    assert!(statuses.get(&429).copied().unwrap_or(0) >= 3000 - MAX_NODES - 200, "rate limited and capped: {statuses:?}");
    // bounded, and every real node listed and refreshed since the flood began
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let t = document(&dir).await;
        assert!(t.mix_nodes.len() + t.gateway_nodes.len() <= MAX_NODES, "{} nodes listed", t.mix_nodes.len() + t.gateway_nodes.len());
        let refreshed: HashSet<String> = t
            .mix_nodes
            .iter()
            .map(|m| (&m.identity_key, m.seq))
            .chain(t.gateway_nodes.iter().map(|g| (&g.identity_key, g.seq)))
            .filter(|(id, seq)| real_ids.contains(*id) && *seq > flood_start)
            .map(|(id, _)| id.clone())
            .collect();
        if refreshed == real_ids {
            break;
        }
        assert!(Instant::now() < deadline, "real nodes not refreshed during the flood: {refreshed:?} of {real_ids:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    exchange(&mut a, &mut b, &bob_pub, &real, gw, 4, 5).await;
    a.close().await;
    b.close().await;
}
