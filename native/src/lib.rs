//! The native Nym client: `nym-client init` / `nym-client run`.
//!
//! The engine (Sphinx packets, fragmentation, cover traffic, the gateway
//! protocol) lives in `nym-client-core` and does no I/O; this crate gives it
//! sockets, timers, files and a websocket API for applications on
//! 127.0.0.1 (port 1977 by default).

pub mod app_socket;
pub mod config;
pub mod directory;
mod inputs;
pub mod localnet;
pub mod origin;
pub mod received;
pub mod runner;

use anyhow::{anyhow, bail, Context, Result};
use config::Config;
use nym_client_core::ClientKeys;
use nym_client_core::Recipient;
use nym_client_core::{choose_gateway, StartError};
use rand::SeedableRng;
use std::path::PathBuf;
use std::time::Duration;

/// The seed's banner, printed when `nym-client` runs without arguments.
pub fn banner() -> String {
    format!(
        r#"

      _ __  _   _ _ __ ___
     | '_ \| | | | '_ \ _ \
     | | | | |_| | | | | | |
     |_| |_|\__, |_| |_| |_|
            |___/

             (client - version {})

    "#,
        env!("CARGO_PKG_VERSION")
    )
}

#[derive(Debug, Clone, Default)]
pub struct InitOptions {
    pub id: String,
    /// Directory base URL; [`config::DEFAULT_DIRECTORY`] when `None`.
    pub directory: Option<String>,
    /// base58 gateway identity; a random gateway from the topology when `None`.
    pub gateway: Option<String>,
    /// Websocket port; 1977 when `None`.
    pub port: Option<u16>,
    /// base58 directory key to pin; learned from the directory when `None`.
    pub directory_key: Option<String>,
    /// The network's authorities (`--authorities FILE`, read): replaces
    /// `directory` and `directory_key`.
    pub authorities: Option<nym_client_core::Authorities>,
}

#[derive(Debug, Clone)]
pub struct Initialised {
    pub address: Recipient,
    pub config_path: PathBuf,
    /// base58 key of the directory, now pinned in the config (the
    /// authority that served the first document, with `--authorities`).
    pub directory_key: String,
    /// True when it was learned from the directory (trust on first use)
    /// rather than given with `--directory-key` or `--authorities`.
    pub directory_key_learned: bool,
    /// With `--authorities`: how many are pinned, and the threshold.
    pub authorities: Option<(usize, usize)>,
}

/// `nym-client init`: creates keys and config, registers with a gateway.
///
/// An existing client is never touched: init refuses, so its keys (and so its
/// address) can't be replaced by accident. Nothing is written unless the
/// gateway accepted the registration.
pub async fn init(opts: &InitOptions) -> Result<Initialised> {
    let dir = config::client_dir(&opts.id)?;
    let config_path = config::config_path(&opts.id)?;
    let data = dir.join("data");
    if config_path.exists() || data.join("private_identity.pem").exists() {
        bail!(
            "client '{}' already exists in {}; refusing to replace its keys. \
             Use `nym-client run --id {}`, pick another --id, or delete that directory to start over.",
            opts.id,
            dir.display(),
            opts.id
        );
    }
    if opts.authorities.is_some() && (opts.directory.is_some() || opts.directory_key.is_some()) {
        bail!("--authorities lists the directories and their keys: give it without --directory or --directory-key");
    }
    let directory = match &opts.authorities {
        Some(a) => a.list().first().map(|a| a.url.clone()).unwrap_or_default(),
        None => opts.directory.clone().unwrap_or_else(|| config::DEFAULT_DIRECTORY.to_string()),
    };
    let pinned_key = opts
        .directory_key
        .as_deref()
        .map(|k| nym_client_core::decode_key(k, "--directory-key").map_err(|e| anyhow!("{e}")))
        .transpose()?;
    let pinned = match (&opts.authorities, pinned_key) {
        (Some(a), _) => Some(a.clone()),
        (None, Some(key)) => Some(nym_client_core::Authorities::single(key, directory.clone())),
        (None, None) => None,
    };
    let preferred = opts
        .gateway
        .as_deref()
        .map(|key| nym_client_core::decode_key(key, "--gateway").map_err(|e| anyhow!("{e}")))
        .transpose()?;
    // The same decisions as the driver's start-up: the first fetch's retries,
    // its check (trust on first use without --directory-key), the gateway choice.
    let verified = directory::fetch_first_topology(&directory, pinned.as_ref()).await?;
    // the pinned key (the serving authority's, with several), or the one trusted on first use
    let key = pinned_key
        .or(verified.document.signers.learned)
        .or_else(|| verified.document.signers.keys.first().copied())
        .ok_or_else(|| anyhow!("no directory key"))?;
    let directory_key = nym_client_core::encode_key(&key);
    let topology = verified.topology;
    let mut rng = rand::rngs::StdRng::from_seed(runner::random_seed()?);
    let gateway = choose_gateway(&topology, preferred.as_ref(), &mut rng)
        .map_err(|e| match e {
            StartError::GatewayNotInTopology(key) => anyhow!("gateway {key} is not in the topology from {directory}"),
            other => anyhow!("{other} ({directory})"),
        })?
        .clone();
    let keys = ClientKeys::generate(&mut rng);
    let mut config = Config::new(
        &opts.id,
        &directory,
        &gateway.identity_b58(),
        opts.port.unwrap_or(config::DEFAULT_LISTENING_PORT),
    )?;
    match &opts.authorities {
        Some(a) => config.set_authorities(a),
        None => config.client.directory_key = Some(directory_key.clone()),
    }
    let timeout = Duration::from_millis(config.debug.gateway_response_timeout);
    runner::register(&keys, gateway.identity_key, &gateway.client_listener, topology, timeout).await?;
    config.save_keys(&keys)?;
    let config_path = config.save()?;
    let address = Recipient::new(*keys.public().as_bytes(), gateway.identity_key);
    Ok(Initialised {
        address,
        config_path,
        directory_key,
        directory_key_learned: pinned.is_none(),
        authorities: opts.authorities.as_ref().map(|a| (a.list().len(), a.threshold())),
    })
}

/// Reads an authorities file (`init --authorities FILE`): a bad line is an
/// error naming the file and the line.
pub fn read_authorities(path: &std::path::Path, threshold: Option<usize>) -> Result<nym_client_core::Authorities> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    nym_client_core::Authorities::parse(&text, threshold).map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// Loads a client's config for `run`, applying a `--port` override.
/// The config `run` uses: `port` overrides the configured one, and
/// `allow_origins` (`--allow-origin`) are added to `[socket] allowed_origins`.
pub fn load_for_run(id: &str, port: Option<u16>, allow_origins: &[String]) -> Result<Config> {
    let mut config = Config::load(id)?;
    if let Some(p) = port {
        config.socket.listening_port = p;
    }
    origin::OriginPolicy::new(allow_origins).map_err(|e| anyhow::anyhow!("--allow-origin: {e}"))?;
    config.socket.allowed_origins.extend(allow_origins.iter().cloned());
    Ok(config)
}

/// `$HOME/.nym/localnet`: where `run --localnet` keeps its nodes' keys.
pub fn localnet_dir() -> Result<PathBuf> {
    Ok(config::nym_home()?.join("localnet"))
}

/// Parses `--port`-like values with a clear message.
pub fn parse_port(s: &str) -> Result<u16> {
    s.parse::<u16>().with_context(|| format!("'{s}' is not a port number"))
}
