//! The command-line flags `nym-mixnode` and `nym-gateway` share (flattened
//! into each binary's own), checked once.

use crate::epochs::{EpochFlags, EpochSettings};
use anyhow::Result;
use std::net::SocketAddr;
use std::time::Duration;

/// Directory, trust, timers, key epochs and metrics of a node.
#[derive(Debug, Clone, clap::Args)]
pub struct NodeFlags {
    /// Directory URL, e.g. http://127.0.0.1:8080.
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
    pub directory: Option<String>,
    pub directory_key: Option<[u8; 32]>,
    pub epochs: EpochSettings,
    pub topology_refresh: Duration,
    pub announce_interval: Duration,
    pub stats_interval: Duration,
    pub metrics: Option<SocketAddr>,
}

impl NodeFlags {
    /// The settings, or an error naming the first bad flag.
    pub fn settings(&self) -> Result<NodeSettings> {
        Ok(NodeSettings {
            directory: self.directory.clone(),
            directory_key: crate::cli::directory_key_flag(self.directory_key.as_deref())?,
            epochs: self.epochs.settings()?,
            topology_refresh: crate::cli::secs_flag(self.topology_refresh, "--topology-refresh")?,
            announce_interval: crate::cli::secs_flag(self.announce_interval, "--announce-interval")?,
            stats_interval: crate::cli::secs_flag(self.stats_interval, "--stats-interval")?,
            metrics: self.metrics,
        })
    }
}
