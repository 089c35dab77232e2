#![allow(dead_code)]
//! Test helpers: real Sphinx packets, a minimal gateway client, a TCP sink,
//! metrics scrapes ([`exposition`] reads them).

pub mod exposition;

pub use exposition::Sample;

use futures_util::{SinkExt, StreamExt};
use nym_wire::epoch::{epoch_at, KeyEpoch, DEFAULT_EPOCH_SECS};
use nym_wire::gateway::{ClientHandshake, ClientRequest, GatewayResponse, Session};
use nym_wire::mix_frame::{self, FrameDecoder, PacketSize};
use nym_wire::topology::{encode_node_address, EpochKeyJson, TopologyJson};
use sphinx_packet::header::delays::Delay;
use sphinx_packet::packet::builder::SphinxPacketBuilder;
use sphinx_packet::route::{Destination, DestinationAddressBytes, Node};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use x25519_dalek::{PublicKey, StaticSecret};

/// Node processes a test started: SIGTERM on drop (a clean shutdown), then
/// SIGKILL for any still running after 3 s.
pub struct Procs(pub Vec<std::process::Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        for c in &mut self.0 {
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn random_secret() -> StaticSecret {
    let mut b = [0u8; 32];
    rand::fill(&mut b);
    StaticSecret::from(b)
}

pub fn node(addr: SocketAddr, key: PublicKey) -> Node {
    Node::new(encode_node_address(addr), key)
}

/// A mix frame (flag, key epoch, Sphinx packet) carrying `msg` over `route`
/// (built with the nodes' keys of `epoch`) to `dest`, shaped as the client
/// engine shapes payloads: a SURB-ACK slot first (here an empty one, which a
/// gateway drops), then the content it delivers.
pub fn build_frame(msg: &[u8], route: &[Node], dest: &PublicKey, delays_ms: &[u64], epoch: KeyEpoch) -> Vec<u8> {
    let destination = Destination::new(DestinationAddressBytes::from_bytes(*dest.as_bytes()), [0; 16]);
    let delays: Vec<Delay> = delays_ms.iter().map(|d| Delay::new_from_millis(*d)).collect();
    let payload = [&[0u8; nym_wire::surb_ack::SURB_ACK_LEN][..], msg].concat();
    let packet = SphinxPacketBuilder::new()
        .with_payload_size(PacketSize::Regular.sphinx_payload_size())
        .build_packet(&payload, route, &destination, &delays)
        .expect("build packet");
    mix_frame::encode(&packet.to_bytes(), epoch).expect("encode frame")
}

/// The keys of the epoch of `seq` (default epoch length) and the next, for
/// hand-made descriptors: derived from `seed`.
pub fn epoch_keys(seed: u8, seq: u64) -> Vec<EpochKeyJson> {
    let epoch = epoch_at(seq, DEFAULT_EPOCH_SECS * 1000);
    vec![
        EpochKeyJson {
            epoch,
            key: b58_x25519(seed),
        },
        EpochKeyJson {
            epoch: epoch + 1,
            key: b58_x25519(seed.wrapping_add(128)),
        },
    ]
}

pub async fn send_tcp(addr: SocketAddr, bytes: &[u8]) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    s.flush().await.expect("flush");
    // give the node time to read before we close
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// Polls `cond` until true or the timeout elapses.
pub async fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}

/// A TCP sink that decodes and keeps every mix packet it receives.
pub struct Sink {
    pub addr: SocketAddr,
    pub packets: Arc<Mutex<Vec<Vec<u8>>>>,
    pub count: Arc<AtomicU64>,
}

impl Sink {
    pub async fn start(keep: bool) -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind sink");
        let addr = listener.local_addr().expect("addr");
        let packets: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let count = Arc::new(AtomicU64::new(0));
        let (p, c) = (packets.clone(), count.clone());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let (p, c) = (p.clone(), c.clone());
                tokio::spawn(async move {
                    let mut d = FrameDecoder::new();
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        d.push(&buf[..n]);
                        while let Ok(Some(pkt)) = d.next_packet() {
                            c.fetch_add(1, Ordering::Relaxed);
                            if keep {
                                p.lock().unwrap().push(pkt.packet);
                            }
                        }
                    }
                });
            }
        });
        Sink { addr, packets, count }
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// A minimal gateway client.
pub struct TestClient {
    pub ws: Ws,
    pub session: Session,
    pub stored: u32,
    /// Delivery ids received and not acknowledged yet.
    pub unacked: Vec<u64>,
}

impl TestClient {
    /// Connects, does the handshake; Err when the gateway refuses.
    pub async fn connect(url: &str, key: &StaticSecret, gateway_identity: [u8; 32]) -> Result<TestClient, String> {
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.map_err(|e| e.to_string())?;
        let (hs, hello) = {
            let mut rng = rand::rng();
            ClientHandshake::start(&mut rng, key, gateway_identity)
        };
        ws.send(Message::Binary(hello.into()))
            .await
            .map_err(|e| e.to_string())?;
        let reply = next_binary(&mut ws, Duration::from_secs(5))
            .await
            .ok_or("no handshake reply")?;
        let (mut session, auth) = hs.finish(&reply).map_err(|e| e.to_string())?;
        ws.send(Message::Binary(auth.into())).await.map_err(|e| e.to_string())?;
        let frame = next_binary(&mut ws, Duration::from_secs(5))
            .await
            .ok_or("no Authenticated")?;
        match GatewayResponse::decode(&session.open(&frame).map_err(|e| e.to_string())?) {
            Ok(GatewayResponse::Authenticated { stored }) => Ok(TestClient {
                ws,
                session,
                stored,
                unacked: Vec::new(),
            }),
            other => Err(format!("unexpected {other:?}")),
        }
    }

    pub async fn forward(&mut self, next_hop: [u8; 32], frame: Vec<u8>) {
        let sealed = self.session.seal(&ClientRequest::Forward { next_hop, frame }.encode());
        self.ws.send(Message::Binary(sealed.into())).await.expect("send");
    }

    pub async fn send_raw(&mut self, bytes: Vec<u8>) {
        self.ws.send(Message::Binary(bytes.into())).await.expect("send");
    }

    /// The next response, or None after `timeout`.
    pub async fn recv(&mut self, timeout: Duration) -> Option<GatewayResponse> {
        let frame = next_binary(&mut self.ws, timeout).await?;
        GatewayResponse::decode(&self.session.open(&frame).ok()?).ok()
    }

    pub async fn recv_deliveries(&mut self, n: usize, timeout: Duration) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        while out.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv(left).await {
                Some(GatewayResponse::Deliver { id, payload }) => {
                    self.unacked.push(id);
                    out.push(payload)
                }
                Some(_) => {}
                None => break,
            }
        }
        out
    }

    /// Acknowledges these delivery ids (sealed, as a client does).
    pub async fn ack(&mut self, ids: Vec<u64>) {
        let sealed = self.session.seal(&ClientRequest::Ack { ids }.encode());
        self.ws.send(Message::Binary(sealed.into())).await.expect("send");
    }

    /// Acknowledges everything received so far.
    pub async fn ack_all(&mut self) {
        let ids = std::mem::take(&mut self.unacked);
        if !ids.is_empty() {
            self.ack(ids).await;
        }
    }

    /// Drops the connection with a TCP reset, no websocket close (as a
    /// crash or a network cut does).
    pub fn cut(self) {
        if let tokio_tungstenite::MaybeTlsStream::Plain(tcp) = self.ws.get_ref() {
            // A zero linger resets at once: the drop does not block.
            #[allow(deprecated)]
            let _ = tcp.set_linger(Some(Duration::ZERO));
        }
        drop(self);
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

pub async fn next_binary(ws: &mut Ws, timeout: Duration) -> Option<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, ws.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => return Some(b.to_vec()),
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) | Err(_) => return None,
            Ok(Some(Ok(_))) => continue,
        }
    }
}

pub fn gateway_identity(topo: &TopologyJson, i: usize) -> [u8; 32] {
    nym_wire::address::decode_key(&topo.gateway_nodes[i].identity_key, "gw").expect("identity")
}

/// Unix time in milliseconds (what nodes use as a descriptor's seq).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

pub fn identity(seed: u8) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
}

pub fn b58_x25519(seed: u8) -> String {
    nym_wire::address::encode_key(PublicKey::from(&StaticSecret::from([seed; 32])).as_bytes())
}

/// A mixnode descriptor for `host`, signed by `key` with `seq`.
pub fn signed_mix(key: &ed25519_dalek::SigningKey, layer: u8, host: &str, seq: u64) -> nym_wire::topology::MixNodeJson {
    let mut m = nym_wire::topology::MixNodeJson {
        identity_key: String::new(),
        host: host.into(),
        pub_key: b58_x25519(key.to_bytes()[0]),
        sphinx_keys: epoch_keys(key.to_bytes()[0], seq),
        layer,
        version: nym_wire::VERSION.into(),
        location: "test".into(),
        last_seen: 0,
        seq: 0,
        signature: String::new(),
    };
    m.sign(key, seq);
    m
}

/// A gateway descriptor with mixnet listener `mix` and client listener
/// `ws://<clients>`, signed by `key` with `seq`.
pub fn signed_gateway(
    key: &ed25519_dalek::SigningKey,
    mix: &str,
    clients: &str,
    seq: u64,
) -> nym_wire::topology::GatewayJson {
    let mut g = nym_wire::topology::GatewayJson {
        client_listener: format!("ws://{clients}"),
        mixnet_listener: mix.into(),
        identity_key: String::new(),
        sphinx_key: b58_x25519(key.to_bytes()[0].wrapping_add(1)),
        sphinx_keys: epoch_keys(key.to_bytes()[0].wrapping_add(1), seq),
        version: nym_wire::VERSION.into(),
        location: "test".into(),
        last_seen: 0,
        seq: 0,
        signature: String::new(),
    };
    g.sign(key, seq);
    g
}

/// How long the metrics helpers wait for an answer, or for counters to move.
pub const METRICS_WAIT: Duration = Duration::from_secs(10);

/// One HTTP exchange over a fresh connection: `request` as is, the answer
/// read to its end (the endpoint closes after one answer): (status, head, body).
/// A reset after the answer (the server closing with part of an oversized
/// request unread) ends the answer.
pub async fn http(addr: SocketAddr, request: &[u8]) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect to the metrics port");
    let _ = s.write_all(request).await;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(METRICS_WAIT, s.read(&mut buf))
            .await
            .expect("answered in time")
        {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    let answer = String::from_utf8(answer).expect("UTF-8 answer");
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

/// `GET /metrics`: its samples, after checking the status and content type.
pub async fn scrape(addr: SocketAddr) -> Vec<Sample> {
    let (status, head, body) = http(addr, b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n").await;
    assert_eq!(status, 200, "{head}\n{body}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    exposition::parse(&body).unwrap_or_else(|e| panic!("{e}\n{body}"))
}

/// The value of `name{labels}` (labels in the order the node writes them).
pub fn get(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<u64> {
    samples
        .iter()
        .find(|(n, l, _)| {
            n == name && l.len() == labels.len() && l.iter().zip(labels).all(|((k, v), (k2, v2))| k == k2 && v == v2)
        })
        .map(|s| s.2 as u64)
}

pub fn val(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> u64 {
    get(samples, name, labels).unwrap_or_else(|| panic!("{name}{labels:?} missing"))
}

pub fn dropped(samples: &[Sample], reason: &str) -> u64 {
    val(samples, "nym_packets_dropped_total", &[("reason", reason)])
}

/// Scrapes until `cond` holds (counters move as packets are processed).
pub async fn scrape_until(addr: SocketAddr, mut cond: impl FnMut(&[Sample]) -> bool) -> Vec<Sample> {
    let deadline = Instant::now() + METRICS_WAIT;
    loop {
        let samples = scrape(addr).await;
        if cond(&samples) || Instant::now() > deadline {
            return samples;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
