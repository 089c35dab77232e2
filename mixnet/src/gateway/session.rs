//! A client's session: admission at accept, the websocket and Noise-style
//! handshake (bounded in time and bytes), registration, then the
//! authenticated connection: stored messages pushed in inbox order and
//! deleted when acknowledged, the client's packets forwarded to layer 1.

use super::admission::{Gated, Unauthenticated};
use super::inbox::RegisterError;
use super::store::{ClientSlot, Shared};
use crate::stats::{inc, Conn};
use anyhow::{anyhow, Result};
use futures_util::{SinkExt, StreamExt};
use nym_wire::address::encode_key;
use nym_wire::gateway::{ClientRequest, GatewayHandshake, GatewayResponse, Session};
use nym_wire::mix_frame;
use nym_wire::topology::decode_node_address;
use sphinx_packet::route::NodeAddressBytes;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Stored messages waiting in memory for a connection to send them; past it
/// the connection reads them from the inbox instead.
const CLIENT_QUEUE: usize = 1024;
const PUSH_BATCH: usize = 128;

pub(super) async fn serve_clients(listener: TcpListener, shared: Arc<Shared>, cancel: CancellationToken) {
    crate::listener::accept_until_cancelled(listener, &cancel.clone(), "accept failed", |stream, peer| {
        let slot = match shared.admission.admit(peer.ip(), Instant::now()) {
            Ok(slot) => slot,
            Err(refusal) => {
                // Closed at once: nothing read, nothing kept.
                inc(&shared.stats.refused_connections);
                tracing::debug!("client {peer} refused: {refusal}");
                return;
            }
        };
        let shared = shared.clone();
        let cancel = cancel.clone();
        let open = shared.stats.open_connection(Conn::Client);
        tokio::spawn(async move {
            let _open = open;
            if let Err(e) = handle_client(stream, slot, shared, cancel).await {
                tracing::debug!("client {peer}: {e:#}");
            }
        });
    })
    .await
}

type Ws = WebSocketStream<Gated<TcpStream>>;

/// The next binary frame (pings are answered by tungstenite).
async fn next_binary(ws: &mut Ws) -> Result<Vec<u8>> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Binary(b))) => return Ok(b.to_vec()),
            Some(Ok(Message::Close(_))) | None => return Err(anyhow!("client closed")),
            Some(Ok(Message::Text(_))) => return Err(anyhow!("client sent text during the handshake")),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
        }
    }
}

async fn handle_client(
    stream: TcpStream,
    unauthenticated: Unauthenticated,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) -> Result<()> {
    let _ = stream.set_nodelay(true);
    let (stream, gate) = Gated::new(stream, shared.admission.limits().max_handshake_bytes);
    let limits = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(shared.max_client_message))
        .max_frame_size(Some(shared.max_client_message));
    let mut ws =
        tokio::time::timeout(HANDSHAKE_TIMEOUT, tokio_tungstenite::accept_async_with_config(stream, Some(limits)))
            .await
            .map_err(|_| anyhow!("websocket handshake timed out"))??;
    let hello =
        tokio::time::timeout(HANDSHAKE_TIMEOUT, next_binary(&mut ws)).await.map_err(|_| anyhow!("no HELLO"))??;
    let responded = {
        let mut rng = rand::rng();
        GatewayHandshake::respond(&mut rng, &shared.identity, &hello)
    };
    let (pending, reply) = match responded {
        Ok(x) => x,
        Err(e) => {
            let _ = ws.close(None).await;
            return Err(e.into());
        }
    };
    ws.send(Message::Binary(reply.into())).await?;
    let auth = tokio::time::timeout(HANDSHAKE_TIMEOUT, next_binary(&mut ws))
        .await
        .map_err(|_| anyhow!("no Authenticate"))??;
    let (mut session, client_key) = match pending.verify(&auth) {
        Ok(x) => x,
        Err(e) => {
            // a client that cannot prove its key gets nothing
            let _ = ws.close(None).await;
            return Err(e.into());
        }
    };

    let conn_id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = mpsc::channel::<(i64, Vec<u8>)>(CLIENT_QUEUE);
    let wake = Arc::new(Notify::new());
    let stored = {
        let shared = shared.clone();
        let wake = wake.clone();
        tokio::task::spawn_blocking(move || -> Result<std::result::Result<u64, String>> {
            let mut inner = shared.lock();
            if !inner.inbox.is_registered(&client_key) {
                if let Err(refusal) = shared.admission.admit_registration(Instant::now()) {
                    return Ok(Err(refusal.to_string()));
                }
            }
            match inner.inbox.register(&client_key) {
                Ok(()) => {}
                Err(RegisterError::Full(n)) => {
                    return Ok(Err(format!("this gateway serves its maximum of {n} clients")))
                }
                Err(RegisterError::Db(e)) => return Err(anyhow!("cannot register the client: {e}")),
            }
            // A newer connection of the same client takes over; the older
            // one's unacknowledged messages are still in the inbox.
            inner.clients.insert(client_key, ClientSlot { conn_id, tx, overflowed: false, wake });
            Ok(Ok(inner.inbox.count(&client_key)))
        })
        .await
        .map_err(|e| anyhow!("{e}"))??
    };
    let stored = match stored {
        Ok(n) => n,
        Err(refusal) => {
            // The session is up, so the client can read why.
            inc(&shared.stats.refused_connections);
            let frame = session.seal(&GatewayResponse::Error { message: refusal.clone() }.encode());
            let _ = ws.send(Message::Binary(frame.into())).await;
            let _ = ws.close(None).await;
            return Err(anyhow!("registration refused: {refusal}"));
        }
    };
    // Authenticated: the handshake allowance and slot no longer apply.
    gate.open();
    drop(unauthenticated);
    let _authenticated = shared.stats.open_connection(Conn::ClientAuthenticated);
    tracing::debug!("client {} authenticated, {stored} stored messages", encode_key(&client_key));

    let mut conn = ClientConnection {
        cut: shared.cut.subscribe(),
        ws,
        session,
        shared: shared.clone(),
        client_key,
        conn_id,
        rx,
        wake,
        last_sent: 0,
        read_inbox: true,
        next_delivery: 1,
        outstanding: HashMap::new(),
    };
    let result = conn.run(stored, &cancel).await;
    let was_cut = matches!(result, Ok(Ended::Cut));
    // Whatever it did not acknowledge stays in the inbox for the next connection.
    let shared2 = shared.clone();
    let _ = tokio::task::spawn_blocking(move || {
        let mut inner = shared2.lock();
        if inner.clients.get(&client_key).is_some_and(|s| s.conn_id == conn_id) {
            inner.clients.remove(&client_key);
        }
    })
    .await;
    if was_cut {
        // A reset, no close: frames in flight either way are lost.
        #[allow(deprecated)]
        let _ = conn.ws.get_ref().get_ref().set_linger(Some(Duration::ZERO));
        return Err(anyhow!("connection cut"));
    }
    let _ = conn.ws.close(None).await;
    result.map(|_| ())
}

/// How a client connection ended without an error.
enum Ended {
    Closed,
    Cut,
}

/// One authenticated client connection.
struct ClientConnection {
    cut: tokio::sync::watch::Receiver<u64>,
    ws: Ws,
    session: Session,
    shared: Arc<Shared>,
    client_key: [u8; 32],
    conn_id: u64,
    rx: mpsc::Receiver<(i64, Vec<u8>)>,
    wake: Arc<Notify>,
    /// Highest inbox id sent on this connection; messages go out in id order.
    last_sent: i64,
    /// The inbox may hold messages not sent yet: read it before the channel.
    read_inbox: bool,
    next_delivery: u64,
    /// Delivery id -> inbox id, sent and not yet acknowledged.
    outstanding: HashMap<u64, i64>,
}

impl ClientConnection {
    async fn run(&mut self, stored: u64, cancel: &CancellationToken) -> Result<Ended> {
        let stored = u32::try_from(stored).unwrap_or(u32::MAX);
        self.send(&GatewayResponse::Authenticated { stored }).await?;
        loop {
            if self.read_inbox {
                self.push_from_inbox().await?;
            }
            tokio::select! {
                _ = cancel.cancelled() => return Ok(Ended::Closed),
                _ = self.cut.changed() => return Ok(Ended::Cut),
                msg = self.rx.recv(), if !self.read_inbox => {
                    let Some((id, payload)) = msg else { return Ok(Ended::Closed) };
                    // Already sent when it was read from the inbox.
                    if id > self.last_sent {
                        self.push(id, payload).await?;
                    }
                }
                _ = self.wake.notified() => self.read_inbox = true,
                _ = std::future::ready(()), if self.read_inbox => {}
                frame = self.ws.next() => {
                    let bytes = match frame {
                        Some(Ok(Message::Binary(b))) => b,
                        Some(Ok(Message::Close(_))) | None => return Ok(Ended::Closed),
                        Some(Ok(Message::Text(_))) => {
                            self.send(&GatewayResponse::Error { message: "only binary frames are accepted".into() }).await?;
                            continue;
                        }
                        Some(Ok(_)) => continue,
                        Some(Err(e)) => return Err(e.into()),
                    };
                    let request = self.session.open(&bytes).and_then(|pt| ClientRequest::decode(&pt));
                    let result = match request {
                        Ok(ClientRequest::Ack { ids }) => self.acknowledged(&ids).await,
                        Ok(ClientRequest::Forward { next_hop, frame }) => match forward(&self.shared, next_hop, frame).await {
                            Err(Forwarded::Refused { packet }) => {
                                // Not an error of the client's: the node left. It
                                // learns which packet to send again, on a live route.
                                inc(&self.shared.stats.dropped_no_route);
                                self.send(&GatewayResponse::Refused { next_hop, packet }).await?;
                                Ok(())
                            }
                            Err(Forwarded::Bad(message)) => Err(message),
                            Ok(()) => Ok(()),
                        },
                        Ok(ClientRequest::Authenticate) => Err("already authenticated".into()),
                        Err(e) => Err(e.to_string()),
                    };
                    if let Err(message) = result {
                        self.send(&GatewayResponse::Error { message }).await?;
                    }
                }
            }
        }
    }

    async fn send(&mut self, response: &GatewayResponse) -> Result<()> {
        let frame = self.session.seal(&response.encode());
        self.ws.send(Message::Binary(frame.into())).await?;
        Ok(())
    }

    async fn push(&mut self, inbox_id: i64, payload: Vec<u8>) -> Result<()> {
        let id = self.next_delivery;
        self.next_delivery += 1;
        self.outstanding.insert(id, inbox_id);
        self.last_sent = inbox_id;
        inc(&self.shared.stats.pushed);
        self.send(&GatewayResponse::Deliver { id, payload }).await
    }

    /// Sends the next batch of stored messages not sent on this connection;
    /// stops reading the inbox once it is caught up.
    async fn push_from_inbox(&mut self) -> Result<()> {
        let batch = {
            let shared = self.shared.clone();
            let (key, conn_id, after) = (self.client_key, self.conn_id, self.last_sent);
            tokio::task::spawn_blocking(move || {
                let mut inner = shared.lock();
                // Cleared and read under one lock: whatever the writer stores
                // after this goes into the channel, in order.
                if let Some(slot) = inner.clients.get_mut(&key).filter(|s| s.conn_id == conn_id) {
                    slot.overflowed = false;
                }
                inner.inbox.load(&key, after, PUSH_BATCH)
            })
            .await
            .map_err(|e| anyhow!("{e}"))??
        };
        if batch.len() < PUSH_BATCH {
            self.read_inbox = false;
        }
        for (inbox_id, payload) in batch {
            self.push(inbox_id, payload).await?;
        }
        Ok(())
    }

    /// The client has these deliveries: delete them from the inbox.
    async fn acknowledged(&mut self, ids: &[u64]) -> Result<(), String> {
        let inbox_ids: Vec<i64> = ids.iter().filter_map(|id| self.outstanding.remove(id)).collect();
        let unknown = (ids.len() - inbox_ids.len()) as u64;
        if unknown > 0 {
            self.shared.stats.bad_acks.fetch_add(unknown, Ordering::Relaxed);
        }
        if inbox_ids.is_empty() {
            return Ok(());
        }
        let shared = self.shared.clone();
        let key = self.client_key;
        let deleted = tokio::task::spawn_blocking(move || shared.lock().inbox.delete(&key, &inbox_ids))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| {
                tracing::error!("cannot delete acknowledged messages: {e:#}");
                "the gateway could not record the acknowledgement; the messages may come again".to_string()
            })?;
        self.shared.stats.delivered.fetch_add(deleted, Ordering::Relaxed);
        Ok(())
    }
}

/// Why a client's `Forward` (a well-framed packet to a layer-1 mixnode) was not sent.
enum Forwarded {
    /// Its first hop is not a layer-1 mixnode of the topology: `packet` is
    /// the packet's tag.
    Refused { packet: [u8; 32] },
    /// Malformed.
    Bad(String),
}

async fn forward(shared: &Arc<Shared>, next_hop: [u8; 32], frame: Vec<u8>) -> Result<(), Forwarded> {
    let (_, _, packet) = mix_frame::decode(&frame).map_err(|e| Forwarded::Bad(e.to_string()))?;
    let tag = mix_frame::packet_tag(packet);
    let addr =
        decode_node_address(&NodeAddressBytes::from_bytes(next_hop)).map_err(|e| Forwarded::Bad(e.to_string()))?;
    if shared.check_next_hop(&addr).await.is_err() {
        return Err(Forwarded::Refused { packet: tag });
    }
    shared.pool.send(addr, frame);
    Ok(())
}
