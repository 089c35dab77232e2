//! The directory: announcements, expiry, bad input, CORS.

use nym_mixnet::http::DirectoryClient;
use nym_wire::address::encode_key;
use nym_wire::topology::{GatewayJson, MixNodeJson};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use x25519_dalek::{PublicKey, StaticSecret};

fn mix(layer: u8, port: u16) -> MixNodeJson {
    MixNodeJson {
        host: format!("127.0.0.1:{port}"),
        pub_key: encode_key(PublicKey::from(&StaticSecret::from([port as u8; 32])).as_bytes()),
        layer,
        version: nym_wire::VERSION.into(),
        location: "test".into(),
        last_seen: 0,
    }
}

async fn raw_http(addr: SocketAddr, request: String) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn entries_expire_unless_reannounced() {
    let dir = nym_mixnet::start_directory("127.0.0.1:0".parse().unwrap(), Duration::from_millis(400)).await.unwrap();
    let client = DirectoryClient::new(&dir.url()).unwrap();
    client.post_json("/api/presence/mixnodes", &mix(1, 1001)).await.unwrap();
    client.post_json("/api/presence/mixnodes", &mix(2, 1002)).await.unwrap();
    let gw = GatewayJson {
        client_listener: "ws://127.0.0.1:9000".into(),
        mixnet_listener: "127.0.0.1:1790".into(),
        identity_key: encode_key(ed25519_dalek::SigningKey::from_bytes(&[3; 32]).verifying_key().as_bytes()),
        sphinx_key: encode_key(PublicKey::from(&StaticSecret::from([4; 32])).as_bytes()),
        version: nym_wire::VERSION.into(),
        location: "test".into(),
        last_seen: 0,
    };
    client.post_json("/api/presence/gateways", &gw).await.unwrap();
    let t = client.topology().await.unwrap();
    assert_eq!(t.mix_nodes.len(), 2);
    assert_eq!(t.gateway_nodes.len(), 1);
    assert!(t.mix_nodes.iter().all(|m| m.last_seen > 1_600_000_000_000_000_000), "lastSeen is unix ns");
    // keep one mixnode alive, let the rest expire
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        client.post_json("/api/presence/mixnodes", &mix(1, 1001)).await.unwrap();
    }
    let t = client.topology().await.unwrap();
    assert_eq!(t.mix_nodes.len(), 1);
    assert_eq!(t.mix_nodes[0].host, "127.0.0.1:1001");
    assert!(t.gateway_nodes.is_empty());
    dir.shutdown().await;
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_and_cors_is_open() {
    let dir = nym_mixnet::start_directory("127.0.0.1:0".parse().unwrap(), Duration::from_secs(10)).await.unwrap();
    let client = DirectoryClient::new(&dir.url()).unwrap();
    let e = client.post_json("/api/presence/mixnodes", &serde_json::json!({"host": 3})).await.unwrap_err().to_string();
    assert!(e.contains("400") && e.contains("bad mixnode JSON"), "{e}");
    let mut bad_key = mix(1, 1);
    bad_key.pub_key = "0OIl".into();
    let e = client.post_json("/api/presence/mixnodes", &bad_key).await.unwrap_err().to_string();
    assert!(e.contains("400") && e.contains("key"), "{e}");
    let e = client.post_json("/api/presence/mixnodes", &mix(7, 1)).await.unwrap_err().to_string();
    assert!(e.contains("layer"), "{e}");
    let body = "{not json";
    let resp = raw_http(
        dir.addr,
        format!("POST /api/presence/gateways HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    assert!(client.topology().await.unwrap().mix_nodes.is_empty());

    let resp = raw_http(dir.addr, "GET /api/presence/topology HTTP/1.1\r\nHost: x\r\nOrigin: http://example.com\r\nConnection: close\r\n\r\n".into()).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.to_ascii_lowercase().contains("access-control-allow-origin: *"), "{resp}");
    assert!(resp.contains("\"mixNodes\"") && resp.contains("\"gatewayNodes\""), "{resp}");
    dir.shutdown().await;
}
