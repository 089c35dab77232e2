//! Nothing is lost between a gateway and its client: deliveries are
//! acknowledged by the client once they are safe on its side, and the gateway
//! deletes them only then. Real `nym-client` processes that are frozen,
//! killed, cut off and whose gateway is killed; every message arrives at the
//! application exactly once.

use anyhow::{anyhow, bail, Result};
use nym_integration_tests::*;
use serde_json::json;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

fn reliable(c: &mut nym_client::config::Config) {
    fast(c);
    c.debug.gateway_reconnect_initial_backoff = 100;
    c.debug.gateway_reconnect_max_backoff = 500;
}


/// The text of a delivered message (text frame, or binary frame of UTF-8).
fn text_of(m: Message) -> Result<String> {
    match m {
        Message::Text(t) => Ok(t.as_str().to_string()),
        Message::Binary(b) => Ok(String::from_utf8(b.to_vec())?),
        other => Err(anyhow!("unexpected frame {other:?}")),
    }
}

/// Receives until `expected` all arrived; fails on a duplicate or a stranger,
/// and when anything more arrives within 3 s after the last one.
async fn receive_exactly_once(b: &mut Ws, expected: &BTreeSet<String>, mut between: impl FnMut(usize)) -> Result<()> {
    let mut got = BTreeSet::new();
    while got.len() < expected.len() {
        let m = recv(b, Duration::from_secs(120)).await.map_err(|e| anyhow!("after {} messages: {e}", got.len()))?;
        let text = text_of(m)?;
        if !expected.contains(&text) {
            bail!("unexpected message {text:?}");
        }
        if !got.insert(text.clone()) {
            bail!("{text:?} arrived twice");
        }
        between(got.len());
    }
    if let Ok(m) = recv(b, Duration::from_secs(3)).await {
        bail!("something more arrived: {m:?}");
    }
    Ok(())
}

async fn send_all(a: &mut Ws, to: &str, messages: &BTreeSet<String>) -> Result<()> {
    for m in messages {
        let reply = request(a, &json!({"type": "send", "recipient": to, "message": m})).await?;
        if send_id(&reply).is_none() {
            bail!("send refused: {reply}");
        }
    }
    Ok(())
}

/// Alice's application sends `expected` to bob while bob's receives them
/// (each exactly once); `between` runs after each one received.
async fn send_while_receiving(
    a: &mut Ws,
    b: &mut Ws,
    bob: &TestClient,
    expected: &BTreeSet<String>,
    between: impl FnMut(usize),
) -> Result<()> {
    let (sent, received) = tokio::join!(send_all(a, &bob.address, expected), receive_exactly_once(b, expected, between));
    sent?;
    received.map_err(|e| anyhow!("{e}\nbob:\n{}", bob.log()))
}

/// SIGKILLs bob's client, starts it again, and checks that the first
/// application to connect gets `expected`, each exactly once.
async fn kill_restart_and_receive(bob: &mut TestClient, expected: &BTreeSet<String>) -> Result<()> {
    bob.stop();
    bob.start_unprobed().await?;
    let mut b = bob.connect().await?;
    receive_exactly_once(&mut b, expected, |_| {}).await.map_err(|e| anyhow!("{e}\nbob:\n{}", bob.log()))
}

/// A localnet; alice (running) on gateway 0, bob (not started) on gateway 1.
async fn alice_and_bob_on_two_gateways(data: &Path) -> Result<(nym_mixnet::localnet::Localnet, TestClient, TestClient)> {
    let net = start_localnet(data).await?;
    let dir = net.directory_url();
    let gateways = net.gateways();
    let mut alice = TestClient::init_with(&dir, "alice", &["--gateway", &gateways[0].identity_key], reliable)?;
    let bob = TestClient::init_with(&dir, "bob", &["--gateway", &gateways[1].identity_key], reliable)?;
    alice.start().await?;
    Ok((net, alice, bob))
}

/// Issue 9's report: bob's client frozen while alice sends, then killed and
/// started again. Before, the gateway had pushed everything into a socket
/// nobody read and forgotten it: 0 of 100 arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_frozen_then_killed_gets_every_message_once_after_restart() -> Result<()> {
    let data = tempfile::tempdir()?;
    let (net, alice, mut bob) = alice_and_bob_on_two_gateways(data.path()).await?;
    let mut a = alice.connect().await?;
    bob.start().await?;
    let mut b = bob.connect().await?;
    request(&mut b, &json!({"type": "selfAddress"})).await?;

    bob.freeze()?;
    let expected: BTreeSet<String> = (0..100).map(|i| format!("while frozen {i:03}")).collect();
    send_all(&mut a, &bob.address, &expected).await?;
    // The gateway holds them (pushed into bob's socket, unacknowledged).
    let gateway = net.gateway(1).ok_or_else(|| anyhow!("no gateway 1"))?;
    let bob_key = bob.client_key()?;
    wait_for(Duration::from_secs(60), "the gateway to store 100 messages for bob", || gateway.stored_count(&bob_key) >= 100).await?;

    drop(b);
    kill_restart_and_receive(&mut bob, &expected).await?; // SIGKILL, frozen as it is
    wait_for(Duration::from_secs(30), "bob's gateway inbox to empty", || gateway.stored_count(&bob_key) < 100).await?;
    net.shutdown().await;
    Ok(())
}

/// Messages that arrive while no application is connected live in the
/// client's own store (acknowledged to the gateway only once written), so a
/// crash of the client loses none and repeats none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_killed_while_keeping_messages_for_its_application_loses_none() -> Result<()> {
    let data = tempfile::tempdir()?;
    let (net, alice, mut bob) = alice_and_bob_on_two_gateways(data.path()).await?;
    bob.start_unprobed().await?;
    let mut a = alice.connect().await?;

    let expected: BTreeSet<String> = (0..100).map(|i| format!("kept {i:03}")).collect();
    send_all(&mut a, &bob.address, &expected).await?;
    wait_for(Duration::from_secs(60), "bob to keep 100 messages on disk", || bob.received_store().kept_count() >= 100).await?;
    let kept: BTreeSet<String> =
        bob.received_store().kept().map(|m| String::from_utf8_lossy(&m.message).into_owned()).collect();
    assert_eq!(kept, expected);

    // SIGKILL: whatever acknowledgements were in flight are lost
    kill_restart_and_receive(&mut bob, &expected).await?;
    assert_eq!(bob.received_store().kept_count(), 0, "handed over, nothing kept");
    net.shutdown().await;
    Ok(())
}

/// The gateway drops bob's connection with a TCP reset (no close) after
/// every 100 of 1,000 messages; bob's client reconnects each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_cut_again_and_again_while_receiving_1000_messages_loses_and_repeats_none() -> Result<()> {
    let data = tempfile::tempdir()?;
    let (net, alice, mut bob) = alice_and_bob_on_two_gateways(data.path()).await?;
    let mut a = alice.connect().await?;
    bob.start().await?;
    let mut b = bob.connect().await?;
    request(&mut b, &json!({"type": "selfAddress"})).await?;

    let gateway = net.gateway(1).ok_or_else(|| anyhow!("no gateway 1"))?;
    let expected: BTreeSet<String> = (0..1000).map(|i| format!("through the cuts {i:04}")).collect();
    // After every 100th message bob's application gets, cut his gateway
    // connection as soon as he is connected (he may still be reconnecting
    // from the last cut, or the transfer may be ahead of his application:
    // the receive loop waits for the cut, the transfer goes on meanwhile).
    let mut cuts = 0;
    send_while_receiving(&mut a, &mut b, &bob, &expected, |n| {
        if n % 100 == 0 && n < 1000 {
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if gateway.cut_client_connections() > 0 {
                    cuts += 1;
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    })
    .await?;
    assert_eq!(cuts, 9, "the transfer went through every cut");
    net.shutdown().await;
    Ok(())
}

/// A gateway as its own process, so it can be SIGKILLed.
struct GatewayProcess {
    args: Vec<String>,
    child: Option<Child>,
}

impl GatewayProcess {
    fn start(authorities: &Path, epoch_secs: u64, data_dir: &Path) -> Result<Self> {
        let args = vec![
            // every authority of the localnet: a node listed by one alone is not in the consensus
            "--authorities".into(),
            authorities.display().to_string(),
            // the localnet's key epochs: its directory refuses keys for others
            "--epoch-secs".into(),
            epoch_secs.to_string(),
            // port 0 at first; the restarts listen where the first start did
            "--mix-listen".into(),
            "127.0.0.1:0".into(),
            "--clients-listen".into(),
            "127.0.0.1:0".into(),
            "--announce-interval".into(),
            "0.2".into(),
            "--data-dir".into(),
            data_dir.display().to_string(),
        ];
        let mut gw = GatewayProcess { args, child: None };
        // `gateway identity ID sphinx KEY mixnet ADDR clients ws://ADDR`
        let line = gw.spawn()?.recv_timeout(Duration::from_secs(30)).map_err(|_| anyhow!("the gateway printed no start line"))?;
        let word_after = |label: &str| {
            let mut words = line.split_whitespace();
            words.find(|w| *w == label);
            words.next().map(|w| w.trim_start_matches("ws://").to_string())
        };
        let (mix, clients) = match (word_after("mixnet"), word_after("clients")) {
            (Some(m), Some(c)) => (m, c),
            _ => bail!("no addresses in the gateway's start line {line:?}"),
        };
        gw.args[5] = mix;
        gw.args[7] = clients;
        Ok(gw)
    }

    /// Starts the gateway; its start line (`gateway identity ...` on stdout,
    /// which is read to its end meanwhile) comes out of the receiver.
    fn spawn(&mut self) -> Result<std::sync::mpsc::Receiver<String>> {
        let mut child = Command::new(netns::mixnet_binaries().join("nym-gateway"))
            .args(&self.args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        self.child = Some(child);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("gateway identity ") {
                    let _ = tx.send(line);
                }
            }
        });
        Ok(rx)
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // SIGKILL
            let _ = c.wait();
        }
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Bob's gateway is a separate process, SIGKILLed and started again twice
/// while 1,000 messages come in: what it had stored (and acknowledged to
/// alice) survives on disk, what it had not stored alice sends again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_and_restarted_while_delivering_1000_messages_loses_and_repeats_none() -> Result<()> {
    // The gateway process's identity first: the localnet's directory admits it.
    let gateway_dir = tempfile::tempdir()?;
    let gateway_identity = nym_mixnet::keyfiles::load_or_create_identity_key(gateway_dir.path())?;
    let data = tempfile::tempdir()?;
    let mut config = nym_mixnet::localnet::LocalnetConfig::fast(data.path());
    config.also_admit.push(gateway_identity.verifying_key().to_bytes());
    let net = nym_mixnet::localnet::Localnet::start(config).await?;
    let dir = net.directory_url();
    let mut gateway = GatewayProcess::start(&net.authorities_file(), net.config().epochs.epoch_secs, gateway_dir.path())?;
    let directory = nym_mixnet::http::DirectoryClient::new(&dir)?;
    let known: Vec<String> = net.gateways().iter().map(|g| g.identity_key.clone()).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let identity = loop {
        let topology = directory.topology().await?;
        if let Some(g) = topology.gateway_nodes.iter().find(|g| !known.contains(&g.identity_key)) {
            break g.identity_key.clone();
        }
        if Instant::now() > deadline {
            bail!("the gateway process never announced itself");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut alice = TestClient::init_with(&dir, "alice", &["--gateway", &known[0]], reliable)?;
    let mut bob = TestClient::init_with(&dir, "bob", &["--gateway", &identity], reliable)?;
    alice.start().await?;
    bob.start().await?;
    let mut a = alice.connect().await?;
    let mut b = bob.connect().await?;
    request(&mut b, &json!({"type": "selfAddress"})).await?;

    let expected: BTreeSet<String> = (0..1000).map(|i| format!("through the restarts {i:04}")).collect();
    let mut restarts = Vec::new();
    send_while_receiving(&mut a, &mut b, &bob, &expected, |n| {
        if n == 300 || n == 700 {
            gateway.kill();
            restarts.push(gateway.spawn());
        }
    })
    .await?;
    assert_eq!(restarts.len(), 2);
    for r in restarts {
        r?;
    }
    net.shutdown().await;
    Ok(())
}
