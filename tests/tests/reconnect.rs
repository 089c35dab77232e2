//! The gateway goes away and comes back: the client reconnects with its
//! backoff and messages the application queued meanwhile still arrive.

use anyhow::{anyhow, Result};
use nym_integration_tests::*;
use serde_json::json;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_reconnects_after_its_gateway_restarts_and_keeps_queued_messages() -> Result<()> {
    // A localnet of our own: this test kills a gateway.
    let data = tempfile::tempdir()?;
    let mut net = start_localnet(data.path()).await?;
    let dir = net.directory_url();
    let gateways = net.gateways();
    let (g0, g1) = (gateways[0].identity_key.clone(), gateways[1].identity_key.clone());

    // Alice on gateway 0 (which will restart), Bob on gateway 1.
    let mut alice = init_on(&dir, "alice", &g0)?;
    let mut bob = init_on(&dir, "bob", &g1)?;
    alice.start().await?;
    bob.start().await?;
    let mut a = alice.connect().await?;
    let mut b = bob.connect().await?;
    request(&mut b, &json!({"type": "selfAddress"})).await?;

    net.kill_gateway(0).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Queued while the gateway is down: the send is accepted.
    let reply = request(&mut a, &json!({"type": "send", "message": "queued while down", "recipient": bob.address})).await?;
    assert!(send_id(&reply).is_some());
    tokio::time::sleep(Duration::from_secs(1)).await;
    net.restart_gateway(0).await?;

    match recv(&mut b, Duration::from_secs(60)).await {
        Ok(Message::Text(t)) => assert_eq!(t.as_str(), "queued while down"),
        other => return Err(anyhow!("expected the queued message, got {other:?}\nalice log:\n{}", alice.log())),
    }
    let log = alice.log();
    assert!(log.contains("lost the connection to the gateway"), "{log}");
    assert!(log.matches("authenticated with the gateway").count() >= 2, "{log}");
    drop(a);
    alice.stop();
    bob.stop();
    net.shutdown().await;
    Ok(())
}

fn init_on(dir: &str, id: &str, gateway: &str) -> Result<TestClient> {
    TestClient::init_with(dir, id, &["--gateway", gateway], |c| {
        fast(c);
        c.debug.gateway_reconnect_initial_backoff = 100;
        c.debug.gateway_reconnect_max_backoff = 1000;
    })
}
