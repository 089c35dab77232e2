//! Deterministic simulation of the [`Driver`]: a fake clock, a gateway that
//! speaks the real handshake and can refuse, stall, restart or move, and a
//! mixnet that unwraps real Sphinx packets at once. Covers the behaviours
//! the native and browser shims used to disagree on (now the driver's alone).
//!
//! The network and the gateway are the shared harness's
//! (`nym_client_core::fuzzing`: [`TestNetwork`], [`FakeGateway`]), as in
//! `simulation.rs`; this file adds the driver's side: carrying out its
//! outputs, the directory's answers and a fake clock.

use ed25519_dalek::SigningKey;
use nym_client_core::fuzzing::{unthrottled, FakeGateway, Hop, Mood, TestNetwork};
use nym_client_core::{
    defaults, AppRequest, AppResponse, AttachError, ClientConfig, ClientKeys, ConnectionId, DeliverTo, DirectoryTrust,
    Disconnect, Driver, DriverConfig, DriverEvent, Output, Restored, SenderTag, StartError, StoreName, StoreWrite,
};
use nym_wire::epoch::epoch_at;
use nym_wire::topology::TopologyJson;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::VecDeque;
use std::time::Duration;

/// Where the gateway moves to in the "moved gateway" test: a URL no
/// gateway of the test network listens on.
const MOVED_URL: &str = "ws://127.0.0.1:3001";
/// The simulated wall clock at `now = 0` (Unix milliseconds).
const UNIX_START_MS: u64 = 1_800_000_000_000;
/// How long the simulated directory's documents are valid.
const VALIDITY_MS: u64 = 300_000;
/// The simulated network's key epochs: a minute.
const EPOCH_SECS: u64 = 60;

/// The simulated network: two layer-1 nodes (one of them may leave), one in
/// each other layer, and our gateway (index 0).
fn network() -> TestNetwork {
    TestNetwork::new([2, 1, 1], 1).with_epoch_length(EPOCH_SECS)
}

/// The key the simulated directory signs with (the first of the 3
/// authorities; each of them signs every document).
fn directory_key() -> SigningKey {
    network().directory
}

/// The 3 authorities, pinned, threshold 2.
fn pinned() -> DirectoryTrust {
    DirectoryTrust::Authorities(network().authorities())
}

/// How the simulated directory answers the start-up fetches.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum DirectoryMood {
    /// A fresh document signed by every authority.
    Serve,
    /// Unreachable: every fetch fails at once.
    Down,
    /// Never answers.
    Hang,
}

struct Harness {
    driver: Driver,
    now: Duration,
    network: TestNetwork,
    /// Our gateway (the network's gateway 0).
    gateway: FakeGateway<ConnectionId>,
    /// Packets that reached a node after it retired their epoch's key
    /// ([`Hop::RetiredKey`]).
    retired_key_drops: usize,
    /// The mixnet loses every packet (a node crashed, rotated its key...).
    black_hole: bool,
    /// The connection the gateway serves, if any.
    open: Option<ConnectionId>,
    connects: Vec<(Duration, String)>,
    closes: Vec<ConnectionId>,
    events: Vec<(Duration, DriverEvent)>,
    /// Topology fetches after start-up (the refreshes), which tests answer.
    fetches: usize,
    /// The authority each refresh fetch went to, in order.
    fetch_urls: Vec<String>,
    /// The authority each start-up fetch went to, in order.
    first_fetch_urls: Vec<String>,
    /// When the start-up fetches were asked for; the harness answers them
    /// itself (see `directory`).
    first_fetches: Vec<Duration>,
    /// How the directory answers the start-up fetches.
    directory: DirectoryMood,
    /// Answers to start-up fetches, handed over at the next step.
    first_answers: VecDeque<Result<String, String>>,
    /// The driver reported its gateway: start-up is over.
    started_up: bool,
    delivered: Vec<(DeliverTo, Vec<u8>)>,
    /// Anonymous messages delivered, with their sender tags.
    anonymous: Vec<(SenderTag, Vec<u8>)>,
    /// Every output in order, as (kind, detail) for ordering checks.
    trace: Vec<String>,
    received_log: Vec<u8>,
    reply_store: Vec<u8>,
    /// What the driver asked to keep as the directory key.
    directory_key_store: Vec<u8>,
    /// Frames for the client, delivered at the next step.
    to_client: VecDeque<(ConnectionId, Vec<u8>)>,
}

fn config() -> DriverConfig {
    DriverConfig {
        client: unthrottled(),
        ..DriverConfig::default()
    }
}

impl Harness {
    /// A driver with the 3 authorities pinned and the gateway named, as a
    /// registered client starts.
    fn new(config: DriverConfig, restored: Restored) -> Self {
        Self::with(config, restored, pinned(), Some(network().gateway_identity(0)))
    }

    fn with(
        config: DriverConfig,
        restored: Restored,
        pinned: DirectoryTrust,
        gateway_identity: Option<[u8; 32]>,
    ) -> Self {
        let network = network();
        let gateway = network.fake_gateway::<ConnectionId>(0, [9; 32]);
        let keys = ClientKeys::generate(&mut StdRng::from_seed([7; 32]));
        let (driver, _) = Driver::new(keys, pinned, gateway_identity, config, [3; 32], restored).unwrap();
        Harness {
            driver,
            now: Duration::ZERO,
            network,
            gateway,
            retired_key_drops: 0,
            black_hole: false,
            open: None,
            connects: Vec::new(),
            closes: Vec::new(),
            events: Vec::new(),
            fetches: 0,
            fetch_urls: Vec::new(),
            first_fetch_urls: Vec::new(),
            first_fetches: Vec::new(),
            directory: DirectoryMood::Serve,
            first_answers: VecDeque::new(),
            started_up: false,
            delivered: Vec::new(),
            anonymous: Vec::new(),
            trace: Vec::new(),
            received_log: Vec::new(),
            reply_store: Vec::new(),
            directory_key_store: Vec::new(),
            to_client: VecDeque::new(),
        }
    }

    /// Carries out every output and answers every frame, at `now`.
    fn settle(&mut self) {
        loop {
            while let Some(output) = self.driver.poll_output(self.now) {
                self.carry_out(output);
            }
            if let Some(answer) = self.first_answers.pop_front() {
                let at = self.unix_ms();
                self.driver
                    .handle_topology_fetched(answer.as_deref().map_err(Clone::clone), self.now, at);
                continue;
            }
            match self.to_client.pop_front() {
                Some((conn, frame)) => self.driver.handle_frame(conn, &frame, self.now),
                None => break,
            }
        }
    }

    fn carry_out(&mut self, output: Output) {
        match output {
            Output::Connect { conn, url } => {
                self.trace.push("connect".into());
                self.connects.push((self.now, url.clone()));
                if self.gateway.connect(conn, &url) {
                    // The new connection replaces any older one.
                    if let Some(old) = self.open.replace(conn) {
                        self.gateway.disconnect(old);
                    }
                    self.driver.handle_connected(conn, self.now);
                } else {
                    self.driver.handle_closed(conn, "connection refused", self.now);
                }
            }
            Output::Close { conn } => {
                self.trace.push("close".into());
                self.closes.push(conn);
                self.gateway.disconnect(conn);
                if self.open == Some(conn) {
                    self.open = None;
                }
            }
            Output::Transmit { conn, frame } => {
                self.trace.push("transmit".into());
                if self.open == Some(conn) {
                    self.gateway_hears(conn, &frame);
                }
            }
            Output::FetchTopology { url } if !self.started_up => {
                self.trace.push("first fetch".into());
                self.first_fetches.push(self.now);
                self.first_fetch_urls.push(url);
                match self.directory {
                    DirectoryMood::Serve => {
                        let text = self.topology_text();
                        self.first_answers.push_back(Ok(text));
                    }
                    DirectoryMood::Down => self.first_answers.push_back(Err("connection refused".into())),
                    DirectoryMood::Hang => {}
                }
            }
            Output::FetchTopology { url } => {
                self.trace.push("fetch".into());
                self.fetches += 1;
                self.fetch_urls.push(url);
            }
            Output::Persist { store, write } => {
                self.trace.push(format!("persist {store:?}"));
                let target = match store {
                    StoreName::ReceivedMessages => &mut self.received_log,
                    StoreName::ReplyStore => &mut self.reply_store,
                    StoreName::DirectoryKey => &mut self.directory_key_store,
                };
                match write {
                    StoreWrite::Replace(bytes) => *target = bytes,
                    StoreWrite::Append { bytes, .. } => target.extend(bytes),
                }
            }
            Output::Deliver { to, message } => {
                self.trace.push("deliver".into());
                if let Some(tag) = message.sender_tag {
                    self.anonymous.push((tag, message.message.clone()));
                }
                self.delivered.push((to, message.message));
            }
            Output::Event(e) => {
                self.trace.push(format!("event {e}"));
                if matches!(e, DriverEvent::GatewayChosen { .. }) {
                    self.started_up = true;
                }
                self.events.push((self.now, e));
            }
        }
    }

    /// The gateway takes a frame from the client; what it sends back waits
    /// for the next step, what it sends into the mixnet goes through at once.
    fn gateway_hears(&mut self, conn: ConnectionId, frame: &[u8]) {
        if let Err(e) = self.gateway.handle_client_frame(conn, frame) {
            panic!("the gateway could not take the client's frame: {e}");
        }
        self.mixnet();
        while let Some(to_client) = self.gateway.poll_to_client() {
            self.to_client.push_back(to_client);
        }
    }

    /// Carries every packet the gateway sent into the mixnet hop by hop, at
    /// once, and back into the gateway (final hops, SURB-ACKs). Nodes hold
    /// the keys of the previous, current and next epochs: a packet for any
    /// other is dropped (and counted).
    fn mixnet(&mut self) {
        while let Some((mut at, mut frame)) = self.gateway.poll_to_mixnet() {
            if self.black_hole {
                continue;
            }
            loop {
                match self.network.hop(at, &frame, self.unix_ms()) {
                    Ok(Hop::Forward { to, frame: next, .. }) => (at, frame) = (to, next),
                    Ok(Hop::Gateway(_)) => {
                        if let Err(e) = self.gateway.handle_packet(&frame) {
                            panic!("the gateway could not take a packet: {e}");
                        }
                        break;
                    }
                    Ok(Hop::RetiredKey) => {
                        self.retired_key_drops += 1;
                        break;
                    }
                    Err(e) => panic!("the mixnet could not carry a packet: {e}"),
                }
            }
        }
    }

    /// Runs timers until `until`, settling after each.
    fn run_until(&mut self, until: Duration) {
        self.settle();
        while let Some(at) = self.driver.poll_timeout() {
            if at > until {
                break;
            }
            self.now = self.now.max(at);
            self.driver.handle_timeout(self.now);
            self.settle();
        }
        self.now = until;
    }

    /// The gateway drops the connection (a restart, a network cut).
    fn cut(&mut self) {
        if let Some(conn) = self.open.take() {
            self.gateway.disconnect(conn);
            self.driver.handle_closed(conn, "connection reset", self.now);
            self.settle();
        }
    }

    fn disconnects(&self) -> Vec<(Duration, Disconnect, Duration)> {
        self.events
            .iter()
            .filter_map(|(at, e)| match e {
                DriverEvent::Disconnected { reason, retry_in, .. } => Some((*at, reason.clone(), *retry_in)),
                _ => None,
            })
            .collect()
    }

    fn connected_count(&self) -> usize {
        self.events
            .iter()
            .filter(|(_, e)| matches!(e, DriverEvent::Connected { .. }))
            .count()
    }

    fn send_to_self(&mut self, message: &[u8]) {
        let recipient = self.driver.address().expect("started");
        let answer = self.driver.handle_request(
            AppRequest::Send {
                recipient,
                message: message.to_vec(),
            },
            self.now,
        );
        assert!(matches!(answer, AppResponse::Send { .. }), "{answer:?}");
        self.settle();
    }

    /// The simulated wall clock.
    fn unix_ms(&self) -> u64 {
        UNIX_START_MS + self.now.as_millis() as u64
    }

    /// The directory's document as of now: the nodes sign their (maybe
    /// changed) descriptors with the keys of the moment, the directory
    /// signs the whole.
    fn topology_text(&self) -> String {
        self.network.signed_text(self.unix_ms(), VALIDITY_MS)
    }

    /// `json` signed by every authority as of now.
    fn signed(&self, mut json: TopologyJson) -> String {
        let at = self.unix_ms();
        sign_all(&mut json, at, at + VALIDITY_MS);
        serde_json::to_string(&json).unwrap()
    }

    fn fetched(&mut self, text: Result<&str, String>) {
        let at = self.unix_ms();
        self.driver.handle_topology_fetched(text, self.now, at);
    }

    /// Runs until `until` in steps of `step`; every refresh fetch asked
    /// meanwhile is answered by `serve`, given the authority's URL (`None`:
    /// that authority never answers).
    fn run_with_authorities(
        &mut self,
        until: Duration,
        step: Duration,
        serve: &dyn Fn(&Harness, &str) -> Option<Result<String, String>>,
    ) {
        let mut answered = self.fetch_urls.len();
        while self.now < until {
            self.run_until((self.now + step).min(until));
            while answered < self.fetch_urls.len() {
                let url = self.fetch_urls[answered].clone();
                answered += 1;
                if let Some(answer) = serve(self, &url) {
                    self.fetched(answer.as_deref().map_err(Clone::clone));
                    self.settle();
                }
            }
        }
    }

    /// The refusals so far, in order.
    fn refusals(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|(_, e)| match e {
                DriverEvent::TopologyRefused(why) => Some(why.clone()),
                _ => None,
            })
            .collect()
    }

    /// Runs until `until` in steps of `step`, the directory answering
    /// every topology fetch with a fresh document (the nodes' keys of the
    /// moment).
    fn run_with_directory(&mut self, until: Duration, step: Duration) {
        while self.now < until {
            let fetches = self.fetches;
            self.run_until((self.now + step).min(until));
            if self.fetches > fetches {
                let text = self.topology_text();
                self.fetched(Ok(&text));
                self.settle();
            }
        }
    }
}

fn started() -> Harness {
    let mut h = Harness::new(config(), Restored::default());
    h.driver.start(h.now);
    h.settle();
    assert!(h.driver.is_connected(), "{:?}", h.events);
    h
}

#[test]
fn a_failed_handshake_closes_the_connection_and_reconnects_after_the_backoff() {
    let mut h = Harness::new(config(), Restored::default());
    h.gateway.mood = Mood::Refuse;
    h.driver.start(h.now);
    h.settle();
    let lost = h.disconnects();
    assert_eq!(lost.len(), 1);
    assert!(
        matches!(&lost[0].1, Disconnect::HandshakeFailed(why) if why.contains("not registered")),
        "{lost:?}"
    );
    assert_eq!(h.closes.len(), 1, "the refused connection is closed by the client");
    assert_eq!(lost[0].2, DriverConfig::default().reconnect_initial);

    h.gateway.mood = Mood::Serve;
    h.run_until(Duration::from_millis(499));
    assert_eq!(h.connects.len(), 1, "not before the backoff");
    h.run_until(Duration::from_millis(500));
    assert_eq!(h.connects.len(), 2);
    assert!(h.driver.is_connected());
    assert_eq!(h.gateway.handshakes, 2);
}

#[test]
fn every_connection_attempt_has_the_handshake_timeout_not_only_the_first() {
    let mut h = started();
    let timeout = DriverConfig::default().handshake_timeout;
    // A reconnect to a gateway that accepts the socket and says nothing.
    h.gateway.mood = Mood::Silent;
    h.cut();
    let reconnect_at = h.now + DriverConfig::default().reconnect_initial;
    h.run_until(reconnect_at + timeout - Duration::from_millis(1));
    assert_eq!(h.connects.len(), 2);
    assert_eq!(h.disconnects().len(), 1, "still waiting for the handshake");
    h.run_until(reconnect_at + timeout);
    let lost = h.disconnects();
    assert_eq!(lost.len(), 2);
    assert_eq!(lost[1].1, Disconnect::HandshakeTimeout(timeout));
    assert_eq!(lost[1].0, reconnect_at + timeout);
    assert_eq!(h.closes.len(), 1, "the stalled socket is closed by the client");
    // And it keeps trying.
    h.gateway.mood = Mood::Serve;
    h.run_until(h.now + Duration::from_secs(2));
    assert!(h.driver.is_connected());
}

#[test]
fn a_moved_gateway_is_followed_from_the_next_connection_without_dropping_a_working_one() {
    let mut h = started();
    let url_a = h.network.gateways[0].url.clone();
    assert_eq!(h.connects[0].1, url_a);
    // The refresh comes due; the directory now lists our gateway at B.
    h.run_until(DriverConfig::default().topology_refresh);
    assert_eq!(h.fetches, 1);
    h.gateway.url = MOVED_URL.into();
    h.network.gateways[0].url = MOVED_URL.into();
    let text = h.topology_text();
    h.fetched(Ok(&text));
    h.settle();
    assert!(h
        .events
        .iter()
        .any(|(_, e)| *e == DriverEvent::GatewayMoved { url: MOVED_URL.into() }));
    assert!(h.driver.is_connected(), "the working connection stays");
    assert!(h.closes.is_empty());
    // The old listener goes away; the next connection goes to B.
    h.cut();
    h.run_until(h.now + Duration::from_secs(1));
    assert_eq!(h.connects.last().map(|(_, u)| u.as_str()), Some(MOVED_URL));
    assert!(h.driver.is_connected());
}

#[test]
fn a_topology_without_our_gateway_or_unreadable_is_refused_and_the_old_one_kept() {
    let mut h = started();
    h.run_until(DriverConfig::default().topology_refresh);
    let mut without_gateway = h.network.json(h.unix_ms());
    without_gateway.gateway_nodes.clear();
    let text = h.signed(without_gateway);
    h.fetched(Ok(&text));
    h.fetched(Ok("{ not json"));
    h.fetched(Err("directory unreachable".into()));
    h.settle();
    let refused = h
        .events
        .iter()
        .filter(|(_, e)| matches!(e, DriverEvent::TopologyRefused(_)))
        .count();
    assert_eq!(refused, 3);
    assert_eq!(h.driver.gateway_url(), Some(h.network.gateways[0].url.as_str()));
    // Sending still works: the client kept a topology with routes.
    h.send_to_self(b"still routable");
    assert_eq!(h.delivered.len(), 0, "no application attached: kept");
    assert_eq!(h.driver.kept_messages(), 1);
    // The next fetch goes at once, to the authority after the last one
    // charged (three refusals, three authorities: round to the one asked).
    let (fetches, asked) = (h.fetches, h.fetch_urls.last().cloned().unwrap_or_default());
    h.run_until(h.now);
    assert_eq!(h.fetches, fetches + 1);
    assert_eq!(h.fetch_urls.last(), Some(&asked));
    assert_eq!(h.driver.directory_stats().failovers, 3);
}

#[test]
fn the_backoff_doubles_and_resets_only_after_a_stable_connection() {
    let mut h = started();
    let initial = DriverConfig::default().reconnect_initial;
    // Three connections that drop one second after their handshake.
    for _ in 0..3 {
        h.run_until(h.now + Duration::from_secs(1));
        h.cut();
        let (_, _, retry_in) = h.disconnects().last().cloned().unwrap();
        h.run_until(h.now + retry_in);
        assert!(h.driver.is_connected());
    }
    let waits: Vec<Duration> = h.disconnects().iter().map(|(_, _, r)| *r).collect();
    assert_eq!(
        waits,
        vec![initial, initial * 2, initial * 4],
        "short-lived connections don't reset the backoff"
    );
    // One that stays up past the stable time resets it.
    h.run_until(h.now + DriverConfig::default().stable_connection);
    h.cut();
    assert_eq!(h.disconnects().last().map(|(_, _, r)| *r), Some(initial));
}

#[test]
fn after_a_gateway_restart_the_client_reconnects_and_what_was_sent_meanwhile_arrives() {
    let mut h = started();
    let app = h.driver.attach_app().unwrap();
    h.send_to_self(b"before");
    assert_eq!(h.delivered, vec![(DeliverTo::All, b"before".to_vec())]);
    // The gateway restarts: it is down for 3 s, its sessions are gone.
    h.gateway.mood = Mood::Down;
    h.cut();
    h.send_to_self(b"during the restart");
    h.run_until(h.now + Duration::from_secs(3));
    assert!(!h.driver.is_connected());
    assert!(h.disconnects().len() >= 3, "it kept trying: {:?}", h.disconnects());
    h.gateway.mood = Mood::Serve;
    let next = h.driver.poll_timeout().unwrap();
    h.run_until(next);
    assert!(h.driver.is_connected());
    h.run_until(h.now + Duration::from_secs(10));
    assert_eq!(h.delivered.len(), 2, "{:?}", h.delivered);
    assert_eq!(h.delivered[1].1, b"during the restart");
    assert_eq!(h.connected_count(), 2, "one handshake before the restart, one after");
    assert_eq!(h.gateway.stored_total(), 0, "everything delivered was acknowledged");
    assert_eq!(h.gateway.bad_acks, 0, "each ack on the connection its delivery came on");
    h.driver.detach_app(app, Vec::new());
}

#[test]
fn messages_without_an_application_are_stored_before_their_ack_and_go_to_the_first_that_attaches() {
    let mut h = started();
    h.trace.clear();
    h.send_to_self(b"for later");
    assert!(h.delivered.is_empty());
    // The kept message was written (synced) before the frame that acknowledges it.
    let persist = h
        .trace
        .iter()
        .position(|t| t == "persist ReceivedMessages")
        .expect("stored");
    assert_eq!(h.gateway.stored_total(), 0, "acknowledged once stored");
    assert!(h.trace[persist + 1..].iter().any(|t| t == "transmit"), "{:?}", h.trace);

    // The first application to attach gets it, and only that one.
    let app = h.driver.attach_app().unwrap();
    h.settle();
    assert_eq!(h.delivered, vec![(DeliverTo::One(app), b"for later".to_vec())]);
    let second = h.driver.attach_app().unwrap();
    h.send_to_self(b"for both");
    assert_eq!(h.delivered.last(), Some(&(DeliverTo::All, b"for both".to_vec())));
    // The last application leaves with one message it could not take: kept.
    h.driver.detach_app(app, Vec::new());
    h.driver.detach_app(
        second,
        vec![nym_client_core::ReceivedMessage {
            message: b"x".to_vec(),
            sender_tag: None,
            sets: vec![77],
        }],
    );
    h.settle();
    assert_eq!(h.driver.kept_messages(), 1);
    let log = h.received_log.clone();
    let restored = Restored {
        reply_store: None,
        received_messages: Some(log),
    };
    let h2 = Harness::new(config(), restored);
    assert_eq!(h2.driver.kept_messages(), 1, "the kept message survives a restart");
}

#[test]
fn applications_past_the_limit_are_refused() {
    let mut h = Harness::new(
        DriverConfig {
            max_applications: 2,
            ..config()
        },
        Restored::default(),
    );
    let a = h.driver.attach_app().unwrap();
    h.driver.attach_app().unwrap();
    let refused = h.driver.attach_app().unwrap_err();
    assert_eq!(refused, AttachError::TooManyApplications { attached: 2 });
    assert!(refused.to_string().contains("too many applications"), "{refused}");
    h.driver.detach_app(a, Vec::new());
    assert!(h.driver.attach_app().is_ok());
}

#[test]
fn a_stopped_driver_closes_its_connection_and_asks_for_nothing_more() {
    let mut h = started();
    h.driver.stop(h.now);
    h.settle();
    assert_eq!(h.closes.len(), 1);
    assert_eq!(h.driver.poll_timeout(), None);
    let connects = h.connects.len();
    h.run_until(h.now + Duration::from_secs(120));
    assert_eq!((h.connects.len(), h.fetches), (connects, 0));
}

#[test]
fn only_a_fresh_topology_signed_by_the_pinned_key_with_signed_descriptors_is_believed() {
    let mut h = started();
    let first = h.topology_text();
    h.run_until(DriverConfig::default().topology_refresh);
    let good = h.topology_text();
    h.fetched(Ok(&good));
    h.settle();
    assert!(
        h.events
            .iter()
            .all(|(_, e)| !matches!(e, DriverEvent::TopologyRefused(_))),
        "{:?}",
        h.events
    );

    let at = h.unix_ms();
    let parsed = |text: &str| serde_json::from_str::<TopologyJson>(text).unwrap();
    let attacker = "127.0.0.1:6666".to_string();
    // 1. rewritten on the way (a layer-1 node pointed at the attacker)
    let mut tampered = parsed(&good);
    tampered.mix_nodes[0].host = attacker.clone();
    // 2. signed by someone else's directory key
    let mut foreign = parsed(&good);
    foreign.mix_nodes[0].host = attacker.clone();
    sign_as(&mut foreign, &SigningKey::from_bytes(&[66; 32]), at, at + VALIDITY_MS);
    // 3. expired
    let mut expired = parsed(&good);
    sign_all(&mut expired, at - 2 * VALIDITY_MS, at - VALIDITY_MS);
    // 4. a descriptor its node never signed, in a document the directory did
    let mut forged = parsed(&good);
    forged.gateway_nodes[0].mixnet_listener = attacker.clone();
    sign_all(&mut forged, at, at + VALIDITY_MS);
    // 5. not signed at all
    let mut unsigned = parsed(&good);
    unsigned.signatures.clear();
    let cases = [
        (
            serde_json::to_string(&tampered).unwrap(),
            "0 valid signatures by the 3 pinned authorities; 2 needed",
        ),
        (
            serde_json::to_string(&foreign).unwrap(),
            "0 valid signatures by the 3 pinned authorities; 2 needed",
        ),
        (serde_json::to_string(&expired).unwrap(), "expired"),
        (
            serde_json::to_string(&forged).unwrap(),
            "gateway 127.0.0.1:6666: the signature does not verify",
        ),
        (serde_json::to_string(&unsigned).unwrap(), "not signed"),
        // 6. an older genuine document replayed
        (first, "before the one in use"),
    ];
    for (text, _) in &cases {
        h.fetched(Ok(text));
    }
    h.settle();
    let refusals: Vec<String> = h
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            DriverEvent::TopologyRefused(why) => Some(why.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(refusals.len(), cases.len(), "{refusals:?}");
    for ((_, why), refusal) in cases.iter().zip(&refusals) {
        assert!(refusal.contains(why), "expected '{why}' in '{refusal}'");
    }
    // Messages keep flowing on the last good topology: every packet goes to
    // a real mixnode (the simulated mixnet unwraps only with real keys).
    h.send_to_self(b"still on the good routes");
    h.run_until(h.now + Duration::from_secs(1));
    assert_eq!(h.driver.kept_messages(), 1);
    // And a newer genuine one is taken.
    h.run_until(h.now + Duration::from_secs(1));
    let newer = h.topology_text();
    let before = refusals.len();
    h.fetched(Ok(&newer));
    h.settle();
    assert_eq!(
        h.events
            .iter()
            .filter(|(_, e)| matches!(e, DriverEvent::TopologyRefused(_)))
            .count(),
        before
    );
}

#[test]
fn a_first_hop_that_left_costs_no_retransmission_and_brings_the_topology_fetch_forward() {
    let mut h = started();
    // One of the two layer-1 nodes leaves; the gateway knows before we do.
    h.gateway.departed.insert(h.network.layer(1)[0]);
    for i in 0..30u8 {
        h.send_to_self(&[i; 100]);
    }
    h.run_until(h.now + Duration::from_millis(10));
    // Every message arrived (kept: no application attached) ...
    assert_eq!(h.driver.kept_messages(), 30);
    // ... the refused packets went again on the live node, uncounted ...
    let stats = h.driver.client().stats().clone();
    assert!(stats.rerouted_packets >= 1, "{stats:?}");
    assert_eq!(stats.retransmissions, 0);
    // ... the node left our routes at the first refusal ...
    assert!(stats.rerouted_packets < 30, "{stats:?}");
    assert!(h
        .driver
        .client()
        .topology()
        .unwrap()
        .layer(1)
        .iter()
        .all(|m| m.address != h.network.layer(1)[0]));
    // ... nobody heard of an error, and the topology is fetched at once,
    // long before its period.
    assert!(
        h.events.iter().all(|(_, e)| !e.concerns_applications()),
        "{:?}",
        h.events
    );
    assert!(h
        .events
        .iter()
        .any(|(_, e)| matches!(e, DriverEvent::RouteRefused { .. })));
    assert_eq!(h.fetches, 1);
    assert!(h.now < DriverConfig::default().topology_refresh);
}

#[test]
fn the_last_node_of_a_layer_refused_counts_as_a_loss_and_cannot_loop() {
    let mut h = started();
    // Both layer-1 nodes leave: no route can avoid them.
    h.gateway.departed.insert(h.network.layer(1)[0]);
    h.gateway.departed.insert(h.network.layer(1)[1]);
    h.send_to_self(b"nowhere to go");
    h.run_until(h.now + Duration::from_secs(1));
    let stats = h.driver.client().stats().clone();
    let failed = h
        .events
        .iter()
        .filter(|(_, e)| matches!(e, DriverEvent::SendFailed { .. }))
        .count();
    assert_eq!(failed, 1, "given up once, after counted tries: {stats:?}");
    assert_eq!(
        stats.retransmissions,
        u64::from(ClientConfig::default().max_retransmissions)
    );
}

#[test]
fn a_transfer_across_key_rotations_loses_nothing_and_meets_no_retired_key() {
    let mut h = started();
    let epoch = Duration::from_secs(EPOCH_SECS);
    let _app = h.driver.attach_app().unwrap();
    // a message every 2 s for three and a half epochs; topologies every 20 s
    let mut sent = 0u32;
    while h.now < epoch * 7 / 2 {
        h.send_to_self(&sent.to_be_bytes());
        sent += 1;
        let next = h.now + Duration::from_secs(2);
        h.run_with_directory(next, Duration::from_secs(1));
    }
    h.run_with_directory(h.now + Duration::from_secs(5), Duration::from_secs(1));
    let mut got: Vec<u32> = h
        .delivered
        .iter()
        .filter(|(to, _)| *to == DeliverTo::All)
        .map(|(_, m)| u32::from_be_bytes(m[..4].try_into().unwrap()))
        .collect();
    got.sort();
    assert_eq!(got, (0..sent).collect::<Vec<_>>(), "every message, once");
    assert_eq!(
        h.retired_key_drops, 0,
        "no packet was built for a key its nodes no longer hold"
    );
    let stats = h.driver.client().stats().clone();
    assert_eq!(stats.retransmissions, 0, "{stats:?}");
    assert!(
        h.events
            .iter()
            .all(|(_, e)| !matches!(e, DriverEvent::SendFailed { .. })),
        "{:?}",
        h.events
    );
}

#[test]
fn surbs_that_will_retire_are_replaced_in_time_so_a_reply_two_rotations_later_arrives() {
    let mut h = started();
    let epoch = Duration::from_secs(EPOCH_SECS);
    let _app = h.driver.attach_app().unwrap();
    // An anonymous message to ourselves: we are its sender and its replier.
    let me = h.driver.address().unwrap();
    let answer = h.driver.handle_request(
        AppRequest::SendAnonymous {
            recipient: me,
            message: b"who am I talking to?".to_vec(),
            reply_surbs: 3,
        },
        h.now,
    );
    assert!(matches!(answer, AppResponse::Send { .. }), "{answer:?}");
    h.run_with_directory(h.now + Duration::from_secs(2), Duration::from_secs(1));
    let (tag, message) = h.anonymous.first().cloned().expect("the anonymous message arrived");
    assert_eq!(message, b"who am I talking to?");
    let old_epoch = epoch_at(h.unix_ms(), EPOCH_SECS * 1000);

    // Two rotations: the SURBs' keys are retired by then.
    h.run_with_directory(epoch * 2 + Duration::from_secs(10), Duration::from_secs(1));
    assert!(epoch_at(h.unix_ms(), EPOCH_SECS * 1000) >= old_epoch + 2);
    let answer = h.driver.handle_request(
        AppRequest::Reply {
            sender_tag: tag,
            message: b"your future self".to_vec(),
        },
        h.now,
    );
    assert!(
        matches!(answer, AppResponse::Send { .. }),
        "fresh SURBs were fetched before the old ones retired: {answer:?}"
    );
    h.run_with_directory(h.now + Duration::from_secs(2), Duration::from_secs(1));
    let replies: Vec<_> = h
        .delivered
        .iter()
        .filter(|(to, m)| *to == DeliverTo::All && m == b"your future self")
        .collect();
    assert_eq!(replies.len(), 1, "{:?}", h.events);
    assert_eq!(h.retired_key_drops, 0);
}

#[test]
fn a_reply_through_only_retired_surbs_is_refused_with_a_reason_not_lost() {
    let mut h = started();
    let epoch = Duration::from_secs(EPOCH_SECS);
    let _app = h.driver.attach_app().unwrap();
    let me = h.driver.address().unwrap();
    let answer = h.driver.handle_request(
        AppRequest::SendAnonymous {
            recipient: me,
            message: b"hello".to_vec(),
            reply_surbs: 2,
        },
        h.now,
    );
    assert!(matches!(answer, AppResponse::Send { .. }), "{answer:?}");
    h.run_with_directory(h.now + Duration::from_secs(2), Duration::from_secs(1));
    let (tag, _) = h.anonymous.first().cloned().expect("the anonymous message arrived");
    // The gateway is gone for two epochs: no refresh can happen ...
    h.gateway.mood = Mood::Down;
    h.cut();
    h.run_with_directory(epoch * 2 + Duration::from_secs(10), Duration::from_secs(1));
    h.gateway.mood = Mood::Serve;
    h.run_with_directory(h.now + Duration::from_secs(40), Duration::from_secs(1));
    assert!(h.driver.is_connected());
    // ... so the SURBs retired unused; the reply is refused, saying why.
    match h.driver.handle_request(
        AppRequest::Reply {
            sender_tag: tag,
            message: b"late".to_vec(),
        },
        h.now,
    ) {
        AppResponse::Error(e) => assert!(e.contains("retired"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(h.retired_key_drops, 0, "nothing was sent through them");
}

#[test]
fn unacknowledged_packets_bring_the_topology_fetch_forward() {
    let mut h = started();
    // Packets vanish silently (say a node rotated its key early after a
    // crash: its new key is in the next topology).
    h.black_hole = true;
    h.send_to_self(b"into the void");
    h.run_until(h.now + Duration::from_secs(5));
    assert!(h.driver.client().stats().retransmissions >= 1);
    assert!(
        h.fetches >= 1,
        "fetched early, long before the {:?} refresh",
        DriverConfig::default().topology_refresh
    );
    assert!(h.now < DriverConfig::default().topology_refresh);
    // With the mixnet back, the retransmission arrives.
    h.black_hole = false;
    let text = h.topology_text();
    h.fetched(Ok(&text));
    h.run_until(h.now + Duration::from_secs(30));
    assert_eq!(h.driver.kept_messages(), 1, "{:?}", h.events);
}

/// The start-up events, in order, without their times.
fn start_events(h: &Harness) -> Vec<DriverEvent> {
    h.events
        .iter()
        .map(|(_, e)| e.clone())
        .filter(|e| {
            matches!(
                e,
                DriverEvent::FirstFetchFailed { .. } | DriverEvent::StartFailed(_) | DriverEvent::GatewayChosen { .. }
            )
        })
        .collect()
}

#[test]
fn the_first_fetch_is_retried_with_the_shared_backoff_then_the_start_fails_clearly() {
    let mut h = Harness::new(config(), Restored::default());
    h.directory = DirectoryMood::Down;
    h.driver.start(h.now);
    h.settle();
    assert_eq!(
        h.trace.first().map(String::as_str),
        Some("first fetch"),
        "the first output is the topology fetch"
    );
    h.run_until(Duration::from_secs(600));

    // Attempts at 0, then after each of the shared waits.
    let mut expected_at = vec![Duration::ZERO];
    for failed in 1..defaults::FIRST_FETCH_ATTEMPTS {
        let wait = defaults::first_fetch_retry(failed).unwrap();
        expected_at.push(*expected_at.last().unwrap() + wait);
    }
    assert_eq!(h.first_fetches, expected_at);
    assert_eq!(expected_at.len(), 5);
    let events = start_events(&h);
    assert_eq!(events.len(), 5, "{events:?}");
    for (i, event) in events[..4].iter().enumerate() {
        let attempt = i as u32 + 1;
        match event {
            DriverEvent::FirstFetchFailed {
                attempt: a,
                attempts,
                retry_in,
                reason,
            } => {
                assert_eq!((*a, *attempts), (attempt, defaults::FIRST_FETCH_ATTEMPTS));
                assert_eq!(Some(*retry_in), defaults::first_fetch_retry(attempt));
                assert!(reason.contains("connection refused"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }
    let DriverEvent::StartFailed(error) = &events[4] else {
        panic!("{events:?}")
    };
    // Each attempt went to the next authority, from a random first one,
    // and the failure names each one's last error.
    let urls: Vec<String> = (0..3).map(|i| h.network.authority_url(i)).collect();
    let first = urls
        .iter()
        .position(|u| *u == h.first_fetch_urls[0])
        .expect("a pinned authority");
    let expected_urls: Vec<String> = (0..5).map(|i| urls[(first + i) % 3].clone()).collect();
    assert_eq!(h.first_fetch_urls, expected_urls);
    let reason = urls
        .iter()
        .map(|u| format!("{u}: connection refused"))
        .collect::<Vec<_>>()
        .join("; ");
    assert_eq!(*error, StartError::Topology { attempts: 5, reason });
    assert!(
        error
            .to_string()
            .contains("no usable topology from the directory after 5 attempts"),
        "{error}"
    );
    // Given up: nothing more, no connection, no timer, no requests served.
    assert!(h.connects.is_empty());
    assert_eq!(h.driver.poll_timeout(), None);
    assert!(
        !DriverEvent::StartFailed(error.clone()).concerns_applications(),
        "the shim reports it as its own failure"
    );
    let me = nym_client_core::Recipient::new([1; 32], [2; 32]);
    assert!(matches!(
        h.driver.handle_request(
            AppRequest::Send {
                recipient: me,
                message: b"x".to_vec()
            },
            h.now
        ),
        AppResponse::Error(_)
    ));
}

#[test]
fn a_first_fetch_that_hangs_counts_as_failed_and_a_later_attempt_starts_the_driver() {
    let mut h = Harness::new(config(), Restored::default());
    h.directory = DirectoryMood::Hang;
    h.driver.start(h.now);
    h.settle();
    h.run_until(defaults::FIRST_FETCH_TIMEOUT);
    let retry = defaults::first_fetch_retry(1).unwrap();
    assert_eq!(h.driver.poll_timeout(), Some(defaults::FIRST_FETCH_TIMEOUT + retry));
    h.directory = DirectoryMood::Serve;
    h.run_until(defaults::FIRST_FETCH_TIMEOUT + retry);
    assert_eq!(
        h.first_fetches,
        vec![Duration::ZERO, defaults::FIRST_FETCH_TIMEOUT + retry]
    );
    assert!(h.driver.is_connected(), "{:?}", h.events);
    match &start_events(&h)[..] {
        [DriverEvent::FirstFetchFailed { attempt: 1, reason, .. }, DriverEvent::GatewayChosen { .. }] => {
            assert!(reason.contains("did not answer"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn with_no_directory_key_pinned_the_first_one_is_trusted_kept_and_then_required() {
    let gateway = network().gateway_identity(0);
    let url = network().authority_url(0);
    let mut h = Harness::with(
        config(),
        Restored::default(),
        DirectoryTrust::FirstUse { url },
        Some(gateway),
    );
    h.driver.start(h.now);
    h.settle();
    assert!(h.driver.is_connected(), "{:?}", h.events);
    let key = directory_key().verifying_key().to_bytes();
    assert_eq!(h.directory_key_store, nym_client_core::encode_key(&key).into_bytes());
    let learned = nym_client_core::Authorities::single(key, network().authority_url(0));
    assert_eq!(h.driver.authorities(), Some(&learned));
    // Kept before anything else happens.
    assert_eq!(&h.trace[..2], ["first fetch", "persist DirectoryKey"]);
    // From now on a document signed by another key is refused.
    h.run_until(DriverConfig::default().topology_refresh);
    let mut foreign: TopologyJson = serde_json::from_str(&h.topology_text()).unwrap();
    let at = h.unix_ms();
    sign_as(&mut foreign, &SigningKey::from_bytes(&[66; 32]), at, at + VALIDITY_MS);
    h.fetched(Ok(&serde_json::to_string(&foreign).unwrap()));
    h.settle();
    assert!(
        h.events
            .iter()
            .any(|(_, e)| matches!(e, DriverEvent::TopologyRefused(_))),
        "{:?}",
        h.events
    );

    // A pinned key is never written again.
    let h2 = started();
    assert!(h2.directory_key_store.is_empty());
}

#[test]
fn with_no_gateway_named_one_is_chosen_from_the_first_topology_and_told() {
    let mut h = Harness::with(config(), Restored::default(), pinned(), None);
    assert_eq!(h.driver.address(), None, "no address before a gateway");
    h.driver.start(h.now);
    h.settle();
    let gateway = h.gateway.identity_key();
    let chosen = DriverEvent::GatewayChosen {
        gateway: nym_client_core::encode_key(&gateway),
        url: h.network.gateways[0].url.clone(),
    };
    assert_eq!(start_events(&h), vec![chosen]);
    assert_eq!(h.driver.gateway_identity(), Some(gateway));
    assert_eq!(h.driver.address().map(|a| a.gateway_key), Some(gateway));
    assert!(h.driver.is_connected());
    h.send_to_self(b"through the chosen gateway");
    assert_eq!(h.driver.kept_messages(), 1);
}

#[test]
fn a_named_gateway_missing_from_the_first_topology_fails_the_start_at_once() {
    let mut h = Harness::with(config(), Restored::default(), pinned(), Some([5; 32]));
    h.driver.start(h.now);
    h.settle();
    let expected = StartError::GatewayNotInTopology(nym_client_core::encode_key(&[5; 32]));
    assert_eq!(start_events(&h), vec![DriverEvent::StartFailed(expected)]);
    assert_eq!(h.first_fetches.len(), 1, "not a network problem: no retry");
    assert_eq!(h.driver.poll_timeout(), None);
}

#[test]
fn applications_hear_exactly_what_the_core_decides_and_a_failed_message_names_its_id() {
    let mut h = started();
    // Both layer-1 nodes leave: the message fails after its retransmissions.
    h.gateway.departed.insert(h.network.layer(1)[0]);
    h.gateway.departed.insert(h.network.layer(1)[1]);
    let me = h.driver.address().unwrap();
    let AppResponse::Send { id } = h.driver.handle_request(
        AppRequest::Send {
            recipient: me,
            message: b"lost".to_vec(),
        },
        h.now,
    ) else {
        panic!("refused")
    };
    let AppResponse::Send { id: second } = h.driver.handle_request(
        AppRequest::Send {
            recipient: me,
            message: b"lost too".to_vec(),
        },
        h.now,
    ) else {
        panic!("refused")
    };
    assert_ne!(id, second, "each message its own id");
    h.run_until(h.now + Duration::from_secs(1));
    h.gateway.mood = Mood::Down;
    h.cut();
    h.run_until(h.now + Duration::from_secs(1));
    let heard: Vec<AppResponse> = h.events.iter().filter_map(|(_, e)| e.for_applications()).collect();
    let mut failed: Vec<u64> = heard
        .iter()
        .map(|r| match r {
            AppResponse::SendFailed { id, message } => {
                assert!(message.contains(&format!("(message {id})")), "{message}");
                *id
            }
            other => panic!("only send failures were due here: {other:?}"),
        })
        .collect();
    failed.sort();
    assert_eq!(
        failed,
        vec![id.min(second), id.max(second)],
        "each failure once, by the id its send was answered with"
    );
    // The rest is for the log: route refusals, disconnections, start-up.
    for (_, event) in &h.events {
        let heard = event.for_applications().is_some();
        assert_eq!(heard, event.concerns_applications());
        assert_eq!(
            heard,
            matches!(event, DriverEvent::SendFailed { .. } | DriverEvent::GatewayError(_)),
            "{event:?}"
        );
    }
    assert!(h
        .events
        .iter()
        .any(|(_, e)| matches!(e, DriverEvent::Disconnected { .. })));
    assert!(h
        .events
        .iter()
        .any(|(_, e)| matches!(e, DriverEvent::GatewayChosen { .. })));
    assert_eq!(
        DriverEvent::GatewayError("full".into()).for_applications(),
        Some(AppResponse::Error("full".into())),
        "a gateway's complaint, in its own words"
    );
}

/// `json` as every authority of the network signs it for `[at, until)`.
fn sign_all(json: &mut TopologyJson, at: u64, until: u64) {
    sign_as(json, &directory_key(), at, until);
    for key in &network().authority_keys[1..] {
        json.sign(key);
    }
}

/// `json` as the one authority `key` signs it for `[at, until)`.
fn sign_as(json: &mut TopologyJson, key: &SigningKey, at: u64, until: u64) {
    (json.round, json.issued_at, json.expires_at) = (at / 1000, at, until);
    json.signatures.clear();
    json.served_by = nym_client_core::encode_key(key.verifying_key().as_bytes());
    json.sign(key);
}

/// The URL of the authority after `url` in the pinned list.
fn next_authority(url: &str) -> String {
    let n = network();
    let i = (0..3)
        .position(|i| n.authority_url(i) == url)
        .expect("a pinned authority");
    n.authority_url((i + 1) % 3)
}

#[test]
fn a_refresh_fails_over_to_the_next_authority_when_one_is_down_hangs_or_refuses() {
    let mut h = started();
    let first = h.first_fetch_urls[0].clone();
    assert_eq!(
        h.driver.directory_stats().last_good_from.as_deref(),
        Some(first.as_str())
    );
    // The authority that served us goes down: the next is asked at once and serves.
    let down = first.clone();
    h.run_with_authorities(Duration::from_secs(40), Duration::from_millis(500), &|h, url| {
        Some(if url == down {
            Err("connection refused".into())
        } else {
            Ok(h.topology_text())
        })
    });
    assert_eq!(h.fetch_urls, vec![first.clone(), next_authority(&first)]);
    assert_eq!(h.refusals(), vec![format!("{first}: connection refused")]);
    let second = next_authority(&first);
    let stats = h.driver.directory_stats();
    assert_eq!(
        (stats.last_good_from.as_deref(), stats.failovers),
        (Some(second.as_str()), 1)
    );
    assert_eq!((stats.authorities, stats.threshold), (3, 2));

    // Now it hangs: after the fetch timeout the next authority is asked.
    let hanging = second.clone();
    let until =
        h.now + DriverConfig::default().topology_refresh + defaults::TOPOLOGY_FETCH_TIMEOUT + Duration::from_secs(1);
    h.run_with_authorities(until, Duration::from_millis(500), &|h, url| {
        (url != hanging).then(|| Ok(h.topology_text()))
    });
    let third = next_authority(&second);
    assert_eq!(&h.fetch_urls[2..], [second.clone(), third.clone()]);
    assert!(
        h.refusals()[1].starts_with(&format!("{second}: the authority did not answer")),
        "{:?}",
        h.refusals()
    );

    // And it refuses: a document signed by it alone.
    let lone = third.clone();
    let until = h.now + DriverConfig::default().topology_refresh + Duration::from_secs(1);
    h.run_with_authorities(until, Duration::from_millis(500), &|h, url| {
        let mut json: TopologyJson = serde_json::from_str(&h.topology_text()).unwrap();
        let at = h.unix_ms();
        if url == lone {
            sign_as(&mut json, &directory_key(), at, at + VALIDITY_MS);
        }
        Some(Ok(serde_json::to_string(&json).unwrap()))
    });
    assert_eq!(&h.fetch_urls[4..], [third.clone(), next_authority(&third)]);
    assert!(
        h.refusals()[2].contains("1 valid signature by the 3 pinned authorities; 2 needed"),
        "{:?}",
        h.refusals()
    );
    assert_eq!(h.driver.directory_stats().failovers, 3);
    assert!(h.driver.is_connected());
    h.send_to_self(b"still flowing");
    assert_eq!(h.driver.kept_messages(), 1);
}

#[test]
fn too_few_unpinned_repeated_and_replayed_documents_are_refused_and_the_next_authority_is_asked() {
    let mut h = started();
    let first_document = h.topology_text();
    h.run_until(Duration::from_secs(1));
    let at = h.unix_ms();
    let fresh = || -> TopologyJson { serde_json::from_str(&h.topology_text()).unwrap() };
    // 1. fewer than the threshold: one authority's signature
    let mut too_few = fresh();
    sign_as(&mut too_few, &directory_key(), at, at + VALIDITY_MS);
    // 2. one pinned signature and one by a key no one pinned
    let mut unpinned = too_few.clone();
    unpinned.sign(&SigningKey::from_bytes(&[66; 32]));
    // 3. a pinned signature repeated to make up the count
    let mut repeated = too_few.clone();
    repeated.signatures.push(repeated.signatures[0].clone());
    let cases = [
        (
            serde_json::to_string(&too_few).unwrap(),
            "1 valid signature by the 3 pinned authorities; 2 needed".to_string(),
        ),
        (
            serde_json::to_string(&unpinned).unwrap(),
            "1 valid signature by the 3 pinned authorities; 2 needed (1 other signature(s) unlisted or invalid)".into(),
        ),
        (
            serde_json::to_string(&repeated).unwrap(),
            format!("two signatures by {}", too_few.signatures[0].key),
        ),
        // 4. the older genuine document, replayed
        (first_document, "before the one in use (a replayed document?)".into()),
    ];
    for (text, why) in &cases {
        h.run_until(h.now + DriverConfig::default().topology_refresh);
        let asked = h.fetch_urls.last().cloned().expect("a refresh");
        let refusals = h.refusals().len();
        h.fetched(Ok(text));
        h.settle();
        let refused = &h.refusals()[refusals..];
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert!(
            refused[0].starts_with(&format!("{asked}: ")) && refused[0].contains(why.as_str()),
            "{why}: {refused:?}"
        );
        // The next authority is asked at once, and its good document taken.
        h.run_until(h.now);
        assert_eq!(h.fetch_urls.last(), Some(&next_authority(&asked)));
        let good = h.topology_text();
        h.fetched(Ok(&good));
        h.settle();
        assert_eq!(h.refusals().len(), refusals + 1, "the good one is taken");
        assert_eq!(h.driver.directory_stats().last_good_from, Some(next_authority(&asked)));
    }
    // Throughout, the routes were the good document's.
    h.send_to_self(b"on the good routes");
    assert_eq!(h.driver.kept_messages(), 1);
}

#[test]
fn with_two_of_three_authorities_down_the_last_document_serves_until_it_expires_then_no_current_topology_until_one_returns(
) {
    let mut h = started();
    let last = h.topology_text();
    let up = network().authority_url(2);
    // Two authorities are down; the third has no newer consensus (it
    // cannot make one alone) and keeps serving the last document.
    let serve_last = |up: String, last: String| {
        move |_: &Harness, url: &str| -> Option<Result<String, String>> {
            Some(if url == up {
                Ok(last.clone())
            } else {
                Err("connection refused".into())
            })
        }
    };
    let expiry = Duration::from_millis(VALIDITY_MS);
    h.run_with_authorities(
        expiry - Duration::from_secs(1),
        Duration::from_millis(500),
        &serve_last(up.clone(), last.clone()),
    );
    assert!(!h
        .events
        .iter()
        .any(|(_, e)| matches!(e, DriverEvent::NoCurrentTopology { .. })));
    // Still in use: the one authority up serves it and it is taken (the
    // test network's 60 s key epochs, not the driver, would refuse packets
    // built on it this late).
    assert!(h.refusals().iter().all(|r| !r.starts_with(&up)), "{:?}", h.refusals());

    h.run_with_authorities(
        expiry + Duration::from_secs(60),
        Duration::from_millis(500),
        &serve_last(up.clone(), last),
    );
    let none: Vec<(Duration, String)> = h
        .events
        .iter()
        .filter_map(|(at, e)| match e {
            DriverEvent::NoCurrentTopology { reason } => Some((*at, reason.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(none.len(), 1, "told once: {none:?}");
    assert_eq!(none[0].0, expiry, "told when it expired");
    let reason = &none[0].1;
    for i in 0..2 {
        assert!(
            reason.contains(&format!("{}: connection refused", network().authority_url(i))),
            "{reason}"
        );
    }
    assert!(
        reason.contains(&format!("{up}: it served nothing newer than the document in use")),
        "{reason}"
    );
    let event = DriverEvent::NoCurrentTopology { reason: reason.clone() };
    assert!(event.concerns_applications(), "applications hear it");

    // One authority returns with a fresh consensus: service resumes, no restart.
    let back = network().authority_url(0);
    h.run_with_authorities(
        h.now + Duration::from_secs(40),
        Duration::from_millis(500),
        &|h, url| {
            Some(if url == back {
                Ok(h.topology_text())
            } else {
                Err("connection refused".into())
            })
        },
    );
    assert!(
        h.events
            .iter()
            .any(|(_, e)| *e == DriverEvent::TopologyRestored { url: back.clone() }),
        "{:?}",
        h.events
    );
    assert_eq!(h.driver.directory_stats().last_good_from, Some(back));
    h.send_to_self(b"after recovery");
    h.run_until(h.now + Duration::from_secs(1));
    assert_eq!(h.driver.kept_messages(), 1);
}

#[test]
fn a_single_directory_trusted_on_first_use_accepts_a_multi_authority_document_it_signed() {
    let gateway = network().gateway_identity(0);
    let url = network().authority_url(1);
    let mut h = Harness::with(
        config(),
        Restored::default(),
        DirectoryTrust::FirstUse { url: url.clone() },
        Some(gateway),
    );
    h.driver.start(h.now);
    h.settle();
    assert!(h.driver.is_connected(), "{:?}", h.events);
    assert_eq!(h.first_fetch_urls, vec![url.clone()]);
    // servedBy is the first authority: its key is the one learned.
    let learned = nym_client_core::Authorities::single(directory_key().verifying_key().to_bytes(), url);
    assert_eq!(h.driver.authorities(), Some(&learned));
    h.run_with_directory(Duration::from_secs(61), Duration::from_millis(500));
    assert!(h.refusals().is_empty(), "{:?}", h.refusals());
}
