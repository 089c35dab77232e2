use clap::Parser;
use nym_mixnet::{Mixnode, MixnodeConfig};
use std::net::SocketAddr;
use std::path::PathBuf;

/// A Nym mixnode.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Mix layer, 1..=3.
    #[arg(long)]
    layer: u8,
    /// TCP address for mix packets.
    #[arg(long, default_value = "127.0.0.1:1789")]
    listen: SocketAddr,
    /// Address announced to the directory (default: the listen address).
    #[arg(long)]
    announce: Option<SocketAddr>,
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
    /// Where the node's keys are kept (identity_private.pem: its identity).
    #[arg(long, default_value = "./mixnode-data")]
    data_dir: PathBuf,
    /// Seconds between announcements.
    #[arg(long, default_value_t = 3.0)]
    announce_interval: f64,
    /// Seconds between stats log lines.
    #[arg(long, default_value_t = 10.0)]
    stats_interval: f64,
    /// Sphinx worker threads (0 = one per core).
    #[arg(long, default_value_t = 0)]
    workers: usize,
    #[command(flatten)]
    epochs: nym_mixnet::epochs::EpochFlags,
    /// Serve Prometheus metrics (`GET /metrics`, text format 0.0.4) on
    /// HOST:PORT, e.g. 127.0.0.1:9101; off by default. At most 8 connections
    /// at once, 8 KiB requests. Names and labels: docs/metrics.md.
    #[arg(long, value_name = "HOST:PORT")]
    metrics: Option<SocketAddr>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    nym_mixnet::init_logging();
    let args = Args::parse();
    let mut c = MixnodeConfig::new(args.layer, args.data_dir);
    c.listen = args.listen;
    c.announce = args.announce;
    c.directory = args.directory;
    c.directory_key = nym_mixnet::directory_key_flag(args.directory_key.as_deref())?;
    c.epochs = args.epochs.settings()?;
    c.topology_refresh = nym_mixnet::secs_flag(args.topology_refresh, "--topology-refresh")?;
    c.announce_interval = nym_mixnet::secs_flag(args.announce_interval, "--announce-interval")?;
    c.stats_interval = nym_mixnet::secs_flag(args.stats_interval, "--stats-interval")?;
    c.workers = args.workers;
    c.metrics = args.metrics;
    let node = Mixnode::start(c).await?;
    let metrics = node.metrics_addr().map(|a| format!(" metrics {}", nym_mixnet::metrics::url(a))).unwrap_or_default();
    println!("mixnode layer {} {} key {} identity {}{metrics}", node.layer(), node.announce_addr(), node.public_key_b58(), node.identity_key_b58());
    nym_mixnet::shutdown_signal().await;
    tracing::info!("shutting down; final stats: {}", node.stats().snapshot());
    node.shutdown().await;
    Ok(())
}
