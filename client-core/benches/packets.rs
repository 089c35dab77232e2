//! Per-packet cost of turning a 1 MiB message into Sphinx packets with the
//! whole client engine (fragment, seal end to end, build the SURB-ACK, pick a
//! route, build the Sphinx packet, frame, seal for the gateway), beside
//! sphinx-packet's raw build for the same route and payload size (alone, and
//! with the ack packet every fragment carries), in the same run.
//!
//! The same through the driver both shims run shows what the driver costs.
//!
//! `cargo bench -p nym-client-core --bench packets`
//! (`-- --test`: each benchmark once, unmeasured, as scripts/test.sh runs it,
//! with the same checks as the full run: exact frame and packet counts, and
//! packet sizes as `nym_wire` gives them)

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use nym_client_core::fuzzing::{FakeGateway, TestNetwork};
use nym_client_core::{
    AppRequest, AppResponse, Client, ClientConfig, ClientKeys, DirectoryTrust, Driver, DriverConfig, Output,
    PacketSize, Restored, Topology,
};
use rand::rngs::StdRng;
use rand::SeedableRng;
use sphinx_packet::header::delays::Delay;
use sphinx_packet::route::{Destination, DestinationAddressBytes};
use sphinx_packet::SphinxPacketBuilder;
use std::time::Duration;

const MESSAGE: usize = 1 << 20;

/// A connected, unthrottled client (handshake done against the in-memory gateway).
///
/// No in-flight limit: nothing acknowledges packets here, so with the default
/// `max_unacknowledged` (256) `poll_transmit` would stop after 256 of the
/// message's packets. What is timed is building every packet of the message.
fn connected_client(rng: &mut StdRng, gateway: &mut FakeGateway<u64>, topology: Topology) -> Client {
    let config = ClientConfig {
        average_packet_delay: Duration::ZERO,
        loop_cover_delay: Duration::ZERO,
        max_unacknowledged: usize::MAX,
        ..ClientConfig::default()
    };
    let mut client = Client::new(ClientKeys::generate(rng), gateway.identity_key(), config, [1; 32]);
    client.handle_topology(topology);
    client.handle_clock(Duration::ZERO, 0);
    gateway
        .connect_client(1, &mut client, Duration::ZERO)
        .expect("handshake");
    client
}

/// The same client inside the driver both shims run, started and connected
/// through the driver's own outputs (its first fetch answered with `document`).
fn connected_driver(rng: &mut StdRng, gateway: &mut FakeGateway<u64>, document: &str) -> Driver {
    let config = DriverConfig {
        client: ClientConfig {
            average_packet_delay: Duration::ZERO,
            loop_cover_delay: Duration::ZERO,
            max_unacknowledged: usize::MAX,
            ..ClientConfig::default()
        },
        ..DriverConfig::default()
    };
    let (mut driver, _) = Driver::new(
        ClientKeys::generate(rng),
        DirectoryTrust::FirstUse {
            url: "http://127.0.0.1:4000".into(),
        },
        Some(gateway.identity_key()),
        config,
        [2; 32],
        Restored::default(),
    )
    .expect("driver");
    driver.start(Duration::ZERO);
    // One connection, named 2 at the gateway.
    while !driver.is_connected() {
        match driver.poll_output(Duration::ZERO) {
            Some(Output::Connect { conn, url }) => {
                assert!(gateway.connect(2, &url), "the topology's gateway URL");
                driver.handle_connected(conn, Duration::ZERO);
            }
            Some(Output::Transmit { conn, frame }) => {
                gateway.handle_client_frame(2, &frame).expect("handshake frame");
                while let Some((_, reply)) = gateway.poll_to_client() {
                    driver.handle_frame(conn, &reply, Duration::ZERO);
                }
            }
            Some(Output::FetchTopology { .. }) => driver.handle_topology_fetched(Ok(document), Duration::ZERO, 0),
            Some(_) => {}
            None => panic!("the driver stopped asking before it was connected"),
        }
    }
    while driver.poll_output(Duration::ZERO).is_some() {}
    driver
}

fn bench(c: &mut Criterion) {
    let mut rng = StdRng::from_seed([7; 32]);
    let network = TestNetwork::new([2, 2, 2], 1);
    let topology = network.topology(0).expect("the test network's topology");
    let mut gateway: FakeGateway<u64> = network.fake_gateway(0, [3; 32]);
    let mut client = connected_client(&mut rng, &mut gateway, topology.clone());
    let recipient = client.address();
    let packets = MESSAGE.div_ceil(client.fragment_capacity()) as u64;
    let message = vec![0xA5u8; MESSAGE];

    let mut group = c.benchmark_group("1MiB message to Sphinx packets");
    group.sample_size(10);
    group.throughput(Throughput::Elements(packets));

    // The same checks whatever the run (`--test` runs each closure once):
    // exactly one gateway frame per packet of the message (no cover, no
    // acks: nothing arrives), and the engine's own count agrees.
    group.bench_function("client engine (per packet)", |b| {
        b.iter(|| {
            let sent_before = client.stats().real_packets_sent;
            client.send(recipient, message.clone(), Duration::ZERO).expect("send");
            let mut frames = 0u64;
            while client.poll_transmit(Duration::ZERO).is_some() {
                frames += 1;
            }
            let sent = client.stats().real_packets_sent - sent_before;
            assert_eq!(
                (frames, sent),
                (packets, packets),
                "frames and packets built for the message's {packets}"
            );
        })
    });

    let document = network.signed_text(0, u64::MAX / 2);
    let mut driver = connected_driver(&mut rng, &mut gateway, &document);
    let to = driver.address().expect("the driver chose its gateway");
    group.bench_function("driver over the client engine, as the shims run it (per packet)", |b| {
        b.iter(|| {
            let sent_before = driver.client().stats().real_packets_sent;
            let send = AppRequest::Send {
                recipient: to,
                message: message.clone(),
            };
            assert!(matches!(
                driver.handle_request(send, Duration::ZERO),
                AppResponse::Send { .. }
            ));
            let mut frames = 0u64;
            while let Some(output) = driver.poll_output(Duration::ZERO) {
                frames += u64::from(matches!(output, Output::Transmit { .. }));
            }
            let sent = driver.client().stats().real_packets_sent - sent_before;
            assert_eq!(
                (frames, sent),
                (packets, packets),
                "frames and packets built for the message's {packets}"
            );
        })
    });

    let route = topology
        .random_route(&mut rng, &gateway.identity_key(), 0)
        .expect("route");
    let ack_route = topology
        .random_route(&mut rng, &gateway.identity_key(), 0)
        .expect("route");
    let destination = Destination::new(DestinationAddressBytes::from_bytes(recipient.client_key), [0; 16]);
    let chunk = vec![0xA5u8; PacketSize::Regular.plaintext_size()];
    let ack_payload = vec![0u8; PacketSize::Ack.plaintext_size()];
    // sphinx-packet alone: build one packet of `size` over `route`; it has
    // the size the wire crate gives (checked on every build, in every run).
    let raw_build = |payload: &[u8], route: &[sphinx_packet::route::Node], size: PacketSize| {
        let delays: Vec<Delay> = (0..route.len()).map(|_| Delay::new_from_millis(15)).collect();
        let packet = SphinxPacketBuilder::new()
            .with_payload_size(size.sphinx_payload_size())
            .build_packet(payload, route, &destination, &delays)
            .expect("build")
            .to_bytes();
        assert_eq!(packet.len(), size.packet_len());
        packet
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
