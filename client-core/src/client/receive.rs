//! What the gateway delivers, and acknowledging it.
//!
//! Each delivery is one packet's payload: an ack of one of our packets,
//! loop cover coming home, a fragment sealed to our key, or a fragment of a
//! reply through one of our SURBs. Fragments are reassembled into messages;
//! a message is for the application, or is reply bookkeeping (SURBs for us,
//! a request for more of ours).
//!
//! The gateway keeps each delivery until we acknowledge its id, and ids
//! mean something only on the connection they came on. [`DeliveryAcks`]
//! owns that: a delivery is acknowledged once nothing waits for it any
//! more (at once for acks, cover and garbage; for a fragment, once its
//! message is handed to the application or otherwise done with, or its
//! set is dropped), and never on a later connection (it comes again there
//! and is recognised).

use super::{Client, ClientEvent, ReceivedMessage};
use crate::ack;
use crate::fragment::{Completed, Fragment, Insert, Receipt};
use crate::payload::{self, PayloadKind};
use crate::reply::Envelope;
use nym_wire::topology::decode_node_address;
use nym_wire::gateway::{ClientRequest, GatewayResponse, MAX_ACK_IDS};
use sphinx_packet::route::NodeAddressBytes;
use std::time::Duration;

/// Gateway deliveries to acknowledge on the current connection.
#[derive(Default)]
pub(super) struct DeliveryAcks {
    /// Counts gateway connections: delivery ids mean something only on theirs.
    connection: u64,
    /// Delivery ids of the current connection to acknowledge.
    pending: Vec<u64>,
}

impl DeliveryAcks {
    /// A new connection: what the old one delivered comes again.
    pub(super) fn new_connection(&mut self) {
        self.connection += 1;
        self.pending.clear();
    }

    /// The connection closed: its acks can't go out any more.
    pub(super) fn connection_lost(&mut self) {
        self.pending.clear();
    }

    /// Delivery `id` of the current connection.
    fn receipt(&self, delivery: u64) -> Receipt {
        Receipt { connection: self.connection, delivery }
    }

    /// Deliveries nothing waits for any more: acknowledged with the next
    /// ack frame, if they came on the current connection.
    pub(super) fn release(&mut self, receipts: impl IntoIterator<Item = Receipt>) {
        let connection = self.connection;
        self.pending.extend(receipts.into_iter().filter(|r| r.connection == connection).map(|r| r.delivery));
    }

    /// Up to [`MAX_ACK_IDS`] delivery ids to acknowledge, oldest first.
    fn take(&mut self) -> Vec<u64> {
        let take = self.pending.len().min(MAX_ACK_IDS);
        self.pending.drain(..take).collect()
    }
}

impl Client {
    pub(super) fn handle_response(&mut self, response: GatewayResponse, now: Duration) {
        match response {
            GatewayResponse::Deliver { id, payload } => {
                let receipt = self.delivery_acks.receipt(id);
                let unneeded = self.handle_payload(&payload, receipt, now);
                self.delivery_acks.release(unneeded);
                let released = self.reassembler.take_released();
                self.delivery_acks.release(released);
            }
            GatewayResponse::Error { message } => self.push_event(ClientEvent::GatewayError(message)),
            GatewayResponse::Refused { next_hop, packet } => self.route_refused(next_hop, packet),
            GatewayResponse::Authenticated { .. } => {}
        }
    }

    /// The gateway did not send a packet of ours: its first hop is not a
    /// layer-1 mixnode the gateway knows (it left the network). That node
    /// leaves our routes until the next topology, and the packet goes back
    /// to be sent again at once on a live route: not a loss, so not counted
    /// as a retransmission. When no route can avoid the node (the last of
    /// its layer) it is counted like a loss, so it can't loop for ever. The
    /// driver fetches the topology.
    fn route_refused(&mut self, next_hop: [u8; 32], packet: [u8; 32]) {
        let node = decode_node_address(&NodeAddressBytes::from_bytes(next_hop));
        let avoided = match (&node, self.topology.as_mut()) {
            (Ok(address), Some(topology)) => topology.avoid_mixnode(*address),
            _ => false,
        };
        if let Some(mut fragment) = self.in_flight.refused(&packet) {
            if avoided {
                self.stats.rerouted_packets += 1;
                self.queue.push_retransmission(fragment);
            } else if fragment.retransmissions >= self.config.max_retransmissions {
                let recipient = fragment.recipient();
                self.fail_message(fragment.message_id, recipient, "no route avoids a departed first hop".into());
            } else {
                fragment.retransmissions += 1;
                self.stats.retransmissions += 1;
                self.queue.push_retransmission(fragment);
            }
        }
        let first_hop = node.map_or_else(|e| e.to_string(), |a| a.to_string());
        self.push_event(ClientEvent::RouteRefused { first_hop });
    }

    /// Returns the receipt when nothing waits for it (cover, acks, garbage);
    /// fragments keep theirs in the reassembler.
    fn handle_payload(&mut self, payload: &[u8], receipt: Receipt, now: Duration) -> Option<Receipt> {
        self.stats.packets_received += 1;
        if payload.len() == ack::ACK_PAYLOAD_LEN {
            match self.ack_key.open(payload) {
                Some(id) => {
                    self.stats.acks_received += 1;
                    self.in_flight.acknowledged(id);
                }
                None => self.stats.malformed_packets += 1,
            }
            return Some(receipt);
        }
        let opened = if payload.len() == 16 + self.config.packet_size.sphinx_payload_size() {
            self.open_reply(payload)
        } else {
            payload::open(self.keys.secret(), payload)
        };
        match opened {
            Ok((PayloadKind::LoopCover, _)) => self.stats.cover_packets_received += 1,
            Ok((PayloadKind::Fragment, body)) => match Fragment::decode(&body) {
                // The reassembler holds or releases the receipt from here on.
                Ok(f) => {
                    match self.reassembler.insert_received(f, Some(receipt), now) {
                        Insert::Complete(message) => {
                            let completed = self.reassembler.take_completed();
                            self.handle_message(message, completed, now);
                        }
                        Insert::Duplicate => self.stats.duplicate_fragments += 1,
                        Insert::Inconsistent => self.stats.malformed_packets += 1,
                        Insert::Buffered => {}
                    }
                    return None;
                }
                Err(_) => self.stats.malformed_packets += 1,
            },
            Err(_) => self.stats.malformed_packets += 1,
        }
        Some(receipt)
    }

    /// A reassembled message: an application's goes out as an event that
    /// carries its receipts; anything else is done with once handled.
    fn handle_message(&mut self, message: Vec<u8>, completed: Completed, now: Duration) {
        let Completed { sets, receipts } = completed;
        let for_application = match Envelope::decode(message) {
            Ok(Envelope::Plain(m)) => Some((m, None)),
            Ok(Envelope::Repliable { sender_tag, surbs, message }) => {
                self.add_reply_surbs(sender_tag, surbs);
                Some((message, Some(sender_tag)))
            }
            Ok(Envelope::MoreSurbs { sender_tag, surbs }) => {
                self.add_reply_surbs(sender_tag, surbs);
                None
            }
            Ok(Envelope::SurbRequest { sender_tag, count }) => {
                self.answer_surb_request(sender_tag, count, now);
                None
            }
            Err(_) => {
                self.stats.malformed_packets += 1;
                None
            }
        };
        match for_application {
            Some((message, sender_tag)) => {
                self.stats.messages_received += 1;
                let event = ClientEvent::Received(ReceivedMessage { message, sender_tag, sets });
                self.events.push_back((event, receipts));
            }
            None => self.delivery_acks.release(receipts),
        }
    }

    /// Drops incomplete messages that stopped coming; their deliveries are
    /// acknowledged.
    pub(super) fn expire_incomplete(&mut self, now: Duration) {
        self.stats.expired_sets += self.reassembler.expire(now) as u64;
        let released = self.reassembler.take_released();
        self.delivery_acks.release(released);
    }

    /// One sealed `Ack` for up to [`MAX_ACK_IDS`] pending delivery ids,
    /// once the session is up.
    pub(super) fn next_ack_frame(&mut self) -> Option<Vec<u8>> {
        if self.delivery_acks.pending.is_empty() || !self.gateway.is_up() {
            return None;
        }
        let ids = self.delivery_acks.take();
        self.stats.deliveries_acknowledged += ids.len() as u64;
        self.gateway.seal(&ClientRequest::Ack { ids }).ok()
    }
}
