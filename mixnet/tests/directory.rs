//! The directory: signed announcements, expiry, the signed document, bad
//! input, CORS, its key on disk. (Attacks on it: directory_attacks.rs.)

mod common;

use nym_wire::authority::Authorities;
use common::*;
use nym_mixnet::http::DirectoryClient;
use nym_mixnet::{DirectoryConfig, DirectoryHandle};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn start(data: &Path, tweak: impl FnOnce(&mut DirectoryConfig)) -> DirectoryHandle {
    let mut c = DirectoryConfig::new(data.join("directory"));
    c.listen = "127.0.0.1:0".parse().unwrap();
    c.open = true;
    tweak(&mut c);
    nym_mixnet::start_directory(c).await.unwrap()
}

async fn raw_http(addr: SocketAddr, request: String) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn post(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn entries_expire_unless_reannounced() {
    let data = tempfile::tempdir().unwrap();
    let dir = start(data.path(), |c| c.expiry = Duration::from_millis(400)).await;
    let client = DirectoryClient::new(&dir.url()).unwrap();
    let (k1, k2, k3) = (identity(1), identity(2), identity(3));
    let mut seq = now_ms();
    let mut next = || {
        seq += 1;
        seq
    };
    client.post_json("/api/presence/mixnodes", &signed_mix(&k1, 1, "127.0.0.1:1001", next())).await.unwrap();
    client.post_json("/api/presence/mixnodes", &signed_mix(&k2, 2, "127.0.0.1:1002", next())).await.unwrap();
    client.post_json("/api/presence/gateways", &signed_gateway(&k3, "127.0.0.1:1790", "127.0.0.1:9000", next())).await.unwrap();
    let t = client.topology().await.unwrap();
    assert_eq!(t.mix_nodes.len(), 2);
    assert_eq!(t.gateway_nodes.len(), 1);
    assert!(t.mix_nodes.iter().all(|m| m.last_seen > 1_600_000_000_000_000_000), "lastSeen is unix ns");
    // keep one mixnode alive, let the rest expire
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        client.post_json("/api/presence/mixnodes", &signed_mix(&k1, 1, "127.0.0.1:1001", next())).await.unwrap();
    }
    let t = client.topology().await.unwrap();
    assert_eq!(t.mix_nodes.len(), 1);
    assert_eq!(t.mix_nodes[0].host, "127.0.0.1:1001");
    assert!(t.gateway_nodes.is_empty());
    dir.shutdown().await;
}

#[tokio::test]
async fn the_document_is_signed_by_the_directory_key_and_that_key_is_kept() {
    let data = tempfile::tempdir().unwrap();
    let dir = start(data.path(), |c| c.topology_validity = Duration::from_secs(120)).await;
    let key = dir.directory_key();
    let client = DirectoryClient::new(&dir.url()).unwrap();
    let seq = now_ms();
    for (i, layer) in [1u8, 2, 3].into_iter().enumerate() {
        let m = signed_mix(&identity(10 + i as u8), layer, &format!("127.0.0.1:{}", 2000 + i), seq);
        client.post_json("/api/presence/mixnodes", &m).await.unwrap();
    }
    client.post_json("/api/presence/gateways", &signed_gateway(&identity(20), "127.0.0.1:1790", "127.0.0.1:9000", seq)).await.unwrap();

    let t = client.topology().await.unwrap();
    assert_eq!(t.served_by, nym_wire::address::encode_key(&key));
    assert_eq!(t.signatures.len(), 1);
    assert_eq!(t.signatures[0].key, t.served_by);
    assert_eq!(t.expires_at - t.issued_at, 120_000);
    assert!(t.issued_at.abs_diff(now_ms()) < 10_000);
    let v = nym_wire::signed::verify_topology_json(&t, Some(&Authorities::single(key, dir.url())), now_ms(), nym_wire::VERSION).unwrap();
    assert_eq!(v.topology.mixnodes().count(), 3);
    assert_eq!(v.topology.gateways().len(), 1);
    // every descriptor keeps its node's signature
    assert!(t.mix_nodes.iter().all(|m| m.verify_signature().is_ok()));
    // another pinned key refuses it
    let other = Authorities::single(identity(99).verifying_key().to_bytes(), dir.url());
    let e = nym_wire::signed::verify_topology_json(&t, Some(&other), now_ms(), nym_wire::VERSION)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not signed by the pinned directory key"), "{e}");
    dir.shutdown().await;

    // the key is on disk, private, and the same after a restart
    let key_dir = data.path().join("directory");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&key_dir.join("directory_private.pem")), 0o600);
        assert_eq!(mode(&key_dir), 0o700);
    }
    let again = start(data.path(), |_| {}).await;
    assert_eq!(again.directory_key(), key);
    again.shutdown().await;
    let other = tempfile::tempdir().unwrap();
    let fresh = start(other.path(), |_| {}).await;
    assert_ne!(fresh.directory_key(), key);
    fresh.shutdown().await;
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_and_cors_is_open() {
    let data = tempfile::tempdir().unwrap();
    let dir = start(data.path(), |_| {}).await;
    let client = DirectoryClient::new(&dir.url()).unwrap();
    let e = client.post_json("/api/presence/mixnodes", &serde_json::json!({"host": 3})).await.unwrap_err().to_string();
    assert!(e.contains("400") && e.contains("bad mixnode JSON"), "{e}");
    let k = identity(1);
    // a validly signed descriptor with a bad key / layer
    let mut bad_key = signed_mix(&k, 1, "127.0.0.1:1", now_ms());
    bad_key.pub_key = "0OIl".into();
    bad_key.sign(&k, now_ms());
    let e = client.post_json("/api/presence/mixnodes", &bad_key).await.unwrap_err().to_string();
    assert!(e.contains("400") && e.contains("key"), "{e}");
    let e = client.post_json("/api/presence/mixnodes", &signed_mix(&k, 7, "127.0.0.1:1", now_ms() + 1)).await.unwrap_err().to_string();
    assert!(e.contains("400") && e.contains("layer"), "{e}");
    let e = client.post_json("/api/presence/mixnodes", &signed_mix(&k, 1, "nowhere", now_ms() + 2)).await.unwrap_err().to_string();
    assert!(e.contains("400") && e.contains("is not ip:port"), "{e}");
    // unsigned (the old format)
    let mut unsigned = signed_mix(&k, 1, "127.0.0.1:1", now_ms());
    unsigned.signature.clear();
    let e = client.post_json("/api/presence/mixnodes", &unsigned).await.unwrap_err().to_string();
    assert!(e.contains("400") && e.contains("not signed"), "{e}");
    let mut unsigned = signed_gateway(&k, "127.0.0.1:1", "127.0.0.1:2", now_ms());
    unsigned.signature.clear();
    let e = client.post_json("/api/presence/gateways", &unsigned).await.unwrap_err().to_string();
    assert!(e.contains("400") && e.contains("not signed"), "{e}");

    let resp = raw_http(dir.addr, post("/api/presence/gateways", "{not json")).await;
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    // bodies are bounded
    let big = format!("{{\"host\":\"{}\"}}", "a".repeat(nym_mixnet::directory::DEFAULT_MAX_BODY));
    let resp = raw_http(dir.addr, post("/api/presence/mixnodes", &big)).await;
    assert!(resp.starts_with("HTTP/1.1 413") && resp.contains("--max-body"), "{resp}");
    // nothing of that changed the document
    let t = client.topology().await.unwrap();
    assert!(t.mix_nodes.is_empty() && t.gateway_nodes.is_empty());

    let resp = raw_http(dir.addr, "GET /api/presence/topology HTTP/1.1\r\nHost: x\r\nOrigin: http://example.com\r\nConnection: close\r\n\r\n".into()).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.to_ascii_lowercase().contains("access-control-allow-origin: *"), "{resp}");
    assert!(resp.to_ascii_lowercase().contains("content-type: application/json"), "{resp}");
    for field in ["\"mixNodes\"", "\"gatewayNodes\"", "\"issuedAt\"", "\"expiresAt\"", "\"round\"", "\"signatures\"", "\"servedBy\""] {
        assert!(resp.contains(field), "{field} missing: {resp}");
    }
    dir.shutdown().await;
}

#[tokio::test]
async fn an_identitys_budget_is_its_own_and_forgeries_and_replays_do_not_spend_it() {
    let data = tempfile::tempdir().unwrap();
    let dir = start(data.path(), |c| {
        c.identity_rate = 0.001;
        c.identity_burst = 2;
    })
    .await;
    let client = DirectoryClient::new(&dir.url()).unwrap();
    let (real, attacker) = (identity(1), identity(66));
    // many descriptors naming the real identity but signed by the attacker
    for i in 0..10 {
        let mut forged = signed_mix(&attacker, 1, "127.0.0.66:1", now_ms() + i);
        forged.identity_key = nym_wire::address::encode_key(real.verifying_key().as_bytes());
        let r = client.announce("/api/presence/mixnodes", &forged).await.unwrap().unwrap_err();
        assert_eq!(r.status, 400, "{r}");
    }
    // the real node still has its whole burst, and no more; replays of its
    // descriptor don't spend it either
    let seq = now_ms();
    let first = signed_mix(&real, 1, "127.0.0.1:1", seq);
    client.post_json("/api/presence/mixnodes", &first).await.unwrap();
    for _ in 0..10 {
        let r = client.announce("/api/presence/mixnodes", &first).await.unwrap().unwrap_err();
        assert_eq!(r.status, 409, "{r}");
    }
    client.post_json("/api/presence/mixnodes", &signed_mix(&real, 1, "127.0.0.1:1", seq + 1)).await.unwrap();
    let r = client.announce("/api/presence/mixnodes", &signed_mix(&real, 1, "127.0.0.1:1", seq + 2)).await.unwrap().unwrap_err();
    assert_eq!(r.status, 429, "{r}");
    assert!(r.reason.contains("too many announcements for identity") && r.reason.contains("--identity-rate"), "{r}");
    // another identity is not affected
    client.post_json("/api/presence/mixnodes", &signed_mix(&identity(2), 2, "127.0.0.1:2", seq)).await.unwrap();
    let t = client.topology().await.unwrap();
    assert_eq!(t.mix_nodes.len(), 2);
    assert_eq!(t.mix_nodes[0].seq, seq + 1);
    dir.shutdown().await;
}

#[tokio::test]
async fn a_source_over_its_rate_is_refused_before_its_body_is_read() {
    let data = tempfile::tempdir().unwrap();
    let dir = start(data.path(), |c| {
        c.source_rate = 0.001;
        c.source_burst = 3;
    })
    .await;
    let client = DirectoryClient::new(&dir.url()).unwrap();
    for _ in 0..3 {
        // even garbage spends the source's budget
        let r = client.announce("/api/presence/mixnodes", &serde_json::json!({"host": 3})).await.unwrap().unwrap_err();
        assert_eq!(r.status, 400, "{r}");
    }
    let r = client.announce("/api/presence/gateways", &signed_gateway(&identity(3), "127.0.0.1:3", "127.0.0.1:4", now_ms())).await.unwrap().unwrap_err();
    assert_eq!(r.status, 429, "{r}");
    assert!(r.reason.contains("too many announcements from 127.0.0.1") && r.reason.contains("--source-rate"), "{r}");
    // an oversized body from it is not even read: 429, not 413
    let big = format!("{{\"host\":\"{}\"}}", "a".repeat(64 * 1024));
    let resp = raw_http(dir.addr, post("/api/presence/mixnodes", &big)).await;
    assert!(resp.starts_with("HTTP/1.1 429"), "{resp}");
    // reading is not limited
    assert!(client.topology().await.unwrap().gateway_nodes.is_empty());
    dir.shutdown().await;
}

#[tokio::test]
async fn descriptors_with_keys_for_other_epochs_are_refused() {
    let data = tempfile::tempdir().unwrap();
    let dir = start(data.path(), |_| {}).await;
    let client = DirectoryClient::new(&dir.url()).unwrap();
    let node = identity(5);
    let seq = now_ms();
    let refused = |mut m: nym_wire::topology::MixNodeJson, seq: u64| {
        m.sign(&node, seq);
        m
    };
    // keys held back for later epochs, keys for the previous epoch, and a
    // node whose --epoch-secs differs from the directory's
    let mut later = signed_mix(&node, 1, "127.0.0.1:5", seq);
    for k in &mut later.sphinx_keys {
        k.epoch += 1;
    }
    let mut earlier = signed_mix(&node, 1, "127.0.0.1:5", seq);
    for k in &mut earlier.sphinx_keys {
        k.epoch -= 1;
    }
    let mut other_length = signed_mix(&node, 1, "127.0.0.1:5", seq);
    let hourly = nym_wire::epoch::epoch_at(seq, 3_600_000);
    other_length.sphinx_keys[0].epoch = hourly;
    other_length.sphinx_keys[1].epoch = hourly + 1;
    for (what, m) in [("later", later), ("earlier", earlier), ("another length", other_length)] {
        let r = client.announce("/api/presence/mixnodes", &refused(m, seq)).await.unwrap().unwrap_err();
        assert_eq!(r.status, 400, "{what}: {r}");
        assert!(r.reason.contains("sphinx keys for epochs") && r.reason.contains("--epoch-secs"), "{what}: {r}");
    }
    assert!(client.topology().await.unwrap().mix_nodes.is_empty(), "nothing was listed");
    // the same node with its keys for the epoch it signs in: listed, and
    // the document states the epoch length
    client.post_json("/api/presence/mixnodes", &signed_mix(&node, 1, "127.0.0.1:5", seq + 1)).await.unwrap();
    let t = client.topology().await.unwrap();
    assert_eq!(t.mix_nodes.len(), 1);
    assert_eq!(t.epoch_length_secs, nym_wire::epoch::DEFAULT_EPOCH_SECS);
    dir.shutdown().await;
}
