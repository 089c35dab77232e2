//! Key rotation under traffic, between real `nym-client` processes over a
//! localnet whose Sphinx keys rotate every few seconds: a transfer across
//! several rotations loses nothing, and an anonymous conversation keeps its
//! reply path after the keys its first SURBs were made for are retired.

use anyhow::{anyhow, Result};
use nym_integration_tests::*;
use nym_mixnet::localnet::{Localnet, LocalnetConfig};
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// Short epochs: a rotation every 4 s.
const EPOCH_SECS: u64 = 4;

async fn rotating_localnet(dir: &std::path::Path) -> Result<Localnet> {
    let mut config = LocalnetConfig::fast(dir);
    config.epochs.epoch_secs = EPOCH_SECS;
    // filters for a busy few seconds (a small capacity would make them
    // drop honest packets as replays)
    config.epochs.rated_packets_per_sec = 20_000;
    Localnet::start(config).await
}

/// Fast clients that fetch the topology every second (they need each
/// epoch's next keys before it begins).
fn fast_refreshing(config: &mut nym_client::config::Config) {
    fast(config);
    config.debug.topology_refresh_rate = 1000;
}

async fn next_text(ws: &mut Ws, timeout: Duration) -> Result<String> {
    match recv(ws, timeout).await? {
        Message::Text(t) => Ok(t.as_str().to_string()),
        other => Err(anyhow!("expected a text frame, got {other:?}")),
    }
}

fn retired_key_drops(net: &Localnet) -> u64 {
    let mixnodes = (0..net.mixnodes().len()).filter_map(|i| net.mixnode_stats(i));
    let gateways = (0..net.gateways().len()).filter_map(|i| net.gateway_stats(i));
    mixnodes.chain(gateways).map(|s| s.snapshot().dropped_retired_key).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_across_key_rotations_loses_nothing() -> Result<()> {
    let data = tempfile::tempdir()?;
    let net = rotating_localnet(data.path()).await?;
    let (_alice, bob, mut a, mut b) = alice_and_bob(&net.directory_url(), fast_refreshing).await?;
    let first_epoch = net.mixnode(0).map(|m| m.sphinx_keys().current_epoch()).unwrap_or_default();
    // a message every 250 ms for four epochs
    let count = (EPOCH_SECS * 4 * 4) as usize;
    for i in 0..count {
        let message = format!("{i:04} {}", "x".repeat(3000));
        assert!(send_id(&request(&mut a, &json!({"type": "send", "recipient": bob.address, "message": message})).await?).is_some());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut got = Vec::new();
    while got.len() < count {
        // a plain message arrives as its text
        let text = next_text(&mut b, Duration::from_secs(60)).await?;
        got.push(text.chars().take(4).collect::<String>());
    }
    got.sort();
    got.dedup();
    assert_eq!(got.len(), count, "every message arrived, once");
    let last_epoch = net.mixnode(0).map(|m| m.sphinx_keys().current_epoch()).unwrap_or_default();
    assert!(last_epoch >= first_epoch + 3, "the keys rotated during the transfer: {first_epoch} -> {last_epoch}");
    net.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_after_the_first_surbs_keys_retired_takes_a_fresh_surb_path() -> Result<()> {
    let data = tempfile::tempdir()?;
    let net = rotating_localnet(data.path()).await?;
    let (_alice, bob, mut a, mut b) = alice_and_bob(&net.directory_url(), fast_refreshing).await?;
    let sent = request(&mut a, &json!({"type": "sendAnonymous", "recipient": bob.address, "message": "still there later?", "replySurbs": 3})).await?;
    assert!(send_id(&sent).is_some());
    let received: Value = serde_json::from_str(&next_text(&mut b, Duration::from_secs(30)).await?)?;
    assert_eq!(received["message"], "still there later?");
    let tag = received["senderTag"].as_str().ok_or_else(|| anyhow!("no sender tag"))?.to_string();
    let epoch = net.mixnode(0).map(|m| m.sphinx_keys().current_epoch()).unwrap_or_default();

    // Two and a half epochs: the nodes delete the keys of the SURBs bob got.
    tokio::time::sleep(Duration::from_secs(EPOCH_SECS * 5 / 2 + 1)).await;
    let now = net.mixnode(0).map(|m| m.sphinx_keys().current_epoch()).unwrap_or_default();
    assert!(now >= epoch + 2, "{epoch} -> {now}");
    assert!(net.mixnode(0).is_some_and(|m| m.sphinx_keys().get(epoch).is_none()), "epoch {epoch}'s key is gone");

    // Bob's client asked alice's for fresh SURBs in time: the reply arrives.
    assert!(send_id(&request(&mut b, &json!({"type": "reply", "senderTag": tag, "message": "yes"})).await?).is_some());
    request(&mut a, &json!({"type": "selfAddress"})).await?;
    assert_eq!(next_text(&mut a, Duration::from_secs(30)).await?, "yes");
    assert_eq!(retired_key_drops(&net), 0, "nothing was sent through a retired key");
    net.shutdown().await;
    Ok(())
}
