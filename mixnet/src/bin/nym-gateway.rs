use clap::Parser;
use nym_mixnet::{Gateway, GatewayConfig};
use std::net::SocketAddr;
use std::path::PathBuf;

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
    /// Directory URL, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    directory: Option<String>,
    /// The directory's key (base58, the `directory key:` nym-directory
    /// prints); without it the first verified topology's key is trusted and
    /// kept in the data dir (directory_key.txt).
    #[arg(long)]
    directory_key: Option<String>,
    /// Seconds between topology fetches (the next hops this node may use).
    #[arg(long, default_value_t = 5.0)]
    topology_refresh: f64,
    /// Keys and the SQLite inbox live here.
    #[arg(long, default_value = "./gateway-data")]
    data_dir: PathBuf,
    /// Seconds between announcements.
    #[arg(long, default_value_t = 3.0)]
    announce_interval: f64,
    /// Seconds between stats log lines.
    #[arg(long, default_value_t = 10.0)]
    stats_interval: f64,
    /// Messages kept per offline client.
    #[arg(long, default_value_t = nym_mixnet::gateway::DEFAULT_INBOX_LIMIT)]
    inbox_limit: u64,
    /// Largest websocket message (bytes) a client may send, before and after
    /// its handshake; a longer one closes the connection before it is read.
    /// At least 40960 (an Extended32 packet must fit).
    #[arg(long, default_value_t = nym_mixnet::gateway::DEFAULT_MAX_CLIENT_MESSAGE)]
    max_client_message: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    nym_mixnet::init_logging();
    let args = Args::parse();
    let mut c = GatewayConfig::new(args.data_dir);
    c.mix_listen = args.mix_listen;
    c.clients_listen = args.clients_listen;
    c.announce_host = args.announce_host;
    c.directory = args.directory;
    c.directory_key = args
        .directory_key
        .as_deref()
        .map(nym_mixnet::keyfiles::parse_ed25519_b58)
        .transpose()
        .map_err(|e| anyhow::anyhow!("bad --directory-key: {e:#}"))?;
    c.topology_refresh = nym_mixnet::secs_flag(args.topology_refresh, "--topology-refresh")?;
    c.announce_interval = nym_mixnet::secs_flag(args.announce_interval, "--announce-interval")?;
    c.stats_interval = nym_mixnet::secs_flag(args.stats_interval, "--stats-interval")?;
    c.inbox_limit = args.inbox_limit;
    if args.max_client_message < nym_mixnet::gateway::MIN_MAX_CLIENT_MESSAGE {
        anyhow::bail!(
            "--max-client-message must be at least {} (an Extended32 packet must fit), got {}",
            nym_mixnet::gateway::MIN_MAX_CLIENT_MESSAGE,
            args.max_client_message
        );
    }
    c.max_client_message = args.max_client_message;
    let gw = Gateway::start(c).await?;
    println!(
        "gateway identity {} sphinx {} mixnet {} clients {}",
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
