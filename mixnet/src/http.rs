//! The one HTTP client of the directory (hyper, HTTP/1, plain http): nodes
//! announce with it and fetch the topology; clients fetch the topology text
//! ([`DirectoryClient::topology_text`]). Paths: `nym_wire::topology::paths`.

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use nym_wire::topology::{paths, TopologyJson};
use serde::Serialize;
use std::time::Duration;

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

#[derive(Clone)]
pub struct DirectoryClient {
    base: String,
    client: HttpClient,
}

/// A directory's refusal of an announcement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    /// The `error` field of the answer.
    pub reason: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status, self.reason)
    }
}

const TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client waits for the whole topology ([`DirectoryClient::topology_text`]).
pub const TOPOLOGY_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest topology document read, in bytes; a longer one is refused.
pub const MAX_TOPOLOGY_BYTES: usize = 16 * 1024 * 1024;

impl DirectoryClient {
    /// `base` like `http://127.0.0.1:8080` (plain http only).
    pub fn new(base: &str) -> Result<Self> {
        let base = base.trim_end_matches('/').to_string();
        if !base.starts_with("http://") {
            bail!("directory URL '{base}' must start with http://");
        }
        base.parse::<hyper::Uri>()
            .map_err(|e| anyhow!("bad directory URL '{base}': {e}"))?;
        Ok(DirectoryClient {
            base,
            client: Client::builder(TokioExecutor::new()).build_http(),
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends a request; the status and body of whatever the directory answered.
    async fn exchange(
        &self,
        method: hyper::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(hyper::StatusCode, Vec<u8>)> {
        let uri: hyper::Uri = format!("{}{}", self.base, path).parse().context("bad URL")?;
        let req = hyper::Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        let fut = async {
            let resp = self.client.request(req).await.context("directory unreachable")?;
            let status = resp.status();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .context("reading directory response")?
                .to_bytes();
            Ok((status, bytes.to_vec()))
        };
        tokio::time::timeout(TIMEOUT, fut)
            .await
            .map_err(|_| anyhow!("directory request timed out"))?
    }

    async fn request(&self, method: hyper::Method, path: &str, body: Option<Vec<u8>>) -> Result<Vec<u8>> {
        let (status, bytes) = self.exchange(method, path, body).await?;
        if !status.is_success() {
            bail!("directory answered {status}: {}", String::from_utf8_lossy(&bytes));
        }
        Ok(bytes)
    }

    /// Posts `body`; `Ok(Err(refusal))` when the directory answered with an
    /// error status (`refusal` holds the status and its `error` text), `Err`
    /// when it could not be asked at all.
    pub async fn announce<T: Serialize>(&self, path: &str, body: &T) -> Result<std::result::Result<(), Refusal>> {
        let (status, bytes) = self
            .exchange(hyper::Method::POST, path, Some(serde_json::to_vec(body)?))
            .await?;
        if status.is_success() {
            return Ok(Ok(()));
        }
        let reason = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
        Ok(Err(Refusal {
            status: status.as_u16(),
            reason,
        }))
    }

    pub async fn post_json<T: Serialize>(&self, path: &str, body: &T) -> Result<()> {
        self.request(hyper::Method::POST, path, Some(serde_json::to_vec(body)?))
            .await
            .map(|_| ())
    }

    pub async fn topology(&self) -> Result<TopologyJson> {
        let bytes = self.request(hyper::Method::GET, paths::TOPOLOGY, None).await?;
        serde_json::from_slice(&bytes).context("directory sent bad topology JSON")
    }

    /// `GET {base}/api/presence/topology`: the document's text as sent, for
    /// a client to verify. At most [`MAX_TOPOLOGY_BYTES`] are read, within
    /// [`TOPOLOGY_TIMEOUT`]; every error names the URL.
    pub async fn topology_text(&self) -> Result<String> {
        let url = format!("{}{}", self.base, paths::TOPOLOGY);
        let fetch = async {
            let (status, body) = self.get_limited(&url, "directory ", "the directory at ", MAX_TOPOLOGY_BYTES).await?;
            let body = match body {
                Ok(b) => b,
                Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
                    bail!("topology from {url} is too large (more than {MAX_TOPOLOGY_BYTES} bytes)")
                }
                Err(e) => return Err(anyhow!("{e}")).with_context(|| format!("reading the topology from {url}")),
            };
            if !status.is_success() {
                bail!("directory answered {status} for {url}");
            }
            String::from_utf8(body.to_vec()).map_err(|_| anyhow!("topology from {url} is not UTF-8"))
        };
        tokio::time::timeout(TOPOLOGY_TIMEOUT, fetch)
            .await
            .map_err(|_| anyhow!("the directory at {url} did not answer within {TOPOLOGY_TIMEOUT:?}"))?
    }

    /// `GET {base}{path}`: the body of a success, read up to `max` bytes
    /// (a longer one is an error), within `timeout`. For what authorities
    /// fetch from each other (`/api/authority/...`).
    pub async fn get_bounded(&self, path: &str, max: usize, timeout: Duration) -> Result<Vec<u8>> {
        let url = format!("{}{}", self.base, path);
        let fetch = async {
            let (status, body) = self.get_limited(&url, "", "", max).await?;
            let body = body.map_err(|e| anyhow!("reading {url}: {e}"))?;
            if !status.is_success() {
                bail!(
                    "{url} answered {status}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(200)])
                );
            }
            Ok(body.to_vec())
        };
        tokio::time::timeout(timeout, fetch)
            .await
            .map_err(|_| anyhow!("{url} did not answer within {timeout:?}"))?
    }

    /// One GET of `url`: its status, and its body read up to `max` bytes
    /// while it arrives (bounded while read, not after: a huge answer is cut
    /// off), or why the body could not be read. An error only when the
    /// request can't be made or sent: `bad {url_noun}URL`, `cannot reach
    /// {reach}{url}`.
    async fn get_limited(
        &self,
        url: &str,
        url_noun: &str,
        reach: &str,
        max: usize,
    ) -> Result<(hyper::StatusCode, std::result::Result<Bytes, Box<dyn std::error::Error + Send + Sync>>)> {
        let uri: hyper::Uri = url.parse().with_context(|| format!("bad {url_noun}URL '{url}'"))?;
        let req = hyper::Request::builder()
            .method(hyper::Method::GET)
            .uri(uri)
            .body(Full::new(Bytes::new()))?;
        let resp = self.client.request(req).await.with_context(|| format!("cannot reach {reach}{url}"))?;
        let status = resp.status();
        let body = http_body_util::Limited::new(resp.into_body(), max).collect().await.map(|b| b.to_bytes());
        Ok((status, body))
    }
}
