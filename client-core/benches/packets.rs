//! Per-packet cost of turning a 1 MiB message into Sphinx packets with the
//! whole client engine (fragment, seal end to end, build the SURB-ACK, pick a
//! route, build the Sphinx packet, frame, seal for the gateway), beside
//! sphinx-packet's raw build for the same route and payload size (alone, and
//! with the ack packet every fragment carries), in the same run.
//!
//! The same through the driver both shims run shows what the driver costs.
//!
//! `cargo bench -p nym-client-core --bench packets`
//! (`-- --test`: each benchmark once, unmeasured, as scripts/test.sh runs it)

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ed25519_dalek::SigningKey;
use nym_client_core::address::encode_key;
use nym_client_core::keys::ClientKeys;
use nym_client_core::topology::{EpochKeyJson, GatewayJson, MixNodeJson, Topology, TopologyJson};
use nym_client_core::wire::gateway::{GatewayHandshake, GatewayResponse};
use nym_client_core::wire::mix_frame::PacketSize;
use nym_client_core::app_api::{AppRequest, AppResponse};
use nym_client_core::driver::{Driver, DriverConfig, Output, Restored};
use nym_client_core::{Client, ClientConfig, VerifiedTopology};
use rand::rngs::StdRng;
use rand::SeedableRng;
use sphinx_packet::header::delays::Delay;
use sphinx_packet::route::{Destination, DestinationAddressBytes};
use sphinx_packet::SphinxPacketBuilder;
use std::time::Duration;
use x25519_dalek::{PublicKey, StaticSecret};

const MESSAGE: usize = 1 << 20;

/// One key epoch for the whole run (clients' clocks read Unix 0).
fn epoch_key(rng: &mut StdRng) -> (String, Vec<EpochKeyJson>) {
    let key = PublicKey::from(&StaticSecret::random_from_rng(rng));
    (encode_key(key.as_bytes()), vec![EpochKeyJson::new(0, &key)])
}

fn network(rng: &mut StdRng, gateway: &SigningKey) -> Topology {
    let mut json = TopologyJson { epoch_length_secs: 1_000_000_000, ..TopologyJson::default() };
    for layer in 1..=3u8 {
        for i in 0..2u8 {
            let (pub_key, sphinx_keys) = epoch_key(rng);
            json.mix_nodes.push(MixNodeJson {
                host: format!("127.0.0.1:{}", 1000 + u16::from(layer * 10 + i)),
                pub_key,
                sphinx_keys,
                layer,
                version: nym_client_core::VERSION.into(),
                location: String::new(),
                last_seen: 0,
                ..Default::default()
            });
        }
    }
    let (sphinx_key, sphinx_keys) = epoch_key(rng);
    json.gateway_nodes.push(GatewayJson {
        client_listener: "ws://127.0.0.1:9000".into(),
        mixnet_listener: "127.0.0.1:1790".into(),
        identity_key: encode_key(gateway.verifying_key().as_bytes()),
        sphinx_key,
        sphinx_keys,
        version: nym_client_core::VERSION.into(),
        location: String::new(),
        last_seen: 0,
        ..Default::default()
    });
    Topology::from_json(&json, nym_client_core::VERSION).expect("valid topology")
}

/// A connected, unthrottled client (handshake done against an in-memory gateway).
///
/// No in-flight limit: nothing acknowledges packets here, so with the default
/// `max_unacknowledged` (256) `poll_transmit` would stop after 256 of the
/// message's packets. What is timed is building every packet of the message.
fn connected_client(rng: &mut StdRng, gateway: &SigningKey, topology: Topology) -> Client {
    let config = ClientConfig {
        average_packet_delay: Duration::ZERO,
        loop_cover_delay: Duration::ZERO,
        max_unacknowledged: usize::MAX,
        ..ClientConfig::default()
    };
    let mut client = Client::new(ClientKeys::generate(rng), gateway.verifying_key().to_bytes(), config, [1; 32]);
    client.handle_topology(topology);
    client.handle_clock(Duration::ZERO, 0);
    client.handle_gateway_connected(Duration::ZERO);
    let hello = client.poll_transmit(Duration::ZERO).expect("hello");
    let (pending, reply) = GatewayHandshake::respond(rng, gateway, &hello).expect("respond");
    client.handle_gateway_frame(&reply, Duration::ZERO);
    let auth = client.poll_transmit(Duration::ZERO).expect("authenticate");
    let (mut session, _) = pending.verify(&auth).expect("verify");
    client.handle_gateway_frame(&session.seal(&GatewayResponse::Authenticated { stored: 0 }.encode()), Duration::ZERO);
    assert!(client.is_connected());
    client
}

/// The same client inside the driver both shims run, connected through the
/// driver's own outputs.
fn connected_driver(rng: &mut StdRng, gateway: &SigningKey, topology: Topology) -> Driver {
    let config = DriverConfig {
        client: ClientConfig {
            average_packet_delay: Duration::ZERO,
            loop_cover_delay: Duration::ZERO,
            max_unacknowledged: usize::MAX,
            ..ClientConfig::default()
        },
        ..DriverConfig::default()
    };
    let identity = gateway.verifying_key().to_bytes();
    // Verification is not what this measures: the topology is taken as verified.
    let topology = VerifiedTopology { topology, directory_key: [0; 32], issued_at: 0, expires_at: u64::MAX, verified_at: 0 };
    let (mut driver, _) =
        Driver::new(ClientKeys::generate(rng), identity, topology, config, [2; 32], Restored::default()).expect("driver");
    driver.start(Duration::ZERO);
    let mut pending = None;
    while !driver.is_connected() {
        match driver.poll_output(Duration::ZERO).expect("an output until connected") {
            Output::Connect { conn, .. } => driver.handle_connected(conn, Duration::ZERO),
            Output::Transmit { conn, frame } => match pending.take() {
                None => {
                    let (p, reply) = GatewayHandshake::respond(rng, gateway, &frame).expect("respond");
                    pending = Some(p);
                    driver.handle_frame(conn, &reply, Duration::ZERO);
                }
                Some(p) => {
                    let (mut session, _) = p.verify(&frame).expect("verify");
                    let ok = session.seal(&GatewayResponse::Authenticated { stored: 0 }.encode());
                    driver.handle_frame(conn, &ok, Duration::ZERO);
                }
            },
            _ => {}
        }
    }
    while driver.poll_output(Duration::ZERO).is_some() {}
    driver
}

fn bench(c: &mut Criterion) {
    let mut rng = StdRng::from_seed([7; 32]);
    let gateway = SigningKey::from_bytes(&[3; 32]);
    let topology = network(&mut rng, &gateway);
    let mut client = connected_client(&mut rng, &gateway, topology.clone());
    let recipient = client.address();
    let packets = MESSAGE.div_ceil(client.fragment_capacity()) as u64;
    let message = vec![0xA5u8; MESSAGE];

    let mut group = c.benchmark_group("1MiB message to Sphinx packets");
    group.sample_size(10);
    group.throughput(Throughput::Elements(packets));

    group.bench_function("client engine (per packet)", |b| {
        b.iter(|| {
            client.send(recipient, message.clone(), Duration::ZERO).expect("send");
            let mut n = 0u64;
            while let Some(frame) = client.poll_transmit(Duration::ZERO) {
                n += u64::from(frame.len() > 2413);
            }
            assert_eq!(n, packets, "the engine built {n} of the message's {packets} packets");
        })
    });

    let mut driver = connected_driver(&mut rng, &gateway, topology.clone());
    let to = driver.address();
    group.bench_function("driver over the client engine, as the shims run it (per packet)", |b| {
        b.iter(|| {
            let send = AppRequest::Send { recipient: to, message: message.clone() };
            assert_eq!(driver.handle_request(send, Duration::ZERO), AppResponse::Send);
            let mut n = 0u64;
            while let Some(output) = driver.poll_output(Duration::ZERO) {
                if let Output::Transmit { frame, .. } = output {
                    n += u64::from(frame.len() > 2413);
                }
            }
            assert_eq!(n, packets, "the driver built {n} of the message's {packets} packets");
        })
    });

    let route = topology.random_route(&mut rng, &gateway.verifying_key().to_bytes(), 0).expect("route");
    let ack_route = topology.random_route(&mut rng, &gateway.verifying_key().to_bytes(), 0).expect("route");
    let destination = Destination::new(DestinationAddressBytes::from_bytes(recipient.client_key), [0; 16]);
    let chunk = vec![0xA5u8; PacketSize::Regular.plaintext_size()];
    let ack_payload = vec![0u8; PacketSize::Ack.plaintext_size()];
    // sphinx-packet alone: build one packet of `size` over `route`.
    let raw_build = |payload: &[u8], route: &[sphinx_packet::route::Node], size: PacketSize| {
        let delays: Vec<Delay> = (0..route.len()).map(|_| Delay::new_from_millis(15)).collect();
        SphinxPacketBuilder::new()
            .with_payload_size(size.sphinx_payload_size())
            .build_packet(payload, route, &destination, &delays)
            .expect("build")
            .to_bytes()
    };
    group.bench_function("raw sphinx-packet build (per packet)", |b| {
        b.iter(|| {
            for _ in 0..packets {
                criterion::black_box(raw_build(&chunk, &route, PacketSize::Regular));
            }
        })
    });
    // What the engine really builds per fragment: the data packet and the
    // SURB-ACK's small packet (two Sphinx headers).
    group.bench_function("raw sphinx-packet build of packet + ack packet (per packet)", |b| {
        b.iter(|| {
            for _ in 0..packets {
                criterion::black_box(raw_build(&chunk, &route, PacketSize::Regular));
                criterion::black_box(raw_build(&ack_payload, &ack_route, PacketSize::Ack));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
