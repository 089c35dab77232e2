//! A standalone gateway: inbox bound, unexpected hops, bad handshakes.

mod common;

use common::*;
use futures_util::SinkExt;
use nym_mixnet::{Gateway, GatewayConfig};
use std::net::SocketAddr;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use x25519_dalek::PublicKey;

const T: Duration = Duration::from_secs(10);

async fn gateway(dir: &std::path::Path, inbox_limit: u64) -> Gateway {
    let mut c = GatewayConfig::new(dir);
    c.mix_listen = SocketAddr::from(([127, 0, 0, 1], 0));
    c.clients_listen = SocketAddr::from(([127, 0, 0, 1], 0));
    c.inbox_limit = inbox_limit;
    Gateway::start(c).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_is_bounded_and_forward_hops_at_a_gateway_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(dir.path(), 2).await;
    let client = random_secret();
    let client_pub = PublicKey::from(&client);
    TestClient::connect(&gw.client_listener_url(), &client, gw.identity_key()).await.unwrap().close().await;
    assert!(wait_until(T, || gw.is_registered(client_pub.as_bytes())).await);

    // single-hop packets straight into the gateway's mixnet listener
    let route = [node(gw.mix_addr(), gw.sphinx_key())];
    let mut bytes = Vec::new();
    for i in 0..4u8 {
        bytes.extend(build_frame(&[i; 10], &route, &client_pub, &[0]));
    }
    // a packet that would go on past the gateway
    let sink = Sink::start(false).await;
    let onward = [node(gw.mix_addr(), gw.sphinx_key()), node(sink.addr, client_pub)];
    bytes.extend(build_frame(b"onward", &onward, &client_pub, &[0, 0]));
    send_tcp(gw.mix_addr(), &bytes).await;

    let stats = gw.stats();
    assert!(wait_until(T, || {
        let s = stats.snapshot();
        s.stored == 2 && s.dropped_queue_full == 2 && s.dropped_no_route == 1
    })
    .await, "{}", stats.snapshot());
    assert_eq!(gw.stored_count(client_pub.as_bytes()), 2);
    assert_eq!(sink.count(), 0);

    let mut c = TestClient::connect(&gw.client_listener_url(), &client, gw.identity_key()).await.unwrap();
    assert_eq!(c.stored, 2);
    // (worker threads may reorder packets; which two were kept is not fixed)
    let got = c.recv_deliveries(2, T).await;
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|m| m.len() == 10 && m[0] < 4 && m.iter().all(|b| *b == m[0])), "{got:?}");
    assert_ne!(got[0], got[1]);
    // connected now: the next one is pushed directly
    send_tcp(gw.mix_addr(), &build_frame(b"live", &route, &client_pub, &[0])).await;
    assert_eq!(c.recv_deliveries(1, T).await, vec![b"live".to_vec()]);
    c.close().await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_handshakes_are_refused_without_harm() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(dir.path(), 10).await;
    // garbage HELLO
    let (mut ws, _) = tokio_tungstenite::connect_async(gw.client_listener_url()).await.unwrap();
    ws.send(Message::Binary(vec![1, 2, 3].into())).await.unwrap();
    assert_eq!(next_binary(&mut ws, Duration::from_secs(3)).await, None);
    // text instead of binary
    let (mut ws, _) = tokio_tungstenite::connect_async(gw.client_listener_url()).await.unwrap();
    ws.send(Message::Text("hello".into())).await.unwrap();
    assert_eq!(next_binary(&mut ws, Duration::from_secs(3)).await, None);
    // a client expecting another gateway identity fails its own check
    let e = TestClient::connect(&gw.client_listener_url(), &random_secret(), [9; 32]).await.err().unwrap();
    assert!(e.contains("identity") || e.contains("signature"), "{e}");
    // and an honest client still gets in
    let c = TestClient::connect(&gw.client_listener_url(), &random_secret(), gw.identity_key()).await.unwrap();
    assert_eq!(c.stored, 0);
    c.close().await;
    gw.shutdown().await;
}
