//! Anonymous messages and replies through SURBs, between real `nym-client`
//! processes: the receiver sees a sender tag, never the sender's address,
//! answers through the SURBs, and still can after a restart.

use anyhow::{anyhow, Result};
use nym_integration_tests::*;
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

const DELIVERY: Duration = Duration::from_secs(60);

async fn next_text(ws: &mut Ws) -> Result<String> {
    match recv(ws, DELIVERY).await? {
        Message::Text(t) => Ok(t.as_str().to_string()),
        other => Err(anyhow!("expected a text frame, got {other:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_message_reply_and_replies_after_a_restart() -> Result<()> {
    let dir = shared_localnet();
    let (alice, mut bob, mut a, mut b) = alice_and_bob(&dir, fast).await?;

    let sent = request(&mut a, &json!({"type": "sendAnonymous", "recipient": bob.address, "message": "who am I?", "replySurbs": 4})).await?;
    assert!(send_id(&sent).is_some());
    let received = next_text(&mut b).await?;
    let v: Value = serde_json::from_str(&received)?;
    assert_eq!(v["type"], "received");
    assert_eq!(v["message"], "who am I?");
    let tag = v["senderTag"].as_str().ok_or_else(|| anyhow!("no senderTag in {received}"))?.to_string();
    // Nothing of alice's address reaches bob.
    let (alice_key, alice_gateway) = alice.address.split_once('@').ok_or_else(|| anyhow!("bad address"))?;
    assert!(!received.contains(alice_key) && !received.contains(alice_gateway), "{received}");

    // Bob answers; alice gets the reply stripped, like any message.
    assert!(send_id(&request(&mut b, &json!({"type": "reply", "senderTag": tag, "message": "a friend"})).await?).is_some());
    request(&mut a, &json!({"type": "selfAddress"})).await?;
    assert_eq!(next_text(&mut a).await?, "a friend");

    // Unknown tags are a clear error and the connection lives on.
    let e = request(&mut b, &json!({"type": "reply", "senderTag": "11111111111111111111111", "message": "x"})).await?;
    assert_eq!(e["type"], "error");
    assert!(e["message"].as_str().unwrap_or_default().contains("sender tag"), "{e}");

    // Bob restarts: his SURBs were kept (in a 0600 file) and still work.
    let store = bob.home.path().join(".nym/clients/bob/data/reply_store.bin");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&store)?.permissions().mode() & 0o777, 0o600);
    }
    drop(b);
    bob.interrupt(Duration::from_secs(10))?;
    bob.start().await?;
    let mut b = bob.connect().await?;
    assert!(send_id(&request(&mut b, &json!({"type": "reply", "senderTag": tag, "message": "still me"})).await?).is_some());
    assert_eq!(next_text(&mut a).await?, "still me");
    Ok(())
}
