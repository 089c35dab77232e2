//! The websocket API of real `nym-client` processes, against an in-process
//! localnet: sends, receives, binary frames, errors, connection rules.

use anyhow::Result;
use futures_util::{SinkExt, StreamExt};
use nym_integration_tests::*;
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

const DELIVERY: Duration = Duration::from_secs(60);

/// Checks a send confirmation, `{"type":"send","id":N}`; its id.
fn ok_send(v: &Value) -> u64 {
    send_id(v).unwrap_or_else(|| panic!("expected a send confirmation with an id, got {v}"))
}

/// Checks an answer that is an error about the request itself: it names
/// no message (only a failure of an accepted message carries an `id`).
fn error_containing(v: &Value, needle: &str) {
    assert_eq!(v["type"], "error", "expected an error, got {v}");
    assert!(v.get("id").is_none(), "a refused request has no message id: {v}");
    let m = v["message"].as_str().unwrap_or_default();
    assert!(m.contains(needle), "error {m:?} does not mention {needle:?}");
}

async fn expect_text(ws: &mut Ws, expected: &str) -> Result<()> {
    match recv(ws, DELIVERY).await? {
        Message::Text(t) => assert_eq!(t.as_str(), expected),
        other => panic!("expected text {expected:?}, got {other:?}"),
    }
    Ok(())
}

/// The seed's first example at today's Nym rates (15 ms per hop, Poisson
/// sending at 20 ms, loop cover at 200 ms): text to ourselves comes back as a
/// text frame holding just the message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_send_text_at_default_rates() -> Result<()> {
    let dir = shared_localnet();
    let mut alice = TestClient::init(&dir, "alice", |_| {})?;
    alice.start().await?;
    let mut ws = alice.connect().await?;
    let me = request(&mut ws, &json!({"type": "selfAddress"})).await?;
    assert_eq!(me["type"], "selfAddress");
    assert_eq!(me["address"], alice.address.as_str());
    ok_send(&request(&mut ws, &json!({"type": "send", "message": "Hello Nym!", "recipient": alice.address})).await?);
    expect_text(&mut ws, "Hello Nym!").await
}

/// Alice and Bob on (possibly) different gateways: a text message, a JSON
/// message (delivered as its compact JSON text, `recipient_address` form)
/// and a reply back using the sender address inside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alice_and_bob_exchange_text_json_and_a_reply() -> Result<()> {
    let dir = shared_localnet();
    let (alice, bob, mut a, mut b) = alice_and_bob(&dir, fast).await?;

    ok_send(&request(&mut a, &json!({"type": "send", "message": "2 + 2 = 4", "recipient": bob.address})).await?);
    expect_text(&mut b, "2 + 2 = 4").await?;

    let chat = json!({"sender": alice.address, "chatMessage": "hi julia!"});
    ok_send(&request(&mut a, &json!({"type": "send", "message": chat, "recipient_address": bob.address})).await?);
    let got = match recv(&mut b, DELIVERY).await? {
        Message::Text(t) => t.to_string(),
        other => panic!("expected text, got {other:?}"),
    };
    assert_eq!(got, chat.to_string(), "JSON messages arrive as compact JSON text");
    let parsed: Value = serde_json::from_str(&got)?;

    let reply = json!({"sender": bob.address, "chatMessage": "winston, so lovely to hear from you!"});
    let to = parsed["sender"].as_str().unwrap_or_default();
    ok_send(&request(&mut b, &json!({"type": "send", "message": reply, "recipient_address": to})).await?);
    // Alice's last request was text (her sends): the reply comes as text.
    expect_text(&mut a, &reply.to_string()).await
}

/// The seed's binary frame (64-byte recipient + data) with 1 MiB of random
/// bytes, to another client: it arrives byte for byte as one binary frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_mib_binary_message_arrives_byte_for_byte() -> Result<()> {
    let dir = shared_localnet();
    let mut alice = TestClient::init(&dir, "alice", fast)?;
    let mut bob = TestClient::init(&dir, "bob", fast)?;
    alice.start().await?;
    bob.start().await?;
    let mut a = alice.connect().await?;
    let mut b = bob.connect().await?;
    let data = random_bytes(1024 * 1024);
    let mut frame = binary_address(&bob.address)?;
    frame.extend_from_slice(&data);
    ok_send(&request_binary(&mut a, frame).await?);
    match recv(&mut b, DELIVERY).await? {
        Message::Binary(got) => assert!(got.as_ref() == data.as_slice(), "1 MiB came back different ({} bytes)", got.len()),
        other => panic!("expected a binary frame, got {:?}", other.len()),
    }
    Ok(())
}

/// Every kind of bad request gets an error naming the problem; the
/// connection stays open and the next good request works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors_and_the_client_keeps_working() -> Result<()> {
    let dir = shared_localnet();
    let mut alice = TestClient::init(&dir, "alice", |c| {
        fast(c);
        c.debug.max_message_size = 100 * 1024;
    })?;
    alice.start().await?;
    let mut ws = alice.connect().await?;
    let me = alice.address.clone();
    let cases: Vec<(String, &str)> = vec![
        ("{not json".into(), "malformed JSON"),
        ("[1,2,3]".into(), "must be a JSON object"),
        (json!({"message": "x", "recipient": me}).to_string(), "missing field 'type'"),
        (json!({"type": "dance"}).to_string(), "unknown request type 'dance'"),
        (json!({"type": "reply", "message": "x"}).to_string(), "missing field 'senderTag'"),
        (json!({"type": "reply", "senderTag": "2g6GTpGkrhLvfhEK2ZA8gA", "message": "x"}).to_string(), "unknown sender tag"),
        (json!({"type": "sendAnonymous", "recipient": me, "message": "x", "replySurbs": 500}).to_string(), "'replySurbs' must be a whole number"),
        (json!({"type": "send", "message": "x"}).to_string(), "missing field 'recipient'"),
        (json!({"type": "send", "recipient": me}).to_string(), "missing field 'message'"),
        (json!({"type": "send", "message": "x", "recipient": "nonsense"}).to_string(), "invalid address"),
        (json!({"type": "send", "message": "x", "recipient": format!("{}@abc", &me[..10])}).to_string(), "invalid address"),
        (json!({"type": "send", "message": "x".repeat(200 * 1024), "recipient": me}).to_string(), "message too large"),
    ];
    for (req, needle) in &cases {
        error_containing(&request_text(&mut ws, req).await?, needle);
        // Still serving on the same connection.
        assert_eq!(request(&mut ws, &json!({"type": "selfAddress"})).await?["address"], me.as_str());
    }
    // A recipient on a gateway the network does not have: the engine's error.
    let stranger = format!("{}@{}", me.split('@').next().unwrap_or_default(), bs58::encode([9u8; 32]).into_string());
    error_containing(&request(&mut ws, &json!({"type": "send", "message": "x", "recipient": stranger})).await?, "not in the network topology");

    error_containing(&request_binary(&mut ws, vec![1, 2, 3]).await?, "too short: 3 bytes");
    let mut big = binary_address(&me)?;
    big.extend_from_slice(&vec![0u8; 200 * 1024]);
    error_containing(&request_binary(&mut ws, big).await?, "message too large");
    // 64 bytes of garbage read as a recipient: its "gateway" is not in the topology.
    let mut garbage = vec![7u8; 64];
    garbage.extend_from_slice(b"payload");
    error_containing(&request_binary(&mut ws, garbage).await?, "not in the network topology");
    // A ping is answered with a pong and changes nothing.
    ws.send(Message::Ping(b"are you there".to_vec().into())).await?;
    match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
        Ok(Some(Ok(Message::Pong(p)))) => assert_eq!(&p[..], b"are you there"),
        other => anyhow::bail!("expected a pong, got {other:?}"),
    }

    // After all that, a good send still goes through.
    ok_send(&request(&mut ws, &json!({"type": "send", "message": "still here", "recipient": me})).await?);
    expect_text(&mut ws, "still here").await
}

/// Every accepted send (`send`, `sendAnonymous`, binary) is answered with
/// its own message id, the one a later failure of that message names;
/// ids are not reused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_accepted_send_is_answered_with_its_own_message_id() -> Result<()> {
    let dir = shared_localnet();
    let mut alice = TestClient::init(&dir, "alice", fast)?;
    alice.start().await?;
    let mut ws = alice.connect().await?;
    let me = alice.address.clone();
    let first = ok_send(&request(&mut ws, &json!({"type": "send", "message": "one", "recipient": me})).await?);
    let anonymous = ok_send(
        &request(&mut ws, &json!({"type": "sendAnonymous", "message": "two", "recipient": me, "replySurbs": 1})).await?,
    );
    let mut frame = binary_address(&me)?;
    frame.extend_from_slice(b"three");
    let binary = ok_send(&request_binary(&mut ws, frame).await?);
    assert!(first < anonymous && anonymous < binary, "ids {first}, {anonymous}, {binary}");
    Ok(())
}

/// Several applications at once (up to `[socket] max_applications`): each
/// gets the answers to its own requests and every incoming message; one
/// leaving costs the others nothing; one too many is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_applications_each_get_every_message_and_their_own_answers() -> Result<()> {
    let dir = shared_localnet();
    let mut alice = TestClient::init(&dir, "alice", |c| {
        fast(c);
        c.socket.max_applications = 2;
    })?;
    alice.start().await?;
    let mut first = alice.connect().await?;
    let mut second = alice.connect().await?;
    assert_eq!(request(&mut first, &json!({"type": "selfAddress"})).await?["address"], alice.address.as_str());
    assert_eq!(request(&mut second, &json!({"type": "selfAddress"})).await?["address"], alice.address.as_str());
    let mut third = alice.connect().await?;
    error_containing(&recv_json(&mut third, Duration::from_secs(10)).await?, "too many applications");
    assert!(recv(&mut third, Duration::from_secs(5)).await.is_err(), "the third connection is closed");
    // a message to alice reaches both applications; the answer only the sender
    ok_send(&request(&mut first, &json!({"type": "send", "message": "to everyone", "recipient": alice.address})).await?);
    expect_text(&mut first, "to everyone").await?;
    expect_text(&mut second, "to everyone").await?;
    // the second leaves: the first loses nothing, and a newcomer is served
    second.close(None).await?;
    drop(second);
    tokio::time::sleep(Duration::from_millis(300)).await;
    ok_send(&request(&mut first, &json!({"type": "send", "message": "still here", "recipient": alice.address})).await?);
    expect_text(&mut first, "still here").await?;
    let mut fourth = alice.connect().await?;
    assert_eq!(request(&mut fourth, &json!({"type": "selfAddress"})).await?["address"], alice.address.as_str());
    ok_send(&request(&mut fourth, &json!({"type": "send", "message": "both again", "recipient": alice.address})).await?);
    expect_text(&mut fourth, "both again").await?;
    expect_text(&mut first, "both again").await?;
    Ok(())
}

/// Messages that arrive while no application is connected are kept and
/// delivered (in order) to the next application that connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_arriving_with_no_application_are_kept_for_the_next_one() -> Result<()> {
    let dir = shared_localnet();
    let mut alice = TestClient::init(&dir, "alice", fast)?;
    let mut bob = TestClient::init(&dir, "bob", fast)?;
    alice.start().await?;
    bob.start().await?;
    let mut a = alice.connect().await?;
    // Nobody listens at Bob's: each is kept (on disk) before the next is sent,
    // so the order they were kept in is the order they were sent in (the
    // mixnet itself may reorder packets sent close together).
    for i in 0..3 {
        ok_send(&request(&mut a, &json!({"type": "send", "message": format!("kept {i}"), "recipient": bob.address})).await?);
        let deadline = std::time::Instant::now() + DELIVERY;
        while bob.received_store().kept_count() < i + 1 {
            assert!(std::time::Instant::now() < deadline, "message {i} was never kept");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut b = bob.connect().await?;
    // No request yet on this connection: messages come as binary frames.
    for i in 0..3 {
        match recv(&mut b, DELIVERY).await? {
            Message::Binary(m) => assert_eq!(m.as_ref(), format!("kept {i}").as_bytes()),
            other => panic!("expected binary, got {other:?}"),
        }
    }
    Ok(())
}

/// The `{"type":"send","id":N}` answer comes for binary sends too; a UTF-8 message
/// arrives as binary when the connection's last request was binary and as
/// text when it was text (non-UTF-8 is always binary: unit-tested in
/// beside `nym_client_core::delivery_frame`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn received_frame_kind_follows_the_last_request() -> Result<()> {
    let dir = shared_localnet();
    let mut alice = TestClient::init(&dir, "alice", fast)?;
    alice.start().await?;
    let mut ws = alice.connect().await?;
    let mut frame = binary_address(&alice.address)?;
    frame.extend_from_slice("utf-8 text".as_bytes());
    ok_send(&request_binary(&mut ws, frame.clone()).await?);
    match recv(&mut ws, DELIVERY).await? {
        Message::Binary(m) => assert_eq!(m.as_ref(), b"utf-8 text"),
        other => panic!("expected binary after a binary request, got {other:?}"),
    }
    ok_send(&request(&mut ws, &json!({"type": "send", "message": "utf-8 text", "recipient": alice.address})).await?);
    expect_text(&mut ws, "utf-8 text").await?;
    Ok(())
}

/// Any web page the user visits can open a websocket to 127.0.0.1: the
/// client serves only pages of allowed origins (loopback by default), and
/// programs that send no Origin as before. A refused page gets 403 and the
/// client keeps serving everyone else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_pages_are_refused_unless_their_origin_is_allowed() -> Result<()> {
    let dir = shared_localnet();
    let mut alice = TestClient::init(&dir, "origins", fast)?;
    alice.start().await?;
    for page in ["https://evil.example.com", "null", "http://localhost.evil.example", "https://localhost"] {
        assert_eq!(connect_from_page(alice.port, page).await.err(), Some(403), "{page} must be refused");
    }
    for page in ["http://localhost:3000", "http://127.0.0.1:8080", "http://localhost"] {
        let mut ws = connect_from_page(alice.port, page).await.map_err(|s| anyhow::anyhow!("{page}: refused with {s}"))?;
        assert_eq!(request(&mut ws, &json!({"type": "selfAddress"})).await?["address"], alice.address.as_str());
        ws.close(None).await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // a program (no Origin) is still served after all that
    let mut ws = alice.connect().await?;
    assert_eq!(request(&mut ws, &json!({"type": "selfAddress"})).await?["address"], alice.address.as_str());
    ws.close(None).await?;
    alice.stop();
    assert!(alice.log().contains("refused a websocket connection from a web page of origin 'https://evil.example.com'"));

    // A web app of one's own: listed in the config (replacing the loopback
    // default) and added with --allow-origin.
    let mut bob = TestClient::init(&dir, "origins-own-app", |c| {
        fast(c);
        c.socket.allowed_origins = vec!["https://app.example.com".into()];
    })?;
    bob.run_args = vec!["--allow-origin".into(), "http://dev.example:8443".into()];
    bob.start().await?;
    for page in ["https://app.example.com", "http://dev.example:8443"] {
        let mut ws = connect_from_page(bob.port, page).await.map_err(|s| anyhow::anyhow!("{page}: refused with {s}"))?;
        assert_eq!(request(&mut ws, &json!({"type": "selfAddress"})).await?["type"], "selfAddress");
        ws.close(None).await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for page in ["http://localhost:3000", "http://dev.example:8444", "http://app.example.com"] {
        assert_eq!(connect_from_page(bob.port, page).await.err(), Some(403), "{page} must be refused");
    }
    bob.stop();
    // a bad entry stops `run` with a message that says which and why
    bob.run_args = vec!["--allow-origin".into(), "app.example.com".into()];
    let out = std::process::Command::new(client_binary())
        .args(["run", "--id", &bob.id, "--allow-origin", "app.example.com"])
        .env("HOME", bob.home.path())
        .output()?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--allow-origin") && stderr.contains("scheme://host"), "{stderr}");
    Ok(())
}

/// Politeness: a clean close is answered (browsers otherwise see 1006), and
/// Nym 0.8 programs are told what this client speaks instead of waiting forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_is_answered_and_nym_08_requests_are_explained() -> Result<()> {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    let dir = shared_localnet();
    let mut alice = TestClient::init(&dir, "polite", fast)?;
    alice.start().await?;
    let mut ws = alice.connect().await?;
    let e = request(&mut ws, &json!({"type": "send", "recipient": alice.address, "message": "hi", "withReplySurb": true})).await?;
    error_containing(&e, "sendAnonymous");
    let e = request_binary(&mut ws, vec![0x02]).await?;
    error_containing(&e, "selfAddress");
    ws.send(Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "bye".into() }))).await?;
    let answer = tokio::time::timeout(Duration::from_secs(5), ws.next()).await?;
    match answer {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Normal),
        other => panic!("expected a close frame with code 1000, got {other:?}"),
    }
    Ok(())
}
