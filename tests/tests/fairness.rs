//! Fairness between queued messages, through a real `nym-client` process on
//! an in-process localnet: a short message sent after a long one is not held
//! until the long one is done (the engine sends one packet of each queued
//! message in turn).

use anyhow::{anyhow, bail, Result};
use nym_integration_tests::*;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

const LONG: usize = 20 * 1024 * 1024;
/// Message bytes one Regular packet carries.
const FRAGMENT_DATA: usize = 1553;

/// The application's websocket, taking messages past tungstenite's default
/// 16 MiB limit.
async fn connect_for_long_messages(port: u16) -> Result<Ws> {
    let config = WebSocketConfig::default().max_message_size(Some(64 << 20)).max_frame_size(Some(64 << 20));
    let (ws, _) = tokio_tungstenite::connect_async_with_config(format!("ws://127.0.0.1:{port}"), Some(config), false).await?;
    Ok(ws)
}

/// A 20 MiB binary message to ourselves, then a short text message: the
/// short one arrives first, while most of the long one has not even reached
/// the gateway, then the long one arrives byte for byte.
///
/// "Before" is counted, not timed: alice is alone on gateway 0 of a localnet
/// of our own, and the gateway's count of payloads it stored for her (the
/// long message's packets, their acks, her loop cover) when the short message
/// reaches her application must be a small part of the long message's
/// ~13,500 packets. Before round robin it was all of them.
///
/// Rates: no mixing delay and no throttling (`fast`), so the 20 MiB take as
/// long as the crypto and the gateways' disk syncs do; the default in-flight
/// limit (256 packets) applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_message_overtakes_a_20_mib_message_sent_before_it() -> Result<()> {
    let data = tempfile::tempdir()?;
    let net = start_localnet(data.path()).await?;
    let gateway = net.gateways()[0].identity_key.clone();
    let mut alice = TestClient::init_with(&net.directory_url(), "alice", &["--gateway", &gateway], fast)?;
    alice.start().await?;
    let stats = net.gateway_stats(0).ok_or_else(|| anyhow!("no gateway 0"))?;
    let mut ws = connect_for_long_messages(alice.port).await?;

    let long = random_bytes(LONG);
    let mut frame = binary_address(&alice.address)?;
    frame.extend_from_slice(&long);
    let start = Instant::now();
    // Answered once the client has queued it.
    let answer = request_binary(&mut ws, frame).await?;
    assert!(send_id(&answer).is_some(), "the long message is queued");
    let short = "short, sent after 20 MiB";
    let answer = request(&mut ws, &json!({"type": "send", "message": short, "recipient": alice.address})).await?;
    assert!(send_id(&answer).is_some(), "the short message is queued");

    // The last request was text: the short message comes as a text frame,
    // the long one (random bytes, not UTF-8) as a binary frame.
    match recv(&mut ws, Duration::from_secs(300)).await? {
        Message::Text(t) => assert_eq!(t.as_str(), short),
        Message::Binary(b) => {
            let long_after = start.elapsed();
            let short_after = match recv(&mut ws, Duration::from_secs(60)).await {
                Ok(_) => format!("{:.2?}", start.elapsed()),
                Err(e) => e.to_string(),
            };
            bail!(
                "the {} byte message arrived first, after {long_after:.2?}: the short one waited behind it \
                 (short one: {short_after})",
                b.len()
            )
        }
        other => bail!("unexpected frame {other:?}"),
    }
    let stored_before_short = stats.stored.load(Ordering::Relaxed);
    let long_packets = LONG.div_ceil(FRAGMENT_DATA) as u64;
    eprintln!(
        "short message received {:.2?} after the 20 MiB send; gateway 0 had stored {stored_before_short} payloads \
         for alice by then (the long message is {long_packets} packets)",
        start.elapsed()
    );
    assert!(
        stored_before_short < long_packets / 4,
        "the short message came only after {stored_before_short} payloads had reached alice's gateway: \
         it waited behind most of the {long_packets} packets of the long one"
    );

    match recv(&mut ws, Duration::from_secs(300)).await {
        Ok(Message::Binary(b)) => {
            assert_eq!(b.len(), LONG, "the long message's length");
            assert!(b.as_ref() == long.as_slice(), "the 20 MiB message arrived intact");
        }
        Ok(other) => bail!("expected the 20 MiB binary frame, got {:?}", other.len()),
        Err(e) => bail!("{e}\nclient log:\n{}", alice.log()),
    }
    eprintln!("20 MiB message received {:.2?} after its send", start.elapsed());
    net.shutdown().await;
    Ok(())
}
