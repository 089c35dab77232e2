//! A minimal HTTP/1 JSON client (hyper) for announcements and topology fetches.

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use nym_wire::topology::TopologyJson;
use serde::Serialize;
use std::time::Duration;

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

#[derive(Clone)]
pub struct DirectoryClient {
    base: String,
    client: HttpClient,
}

const TIMEOUT: Duration = Duration::from_secs(5);

impl DirectoryClient {
    /// `base` like `http://127.0.0.1:8080` (plain http only).
    pub fn new(base: &str) -> Result<Self> {
        let base = base.trim_end_matches('/').to_string();
        if !base.starts_with("http://") {
            bail!("directory URL '{base}' must start with http://");
        }
        base.parse::<hyper::Uri>().map_err(|e| anyhow!("bad directory URL '{base}': {e}"))?;
        Ok(DirectoryClient { base, client: Client::builder(TokioExecutor::new()).build_http() })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    async fn request(&self, method: hyper::Method, path: &str, body: Option<Vec<u8>>) -> Result<Vec<u8>> {
        let uri: hyper::Uri = format!("{}{}", self.base, path).parse().context("bad URL")?;
        let req = hyper::Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        let fut = async {
            let resp = self.client.request(req).await.context("directory unreachable")?;
            let status = resp.status();
            let bytes = resp.into_body().collect().await.context("reading directory response")?.to_bytes();
            if !status.is_success() {
                bail!("directory answered {status}: {}", String::from_utf8_lossy(&bytes));
            }
            Ok(bytes.to_vec())
        };
        tokio::time::timeout(TIMEOUT, fut).await.map_err(|_| anyhow!("directory request timed out"))?
    }

    pub async fn post_json<T: Serialize>(&self, path: &str, body: &T) -> Result<()> {
        self.request(hyper::Method::POST, path, Some(serde_json::to_vec(body)?)).await.map(|_| ())
    }

    pub async fn topology(&self) -> Result<TopologyJson> {
        let bytes = self.request(hyper::Method::GET, "/api/presence/topology", None).await?;
        serde_json::from_slice(&bytes).context("directory sent bad topology JSON")
    }
}
