//! Every node's `GET /metrics` reports what the test did to it, in
//! Prometheus text format; the endpoint itself is bounded and answers
//! nothing but `GET /metrics`.

mod common;

use common::*;
use nym_mixnet::directory::{start_directory, DirectoryConfig};
use nym_mixnet::localnet::{Localnet, LocalnetConfig};
use nym_mixnet::metrics;
use nym_mixnet::{Gateway, GatewayConfig, Mixnode, MixnodeConfig, StatsSnapshot};
use nym_wire::mix_frame::PacketSize;
use nym_wire::topology::Topology;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use x25519_dalek::PublicKey;

const T: Duration = Duration::from_secs(10);

fn loopback0() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A layer-1 mixnode on free loopback ports, serving metrics.
async fn mixnode_with_metrics(dir: &std::path::Path) -> Mixnode {
    let mut c = MixnodeConfig::new(1, dir);
    c.listen = loopback0();
    c.metrics = Some(loopback0());
    Mixnode::start(c).await.unwrap()
}

/// Every counter of `s` is what the endpoint says.
fn matches_stats(samples: &[Sample], s: &StatsSnapshot) {
    assert_eq!(val(samples, "nym_packets_received_total", &[]), s.received);
    assert_eq!(val(samples, "nym_packets_forwarded_total", &[]), s.forwarded);
    assert_eq!(val(samples, "nym_bad_connections_total", &[]), s.bad_connections);
    assert_eq!(val(samples, "nym_sphinx_key_epoch", &[]), s.epoch);
    let want = [
        ("malformed", s.dropped_malformed),
        ("replayed", s.dropped_replayed),
        ("no_route", s.dropped_no_route),
        ("unknown_client", s.dropped_unknown_client),
        ("queue_full", s.dropped_queue_full),
        ("limit", s.dropped_limit),
        ("unlisted_hop", s.dropped_unlisted_hop),
        ("peer_down", s.dropped_peer_down),
        ("retired_key", s.dropped_retired_key),
    ];
    for (reason, n) in want {
        assert_eq!(dropped(samples, reason), n, "reason {reason}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixnode_reports_the_garbage_replays_and_packets_it_was_sent() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(false).await;
    let mix = mixnode_with_metrics(dir.path()).await;
    let addr = mix.metrics_addr().expect("metrics on");
    assert!(addr.ip().is_loopback() && addr.port() != 0);
    let before = scrape(addr).await;
    assert_eq!(
        val(
            &before,
            "nym_node_info",
            &[("role", "mixnode"), ("version", nym_wire::VERSION)]
        ),
        1
    );
    assert_eq!(val(&before, "nym_mixnode_layer", &[]), 1);
    for reason in nym_mixnet::node::DROP_REASONS {
        assert_eq!(dropped(&before, reason), 0, "{reason}");
    }
    assert_eq!(val(&before, "nym_packets_received_total", &[]), 0);

    // 3 well-framed packets of junk, 1 truncated frame, 1 unknown flag: 5 malformed
    const JUNK: u64 = 3;
    for k in 0..JUNK {
        let mut junk = vec![PacketSize::Regular.flag()];
        junk.extend(mix.sphinx_keys().current_epoch().to_be_bytes());
        junk.extend((0..PacketSize::Regular.packet_len()).map(|i| (i as u64 * 7 + k) as u8));
        send_tcp(mix.listen_addr(), &junk).await;
    }
    let sink_key = PublicKey::from(&random_secret());
    let route = [node(mix.listen_addr(), mix.public_key()), node(sink.addr, sink_key)];
    let good = build_frame(b"through", &route, &sink_key, &[0, 0], mix.sphinx_keys().current_epoch());
    send_tcp(mix.listen_addr(), &good[..1000]).await;
    send_tcp(mix.listen_addr(), &[0xEE; 100]).await;
    // one good packet, then its replay
    send_tcp(mix.listen_addr(), &good).await;
    send_tcp(mix.listen_addr(), &good).await;
    assert!(wait_until(T, || sink.count() == 1).await);

    let stats = mix.stats();
    let samples = scrape_until(addr, |s| {
        dropped(s, "malformed") == JUNK + 2 && dropped(s, "replayed") == 1
    })
    .await;
    assert_eq!(dropped(&samples, "malformed"), JUNK + 2);
    assert_eq!(dropped(&samples, "replayed"), 1);
    assert_eq!(val(&samples, "nym_packets_forwarded_total", &[]), 1);
    assert_eq!(
        val(&samples, "nym_packets_received_total", &[]),
        JUNK + 2,
        "3 junk packets, the good one and its replay"
    );
    assert_eq!(val(&samples, "nym_bad_connections_total", &[]), 1);
    assert_eq!(dropped(&samples, "no_route"), 0);
    // exactly what the node's own counters say
    matches_stats(&samples, &stats.snapshot());
    // the scrape counts itself among the metrics connections
    assert!(val(&samples, "nym_metrics_open_connections", &[]) >= 1);
    mix.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixnodes_peer_connections_are_counted_while_open() {
    let dir = tempfile::tempdir().unwrap();
    let mix = mixnode_with_metrics(dir.path()).await;
    let addr = mix.metrics_addr().unwrap();
    assert_eq!(
        val(&scrape(addr).await, "nym_open_connections", &[("kind", "peer_out")]),
        0
    );

    // a next hop that accepts one connection, then goes away
    let next = TcpListener::bind(loopback0()).await.unwrap();
    let next_key = PublicKey::from(&random_secret());
    let route = [
        node(mix.listen_addr(), mix.public_key()),
        node(next.local_addr().unwrap(), next_key),
    ];
    send_tcp(mix.listen_addr(), &build_frame(b"x", &route, &next_key, &[0, 0], mix.sphinx_keys().current_epoch())).await;
    let (peer, _) = tokio::time::timeout(T, next.accept()).await.unwrap().unwrap();
    let open = scrape_until(addr, |s| {
        get(s, "nym_open_connections", &[("kind", "peer_out")]) == Some(1)
    })
    .await;
    assert_eq!(val(&open, "nym_open_connections", &[("kind", "peer_out")]), 1);
    assert_eq!(mix.stats().open_connections(nym_mixnet::Conn::PeerOut), 1);

    drop(peer);
    drop(next);
    let closed = scrape_until(addr, |s| {
        get(s, "nym_open_connections", &[("kind", "peer_out")]) == Some(0)
    })
    .await;
    assert_eq!(val(&closed, "nym_open_connections", &[("kind", "peer_out")]), 0);
    mix.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixnodes_inbound_connections_are_counted_while_open() {
    let dir = tempfile::tempdir().unwrap();
    let mix = mixnode_with_metrics(dir.path()).await;
    let addr = mix.metrics_addr().unwrap();
    let kind = [("kind", "mix_in")];
    assert_eq!(val(&scrape(addr).await, "nym_open_connections", &kind), 0);
    let conns = [
        TcpStream::connect(mix.listen_addr()).await.unwrap(),
        TcpStream::connect(mix.listen_addr()).await.unwrap(),
    ];
    let open = scrape_until(addr, |s| get(s, "nym_open_connections", &kind) == Some(2)).await;
    assert_eq!(val(&open, "nym_open_connections", &kind), 2);
    drop(conns);
    let closed = scrape_until(addr, |s| get(s, "nym_open_connections", &kind) == Some(0)).await;
    assert_eq!(val(&closed, "nym_open_connections", &kind), 0);
    mix.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_reports_its_clients_inbox_drops_and_deliveries() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = GatewayConfig::new(dir.path());
    c.mix_listen = loopback0();
    c.clients_listen = loopback0();
    c.metrics = Some(loopback0());
    c.inbox.messages_per_client = 3;
    let gw = Gateway::start(c).await.unwrap();
    let addr = gw.metrics_addr().expect("metrics on");
    let url = gw.client_listener_url();
    let (alice, bob) = (random_secret(), random_secret());
    let bob_pub = PublicKey::from(&bob);
    let first = scrape(addr).await;
    assert_eq!(
        val(
            &first,
            "nym_node_info",
            &[("role", "gateway"), ("version", nym_wire::VERSION)]
        ),
        1
    );
    assert_eq!(val(&first, "nym_gateway_registered_clients", &[]), 0);

    // alice stays connected; bob registers and goes away
    let a = TestClient::connect(&url, &alice, gw.identity_key()).await.unwrap();
    TestClient::connect(&url, &bob, gw.identity_key())
        .await
        .unwrap()
        .close()
        .await;
    let s = scrape_until(addr, |s| {
        get(s, "nym_open_connections", &[("kind", "client")]) == Some(1)
    })
    .await;
    assert_eq!(val(&s, "nym_gateway_registered_clients", &[]), 2);
    assert_eq!(val(&s, "nym_open_connections", &[("kind", "client")]), 1);
    assert_eq!(val(&s, "nym_open_connections", &[("kind", "client_authenticated")]), 1);

    // 4 for bob (his inbox takes 3), 1 for a stranger, 1 that would go on past the gateway
    let route = [node(gw.mix_addr(), gw.sphinx_key())];
    let mut bytes = Vec::new();
    for i in 0..4u8 {
        bytes.extend(build_frame(&[i; 100], &route, &bob_pub, &[0], gw.sphinx_keys().current_epoch()));
    }
    let stranger = PublicKey::from(&random_secret());
    bytes.extend(build_frame(b"nobody", &route, &stranger, &[0], gw.sphinx_keys().current_epoch()));
    let onward = [node(gw.mix_addr(), gw.sphinx_key()), node(loopback0(), stranger)];
    bytes.extend(build_frame(b"onward", &onward, &stranger, &[0, 0], gw.sphinx_keys().current_epoch()));
    send_tcp(gw.mix_addr(), &bytes).await;
    let s = scrape_until(addr, |s| {
        val(s, "nym_packets_stored_total", &[]) == 3
            && dropped(s, "limit") == 1
            && dropped(s, "unknown_client") == 1
            && dropped(s, "no_route") == 1
    })
    .await;
    assert_eq!(val(&s, "nym_packets_received_total", &[]), 6);
    assert_eq!(val(&s, "nym_packets_stored_total", &[]), 3);
    assert_eq!(
        (
            dropped(&s, "limit"),
            dropped(&s, "unknown_client"),
            dropped(&s, "no_route")
        ),
        (1, 1, 1)
    );
    assert_eq!(val(&s, "nym_gateway_inbox_messages", &[]), 3);
    let bytes_stored = val(&s, "nym_gateway_inbox_bytes", &[]);
    assert!(bytes_stored >= 300, "three payloads of 100+ bytes, got {bytes_stored}");
    assert_eq!(bytes_stored, gw.stored_bytes_total());
    assert_eq!(
        val(&s, "nym_packets_delivered_total", &[]),
        0,
        "nobody fetched anything"
    );
    matches_stats(&s, &gw.stats().snapshot());

    // bob fetches and acknowledges: delivered, the inbox is empty
    let mut b = TestClient::connect(&url, &bob, gw.identity_key()).await.unwrap();
    assert_eq!(b.stored, 3);
    assert_eq!(
        val(
            &scrape(addr).await,
            "nym_open_connections",
            &[("kind", "client_authenticated")]
        ),
        2
    );
    assert_eq!(b.recv_deliveries(3, T).await.len(), 3);
    b.ack_all().await;
    let s = scrape_until(addr, |s| val(s, "nym_packets_delivered_total", &[]) == 3).await;
    assert_eq!(val(&s, "nym_packets_delivered_total", &[]), 3);
    assert_eq!(val(&s, "nym_packets_pushed_total", &[]), 3);
    assert_eq!(
        (
            val(&s, "nym_gateway_inbox_messages", &[]),
            val(&s, "nym_gateway_inbox_bytes", &[])
        ),
        (0, 0)
    );
    assert_eq!(val(&s, "nym_gateway_registered_clients", &[]), 2);

    // both leave: no client connection is counted any more
    b.close().await;
    a.close().await;
    let s = scrape_until(addr, |s| {
        get(s, "nym_open_connections", &[("kind", "client")]) == Some(0)
    })
    .await;
    assert_eq!(val(&s, "nym_open_connections", &[("kind", "client")]), 0);
    assert_eq!(val(&s, "nym_open_connections", &[("kind", "client_authenticated")]), 0);
    gw.shutdown().await;
}

/// A directory on free loopback ports, serving metrics.
async fn directory_with_metrics(data: &std::path::Path) -> nym_mixnet::DirectoryHandle {
    let mut c = DirectoryConfig::new(data.join("directory"));
    c.listen = loopback0();
    c.metrics = Some(loopback0());
    c.open = true;
    start_directory(c).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_directory_counts_announcements_by_result_and_reason() {
    let data = tempfile::tempdir().unwrap();
    let dir = directory_with_metrics(data.path()).await;
    let addr = dir.metrics_addr().expect("metrics on");
    let http = nym_mixnet::http::DirectoryClient::new(&dir.url()).unwrap();
    let refused = |s: &[Sample], reason: &str| {
        val(
            s,
            "nym_directory_announcements_total",
            &[("result", "refused"), ("reason", reason)],
        )
    };
    let accepted = |s: &[Sample]| val(s, "nym_directory_announcements_total", &[("result", "accepted")]);

    let s = scrape(addr).await;
    assert_eq!(
        val(
            &s,
            "nym_node_info",
            &[("role", "directory"), ("version", nym_wire::VERSION)]
        ),
        1
    );
    assert_eq!(accepted(&s), 0);
    for r in nym_mixnet::directory::AnnounceRefusal::ALL {
        assert_eq!(
            refused(&s, r.label()),
            0,
            "every reason is there from the start: {}",
            r.label()
        );
    }
    assert_eq!(val(&s, "nym_directory_listed_nodes", &[("role", "mixnode")]), 0);

    let post = |body: serde_json::Value| {
        let http = http.clone();
        async move { http.announce("/api/presence/mixnodes", &body).await.expect("reachable") }
    };
    let seq = now_ms();
    let good = signed_mix(&identity(1), 1, "127.0.0.1:4001", seq);
    assert_eq!(post(serde_json::to_value(&good).unwrap()).await, Ok(()));
    // the same descriptor again: replayed (409)
    assert_eq!(
        post(serde_json::to_value(&good).unwrap()).await.unwrap_err().status,
        409
    );
    // changed after signing: bad signature (400)
    let mut forged = signed_mix(&identity(2), 1, "127.0.0.1:4002", seq);
    forged.host = "127.0.0.1:4003".into();
    assert_eq!(
        post(serde_json::to_value(&forged).unwrap()).await.unwrap_err().status,
        400
    );
    // twice not a descriptor (400)
    for _ in 0..2 {
        assert_eq!(post(serde_json::json!({"hello": 1})).await.unwrap_err().status, 400);
    }
    // signed ten minutes ago: stale (409)
    let stale = signed_mix(&identity(3), 1, "127.0.0.1:4004", seq - 600_000);
    assert_eq!(
        post(serde_json::to_value(&stale).unwrap()).await.unwrap_err().status,
        409
    );
    // over --max-body (413)
    assert_eq!(
        post(serde_json::json!({"padding": "x".repeat(5000)}))
            .await
            .unwrap_err()
            .status,
        413
    );
    // another identity on the address the first holds (409)
    let squatter = signed_mix(&identity(4), 1, "127.0.0.1:4001", seq);
    assert_eq!(
        post(serde_json::to_value(&squatter).unwrap()).await.unwrap_err().status,
        409
    );

    let s = scrape(addr).await;
    assert_eq!(accepted(&s), 1);
    let want = [
        ("replayed", 1),
        ("bad_signature", 1),
        ("bad_json", 2),
        ("stale", 1),
        ("body_too_large", 1),
        ("address_held", 1),
    ];
    for r in nym_mixnet::directory::AnnounceRefusal::ALL {
        let n = want.iter().find(|(l, _)| *l == r.label()).map_or(0, |(_, n)| *n);
        assert_eq!(refused(&s, r.label()), n, "{}", r.label());
        assert_eq!(dir.state.announcements().refused_count(r), n);
    }
    assert_eq!(val(&s, "nym_directory_listed_nodes", &[("role", "mixnode")]), 1);
    assert_eq!(val(&s, "nym_directory_listed_nodes", &[("role", "gateway")]), 0);
    dir.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_endpoint_answers_only_get_metrics_and_is_bounded() {
    let data = tempfile::tempdir().unwrap();
    let dir = directory_with_metrics(data.path()).await;
    let addr = dir.metrics_addr().unwrap();

    let (status, _, body) = http(addr, b"GET /api/presence/topology HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("GET /metrics"), "{body}");
    assert_eq!(http(addr, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").await.0, 404);
    let (status, head, _) = http(
        addr,
        b"POST /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc",
    )
    .await;
    assert_eq!(status, 405);
    assert!(head.to_ascii_lowercase().contains("allow: get"), "{head}");
    assert_eq!(http(addr, b"\x00\x01\x02 not http at all\r\n\r\n").await.0, 400);
    // a request head over MAX_REQUEST_HEAD (8 KiB)
    let huge = format!(
        "GET /metrics HTTP/1.1\r\nHost: t\r\nX-Padding: {}\r\n\r\n",
        "a".repeat(2 * metrics::MAX_REQUEST_HEAD)
    );
    let (status, _, _) = http(addr, huge.as_bytes()).await;
    assert!(
        (400..500).contains(&status),
        "an oversized head gets a 4xx, got {status}"
    );
    // HTTP/1.0 and a query string are fine
    let (status, _, body) = http(addr, b"GET /metrics?x=1 HTTP/1.0\r\n\r\n").await;
    assert_eq!(status, 200);
    exposition::parse(&body).unwrap();

    // MAX_CONNECTIONS held open (head never finished): one more is closed at once, unread
    let mut held = Vec::new();
    for _ in 0..metrics::MAX_CONNECTIONS {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /metr").await.unwrap();
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = TcpStream::connect(addr).await.unwrap();
    let _ = extra.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n").await;
    let mut buf = Vec::new();
    let read = tokio::time::timeout(T, extra.read_to_end(&mut buf))
        .await
        .expect("closed at once");
    assert!(
        read.is_err() || buf.is_empty(),
        "no answer past the cap: {}",
        String::from_utf8_lossy(&buf)
    );
    // the held ones are closed by the server within the request timeout (plus margin)
    let started = Instant::now();
    for s in &mut held {
        let mut b = Vec::new();
        let _ = tokio::time::timeout(
            metrics::CONNECTION_TIMEOUT + Duration::from_secs(2),
            s.read_to_end(&mut b),
        )
        .await
        .expect("server closes an idle connection");
    }
    assert!(started.elapsed() <= metrics::CONNECTION_TIMEOUT + Duration::from_secs(2));
    drop(held);

    // and the node lives on: the refusal was counted
    let s = scrape_until(addr, |s| get(s, "nym_metrics_open_connections", &[]) == Some(1)).await;
    assert!(val(&s, "nym_metrics_refused_connections_total", &[]) >= 1);
    assert_eq!(val(&s, "nym_metrics_open_connections", &[]), 1);
    // the directory itself was never disturbed
    assert!(nym_mixnet::http::DirectoryClient::new(&dir.url())
        .unwrap()
        .topology()
        .await
        .is_ok());
    dir.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_through_the_localnet_shows_on_every_nodes_metrics() {
    let data = tempfile::tempdir().unwrap();
    let mut net = tokio::time::timeout(
        Duration::from_secs(30),
        Localnet::start(LocalnetConfig::fast(data.path())),
    )
    .await
    .expect("localnet start timed out")
    .expect("localnet");
    // on by default, on loopback, and printed
    let describe = net.describe();
    let dir_metrics = net.directory_metrics_addr().expect("directory metrics on by default");
    let mix_metrics: Vec<SocketAddr> = net
        .mixnodes()
        .iter()
        .map(|m| m.metrics.expect("mixnode metrics"))
        .collect();
    let gw_metrics: Vec<SocketAddr> = net
        .gateways()
        .iter()
        .map(|g| g.metrics.expect("gateway metrics"))
        .collect();
    for a in mix_metrics.iter().chain(&gw_metrics).chain([&dir_metrics]) {
        assert!(a.ip().is_loopback());
        assert!(describe.contains(&metrics::url(*a)), "{a} not in:\n{describe}");
    }
    assert!(
        describe.starts_with("directory: "),
        "scripts read the first lines by position"
    );

    let topo = Topology::from_json(&net.topology(), nym_wire::VERSION).unwrap();
    let gw = nym_wire::address::decode_key(&net.gateways()[1].identity_key, "gw").unwrap();
    let url = net.gateways()[1].client_listener.clone();
    let (alice, bob) = (random_secret(), random_secret());
    let mut a = TestClient::connect(&url, &alice, gw).await.unwrap();
    TestClient::connect(&url, &bob, gw).await.unwrap().close().await;
    const N: u64 = 4;
    for i in 0..N {
        let epoch = topo.epoch_at(now_ms());
        let route = topo.random_route(&mut rand::rng(), &gw, epoch).unwrap();
        a.forward(
            *route[0].address.as_bytes(),
            build_frame(&[i as u8; 500], &route, &PublicKey::from(&bob), &[0, 0, 0, 0], epoch),
        )
        .await;
    }
    let g = scrape_until(gw_metrics[1], |s| val(s, "nym_packets_stored_total", &[]) == N).await;
    assert_eq!(val(&g, "nym_packets_stored_total", &[]), N);
    assert_eq!(val(&g, "nym_gateway_registered_clients", &[]), 2);
    assert_eq!(val(&g, "nym_gateway_inbox_messages", &[]), N);
    assert!(val(&g, "nym_gateway_inbox_bytes", &[]) >= N * 500, "before the fetch");
    assert_eq!(val(&g, "nym_packets_delivered_total", &[]), 0);
    // three mixnodes carried each packet
    let mut forwarded = 0;
    for (i, m) in mix_metrics.iter().enumerate() {
        // (final already: every packet was stored at the gateway)
        let s = scrape(*m).await;
        matches_stats(&s, &net.mixnode_stats(i).unwrap().snapshot());
        forwarded += val(&s, "nym_packets_forwarded_total", &[]);
    }
    assert_eq!(forwarded, 3 * N);

    let mut b = TestClient::connect(&url, &bob, gw).await.unwrap();
    assert_eq!(b.recv_deliveries(N as usize, T).await.len(), N as usize);
    b.ack_all().await;
    let g = scrape_until(gw_metrics[1], |s| val(s, "nym_packets_delivered_total", &[]) == N).await;
    assert_eq!(val(&g, "nym_packets_delivered_total", &[]), N);
    assert_eq!(
        (
            val(&g, "nym_gateway_inbox_messages", &[]),
            val(&g, "nym_gateway_inbox_bytes", &[])
        ),
        (0, 0)
    );

    let d = scrape(dir_metrics).await;
    assert!(
        val(&d, "nym_directory_announcements_total", &[("result", "accepted")]) >= 8,
        "every node announced"
    );
    assert_eq!(val(&d, "nym_directory_listed_nodes", &[("role", "mixnode")]), 6);
    assert_eq!(val(&d, "nym_directory_listed_nodes", &[("role", "gateway")]), 2);

    // a restarted node serves its metrics on the same port, with new counters
    net.restart_mixnode(0).await.unwrap();
    assert_eq!(net.mixnodes()[0].metrics, Some(mix_metrics[0]));
    assert_eq!(
        val(&scrape(mix_metrics[0]).await, "nym_packets_forwarded_total", &[]),
        0
    );
    a.close().await;
    b.close().await;
    net.shutdown().await;

    // --no-metrics
    let data = tempfile::tempdir().unwrap();
    let mut config = LocalnetConfig::fast(data.path());
    config.metrics = false;
    config.mixnodes_per_layer = 1;
    config.gateways = 1;
    let quiet = Localnet::start(config).await.unwrap();
    assert_eq!(quiet.directory_metrics_addr(), None);
    assert!(
        quiet.mixnodes().iter().all(|m| m.metrics.is_none()) && quiet.gateways().iter().all(|g| g.metrics.is_none())
    );
    assert!(!quiet.describe().contains("/metrics"));
    quiet.shutdown().await;
}

/// Reads stdout lines of `child` until one satisfies `pick`; the rest of
/// the output is drained in the background so the node never blocks.
fn stdout_line(child: &mut std::process::Child, mut pick: impl FnMut(&str) -> Option<String>) -> String {
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("piped stdout"));
    loop {
        let mut line = String::new();
        let n = lines.read_line(&mut line).expect("read stdout");
        assert!(n > 0, "the node exited without printing its metrics URL");
        if let Some(found) = pick(line.trim()) {
            std::thread::spawn(move || std::io::copy(&mut lines, &mut std::io::sink()));
            return found;
        }
    }
}

fn url_addr(url: &str) -> SocketAddr {
    url.strip_prefix("http://")
        .and_then(|u| u.strip_suffix("/metrics"))
        .expect("http://ADDR/metrics")
        .parse()
        .expect("an address")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_binaries_take_metrics_and_print_where() {
    let data = tempfile::tempdir().unwrap();
    let mut procs = Procs(Vec::new());
    let spawn = |bin: &str, args: &[String]| {
        std::process::Command::new(bin)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap()
    };
    let s = |v: &str| v.to_string();
    let dir_data = data.path().join("directory").display().to_string();
    let mut directory = spawn(
        env!("CARGO_BIN_EXE_nym-directory"),
        &[
            s("--listen"),
            s("127.0.0.1:0"),
            s("--open"),
            s("--data-dir"),
            dir_data,
            s("--metrics"),
            s("127.0.0.1:0"),
        ],
    );
    let dir_url = stdout_line(&mut directory, |l| l.strip_prefix("metrics: ").map(str::to_string));
    procs.0.push(directory);
    let mix_data = data.path().join("mix").display().to_string();
    let mut mixnode = spawn(
        env!("CARGO_BIN_EXE_nym-mixnode"),
        &[
            s("--layer"),
            s("2"),
            s("--listen"),
            s("127.0.0.1:0"),
            s("--data-dir"),
            mix_data,
            s("--workers"),
            s("1"),
            s("--metrics"),
            s("127.0.0.1:0"),
        ],
    );
    let mix_url = stdout_line(&mut mixnode, |l| l.split(" metrics ").nth(1).map(str::to_string));
    procs.0.push(mixnode);
    let gw_data = data.path().join("gw").display().to_string();
    let mut gateway = spawn(
        env!("CARGO_BIN_EXE_nym-gateway"),
        &[
            s("--mix-listen"),
            s("127.0.0.1:0"),
            s("--clients-listen"),
            s("127.0.0.1:0"),
            s("--data-dir"),
            gw_data,
            s("--metrics"),
            s("127.0.0.1:0"),
        ],
    );
    let gw_url = stdout_line(&mut gateway, |l| l.split(" metrics ").nth(1).map(str::to_string));
    procs.0.push(gateway);

    for (url, role) in [(&dir_url, "directory"), (&mix_url, "mixnode"), (&gw_url, "gateway")] {
        let samples = scrape(url_addr(url)).await;
        assert_eq!(
            val(
                &samples,
                "nym_node_info",
                &[("role", role), ("version", nym_wire::VERSION)]
            ),
            1,
            "{url}"
        );
    }
    assert_eq!(val(&scrape(url_addr(&mix_url)).await, "nym_mixnode_layer", &[]), 2);

    // off unless asked for, and documented in --help
    for bin in [
        env!("CARGO_BIN_EXE_nym-directory"),
        env!("CARGO_BIN_EXE_nym-mixnode"),
        env!("CARGO_BIN_EXE_nym-gateway"),
    ] {
        let help = std::process::Command::new(bin).arg("--help").output().unwrap();
        let help = String::from_utf8_lossy(&help.stdout);
        assert!(
            help.contains("--metrics <HOST:PORT>") && help.contains("docs/metrics.md"),
            "{bin}:\n{help}"
        );
    }
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_nym-localnet"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("--no-metrics"));
    drop(procs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metrics_address_that_is_taken_stops_the_node_from_starting() {
    let dir = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind(loopback0()).await.unwrap();
    let mut c = MixnodeConfig::new(1, dir.path());
    c.listen = loopback0();
    c.metrics = Some(taken.local_addr().unwrap());
    let e = format!("{:#}", Mixnode::start(c).await.err().expect("refused"));
    assert!(
        e.contains("--metrics") && e.contains(&taken.local_addr().unwrap().to_string()),
        "{e}"
    );
    let mut c = GatewayConfig::new(dir.path().join("gw"));
    c.mix_listen = loopback0();
    c.clients_listen = loopback0();
    c.metrics = Some(taken.local_addr().unwrap());
    let e = format!("{:#}", Gateway::start(c).await.err().expect("refused"));
    assert!(e.contains("--metrics"), "{e}");
}

/// The tests' reader of the text format refuses what is not a sample, naming the line.
#[test]
fn lines_that_are_not_samples_are_refused_by_line() {
    for bad in [
        "novalue",
        "x{a=\"1\" 2",
        "x{a=1} 2",
        "x{=\"1\"} 2",
        "x 1.2.3",
        "9x 1",
        "x{a=\"1\"}2",
        "x{a=\"\\",
        "x{a=\"1\";b=\"2\"} 1",
    ] {
        let e = exposition::parse(&format!("# HELP x fine\n{bad}\n")).expect_err(bad);
        assert!(e.starts_with("line 2:"), "{bad}: {e}");
    }
    assert_eq!(exposition::parse("x{a=\"1\",b=\"2\"} 3 1700000000\ny +Inf\n").unwrap().len(), 2);
}
