//! A gateway's lifecycle: [`Gateway::start`] opens the inbox, binds the
//! mixnet and client listeners, builds the node on its [`Chassis`] and
//! starts the workers, the writer, the sessions and the expiry;
//! [`Gateway::shutdown`] stops them in order. Also what a running gateway
//! tells (addresses, keys, inbox counts).

use super::admission::Admission;
use super::config::{GatewayConfig, MIN_MAX_CLIENT_MESSAGE};
use super::inbox::Inbox;
use super::session::serve_clients;
use super::store::{expire_periodically, start_inbox_writer, Inbound, Inner, Shared, STORE_QUEUE};
use crate::epochs::SphinxKeys;
use crate::node::{Chassis, ChassisConfig, Role};
use crate::pool::PeerPool;
use crate::processor::{default_workers, serve_mix_listener, start_workers, Handler, Processed};
use crate::stats::{inc, NodeStats};
use anyhow::{anyhow, Result};
use nym_wire::address::encode_key;
use nym_wire::topology::{GatewayJson, Topology};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use x25519_dalek::PublicKey;

/// A running gateway.
pub struct Gateway {
    chassis: Chassis,
    mix_addr: SocketAddr,
    clients_addr: SocketAddr,
    announce_host: String,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl Gateway {
    pub async fn start(config: GatewayConfig) -> Result<Gateway> {
        // the data dir (0700) before the inbox in it; the chassis keeps its keys there too
        crate::keyfiles::ensure_dir(&config.data_dir)?;
        let inbox = {
            let dir = config.data_dir.clone();
            let limits = config.inbox;
            tokio::task::spawn_blocking(move || Inbox::open(&dir, limits))
                .await
                .map_err(|e| anyhow!("{e}"))??
        };
        let gauges = inbox.gauges();
        let chassis = Chassis::start(
            ChassisConfig {
                role: Role::Gateway,
                data_dir: &config.data_dir,
                authorities: config.authorities.as_ref(),
                directory: config.directory.as_deref(),
                directory_key: config.directory_key,
                epochs: &config.epochs,
                expected_epoch_secs: config.expected_epoch_secs,
                metrics: config.metrics,
            },
            // SURB-ACKs and clients' packets go to layer 1 only
            |t: &Topology| t.layer(1).iter().map(|m| m.address).collect(),
            |stats| super::metrics::render(stats, gauges),
        )
        .await?;
        let mix_listener = TcpListener::bind(config.mix_listen).await?;
        let clients_listener = TcpListener::bind(config.clients_listen).await?;
        let mix_addr = mix_listener.local_addr()?;
        let clients_addr = clients_listener.local_addr()?;
        let announce_host = match config
            .announce_host
            .clone()
            .unwrap_or_else(|| mix_addr.ip().to_string())
        {
            h if h.parse::<std::net::Ipv6Addr>().is_ok() => format!("[{h}]"),
            h => h,
        };
        let (stats, keys, cancel) = (chassis.stats.clone(), chassis.keys.clone(), chassis.cancel.clone());
        let pool = PeerPool::new(stats.clone(), config.peer_queue, cancel.clone());
        let (store_queue, store_rx) = std::sync::mpsc::sync_channel(STORE_QUEUE);
        let shared = Arc::new(Shared {
            store_queue,
            inner: parking_lot::Mutex::new(Inner {
                inbox,
                clients: HashMap::new(),
            }),
            stats: stats.clone(),
            pool,
            identity: chassis.identity.clone(),
            first_hops: chassis.hops.clone(),
            next_conn: AtomicU64::new(1),
            cut: tokio::sync::watch::Sender::new(0),
            max_client_message: config.max_client_message.max(MIN_MAX_CLIENT_MESSAGE),
            admission: Admission::new(config.admission),
        });

        let handler: Handler = {
            let shared = shared.clone();
            Arc::new(move |out| match out {
                Processed::Final {
                    destination,
                    deliver,
                    ack,
                } => shared.deliver(Inbound {
                    destination,
                    payload: deliver,
                    ack,
                }),
                // a gateway is always the last hop
                Processed::Forward { .. } => inc(&shared.stats.dropped_no_route),
            })
        };
        let workers = if config.workers == 0 {
            default_workers()
        } else {
            config.workers
        };
        let (jobs, mut threads) = start_workers(workers, keys.clone(), stats.clone(), handler, cancel.clone());
        threads.push(start_inbox_writer(shared.clone(), store_rx, cancel.clone())?);
        let mut tasks = vec![tokio::spawn(serve_mix_listener(
            mix_listener,
            jobs,
            stats.clone(),
            cancel.clone(),
        ))];
        tasks.push(tokio::spawn(serve_clients(
            clients_listener,
            shared.clone(),
            cancel.clone(),
        )));
        tasks.push(tokio::spawn(expire_periodically(
            shared.clone(),
            config.inbox.expiry,
            cancel.clone(),
        )));

        chassis.spawn_topology_refresher(config.topology_refresh);

        let gw = Gateway {
            chassis,
            mix_addr,
            clients_addr,
            announce_host,
            tasks,
            threads,
            shared,
        };
        gw.chassis
            .spawn_stats_logger(format!("gateway {}", gw.mix_announce()), config.stats_interval);
        gw.chassis
            .spawn_announcer(gw.unsigned_json(&config.location), config.announce_interval);
        let (i, a) = (config.inbox, config.admission);
        tracing::info!(
            "gateway {} listening: mixnet {mix_addr}, clients ws://{clients_addr}; limits: inbox {} messages \
             (--inbox-limit) and {} bytes (--inbox-max-bytes) per client, {} bytes in all (--inbox-disk-budget), \
             kept {} s (--inbox-expiry-secs), {} clients (--max-clients), {} new clients/s \
             (--registrations-per-sec); {} connections in their handshake (--max-unauthenticated), {} handshakes/s \
             per address (--handshakes-per-source), {} bytes per handshake (--max-handshake-bytes), {} bytes per \
             client websocket message (--max-client-message); key epoch {} of {} s, replay \
             filters for {} packets/s (--rated-packets-per-sec) at a false-positive rate of {} (--replay-fp-rate), \
             saved every {} s (--replay-save-secs){}",
            gw.identity_key_b58(),
            i.messages_per_client,
            i.bytes_per_client,
            i.total_bytes,
            i.expiry.as_secs(),
            i.clients,
            a.registrations_per_sec,
            a.max_unauthenticated,
            a.handshakes_per_source,
            a.max_handshake_bytes,
            config.max_client_message.max(MIN_MAX_CLIENT_MESSAGE),
            gw.chassis.keys.current_epoch(),
            gw.chassis.keys.settings().epoch_secs,
            config.epochs.rated_packets_per_sec,
            config.epochs.replay_fp_rate,
            config.epochs.replay_save_interval.as_secs(),
            gw.chassis.describe(";")
        );
        Ok(gw)
    }

    /// ed25519 identity public key: the gateway part of client addresses.
    pub fn identity_key(&self) -> [u8; 32] {
        self.chassis.identity_key()
    }

    pub fn identity_key_b58(&self) -> String {
        encode_key(&self.identity_key())
    }

    /// The Sphinx key of the current key epoch.
    pub fn sphinx_key(&self) -> PublicKey {
        self.chassis.keys.current_public()
    }

    pub fn sphinx_key_b58(&self) -> String {
        encode_key(self.sphinx_key().as_bytes())
    }

    /// The gateway's Sphinx keys by epoch.
    pub fn sphinx_keys(&self) -> Arc<SphinxKeys> {
        self.chassis.keys.clone()
    }

    pub fn mix_addr(&self) -> SocketAddr {
        self.mix_addr
    }

    pub fn clients_addr(&self) -> SocketAddr {
        self.clients_addr
    }

    fn mix_announce(&self) -> String {
        format!("{}:{}", self.announce_host, self.mix_addr.port())
    }

    /// `ws://host:port` as announced.
    pub fn client_listener_url(&self) -> String {
        format!("ws://{}:{}", self.announce_host, self.clients_addr.port())
    }

    pub fn stats(&self) -> Arc<NodeStats> {
        self.chassis.stats.clone()
    }

    /// Where `GET /metrics` is served (`GatewayConfig::metrics`).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.chassis.metrics_addr()
    }

    /// Messages waiting in the inbox of `client` (x25519 public key).
    pub fn stored_count(&self, client: &[u8; 32]) -> u64 {
        self.shared.lock().inbox.count(client)
    }

    /// Payload bytes waiting in the inbox of `client`.
    pub fn stored_bytes(&self, client: &[u8; 32]) -> u64 {
        self.shared.lock().inbox.bytes(client)
    }

    /// Payload bytes waiting in all inboxes (what `--inbox-disk-budget` bounds).
    pub fn stored_bytes_total(&self) -> u64 {
        self.shared.lock().inbox.total_bytes()
    }

    /// Clients registered with this gateway.
    pub fn registered_clients(&self) -> usize {
        self.shared.lock().inbox.registered_count()
    }

    /// Drops every client connection at once, with a TCP reset and no
    /// websocket close, as a network failure would. What the clients had not
    /// acknowledged stays stored and is delivered again when they reconnect.
    /// For fault tests, and for an operator who must shed its clients.
    /// Returns how many authenticated connections there were.
    pub fn cut_client_connections(&self) -> usize {
        let open = self.shared.cut.receiver_count();
        self.shared.cut.send_modify(|n| *n += 1);
        open
    }

    pub fn is_registered(&self, client: &[u8; 32]) -> bool {
        self.shared.lock().inbox.is_registered(client)
    }

    /// The directory key this gateway verifies topologies with (pinned, or
    /// learned on first use; None before the first verified document). With
    /// several authorities: None (see `authorities`).
    pub fn directory_key(&self) -> Option<[u8; 32]> {
        self.chassis.directory_key()
    }

    /// The authorities this node verifies topologies with (with one
    /// directory: its pinned key, or the key learned on first use; None
    /// before that, and without a directory).
    pub fn authorities(&self) -> Option<nym_wire::authority::Authorities> {
        self.chassis.authorities()
    }

    /// Where the node stands with its topology: waiting for the first,
    /// current (and from which authority), or expired with no newer one
    /// acceptable. None without a directory.
    pub fn topology_state(&self) -> Option<crate::node::TopologyState> {
        self.chassis.topology_state()
    }

    fn unsigned_json(&self, location: &str) -> GatewayJson {
        GatewayJson {
            client_listener: self.client_listener_url(),
            mixnet_listener: self.mix_announce(),
            identity_key: self.identity_key_b58(),
            version: nym_wire::VERSION.to_string(),
            location: location.to_string(),
            ..GatewayJson::default()
        }
    }

    /// The descriptor this gateway announces, signed with `seq` (Unix ms:
    /// its keys are those of that moment's epoch and the next).
    pub fn json(&self, location: &str, seq: u64) -> GatewayJson {
        self.chassis.sign_descriptor(&self.unsigned_json(location), seq)
    }

    /// Stops everything: listeners closed, connections dropped, workers and
    /// the inbox writer joined, the replay filters saved, marked clean.
    pub async fn shutdown(self) {
        let stopped = self.chassis.stop(self.tasks, self.threads).await;
        // let connection tasks finish storing what they held
        let deadline = Instant::now() + Duration::from_secs(2);
        while Arc::strong_count(&self.shared) > 1 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stopped.log(self.mix_addr);
    }
}
