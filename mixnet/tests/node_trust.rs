//! Nodes believe only topologies signed by their directory key (pinned, or
//! trusted on first use and kept) or by a threshold of their authorities: a
//! mixnode forwards only to next hops its verified topology lists, a gateway
//! lets clients into layer-1 mixnodes of a verified topology only. With
//! several authorities a node fails over from one that is down or serves a
//! refused document, keeps the last good document until it expires, then
//! says it has none, and recovers when an authority returns. It takes the
//! key epoch length from the document.

mod common;

use common::*;
use nym_mixnet::http::DirectoryClient;
use nym_mixnet::{DirectoryConfig, DirectoryHandle, Gateway, GatewayConfig, Mixnode, MixnodeConfig};
use nym_wire::address::encode_key;
use nym_wire::gateway::GatewayResponse;
use nym_wire::topology::encode_node_address;
use std::path::Path;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use x25519_dalek::{PublicKey, StaticSecret};

const T: Duration = Duration::from_secs(10);

async fn directory(data: &Path) -> DirectoryHandle {
    let mut c = DirectoryConfig::new(data);
    c.listen = "127.0.0.1:0".parse().unwrap();
    // the tests announce made-up identities
    c.open = true;
    nym_mixnet::start_directory(c).await.unwrap()
}

/// Keeps announcing a complete network around the nodes under test: layer-1
/// and layer-2 mixnodes at `layer1` and `layer2` (sinks, or nothing), a
/// layer-3 mixnode and a gateway at loopback addresses nobody listens on.
fn keep_announcing(dir: &DirectoryHandle, layer1: &str, layer2: std::net::SocketAddr, cancel: CancellationToken) {
    let layer1 = layer1.to_string();
    let client = DirectoryClient::new(&dir.url()).unwrap();
    tokio::spawn(async move {
        while !cancel.is_cancelled() {
            let seq = now_ms();
            let _ = client
                .post_json("/api/presence/mixnodes", &signed_mix(&identity(41), 1, &layer1, seq))
                .await;
            let _ = client
                .post_json(
                    "/api/presence/mixnodes",
                    &signed_mix(&identity(42), 2, &layer2.to_string(), seq),
                )
                .await;
            let _ = client
                .post_json(
                    "/api/presence/mixnodes",
                    &signed_mix(&identity(43), 3, "127.0.0.43:1", seq),
                )
                .await;
            let g = signed_gateway(&identity(44), "127.0.0.44:1", "127.0.0.44:2", seq);
            let _ = client.post_json("/api/presence/gateways", &g).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
}

fn packet_via(first: &Mixnode, next: std::net::SocketAddr) -> Vec<u8> {
    let route = [
        node(first.announce_addr(), first.public_key()),
        node(next, PublicKey::from(&StaticSecret::from([42; 32]))),
        node(
            "127.0.0.43:1".parse().unwrap(),
            PublicKey::from(&StaticSecret::from([43; 32])),
        ),
    ];
    build_frame(
        b"hello",
        &route,
        &PublicKey::from(&random_secret()),
        &[0, 0, 0],
        first.sphinx_keys().current_epoch(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixnode_forwards_only_to_listed_next_hops_and_keeps_the_key_it_trusted_first() {
    let data = tempfile::tempdir().unwrap();
    let dir = directory(&data.path().join("directory")).await;
    let (listed, rogue) = (Sink::start(false).await, Sink::start(false).await);
    let cancel = CancellationToken::new();
    keep_announcing(&dir, "127.0.0.41:1", listed.addr, cancel.clone());

    // no pinned key: the first verified document's key is trusted and kept
    let node_dir = data.path().join("mix");
    let mut c = MixnodeConfig::new(1, &node_dir);
    c.listen = "127.0.0.1:0".parse().unwrap();
    c.directory = Some(dir.url());
    c.announce_interval = Duration::from_millis(200);
    c.topology_refresh = Duration::from_millis(200);
    c.workers = 1;
    let mix = Mixnode::start(c.clone()).await.unwrap();
    assert!(
        wait_until(T, || mix.directory_key().is_some()).await,
        "never verified a topology"
    );
    assert_eq!(mix.directory_key(), Some(dir.directory_key()));
    let saved = std::fs::read_to_string(node_dir.join("directory_key.txt")).unwrap();
    assert_eq!(saved.trim(), encode_key(&dir.directory_key()));

    send_tcp(mix.listen_addr(), &packet_via(&mix, rogue.addr)).await;
    send_tcp(mix.listen_addr(), &packet_via(&mix, listed.addr)).await;
    let stats = mix.stats();
    assert!(
        wait_until(T, || listed.count() == 1 && stats.snapshot().dropped_unlisted_hop == 1).await,
        "{}",
        stats.snapshot()
    );
    assert_eq!(rogue.count(), 0);
    mix.shutdown().await;

    // another directory (another key) lists the rogue sink: the restarted
    // node, which kept the first key, believes none of it, and so never
    // learns a key epoch length from it: it does not start
    let impostor = directory(&data.path().join("impostor")).await;
    keep_announcing(&impostor, "127.0.0.41:1", rogue.addr, cancel.clone());
    c.directory = Some(impostor.url());
    assert!(
        tokio::time::timeout(Duration::from_secs(2), Mixnode::start(c))
            .await
            .is_err(),
        "started on an impostor's document"
    );
    assert_eq!(rogue.count(), 0);
    cancel.cancel();
    dir.shutdown().await;
    impostor.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_with_a_pinned_key_refuses_an_impostors_first_hops() {
    let data = tempfile::tempdir().unwrap();
    let real = directory(&data.path().join("directory")).await;
    let impostor = directory(&data.path().join("impostor")).await;
    let cancel = CancellationToken::new();
    let sink = Sink::start(false).await;
    let unused = "127.0.0.42:1".parse().unwrap();
    // both list the sink as a layer-1 mixnode
    keep_announcing(&impostor, &sink.addr.to_string(), unused, cancel.clone());
    keep_announcing(&real, &sink.addr.to_string(), unused, cancel.clone());

    for (name, url, allowed) in [
        ("pinned-real", real.url(), true),
        ("pinned-elsewhere", impostor.url(), false),
    ] {
        let mut c = GatewayConfig::new(data.path().join(name));
        c.mix_listen = "127.0.0.1:0".parse().unwrap();
        c.clients_listen = "127.0.0.1:0".parse().unwrap();
        c.directory = Some(url);
        c.directory_key = Some(real.directory_key());
        c.announce_interval = Duration::from_millis(200);
        c.topology_refresh = Duration::from_millis(200);
        c.workers = 1;
        if !allowed {
            // it never verifies the impostor's document, so never learns the key epoch length: it does not start
            assert!(
                tokio::time::timeout(Duration::from_secs(2), Gateway::start(c))
                    .await
                    .is_err(),
                "{name} started"
            );
            continue;
        }
        let gw = Gateway::start(c).await.unwrap();
        let mut client = TestClient::connect(&gw.client_listener_url(), &random_secret(), gw.identity_key())
            .await
            .unwrap();
        let before = sink.count();
        let frame = build_frame(
            b"x",
            &[node(sink.addr, PublicKey::from(&random_secret()))],
            &PublicKey::from(&random_secret()),
            &[0],
            0,
        );
        client.forward(*encode_node_address(sink.addr).as_bytes(), frame).await;
        if allowed {
            assert!(
                wait_until(T, || sink.count() == before + 1).await,
                "{name}: a listed first hop got nothing"
            );
        } else {
            match client.recv(T).await {
                Some(GatewayResponse::Refused { next_hop, .. }) => {
                    assert_eq!(next_hop, *encode_node_address(sink.addr).as_bytes())
                }
                other => panic!("{name}: an impostor's first hop was not refused: {other:?}"),
            }
            assert_eq!(sink.count(), before);
        }
        assert_eq!(gw.directory_key(), Some(real.directory_key()));
        client.close().await;
        gw.shutdown().await;
    }
    cancel.cancel();
    real.shutdown().await;
    impostor.shutdown().await;
}

// ---- several authorities: failover, refusals, expiry, the epoch length ----

use ed25519_dalek::SigningKey;
use nym_mixnet::node::TopologyState;
use nym_wire::authority::{Authorities, Authority};
use nym_wire::topology::TopologyJson;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What a [`FakeAuthority`] does with a request.
#[derive(Clone)]
enum Mode {
    /// Closes every connection unanswered (as a crashed authority behind a proxy would).
    Down,
    /// Answers `GET /api/presence/topology` with this text, and any other request with `{}`.
    Serve(String),
}

/// A small HTTP authority on 127.0.0.1 serving whatever document the test sets.
struct FakeAuthority {
    url: String,
    mode: Arc<Mutex<Mode>>,
    topology_requests: Arc<AtomicU64>,
    cancel: CancellationToken,
}

impl FakeAuthority {
    async fn start() -> FakeAuthority {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let mode = Arc::new(Mutex::new(Mode::Down));
        let topology_requests = Arc::new(AtomicU64::new(0));
        let cancel = CancellationToken::new();
        let (m, n, c) = (mode.clone(), topology_requests.clone(), cancel.clone());
        tokio::spawn(async move {
            loop {
                let (mut conn, _) = tokio::select! {
                    _ = c.cancelled() => return,
                    r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
                };
                let (m, n) = (m.clone(), n.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(k) => head.extend_from_slice(&buf[..k]),
                        }
                    }
                    let topology = head.starts_with(b"GET /api/presence/topology");
                    if topology {
                        n.fetch_add(1, Ordering::Relaxed);
                    }
                    let mode = m.lock().unwrap().clone();
                    let Mode::Serve(doc) = mode else { return };
                    let body = if topology { doc } else { "{}".to_string() };
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(answer.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        FakeAuthority {
            url,
            mode,
            topology_requests,
            cancel,
        }
    }

    fn serve(&self, doc: &TopologyJson) {
        *self.mode.lock().unwrap() = Mode::Serve(serde_json::to_string(doc).unwrap());
    }

    fn down(&self) {
        *self.mode.lock().unwrap() = Mode::Down;
    }

    fn requests(&self) -> u64 {
        self.topology_requests.load(Ordering::Relaxed)
    }
}

impl Drop for FakeAuthority {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn authority_key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

/// Authorities `keys` at `urls`, a majority needed.
fn authorities(keys: &[&SigningKey], urls: &[&str]) -> Authorities {
    let list = keys
        .iter()
        .zip(urls)
        .map(|(k, u)| Authority {
            key: k.verifying_key().to_bytes(),
            url: u.to_string(),
        })
        .collect();
    Authorities::new(list, None).unwrap()
}

/// A complete network (a mixnode per layer at unused loopback addresses, a
/// gateway) issued at `issued_at`, valid `validity_ms`, with key epochs of
/// `epoch_secs`; unsigned. `nodes: false`: no nodes (a network starting).
fn document(issued_at: u64, validity_ms: u64, epoch_secs: u64, nodes: bool) -> TopologyJson {
    let (mix_nodes, gateway_nodes) = if nodes {
        (
            (1..=3u8)
                .map(|l| signed_mix(&identity(40 + l), l, &format!("127.0.0.{}:1", 40 + l), issued_at))
                .collect(),
            vec![signed_gateway(&identity(44), "127.0.0.44:1", "127.0.0.44:2", issued_at)],
        )
    } else {
        (Vec::new(), Vec::new())
    };
    TopologyJson {
        mix_nodes,
        gateway_nodes,
        epoch_length_secs: epoch_secs,
        round: issued_at / 1000,
        issued_at,
        expires_at: issued_at + validity_ms,
        ..TopologyJson::default()
    }
}

/// `doc` signed by each of `by`, served by the first.
fn signed(mut doc: TopologyJson, by: &[&SigningKey]) -> TopologyJson {
    doc.served_by = encode_key(by[0].verifying_key().as_bytes());
    for k in by {
        doc.sign(k);
    }
    doc
}

const DAY: u64 = nym_wire::epoch::DEFAULT_EPOCH_SECS;

fn mixnode_config(data: &Path, authorities: Authorities) -> MixnodeConfig {
    let mut c = MixnodeConfig::new(1, data);
    c.listen = "127.0.0.1:0".parse().unwrap();
    c.authorities = Some(authorities);
    c.announce_interval = Duration::from_millis(200);
    c.topology_refresh = Duration::from_millis(200);
    c.workers = 1;
    c.metrics = Some("127.0.0.1:0".parse().unwrap());
    c
}

fn issued(state: Option<TopologyState>) -> Option<u64> {
    match state {
        Some(TopologyState::Current { issued_at, .. }) => Some(issued_at),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_two_authorities_one_down_fails_over_and_is_listed() {
    let data = tempfile::tempdir().unwrap();
    let dir = directory(&data.path().join("directory")).await;
    let cancel = CancellationToken::new();
    keep_announcing(&dir, "127.0.0.41:1", "127.0.0.42:1".parse().unwrap(), cancel.clone());
    // the first authority listed is down (nothing listens on port 1); one signature suffices
    let list = vec![
        Authority {
            key: authority_key(90).verifying_key().to_bytes(),
            url: "http://127.0.0.1:1".into(),
        },
        Authority {
            key: dir.directory_key(),
            url: dir.url(),
        },
    ];
    let authorities = Authorities::new(list, Some(1)).unwrap();
    let mix = Mixnode::start(mixnode_config(&data.path().join("mix"), authorities.clone()))
        .await
        .unwrap();
    assert_eq!(mix.authorities(), Some(authorities));
    assert!(
        wait_until(T, || matches!(mix.topology_state(), Some(TopologyState::Current { ref authority, .. }) if *authority == dir.url()))
            .await,
        "{:?}",
        mix.topology_state()
    );
    // its announcement reached the authority that is up
    let me = mix.identity_key_b58();
    let listed = || dir.state.topology().mix_nodes.iter().any(|m| m.identity_key == me);
    assert!(wait_until(T, listed).await, "the node was never listed");
    let samples = scrape(mix.metrics_addr().unwrap()).await;
    assert_eq!(val(&samples, "nym_topology_authority", &[("url", &dir.url())]), 1);
    assert_eq!(
        val(&samples, "nym_topology_authority", &[("url", "http://127.0.0.1:1")]),
        0
    );
    assert_eq!(val(&samples, "nym_topology_current", &[]), 1);
    // a fetch that started at the authority that is down moved on to the next
    assert!(wait_until(T, || mix.topology_state().is_some()).await);
    cancel.cancel();
    mix.shutdown().await;
    dir.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_documents_keep_the_last_good_one_and_the_node_fails_over() {
    let data = tempfile::tempdir().unwrap();
    let (a, b) = (FakeAuthority::start().await, FakeAuthority::start().await);
    let (k1, k2, k3, stranger) = (
        authority_key(91),
        authority_key(92),
        authority_key(93),
        authority_key(99),
    );
    // three authorities, two of them needed; the third is down
    let auth = authorities(&[&k1, &k2, &k3], &[&a.url, &b.url, "http://127.0.0.1:1"]);
    let t0 = now_ms() - 5_000;
    let good = signed(document(t0, 120_000, DAY, true), &[&k1, &k2]);
    a.serve(&good);
    b.serve(&good);
    let mix = Mixnode::start(mixnode_config(&data.path().join("mix"), auth))
        .await
        .unwrap();
    assert!(
        wait_until(T, || issued(mix.topology_state()) == Some(t0)).await,
        "{:?}",
        mix.topology_state()
    );
    let metrics = mix.metrics_addr().unwrap();

    let one = signed(document(t0 + 1000, 120_000, DAY, true), &[&k1]);
    let unpinned = signed(document(t0 + 2000, 120_000, DAY, true), &[&k1, &stranger]);
    let mut repeated = signed(document(t0 + 3000, 120_000, DAY, true), &[&k1, &k2]);
    let again = repeated.signatures[0].clone();
    repeated.signatures.push(again);
    let replayed = signed(document(t0 - 1000, 120_000, DAY, true), &[&k1, &k2]);
    for (name, bad, reason) in [
        ("one signature", &one, "signatures"),
        ("a signature by an unpinned key", &unpinned, "signatures"),
        ("a signature repeated", &repeated, "signatures"),
        ("an older document replayed", &replayed, "replayed"),
    ] {
        let before = scrape(metrics).await;
        let (refused, failovers) = (
            val(&before, "nym_topology_refused_total", &[("reason", reason)]),
            val(&before, "nym_topology_failovers_total", &[]),
        );
        a.serve(bad);
        b.serve(bad);
        // both authorities that answer are asked and refused: the node moved on from the first
        let after = scrape_until(metrics, |s| {
            get(s, "nym_topology_refused_total", &[("reason", reason)]).is_some_and(|n| n >= refused + 2)
                && get(s, "nym_topology_failovers_total", &[]).is_some_and(|n| n >= failovers + 2)
        })
        .await;
        assert!(
            val(&after, "nym_topology_refused_total", &[("reason", reason)]) >= refused + 2,
            "{name}"
        );
        assert_eq!(
            issued(mix.topology_state()),
            Some(t0),
            "{name}: the last good document is kept"
        );
        assert_eq!(val(&after, "nym_topology_current", &[]), 1, "{name}");
    }

    // one authority keeps serving a refused document, the other a newer good one: the node fails over to it
    let newer = signed(document(t0 + 4000, 120_000, DAY, true), &[&k2, &k1]);
    a.serve(&one);
    b.serve(&newer);
    assert!(
        wait_until(T, || issued(mix.topology_state()) == Some(t0 + 4000)).await,
        "{:?}",
        mix.topology_state()
    );
    match mix.topology_state() {
        Some(TopologyState::Current { authority, .. }) => assert_eq!(authority, b.url),
        other => panic!("{other:?}"),
    }
    let samples = scrape(metrics).await;
    assert_eq!(val(&samples, "nym_topology_authority", &[("url", &b.url)]), 1);
    assert_eq!(val(&samples, "nym_topology_authority", &[("url", &a.url)]), 0);
    mix.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_authority_down_the_last_document_lasts_until_it_expires_then_the_node_recovers() {
    let data = tempfile::tempdir().unwrap();
    let (a, b) = (FakeAuthority::start().await, FakeAuthority::start().await);
    let (k1, k2) = (authority_key(94), authority_key(95));
    let auth = authorities(&[&k1, &k2], &[&a.url, &b.url]);
    // a document that expires in 3 s
    let t0 = now_ms() - 1000;
    let short = signed(document(t0, 4000, DAY, true), &[&k1, &k2]);
    a.serve(&short);
    b.serve(&short);
    let mix = Mixnode::start(mixnode_config(&data.path().join("mix"), auth))
        .await
        .unwrap();
    assert!(
        wait_until(T, || issued(mix.topology_state()) == Some(t0)).await,
        "{:?}",
        mix.topology_state()
    );
    a.down();
    b.down();
    let (ra, rb) = (a.requests(), b.requests());
    // still in use while both are down (asked, and failing)
    assert!(wait_until(T, || a.requests() > ra && b.requests() > rb).await);
    assert!(now_ms() < t0 + 4000, "the test machine is too slow for a 4 s document");
    assert_eq!(issued(mix.topology_state()), Some(t0));
    // then it expires: no current topology
    assert!(
        wait_until(T, || mix.topology_state()
            == Some(TopologyState::Expired { expired_at: t0 + 4000 }))
        .await,
        "{:?}",
        mix.topology_state()
    );
    let samples = scrape(mix.metrics_addr().unwrap()).await;
    assert_eq!(val(&samples, "nym_topology_current", &[]), 0);
    // and a packet to a hop of the expired document goes nowhere
    let stats = mix.stats();
    let sink = Sink::start(false).await;
    send_tcp(mix.listen_addr(), &packet_via(&mix, "127.0.0.42:1".parse().unwrap())).await;
    assert!(
        wait_until(T, || stats.snapshot().dropped_unlisted_hop == 1).await,
        "{}",
        stats.snapshot()
    );
    assert_eq!(sink.count(), 0);

    // one authority returns: service resumes, no restart
    let t1 = now_ms();
    b.serve(&signed(document(t1, 60_000, DAY, true), &[&k1, &k2]));
    assert!(
        wait_until(T, || issued(mix.topology_state()) == Some(t1)).await,
        "{:?}",
        mix.topology_state()
    );
    let samples = scrape(mix.metrics_addr().unwrap()).await;
    assert_eq!(val(&samples, "nym_topology_current", &[]), 1);
    mix.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_takes_the_key_epoch_length_from_the_document_and_waits_for_one() {
    let data = tempfile::tempdir().unwrap();
    let a = FakeAuthority::start().await;
    let k = authority_key(96);
    let auth = authorities(&[&k], &[&a.url]);
    // nothing to fetch yet: the node waits, asking again
    let start = tokio::spawn(Mixnode::start(mixnode_config(&data.path().join("mix"), auth.clone())));
    assert!(wait_until(T, || a.requests() >= 2).await);
    assert!(!start.is_finished());
    // a network with no nodes yet, with two-hour key epochs
    let doc = signed(document(now_ms() - 1000, 60_000, 7200, false), &[&k]);
    a.serve(&doc);
    let mix = tokio::time::timeout(T, start)
        .await
        .expect("started once a document came")
        .unwrap()
        .unwrap();
    assert_eq!(mix.sphinx_keys().settings().epoch_secs, 7200);
    assert_eq!(
        mix.sphinx_keys().current_epoch(),
        nym_wire::epoch::epoch_at(now_ms(), 7_200_000)
    );
    mix.shutdown().await;

    // an operator who expects another length is told, and the node does not start
    let mut c = mixnode_config(&data.path().join("mix2"), auth);
    c.expected_epoch_secs = Some(3600);
    let e = format!("{:#}", Mixnode::start(c).await.err().expect("refused"));
    assert!(e.contains("--epoch-secs 3600") && e.contains("7200"), "{e}");
}
