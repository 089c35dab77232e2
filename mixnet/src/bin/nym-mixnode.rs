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
    /// Where the node's keys are kept (identity_private.pem: its identity).
    #[arg(long, default_value = "./mixnode-data")]
    data_dir: PathBuf,
    /// Sphinx worker threads (0 = one per core).
    #[arg(long, default_value_t = 0)]
    workers: usize,
    // directory, trust, timers, key epochs, metrics: as every node has them
    #[command(flatten)]
    node: nym_mixnet::node::flags::NodeFlags,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    nym_mixnet::init_logging();
    // flags, else config.toml, else defaults; `init` writes config.toml and exits
    let Some(args) = nym_mixnet::config_file::parse::<Args>(&nym_mixnet::config_file::MIXNODE)? else {
        return Ok(());
    };
    let mut c = MixnodeConfig::new(args.layer, args.data_dir);
    c.listen = args.listen;
    c.announce = args.announce;
    let n = args.node.settings()?;
    (c.authorities, c.directory, c.directory_key) = (n.authorities, n.directory, n.directory_key);
    (c.epochs, c.expected_epoch_secs) = (n.epochs, n.expected_epoch_secs);
    (c.topology_refresh, c.announce_interval, c.stats_interval) =
        (n.topology_refresh, n.announce_interval, n.stats_interval);
    c.metrics = n.metrics;
    c.workers = args.workers;
    let node = Mixnode::start(c).await?;
    let metrics = node
        .metrics_addr()
        .map(|a| format!(" metrics {}", nym_mixnet::metrics::url(a)))
        .unwrap_or_default();
    println!(
        "mixnode layer {} {} key {} identity {}{metrics}",
        node.layer(),
        node.announce_addr(),
        node.public_key_b58(),
        node.identity_key_b58()
    );
    nym_mixnet::shutdown_signal().await;
    tracing::info!("shutting down; final stats: {}", node.stats().snapshot());
    node.shutdown().await;
    Ok(())
}
