//! A standalone gateway: inbox bound, unexpected hops, bad handshakes.

mod common;

use common::*;
use futures_util::SinkExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use nym_mixnet::{Gateway, GatewayConfig};
use std::net::SocketAddr;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use x25519_dalek::PublicKey;

const T: Duration = Duration::from_secs(10);

async fn gateway(dir: &std::path::Path, inbox_limit: u64) -> Gateway {
    gateway_with(dir, |c| c.inbox.messages_per_client = inbox_limit).await
}

async fn gateway_with(dir: &std::path::Path, tweak: impl FnOnce(&mut GatewayConfig)) -> Gateway {
    let mut c = GatewayConfig::new(dir);
    c.mix_listen = SocketAddr::from(([127, 0, 0, 1], 0));
    c.clients_listen = SocketAddr::from(([127, 0, 0, 1], 0));
    tweak(&mut c);
    Gateway::start(c).await.unwrap()
}

/// Two clients of `gw` exchange a message through it (a one-hop route: the
/// gateway's own mixnet listener), as a sign the gateway still serves.
async fn chat(gw: &Gateway, a: &mut TestClient, b: &mut TestClient, b_key: &PublicKey, text: &[u8]) {
    let route = [node(gw.mix_addr(), gw.sphinx_key())];
    let next_hop = *route[0].address.as_bytes();
    a.forward(next_hop, build_frame(text, &route, b_key, &[0], gw.sphinx_keys().current_epoch())).await;
    let got = b.recv_deliveries(1, T).await;
    assert_eq!(got.len(), 1, "the message did not arrive");
    assert!(got[0].ends_with(text) || got[0].windows(text.len()).any(|w| w == text));
    b.ack_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_is_bounded_and_forward_hops_at_a_gateway_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(dir.path(), 2).await;
    let client = random_secret();
    let client_pub = PublicKey::from(&client);
    TestClient::connect(&gw.client_listener_url(), &client, gw.identity_key()).await.unwrap().close().await;
    assert!(wait_until(T, || gw.is_registered(client_pub.as_bytes())).await);

    // single-hop packets straight into the gateway's mixnet listener; the
    // client may or may not still hold its connection: every message is
    // stored first either way, so the counts don't depend on when the
    // gateway notices the close.
    let route = [node(gw.mix_addr(), gw.sphinx_key())];
    let mut bytes = Vec::new();
    for i in 0..4u8 {
        bytes.extend(build_frame(&[i; 10], &route, &client_pub, &[0], gw.sphinx_keys().current_epoch()));
    }
    // a packet that would go on past the gateway
    let sink = Sink::start(false).await;
    let onward = [node(gw.mix_addr(), gw.sphinx_key()), node(sink.addr, client_pub)];
    bytes.extend(build_frame(b"onward", &onward, &client_pub, &[0, 0], gw.sphinx_keys().current_epoch()));
    send_tcp(gw.mix_addr(), &bytes).await;

    let stats = gw.stats();
    assert!(wait_until(T, || {
        let s = stats.snapshot();
        s.stored == 2 && s.dropped_limit == 2 && s.dropped_no_route == 1
    })
    .await, "{}", stats.snapshot());
    assert_eq!(gw.stored_count(client_pub.as_bytes()), 2);
    assert_eq!(sink.count(), 0);
    assert_eq!(stats.snapshot().delivered, 0, "nobody acknowledged anything");

    let mut c = TestClient::connect(&gw.client_listener_url(), &client, gw.identity_key()).await.unwrap();
    assert_eq!(c.stored, 2);
    // (worker threads may reorder packets; which two were kept is not fixed)
    let got = c.recv_deliveries(2, T).await;
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|m| m.len() == 10 && m[0] < 4 && m.iter().all(|b| *b == m[0])), "{got:?}");
    assert_ne!(got[0], got[1]);
    // unacknowledged, they still fill the inbox: the next one is refused
    send_tcp(gw.mix_addr(), &build_frame(b"too many", &route, &client_pub, &[0], gw.sphinx_keys().current_epoch())).await;
    assert!(wait_until(T, || stats.snapshot().dropped_limit == 3).await, "{}", stats.snapshot());
    // acknowledged, they are gone
    c.ack_all().await;
    assert!(wait_until(T, || gw.stored_count(client_pub.as_bytes()) == 0).await);
    assert!(wait_until(T, || stats.snapshot().delivered == 2).await, "{}", stats.snapshot());
    // connected now: the next one is stored and pushed directly
    send_tcp(gw.mix_addr(), &build_frame(b"live", &route, &client_pub, &[0], gw.sphinx_keys().current_epoch())).await;
    assert_eq!(c.recv_deliveries(1, T).await, vec![b"live".to_vec()]);
    assert_eq!(gw.stored_count(client_pub.as_bytes()), 1, "kept until acknowledged");
    c.ack_all().await;
    assert!(wait_until(T, || gw.stored_count(client_pub.as_bytes()) == 0).await);
    c.close().await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_deliveries_come_again_and_bad_acks_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(dir.path(), 100).await;
    let stats = gw.stats();
    let route = [node(gw.mix_addr(), gw.sphinx_key())];
    let (alice, bob) = (random_secret(), random_secret());
    let (alice_pub, bob_pub) = (PublicKey::from(&alice), PublicKey::from(&bob));
    let url = gw.client_listener_url();
    let mut a = TestClient::connect(&url, &alice, gw.identity_key()).await.unwrap();
    TestClient::connect(&url, &bob, gw.identity_key()).await.unwrap().close().await;
    assert!(wait_until(T, || gw.is_registered(bob_pub.as_bytes())).await);

    // three for bob (offline), five for alice (connected)
    let mut bytes = Vec::new();
    for i in 0..3u8 {
        bytes.extend(build_frame(&[100 + i; 8], &route, &bob_pub, &[0], gw.sphinx_keys().current_epoch()));
    }
    for i in 0..5u8 {
        bytes.extend(build_frame(&[i; 8], &route, &alice_pub, &[0], gw.sphinx_keys().current_epoch()));
    }
    send_tcp(gw.mix_addr(), &bytes).await;
    let mut first = a.recv_deliveries(5, T).await;
    first.sort();
    assert_eq!(first.len(), 5);
    let first_ids = a.unacked.clone();

    // the connection is cut before any ack: all five come again, with new ids
    a.cut();
    let mut a = TestClient::connect(&url, &alice, gw.identity_key()).await.unwrap();
    assert_eq!(a.stored, 5);
    let mut again = a.recv_deliveries(5, T).await;
    again.sort();
    assert_eq!(again, first);

    // forged ids and the same id twice: ignored
    let bad_before = stats.snapshot().bad_acks;
    let ids = a.unacked.clone();
    a.ack(vec![u64::MAX, 12345]).await;
    a.ack(vec![ids[0]]).await;
    a.ack(vec![ids[0]]).await;
    assert!(wait_until(T, || stats.snapshot().bad_acks == bad_before + 3).await, "{}", stats.snapshot());
    assert!(wait_until(T, || gw.stored_count(alice_pub.as_bytes()) == 4).await);
    assert_eq!(first_ids, ids, "ids are the connection's own counter, not storage ids");
    // acks out of order are fine
    a.ack(vec![ids[4], ids[2]]).await;
    assert!(wait_until(T, || gw.stored_count(alice_pub.as_bytes()) == 2).await);
    // nothing alice acknowledged touched bob's inbox
    assert!(wait_until(T, || gw.stored_count(bob_pub.as_bytes()) == 3).await);

    // a clean close keeps the rest too; so does a gateway restart
    a.close().await;
    gw.shutdown().await;
    let gw = gateway(dir.path(), 100).await;
    let url = gw.client_listener_url();
    let mut a = TestClient::connect(&url, &alice, gw.identity_key()).await.unwrap();
    assert_eq!(a.stored, 2);
    let mut rest = a.recv_deliveries(2, T).await;
    rest.sort();
    // (which two are left depends on which ids named which message)
    assert_eq!(rest.len(), 2);
    assert_ne!(rest[0], rest[1]);
    assert!(rest.iter().all(|m| first.contains(m)));
    a.ack_all().await;
    assert!(wait_until(T, || gw.stored_count(alice_pub.as_bytes()) == 0).await);
    let mut b = TestClient::connect(&url, &bob, gw.identity_key()).await.unwrap();
    assert_eq!(b.recv_deliveries(3, T).await.len(), 3);
    b.ack_all().await;
    assert!(wait_until(T, || gw.stored_count(bob_pub.as_bytes()) == 0).await);
    a.close().await;
    b.close().await;
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

/// Issue 13's report: 30 connections that each sent a 60 MiB message before
/// HELLO took a gateway to 2.7 GB. A message over MAX_CLIENT_MESSAGE is
/// refused from its frame header: the connection closes, the gateway's
/// memory does not grow by the messages, and honest clients keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_message_before_the_handshake_is_refused_without_buffering_it() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(dir.path(), 10).await;
    let addr = gw.client_listener_url().trim_start_matches("ws://").to_string();
    let chunk = vec![0x5a_u8; 1 << 20];
    let rss_before = resident_bytes();
    // Five peers each start a 60 MiB message in 8 MiB frames (under
    // tungstenite's default 16 MiB frame limit), write 56 MiB of it and
    // stall, holding their connections open while we look at the memory.
    let mut held = Vec::new();
    for _ in 0..5 {
        let mut tcp = upgraded(&addr).await;
        'frames: for frame in 0..7 {
            // not FIN; binary first, then continuation; masked, 64-bit length, mask key 0
            let mut header = vec![if frame == 0 { 0x02 } else { 0x00 }, 0xff];
            header.extend_from_slice(&(8u64 << 20).to_be_bytes());
            header.extend_from_slice(&[0, 0, 0, 0]);
            if tcp.write_all(&header).await.is_err() {
                break;
            }
            for _ in 0..8 {
                if tcp.write_all(&chunk).await.is_err() {
                    break 'frames; // the gateway closed on the header
                }
            }
        }
        held.push(tcp);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let grown = resident_bytes().saturating_sub(rss_before);
    // Buffered, the five would be 280 MiB.
    assert!(grown < 100 << 20, "the process grew by {} MiB while the peers stalled", grown >> 20);
    // Meanwhile two clients keep chatting.
    let (alice, bob) = (random_secret(), random_secret());
    let mut a = TestClient::connect(&gw.client_listener_url(), &alice, gw.identity_key()).await.unwrap();
    let mut b = TestClient::connect(&gw.client_listener_url(), &bob, gw.identity_key()).await.unwrap();
    chat(&gw, &mut a, &mut b, &PublicKey::from(&bob), b"still here").await;
    drop(held);
    a.close().await;
    b.close().await;
    gw.shutdown().await;
}

/// A TCP connection to `addr` after a websocket upgrade done by hand, to
/// write frames no websocket library would.
async fn upgraded(addr: &str) -> tokio::net::TcpStream {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let mut byte = [0u8; 1];
    while !response.ends_with(b"\r\n\r\n") {
        assert_eq!(tcp.read(&mut byte).await.unwrap(), 1, "the gateway closed during the upgrade");
        response.push(byte[0]);
    }
    assert!(response.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&response));
    tcp
}

/// This process's resident memory (Linux), in bytes.
fn resident_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_connections_are_capped_and_their_handshake_bytes_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway_with(dir.path(), |c| {
        c.admission.max_unauthenticated = 4;
        c.admission.max_handshake_bytes = 4096;
    })
    .await;
    let addr = gw.client_listener_url().trim_start_matches("ws://").to_string();
    // Four connections that never say anything hold every slot...
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    let stats = gw.stats();
    // ...so a fifth is closed at once, before anything is read.
    let mut fifth = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(T, fifth.read(&mut buf)).await.expect("the fifth connection was not closed");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(wait_until(T, || stats.snapshot().refused_connections >= 1).await);
    let err = TestClient::connect(&gw.client_listener_url(), &random_secret(), gw.identity_key()).await.err();
    assert!(err.is_some(), "a client got in while every slot was held");
    // The slots come back when those connections go.
    drop(idle);
    let mut admitted = None;
    for _ in 0..50 {
        if let Ok(c) = TestClient::connect(&gw.client_listener_url(), &random_secret(), gw.identity_key()).await {
            admitted = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    admitted.expect("no slot came back").close().await;

    // A frame bigger than the handshake allowance, though far under
    // --max-client-message, ends the connection.
    let mut tcp = upgraded(&addr).await;
    let mut header = vec![0x82, 0xff];
    header.extend_from_slice(&(32u64 << 10).to_be_bytes());
    header.extend_from_slice(&[0, 0, 0, 0]);
    let _ = tcp.write_all(&header).await;
    let _ = tcp.write_all(&vec![0u8; 32 << 10]).await;
    let read = tokio::time::timeout(T, tcp.read(&mut buf)).await.expect("the connection was not closed");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_are_rate_limited_per_source_address() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway_with(dir.path(), |c| c.admission.handshakes_per_source = 0.5).await;
    let burst = nym_mixnet::gateway::AdmissionLimits { handshakes_per_source: 0.5, ..nym_mixnet::gateway::DEFAULT_ADMISSION }.handshake_burst();
    let key = random_secret();
    let mut ok = 0;
    for _ in 0..burst + 4 {
        if let Ok(c) = TestClient::connect(&gw.client_listener_url(), &key, gw.identity_key()).await {
            ok += 1;
            c.close().await;
        }
    }
    // The burst, and at most a token or two refilled meanwhile.
    assert!(ok >= burst as usize && ok <= burst as usize + 2, "{ok} of {} handshakes admitted", burst + 4);
    assert!(gw.stats().snapshot().refused_connections >= 2);
    // Another source address has its own allowance.
    let from_other = tokio::net::TcpSocket::new_v4().unwrap();
    if from_other.bind(SocketAddr::from(([127, 0, 0, 2], 0))).is_ok() {
        let stream = from_other.connect(gw.clients_addr()).await.unwrap();
        let (ws, _) = tokio_tungstenite::client_async(gw.client_listener_url(), tokio_tungstenite::MaybeTlsStream::Plain(stream)).await.unwrap();
        drop(ws);
    } else {
        eprintln!("skipped the second source: cannot bind 127.0.0.2");
    }
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_are_capped_and_rate_limited_known_clients_always_return() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway_with(dir.path(), |c| {
        c.inbox.clients = 3;
        c.admission.handshakes_per_source = 1000.0;
    })
    .await;
    let keys: Vec<_> = (0..4).map(|_| random_secret()).collect();
    for k in &keys[..3] {
        TestClient::connect(&gw.client_listener_url(), k, gw.identity_key()).await.unwrap().close().await;
    }
    let e = TestClient::connect(&gw.client_listener_url(), &keys[3], gw.identity_key()).await.err().unwrap_or_default();
    assert!(e.contains("maximum of 3 clients"), "{e}");
    assert_eq!(gw.registered_clients(), 3);
    // a registered client is never locked out
    TestClient::connect(&gw.client_listener_url(), &keys[0], gw.identity_key()).await.unwrap().close().await;
    gw.shutdown().await;

    // The registration rate: a flood of new keys gets its burst, then refusals.
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway_with(dir.path(), |c| {
        c.admission.registrations_per_sec = 0.5;
        c.admission.handshakes_per_source = 1000.0;
    })
    .await;
    let mut refused = None;
    let mut admitted = 0;
    for _ in 0..40 {
        match TestClient::connect(&gw.client_listener_url(), &random_secret(), gw.identity_key()).await {
            Ok(c) => {
                admitted += 1;
                c.close().await
            }
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let refused = refused.expect("40 new clients in a row were all registered");
    assert!(refused.contains("too many new clients"), "{refused}");
    assert!((10..=12).contains(&admitted), "{admitted} registered before the first refusal");
    assert_eq!(gw.registered_clients(), admitted);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbox_flood_stops_at_the_byte_cap_unacknowledged_and_old_messages_expire() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway_with(dir.path(), |c| {
        c.inbox.bytes_per_client = 20_000;
        c.inbox.expiry = Duration::from_secs(2);
    })
    .await;
    let victim = random_secret();
    let victim_pub = PublicKey::from(&victim);
    TestClient::connect(&gw.client_listener_url(), &victim, gw.identity_key()).await.unwrap().close().await;
    assert!(wait_until(T, || gw.is_registered(victim_pub.as_bytes())).await);
    // A sender floods the offline inbox.
    let route = [node(gw.mix_addr(), gw.sphinx_key())];
    let mut bytes = Vec::new();
    for i in 0..30u8 {
        bytes.extend(build_frame(&[i; 1000], &route, &victim_pub, &[0], gw.sphinx_keys().current_epoch()));
    }
    send_tcp(gw.mix_addr(), &bytes).await;
    let stats = gw.stats();
    assert!(wait_until(T, || { let s = stats.snapshot(); s.stored + s.dropped_limit == 30 }).await, "{}", stats.snapshot());
    let s = stats.snapshot();
    assert!(s.dropped_limit > 0, "{s}");
    assert!(gw.stored_bytes(victim_pub.as_bytes()) <= 20_000);
    assert_eq!(gw.stored_count(victim_pub.as_bytes()), s.stored);
    // Nobody reads them: they expire, and the bytes come back.
    assert!(wait_until(Duration::from_secs(20), || gw.stored_count(victim_pub.as_bytes()) == 0).await);
    assert_eq!(stats.snapshot().expired, s.stored);
    assert_eq!(gw.stored_bytes_total(), 0);
    let c = TestClient::connect(&gw.client_listener_url(), &victim, gw.identity_key()).await.unwrap();
    assert_eq!(c.stored, 0, "expired messages are not delivered");
    c.close().await;
    gw.shutdown().await;
}
