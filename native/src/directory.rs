//! Fetching the topology from the directory (`GET /api/presence/topology`).

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use nym_client_core::driver::{defaults, verify_first_topology};
use nym_client_core::VerifiedTopology;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_TOPOLOGY_BYTES: usize = 16 * 1024 * 1024;

pub fn topology_url(directory: &str) -> String {
    format!("{}/api/presence/topology", directory.trim_end_matches('/'))
}

/// The raw topology JSON text. Only `http://` directories are supported.
pub async fn fetch_topology_text(directory: &str) -> Result<String> {
    let url = topology_url(directory);
    if !url.starts_with("http://") {
        bail!("directory_server '{directory}' must be an http:// URL");
    }
    let uri: hyper::Uri = url.parse().with_context(|| format!("bad directory URL '{url}'"))?;
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let fetch = async {
        let resp = client.get(uri).await.with_context(|| format!("cannot reach the directory at {url}"))?;
        let status = resp.status();
        let body =
            resp.into_body().collect().await.with_context(|| format!("reading the topology from {url}"))?.to_bytes();
        if !status.is_success() {
            bail!("directory answered {status} for {url}");
        }
        if body.len() > MAX_TOPOLOGY_BYTES {
            bail!("topology from {url} is too large ({} bytes)", body.len());
        }
        String::from_utf8(body.to_vec()).map_err(|_| anyhow!("topology from {url} is not UTF-8"))
    };
    tokio::time::timeout(FETCH_TIMEOUT, fetch)
        .await
        .map_err(|_| anyhow!("the directory at {url} did not answer within {FETCH_TIMEOUT:?}"))?
}

/// The wall clock, for topology expiry: Unix milliseconds.
pub fn unix_time_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The first topology, fetched and checked as the driver does at start
/// (for `init`, which registers without a driver): retried by the core's
/// [`defaults::first_fetch_retry`], checked by [`verify_first_topology`]
/// (signed by `pinned`, or with `None` by the key it names: trust on first
/// use, the caller keeps `directory_key` of the result).
pub async fn fetch_first_topology(directory: &str, pinned: Option<&[u8; 32]>) -> Result<VerifiedTopology> {
    let attempts = defaults::FIRST_FETCH_ATTEMPTS;
    for attempt in 1.. {
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
        let Some(wait) = defaults::first_fetch_retry(attempt) else { return Err(e) };
        tracing::warn!("topology fetch {attempt}/{attempts} failed: {e:#}; trying again in {} ms", wait.as_millis());
        tokio::time::sleep(wait).await;
    }
    unreachable!("the first fetch's attempts are bounded")
}
