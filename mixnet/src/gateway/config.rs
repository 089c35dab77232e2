//! What a gateway is told at start (`nym-gateway` flags), and the bounds
//! on what a client may send.

use super::admission::{AdmissionLimits, DEFAULT_ADMISSION};
use super::inbox::{InboxLimits, DEFAULT_INBOX_LIMITS};
use crate::epochs::EpochSettings;
use crate::pool::DEFAULT_PEER_QUEUE;
use nym_wire::authority::Authorities;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub const DEFAULT_INBOX_LIMIT: u64 = DEFAULT_INBOX_LIMITS.messages_per_client;
/// Default largest websocket message (and frame) a client may send, before
/// and after authentication (`--max-client-message`). The largest legitimate
/// one is a sealed forward of an Extended32 packet (about 33 KiB);
/// tungstenite refuses a longer frame from its header, before buffering it,
/// so an unauthenticated peer can't make the gateway hold tungstenite's
/// default 64 MiB per connection.
pub const DEFAULT_MAX_CLIENT_MESSAGE: usize = 64 * 1024;
/// Below this a legitimate Extended32 packet would not fit.
pub const MIN_MAX_CLIENT_MESSAGE: usize = 40 * 1024;

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Mixnet (TCP) listener; port 0 picks a free port.
    pub mix_listen: SocketAddr,
    /// Client (websocket) listener; port 0 picks a free port.
    pub clients_listen: SocketAddr,
    /// Host announced to the directory; defaults to the listeners' IPs.
    pub announce_host: Option<String>,
    /// The network's authorities (`--authorities`): announced to, fetched
    /// from with failover, and a topology needs their threshold of
    /// signatures. Exclusive with `directory`.
    pub authorities: Option<Authorities>,
    /// Directory URL: one authority. None (and no `authorities`): no
    /// announcements, and any first hop is allowed.
    pub directory: Option<String>,
    /// The directory's key (`--directory-key`); None: trust the first
    /// verified document's key and remember it (`directory_key.txt`).
    pub directory_key: Option<[u8; 32]>,
    pub data_dir: PathBuf,
    pub announce_interval: Duration,
    pub topology_refresh: Duration,
    pub stats_interval: Duration,
    pub workers: usize,
    pub peer_queue: usize,
    /// What the inbox keeps, and for how long.
    pub inbox: InboxLimits,
    /// What a connection may do before it is authenticated.
    pub admission: AdmissionLimits,
    /// Largest websocket message a client may send (at least
    /// [`MIN_MAX_CLIENT_MESSAGE`]); more closes the connection.
    pub max_client_message: usize,
    pub location: String,
    /// Key epochs and replay filters. With a directory, the epoch length is
    /// the authorities' document's, whatever `epochs.epoch_secs` says.
    pub epochs: EpochSettings,
    /// `--epoch-secs` when given: the node refuses to start if the
    /// authorities' document states another key epoch length.
    pub expected_epoch_secs: Option<u64>,
    /// `--metrics`: serve Prometheus metrics on `GET /metrics` here (port 0
    /// picks a free port); None: no metrics listener.
    pub metrics: Option<SocketAddr>,
}

impl GatewayConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        GatewayConfig {
            mix_listen: SocketAddr::from(([127, 0, 0, 1], 1790)),
            clients_listen: SocketAddr::from(([127, 0, 0, 1], 9000)),
            announce_host: None,
            authorities: None,
            directory: None,
            directory_key: None,
            data_dir: data_dir.into(),
            announce_interval: Duration::from_secs(3),
            topology_refresh: Duration::from_secs(5),
            stats_interval: Duration::from_secs(10),
            workers: 0,
            peer_queue: DEFAULT_PEER_QUEUE,
            inbox: DEFAULT_INBOX_LIMITS,
            admission: DEFAULT_ADMISSION,
            max_client_message: DEFAULT_MAX_CLIENT_MESSAGE,
            location: "localhost".into(),
            epochs: EpochSettings::default(),
            expected_epoch_secs: None,
            metrics: None,
        }
    }
}
