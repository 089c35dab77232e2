//! Directory + 3 layers of mixnodes + gateways, in process (the localnet).

mod common;

use common::*;
use nym_mixnet::localnet::{Localnet, LocalnetConfig};
use nym_wire::address::decode_key;
use nym_wire::gateway::{ClientHandshake, GatewayResponse};
use nym_wire::topology::{encode_node_address, Topology};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use x25519_dalek::PublicKey;

const T: Duration = Duration::from_secs(10);

async fn start(dir: &std::path::Path) -> Localnet {
    tokio::time::timeout(Duration::from_secs(30), Localnet::start(LocalnetConfig::fast(dir)))
        .await
        .expect("localnet start timed out")
        .expect("localnet")
}

fn topology(net: &Localnet) -> Topology {
    Topology::from_json(&net.topology(), nym_wire::VERSION).expect("complete topology")
}

fn gw_identity(net: &Localnet, i: usize) -> [u8; 32] {
    decode_key(&net.gateways()[i].identity_key, "gw").unwrap()
}

fn gw_url(net: &Localnet, i: usize) -> String {
    net.gateways()[i].client_listener.clone()
}

/// Sends `msg` to `dest` (at gateway `gw`) through a random 3-mixnode route,
/// injected at the route's first hop by a sending client.
async fn send_via(sender: &mut TestClient, net: &Localnet, gw: usize, dest: &PublicKey, msg: &[u8], delays: &[u64]) {
    let topo = topology(net);
    let mut rng = rand::rng();
    let epoch = topo.epoch_at(now_ms());
    let route = topo.random_route(&mut rng, &gw_identity(net, gw), epoch).unwrap();
    let frame = build_frame(msg, &route, dest, delays, epoch);
    sender.forward(*route[0].address.as_bytes(), frame).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packet_through_directory_three_mixnodes_and_gateway_arrives_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let net = start(dir.path()).await;
    assert_eq!(net.mixnodes().len(), 6);
    assert_eq!(net.gateways().len(), 2);
    // the directory's JSON over HTTP is a complete topology
    let http = nym_mixnet::http::DirectoryClient::new(&net.directory_url()).unwrap();
    let json = http.topology().await.unwrap();
    assert_eq!(json.mix_nodes.len(), 6);
    Topology::from_json(&json, nym_wire::VERSION).unwrap();

    let alice = random_secret();
    let bob = random_secret();
    let mut a = TestClient::connect(&gw_url(&net, 0), &alice, gw_identity(&net, 0))
        .await
        .unwrap();
    let mut b = TestClient::connect(&gw_url(&net, 1), &bob, gw_identity(&net, 1))
        .await
        .unwrap();
    assert_eq!(b.stored, 0);

    let messages: Vec<Vec<u8>> = (0..5u8).map(|i| (0..1500).map(|j| (j as u8) ^ i).collect()).collect();
    for m in &messages {
        send_via(&mut a, &net, 1, &PublicKey::from(&bob), m, &[10, 10, 10, 10]).await;
    }
    let mut got = b.recv_deliveries(messages.len(), T).await;
    got.sort();
    let mut want = messages.clone();
    want.sort();
    assert_eq!(got, want);
    let gw = net.gateway_stats(1).unwrap();
    // delivered = acknowledged by the client (then deleted)
    assert_eq!(gw.snapshot().delivered, 0);
    b.ack_all().await;
    assert!(
        wait_until(T, || gw.snapshot().delivered == 5).await,
        "{}",
        gw.snapshot()
    );
    assert_eq!(gw.snapshot().dropped_malformed, 0);
    let forwarded = || {
        (0..6)
            .map(|i| net.mixnode_stats(i).unwrap().snapshot().forwarded)
            .sum::<u64>()
    };
    assert!(
        wait_until(T, || forwarded() == 15).await,
        "3 mix hops x 5 packets, got {}",
        forwarded()
    );

    // a Forward to something that is not a layer-1 mixnode is refused by
    // name: the first hop and the packet's tag, so the client can send it again
    let topo = topology(&net);
    let epoch = topo.epoch_at(now_ms());
    let route = topo
        .random_route(&mut rand::rng(), &gw_identity(&net, 1), epoch)
        .unwrap();
    let frame = build_frame(b"x", &route, &PublicKey::from(&bob), &[0, 0, 0, 0], epoch);
    let not_layer1 = *encode_node_address(topo.layer(2)[0].address).as_bytes();
    a.forward(not_layer1, frame.clone()).await;
    let tag = nym_wire::mix_frame::packet_tag(nym_wire::mix_frame::decode(&frame).unwrap().2);
    match a.recv(T).await {
        Some(GatewayResponse::Refused { next_hop, packet }) => assert_eq!((next_hop, packet), (not_layer1, tag)),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // garbage inside the session: error, connection kept
    a.forward(*route[0].address.as_bytes(), vec![9, 9, 9]).await;
    assert!(matches!(a.recv(T).await, Some(GatewayResponse::Error { .. })));
    a.send_raw(vec![0x10, 1, 2, 3]).await;
    assert!(matches!(a.recv(T).await, Some(GatewayResponse::Error { .. })));
    a.forward(*route[0].address.as_bytes(), frame).await;
    assert_eq!(b.recv_deliveries(1, T).await, vec![b"x".to_vec()]);

    a.close().await;
    b.close().await;
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_restart_keeps_stored_messages_and_deletes_them_after_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let mut net = start(dir.path()).await;
    let bob = random_secret();
    let bob_pub = PublicKey::from(&bob);
    // register bob, then go offline
    TestClient::connect(&gw_url(&net, 0), &bob, gw_identity(&net, 0))
        .await
        .unwrap()
        .close()
        .await;
    assert!(net.gateway(0).unwrap().is_registered(bob_pub.as_bytes()));

    let mut sender = TestClient::connect(&gw_url(&net, 1), &random_secret(), gw_identity(&net, 1))
        .await
        .unwrap();
    let messages: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i; 100 + i as usize]).collect();
    for m in &messages {
        send_via(&mut sender, &net, 0, &bob_pub, m, &[0, 0, 0, 0]).await;
    }
    let stats = net.gateway_stats(0).unwrap();
    assert!(
        wait_until(T, || stats.snapshot().stored == 3).await,
        "{}",
        stats.snapshot()
    );

    // restart the gateway on the same data dir: keys and inbox survive
    let before = net.gateways()[0].clone();
    net.restart_gateway(0).await.unwrap();
    let after = net.gateways()[0].clone();
    assert_eq!(before.identity_key, after.identity_key);
    assert_eq!(net.gateway(0).unwrap().stored_count(bob_pub.as_bytes()), 3);

    let mut b = TestClient::connect(&gw_url(&net, 0), &bob, gw_identity(&net, 0))
        .await
        .unwrap();
    assert_eq!(b.stored, 3);
    // (packets took different routes, so the order they were stored in is not fixed)
    let mut got = b.recv_deliveries(3, T).await;
    got.sort();
    assert_eq!(got, messages);
    let gw = net.gateway(0).unwrap();
    b.ack_all().await;
    assert!(wait_until(T, || gw.stored_count(bob_pub.as_bytes()) == 0).await);
    b.close().await;
    let b = TestClient::connect(&gw_url(&net, 0), &bob, gw_identity(&net, 0))
        .await
        .unwrap();
    assert_eq!(b.stored, 0, "delivered messages were deleted");
    b.close().await;

    // packets for a never-registered key are dropped and counted
    let stranger = PublicKey::from(&random_secret());
    send_via(&mut sender, &net, 0, &stranger, b"nobody", &[0, 0, 0, 0]).await;
    let stats = net.gateway_stats(0).unwrap();
    assert!(
        wait_until(T, || stats.snapshot().dropped_unknown_client == 1).await,
        "{}",
        stats.snapshot()
    );
    assert_eq!(net.gateway(0).unwrap().stored_count(stranger.as_bytes()), 0);
    sender.close().await;
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_claiming_another_clients_address_gets_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let net = start(dir.path()).await;
    let victim = random_secret();
    let victim_pub = PublicKey::from(&victim);
    TestClient::connect(&gw_url(&net, 0), &victim, gw_identity(&net, 0))
        .await
        .unwrap()
        .close()
        .await;
    let mut sender = TestClient::connect(&gw_url(&net, 1), &random_secret(), gw_identity(&net, 1))
        .await
        .unwrap();
    send_via(&mut sender, &net, 0, &victim_pub, b"for the victim only", &[0, 0, 0, 0]).await;
    let gw = net.gateway(0).unwrap();
    assert!(wait_until(T, || gw.stored_count(victim_pub.as_bytes()) == 1).await);

    // the attacker puts the victim's key in HELLO but holds only its own secret
    let attacker = random_secret();
    let (mut ws, _) = tokio_tungstenite::connect_async(gw_url(&net, 0)).await.unwrap();
    let (hs, mut hello) = ClientHandshake::start(&mut rand::rng(), &attacker, gw_identity(&net, 0));
    hello[1..33].copy_from_slice(victim_pub.as_bytes());
    use futures_util::SinkExt;
    ws.send(Message::Binary(hello.into())).await.unwrap();
    let reply = next_binary(&mut ws, T).await.expect("handshake reply");
    // its own finish fails (the transcript has the victim's key); it sends a forged Authenticate anyway
    assert!(hs.finish(&reply).is_err());
    let (_, forged) = ClientHandshake::start(&mut rand::rng(), &attacker, gw_identity(&net, 0));
    ws.send(Message::Binary(vec![0x10; 40].into())).await.unwrap();
    drop(forged);
    // the gateway closes without sending anything
    assert_eq!(next_binary(&mut ws, Duration::from_secs(3)).await, None);
    assert_eq!(
        gw.stored_count(victim_pub.as_bytes()),
        1,
        "the victim's message is untouched"
    );

    let mut v = TestClient::connect(&gw_url(&net, 0), &victim, gw_identity(&net, 0))
        .await
        .unwrap();
    assert_eq!(v.stored, 1);
    assert_eq!(v.recv_deliveries(1, T).await, vec![b"for the victim only".to_vec()]);
    v.close().await;
    sender.close().await;
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mixnode_restarts_with_same_key_and_address() {
    let dir = tempfile::tempdir().unwrap();
    let mut net = start(dir.path()).await;
    let before = net.mixnodes()[2].clone();
    net.kill_mixnode(2).await.unwrap();
    assert!(!net.mixnodes()[2].running);
    assert!(
        tokio::net::TcpStream::connect(before.address).await.is_err(),
        "port closed"
    );
    net.restart_mixnode(2).await.unwrap();
    let after = net.mixnodes()[2].clone();
    assert!(after.running);
    assert_eq!((before.address, &before.public_key), (after.address, &after.public_key));
    net.shutdown().await;
    // the same data dir gives the same network identities
    let net2 = start(dir.path()).await;
    assert_eq!(net2.mixnodes()[2].public_key, before.public_key);
    net2.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_localnet_directory_admits_exactly_its_nodes_and_every_node_pins_its_authorities() {
    let dir = tempfile::tempdir().unwrap();
    let net = start(dir.path()).await;
    let key = net.directory_key();
    let t = net.topology();
    let pinned = nym_wire::authority::Authorities::single(key, "http://127.0.0.1:1");
    nym_wire::signed::verify_topology_json(&t, Some(&pinned), now_ms(), nym_wire::VERSION).unwrap();
    let listed: std::collections::HashSet<String> = t
        .mix_nodes
        .iter()
        .map(|m| m.identity_key.clone())
        .chain(t.gateway_nodes.iter().map(|g| g.identity_key.clone()))
        .collect();
    let ours: std::collections::HashSet<String> = net
        .mixnodes()
        .into_iter()
        .map(|m| m.identity_key)
        .chain(net.gateways().into_iter().map(|g| g.identity_key))
        .collect();
    assert_eq!(listed, ours);
    assert_eq!(
        net.describe().lines().nth(1),
        Some(format!("directory key: {}", nym_wire::address::encode_key(&key)).as_str())
    );
    // every node trusts the localnet's authorities (all of them, with their threshold)
    for i in 0..6 {
        assert_eq!(net.mixnode(i).unwrap().authorities().as_ref(), Some(net.authorities()), "mixnode {i}");
    }
    for i in 0..2 {
        assert_eq!(net.gateway(i).unwrap().authorities().as_ref(), Some(net.authorities()), "gateway {i}");
    }
    // a stranger is not admitted
    let http = nym_mixnet::http::DirectoryClient::new(&net.directory_url()).unwrap();
    let refused = http
        .announce(
            "/api/presence/mixnodes",
            &signed_mix(&identity(77), 1, "127.0.0.77:1", now_ms()),
        )
        .await
        .unwrap();
    assert_eq!(refused.unwrap_err().status, 403);
    net.shutdown().await;

    // the same data dir: the same directory key and node identities
    let again = start(dir.path()).await;
    assert_eq!(again.directory_key(), key);
    let ids: std::collections::HashSet<String> = again
        .mixnodes()
        .into_iter()
        .map(|m| m.identity_key)
        .chain(again.gateways().into_iter().map(|g| g.identity_key))
        .collect();
    assert_eq!(ids, ours);
    again.shutdown().await;
}

/// Needs helper B's consensus (three authorities co-signing): the localnet
/// runs 3 authorities by default, writes their file, and every node trusts
/// all three with a majority needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_localnet_runs_three_authorities_and_every_node_needs_two_signatures() {
    let dir = tempfile::tempdir().unwrap();
    let net = start(dir.path()).await;
    let authorities = net.authorities().clone();
    assert_eq!((authorities.list().len(), authorities.threshold()), (3, 2));
    let file = std::fs::read_to_string(net.authorities_file()).unwrap();
    assert_eq!(
        nym_wire::authority::Authorities::parse(&file, None).unwrap(),
        authorities
    );
    let describe = net.describe();
    assert!(
        describe.starts_with(&format!("directory: {}\n", authorities.list()[0].url)),
        "{describe}"
    );
    assert!(
        describe.contains(&format!("authorities: {}\n", net.authorities_file().display())),
        "{describe}"
    );
    for i in 0..6 {
        assert_eq!(
            net.mixnode(i).unwrap().authorities().as_ref(),
            Some(&authorities),
            "mixnode {i}"
        );
    }
    for i in 0..2 {
        assert_eq!(
            net.gateway(i).unwrap().authorities().as_ref(),
            Some(&authorities),
            "gateway {i}"
        );
    }
    let served = net.served_topology().await.unwrap();
    let signers = served.verify_signatures(Some(&authorities)).unwrap();
    assert!(signers.keys.len() >= 2, "{signers:?}");
    net.shutdown().await;
}
