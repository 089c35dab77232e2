//! Writes the seed corpora under fuzz/corpus/<target>/ with the real encoders.
//! Run from fuzz/: `cargo run --example seed_corpus`.

use nym_client_core::Recipient;
use nym_client_core::fuzzing::packet::build_sphinx_packet;
use nym_client_core::fuzzing::fragment::{split, Fragment, Link};
use nym_client_core::fuzzing::payload::{self, PayloadKind};
use nym_wire::topology::encode_node_address;
use nym_wire::gateway::{ClientRequest, GatewayResponse};
use nym_wire::mix_frame::{self, PacketSize};
use nym_fuzz::{client_secret, gateway_identity, node_secret, session_pair};
use rand::rngs::StdRng;
use rand::SeedableRng;
use sphinx_packet::route::Node;
use std::path::Path;
use std::time::Duration;
use x25519_dalek::PublicKey;

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new("corpus").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

/// Sanity: the node key peels every layer, and the last one opens for the client.
fn check_reaches_the_end(packet: &[u8], hops: u16) {
    use sphinx_packet::{ProcessedPacketData, SphinxPacket};
    let mut p = SphinxPacket::from_bytes(packet).unwrap();
    for hop in 1..=hops {
        match p.process(&node_secret()).unwrap().data {
            ProcessedPacketData::ForwardHop { next_hop_packet, .. } => {
                assert!(hop < hops);
                p = next_hop_packet;
            }
            ProcessedPacketData::FinalHop { payload, .. } => {
                assert_eq!(hop, hops);
                let plaintext = payload.recover_plaintext().unwrap();
                let (_, body) = payload::open(&client_secret(), &plaintext).unwrap();
                assert_eq!(body, b"hello mixnet");
                return;
            }
        }
    }
    panic!("no final hop");
}

fn sphinx_frame() {
    let mut rng = StdRng::from_seed([3; 32]);
    let node_pub = PublicKey::from(&node_secret());
    let client_pub = PublicKey::from(&client_secret());
    let recipient = Recipient::new(*client_pub.as_bytes(), gateway_identity().verifying_key().to_bytes());
    let node = |port: u16| Node::new(encode_node_address(([127, 0, 0, 1], port).into()), node_pub);
    let body = payload::seal(&mut rng, &client_pub, PayloadKind::Fragment, b"hello mixnet", PacketSize::Regular).unwrap();
    for hops in 1..=3u16 {
        let route: Vec<Node> = (0..hops).map(|i| node(9000 + i)).collect();
        let (packet, _) =
            build_sphinx_packet(&mut rng, &route, &recipient, &body, Duration::from_millis(5), PacketSize::Regular)
                .unwrap();
        check_reaches_the_end(&packet, hops);
        let frame = mix_frame::encode(&packet, 1).unwrap();
        let mut input = vec![hops as u8 * 40];
        input.extend_from_slice(&frame);
        write("sphinx_frame", &format!("regular-{hops}hop"), &input);
        if hops == 2 {
            // two frames back to back, then a bad flag
            input.extend_from_slice(&frame);
            input.extend_from_slice(&[0xee, 1, 2, 3]);
            write("sphinx_frame", "two-frames-then-bad-flag", &input);
        }
    }
    // An IPv6 next hop.
    let v6 = Node::new(encode_node_address(("::1".parse::<std::net::IpAddr>().unwrap(), 1789).into()), node_pub);
    // hop 1 forwards to the IPv6 address
    let (packet, _) = build_sphinx_packet(&mut rng, &[node(9001), v6, node(9002)], &recipient, &body, Duration::ZERO, PacketSize::Regular)
        .unwrap();
    check_reaches_the_end(&packet, 3);
    let mut input = vec![7];
    input.extend_from_slice(&mix_frame::encode(&packet, 1).unwrap());
    write("sphinx_frame", "regular-ipv6-hop", &input);
    write("sphinx_frame", "truncated", &input[..300]);
    write("sphinx_frame", "bad-flag", &[0, 0xee, 1, 2, 3]);
}

fn fragment_reassembly() {
    let mut rng = StdRng::from_seed([4; 32]);
    // record: op || len || fragment
    let records = |frags: &[Fragment], op: u8| -> Vec<u8> {
        let mut out = Vec::new();
        for f in frags {
            let e = f.encode();
            assert!(e.len() <= 255);
            out.push(op);
            out.push(e.len() as u8);
            out.extend_from_slice(&e);
        }
        out
    };
    let msg: Vec<u8> = (0..200u8).collect();
    let frags = split(&mut rng, &msg, 40);
    write("fragment_reassembly", "in-order", &records(&frags, 1));
    let mut rev = frags.clone();
    rev.reverse();
    rev.push(frags[0].clone());
    write("fragment_reassembly", "reversed-with-duplicate", &records(&rev, 0x41));
    write("fragment_reassembly", "one-lost-then-expiry", &records(&frags[1..], 0x5f));
    write("fragment_reassembly", "empty-message", &records(&split(&mut rng, &[], 10), 0));
    // A chain of two sets: 256 one-byte fragments (255 + 1), ~4 KB.
    let long: Vec<u8> = (0..256u16).map(|i| i as u8).collect();
    let chain = split(&mut rng, &long, 1);
    assert!(matches!(chain[254].link, Link::Next(_)));
    write("fragment_reassembly", "two-set-chain", &records(&chain, 0));
    let mut inconsistent = frags[0].clone();
    inconsistent.total += 1;
    write("fragment_reassembly", "inconsistent-total", &records(&[frags[1].clone(), inconsistent], 0));
}

fn websocket_request() {
    let a = Recipient::new(*PublicKey::from(&client_secret()).as_bytes(), gateway_identity().verifying_key().to_bytes());
    let seeds: Vec<(&str, Vec<u8>)> = vec![
        ("send", format!(r#"{{"type":"send","message":"hello","recipient":"{a}"}}"#).into_bytes()),
        (
            "send-json-message",
            format!(r#"{{"type":"send","message":{{"sender":"x","n":[1,2.5,null]}},"recipient_address":"{a}"}}"#)
                .into_bytes(),
        ),
        ("both-recipients", format!(r#"{{"type":"send","message":"x","recipient":"{a}","recipient_address":"{a}"}}"#).into_bytes()),
        ("self-address", br#"{"type":"selfAddress"}"#.to_vec()),
        ("reply", br#"{"type":"reply","message":"x"}"#.to_vec()),
        ("bad-address", br#"{"type":"send","message":"x","recipient":"abc@0OIl"}"#.to_vec()),
        ("not-json", b"{not json".to_vec()),
        ("binary", [&a.to_bytes()[..], b"payload \xff\xfe"].concat()),
        ("binary-short", a.to_bytes()[..10].to_vec()),
    ];
    for (name, bytes) in seeds {
        write("websocket_request", name, &bytes);
    }
}

fn gateway_handshake() {
    let (_, mut gateway, [hello, reply, auth]) = session_pair();
    let tagged = |sel: u8, body: &[u8]| [&[sel][..], body].concat();
    write("gateway_handshake", "0-hello-and-auth", &tagged(0, &[&hello[..], &auth[..]].concat()));
    write("gateway_handshake", "0-hello-only", &tagged(0, &hello));
    write("gateway_handshake", "1-hello-reply", &tagged(1, &reply));
    // gateway -> client: the first frame after the handshake (counter 0)
    let to_client = gateway.seal(&GatewayResponse::Deliver { id: 1, payload: b"hi".to_vec() }.encode());
    let (mut c, _, _) = session_pair();
    assert!(c.open(&to_client).is_ok());
    write("gateway_handshake", "2-sealed-deliver", &tagged(2, &to_client));
    // client -> gateway: the first frame after Authenticate (counter 1)
    let forward = ClientRequest::Forward { next_hop: [4; 32], frame: vec![1, 2, 3] };
    let (mut c, mut g, _) = session_pair();
    let sealed_fwd = c.seal(&forward.encode());
    assert_eq!(g.open(&sealed_fwd).unwrap(), forward.encode());
    write("gateway_handshake", "2-sealed-forward", &tagged(2, &sealed_fwd));
    write("gateway_handshake", "3-forward", &tagged(3, &forward.encode()));
    write("gateway_handshake", "3-authenticated", &tagged(3, &GatewayResponse::Authenticated { stored: 7 }.encode()));
    write("gateway_handshake", "3-error", &tagged(3, &GatewayResponse::Error { message: "nope".into() }.encode()));
}

fn directory_json() {
    use nym_client_core::encode_key;
    use nym_wire::topology::{GatewayJson, MixNodeJson, TopologyJson};
    let key = encode_key(PublicKey::from(&node_secret()).as_bytes());
    let epoch_keys = vec![nym_wire::topology::EpochKeyJson { epoch: 1, key: key.clone() }];
    let mix = |layer: u8| MixNodeJson {
        host: format!("127.0.0.1:{}", 1788 + u16::from(layer)),
        pub_key: key.clone(),
        sphinx_keys: epoch_keys.clone(),
        layer,
        version: nym_client_core::VERSION.into(),
        location: "here".into(),
        last_seen: 0,
        ..Default::default()
    };
    let gw = GatewayJson {
        client_listener: "ws://127.0.0.1:9000".into(),
        mixnet_listener: "[::1]:1790".into(),
        identity_key: encode_key(&gateway_identity().verifying_key().to_bytes()),
        sphinx_key: key.clone(),
        sphinx_keys: epoch_keys.clone(),
        version: nym_client_core::VERSION.into(),
        location: "here".into(),
        last_seen: 1,
        ..Default::default()
    };
    let topo = TopologyJson { mix_nodes: (1..=3).map(mix).collect(), gateway_nodes: vec![gw.clone()], epoch_length_secs: 86_400, ..Default::default() };
    let text = serde_json::to_string(&topo).unwrap();
    nym_wire::topology::Topology::parse(&text, nym_client_core::VERSION).expect("seed topology is usable");
    write("directory_json", "topology", text.as_bytes());
    write("directory_json", "mixnode", serde_json::to_string(&mix(2)).unwrap().as_bytes());
    write("directory_json", "gateway", serde_json::to_string(&gw).unwrap().as_bytes());
    let mut bad = mix(7);
    bad.version = "0.7.1".into();
    let topo = TopologyJson { mix_nodes: vec![bad, mix(1)], gateway_nodes: vec![], ..Default::default() };
    write("directory_json", "bad-topology", serde_json::to_string(&topo).unwrap().as_bytes());
}

/// Writes the corpus; the (unsigned) seed document, for the authorities'.
fn signed_topology() -> nym_wire::topology::TopologyJson {
    use nym_client_core::encode_key;
    use nym_wire::topology::{GatewayJson, MixNodeJson, TopologyJson};
    let now = nym_fuzz::SIGNED_TOPOLOGY_NOW_MS;
    let key = encode_key(PublicKey::from(&node_secret()).as_bytes());
    let epoch = nym_wire::epoch::epoch_at(now, 86_400_000);
    let epoch_keys = vec![nym_wire::topology::EpochKeyJson { epoch, key: key.clone() }];
    let mix = |layer: u8| {
        let mut m = MixNodeJson {
            host: format!("127.0.0.1:{}", 1788 + u16::from(layer)),
            pub_key: key.clone(),
            sphinx_keys: epoch_keys.clone(),
            layer,
            version: nym_client_core::VERSION.into(),
            ..Default::default()
        };
        m.sign(&ed25519_dalek::SigningKey::from_bytes(&[layer; 32]), now - 1000);
        m
    };
    let mut gw = GatewayJson {
        client_listener: "ws://127.0.0.1:9000".into(),
        mixnet_listener: "127.0.0.1:1790".into(),
        sphinx_key: key.clone(),
        sphinx_keys: epoch_keys.clone(),
        version: nym_client_core::VERSION.into(),
        ..Default::default()
    };
    gw.sign(&gateway_identity(), now - 1000);
    let mut topo = TopologyJson {
        mix_nodes: (1..=3).map(mix).collect(),
        gateway_nodes: vec![gw.clone()],
        epoch_length_secs: 86_400,
        round: (now - 500) / 1000,
        issued_at: now - 500,
        expires_at: now + 86_400_000,
        served_by: nym_wire::address::encode_key(nym_fuzz::directory_identity().verifying_key().as_bytes()),
        ..Default::default()
    };
    topo.sign(&nym_fuzz::directory_identity());
    let text = serde_json::to_string(&topo).unwrap();
    let pinned = nym_fuzz::directory_identity().verifying_key().to_bytes();
    let authorities = nym_wire::authority::Authorities::single(pinned, "http://127.0.0.1:1");
    nym_client_core::verify_topology(&text, Some(&authorities), now, nym_client_core::VERSION).expect("seed topology verifies");
    write("signed_topology", "signed", text.as_bytes());
    write("signed_topology", "mixnode", serde_json::to_string(&mix(2)).unwrap().as_bytes());
    write("signed_topology", "gateway", serde_json::to_string(&gw).unwrap().as_bytes());
    topo.signatures.clear();
    write("signed_topology", "unsigned", serde_json::to_string(&topo).unwrap().as_bytes());
    topo
}

/// A document signed by 3, 2 and 1 of the three fuzz authorities, one with
/// a signature repeated, and a vote and a round signature of each.
fn authority_consensus(mut topo: nym_wire::topology::TopologyJson) {
    use nym_fuzz::{authority_identity, fuzz_authorities};
    let now = nym_fuzz::SIGNED_TOPOLOGY_NOW_MS;
    topo.served_by = nym_wire::address::encode_key(authority_identity(0).verifying_key().as_bytes());
    for i in 0..3 {
        topo.sign(&authority_identity(i));
    }
    let text = serde_json::to_string(&topo).unwrap();
    let v = nym_wire::signed::verify_topology(&text, Some(&fuzz_authorities()), now, nym_client_core::VERSION)
        .expect("seed document verifies");
    assert_eq!(v.document.signers.keys.len(), 3);
    write("authority_consensus", "three-signatures", text.as_bytes());
    let mut two = topo.clone();
    two.signatures.truncate(2);
    write("authority_consensus", "two-signatures", serde_json::to_string(&two).unwrap().as_bytes());
    let mut one = topo.clone();
    one.signatures.truncate(1);
    write("authority_consensus", "one-signature", serde_json::to_string(&one).unwrap().as_bytes());
    let mut repeated = two.clone();
    repeated.signatures.push(repeated.signatures[0].clone());
    write("authority_consensus", "repeated-signature", serde_json::to_string(&repeated).unwrap().as_bytes());
    let mut vote = nym_wire::vote::VoteJson {
        round: topo.round,
        epoch_length_secs: topo.epoch_length_secs,
        mix_nodes: topo.mix_nodes.clone(),
        gateway_nodes: topo.gateway_nodes.clone(),
        ..Default::default()
    };
    vote.sign(&authority_identity(1));
    nym_wire::vote::parse_vote(&serde_json::to_vec(&vote).unwrap()).expect("seed vote verifies");
    write("authority_consensus", "vote", &serde_json::to_vec(&vote).unwrap());
    let s = topo.signature_by(&authority_identity(2));
    let sig = nym_wire::vote::RoundSignature { round: topo.round, key: s.key, signature: s.signature };
    write("authority_consensus", "round-signature", &serde_json::to_vec(&sig).unwrap());
}

fn main() {
    directory_json();
    let topo = signed_topology();
    authority_consensus(topo);
    sphinx_frame();
    fragment_reassembly();
    websocket_request();
    gateway_handshake();
    println!("corpora written under corpus/");
}
