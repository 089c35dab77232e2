use clap::Parser;
use nym_mixnet::localnet::{Localnet, LocalnetConfig};
use std::path::PathBuf;
use std::time::Duration;

/// A whole local mixnet in one process: directory authorities (3 by
/// default, reaching consensus every second), 3 layers of mixnodes, gateways.
/// Prints `directory: <the first authority's URL>` and `authorities: <the
/// authorities file>` (for `nym-client init --directory` or `--authorities`).
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The first authority's port; the others take the next ones (0 = any
    /// free ports).
    #[arg(long, default_value_t = 0)]
    directory_port: u16,
    /// How many directory authorities (1 = a single directory); every node
    /// needs a majority of their signatures on a topology.
    #[arg(long, default_value_t = nym_mixnet::localnet::DEFAULT_AUTHORITIES)]
    authorities: usize,
    /// Node keys and inboxes persist here (default $HOME/.nym/localnet).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[arg(long, default_value_t = 2)]
    mixnodes_per_layer: usize,
    #[arg(long, default_value_t = 2)]
    gateways: usize,
    /// Seconds between announcements.
    #[arg(long, default_value_t = 2.0)]
    announce_interval: f64,
    /// Seconds between stats log lines.
    #[arg(long, default_value_t = 30.0)]
    stats_interval: f64,
    /// Key epoch length in seconds (directory and every node): Sphinx keys
    /// rotate this often.
    #[arg(long, default_value_t = nym_mixnet::localnet::localnet_epochs().epoch_secs)]
    epoch_secs: u64,
    /// Serve no Prometheus metrics. By default every node serves `GET
    /// /metrics` on a free 127.0.0.1 port, printed at start (docs/metrics.md).
    #[arg(long)]
    no_metrics: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    nym_mixnet::init_logging();
    let args = Args::parse();
    let mut c = LocalnetConfig::new(args.data_dir.unwrap_or_else(LocalnetConfig::default_data_dir));
    c.directory_port = args.directory_port;
    c.authorities = args.authorities;
    c.mixnodes_per_layer = args.mixnodes_per_layer;
    c.gateways = args.gateways;
    c.metrics = !args.no_metrics;
    c.announce_interval = Duration::try_from_secs_f64(args.announce_interval)
        .map_err(|e| anyhow::anyhow!("bad --announce-interval: {e}"))?;
    c.stats_interval =
        Duration::try_from_secs_f64(args.stats_interval).map_err(|e| anyhow::anyhow!("bad --stats-interval: {e}"))?;
    c.epochs.epoch_secs = args.epoch_secs;
    c.epochs.validate()?;
    let net = Localnet::start(c).await?;
    print!("{}", net.describe());
    println!("localnet ready; Ctrl-C to stop");
    nym_mixnet::shutdown_signal().await;
    tracing::info!("shutting down");
    net.shutdown().await;
    Ok(())
}
