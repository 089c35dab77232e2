//! Deterministic simulation: real client state machines, real Sphinx, real
//! gateway handshake, but an in-memory network and a fake clock. No sockets,
//! no sleeping: simulated minutes run in seconds and every run is the same.

use nym_client_core::fuzzing::packet::build_sphinx_packet;
use nym_client_core::fuzzing::payload::{self, PayloadKind};
use nym_client_core::fuzzing::{unthrottled, FakeGateway, Hop, TestNetwork};
use nym_client_core::{Client, ClientConfig, ClientEvent, ClientKeys, PacketSize, Recipient, SenderTag};
use nym_wire::topology::{decode_node_address, encode_node_address};
use rand::rngs::StdRng;
use rand::SeedableRng;
use sphinx_packet::{ProcessedPacketData, SphinxPacket};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::time::Duration;
use x25519_dalek::{PublicKey, StaticSecret};

const LINK_LATENCY: Duration = Duration::from_millis(1);

enum Delivery {
    /// Bytes arriving at the node listening on this address.
    Node(SocketAddr, Vec<u8>),
    /// A websocket frame from client i to its gateway, on connection n.
    ToGateway(usize, u64, Vec<u8>),
    /// A websocket frame from the gateway to client i, on connection n.
    ToClient(usize, u64, Vec<u8>),
}

struct Sim {
    now: Duration,
    seq: u64,
    queue: BinaryHeap<Reverse<(Duration, u64)>>,
    in_flight: HashMap<u64, Delivery>,
    network: TestNetwork,
    /// The gateways, their connections named by client index.
    gateways: Vec<FakeGateway<usize>>,
    clients: Vec<Client>,
    client_gateway: Vec<usize>,
    /// Each client's current gateway connection: frames of an older one
    /// still in flight are lost with it.
    connection: Vec<u64>,
    keys: Vec<ClientKeys>,
    received: Vec<Vec<Vec<u8>>>,
    /// The fragment sets of what `received` holds (a shim keeps these).
    received_sets: Vec<Vec<u32>>,
    anonymous: Vec<Vec<(Vec<u8>, SenderTag)>>,
    failed: Vec<Vec<u64>>,
    rng: StdRng,
    /// Probability that a packet between nodes is lost.
    loss: f64,
    /// Nodes that swallow everything (crashed).
    dead: Vec<SocketAddr>,
    lost_packets: u64,
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

impl Sim {
    /// 3 layers x 2 mixnodes, `gateways` gateways, one client per entry of
    /// `client_gateways`. One key epoch for the whole simulation (key epochs
    /// have their own simulation in tests/driver.rs); the clients' clocks
    /// read Unix 0 at the start.
    fn new(client_gateways: &[usize], gateways: u8, config: ClientConfig) -> Self {
        let mut rng = StdRng::from_seed([42; 32]);
        let network = TestNetwork::new([2, 2, 2], gateways);
        let topology = network.topology(0).unwrap();
        let sim_gateways: Vec<FakeGateway<usize>> = (0..network.gateways.len())
            .map(|g| network.fake_gateway(g, [g as u8 + 50; 32]))
            .collect();
        let mut clients = Vec::new();
        let mut client_keys = Vec::new();
        for (i, &g) in client_gateways.iter().enumerate() {
            let keys = ClientKeys::generate(&mut rng);
            client_keys.push(keys.clone());
            let mut c = Client::new(keys, network.gateway_identity(g), config.clone(), [i as u8 + 100; 32]);
            c.handle_topology(topology.clone());
            c.handle_clock(Duration::ZERO, 0);
            clients.push(c);
        }
        Sim {
            now: Duration::ZERO,
            seq: 0,
            queue: BinaryHeap::new(),
            in_flight: HashMap::new(),
            network,
            gateways: sim_gateways,
            received: vec![Vec::new(); clients.len()],
            received_sets: vec![Vec::new(); clients.len()],
            failed: vec![Vec::new(); clients.len()],
            anonymous: vec![Vec::new(); clients.len()],
            loss: 0.0,
            dead: Vec::new(),
            lost_packets: 0,
            client_gateway: client_gateways.to_vec(),
            connection: vec![0; client_gateways.len()],
            keys: client_keys,
            clients,
            rng,
        }
    }

    /// The wall clock: Unix 0 at the start.
    fn unix_ms(&self) -> u64 {
        self.now.as_millis() as u64
    }

    /// What clients see once the directory expired a node and they refreshed.
    fn forget_node(&mut self, node: SocketAddr) {
        self.network.mixnodes.retain(|m| m.address != node);
        let topology = self.network.topology(self.unix_ms()).unwrap();
        for c in &mut self.clients {
            c.handle_topology(topology.clone());
        }
    }

    /// What client i's gateway stored for it and it has not acknowledged.
    fn stored(&self, i: usize) -> usize {
        self.gateways[self.client_gateway[i]].stored(&self.clients[i].address().client_key)
    }

    fn schedule(&mut self, after: Duration, d: Delivery) {
        if let Delivery::Node(to, _) = &d {
            if self.dead.contains(to) || rand::RngExt::random_bool(&mut self.rng, self.loss) {
                self.lost_packets += 1;
                return;
            }
        }
        self.seq += 1;
        self.queue.push(Reverse((self.now + after, self.seq)));
        self.in_flight.insert(self.seq, d);
    }

    /// Client i opens a new connection to its gateway.
    fn connect(&mut self, i: usize) {
        self.connection[i] += 1;
        let gw = &mut self.gateways[self.client_gateway[i]];
        let url = gw.url.clone();
        assert!(gw.connect(i, &url));
        self.clients[i].handle_gateway_connected(self.now);
    }

    fn connect_all(&mut self) {
        for i in 0..self.clients.len() {
            self.connect(i);
        }
        self.pump_clients();
    }

    /// Client i's connection drops (no clean close: whatever was in flight
    /// either way is lost) and the client connects again.
    fn cut_connection(&mut self, i: usize) {
        self.gateways[self.client_gateway[i]].disconnect(i);
        self.clients[i].handle_gateway_disconnected(self.now);
        self.connect(i);
        self.pump_clients();
    }

    /// Client i's process dies: its connection drops and its memory is gone.
    /// It comes back as a new engine with the same keys.
    fn crash_client(&mut self, i: usize, keys: ClientKeys, config: ClientConfig, delivered_sets: &[u32]) {
        let g = self.client_gateway[i];
        self.gateways[g].disconnect(i);
        let mut c = Client::new(keys, self.network.gateway_identity(g), config, [i as u8 + 200; 32]);
        c.handle_topology(self.network.topology(self.unix_ms()).unwrap());
        c.handle_clock(self.now, self.unix_ms());
        c.import_delivered_sets(delivered_sets);
        self.clients[i] = c;
        self.connect(i);
        self.pump_clients();
    }

    /// Moves everything the clients want to say onto the network.
    fn pump_clients(&mut self) {
        for i in 0..self.clients.len() {
            // Events first: what is taken is handed over before its ack goes out.
            while let Some(ev) = self.clients[i].poll_event() {
                match ev {
                    ClientEvent::Received(m) => match m.sender_tag {
                        Some(tag) => self.anonymous[i].push((m.message, tag)),
                        None => {
                            self.received[i].push(m.message);
                            self.received_sets[i].extend(m.sets);
                        }
                    },
                    ClientEvent::Connected => {}
                    ClientEvent::GatewayError(e) | ClientEvent::HandshakeFailed(e) => panic!("client {i}: {e}"),
                    ClientEvent::SendFailed { message_id, .. } => self.failed[i].push(message_id),
                    ClientEvent::ReplyStoreChanged => {}
                    ClientEvent::RouteRefused { first_hop } => {
                        panic!("client {i}: this gateway refuses nothing, yet {first_hop}")
                    }
                }
            }
            while let Some(frame) = self.clients[i].poll_transmit(self.now) {
                let n = self.connection[i];
                self.schedule(LINK_LATENCY, Delivery::ToGateway(i, n, frame));
            }
        }
    }

    /// Puts what gateway g wants sent on the links.
    fn pump_gateway(&mut self, g: usize) {
        while let Some((i, frame)) = self.gateways[g].poll_to_client() {
            let n = self.connection[i];
            self.schedule(LINK_LATENCY, Delivery::ToClient(i, n, frame));
        }
        while let Some((to, frame)) = self.gateways[g].poll_to_mixnet() {
            self.schedule(LINK_LATENCY, Delivery::Node(to, frame));
        }
    }

    fn gateway_from_client(&mut self, i: usize, n: u64, frame: Vec<u8>) {
        if n != self.connection[i] {
            return; // sent on a connection that is gone
        }
        let g = self.client_gateway[i];
        self.gateways[g].handle_client_frame(i, &frame).unwrap();
        self.pump_gateway(g);
    }

    fn node_receives(&mut self, at: SocketAddr, frame: Vec<u8>) {
        match self.network.hop(at, &frame, self.unix_ms()).unwrap() {
            Hop::Forward { to, frame, delay } => self.schedule(delay + LINK_LATENCY, Delivery::Node(to, frame)),
            Hop::Gateway(g) => {
                self.gateways[g].handle_packet(&frame).unwrap();
                self.pump_gateway(g);
            }
            Hop::RetiredKey => panic!("the simulation has one key epoch"),
        }
    }

    /// Runs the network until `until` (simulated) or `done` holds.
    fn run_until(&mut self, until: Duration, mut done: impl FnMut(&Sim) -> bool) {
        while self.now < until && !done(self) {
            let next_net = self.queue.peek().map(|Reverse((t, _))| *t);
            let next_timer = self.clients.iter().filter_map(|c| c.poll_timeout()).min();
            let Some(next) = [next_net, next_timer].into_iter().flatten().min() else {
                break;
            };
            self.now = next.max(self.now);
            while let Some(Reverse((t, seq))) = self.queue.peek().copied() {
                if t > self.now {
                    break;
                }
                self.queue.pop();
                match self.in_flight.remove(&seq).unwrap() {
                    Delivery::Node(a, f) => self.node_receives(a, f),
                    Delivery::ToGateway(i, n, f) => self.gateway_from_client(i, n, f),
                    Delivery::ToClient(i, n, f) => {
                        if n == self.connection[i] {
                            self.clients[i].handle_gateway_frame(&f, self.now);
                        }
                    }
                }
            }
            for c in &mut self.clients {
                if c.poll_timeout().is_some_and(|t| t <= self.now) {
                    c.handle_timeout(self.now);
                }
            }
            self.pump_clients();
        }
    }
}

fn message(len: usize, salt: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(7).wrapping_add(salt)).collect()
}

#[test]
fn alice_and_bob_exchange_messages_of_all_sizes_with_cover_traffic() {
    // alice on gateway 0, bob on gateway 1; today's default rates.
    let mut sim = Sim::new(&[0, 1], 2, ClientConfig::default());
    sim.connect_all();
    sim.run_until(Duration::from_secs(5), |s| s.clients.iter().all(|c| c.is_connected()));
    assert!(sim.clients.iter().all(|c| c.is_connected()));

    let alice = sim.clients[0].address();
    let bob = sim.clients[1].address();
    let sizes = [0usize, 1, 1552, 1553, 1554, 5000, 100_000, 1 << 20];
    let mut to_bob = Vec::new();
    let mut to_alice = Vec::new();
    for (k, &len) in sizes.iter().enumerate() {
        let m = message(len, k as u8);
        sim.clients[0].send(bob, m.clone(), sim.now).unwrap();
        to_bob.push(m);
        let m = message(len / 3, 100 + k as u8);
        sim.clients[0].send(alice, m.clone(), sim.now).unwrap();
        to_alice.push(m);
    }
    let reply = b"winston, so lovely to hear from you!".to_vec();
    sim.clients[1].send(alice, reply.clone(), sim.now).unwrap();
    to_alice.push(reply);
    sim.pump_clients();

    let (na, nb) = (to_alice.len(), to_bob.len());
    sim.run_until(Duration::from_secs(600), |s| {
        s.received[0].len() >= na && s.received[1].len() >= nb
    });
    // keep running a little: nothing more may arrive (no duplicates, no cover)
    let t = sim.now + Duration::from_secs(2);
    sim.run_until(t, |_| false);

    let sort = |mut v: Vec<Vec<u8>>| {
        v.sort();
        v
    };
    assert_eq!(sort(sim.received[1].clone()), sort(to_bob));
    assert_eq!(sort(sim.received[0].clone()), sort(to_alice));
    for c in &sim.clients {
        let s = c.stats();
        assert!(s.cover_packets_sent > 0 && s.cover_packets_received > 0, "{s:?}");
        assert_eq!(s.malformed_packets, 0);
        assert_eq!(c.queued_packets(), 0);
        assert_eq!(c.unacknowledged_packets(), 0, "every packet acknowledged");
        assert_eq!(s.retransmissions, 0, "a lossless network needs no retransmission");
    }
}


fn connected(client_gateways: &[usize], gateways: u8, config: ClientConfig) -> Sim {
    let mut sim = Sim::new(client_gateways, gateways, config);
    sim.connect_all();
    sim.run_until(Duration::from_secs(5), |s| s.clients.iter().all(|c| c.is_connected()));
    assert!(sim.clients.iter().all(|c| c.is_connected()));
    sim
}

#[test]
fn lost_packets_are_retransmitted_and_delivered_exactly_once() {
    let mut sim = connected(
        &[0, 1],
        2,
        ClientConfig {
            loop_cover_delay: Duration::ZERO,
            ..ClientConfig::default()
        },
    );
    sim.loss = 0.08;
    let bob = sim.clients[1].address();
    let messages: Vec<Vec<u8>> = (0..30).map(|i| message(100 + i * 700, i as u8)).collect();
    for m in &messages {
        sim.clients[0].send(bob, m.clone(), sim.now).unwrap();
    }
    sim.pump_clients();
    sim.run_until(Duration::from_secs(600), |s| {
        s.received[1].len() >= 30 && s.clients[0].unacknowledged_packets() == 0 && s.clients[0].queued_packets() == 0
    });
    let t = sim.now + Duration::from_secs(10);
    sim.run_until(t, |_| false);
    assert!(sim.lost_packets > 0);
    assert!(sim.clients[0].stats().retransmissions > 0);
    let mut got = sim.received[1].clone();
    got.sort();
    let mut want = messages;
    want.sort();
    assert_eq!(got, want, "each message exactly once");
    assert!(sim.failed[0].is_empty());
}

#[test]
fn a_crashed_mixnode_is_routed_around() {
    let mut sim = connected(&[0, 0], 1, unthrottled());
    let layer2 = sim.network.layer(2);
    sim.dead.push(layer2[0]); // one of the two layer-2 nodes
    let bob = sim.clients[1].address();
    let messages: Vec<Vec<u8>> = (0..50).map(|i| message(3000, i as u8)).collect();
    for m in &messages {
        sim.clients[0].send(bob, m.clone(), sim.now).unwrap();
    }
    sim.pump_clients();
    // Until the directory expires the node (about 10 s) and the client
    // refreshes, retransmissions on fresh random routes carry the traffic;
    // afterwards routes avoid it.
    let crash = sim.now;
    sim.run_until(crash + Duration::from_secs(15), |s| s.received[1].len() >= 50);
    let before_refresh = sim.received[1].len();
    sim.forget_node(layer2[0]);
    sim.run_until(Duration::from_secs(600), |s| s.received[1].len() >= 50);
    assert_eq!(
        sim.received[1].len(),
        50,
        "{:?}, failed {:?}",
        sim.clients[0].stats(),
        sim.failed[0]
    );
    assert!(
        before_refresh > 25,
        "most messages arrive before the refresh: {before_refresh}"
    );
    assert!(sim.clients[0].stats().retransmissions > 0);
    let mut got = sim.received[1].clone();
    got.sort();
    let mut want = messages;
    want.sort();
    assert_eq!(got, want, "each exactly once");
}

#[test]
fn an_undeliverable_message_fails_with_its_id() {
    let mut config = unthrottled();
    config.max_retransmissions = 3;
    let mut sim = connected(&[0, 0], 1, config);
    let layer2 = sim.network.layer(2);
    sim.dead.extend(layer2); // all of layer 2
    let bob = sim.clients[1].address();
    let id = sim.clients[0].send(bob, b"into the void".to_vec(), sim.now).unwrap();
    sim.pump_clients();
    sim.run_until(Duration::from_secs(600), |s| !s.failed[0].is_empty());
    assert_eq!(sim.failed[0], vec![id]);
    assert_eq!(sim.clients[0].stats().retransmissions, 3);
    assert_eq!(sim.clients[0].unacknowledged_packets(), 0);
    assert!(sim.received[1].is_empty());
}

#[test]
fn unthrottled_client_sends_as_fast_as_it_can_and_nothing_else() {
    let mut sim = Sim::new(&[0], 1, unthrottled());
    sim.connect_all();
    sim.run_until(Duration::from_secs(1), |s| s.clients[0].is_connected());
    let me = sim.clients[0].address();
    let m = message(300_000, 3);
    sim.clients[0].send(me, m.clone(), sim.now).unwrap();
    sim.pump_clients();
    sim.run_until(Duration::from_secs(60), |s| !s.received[0].is_empty());
    assert_eq!(sim.received[0], vec![m]);
    let s = sim.clients[0].stats();
    assert_eq!(s.cover_packets_sent, 0);
    // all fragments, no more: 300_000 bytes at 1553 per packet
    assert_eq!(s.real_packets_sent, 300_000u64.div_ceil(1553));
    // with no delays and 1 ms links, 4 hops + 2 websocket legs is 6 ms
    assert!(sim.now < Duration::from_millis(100), "took {:?}", sim.now);
}

#[test]
fn sphinx_packet_unwraps_hop_by_hop_to_the_same_bytes() {
    let mut rng = StdRng::from_seed([8; 32]);
    let node_keys: Vec<StaticSecret> = (0..4).map(|_| StaticSecret::random_from_rng(&mut rng)).collect();
    let route: Vec<sphinx_packet::route::Node> = node_keys
        .iter()
        .enumerate()
        .map(|(i, k)| sphinx_packet::route::Node::new(encode_node_address(addr(5000 + i as u16)), PublicKey::from(k)))
        .collect();
    let recipient_keys = ClientKeys::generate(&mut rng);
    let recipient = Recipient::new(*recipient_keys.public().as_bytes(), [0; 32]);
    let size = PacketSize::Regular;
    let body = message(1500, 9);
    let sealed = payload::seal(&mut rng, recipient_keys.public(), PayloadKind::Fragment, &body, size).unwrap();
    let (bytes, _) =
        build_sphinx_packet(&mut rng, &route, &recipient, &sealed, Duration::from_millis(15), size).unwrap();
    assert_eq!(bytes.len(), 2413);

    let mut packet = SphinxPacket::from_bytes(&bytes).unwrap();
    for (hop, key) in node_keys.iter().enumerate() {
        match packet.process(key).unwrap().data {
            ProcessedPacketData::ForwardHop {
                next_hop_packet,
                next_hop_address,
                ..
            } => {
                assert!(hop < 3, "hop {hop} should be final");
                assert_eq!(decode_node_address(&next_hop_address).unwrap(), addr(5001 + hop as u16));
                assert_eq!(next_hop_packet.to_bytes().len(), 2413);
                packet = next_hop_packet;
            }
            ProcessedPacketData::FinalHop {
                destination, payload, ..
            } => {
                assert_eq!(hop, 3);
                assert_eq!(destination.as_bytes(), recipient.client_key);
                let plaintext = payload.recover_plaintext().unwrap();
                assert_eq!(plaintext, sealed);
                assert_eq!(
                    payload::open(recipient_keys.secret(), &plaintext).unwrap(),
                    (PayloadKind::Fragment, body)
                );
                return;
            }
        }
    }
    panic!("packet never reached its final hop");
}

#[test]
fn anonymous_message_and_long_reply_through_surbs_with_top_up() {
    let mut sim = connected(
        &[0, 1],
        2,
        ClientConfig {
            loop_cover_delay: Duration::ZERO,
            ..ClientConfig::default()
        },
    );
    let bob = sim.clients[1].address();
    let alice = sim.clients[0].address();
    sim.clients[0]
        .send_anonymous(bob, b"who am I?".to_vec(), 3, sim.now)
        .unwrap();
    sim.pump_clients();
    sim.run_until(Duration::from_secs(60), |s| !s.anonymous[1].is_empty());
    let (message, tag) = sim.anonymous[1][0].clone();
    assert_eq!(message, b"who am I?");
    // bob holds a tag, not alice's address
    assert!(sim.received[1].is_empty());
    assert_ne!(&tag[..], &alice.to_bytes()[..16]);

    // 20 kB needs 10 reply packets; bob holds 3 SURBs: 2 carry fragments,
    // the last asks alice for more, the rest of the reply waits for them.
    let long_reply = message_of(20_000);
    sim.clients[1].reply(tag, long_reply.clone(), sim.now).unwrap();
    sim.pump_clients();
    sim.run_until(Duration::from_secs(120), |s| !s.received[0].is_empty());
    assert_eq!(
        sim.received[0],
        vec![long_reply],
        "alice gets the reply stripped, exactly once"
    );

    // unknown tags are a clear error
    let e = sim.clients[1].reply([9; 16], b"x".to_vec(), sim.now).unwrap_err();
    assert!(e.to_string().contains("unknown sender tag"), "{e}");
}

#[test]
fn surbs_and_reply_keys_survive_a_restart() {
    let mut sim = connected(&[0, 1], 2, unthrottled());
    let bob = sim.clients[1].address();
    sim.clients[0]
        .send_anonymous(bob, b"hello".to_vec(), 3, sim.now)
        .unwrap();
    sim.pump_clients();
    sim.run_until(Duration::from_secs(60), |s| !s.anonymous[1].is_empty());
    let tag = sim.anonymous[1][0].1;

    // Both restart from what they persisted.
    let saved_alice = sim.clients[0].export_reply_store();
    let saved_bob = sim.clients[1].export_reply_store();
    for (i, saved) in [(0, saved_alice), (1, saved_bob)] {
        sim.clients[i].handle_gateway_disconnected(sim.now);
        sim.clients[i].import_reply_store(&[1, 2, 3]).unwrap_err();
        sim.clients[i].import_reply_store(&saved).unwrap();
        sim.gateways[sim.client_gateway[i]].disconnect(i);
        sim.connect(i);
    }
    sim.pump_clients();
    sim.run_until(sim.now + Duration::from_secs(5), |s| {
        s.clients.iter().all(|c| c.is_connected())
    });

    // 3 SURBs: the first reply uses one; the second uses one and spends
    // the last asking alice for more; a third finds none left.
    sim.clients[1].reply(tag, b"still here".to_vec(), sim.now).unwrap();
    sim.clients[1].reply(tag, b"last one".to_vec(), sim.now).unwrap();
    let e = sim.clients[1]
        .reply(tag, b"one too many".to_vec(), sim.now)
        .unwrap_err();
    assert!(e.to_string().contains("no reply SURBs left"), "{e}");
    sim.pump_clients();
    sim.run_until(sim.now + Duration::from_secs(60), |s| s.received[0].len() >= 2);
    let mut got = sim.received[0].clone();
    got.sort();
    assert_eq!(got, vec![b"last one".to_vec(), b"still here".to_vec()]);

    // alice answered the request: bob can reply again
    sim.run_until(sim.now + Duration::from_secs(60), |s| {
        s.clients[1].reply_surbs_left(&tag) > 0
    });
    sim.clients[1]
        .reply(tag, b"after the top-up".to_vec(), sim.now)
        .unwrap();
    sim.pump_clients();
    sim.run_until(sim.now + Duration::from_secs(60), |s| s.received[0].len() >= 3);
    assert_eq!(sim.received[0].last().unwrap(), b"after the top-up");
}

fn message_of(len: usize) -> Vec<u8> {
    message(len, 77)
}

/// Exactly once, whatever the order: sorted copies are equal.
fn assert_same_messages(got: &[Vec<u8>], want: &[Vec<u8>]) {
    let mut got = got.to_vec();
    got.sort();
    let mut want = want.to_vec();
    want.sort();
    assert_eq!(got.len(), want.len(), "message count");
    assert!(got == want, "the same messages, each exactly once");
}

#[test]
fn a_connection_cut_again_and_again_while_receiving_loses_and_repeats_nothing() {
    // mixing delays spread the arrivals over the cuts
    let mut sim = connected(
        &[0, 1],
        2,
        ClientConfig {
            average_hop_delay: Duration::from_millis(20),
            ..unthrottled()
        },
    );
    let bob = sim.clients[1].address();
    // short messages and a few long ones (whose fragments span cuts)
    let messages: Vec<Vec<u8>> = (0..1000)
        .map(|i| {
            if i % 100 == 7 {
                message(20_000, i as u8)
            } else {
                message(40, i as u8)
            }
        })
        .collect();
    for m in &messages {
        sim.clients[0].send(bob, m.clone(), sim.now).unwrap();
    }
    sim.pump_clients();
    let mut cuts = 0;
    while sim.received[1].len() < messages.len() && sim.now < Duration::from_secs(600) {
        let t = sim.now + Duration::from_millis(5);
        sim.run_until(t, |_| false);
        if cuts < 40 && sim.received[1].len() < messages.len() {
            sim.cut_connection(1);
            cuts += 1;
        }
    }
    let t = sim.now + Duration::from_secs(5);
    sim.run_until(t, |s| s.stored(1) == 0);
    assert!(cuts >= 20, "the transfer lasted through many cuts: {cuts}");
    assert_same_messages(&sim.received[1], &messages);
    assert_eq!(
        sim.stored(1),
        0,
        "bob acknowledged everything, the gateway kept nothing"
    );
    let s = sim.clients[1].stats();
    assert!(
        s.duplicate_fragments > 0,
        "some deliveries came again after a cut: {s:?}"
    );
    assert!(sim.failed[0].is_empty());
}

#[test]
fn a_client_that_crashes_before_its_acks_go_out_gets_each_message_once_after_restart() {
    let config = ClientConfig {
        average_hop_delay: Duration::from_millis(20),
        ..unthrottled()
    };
    let mut sim = Sim::new(&[0, 1], 2, config.clone());
    // bob's keys, to restart him with
    let bob_keys = sim.keys[1].clone();
    assert_eq!(bob_keys.public().as_bytes(), &sim.clients[1].address().client_key);
    sim.connect_all();
    sim.run_until(Duration::from_secs(5), |s| s.clients.iter().all(|c| c.is_connected()));
    let bob = sim.clients[1].address();
    let messages: Vec<Vec<u8>> = (0..50).map(|i| message(3000, i as u8)).collect();
    for m in &messages {
        sim.clients[0].send(bob, m.clone(), sim.now).unwrap();
    }
    sim.pump_clients();
    // Run until bob has half of them, then let him die before he acks
    // more: everything he took since the last pump has no ack yet.
    sim.run_until(Duration::from_secs(60), |s| s.received[1].len() >= 25);
    let handed_over = sim.received_sets[1].clone();
    let before = sim.received[1].len();
    assert!((25..50).contains(&before));
    assert!(sim.stored(1) > 0);
    sim.crash_client(1, bob_keys, config, &handed_over);
    sim.run_until(Duration::from_secs(120), |s| {
        s.received[1].len() >= 50 && s.stored(1) == 0
    });
    assert_same_messages(&sim.received[1], &messages);
    assert_eq!(sim.stored(1), 0);
    assert!(
        sim.clients[1].stats().duplicate_fragments > 0,
        "what he had came again and was recognised"
    );
}

#[test]
fn reply_packets_delivered_again_after_a_cut_are_duplicates_not_garbage() {
    let config = ClientConfig {
        average_hop_delay: Duration::from_millis(20),
        ..unthrottled()
    };
    let mut sim = connected(&[0, 1], 2, config);
    let bob = sim.clients[1].address();
    sim.clients[0]
        .send_anonymous(bob, b"answer at length".to_vec(), 40, sim.now)
        .unwrap();
    sim.pump_clients();
    sim.run_until(Duration::from_secs(60), |s| !s.anonymous[1].is_empty());
    let tag = sim.anonymous[1][0].1;
    let long_reply = message_of(50_000);
    sim.clients[1].reply(tag, long_reply.clone(), sim.now).unwrap();
    sim.pump_clients();
    // cut alice's connection while the reply's packets come in
    let mut cuts = 0;
    while sim.received[0].is_empty() && sim.now < Duration::from_secs(120) {
        let t = sim.now + Duration::from_millis(4);
        sim.run_until(t, |s| !s.received[0].is_empty());
        if sim.received[0].is_empty() {
            sim.cut_connection(0);
            cuts += 1;
        }
    }
    let t = sim.now + Duration::from_secs(5);
    sim.run_until(t, |s| s.stored(0) == 0);
    assert!(cuts >= 3, "{cuts}");
    assert_eq!(sim.received[0], vec![long_reply], "the reply, once");
    let s = sim.clients[0].stats();
    assert!(s.duplicate_fragments > 0, "some reply packets came again: {s:?}");
    assert_eq!(
        s.malformed_packets, 0,
        "a reply packet delivered again still opens: {s:?}"
    );
    assert_eq!(sim.stored(0), 0);
}

#[test]
fn a_short_message_sent_after_a_long_one_overtakes_it() {
    // Today's rates: the Poisson stream (20 ms), mixing delays, cover.
    let mut sim = connected(&[0, 1], 2, ClientConfig::default());
    let bob = sim.clients[1].address();
    // 600 packets, three fragment sets: ~12 s of the stream on its own.
    let capacity = sim.clients[0].fragment_capacity();
    let long = message(600 * capacity - 100, 1);
    let short = b"sent after 600 packets, not held behind them".to_vec();
    let long_id = sim.clients[0].send(bob, long.clone(), sim.now).unwrap();
    let short_id = sim.clients[0].send(bob, short.clone(), sim.now).unwrap();
    assert_ne!(long_id, short_id);
    assert_eq!(sim.clients[0].queued_packets(), 601);
    sim.pump_clients();

    sim.run_until(Duration::from_secs(600), |s| !s.received[1].is_empty());
    assert_eq!(
        sim.received[1],
        vec![short.clone()],
        "the short message, whole, and alone"
    );
    // Most of the long message had not even left: the short one took the
    // second turn (one packet of each message in turn), not the 601st.
    let left = sim.clients[0].queued_packets();
    assert!(
        left > 500,
        "only {left} of the long message's 600 packets were still queued"
    );

    sim.run_until(Duration::from_secs(600), |s| s.received[1].len() >= 2);
    assert_eq!(sim.received[1], vec![short, long], "then the long one, intact");
    assert!(sim.failed[0].is_empty());
    assert_eq!(sim.clients[0].queued_packets(), 0);
}

#[test]
fn messages_queued_together_take_turns_packet_by_packet() {
    // Unthrottled: the engine hands out packets in queue order as fast as it
    // can build them, so arrival order shows the queue's order.
    let mut sim = connected(&[0, 1], 2, unthrottled());
    let bob = sim.clients[1].address();
    let capacity = sim.clients[0].fragment_capacity();
    // Two long messages (300 packets each, two sets) and three short ones
    // after them, as several applications of one client would send them.
    let a = message(300 * capacity, 2);
    let b = message(300 * capacity, 3);
    let shorts: Vec<Vec<u8>> = (0..3).map(|i| message(3 * capacity, 10 + i)).collect();
    sim.clients[0].send(bob, a.clone(), sim.now).unwrap();
    sim.clients[0].send(bob, b.clone(), sim.now).unwrap();
    for m in &shorts {
        sim.clients[0].send(bob, m.clone(), sim.now).unwrap();
    }
    sim.pump_clients();
    sim.run_until(Duration::from_secs(600), |s| s.received[1].len() >= 4);
    // The long ones shared the stream: when the first is whole, bob has
    // had nearly all 609 packets, not the ~309 of one after the other.
    let packets_at_first_long = sim.clients[1].stats().packets_received;
    assert!(
        packets_at_first_long > 550,
        "the first long message was whole after {packets_at_first_long} packets"
    );
    sim.run_until(Duration::from_secs(600), |s| s.received[1].len() >= 5);
    // The short ones (3 packets each) are done within the first rounds;
    // the long ones, sharing the rest of the stream, last to the end.
    let mut first_three = sim.received[1][..3].to_vec();
    first_three.sort();
    let mut want = shorts.clone();
    want.sort();
    assert_eq!(first_three, want, "the short messages first");
    let mut last_two = sim.received[1][3..].to_vec();
    last_two.sort();
    let mut want = vec![a, b];
    want.sort();
    assert_eq!(last_two, want, "then both long messages, intact");
    assert!(sim.failed[0].is_empty());
}
