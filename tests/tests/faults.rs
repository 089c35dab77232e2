//! Reliability under faults, with real `nym-client` processes: a mixnode
//! killed mid-transfer, a gateway restarted while it holds messages for an
//! offline client. Delivery is exactly once.

use anyhow::{anyhow, Result};
use nym_integration_tests::*;
use serde_json::json;
use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

fn reliable(c: &mut nym_client::config::Config) {
    fast(c);
    c.debug.gateway_reconnect_initial_backoff = 100;
    c.debug.gateway_reconnect_max_backoff = 1000;
}

/// A third layer-2 mixnode runs as its own process and is SIGKILLed in the
/// middle of a 300-message transfer: what it held is lost, and the senders'
/// retransmissions on fresh routes make up for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixnode_killed_mid_transfer_loses_nothing() -> Result<()> {
    a_mixnode_leaves_mid_transfer(2).await
}

/// The same with a layer-1 node: once the gateways drop it from their
/// topology they refuse it as a first hop, and the clients send those
/// packets again on live routes: no message lost, no error frame to an
/// application.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_hop_mixnode_that_leaves_costs_no_message_and_no_error_frame() -> Result<()> {
    a_mixnode_leaves_mid_transfer(1).await
}

async fn a_mixnode_leaves_mid_transfer(layer: u8) -> Result<()> {
    // The extra node's identity first: the localnet's directory admits it.
    let node_dir = tempfile::tempdir()?;
    let identity = nym_mixnet::keyfiles::load_or_create_identity_key(node_dir.path())?;
    let data = tempfile::tempdir()?;
    let mut config = nym_mixnet::localnet::LocalnetConfig::fast(data.path());
    config.also_admit.push(identity.verifying_key().to_bytes());
    let net = nym_mixnet::localnet::Localnet::start(config).await?;
    let dir = net.directory_url();
    // every authority of the localnet: a node listed by one alone is not in the consensus
    let authorities = net.authorities_file();
    let mut victim = Command::new(nym_integration_tests::netns::mixnet_binaries().join("nym-mixnode"))
        .args(["--layer", &layer.to_string(), "--listen", "127.0.0.1:0", "--authorities"])
        .arg(&authorities)
        .args(["--announce-interval", "0.2"])
        // the localnet's key epochs: the directory refuses keys for others
        .args(["--epoch-secs", &net.config().epochs.epoch_secs.to_string(), "--data-dir"])
        .arg(node_dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let directory = nym_mixnet::http::DirectoryClient::new(&dir)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while directory.topology().await?.mix_nodes.iter().filter(|m| m.layer == layer).count() < 3 {
        if std::time::Instant::now() > deadline {
            let _ = victim.kill();
            return Err(anyhow!("the extra mixnode never announced itself"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (alice, bob, mut a, mut b) = alice_and_bob(&dir, reliable).await?;

    let mut expected = BTreeSet::new();
    for i in 0..300 {
        let m = format!("message {i:03}");
        assert!(send_id(&request(&mut a, &json!({"type": "send", "recipient": bob.address, "message": m})).await?).is_some());
        expected.insert(m);
        if i == 100 {
            victim.kill()?; // SIGKILL: the node vanishes with whatever it held
            victim.wait()?;
        }
    }
    let mut got = Vec::new();
    while got.len() < 300 {
        match recv(&mut b, Duration::from_secs(90)).await {
            Ok(Message::Text(t)) => got.push(t.as_str().to_string()),
            other => return Err(anyhow!("after {} messages: {other:?}\nalice:\n{}", got.len(), alice.log())),
        }
    }
    // Nothing more (no duplicates) within a while.
    assert!(recv(&mut b, Duration::from_secs(3)).await.is_err(), "a duplicate arrived");
    let unique: BTreeSet<String> = got.iter().cloned().collect();
    assert_eq!(unique.len(), 300, "every message exactly once");
    assert_eq!(unique, expected);
    // And the sender's application heard of no error.
    if let Ok(frame) = recv(&mut a, Duration::from_secs(1)).await {
        return Err(anyhow!("alice's application got {frame:?}\nalice:\n{}", alice.log()));
    }
    net.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_restart_keeps_messages_for_an_offline_client() -> Result<()> {
    let data = tempfile::tempdir()?;
    let mut net = start_localnet(data.path()).await?;
    let dir = net.directory_url();
    let gateways = net.gateways();
    let mut alice = TestClient::init_with(&dir, "alice", &["--gateway", &gateways[0].identity_key], reliable)?;
    let mut bob = TestClient::init_with(&dir, "bob", &["--gateway", &gateways[1].identity_key], reliable)?;
    alice.start().await?;
    let mut a = alice.connect().await?;
    // Bob is offline: his gateway keeps what arrives.
    for i in 0..20 {
        request(&mut a, &json!({"type": "send", "recipient": bob.address, "message": format!("stored {i}")})).await?;
    }
    let stats = net.gateway_stats(1).ok_or_else(|| anyhow!("no gateway 1"))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while stats.snapshot().stored < 20 {
        if std::time::Instant::now() > deadline {
            return Err(anyhow!("gateway stored only {:?}", stats.snapshot()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    net.kill_gateway(1).await?;
    net.restart_gateway(1).await?;
    // Bob comes online; the first application to connect gets what was kept.
    bob.start_unprobed().await?;
    let mut b = bob.connect().await?;
    let mut got = BTreeSet::new();
    while got.len() < 20 {
        match recv(&mut b, Duration::from_secs(60)).await {
            Ok(Message::Text(t)) => {
                assert!(got.insert(t.as_str().to_string()), "duplicate {t}");
            }
            Ok(Message::Binary(m)) => {
                assert!(got.insert(String::from_utf8(m.to_vec())?), "duplicate");
            }
            other => return Err(anyhow!("after {}: {other:?}", got.len())),
        }
    }
    assert_eq!(got, (0..20).map(|i| format!("stored {i}")).collect());
    net.shutdown().await;
    Ok(())
}
