//! What each send builds: the gateway frames of real packets, reply
//! packets and loop cover.
//!
//! A real packet to an address is a Sphinx packet along a fresh random
//! route, its payload sealed to the recipient's key and prefixed with a
//! SURB-ACK that brings an ack id back to us; it is tracked in flight until
//! that ack comes (see `retransmit`). A reply goes through a SURB the
//! recipient gave us. Loop cover is a real packet to ourselves that nobody
//! waits for. Every frame is sealed for the gateway's session. A packet and
//! its SURB-ACK are built with the nodes' keys of the current key epoch,
//! which its frame names; a reply's frame names its SURB's epoch.
//!
//! Packets are built only when their turn comes (a Poisson tick, or the
//! shim asking an unthrottled client), never while queued.

use super::send_queue::{bytes_in_turn, messages_in_turn, Via};
use super::Client;
use crate::ack;
use crate::packet::build_sphinx_packet;
use crate::address::Recipient;
use crate::error::{Error, Result};
use crate::payload::{self, PayloadKind};
use crate::reply;
use nym_wire::gateway::ClientRequest;
use nym_wire::mix_frame;
use rand::Rng;
use std::time::Duration;
use x25519_dalek::PublicKey;

impl Client {
    /// One tick of the main stream: the next real packet, else cover.
    pub(super) fn send_next_real_or_cover(&mut self, now: Duration) {
        if !self.send_next_real(now) {
            self.send_cover(now);
        }
    }

    /// Sends the next queued fragment; false when the queue is empty or too
    /// many packets await their ack. `now` dates the packet: its key epoch,
    /// its ack deadline.
    pub(super) fn send_next_real(&mut self, now: Duration) -> bool {
        while self.in_flight.len() < self.config.max_unacknowledged {
            let Some(q) = self.queue.pop(messages_in_turn(&self.config), bytes_in_turn(&self.config)) else { break };
            let recipient = match &q.via {
                Via::Forward(recipient) => *recipient,
                Via::Surb(surb) => match self.build_reply_frame(surb, &q.fragment, now) {
                    Ok(frame) => {
                        self.stats.real_packets_sent += 1;
                        self.transmits.push_back(frame);
                        return true;
                    }
                    Err(e) => {
                        self.fail_message(q.message_id, None, e.to_string());
                        continue;
                    }
                },
            };
            let ack_id = self.rng.next_u64();
            match self.build_frame(&recipient, PayloadKind::Fragment, &q.fragment, ack_id, now) {
                Ok((frame, round_trip_delay, tag)) => {
                    self.stats.real_packets_sent += 1;
                    self.transmits.push_back(frame);
                    self.in_flight.sent(ack_id, tag, q, now, round_trip_delay, &self.config);
                    return true;
                }
                Err(e) => self.fail_message(q.message_id, Some(recipient), e.to_string()),
            }
        }
        false
    }

    /// One loop cover packet to ourselves, built for the key epoch of `now`.
    pub(super) fn send_cover(&mut self, now: Duration) {
        let me = self.address();
        // Its ack id is random and not tracked: the ack is dropped on arrival.
        let ack_id = self.rng.next_u64();
        if let Ok((frame, _, _)) = self.build_frame(&me, PayloadKind::LoopCover, &[], ack_id, now) {
            self.stats.cover_packets_sent += 1;
            self.transmits.push_back(frame);
        }
    }

    /// One sealed gateway frame carrying a reply fragment through `surb`.
    fn build_reply_frame(&mut self, surb: &[u8], fragment: &[u8], now: Duration) -> Result<Vec<u8>> {
        let size = self.config.packet_size;
        let (epoch, surb) = reply::split_surb(surb)?;
        if !self.surb_usable(epoch, now) {
            return Err(nym_wire::Error::NoRoute(format!(
                "the reply's SURB was made for key epoch {epoch}, which the mixnet has retired"
            ))
            .into());
        }
        let content = payload::encode_content(PayloadKind::Fragment, fragment, size.plaintext_size());
        let (packet, first_hop) = sphinx_packet::SURB::from_bytes(surb)?.use_surb(&content, size.sphinx_payload_size())?;
        let frame = mix_frame::encode(&packet.to_bytes(), epoch)?;
        self.gateway.seal(&ClientRequest::Forward { next_hop: first_hop.to_bytes(), frame })
    }

    /// One sealed gateway frame carrying one Sphinx packet (with a SURB-ACK
    /// for `ack_id`) to `recipient`, the total mixing delay of the packet
    /// and its ack, and the packet's tag; built for the key epoch of `now`.
    fn build_frame(
        &mut self,
        recipient: &Recipient,
        kind: PayloadKind,
        body: &[u8],
        ack_id: u64,
        now: Duration,
    ) -> Result<(Vec<u8>, Duration, [u8; 32])> {
        if !self.is_connected() {
            return Err(Error::NotConnected);
        }
        let me = self.address();
        let epoch = self.key_epoch(now)?;
        let topology = self.topology.as_ref().ok_or_else(|| nym_wire::Error::NoRoute("no network topology".into()))?;
        let hop_delay = self.config.average_hop_delay;
        let (surb_ack, ack_delay) = ack::build_surb_ack(&mut self.rng, topology, &me, &self.ack_key, ack_id, hop_delay, epoch)?;
        let route = topology.random_route(&mut self.rng, &recipient.gateway_key, epoch)?;
        let sealed = payload::seal(&mut self.rng, &PublicKey::from(recipient.client_key), kind, body, self.config.packet_size)?;
        let payload = [surb_ack.as_slice(), &sealed].concat();
        let (packet, delay) = build_sphinx_packet(&mut self.rng, &route, recipient, &payload, hop_delay, self.config.packet_size)?;
        let tag = mix_frame::packet_tag(&packet);
        let request = ClientRequest::Forward { next_hop: route[0].address.to_bytes(), frame: mix_frame::encode(&packet, epoch)? };
        Ok((self.gateway.seal(&request)?, delay + ack_delay, tag))
    }
}

