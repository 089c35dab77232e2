use clap::Parser;
use nym_mixnet::directory::{self, DirectoryConfig};
use std::net::SocketAddr;
use std::path::PathBuf;

/// The Nym directory authority: nodes announce signed descriptors, clients
/// fetch the topology document, signed by a threshold of the authorities. Prints `directory: <url>` and then
/// `directory key: <base58>` on stdout (and `metrics: <url>` with --metrics).
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Address to serve HTTP on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The directory's key lives here (made on first start, kept); default $HOME/.nym/directory.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Only the node identities listed in FILE may announce (one base58
    /// ed25519 key per line, `#` comments). Without it (and without --open)
    /// the directory admits no one.
    #[arg(long, value_name = "FILE")]
    admit: Option<PathBuf>,
    /// Admit ANY identity that announces (without --admit). Sybil risk:
    /// anyone can then list as many nodes as they make keys (up to
    /// --max-nodes) and so carry most of the traffic; for test networks only.
    /// Logged loudly at start and shown as nym_directory_open 1.
    #[arg(long, conflicts_with = "admit")]
    open: bool,
    /// The network's authorities: one `<base58 ed25519 key> <http://host:port>`
    /// per line (`#` comments), the same file everywhere. This authority
    /// finds itself by its key. Without it: a network of this one authority.
    #[arg(long, value_name = "FILE")]
    authorities: Option<PathBuf>,
    /// Signatures a document needs (default: a majority of the authorities).
    #[arg(long, value_name = "K", requires = "authorities")]
    threshold: Option<usize>,
    /// Length of a consensus round in seconds (several authorities).
    #[arg(long, default_value_t = directory::DEFAULT_ROUND.as_secs_f64())]
    round_secs: f64,
    /// Print this authority's base58 key (made in --data-dir on first use)
    /// and exit: for writing the authorities file before the first start.
    #[arg(long)]
    print_key: bool,
    /// Seconds an entry lives without being re-announced.
    #[arg(long, default_value_t = directory::DEFAULT_EXPIRY.as_secs_f64())]
    expiry_secs: f64,
    /// Seconds from a topology document's issuedAt to its expiresAt.
    #[arg(long, default_value_t = directory::DEFAULT_TOPOLOGY_VALIDITY.as_secs_f64())]
    topology_validity_secs: f64,
    /// Most nodes listed at once (refreshes of listed nodes always pass).
    #[arg(long, default_value_t = directory::DEFAULT_MAX_NODES)]
    max_nodes: usize,
    /// A descriptor signed longer ago than this is refused (409).
    #[arg(long, default_value_t = directory::DEFAULT_MAX_DESCRIPTOR_AGE.as_secs_f64())]
    max_descriptor_age_secs: f64,
    /// A descriptor signed further in the future than this is refused (400).
    #[arg(long, default_value_t = directory::DEFAULT_MAX_CLOCK_SKEW.as_secs_f64())]
    max_clock_skew_secs: f64,
    /// Announcements per second per source IP (checked first; 429 past it).
    #[arg(long, default_value_t = directory::DEFAULT_SOURCE_RATE)]
    source_rate: f64,
    /// Burst of announcements per source IP.
    #[arg(long, default_value_t = directory::DEFAULT_SOURCE_BURST)]
    source_burst: u32,
    /// Source IPs the rate limiter tracks at once.
    #[arg(long, default_value_t = directory::DEFAULT_MAX_SOURCES)]
    max_sources: usize,
    /// Announcements per second per node identity (checked after its signature).
    #[arg(long, default_value_t = directory::DEFAULT_IDENTITY_RATE)]
    identity_rate: f64,
    /// Burst of announcements per node identity.
    #[arg(long, default_value_t = directory::DEFAULT_IDENTITY_BURST)]
    identity_burst: u32,
    /// Largest announcement body in bytes (413 past it).
    #[arg(long, default_value_t = directory::DEFAULT_MAX_BODY)]
    max_body: usize,
    /// Key epoch length in seconds, stated in every topology document;
    /// every node's --epoch-secs must be the same.
    #[arg(long, default_value_t = nym_wire::epoch::DEFAULT_EPOCH_SECS)]
    epoch_secs: u64,
    /// Serve Prometheus metrics (`GET /metrics`, text format 0.0.4) on
    /// HOST:PORT, e.g. 127.0.0.1:9100; off by default. At most 8 connections
    /// at once, 8 KiB requests. Names and labels: docs/metrics.md.
    #[arg(long, value_name = "HOST:PORT")]
    metrics: Option<SocketAddr>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    nym_mixnet::init_logging();
    // flags, else config.toml, else defaults; `init` writes config.toml and exits
    let Some(args) = nym_mixnet::config_file::parse::<Args>(&nym_mixnet::config_file::DIRECTORY)? else {
        return Ok(());
    };
    let data_dir = args.data_dir.unwrap_or_else(DirectoryConfig::default_data_dir);
    if args.print_key {
        let key = nym_mixnet::keyfiles::load_or_create_directory_key(&data_dir)?;
        println!("{}", nym_wire::address::encode_key(key.verifying_key().as_bytes()));
        return Ok(());
    }
    let mut c = DirectoryConfig::new(data_dir);
    c.open = args.open;
    c.round = nym_mixnet::secs_flag(args.round_secs, "--round-secs")?;
    if c.round < std::time::Duration::from_millis(500) {
        anyhow::bail!("--round-secs must be at least 0.5");
    }
    if let Some(path) = &args.authorities {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read the authorities file {}: {e}", path.display()))?;
        let authorities = nym_wire::authority::Authorities::parse(&text, args.threshold)
            .map_err(|e| anyhow::anyhow!("bad authorities file {}: {e}", path.display()))?;
        c.authorities = Some(authorities);
    }
    c.listen = args.listen;
    c.expiry = nym_mixnet::secs_flag(args.expiry_secs, "--expiry-secs")?;
    c.topology_validity = nym_mixnet::secs_flag(args.topology_validity_secs, "--topology-validity-secs")?;
    c.max_descriptor_age = nym_mixnet::secs_flag(args.max_descriptor_age_secs, "--max-descriptor-age-secs")?;
    c.max_clock_skew = nym_mixnet::secs_flag(args.max_clock_skew_secs, "--max-clock-skew-secs")?;
    if c.topology_validity.is_zero() {
        anyhow::bail!("--topology-validity-secs must be more than 0");
    }
    if !(args.source_rate.is_finite()
        && args.source_rate >= 0.0
        && args.identity_rate.is_finite()
        && args.identity_rate >= 0.0)
    {
        anyhow::bail!("--source-rate and --identity-rate must be numbers >= 0");
    }
    c.max_nodes = args.max_nodes;
    c.source_rate = args.source_rate;
    c.source_burst = args.source_burst;
    c.max_sources = args.max_sources;
    c.identity_rate = args.identity_rate;
    c.identity_burst = args.identity_burst;
    c.max_body = args.max_body;
    if args.epoch_secs < nym_wire::epoch::MIN_EPOCH_SECS {
        anyhow::bail!("--epoch-secs must be at least {}", nym_wire::epoch::MIN_EPOCH_SECS);
    }
    c.epoch_secs = args.epoch_secs;
    c.metrics = args.metrics;
    if let Some(path) = &args.admit {
        c.admit = Some(directory::load_admit_file(path)?);
    }
    let dir = directory::start_directory_unlogged(c).await?;
    // First on stdout, whatever the log level: tests and scripts read these.
    // One write, and no panic if the reader has gone after the first line.
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = write!(
            out,
            "directory: {}\ndirectory key: {}\n",
            dir.url(),
            dir.directory_key_b58()
        );
        if let Some(a) = dir.metrics_addr() {
            let _ = writeln!(out, "metrics: {}", nym_mixnet::metrics::url(a));
        }
        let _ = out.flush();
    }
    dir.log_start();
    nym_mixnet::shutdown_signal().await;
    tracing::info!("shutting down");
    dir.shutdown().await;
    Ok(())
}
