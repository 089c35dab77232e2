//! The network as the directory describes it, and route selection over it.
//!
//! The JSON types here are the directory's wire format (`GET
//! /api/presence/topology`, and the bodies nodes announce themselves with);
//! the directory server serialises the very same structs.

use crate::address::{decode_key, encode_key, KEY_LENGTH};
use crate::epoch::{epoch_at, KeyEpoch};
use crate::error::{Error, Result};
use rand::seq::IndexedRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};
use sphinx_packet::route::{Node, NodeAddressBytes};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use x25519_dalek::PublicKey;

/// Mixnode layers every route crosses, one node each.
pub const LAYERS: u8 = 3;

/// The directory's HTTP paths, spelt once: its server routes them, nodes
/// and clients request them.
pub mod paths {
    /// `GET`: the signed topology document ([`super::TopologyJson`]).
    pub const TOPOLOGY: &str = "/api/presence/topology";
    /// `POST`: a mixnode's signed descriptor ([`super::MixNodeJson`]).
    pub const MIXNODES: &str = "/api/presence/mixnodes";
    /// `POST`: a gateway's signed descriptor ([`super::GatewayJson`]).
    pub const GATEWAYS: &str = "/api/presence/gateways";
}

/// A mixnode's descriptor, as it announces itself and the directory lists it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MixNodeJson {
    /// base58 ed25519 identity key: what names the node; it signs this
    /// descriptor (see [`crate::signed`]).
    #[serde(default)]
    pub identity_key: String,
    /// `ip:port` of the node's mixnet listener.
    pub host: String,
    /// base58 x25519 Sphinx key of the epoch the node signed in: the
    /// same as the first of `sphinxKeys` (for readers that don't rotate).
    pub pub_key: String,
    /// Its Sphinx keys with their epochs: the epoch it signed in, and the next.
    #[serde(default)]
    pub sphinx_keys: Vec<EpochKeyJson>,
    /// Its layer, 1 to 3.
    pub layer: u8,
    /// The software version it runs (must match the client's major.minor).
    pub version: String,
    /// Free text: where it runs.
    #[serde(default)]
    pub location: String,
    /// Unix time in nanoseconds the directory last heard from the node.
    /// Set by the directory; not part of the node's signature.
    #[serde(default)]
    pub last_seen: u64,
    /// The descriptor's sequence number: Unix time in milliseconds when the
    /// node signed it, strictly increasing per identity.
    #[serde(default)]
    pub seq: u64,
    /// base58 ed25519 signature by `identity_key` (see [`crate::signed`]).
    #[serde(default)]
    pub signature: String,
}

/// A gateway's descriptor, as it announces itself and the directory lists it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayJson {
    /// `ws://ip:port` where clients connect.
    pub client_listener: String,
    /// `ip:port` of the gateway's mixnet listener.
    pub mixnet_listener: String,
    /// base58 ed25519 identity key: the gateway part of client addresses.
    pub identity_key: String,
    /// base58 x25519 Sphinx key of the epoch it signed in (as
    /// [`MixNodeJson::pub_key`]).
    pub sphinx_key: String,
    /// As [`MixNodeJson::sphinx_keys`].
    #[serde(default)]
    pub sphinx_keys: Vec<EpochKeyJson>,
    /// As [`MixNodeJson::version`].
    pub version: String,
    /// As [`MixNodeJson::location`].
    #[serde(default)]
    pub location: String,
    /// Set by the directory; not part of the node's signature.
    #[serde(default)]
    pub last_seen: u64,
    /// As [`MixNodeJson::seq`].
    #[serde(default)]
    pub seq: u64,
    /// base58 ed25519 signature by `identity_key` (see [`crate::signed`]).
    #[serde(default)]
    pub signature: String,
}

/// One Sphinx key of a node and the epoch it is for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EpochKeyJson {
    /// The key epoch.
    pub epoch: KeyEpoch,
    /// base58 x25519 public key.
    pub key: String,
}

impl EpochKeyJson {
    /// `key` for `epoch`, written as JSON has it.
    pub fn new(epoch: KeyEpoch, key: &PublicKey) -> Self {
        EpochKeyJson { epoch, key: encode_key(key.as_bytes()) }
    }
}

/// The directory's topology document. Readers that don't verify use the two
/// node lists as they always have; the other fields make it a signed
/// document (see [`crate::signed`] and docs/topology-document.md).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopologyJson {
    /// Every mixnode listed.
    #[serde(default)]
    pub mix_nodes: Vec<MixNodeJson>,
    /// Every gateway listed.
    #[serde(default)]
    pub gateway_nodes: Vec<GatewayJson>,
    /// The consensus round the document is of (`issuedAt / round length`).
    #[serde(default)]
    pub round: u64,
    /// Unix time in milliseconds when the round began (the same for every
    /// authority: times come from the round, not from a clock).
    #[serde(default)]
    pub issued_at: u64,
    /// Unix time in milliseconds after which no client may use it.
    #[serde(default)]
    pub expires_at: u64,
    /// The network's key epoch length ([`crate::epoch`]).
    #[serde(default)]
    pub epoch_length_secs: u64,
    /// The authorities' signatures over the document's canonical bytes
    /// (`crate::signed`); not themselves signed.
    #[serde(default)]
    pub signatures: Vec<DocumentSignature>,
    /// base58 key of the authority that served this copy: not signed, a
    /// hint only (a client that trusts on first use pins it, and believes
    /// the document only if that key's signature is in it).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub served_by: String,
}

/// One authority's signature on a topology document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentSignature {
    /// base58 ed25519 key of the authority.
    pub key: String,
    /// base58 of the 64-byte ed25519 signature.
    pub signature: String,
}

/// A node's Sphinx keys by epoch (one or two: consecutive epochs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochKeys(Vec<(KeyEpoch, PublicKey)>);

impl EpochKeys {
    /// These keys (parsed ones come from a descriptor's `sphinxKeys`).
    pub fn new(keys: Vec<(KeyEpoch, PublicKey)>) -> Self {
        EpochKeys(keys)
    }

    /// The key for `epoch`, if the node published one.
    pub fn get(&self, epoch: KeyEpoch) -> Option<PublicKey> {
        self.0.iter().find(|(e, _)| *e == epoch).map(|(_, k)| *k)
    }

    /// Every (epoch, key), oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &(KeyEpoch, PublicKey)> {
        self.0.iter()
    }

    /// Parses a descriptor's `sphinxKeys`: one or two entries, consecutive
    /// epochs, the first being `current` (its `pubKey`/`sphinxKey`).
    fn from_json(keys: &[EpochKeyJson], current: &PublicKey, what: &str) -> Result<Self> {
        if keys.is_empty() || keys.len() > 2 {
            return Err(Error::Topology(format!("{what} lists {} epoch keys, not 1 or 2", keys.len())));
        }
        let mut out = Vec::with_capacity(keys.len());
        for (i, k) in keys.iter().enumerate() {
            if i > 0 && Some(k.epoch) != keys[0].epoch.checked_add(1) {
                return Err(Error::Topology(format!("{what}: epoch keys are not for consecutive epochs")));
            }
            out.push((k.epoch, parse_x25519(&k.key, &format!("{what} epoch {} key", k.epoch))?));
        }
        if out[0].1 != *current {
            return Err(Error::Topology(format!("{what}: its key is not its first epoch key")));
        }
        Ok(EpochKeys(out))
    }
}

/// A mixnode as routes use it: checked and parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MixNode {
    /// Its mixnet listener.
    pub address: SocketAddr,
    /// The key of the epoch the node signed its descriptor in.
    pub sphinx_key: PublicKey,
    /// Its Sphinx keys by epoch.
    pub epoch_keys: EpochKeys,
    /// Its layer, 1 to 3.
    pub layer: u8,
}

/// A gateway as routes and clients use it: checked and parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gateway {
    /// Its ed25519 identity: the second half of its clients' addresses.
    pub identity_key: [u8; KEY_LENGTH],
    /// As [`MixNode::sphinx_key`].
    pub sphinx_key: PublicKey,
    /// Its Sphinx keys by epoch.
    pub epoch_keys: EpochKeys,
    /// Its mixnet listener: final hops and acks go there.
    pub mix_address: SocketAddr,
    /// The websocket URL its clients connect to.
    pub client_listener: String,
}

impl MixNode {
    /// The node as a Sphinx hop for packets of `epoch`; None when it has
    /// published no key for that epoch.
    pub fn sphinx_node(&self, epoch: KeyEpoch) -> Option<Node> {
        Some(Node::new(encode_node_address(self.address), self.epoch_keys.get(epoch)?))
    }
}

impl Gateway {
    /// As [`MixNode::sphinx_node`].
    pub fn sphinx_node(&self, epoch: KeyEpoch) -> Option<Node> {
        Some(Node::new(encode_node_address(self.mix_address), self.epoch_keys.get(epoch)?))
    }

    /// Its identity key as base58 text.
    pub fn identity_b58(&self) -> String {
        encode_key(&self.identity_key)
    }
}

/// A validated topology: every layer has a node, every key parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    layers: [Vec<MixNode>; LAYERS as usize],
    gateways: Vec<Gateway>,
    epoch_ms: u64,
    /// Why entries were left out (bad keys, other versions); for logs.
    pub rejected: Vec<String>,
}

/// Versions are compatible when major.minor match, as in Nym.
pub fn versions_compatible(a: &str, b: &str) -> bool {
    fn major_minor(v: &str) -> Option<(&str, &str)> {
        let mut it = v.trim().split('.');
        Some((it.next()?, it.next()?))
    }
    matches!((major_minor(a), major_minor(b)), (Some(x), Some(y)) if x == y)
}

fn parse_x25519(text: &str, what: &str) -> Result<PublicKey> {
    decode_key(text, what)
        .map(PublicKey::from)
        .map_err(|e| Error::Topology(e.to_string().replace("invalid address: ", "")))
}

fn parse_socket(text: &str, what: &str) -> Result<SocketAddr> {
    text.parse()
        .map_err(|_| Error::Topology(format!("{what} '{text}' is not ip:port")))
}

impl MixNode {
    /// Parses and checks one descriptor (layer, address, keys); the
    /// signature is [`crate::signed`]'s business.
    pub fn from_json(j: &MixNodeJson) -> Result<Self> {
        if !(1..=LAYERS).contains(&j.layer) {
            return Err(Error::Topology(format!("mixnode {} has layer {}, not 1..3", j.host, j.layer)));
        }
        let sphinx_key = parse_x25519(&j.pub_key, "mixnode key")?;
        Ok(MixNode {
            address: parse_socket(&j.host, "mixnode host")?,
            epoch_keys: EpochKeys::from_json(&j.sphinx_keys, &sphinx_key, &format!("mixnode {}", j.host))?,
            sphinx_key,
            layer: j.layer,
        })
    }
}

impl Gateway {
    /// As [`MixNode::from_json`].
    pub fn from_json(j: &GatewayJson) -> Result<Self> {
        let identity_key = decode_key(&j.identity_key, "gateway identity key")
            .map_err(|e| Error::Topology(e.to_string()))?;
        ed25519_dalek::VerifyingKey::from_bytes(&identity_key)
            .map_err(|_| Error::Topology("gateway identity key is not an ed25519 point".into()))?;
        let sphinx_key = parse_x25519(&j.sphinx_key, "gateway sphinx key")?;
        Ok(Gateway {
            identity_key,
            epoch_keys: EpochKeys::from_json(&j.sphinx_keys, &sphinx_key, &format!("gateway {}", j.mixnet_listener))?,
            sphinx_key,
            mix_address: parse_socket(&j.mixnet_listener, "gateway mixnet listener")?,
            client_listener: j.client_listener.clone(),
        })
    }
}

impl Topology {
    /// Validates the directory's view for a client of `our_version`.
    pub fn from_json(json: &TopologyJson, our_version: &str) -> Result<Self> {
        if json.epoch_length_secs < crate::epoch::MIN_EPOCH_SECS {
            return Err(Error::Topology(format!(
                "the topology's epochLengthSecs is {}, not at least {}",
                json.epoch_length_secs,
                crate::epoch::MIN_EPOCH_SECS
            )));
        }
        let mut layers: [Vec<MixNode>; 3] = Default::default();
        let mut gateways = Vec::new();
        let mut rejected = Vec::new();
        for j in &json.mix_nodes {
            if !versions_compatible(&j.version, our_version) {
                rejected.push(format!("mixnode {}: version {} is not {our_version}", j.host, j.version));
                continue;
            }
            match MixNode::from_json(j) {
                Ok(node) => layers[usize::from(node.layer - 1)].push(node),
                Err(e) => rejected.push(e.to_string()),
            }
        }
        for j in &json.gateway_nodes {
            if !versions_compatible(&j.version, our_version) {
                rejected.push(format!("gateway {}: version {} is not {our_version}", j.identity_key, j.version));
                continue;
            }
            match Gateway::from_json(j) {
                Ok(g) => gateways.push(g),
                Err(e) => rejected.push(e.to_string()),
            }
        }
        for (i, layer) in layers.iter().enumerate() {
            if layer.is_empty() {
                return Err(Error::Topology(format!(
                    "no usable mixnode in layer {} ({} entries rejected: {})",
                    i + 1,
                    rejected.len(),
                    rejected.join("; ")
                )));
            }
        }
        if gateways.is_empty() {
            return Err(Error::Topology("no usable gateway".into()));
        }
        Ok(Topology { layers, gateways, epoch_ms: json.epoch_length_secs.saturating_mul(1000), rejected })
    }

    /// [`Topology::from_json`] of a document's text.
    pub fn parse(json_text: &str, our_version: &str) -> Result<Self> {
        let json: TopologyJson = serde_json::from_str(json_text)
            .map_err(|e| Error::Topology(format!("not topology JSON: {e}")))?;
        Self::from_json(&json, our_version)
    }

    /// The network's epoch length in milliseconds.
    pub fn epoch_ms(&self) -> u64 {
        self.epoch_ms
    }

    /// The key epoch at Unix time `unix_ms`.
    pub fn epoch_at(&self, unix_ms: u64) -> KeyEpoch {
        epoch_at(unix_ms, self.epoch_ms)
    }

    /// The mixnodes of `layer` (1 to 3; none for another number).
    pub fn layer(&self, layer: u8) -> &[MixNode] {
        self.layers
            .get(usize::from(layer.wrapping_sub(1)))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Every mixnode, layer by layer.
    pub fn mixnodes(&self) -> impl Iterator<Item = &MixNode> {
        self.layers.iter().flatten()
    }

    /// Leaves the mixnode at `address` out of routes until the next
    /// topology (its gateway refused it as a first hop: it left), unless it
    /// is the last of its layer (routes need one per layer). True when routes
    /// avoid it from now on (removed now, or not listed).
    pub fn avoid_mixnode(&mut self, address: SocketAddr) -> bool {
        for layer in &mut self.layers {
            if let Some(i) = layer.iter().position(|m| m.address == address) {
                if layer.len() == 1 {
                    return false;
                }
                layer.remove(i);
            }
        }
        true
    }

    /// Every usable gateway.
    pub fn gateways(&self) -> &[Gateway] {
        &self.gateways
    }

    /// The gateway with this identity, if listed.
    pub fn gateway(&self, identity_key: &[u8; KEY_LENGTH]) -> Option<&Gateway> {
        self.gateways.iter().find(|g| &g.identity_key == identity_key)
    }

    /// One random mixnode per layer, then the recipient's gateway, all with
    /// their keys of `epoch` (nodes without one are left out).
    pub fn random_route<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        gateway_identity: &[u8; KEY_LENGTH],
        epoch: KeyEpoch,
    ) -> Result<Vec<Node>> {
        let gateway = self.gateway(gateway_identity).ok_or_else(|| {
            Error::NoRoute(format!("gateway {} is not in the topology", encode_key(gateway_identity)))
        })?;
        let gateway = gateway.sphinx_node(epoch).ok_or_else(|| {
            Error::NoRoute(format!("gateway {} has published no key for epoch {epoch}", encode_key(gateway_identity)))
        })?;
        let mut route = Vec::with_capacity(usize::from(LAYERS) + 1);
        for (i, layer) in self.layers.iter().enumerate() {
            let keyed: Vec<Node> = layer.iter().filter_map(|m| m.sphinx_node(epoch)).collect();
            let node = keyed
                .choose(rng)
                .ok_or_else(|| Error::NoRoute(format!("no mixnode of layer {} has a key for epoch {epoch}", i + 1)))?;
            route.push(node.clone());
        }
        route.push(gateway);
        Ok(route)
    }
}

/// A node's routing address inside Sphinx headers: version byte (4 or 6),
/// port (u16 big endian), IP octets, zero padded to 32 bytes.
pub fn encode_node_address(addr: SocketAddr) -> NodeAddressBytes {
    let mut bytes = [0u8; 32];
    bytes[1..3].copy_from_slice(&addr.port().to_be_bytes());
    match addr.ip() {
        IpAddr::V4(ip) => {
            bytes[0] = 4;
            bytes[3..7].copy_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            bytes[0] = 6;
            bytes[3..19].copy_from_slice(&ip.octets());
        }
    }
    NodeAddressBytes::from_bytes(bytes)
}

/// Reads what [`encode_node_address`] wrote.
pub fn decode_node_address(address: &NodeAddressBytes) -> Result<SocketAddr> {
    let b = address.as_bytes();
    let port = u16::from_be_bytes([b[1], b[2]]);
    let ip = match b[0] {
        4 => IpAddr::V4(Ipv4Addr::new(b[3], b[4], b[5], b[6])),
        6 => {
            let mut o = [0u8; 16];
            o.copy_from_slice(&b[3..19]);
            IpAddr::V6(Ipv6Addr::from(o))
        }
        v => return Err(Error::MalformedPacket(format!("unknown node address version {v}"))),
    };
    Ok(SocketAddr::new(ip, port))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use x25519_dalek::StaticSecret;

    pub(crate) fn b58_x25519(seed: u8) -> String {
        encode_key(PublicKey::from(&StaticSecret::from([seed; 32])).as_bytes())
    }

    pub(crate) fn b58_ed25519(seed: u8) -> String {
        encode_key(ed25519_dalek::SigningKey::from_bytes(&[seed; 32]).verifying_key().as_bytes())
    }

    /// Keys for epochs `EPOCH` and `EPOCH + 1`, the first from `seed`.
    pub(crate) fn epoch_keys(seed: u8) -> Vec<EpochKeyJson> {
        vec![
            EpochKeyJson { epoch: EPOCH, key: b58_x25519(seed) },
            EpochKeyJson { epoch: EPOCH + 1, key: b58_x25519(seed.wrapping_add(100)) },
        ]
    }

    pub(crate) const EPOCH: KeyEpoch = 20_000;

    fn sample() -> TopologyJson {
        let mix = |layer: u8, port: u16| MixNodeJson {
            identity_key: String::new(),
            host: format!("127.0.0.1:{port}"),
            pub_key: b58_x25519(port as u8),
            sphinx_keys: epoch_keys(port as u8),
            layer,
            version: "0.8.0".into(),
            location: "here".into(),
            last_seen: 1,
            seq: 0,
            signature: String::new(),
        };
        TopologyJson {
            mix_nodes: vec![mix(1, 1), mix(2, 2), mix(3, 3), mix(3, 4)],
            gateway_nodes: vec![GatewayJson {
                client_listener: "ws://127.0.0.1:9000".into(),
                mixnet_listener: "127.0.0.1:1789".into(),
                identity_key: b58_ed25519(9),
                sphinx_key: b58_x25519(10),
                sphinx_keys: epoch_keys(10),
                version: "0.8.3".into(),
                location: "here".into(),
                last_seen: 1,
                seq: 0,
                signature: String::new(),
            }],
            epoch_length_secs: 3600,
            ..TopologyJson::default()
        }
    }

    #[test]
    fn json_shape_is_the_directorys() {
        let text = serde_json::to_string(&sample()).unwrap();
        for field in ["mixNodes", "gatewayNodes", "pubKey", "sphinxKeys", "lastSeen", "clientListener", "mixnetListener", "identityKey", "sphinxKey", "epochLengthSecs"] {
            assert!(text.contains(field), "{field} missing from {text}");
        }
        let t = Topology::parse(&text, "0.8.1").unwrap();
        assert_eq!(t.layer(3).len(), 2);
        assert_eq!(t.gateways().len(), 1);
    }

    #[test]
    fn missing_layer_bad_keys_and_versions_are_refused() {
        let mut j = sample();
        j.mix_nodes.retain(|m| m.layer != 2);
        assert!(Topology::from_json(&j, "0.8.0").unwrap_err().to_string().contains("layer 2"));

        let mut j = sample();
        j.mix_nodes[0].pub_key = "not-base58-0OIl".into();
        let e = Topology::from_json(&j, "0.8.0").unwrap_err().to_string();
        assert!(e.contains("layer 1") && e.contains("mixnode key"), "{e}");

        let mut j = sample();
        j.mix_nodes[2].version = "0.7.0".into();
        j.mix_nodes[3].version = "1.8.0".into();
        assert!(Topology::from_json(&j, "0.8.0").unwrap_err().to_string().contains("layer 3"));

        let mut j = sample();
        j.mix_nodes[3].version = "0.7.0".into();
        let t = Topology::from_json(&j, "0.8.0").unwrap();
        assert_eq!(t.layer(3).len(), 1);
        assert_eq!(t.rejected.len(), 1);

        let mut j = sample();
        j.gateway_nodes[0].mixnet_listener = "nowhere".into();
        assert!(Topology::from_json(&j, "0.8.0").unwrap_err().to_string().contains("no usable gateway"));
        assert!(Topology::parse("{\"mixNodes\": 3}", "0.8.0").is_err());

        let mut j = sample();
        j.epoch_length_secs = 0;
        assert!(Topology::from_json(&j, "0.8.0").unwrap_err().to_string().contains("epochLengthSecs"));
    }

    #[test]
    fn epoch_keys_must_be_one_or_two_consecutive_with_the_first_the_current_key() {
        let refused = |change: &dyn Fn(&mut MixNodeJson)| {
            let mut j = sample();
            change(&mut j.mix_nodes[0]);
            Topology::from_json(&j, "0.8.0").unwrap_err().to_string()
        };
        assert!(refused(&|m| m.sphinx_keys.clear()).contains("0 epoch keys"));
        assert!(refused(&|m| m.sphinx_keys.push(m.sphinx_keys[1].clone())).contains("3 epoch keys"));
        assert!(refused(&|m| m.sphinx_keys[1].epoch += 1).contains("consecutive"));
        assert!(refused(&|m| m.sphinx_keys.swap(0, 1)).contains("consecutive"));
        assert!(refused(&|m| m.sphinx_keys[0].key = b58_x25519(99)).contains("not its first epoch key"));
        let mut j = sample();
        j.mix_nodes[0].sphinx_keys.truncate(1);
        assert!(Topology::from_json(&j, "0.8.0").is_ok(), "the current key alone will do");
    }

    #[test]
    fn routes_use_the_keys_of_the_epoch_asked_for_and_skip_nodes_without_one() {
        let mut j = sample();
        // one of the two layer-3 nodes publishes no key for the next epoch
        j.mix_nodes[3].sphinx_keys.truncate(1);
        let t = Topology::from_json(&j, "0.8.0").unwrap();
        let g = t.gateways()[0].identity_key;
        let mut rng = rand::rngs::StdRng::from_seed([4; 32]);
        for _ in 0..20 {
            let route = t.random_route(&mut rng, &g, EPOCH + 1).unwrap();
            for node in &route[..3] {
                let m = t.mixnodes().find(|m| encode_node_address(m.address) == node.address).unwrap();
                assert_eq!(Some(node.pub_key), m.epoch_keys.get(EPOCH + 1));
                assert_ne!(m.address, t.layer(3)[1].address, "never the node without a next key");
            }
            assert_eq!(Some(route[3].pub_key), t.gateways()[0].epoch_keys.get(EPOCH + 1));
        }
        let e = t.random_route(&mut rng, &g, EPOCH + 2).unwrap_err().to_string();
        assert!(e.contains("epoch"), "{e}");
        assert_eq!(t.epoch_at(u64::from(EPOCH) * 3_600_000 + 5), EPOCH);
    }

    #[test]
    fn route_is_one_node_per_layer_then_the_gateway() {
        let t = Topology::from_json(&sample(), "0.8.0").unwrap();
        let g = t.gateways()[0].identity_key;
        let mut rng = rand::rngs::StdRng::from_seed([3; 32]);
        for _ in 0..20 {
            let route = t.random_route(&mut rng, &g, EPOCH).unwrap();
            assert_eq!(route.len(), 4);
            for (i, node) in route[..3].iter().enumerate() {
                let addr = decode_node_address(&node.address).unwrap();
                let m = t.mixnodes().find(|m| m.address == addr).unwrap();
                assert_eq!(usize::from(m.layer), i + 1);
            }
            assert_eq!(decode_node_address(&route[3].address).unwrap(), t.gateways()[0].mix_address);
        }
        assert!(t.random_route(&mut rng, &[0; 32], EPOCH).is_err());
    }

    #[test]
    fn an_avoided_mixnode_leaves_routes_unless_it_is_the_last_of_its_layer() {
        let mut t = Topology::from_json(&sample(), "0.8.0").unwrap();
        let layer3: Vec<SocketAddr> = t.layer(3).iter().map(|m| m.address).collect();
        assert!(t.avoid_mixnode(layer3[0]));
        assert_eq!(t.layer(3).len(), 1);
        assert!(!t.avoid_mixnode(layer3[1]), "the last of its layer stays");
        assert_eq!(t.layer(3).len(), 1);
        assert!(t.avoid_mixnode(layer3[0]), "already out");
        assert!(t.avoid_mixnode("127.0.0.9:9".parse().unwrap()), "never listed");
    }

    proptest! {
        #[test]
        fn node_addresses_round_trip(ip4 in any::<[u8; 4]>(), ip6 in any::<[u8; 16]>(), port in any::<u16>()) {
            for addr in [SocketAddr::from((ip4, port)), SocketAddr::from((ip6, port))] {
                prop_assert_eq!(decode_node_address(&encode_node_address(addr)).unwrap(), addr);
            }
        }
    }
}
