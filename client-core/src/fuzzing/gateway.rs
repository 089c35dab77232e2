//! A gateway in memory that speaks the real protocol: the authenticated
//! handshake, sealed frames, stored deliveries until the client
//! acknowledges them, SURB-ACKs sent on, refusals of departed first hops.
//! And the ways a real one misbehaves, on demand ([`Mood`]).
//!
//! Sans-IO like the engine: the harness hands it connections, client frames
//! and packets, and carries out what it wants sent
//! ([`FakeGateway::poll_to_client`], [`FakeGateway::poll_to_mixnet`]).
//! Connections are named by the harness (`C`: a client index, a
//! connection id...); a client is known by its key once authenticated.

use super::network::NodeKeys;
use crate::client::Client;
use ed25519_dalek::SigningKey;
use nym_wire::gateway::{ClientRequest, GatewayHandshake, GatewayResponse, Session};
use nym_wire::mix_frame;
use nym_wire::surb_ack::gateway_final_hop;
use nym_wire::topology::decode_node_address;
use rand::rngs::StdRng;
use rand::SeedableRng;
use sphinx_packet::route::NodeAddressBytes;
use sphinx_packet::{ProcessedPacketData, SphinxPacket};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::net::SocketAddr;
use std::time::Duration;

/// How the gateway treats connections from now on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mood {
    /// As a working gateway.
    Serve,
    /// Accepts the socket and never answers.
    Silent,
    /// Answers the handshake, then refuses the authentication.
    Refuse,
    /// Nothing listens: connections are refused.
    Down,
}

/// Where one connection's handshake is.
enum Connection {
    /// Open, nothing heard yet.
    Fresh,
    /// Our answer to the client's hello went out.
    Pending(GatewayHandshake),
    /// Authenticated as `client` (its x25519 key).
    Open { session: Session, client: [u8; 32] },
    /// Refused (mood [`Mood::Refuse`]): what else comes is ignored.
    Refused,
}

/// A gateway in memory; see the module doc.
pub struct FakeGateway<C> {
    identity: SigningKey,
    keys: NodeKeys,
    /// The URL it listens on; connections to another are refused (a
    /// gateway that moved).
    pub url: String,
    /// How it treats connections and handshakes from now on.
    pub mood: Mood,
    /// First hops that left the network: packets to them are refused
    /// ([`GatewayResponse::Refused`]) instead of sent.
    pub departed: HashSet<SocketAddr>,
    /// Authentications answered (served or refused).
    pub handshakes: usize,
    /// Acks that named no delivery outstanding on their connection.
    pub bad_acks: u64,
    rng: StdRng,
    connections: HashMap<C, Connection>,
    /// Each client's authenticated connection: where its deliveries go.
    open_by_client: HashMap<[u8; 32], C>,
    /// As the real gateway: every final-hop payload is stored first (store
    /// id -> payload, per client) and deleted when the client acks it.
    inbox: HashMap<[u8; 32], BTreeMap<u64, Vec<u8>>>,
    next_store: u64,
    /// Delivery id -> (its connection, its client, its store id): sent and
    /// not yet acknowledged.
    outstanding: HashMap<u64, (C, [u8; 32], u64)>,
    next_delivery: u64,
    to_clients: VecDeque<(C, Vec<u8>)>,
    to_mixnet: VecDeque<(SocketAddr, Vec<u8>)>,
}

impl<C: Copy + Eq + Hash> FakeGateway<C> {
    /// A serving gateway with this identity and Sphinx keys, listening on
    /// `url`; its handshakes draw from `rng_seed`.
    pub fn new(identity: SigningKey, keys: NodeKeys, url: String, rng_seed: [u8; 32]) -> Self {
        FakeGateway {
            identity,
            keys,
            url,
            mood: Mood::Serve,
            departed: HashSet::new(),
            handshakes: 0,
            bad_acks: 0,
            rng: StdRng::from_seed(rng_seed),
            connections: HashMap::new(),
            open_by_client: HashMap::new(),
            inbox: HashMap::new(),
            next_store: 0,
            outstanding: HashMap::new(),
            next_delivery: 0,
            to_clients: VecDeque::new(),
            to_mixnet: VecDeque::new(),
        }
    }

    /// Its identity key, as addresses and `Client::new` name it.
    pub fn identity_key(&self) -> [u8; 32] {
        self.identity.verifying_key().to_bytes()
    }

    /// A client opens connection `conn` to `url`. False when nothing
    /// listens there (the gateway is [`Mood::Down`], or at another URL):
    /// the harness reports the connection refused.
    pub fn connect(&mut self, conn: C, url: &str) -> bool {
        if self.mood == Mood::Down || url != self.url {
            return false;
        }
        self.disconnect(conn);
        self.connections.insert(conn, Connection::Fresh);
        true
    }

    /// Connection `conn` closed (either side, or cut): deliveries sent on it
    /// and not acknowledged stay stored and go out again on the client's
    /// next connection.
    pub fn disconnect(&mut self, conn: C) {
        if let Some(Connection::Open { client, .. }) = self.connections.remove(&conn) {
            if self.open_by_client.get(&client) == Some(&conn) {
                self.open_by_client.remove(&client);
            }
        }
        self.outstanding.retain(|_, (c, _, _)| *c != conn);
    }

    /// A frame from the client on `conn`: its handshake, then sealed
    /// requests (forward a packet, acknowledge deliveries). An error is a
    /// frame a real gateway would close the connection for.
    pub fn handle_client_frame(&mut self, conn: C, frame: &[u8]) -> Result<(), String> {
        let Some(state) = self.connections.remove(&conn) else {
            return Err("a frame on no open connection".into());
        };
        let next = match state {
            Connection::Fresh if self.mood == Mood::Silent => Connection::Fresh,
            Connection::Fresh => {
                let (pending, reply) =
                    GatewayHandshake::respond(&mut self.rng, &self.identity, frame).map_err(|e| e.to_string())?;
                self.to_clients.push_back((conn, reply));
                Connection::Pending(pending)
            }
            Connection::Pending(pending) => {
                let (mut session, client) = pending.verify(frame).map_err(|e| e.to_string())?;
                self.handshakes += 1;
                if self.mood == Mood::Refuse {
                    let no = session.seal(
                        &GatewayResponse::Error {
                            message: "not registered".into(),
                        }
                        .encode(),
                    );
                    self.to_clients.push_back((conn, no));
                    Connection::Refused
                } else {
                    self.authenticated(conn, session, client)
                }
            }
            Connection::Open { mut session, client } => {
                let request = session.open(frame).map_err(|e| e.to_string())?;
                match ClientRequest::decode(&request).map_err(|e| e.to_string())? {
                    ClientRequest::Forward { next_hop, frame } => self.forward(conn, &mut session, next_hop, frame)?,
                    ClientRequest::Ack { ids } => self.acknowledged(conn, &ids),
                    ClientRequest::Authenticate => return Err("authenticated twice".into()),
                }
                Connection::Open { session, client }
            }
            Connection::Refused => Connection::Refused,
        };
        self.connections.insert(conn, next);
        Ok(())
    }

    /// The client proved its key: it hears how much is stored, then gets
    /// all of it (again, if an older connection had it unacknowledged).
    fn authenticated(&mut self, conn: C, mut session: Session, client: [u8; 32]) -> Connection {
        let stored = self.stored(&client) as u32;
        self.to_clients
            .push_back((conn, session.seal(&GatewayResponse::Authenticated { stored }.encode())));
        if let Some(old) = self.open_by_client.insert(client, conn) {
            self.outstanding.retain(|_, (c, _, _)| *c != old);
        }
        let ids: Vec<u64> = self
            .inbox
            .get(&client)
            .map(|m| m.keys().copied().collect())
            .unwrap_or_default();
        for store in ids {
            self.push(conn, &mut session, client, store);
        }
        Connection::Open { session, client }
    }

    fn forward(&mut self, conn: C, session: &mut Session, next_hop: [u8; 32], frame: Vec<u8>) -> Result<(), String> {
        let to = decode_node_address(&NodeAddressBytes::from_bytes(next_hop)).map_err(|e| e.to_string())?;
        if self.departed.contains(&to) {
            let packet = mix_frame::packet_tag(mix_frame::decode(&frame).map_err(|e| e.to_string())?.2);
            self.to_clients.push_back((
                conn,
                session.seal(&GatewayResponse::Refused { next_hop, packet }.encode()),
            ));
        } else {
            self.to_mixnet.push_back((to, frame));
        }
        Ok(())
    }

    fn acknowledged(&mut self, conn: C, ids: &[u64]) {
        for id in ids {
            match self.outstanding.get(id) {
                Some(&(c, client, store)) if c == conn => {
                    self.outstanding.remove(id);
                    if let Some(inbox) = self.inbox.get_mut(&client) {
                        inbox.remove(&store);
                    }
                }
                _ => self.bad_acks += 1,
            }
        }
    }

    /// Sends stored payload `store` of `client` on `conn`.
    fn push(&mut self, conn: C, session: &mut Session, client: [u8; 32], store: u64) {
        let Some(payload) = self.inbox.get(&client).and_then(|m| m.get(&store)).cloned() else {
            return;
        };
        self.next_delivery += 1;
        let id = self.next_delivery;
        self.outstanding.insert(id, (conn, client, store));
        self.to_clients
            .push_back((conn, session.seal(&GatewayResponse::Deliver { id, payload }.encode())));
    }

    /// A mix frame reached the gateway's mixnet listener (see
    /// [`super::Hop::Gateway`]): as the real gateway, the final hop's
    /// content is stored for its client (and pushed if it is connected), and
    /// its SURB-ACK goes on into the mixnet.
    pub fn handle_packet(&mut self, frame: &[u8]) -> Result<(), String> {
        let (_, epoch, packet) = mix_frame::decode(frame).map_err(|e| e.to_string())?;
        let packet = SphinxPacket::from_bytes(packet).map_err(|e| e.to_string())?;
        let ProcessedPacketData::FinalHop {
            destination,
            identifier,
            payload,
        } = packet
            .process(&self.keys.secret(epoch))
            .map_err(|e| e.to_string())?
            .data
        else {
            return Err("the gateway got a forward hop".into());
        };
        let (content, ack) = gateway_final_hop(identifier, payload, epoch).map_err(|e| e.to_string())?;
        let client = *destination.as_bytes_ref();
        self.next_store += 1;
        let store = self.next_store;
        self.inbox.entry(client).or_default().insert(store, content);
        if let Some(&conn) = self.open_by_client.get(&client) {
            if let Some(Connection::Open { mut session, client }) = self.connections.remove(&conn) {
                self.push(conn, &mut session, client, store);
                self.connections.insert(conn, Connection::Open { session, client });
            }
        }
        if let Some((to, frame)) = ack {
            self.to_mixnet
                .push_back((decode_node_address(&to).map_err(|e| e.to_string())?, frame));
        }
        Ok(())
    }

    /// The next frame for a client, and its connection.
    pub fn poll_to_client(&mut self) -> Option<(C, Vec<u8>)> {
        self.to_clients.pop_front()
    }

    /// The next packet into the mixnet (a client's forward, a SURB-ACK),
    /// and the node it goes to.
    pub fn poll_to_mixnet(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.to_mixnet.pop_front()
    }

    /// Payloads stored for `client` (its x25519 key) and not yet acknowledged.
    pub fn stored(&self, client: &[u8; 32]) -> usize {
        self.inbox.get(client).map_or(0, BTreeMap::len)
    }

    /// Payloads stored for anyone and not yet acknowledged.
    pub fn stored_total(&self) -> usize {
        self.inbox.values().map(BTreeMap::len).sum()
    }

    /// Connects `client` on `conn` and runs the handshake at `now` until
    /// it is up (both sides in memory, no latency): for benchmarks and tests
    /// that start connected. Whatever else the gateway sends on `conn` on
    /// the way (stored deliveries) is handed to the client too.
    pub fn connect_client(&mut self, conn: C, client: &mut Client, now: Duration) -> Result<(), String> {
        let url = self.url.clone();
        if !self.connect(conn, &url) {
            return Err(format!("the gateway is {:?}", self.mood));
        }
        client.handle_gateway_connected(now);
        for _ in 0..4 {
            while let Some(frame) = client.poll_transmit(now) {
                self.handle_client_frame(conn, &frame)?;
            }
            while let Some((_, frame)) = self
                .to_clients
                .iter()
                .position(|(c, _)| *c == conn)
                .and_then(|at| self.to_clients.remove(at))
            {
                client.handle_gateway_frame(&frame, now);
            }
            if client.is_connected() {
                return Ok(());
            }
        }
        Err("the handshake did not complete".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ClientEvent;
    use crate::fuzzing::{unthrottled, Hop, TestNetwork};
    use nym_wire::keys::ClientKeys;

    const NOW: Duration = Duration::ZERO;


    fn client(network: &TestNetwork, seed: u8) -> Client {
        let keys = ClientKeys::generate(&mut StdRng::from_seed([seed; 32]));
        let mut c = Client::new(keys, network.gateway_identity(0), unthrottled(), [seed; 32]);
        c.handle_topology(network.topology(0).unwrap());
        c.handle_clock(NOW, 0);
        c
    }

    fn events(c: &mut Client) -> Vec<ClientEvent> {
        std::iter::from_fn(|| c.poll_event()).collect()
    }

    /// Carries every packet the gateway sends into the mixnet through the
    /// test network's nodes and back into the gateway, at once.
    fn run_mixnet(network: &TestNetwork, gateway: &mut FakeGateway<u8>) {
        while let Some((mut at, mut frame)) = gateway.poll_to_mixnet() {
            loop {
                match network.hop(at, &frame, 0).unwrap() {
                    Hop::Forward { to, frame: next, .. } => (at, frame) = (to, next),
                    Hop::Gateway(_) => break gateway.handle_packet(&frame).unwrap(),
                    Hop::RetiredKey => panic!("one key epoch"),
                }
            }
        }
    }

    #[test]
    fn what_is_stored_and_unacknowledged_comes_again_on_the_next_connection_and_acked_goes() {
        let network = TestNetwork::new([2, 1, 1], 1);
        let mut gateway = network.fake_gateway(0, [1; 32]);
        let mut alice = client(&network, 7);
        gateway.connect_client(1, &mut alice, NOW).unwrap();
        let me = alice.address();
        alice.send(me, b"to myself".to_vec(), NOW).unwrap();
        while let Some(frame) = alice.poll_transmit(NOW) {
            gateway.handle_client_frame(1, &frame).unwrap();
        }
        run_mixnet(&network, &mut gateway);
        // the message and the SURB-ACK of its packet
        assert_eq!(gateway.stored(&me.client_key), 2);

        // The connection drops before the client hears of them: both come
        // again on the next one, and its acks empty the store.
        gateway.disconnect(1);
        while gateway.poll_to_client().is_some() {}
        alice.handle_gateway_disconnected(NOW);
        gateway.connect_client(2, &mut alice, NOW).unwrap();
        let received: Vec<_> = events(&mut alice)
            .into_iter()
            .filter_map(|e| match e {
                ClientEvent::Received(m) => Some(m.message),
                _ => None,
            })
            .collect();
        assert_eq!(received, vec![b"to myself".to_vec()]);
        while let Some(frame) = alice.poll_transmit(NOW) {
            gateway.handle_client_frame(2, &frame).unwrap();
        }
        assert_eq!(
            (gateway.stored_total(), gateway.bad_acks, gateway.handshakes),
            (0, 0, 2)
        );
        assert_eq!(alice.unacknowledged_packets(), 0, "its ack came home");
    }

    #[test]
    fn a_departed_first_hop_is_refused_by_tag_and_the_client_reroutes() {
        let network = TestNetwork::new([2, 1, 1], 1);
        let mut gateway = network.fake_gateway(0, [1; 32]);
        gateway.departed.insert(network.layer(1)[0]);
        let mut alice = client(&network, 7);
        gateway.connect_client(1, &mut alice, NOW).unwrap();
        let me = alice.address();
        for _ in 0..8 {
            alice.send(me, b"x".to_vec(), NOW).unwrap();
        }
        // Until every packet went to the live first hop.
        for _ in 0..20 {
            while let Some(frame) = alice.poll_transmit(NOW) {
                gateway.handle_client_frame(1, &frame).unwrap();
            }
            while let Some((_, frame)) = gateway.poll_to_client() {
                alice.handle_gateway_frame(&frame, NOW);
            }
        }
        let refused = events(&mut alice)
            .iter()
            .filter(|e| matches!(e, ClientEvent::RouteRefused { .. }))
            .count();
        assert!(refused > 0, "some of 8 random routes started at the departed node");
        assert_eq!(alice.stats().rerouted_packets, refused as u64);
        let forwarded: Vec<SocketAddr> = std::iter::from_fn(|| gateway.poll_to_mixnet())
            .map(|(to, _)| to)
            .collect();
        assert_eq!(forwarded, vec![network.layer(1)[1]; 8]);
    }

    #[test]
    fn moods_down_silent_and_refuse_behave_as_their_names_say() {
        let network = TestNetwork::new([1, 1, 1], 1);
        let mut gateway: FakeGateway<u8> = network.fake_gateway(0, [1; 32]);
        let url = gateway.url.clone();
        assert!(!gateway.connect(1, "ws://127.0.0.1:9"), "another URL: nothing listens");
        gateway.mood = Mood::Down;
        assert!(!gateway.connect(1, &url));

        gateway.mood = Mood::Silent;
        let mut alice = client(&network, 7);
        assert!(gateway.connect(1, &url));
        alice.handle_gateway_connected(NOW);
        let hello = alice.poll_transmit(NOW).unwrap();
        gateway.handle_client_frame(1, &hello).unwrap();
        assert!(gateway.poll_to_client().is_none(), "a silent gateway never answers");

        gateway.mood = Mood::Refuse;
        assert_eq!(
            gateway.connect_client(2, &mut alice, NOW),
            Err("the handshake did not complete".into())
        );
        assert_eq!(gateway.handshakes, 1);
        let failed = events(&mut alice);
        assert!(
            matches!(&failed[..], [ClientEvent::HandshakeFailed(why)] if why.contains("not registered")),
            "{failed:?}"
        );
    }
}
