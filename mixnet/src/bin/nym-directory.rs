use clap::Parser;
use std::net::SocketAddr;
use std::time::Duration;

/// The Nym directory: nodes announce themselves, clients fetch the topology.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Address to serve HTTP on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Seconds an entry lives without being re-announced.
    #[arg(long, default_value_t = 10.0)]
    expiry_secs: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    nym_mixnet::init_logging();
    let args = Args::parse();
    let expiry = Duration::try_from_secs_f64(args.expiry_secs).map_err(|e| anyhow::anyhow!("bad --expiry-secs: {e}"))?;
    let dir = nym_mixnet::start_directory(args.listen, expiry).await?;
    println!("directory: {}", dir.url());
    nym_mixnet::shutdown_signal().await;
    tracing::info!("shutting down");
    dir.shutdown().await;
    Ok(())
}
