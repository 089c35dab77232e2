use clap::Parser;
use nym_mixnet::{Gateway, GatewayConfig};
use std::net::SocketAddr;
use std::path::PathBuf;

const D: nym_mixnet::gateway::InboxLimits = nym_mixnet::gateway::DEFAULT_INBOX_LIMITS;
const A: nym_mixnet::gateway::AdmissionLimits = nym_mixnet::gateway::DEFAULT_ADMISSION;

/// A Nym gateway: last mix hop and the clients' entry point.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// TCP address for mix packets.
    #[arg(long, default_value = "127.0.0.1:1790")]
    mix_listen: SocketAddr,
    /// Websocket address for clients.
    #[arg(long, default_value = "127.0.0.1:9000")]
    clients_listen: SocketAddr,
    /// Host (IP) announced to the directory (default: the listen IP).
    #[arg(long)]
    announce_host: Option<String>,
    /// Keys and the SQLite inbox live here.
    #[arg(long, default_value = "./gateway-data")]
    data_dir: PathBuf,
    /// Messages kept per client until it acknowledges them; past it payloads
    /// for that client are not stored or acknowledged (the sender retransmits).
    #[arg(long, default_value_t = D.messages_per_client)]
    inbox_limit: u64,
    /// Payload bytes kept per client (same effect as --inbox-limit).
    #[arg(long, default_value_t = D.bytes_per_client)]
    inbox_max_bytes: u64,
    /// Payload bytes kept for all clients together (same effect when reached).
    #[arg(long, default_value_t = D.total_bytes)]
    inbox_disk_budget: u64,
    /// Seconds a stored message is kept unread; also how long a registration
    /// with nothing stored is kept without a connection.
    #[arg(long, default_value_t = D.expiry.as_secs())]
    inbox_expiry_secs: u64,
    /// Most registered clients; a new one past it is refused with an error frame.
    #[arg(long, default_value_t = D.clients)]
    max_clients: u64,
    /// New clients registered per second, gateway-wide (bursts of ten seconds' worth).
    #[arg(long, default_value_t = A.registrations_per_sec)]
    registrations_per_sec: f64,
    /// Connections at once that have not completed their handshake; more are closed at once.
    #[arg(long, default_value_t = A.max_unauthenticated)]
    max_unauthenticated: usize,
    /// Handshakes per second from one IP address (bursts of four seconds' worth, at least 8).
    #[arg(long, default_value_t = A.handshakes_per_source)]
    handshakes_per_source: f64,
    /// Bytes a connection may send before it is authenticated (HTTP upgrade
    /// and both handshake frames); more closes it.
    #[arg(long, default_value_t = A.max_handshake_bytes)]
    max_handshake_bytes: usize,
    /// Largest websocket message (bytes) a client may send, before and after
    /// its handshake; a longer one closes the connection before it is read.
    /// At least 40960 (an Extended32 packet must fit).
    #[arg(long, default_value_t = nym_mixnet::gateway::DEFAULT_MAX_CLIENT_MESSAGE)]
    max_client_message: usize,
    // directory, trust, timers, key epochs, metrics: as every node has them
    #[command(flatten)]
    node: nym_mixnet::node::flags::NodeFlags,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    nym_mixnet::init_logging();
    // flags, else config.toml, else defaults; `init` writes config.toml and exits
    let Some(args) = nym_mixnet::config_file::parse::<Args>(&nym_mixnet::config_file::GATEWAY)? else {
        return Ok(());
    };
    let mut c = GatewayConfig::new(args.data_dir);
    c.mix_listen = args.mix_listen;
    c.clients_listen = args.clients_listen;
    c.announce_host = args.announce_host;
    let n = args.node.settings()?;
    (c.authorities, c.directory, c.directory_key) = (n.authorities, n.directory, n.directory_key);
    (c.epochs, c.expected_epoch_secs) = (n.epochs, n.expected_epoch_secs);
    (c.topology_refresh, c.announce_interval, c.stats_interval) =
        (n.topology_refresh, n.announce_interval, n.stats_interval);
    c.metrics = n.metrics;
    c.inbox = nym_mixnet::gateway::InboxLimits {
        messages_per_client: args.inbox_limit,
        bytes_per_client: args.inbox_max_bytes,
        total_bytes: args.inbox_disk_budget,
        expiry: std::time::Duration::from_secs(args.inbox_expiry_secs),
        clients: args.max_clients,
    };
    let positive = |v: f64, flag: &str| {
        if v.is_finite() && v > 0.0 {
            Ok(v)
        } else {
            Err(anyhow::anyhow!("{flag} must be a positive number, got {v}"))
        }
    };
    c.admission = nym_mixnet::gateway::AdmissionLimits {
        max_unauthenticated: args.max_unauthenticated.max(1),
        handshakes_per_source: positive(args.handshakes_per_source, "--handshakes-per-source")?,
        max_handshake_bytes: args.max_handshake_bytes.max(1024),
        registrations_per_sec: positive(args.registrations_per_sec, "--registrations-per-sec")?,
    };
    if args.max_client_message < nym_mixnet::gateway::MIN_MAX_CLIENT_MESSAGE {
        anyhow::bail!(
            "--max-client-message must be at least {} (an Extended32 packet must fit), got {}",
            nym_mixnet::gateway::MIN_MAX_CLIENT_MESSAGE,
            args.max_client_message
        );
    }
    c.max_client_message = args.max_client_message;
    let gw = Gateway::start(c).await?;
    let metrics = gw
        .metrics_addr()
        .map(|a| format!(" metrics {}", nym_mixnet::metrics::url(a)))
        .unwrap_or_default();
    println!(
        "gateway identity {} sphinx {} mixnet {} clients {}{metrics}",
        gw.identity_key_b58(),
        gw.sphinx_key_b58(),
        gw.mix_addr(),
        gw.client_listener_url()
    );
    nym_mixnet::shutdown_signal().await;
    tracing::info!("shutting down; final stats: {}", gw.stats().snapshot());
    gw.shutdown().await;
    Ok(())
}
