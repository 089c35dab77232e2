//! The built binaries, as separate processes, carry traffic.

mod common;

use common::*;
use nym_mixnet::http::DirectoryClient;
use nym_wire::topology::Topology;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use x25519_dalek::PublicKey;


fn spawn(bin: &str, args: &[String]) -> Child {
    Command::new(bin).args(args).env("RUST_LOG", "warn").stdout(Stdio::null()).stderr(Stdio::inherit()).spawn().unwrap()
}

fn s(v: impl ToString) -> String {
    v.to_string()
}

/// Starts the directory and the nodes (which trust its key on first use);
/// returns its URL and key.
fn start_network(data: &Path, procs: &mut Procs) -> (String, String) {
    // every server binds port 0 and announces the port it got; the directory prints its URL
    let mut directory = Command::new(env!("CARGO_BIN_EXE_nym-directory"))
        .args(["--listen", "127.0.0.1:0", "--open", "--data-dir"])
        .arg(data.join("directory"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let (mut line, mut key_line) = (String::new(), String::new());
    let stdout = directory.stdout.take().unwrap();
    procs.0.push(directory);
    let mut lines = std::io::BufReader::new(stdout);
    std::io::BufRead::read_line(&mut lines, &mut line).unwrap();
    std::io::BufRead::read_line(&mut lines, &mut key_line).unwrap();
    // keep draining, so the directory never blocks on a full pipe
    std::thread::spawn(move || std::io::copy(&mut lines, &mut std::io::sink()));
    let url = line.trim().strip_prefix("directory: ").expect("directory prints its URL").to_string();
    let key = key_line.trim().strip_prefix("directory key: ").expect("then its key").to_string();
    for layer in 1..=3 {
        let port = 0;
        procs.0.push(spawn(
            env!("CARGO_BIN_EXE_nym-mixnode"),
            &[
                s("--layer"),
                s(layer),
                s("--listen"),
                format!("127.0.0.1:{port}"),
                s("--directory"),
                url.clone(),
                s("--data-dir"),
                s(data.join(format!("mix{layer}")).display()),
                s("--announce-interval"),
                s("0.3"),
                s("--topology-refresh"),
                s("0.5"),
                s("--workers"),
                s("1"),
            ],
        ));
    }
    procs.0.push(spawn(
        env!("CARGO_BIN_EXE_nym-gateway"),
        &[
            s("--mix-listen"),
            s("127.0.0.1:0"),
            s("--clients-listen"),
            s("127.0.0.1:0"),
            s("--directory"),
            url.clone(),
            s("--data-dir"),
            s(data.join("gw").display()),
            s("--announce-interval"),
            s("0.3"),
            s("--topology-refresh"),
            s("0.5"),
        ],
    ));
    (url, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn separate_processes_carry_traffic() {
    let data = tempfile::tempdir().unwrap();
    let mut procs = Procs(Vec::new());
    let (url, key) = start_network(data.path(), &mut procs);
    let dir = DirectoryClient::new(&url).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let topo = loop {
        if let Ok(json) = dir.topology().await {
            if let Ok(t) = Topology::from_json(&json, nym_wire::VERSION) {
                break (json, t);
            }
        }
        assert!(Instant::now() < deadline, "topology never completed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (json, topo) = topo;
    assert_eq!(json.served_by, key);
    // every node trusted the directory's key on first use and kept it
    for node in ["mix1", "mix2", "mix3", "gw"] {
        let path = data.path().join(node).join("directory_key.txt");
        assert!(
            wait_until(Duration::from_secs(10), || std::fs::read_to_string(&path).is_ok_and(|k| k.trim() == key)).await,
            "{node} did not keep the directory key"
        );
    }
    let gw = gateway_identity(&json, 0);
    let bob = random_secret();
    let alice = random_secret();
    let mut b = TestClient::connect(&json.gateway_nodes[0].client_listener, &bob, gw).await.unwrap();
    let mut a = TestClient::connect(&json.gateway_nodes[0].client_listener, &alice, gw).await.unwrap();
    let mut sent = Vec::new();
    for i in 0..10u8 {
        let msg = vec![i; 1500];
        let epoch = topo.epoch_at(now_ms());
        let route = topo.random_route(&mut rand::rng(), &gw, epoch).unwrap();
        a.forward(*route[0].address.as_bytes(), build_frame(&msg, &route, &PublicKey::from(&bob), &[5, 5, 5, 5], epoch)).await;
        sent.push(msg);
    }
    let mut got = b.recv_deliveries(10, Duration::from_secs(10)).await;
    got.sort();
    assert_eq!(got, sent);
    a.close().await;
    b.close().await;

    // SIGTERM stops every node cleanly (exit status 0) and promptly
    for c in &procs.0 {
        assert!(Command::new("kill").arg("-TERM").arg(c.id().to_string()).status().unwrap().success());
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    for c in &mut procs.0 {
        let status = loop {
            if let Some(st) = c.try_wait().unwrap() {
                break st;
            }
            assert!(Instant::now() < deadline, "a node did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "{status}");
    }
}
