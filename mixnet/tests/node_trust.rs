//! Nodes believe only topologies signed by their directory key (pinned, or
//! trusted on first use and kept): a mixnode forwards only to next hops its
//! verified topology lists, a gateway lets clients into layer-1 mixnodes of
//! a verified topology only.

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
            let _ = client.post_json("/api/presence/mixnodes", &signed_mix(&identity(41), 1, &layer1, seq)).await;
            let _ = client.post_json("/api/presence/mixnodes", &signed_mix(&identity(42), 2, &layer2.to_string(), seq)).await;
            let _ = client.post_json("/api/presence/mixnodes", &signed_mix(&identity(43), 3, "127.0.0.43:1", seq)).await;
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
        node("127.0.0.43:1".parse().unwrap(), PublicKey::from(&StaticSecret::from([43; 32]))),
    ];
    build_frame(b"hello", &route, &PublicKey::from(&random_secret()), &[0, 0, 0], first.sphinx_keys().current_epoch())
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
    assert!(wait_until(T, || mix.directory_key().is_some()).await, "never verified a topology");
    assert_eq!(mix.directory_key(), Some(dir.directory_key()));
    let saved = std::fs::read_to_string(node_dir.join("directory_key.txt")).unwrap();
    assert_eq!(saved.trim(), encode_key(&dir.directory_key()));

    send_tcp(mix.listen_addr(), &packet_via(&mix, rogue.addr)).await;
    send_tcp(mix.listen_addr(), &packet_via(&mix, listed.addr)).await;
    let stats = mix.stats();
    assert!(wait_until(T, || listed.count() == 1 && stats.snapshot().dropped_unlisted_hop == 1).await, "{}", stats.snapshot());
    assert_eq!(rogue.count(), 0);
    mix.shutdown().await;

    // another directory (another key) lists the rogue sink: the restarted
    // node, which kept the first key, believes none of it
    let impostor = directory(&data.path().join("impostor")).await;
    keep_announcing(&impostor, "127.0.0.41:1", rogue.addr, cancel.clone());
    c.directory = Some(impostor.url());
    let mix = Mixnode::start(c).await.unwrap();
    assert_eq!(mix.directory_key(), Some(dir.directory_key()));
    send_tcp(mix.listen_addr(), &packet_via(&mix, rogue.addr)).await;
    let stats = mix.stats();
    assert!(wait_until(T, || stats.snapshot().dropped_unlisted_hop == 1).await, "{}", stats.snapshot());
    assert_eq!(rogue.count(), 0);
    assert_eq!(mix.directory_key(), Some(dir.directory_key()));
    cancel.cancel();
    mix.shutdown().await;
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

    for (name, url, allowed) in [("pinned-real", real.url(), true), ("pinned-elsewhere", impostor.url(), false)] {
        let mut c = GatewayConfig::new(data.path().join(name));
        c.mix_listen = "127.0.0.1:0".parse().unwrap();
        c.clients_listen = "127.0.0.1:0".parse().unwrap();
        c.directory = Some(url);
        c.directory_key = Some(real.directory_key());
        c.announce_interval = Duration::from_millis(200);
        c.topology_refresh = Duration::from_millis(200);
        c.workers = 1;
        let gw = Gateway::start(c).await.unwrap();
        let mut client = TestClient::connect(&gw.client_listener_url(), &random_secret(), gw.identity_key()).await.unwrap();
        let before = sink.count();
        let frame = build_frame(b"x", &[node(sink.addr, PublicKey::from(&random_secret()))], &PublicKey::from(&random_secret()), &[0], 0);
        client.forward(*encode_node_address(sink.addr).as_bytes(), frame).await;
        if allowed {
            assert!(wait_until(T, || sink.count() == before + 1).await, "{name}: a listed first hop got nothing");
        } else {
            match client.recv(T).await {
                Some(GatewayResponse::Refused { next_hop, .. }) => assert_eq!(next_hop, *encode_node_address(sink.addr).as_bytes()),
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
