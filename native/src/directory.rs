//! Fetching the topology from the directory (`GET /api/presence/topology`, `nym_wire::topology::paths::TOPOLOGY`).

use anyhow::{anyhow, bail, Result};
use nym_client_core::VerifiedTopology;
use nym_client_core::{defaults, verify_first_topology, Authorities};
use nym_mixnet::http::DirectoryClient;
use std::time::{SystemTime, UNIX_EPOCH};

/// The raw topology JSON text, through the servers' one directory HTTP
/// client ([`DirectoryClient::topology_text`]: bounded, timed out, every
/// error naming the URL). Only `http://` directories are supported.
pub async fn fetch_topology_text(directory: &str) -> Result<String> {
    if !directory.starts_with("http://") {
        bail!("directory_server '{directory}' must be an http:// URL");
    }
    DirectoryClient::new(directory)?.topology_text().await
}

/// The wall clock, for topology expiry: Unix milliseconds.
pub fn unix_time_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The first topology, fetched and checked as the driver does at start
/// (for `init`, which registers without a driver): retried by the core's
/// [`defaults::first_fetch_retry`], each attempt at the next of `pinned`'s
/// authorities, checked by [`verify_first_topology`] (signed by at least
/// the threshold of `pinned`, or with `None` by the directory at
/// `directory` that served it: trust on first use, the caller keeps
/// `document.signers.learned` of the result).
pub async fn fetch_first_topology(directory: &str, pinned: Option<&Authorities>) -> Result<VerifiedTopology> {
    let attempts = defaults::FIRST_FETCH_ATTEMPTS;
    let urls: Vec<&str> = match pinned {
        Some(a) if a.list().len() > 1 => a.list().iter().map(|a| a.url.as_str()).collect(),
        _ => vec![directory],
    };
    for attempt in 1u32.. {
        let directory = urls[(attempt as usize - 1) % urls.len()];
        let fetched = match fetch_topology_text(directory).await {
            Ok(text) => {
                verify_first_topology(&text, pinned, unix_time_ms()).map_err(|e| anyhow!("from {directory}: {e}"))
            }
            Err(e) => Err(e),
        };
        let e = match fetched {
            Ok(verified) => return Ok(verified),
            Err(e) => e,
        };
        let Some(wait) = defaults::first_fetch_retry(attempt) else {
            return Err(e);
        };
        tracing::warn!("topology fetch {attempt}/{attempts} failed: {e:#}; trying again in {} ms", wait.as_millis());
        tokio::time::sleep(wait).await;
    }
    unreachable!("the first fetch's attempts are bounded")
}
