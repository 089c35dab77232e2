//! The command-line flags `nym-mixnode` and `nym-gateway` share (flattened
//! into each binary's own), checked once.

use crate::epochs::{EpochFlags, EpochSettings};
use anyhow::{anyhow, bail, Context, Result};
use nym_wire::authority::Authorities;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Directory, trust, timers, key epochs and metrics of a node.
#[derive(Debug, Clone, clap::Args)]
pub struct NodeFlags {
    /// The network's authorities file: one `<base58 ed25519 key>
    /// <http://host:port>` per line (`#` comments), the same file on every
    /// authority, node and client. The node announces to every authority and
    /// believes a topology only with --threshold of their signatures; it
    /// fetches from one and fails over to the next. Replaces --directory.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["directory", "directory_key"])]
    pub authorities: Option<PathBuf>,
    /// With --authorities: how many of them must sign a topology (default a
    /// majority, N/2 + 1).
    #[arg(long, value_name = "K", requires = "authorities")]
    pub threshold: Option<usize>,
    /// Directory URL, e.g. http://127.0.0.1:8080: a network of one
    /// authority (or any one authority of a network, trusted alone).
    #[arg(long)]
    pub directory: Option<String>,
    /// The directory's key (base58, the `directory key:` nym-directory
    /// prints); without it the first verified topology's key is trusted and
    /// kept in the data dir (directory_key.txt).
    #[arg(long)]
    pub directory_key: Option<String>,
    /// Seconds between topology fetches (the next hops this node may use).
    #[arg(long, default_value_t = 5.0)]
    pub topology_refresh: f64,
    /// Seconds between announcements.
    #[arg(long, default_value_t = 3.0)]
    pub announce_interval: f64,
    /// Seconds between stats log lines.
    #[arg(long, default_value_t = 10.0)]
    pub stats_interval: f64,
    #[command(flatten)]
    pub epochs: EpochFlags,
    /// Serve Prometheus metrics (`GET /metrics`, text format 0.0.4) on
    /// HOST:PORT, e.g. 127.0.0.1:9101; off by default. At most 8 connections
    /// at once, 8 KiB requests. Names and labels: docs/metrics.md.
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics: Option<SocketAddr>,
}

/// [`NodeFlags`], checked: what goes into `MixnodeConfig` and `GatewayConfig`.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    /// `--authorities` (with `--threshold`), read and checked.
    pub authorities: Option<Authorities>,
    pub directory: Option<String>,
    pub directory_key: Option<[u8; 32]>,
    pub epochs: EpochSettings,
    /// `--epoch-secs`, when given: the authorities' document must state it.
    pub expected_epoch_secs: Option<u64>,
    pub topology_refresh: Duration,
    pub announce_interval: Duration,
    pub stats_interval: Duration,
    pub metrics: Option<SocketAddr>,
}

impl NodeFlags {
    /// The settings, or an error naming the first bad flag.
    pub fn settings(&self) -> Result<NodeSettings> {
        let authorities = match &self.authorities {
            Some(path) => Some(load_authorities(path, self.threshold)?),
            None => None,
        };
        if self.directory_key.is_some() && self.directory.is_none() {
            bail!("--directory-key needs --directory");
        }
        Ok(NodeSettings {
            authorities,
            directory: self.directory.clone(),
            directory_key: crate::cli::directory_key_flag(self.directory_key.as_deref())?,
            epochs: self.epochs.settings()?,
            expected_epoch_secs: self.epochs.epoch_secs,
            topology_refresh: crate::cli::secs_flag(self.topology_refresh, "--topology-refresh")?,
            announce_interval: crate::cli::secs_flag(self.announce_interval, "--announce-interval")?,
            stats_interval: crate::cli::secs_flag(self.stats_interval, "--stats-interval")?,
            metrics: self.metrics,
        })
    }
}

/// Reads an authorities file (`--authorities`) with `--threshold`; an error names the file and the line.
pub fn load_authorities(path: &std::path::Path, threshold: Option<usize>) -> Result<Authorities> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the authorities file {}", path.display()))?;
    Authorities::parse(&text, threshold).map_err(|e| anyhow!("bad authorities file {}: {e}", path.display()))
}
