//! A test network with known keys: 3 layers of mixnodes and some gateways,
//! their topology document (signed like the real directory's), and what
//! each mixnode does to a packet.
//!
//! Everything is derived from small indices, so every run builds the same
//! network: node `seed` has the identity `[seed; 32]` and, for each key
//! epoch, a fresh Sphinx secret ([`NodeKeys`]). Addresses are on 127.0.0.1
//! and nothing listens there: the harness moves the bytes.

use super::gateway::FakeGateway;
use crate::error::Result;
use ed25519_dalek::SigningKey;
use nym_wire::epoch::{epoch_at, KeyEpoch};
use nym_wire::mix_frame;
use nym_wire::topology::{decode_node_address, EpochKeyJson, GatewayJson, MixNodeJson, Topology, TopologyJson};
use sphinx_packet::{ProcessedPacketData, SphinxPacket};
use std::hash::Hash;
use std::net::SocketAddr;
use std::time::Duration;
use x25519_dalek::{PublicKey, StaticSecret};

/// A key epoch longer than any test: the whole run is one epoch (0 at the
/// Unix epoch) unless [`TestNetwork::with_epoch_length`] says otherwise.
pub const ONE_EPOCH_SECS: u64 = 1_000_000_000;

/// A test node's Sphinx keys: the secret of each key epoch derived from the
/// node's seed, a fresh one every epoch (as nodes rotate them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeKeys(pub u8);

impl NodeKeys {
    /// The node's Sphinx secret of `epoch`.
    pub fn secret(&self, epoch: KeyEpoch) -> StaticSecret {
        let mut bytes = [self.0; 32];
        bytes[..4].copy_from_slice(&epoch.to_be_bytes());
        StaticSecret::from(bytes)
    }

    /// The node's Sphinx public key of `epoch`.
    pub fn public(&self, epoch: KeyEpoch) -> PublicKey {
        PublicKey::from(&self.secret(epoch))
    }

    /// What a node publishes at `unix_ms`: the current epoch's key and the next.
    fn published(&self, unix_ms: u64, epoch_ms: u64) -> Vec<EpochKeyJson> {
        let epoch = epoch_at(unix_ms, epoch_ms);
        (epoch..=epoch + 1)
            .map(|e| EpochKeyJson::new(e, &self.public(e)))
            .collect()
    }
}

/// A mixnode of the test network.
#[derive(Clone, Debug)]
pub struct TestMixnode {
    /// Where packets for it go (nothing listens: the harness delivers).
    pub address: SocketAddr,
    /// 1, 2 or 3.
    pub layer: u8,
    /// Its Sphinx keys.
    pub keys: NodeKeys,
    /// Its identity, which signs its descriptor.
    pub identity: SigningKey,
}

/// A gateway of the test network (its behaviour is a [`FakeGateway`]).
#[derive(Clone, Debug)]
pub struct TestGatewayNode {
    /// Its mixnet listener: final hops and acks arrive here.
    pub mix_address: SocketAddr,
    /// Its client websocket URL, as the topology publishes it.
    pub url: String,
    /// Its Sphinx keys.
    pub keys: NodeKeys,
    /// Its identity: signs its descriptor and the client handshake; half of
    /// every address behind it.
    pub identity: SigningKey,
}

/// What a node did with a packet ([`TestNetwork::hop`]).
#[derive(Debug, PartialEq, Eq)]
pub enum Hop {
    /// A mixnode took its layer off: the packet goes on to `to` after the
    /// mixing `delay` the sender chose.
    Forward {
        /// The next node's address.
        to: SocketAddr,
        /// The packet for it, framed.
        frame: Vec<u8>,
        /// The hop's mixing delay.
        delay: Duration,
    },
    /// The packet reached gateway `n` (an index into
    /// [`TestNetwork::gateways`]): hand it to that gateway's
    /// [`FakeGateway::handle_packet`].
    Gateway(usize),
    /// Built for a key epoch the node no longer (or not yet) holds: nodes
    /// keep the previous, current and next epoch's keys. Lost, as on the
    /// real network.
    RetiredKey,
}

/// 3 layers of mixnodes and some gateways with known keys, and the 3
/// authorities that sign their document.
#[derive(Clone, Debug)]
pub struct TestNetwork {
    /// Every mixnode, layer by layer.
    pub mixnodes: Vec<TestMixnode>,
    /// Every gateway, by index.
    pub gateways: Vec<TestGatewayNode>,
    /// The first authority's key (the one that serves
    /// [`TestNetwork::signed_text`]; a single directory's key for a client
    /// that pins only it).
    pub directory: SigningKey,
    /// The 3 authorities' keys (the first is [`TestNetwork::directory`]):
    /// each signs [`TestNetwork::signed_text`]; see [`TestNetwork::authorities`].
    pub authority_keys: Vec<SigningKey>,
    /// The length of a key epoch, in seconds.
    pub epoch_length_secs: u64,
}

/// The address of mixnode `i` of `layer`: 127.0.0.1:(1000 + 10 x layer + i).
fn mixnode_address(layer: u8, i: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 1000 + 10 * u16::from(layer) + u16::from(i)))
}

impl TestNetwork {
    /// `per_layer[l]` mixnodes (at most 10) in layer `l + 1` and `gateways`
    /// gateways (at most 50), all in one key epoch. Mixnode `i` of layer
    /// `l` listens on port 1000 + 10 l + i; gateway `g` on 2000 + g for the
    /// mixnet and `ws://127.0.0.1:(3000 + g)` for clients.
    pub fn new(per_layer: [u8; 3], gateways: u8) -> Self {
        assert!(per_layer.iter().all(|&n| (1..=10).contains(&n)) && (1..=50).contains(&gateways));
        let mut mixnodes = Vec::new();
        for (layer, &count) in (1..=3u8).zip(&per_layer) {
            for i in 0..count {
                let seed = 10 * layer + i;
                mixnodes.push(TestMixnode {
                    address: mixnode_address(layer, i),
                    layer,
                    keys: NodeKeys(seed),
                    identity: SigningKey::from_bytes(&[seed; 32]),
                });
            }
        }
        let gateways = (0..gateways)
            .map(|g| TestGatewayNode {
                mix_address: SocketAddr::from(([127, 0, 0, 1], 2000 + u16::from(g))),
                url: format!("ws://127.0.0.1:{}", 3000 + u16::from(g)),
                keys: NodeKeys(200 + g),
                identity: SigningKey::from_bytes(&[200 + g; 32]),
            })
            .collect();
        TestNetwork {
            mixnodes,
            gateways,
            directory: SigningKey::from_bytes(&[42; 32]),
            authority_keys: (0..3).map(|i| SigningKey::from_bytes(&[42 + i; 32])).collect(),
            epoch_length_secs: ONE_EPOCH_SECS,
        }
    }

    /// The same network with key epochs of `secs` seconds: nodes publish,
    /// and [`TestNetwork::hop`] accepts, the keys of the epochs around the
    /// time asked for.
    pub fn with_epoch_length(mut self, secs: u64) -> Self {
        self.epoch_length_secs = secs;
        self
    }

    fn epoch_ms(&self) -> u64 {
        self.epoch_length_secs * 1000
    }

    /// The addresses of the mixnodes of `layer`.
    pub fn layer(&self, layer: u8) -> Vec<SocketAddr> {
        self.mixnodes
            .iter()
            .filter(|m| m.layer == layer)
            .map(|m| m.address)
            .collect()
    }

    /// Gateway `g`'s identity key: the second half of its clients' addresses.
    pub fn gateway_identity(&self, g: usize) -> [u8; 32] {
        self.gateways[g].identity.verifying_key().to_bytes()
    }

    /// The directory's document as of `unix_ms`, not yet signed by the
    /// directory: every node publishes this epoch's and the next epoch's
    /// keys and signs its descriptor.
    pub fn json(&self, unix_ms: u64) -> TopologyJson {
        let epoch_ms = self.epoch_ms();
        let mut json = TopologyJson {
            epoch_length_secs: self.epoch_length_secs,
            ..TopologyJson::default()
        };
        for m in &self.mixnodes {
            let sphinx_keys = m.keys.published(unix_ms, epoch_ms);
            let mut node = MixNodeJson {
                host: m.address.to_string(),
                pub_key: sphinx_keys[0].key.clone(),
                sphinx_keys,
                layer: m.layer,
                version: crate::VERSION.into(),
                location: "test".into(),
                ..MixNodeJson::default()
            };
            node.sign(&m.identity, unix_ms);
            json.mix_nodes.push(node);
        }
        for g in &self.gateways {
            let sphinx_keys = g.keys.published(unix_ms, epoch_ms);
            let mut node = GatewayJson {
                client_listener: g.url.clone(),
                mixnet_listener: g.mix_address.to_string(),
                sphinx_key: sphinx_keys[0].key.clone(),
                sphinx_keys,
                version: crate::VERSION.into(),
                location: "test".into(),
                ..GatewayJson::default()
            };
            node.sign(&g.identity, unix_ms);
            json.gateway_nodes.push(node);
        }
        json
    }

    /// The authorities that sign the network's document, pinned by their
    /// keys: authority `i` at `http://127.0.0.1:(4000 + i)` (nothing
    /// listens: the harness answers fetches), threshold 2 (a majority).
    pub fn authorities(&self) -> nym_wire::authority::Authorities {
        let list = (0u16..)
            .zip(&self.authority_keys)
            .map(|(i, k)| nym_wire::authority::Authority {
                key: k.verifying_key().to_bytes(),
                url: self.authority_url(usize::from(i)),
            })
            .collect();
        nym_wire::authority::Authorities::new(list, None).unwrap_or_else(|_| {
            nym_wire::authority::Authorities::single(self.directory.verifying_key().to_bytes(), self.authority_url(0))
        })
    }

    /// Where authority `i` serves.
    pub fn authority_url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", 4000 + i)
    }

    /// [`TestNetwork::json`] signed by every authority, valid from
    /// `unix_ms` for `validity_ms`, as the first authority serves it.
    pub fn signed_json(&self, unix_ms: u64, validity_ms: u64) -> TopologyJson {
        let mut json = self.json(unix_ms);
        (json.round, json.issued_at, json.expires_at) = (unix_ms / 1000, unix_ms, unix_ms + validity_ms);
        json.served_by = crate::encode_key(self.directory.verifying_key().as_bytes());
        for key in &self.authority_keys {
            json.sign(key);
        }
        json
    }

    /// [`TestNetwork::signed_json`] as text: what a topology fetch returns.
    pub fn signed_text(&self, unix_ms: u64, validity_ms: u64) -> String {
        serde_json::to_string(&self.signed_json(unix_ms, validity_ms)).unwrap_or_default()
    }

    /// The network as a client draws routes from it at `unix_ms`.
    pub fn topology(&self, unix_ms: u64) -> Result<Topology> {
        Ok(Topology::from_json(&self.json(unix_ms), crate::VERSION)?)
    }

    /// A [`FakeGateway`] for gateway `g`, its handshakes drawn from `rng_seed`.
    pub fn fake_gateway<C: Copy + Eq + Hash>(&self, g: usize, rng_seed: [u8; 32]) -> FakeGateway<C> {
        let node = &self.gateways[g];
        FakeGateway::new(node.identity.clone(), node.keys, node.url.clone(), rng_seed)
    }

    /// What the node listening on `at` does at `unix_ms` with a mix frame:
    /// a mixnode unwraps its layer; a gateway's packet is handed over. A
    /// packet for a key epoch more than one away from the current one is
    /// lost. Errors are bytes no node could take (garbage, nobody there).
    pub fn hop(&self, at: SocketAddr, frame: &[u8], unix_ms: u64) -> std::result::Result<Hop, String> {
        let (_, epoch, packet) = mix_frame::decode(frame).map_err(|e| format!("at {at}: {e}"))?;
        if epoch.abs_diff(epoch_at(unix_ms, self.epoch_ms())) > 1 {
            return Ok(Hop::RetiredKey);
        }
        if let Some(g) = self.gateways.iter().position(|g| g.mix_address == at) {
            return Ok(Hop::Gateway(g));
        }
        let node = self
            .mixnodes
            .iter()
            .find(|m| m.address == at)
            .ok_or_else(|| format!("no node listens on {at}"))?;
        let packet = SphinxPacket::from_bytes(packet).map_err(|e| format!("at {at}: {e}"))?;
        match packet
            .process(&node.keys.secret(epoch))
            .map_err(|e| format!("at {at}: {e}"))?
            .data
        {
            ProcessedPacketData::ForwardHop {
                next_hop_packet,
                next_hop_address,
                delay,
            } => {
                let to = decode_node_address(&next_hop_address).map_err(|e| e.to_string())?;
                let frame = mix_frame::encode(&next_hop_packet.to_bytes(), epoch).map_err(|e| e.to_string())?;
                Ok(Hop::Forward {
                    to,
                    frame,
                    delay: delay.to_duration(),
                })
            }
            ProcessedPacketData::FinalHop { .. } => Err(format!("mixnode {at} got a final hop")),
        }
    }
}
