//! A client believes only topologies signed by the directory key it pinned:
//! a document rewritten between the directory and the client, re-signed by
//! another key, carrying a forged node descriptor, unsigned, or replayed is
//! refused, and messages keep flowing on the last good topology.

use anyhow::{anyhow, bail, Context, Result};
use nym_wire::topology::TopologyJson;
use nym_integration_tests::*;
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

/// The attacks the man in the middle takes turns with, and what the client
/// must say about each.
const ATTACKS: [(&str, &str); 5] = [
    // The document's signatures are checked first: a change anywhere in it
    // leaves it without a valid signature by the pinned key.
    ("a layer-1 node's address rewritten", "is not signed by the pinned directory key"),
    ("re-signed by the attacker's directory key", "is not signed by the pinned directory key"),
    ("a gateway descriptor its gateway never signed", "is not signed by the pinned directory key"),
    ("the signature stripped", "the topology is not signed"),
    ("an older genuine document replayed", "before the one in use"),
];

/// An HTTP server in front of the directory that serves its topology
/// honestly until `attacking`, then each request one of [`ATTACKS`] in turn.
struct Middle {
    url: String,
    attacking: Arc<AtomicBool>,
    /// A document newer than the first one was served honestly.
    served_newer: Arc<AtomicBool>,
}

fn tamper(doc: &mut TopologyJson, attack: usize, first: &TopologyJson) {
    let attacker = "127.0.0.1:9".to_string();
    match attack {
        0 => doc.mix_nodes[0].host = attacker,
        1 => {
            doc.mix_nodes[0].host = attacker;
            let key = attacker_key();
            doc.signatures.clear();
            doc.served_by = nym_wire::address::encode_key(key.verifying_key().as_bytes());
            doc.sign(&key);
        }
        2 => {
            // the attacker's own key signs a descriptor that keeps the real
            // gateway's identity; the document's signature is left as it was
            let real_identity = doc.gateway_nodes[0].identity_key.clone();
            doc.gateway_nodes[0].mixnet_listener = attacker;
            doc.gateway_nodes[0].sign(&attacker_key(), doc.issued_at);
            doc.gateway_nodes[0].identity_key = real_identity;
        }
        3 => doc.signatures.clear(),
        _ => *doc = first.clone(),
    }
}

fn attacker_key() -> ed25519_dalek::SigningKey {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).expect("random numbers");
    ed25519_dalek::SigningKey::from_bytes(&seed)
}

async fn start_middle(directory: String) -> Result<Middle> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let attacking = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let first: Arc<Mutex<Option<TopologyJson>>> = Arc::default();
    let served_newer = Arc::new(AtomicBool::new(false));
    let (flag, newer_flag) = (attacking.clone(), served_newer.clone());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (directory, attacking, served, first) = (directory.clone(), flag.clone(), served.clone(), first.clone());
            let newer = newer_flag.clone();
            tokio::spawn(async move {
                // One GET per connection: read the head, answer, close.
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let Ok(text) = nym_client::directory::fetch_topology_text(&directory).await else { return };
                let Ok(mut doc) = serde_json::from_str::<TopologyJson>(&text) else { return };
                let original = {
                    let mut first = first.lock().unwrap_or_else(|p| p.into_inner());
                    first.get_or_insert_with(|| doc.clone()).clone()
                };
                if attacking.load(Ordering::SeqCst) {
                    let attack = served.fetch_add(1, Ordering::SeqCst) % ATTACKS.len();
                    tamper(&mut doc, attack, &original);
                } else if doc.issued_at > original.issued_at {
                    // The client now holds a document newer than the first:
                    // replaying the first is a replay of an older one.
                    newer.store(true, Ordering::SeqCst);
                }
                let body = serde_json::to_string(&doc).unwrap_or_default();
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    Ok(Middle { url, attacking, served_newer })
}

async fn directory_key(directory: &str) -> Result<String> {
    let text = nym_client::directory::fetch_topology_text(directory).await?;
    let doc: TopologyJson = serde_json::from_str(&text).context("topology JSON")?;
    if doc.served_by.is_empty() || doc.signatures.is_empty() {
        bail!("the directory signs no topology");
    }
    Ok(doc.served_by)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topology_tampered_with_on_the_way_is_refused_and_messages_keep_flowing() -> Result<()> {
    let directory = shared_localnet();
    let key = directory_key(&directory).await?;
    let middle = start_middle(directory.clone()).await?;

    // Alice reaches the directory through the middle, with its key pinned;
    // Bob trusts the key on first use, and init says which key that was.
    let mut alice = TestClient::init_with(&middle.url, "alice", &["--directory-key", &key], |c| {
        fast(c);
        c.client.directory_server = middle.url.clone();
        c.debug.topology_refresh_rate = 1000;
    })?;
    assert!(alice.init_output.contains(&format!("Directory key (pinned with --directory-key): {key}")), "{}", alice.init_output);
    let mut bob = TestClient::init(&directory, "bob", fast)?;
    assert!(bob.init_output.contains(&format!("(trusted on first use; compare it with the one your directory's operator publishes): {key}")), "{}", bob.init_output);
    alice.start().await?;
    bob.start().await?;
    let mut a = alice.connect().await?;
    let mut b = bob.connect().await?;
    request(&mut b, &json!({"type": "selfAddress"})).await?;

    wait_for(Duration::from_secs(30), "a honest refresh newer than the first document", || {
        middle.served_newer.load(Ordering::SeqCst)
    })
    .await?;
    middle.attacking.store(true, Ordering::SeqCst);
    wait_for(Duration::from_secs(30), "every attack to be refused", || {
        let log = alice.log();
        ATTACKS.iter().all(|(_, why)| log.contains(why))
    })
    .await
    .map_err(|e| anyhow!("{e}\nalice's log:\n{}", alice.log()))?;

    // Still under attack: every message arrives, on the last good topology.
    let mut sent = Vec::new();
    for i in 0..5 {
        let text = format!("through a hostile network {i}");
        let answer = request(&mut a, &json!({"type": "send", "message": text, "recipient": bob.address})).await?;
        assert!(send_id(&answer).is_some());
        sent.push(text);
    }
    let mut got = Vec::new();
    while got.len() < sent.len() {
        match recv(&mut b, Duration::from_secs(30)).await {
            Ok(Message::Text(t)) => got.push(t.to_string()),
            other => bail!("expected a message, got {other:?}\nalice's log:\n{}", alice.log()),
        }
    }
    got.sort();
    assert_eq!(got, sent);
    alice.stop();
    bob.stop();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_with_another_directory_key_refuses_the_directory() -> Result<()> {
    let directory = shared_localnet();
    let other = bs58::encode(attacker_key().verifying_key().as_bytes()).into_string();
    let Err(e) = TestClient::init_with(&directory, "carol", &["--directory-key", &other], fast) else {
        bail!("init believed a directory that is not the pinned one");
    };
    let e = format!("{e:#}");
    assert!(e.contains(&format!("not signed by the pinned directory key {other}")), "{e}");
    let Err(e) = TestClient::init_with(&directory, "dave", &["--directory-key", "not-a-key"], fast) else {
        bail!("init took a malformed key");
    };
    assert!(format!("{e:#}").contains("--directory-key"), "{e:#}");
    Ok(())
}
