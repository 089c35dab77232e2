//! Issue 12's attack, against the real binaries: packets captured on their
//! way to a mixnode (or a gateway) are sent again after the node restarts.
//! A clean restart (SIGTERM) keeps the key and its replay filter: every
//! replay is dropped and counted as `replayed` on `/metrics`. After a crash
//! (SIGKILL) the filters on disk may miss tags: the node rotates its keys
//! early, and the replays open nothing at all.

mod common;

use common::*;
use nym_wire::epoch::{epoch_at, DEFAULT_EPOCH_SECS};
use std::io::BufRead;
use std::sync::{Arc, Mutex};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use sphinx_packet::route::Node;
use x25519_dalek::PublicKey;

const T: Duration = Duration::from_secs(10);
const PACKETS: u64 = 40;

/// The address after `label` in a start line (`... metrics http://ADDR/metrics`
/// reads as ADDR).
fn addr_after(line: &str, label: &str) -> SocketAddr {
    let word = word_after(line, label);
    let word = word.trim_start_matches("http://").trim_end_matches("/metrics");
    word.parse().unwrap_or_else(|e| panic!("{label} {word:?}: {e}"))
}

/// A node process and everything it wrote on stdout (its start line and
/// its log).
struct NodeProcess {
    child: Child,
    out: Arc<Mutex<Vec<String>>>,
}

impl NodeProcess {
    fn log(&self) -> String {
        self.out.lock().unwrap().join("\n")
    }
}

/// Starts `bin` with `args`; returns it and its start line (the one
/// beginning with `prefix`, naming its keys).
fn start(bin: &str, args: &[String], prefix: &str) -> (NodeProcess, String) {
    let mut child = Command::new(bin)
        .args(args)
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let lines = std::io::BufReader::new(child.stdout.take().unwrap());
    let out: Arc<Mutex<Vec<String>>> = Arc::default();
    let (tx, rx) = std::sync::mpsc::channel();
    let kept = out.clone();
    let prefix = prefix.to_string();
    std::thread::spawn(move || {
        for line in lines.lines().map_while(Result::ok) {
            if line.starts_with(&prefix) {
                let _ = tx.send(line.clone());
            }
            kept.lock().unwrap().push(line);
        }
    });
    let line = rx.recv_timeout(T).expect("the node printed its start line");
    (NodeProcess { child, out }, line)
}

fn sigterm(node: &mut NodeProcess) {
    let _ = Command::new("kill").arg("-TERM").arg(node.child.id().to_string()).status();
    let status = node.child.wait().unwrap();
    assert!(status.success(), "a clean stop: {status}");
}

fn sigkill(node: &mut NodeProcess) {
    node.child.kill().unwrap();
    let _ = node.child.wait();
}

/// The word after `label` in a start line (`... key KEY ...`).
fn word_after(line: &str, label: &str) -> String {
    let mut words = line.split_whitespace();
    words.find(|w| *w == label);
    words.next().unwrap_or_else(|| panic!("no {label} in {line:?}")).to_string()
}

fn key(b58: &str) -> PublicKey {
    PublicKey::from(nym_wire::address::decode_key(b58, "sphinx key").unwrap())
}

/// `nym_packets_dropped_total{reason}` as the node reports it now.
async fn dropped_now(addr: SocketAddr, reason: &str) -> u64 {
    dropped(&scrape(addr).await, reason)
}

/// The same, once it has reached `want` (or the wait is over).
async fn dropped_once(addr: SocketAddr, reason: &str, want: u64) -> u64 {
    dropped(&scrape_until(addr, |s| dropped(s, reason) == want).await, reason)
}

/// What an observer captured on its way into the first hop of `route`
/// (built for the binaries' default epoch length): `PACKETS` frames.
fn captured(route: &[Node], delays_ms: &[u64]) -> Vec<u8> {
    let epoch = epoch_at(now_ms(), DEFAULT_EPOCH_SECS * 1000);
    (0..PACKETS).flat_map(|i| build_frame(&i.to_be_bytes(), route, &PublicKey::from(&random_secret()), delays_ms, epoch)).collect()
}

async fn wait_listening(addr: SocketAddr) {
    assert!(
        wait_until(T, || std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok()).await,
        "{addr} never listened"
    );
}

fn mixnode_args(data: &Path, listen: SocketAddr, metrics: SocketAddr) -> Vec<String> {
    ["--layer", "1", "--listen", &listen.to_string(), "--metrics", &metrics.to_string(), "--workers", "1"]
        .iter()
        .map(|s| s.to_string())
        .chain(["--data-dir".to_string(), data.display().to_string()])
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_replayed_after_a_mixnode_restart_are_dropped_and_after_a_crash_open_nothing() {
    let data = tempfile::tempdir().unwrap();
    let sink = Sink::start(false).await;
    let bin = env!("CARGO_BIN_EXE_nym-mixnode");
    const PREFIX: &str = "mixnode layer";

    // The first start binds port 0 and says where it listens; the restarts
    // listen there again (the captured packets are addressed to it).
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let (mut mixnode, line) = start(bin, &mixnode_args(data.path(), any, any), PREFIX);
    // `mixnode layer 1 ADDR key KEY identity ID metrics URL`
    let (listen, metrics_addr) = (addr_after(&line, "1"), addr_after(&line, "metrics"));
    let args = mixnode_args(data.path(), listen, metrics_addr);
    let sphinx = key(&word_after(&line, "key"));
    wait_listening(listen).await;
    // What an observer captured on the link into the mixnode.
    let captured = captured(&[node(listen, sphinx), node(sink.addr, PublicKey::from(&random_secret()))], &[0, 0]);
    send_tcp(listen, &captured).await;
    assert!(wait_until(T, || sink.count() == PACKETS).await, "forwarded once: {}", sink.count());

    // A clean restart: the same key, its filter read back.
    sigterm(&mut mixnode);
    let (mut mixnode, line) = start(bin, &args, PREFIX);
    assert_eq!(key(&word_after(&line, "key")), sphinx, "the key survives a clean restart");
    wait_listening(listen).await;
    send_tcp(listen, &captured).await;
    assert_eq!(dropped_once(metrics_addr, "replayed", PACKETS).await, PACKETS);
    assert_eq!(sink.count(), PACKETS, "no replay went on");

    // A crash: no clean-stop mark, so the filter on disk may miss tags: the key
    // is rotated early; the captured packets are built for a key that no
    // longer exists.
    sigkill(&mut mixnode);
    let (mut mixnode, line) = start(bin, &args, PREFIX);
    assert_ne!(key(&word_after(&line, "key")), sphinx, "rotated early after the crash");
    wait_listening(listen).await;
    send_tcp(listen, &captured).await;
    assert_eq!(dropped_once(metrics_addr, "malformed", PACKETS).await, PACKETS);
    assert_eq!(dropped_now(metrics_addr, "replayed").await, 0);
    assert_eq!(sink.count(), PACKETS);
    sigterm(&mut mixnode);
    let log = mixnode.log();
    assert!(log.contains("did not stop cleanly") && log.contains("rotated early"), "the node said why: {log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_replayed_after_a_gateway_restart_are_dropped_and_counted() {
    let data = tempfile::tempdir().unwrap();
    let gateway_args = |mix: &str, metrics: &str| -> Vec<String> {
        ["--mix-listen", mix, "--clients-listen", "127.0.0.1:0", "--metrics", metrics, "--data-dir"]
            .iter()
            .map(|s| s.to_string())
            .chain([data.path().display().to_string()])
            .collect()
    };
    let bin = env!("CARGO_BIN_EXE_nym-gateway");
    const PREFIX: &str = "gateway identity";
    // port 0 first; the restart listens where the first start did
    let (mut gw, line) = start(bin, &gateway_args("127.0.0.1:0", "127.0.0.1:0"), PREFIX);
    let (mix, metrics_addr) = (addr_after(&line, "mixnet"), addr_after(&line, "metrics"));
    let args = gateway_args(&mix.to_string(), &metrics_addr.to_string());
    let sphinx = key(&word_after(&line, "sphinx"));
    wait_listening(mix).await;
    // Final hops for a client the gateway doesn't know: dropped as
    // unknown_client the first time, after the replay check.
    let captured = captured(&[node(mix, sphinx)], &[0]);
    send_tcp(mix, &captured).await;
    assert_eq!(dropped_once(metrics_addr, "unknown_client", PACKETS).await, PACKETS);

    sigterm(&mut gw);
    let (mut gw, line) = start(bin, &args, PREFIX);
    assert_eq!(key(&word_after(&line, "sphinx")), sphinx);
    wait_listening(mix).await;
    send_tcp(mix, &captured).await;
    assert_eq!(dropped_once(metrics_addr, "replayed", PACKETS).await, PACKETS);
    assert_eq!(dropped_now(metrics_addr, "unknown_client").await, 0, "nothing got past the filter");
    sigterm(&mut gw);
}
