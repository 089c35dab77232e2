//! `$HOME/.nym/clients/<id>/config/config.toml` and the key files beside it.

use anyhow::{anyhow, bail, Context, Result};
use nym_client_core::{
    defaults, Authorities, Authority, ClientConfig, ClientKeys, DirectoryTrust, DriverConfig, PacketSize,
};
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where directories live when none is configured: the in-process localnet's
/// conventional address (the public Nym testnet of 0.7 is long gone).
pub const DEFAULT_DIRECTORY: &str = "http://127.0.0.1:8080";
pub const DEFAULT_LISTENING_PORT: u16 = 1977;

/// `$HOME`, refusing to guess when it is unset.
pub fn home_dir() -> Result<PathBuf> {
    match std::env::var_os("HOME") {
        Some(h) if !h.is_empty() => Ok(PathBuf::from(h)),
        _ => bail!("$HOME is not set; cannot locate ~/.nym"),
    }
}

/// `$HOME/.nym`
pub fn nym_home() -> Result<PathBuf> {
    Ok(home_dir()?.join(".nym"))
}

/// `$HOME/.nym/clients/<id>`
pub fn client_dir(id: &str) -> Result<PathBuf> {
    validate_id(id)?;
    Ok(nym_home()?.join("clients").join(id))
}

pub fn config_path(id: &str) -> Result<PathBuf> {
    Ok(client_dir(id)?.join("config").join("config.toml"))
}

/// Ids name a directory: keep them to one plain path component.
pub fn validate_id(id: &str) -> Result<()> {
    if id.is_empty()
        || id == "."
        || id == ".."
        || !id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        bail!("invalid --id '{id}': use letters, digits, '-', '_' or '.'");
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub client: ClientSection,
    pub socket: SocketSection,
    #[serde(default)]
    pub debug: DebugSection,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSection {
    /// Local name only; never sent over the network.
    pub id: String,
    /// Base URL of the directory (`GET {directory_server}/api/presence/topology`).
    pub directory_server: String,
    pub private_identity_key_file: PathBuf,
    pub public_identity_key_file: PathBuf,
    /// base58 identity key of the gateway this client registered with.
    pub gateway_id: String,
    /// base58 ed25519 key of the directory: `run` believes only topologies
    /// signed by it. `init` sets it from `--directory-key`, or else from the
    /// directory on first contact (trust on first use; it prints the key so
    /// it can be compared with the one the directory's operator publishes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory_key: Option<String>,
    /// Valid signatures by `authorities` a topology needs (default: a
    /// majority of them). Only with `authorities`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<usize>,
    /// The network's directory authorities (`init --authorities FILE`): a
    /// topology is believed when at least `threshold` of their keys signed
    /// it; fetched from any of them, the next one when one fails. When set,
    /// `directory_server` and `directory_key` are not used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorities: Vec<AuthorityEntry>,
}

/// One `[[client.authorities]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorityEntry {
    /// Where it serves (`http://host:port`).
    pub url: String,
    /// Its base58 ed25519 key.
    pub key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SocketSection {
    /// Only "WebSocket" is served.
    pub socket_type: String,
    /// Port on 127.0.0.1 where applications connect.
    pub listening_port: u16,
    /// Web pages (by their `Origin`) that may use the websocket API:
    /// `scheme://host[:port]` entries, any port when none is given. Programs
    /// that send no `Origin` are always served. Default: loopback pages only
    /// (`http://localhost`, `http://127.0.0.1`, `http://[::1]`); a list given
    /// here replaces that default. `run --allow-origin` adds to it.
    #[serde(default = "crate::origin::default_allowed_origins")]
    pub allowed_origins: Vec<String>,
    /// Most application connections served at once; one more is refused
    /// with an error frame. Every received message goes to each of them.
    #[serde(default = "default_max_applications")]
    pub max_applications: usize,
    /// Milliseconds an application must be quiet before received messages
    /// are pushed to it: after it connects, and after each answer other
    /// than to a send (the 0.7 protocol has no envelope, so a push that
    /// arrived just before an answer would be read as that answer). After
    /// the answer to `send`, `sendAnonymous` or `reply` pushes go at once.
    #[serde(default = "default_push_after_quiet_ms")]
    pub push_after_quiet_ms: u64,
}

pub const DEFAULT_PUSH_AFTER_QUIET_MS: u64 = 500;

fn default_push_after_quiet_ms() -> u64 {
    DEFAULT_PUSH_AFTER_QUIET_MS
}

pub const DEFAULT_MAX_APPLICATIONS: usize = defaults::MAX_APPLICATIONS;

fn default_max_applications() -> usize {
    DEFAULT_MAX_APPLICATIONS
}

/// Traffic rates and timeouts, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DebugSection {
    /// Mean per-hop mixing delay; 0 = packets are not delayed at mixnodes.
    pub average_hop_delay: u64,
    /// Mean delay between packets of the main Poisson stream (real messages
    /// or cover); 0 = no throttling: real packets go as fast as possible and
    /// that stream sends no cover (for benchmarks only: it leaks timing).
    pub average_packet_delay: u64,
    /// Mean delay between loop cover packets; 0 = no loop cover.
    pub loop_cover_traffic_average_delay: u64,
    /// "regular" (2413-byte packets), "extended8", "extended16", "extended32".
    pub packet_size: String,
    /// Fragments of a message that stays incomplete this long are dropped.
    pub incomplete_message_timeout: u64,
    /// Largest message (bytes) the client accepts to send or reassemble.
    pub max_message_size: usize,
    /// How often the topology is fetched again from the directory.
    pub topology_refresh_rate: u64,
    /// First wait before reconnecting to a gateway that went away.
    pub gateway_reconnect_initial_backoff: u64,
    /// The wait doubles after each failed attempt up to this.
    pub gateway_reconnect_max_backoff: u64,
    /// How long `init` waits for the gateway to complete registration.
    pub gateway_response_timeout: u64,
    /// Received messages kept while no application is connected (the oldest
    /// are dropped beyond this).
    pub stored_messages_limit: usize,
    /// A packet not acknowledged within (its route delays + its ack's route
    /// delays) x this + `ack_wait_addition` is sent again on a fresh route.
    pub ack_wait_multiplier: f64,
    pub ack_wait_addition: u64,
    /// Retransmissions of one packet before its message is reported undeliverable.
    pub maximum_retransmissions: u32,
}

impl Default for DebugSection {
    fn default() -> Self {
        let core = ClientConfig::default();
        DebugSection {
            average_hop_delay: ms(core.average_hop_delay),
            average_packet_delay: ms(core.average_packet_delay),
            loop_cover_traffic_average_delay: ms(core.loop_cover_delay),
            packet_size: core.packet_size.name().to_string(),
            incomplete_message_timeout: ms(core.incomplete_message_timeout),
            max_message_size: core.max_message_size,
            // 0.7.0's 30 s rather than today's 5 min: a crashed node leaves routes sooner.
            topology_refresh_rate: ms(defaults::TOPOLOGY_REFRESH),
            gateway_reconnect_initial_backoff: ms(defaults::RECONNECT_INITIAL),
            gateway_reconnect_max_backoff: ms(defaults::RECONNECT_MAX),
            gateway_response_timeout: ms(defaults::HANDSHAKE_TIMEOUT),
            stored_messages_limit: defaults::KEPT_MESSAGES,
            ack_wait_multiplier: core.ack_wait_multiplier,
            ack_wait_addition: ms(core.ack_wait_addition),
            maximum_retransmissions: core.max_retransmissions,
        }
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl DebugSection {
    /// The engine's configuration from these settings.
    // `..default()`: fields the engine may gain later keep their defaults.
    #[allow(clippy::needless_update)]
    pub fn client_config(&self) -> Result<ClientConfig> {
        if !(self.ack_wait_multiplier.is_finite() && self.ack_wait_multiplier >= 1.0) {
            return Err(anyhow!(
                "[debug] ack_wait_multiplier must be a number of at least 1.0, got {}",
                self.ack_wait_multiplier
            ));
        }
        let packet_size = PacketSize::from_name(&self.packet_size).ok_or_else(|| {
            anyhow!(
                "[debug] packet_size '{}' is not one of regular, extended8, extended16, extended32",
                self.packet_size
            )
        })?;
        Ok(ClientConfig {
            average_hop_delay: Duration::from_millis(self.average_hop_delay),
            average_packet_delay: Duration::from_millis(self.average_packet_delay),
            loop_cover_delay: Duration::from_millis(self.loop_cover_traffic_average_delay),
            packet_size,
            incomplete_message_timeout: Duration::from_millis(self.incomplete_message_timeout),
            max_message_size: self.max_message_size,
            ack_wait_multiplier: self.ack_wait_multiplier,
            ack_wait_addition: Duration::from_millis(self.ack_wait_addition),
            max_retransmissions: self.maximum_retransmissions,
            ..ClientConfig::default()
        })
    }
}

impl Config {
    /// The driver's settings: `[debug]`'s rates and timeouts, `[socket]`'s
    /// limits, as written (the driver holds them to its one rule of bounds,
    /// [`DriverConfig::bounded`]).
    pub fn driver_config(&self) -> Result<DriverConfig> {
        let d = &self.debug;
        let ms = Duration::from_millis;
        Ok(DriverConfig {
            client: d.client_config()?,
            handshake_timeout: ms(d.gateway_response_timeout),
            reconnect_initial: ms(d.gateway_reconnect_initial_backoff),
            reconnect_max: ms(d.gateway_reconnect_max_backoff),
            stable_connection: defaults::STABLE_CONNECTION,
            topology_refresh: ms(d.topology_refresh_rate),
            max_applications: self.socket.max_applications,
            kept_messages: d.stored_messages_limit,
            kept_bytes: defaults::KEPT_BYTES,
        })
    }

    pub fn new(id: &str, directory_server: &str, gateway_id: &str, port: u16) -> Result<Self> {
        let data = client_dir(id)?.join("data");
        Ok(Config {
            client: ClientSection {
                id: id.to_string(),
                directory_server: directory_server.to_string(),
                private_identity_key_file: data.join("private_identity.pem"),
                public_identity_key_file: data.join("public_identity.pem"),
                gateway_id: gateway_id.to_string(),
                directory_key: None,
                threshold: None,
                authorities: Vec::new(),
            },
            socket: SocketSection {
                socket_type: "WebSocket".into(),
                listening_port: port,
                allowed_origins: crate::origin::default_allowed_origins(),
                max_applications: DEFAULT_MAX_APPLICATIONS,
                push_after_quiet_ms: DEFAULT_PUSH_AFTER_QUIET_MS,
            },
            debug: DebugSection::default(),
        })
    }

    pub fn load(id: &str) -> Result<Self> {
        let path = config_path(id)?;
        if !path.exists() {
            bail!(
                "client '{id}' is not initialised ({} does not exist); run `nym-client init --id {id}` first",
                path.display()
            );
        }
        Self::load_from(&path)
    }

    pub fn load_from(path: &Path) -> Result<Self> {
        let text = fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let config: Config =
            toml::from_str(&text).with_context(|| format!("{} is not a valid client config", path.display()))?;
        if config.socket.socket_type != "WebSocket" {
            bail!("[socket] socket_type '{}' is not supported (only \"WebSocket\")", config.socket.socket_type);
        }
        config.debug.client_config()?;
        config.directory_trust(None).with_context(|| format!("{}", path.display()))?;
        crate::origin::OriginPolicy::new(&config.socket.allowed_origins)
            .map_err(|e| anyhow!("[socket] allowed_origins: {e}"))?;
        Ok(config)
    }

    pub fn to_toml(&self) -> Result<String> {
        let body = toml::to_string_pretty(self).context("cannot serialise the config")?;
        Ok(format!(
            "# nym-client configuration. Times in [debug] are milliseconds.\n\
             # average_packet_delay = 0 turns throttling (and that stream's cover) off:\n\
             # for benchmarks only. loop_cover_traffic_average_delay = 0 turns loop cover off.\n\n{body}"
        ))
    }

    /// Writes the config to `config_path(id)`.
    pub fn save(&self) -> Result<PathBuf> {
        let path = config_path(&self.client.id)?;
        write_file(&path, self.to_toml()?.as_bytes(), false)?;
        Ok(path)
    }

    /// Whom `run` believes: `[[client.authorities]]` with `threshold`; or
    /// one directory (`directory_server`, or `directory` for this run) with
    /// its pinned `directory_key`, or trusted on first use without one.
    pub fn directory_trust(&self, directory: Option<&str>) -> Result<DirectoryTrust> {
        let c = &self.client;
        if c.authorities.is_empty() {
            if c.threshold.is_some() {
                bail!("[client] threshold is set but no [[client.authorities]] are listed");
            }
            let url = directory.unwrap_or(&c.directory_server).to_string();
            return Ok(match self.directory_key()? {
                Some(key) => DirectoryTrust::Authorities(Authorities::single(key, url)),
                None => DirectoryTrust::FirstUse { url },
            });
        }
        if let Some(url) = directory {
            bail!(
                "--directory {url} cannot replace the [[client.authorities]] of the config; \
                 edit them in config.toml instead"
            );
        }
        let mut list = Vec::new();
        for (i, a) in c.authorities.iter().enumerate() {
            let bad = |e: String| anyhow!("[[client.authorities]] entry {}: {e}", i + 1);
            let key = nym_client_core::decode_key(&a.key, "key").map_err(|e| bad(e.to_string()))?;
            // The file's own checks (an ed25519 key, an http(s) URL), line for entry.
            nym_wire_line_check(&a.key, &a.url).map_err(bad)?;
            list.push(Authority { key, url: a.url.trim_end_matches('/').to_string() });
        }
        Authorities::new(list, c.threshold)
            .map(DirectoryTrust::Authorities)
            .map_err(|e| anyhow!("[client] authorities: {e}"))
    }

    /// Records `authorities` (and their threshold) as the ones `run` believes.
    pub fn set_authorities(&mut self, authorities: &Authorities) {
        self.client.authorities =
            authorities.list().iter().map(|a| AuthorityEntry { url: a.url.clone(), key: a.key_b58() }).collect();
        self.client.threshold = Some(authorities.threshold());
        self.client.directory_key = None;
    }

    /// The pinned directory key, if `init` recorded one.
    pub fn directory_key(&self) -> Result<Option<[u8; 32]>> {
        self.client
            .directory_key
            .as_deref()
            .map(|k| nym_client_core::decode_key(k, "[client] directory_key").map_err(|e| anyhow!("{e}")))
            .transpose()
    }

    pub fn load_keys(&self) -> Result<ClientKeys> {
        let private = fs::read_to_string(&self.client.private_identity_key_file)
            .with_context(|| format!("cannot read {}", self.client.private_identity_key_file.display()))?;
        let public = fs::read_to_string(&self.client.public_identity_key_file)
            .with_context(|| format!("cannot read {}", self.client.public_identity_key_file.display()))?;
        ClientKeys::from_pem(&private, &public).map_err(|e| anyhow!("bad key files: {e}"))
    }

    pub fn save_keys(&self, keys: &ClientKeys) -> Result<()> {
        write_file(&self.client.private_identity_key_file, keys.private_pem().as_bytes(), true)?;
        write_file(&self.client.public_identity_key_file, keys.public_pem().as_bytes(), false)?;
        Ok(())
    }

    /// A file of the client's data directory (beside its private key).
    fn data_file(&self, name: &str) -> PathBuf {
        self.client.private_identity_key_file.parent().map(|dir| dir.join(name)).unwrap_or_else(|| PathBuf::from(name))
    }

    /// Where SURBs and reply keys are kept across restarts (secret: 0600).
    pub fn reply_store_file(&self) -> PathBuf {
        self.data_file("reply_store.bin")
    }

    /// Received messages kept for an application, and which were handed
    /// over (secret: 0600).
    pub fn received_messages_file(&self) -> PathBuf {
        self.data_file("received_messages.log")
    }

    pub fn gateway_identity(&self) -> Result<[u8; 32]> {
        nym_client_core::decode_key(&self.client.gateway_id, "gateway_id").map_err(|e| anyhow!("[client] {e}"))
    }
}

/// Creates `dir` and its missing parents as 0700 (owner only), whatever
/// the umask, and makes `dir` itself 0700 if it already existed: the
/// client's directories hold its keys, SURBs and kept messages.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        builder.mode(0o700);
        builder.create(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        // the mode above was masked by the umask: set it exactly
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot restrict {}", dir.display()))?;
    }
    #[cfg(not(unix))]
    builder.create(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(())
}

/// Writes a file, creating its directory; `secret` files get mode 0600 from
/// their creation on (never world-readable, even briefly).
pub fn write_file(path: &Path, contents: &[u8], secret: bool) -> Result<()> {
    if let Some(dir) = path.parent() {
        create_private_dir(dir)?;
    }
    let mut f = open_with_mode(fs::OpenOptions::new().write(true).create(true).truncate(true), path, secret)?;
    f.write_all(contents).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Opens a secret file for appending, creating it 0600 (and making an
/// existing one 0600).
pub fn open_secret_append(path: &Path) -> Result<fs::File> {
    open_with_mode(fs::OpenOptions::new().create(true).append(true), path, true)
}

/// Opens with `opts`; a file it creates is 0600 when `secret` (from its
/// creation on), else 0644, and a secret file is made 0600 if it existed.
fn open_with_mode(opts: &mut fs::OpenOptions, path: &Path, secret: bool) -> Result<fs::File> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(if secret { 0o600 } else { 0o644 });
    }
    let f = opts.open(path).with_context(|| format!("cannot open {}", path.display()))?;
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot restrict {}", path.display()))?;
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trips_and_has_seed_layout() {
        let c = Config {
            client: ClientSection {
                id: "alice".into(),
                directory_server: "http://127.0.0.1:1".into(),
                private_identity_key_file: "/x/private_identity.pem".into(),
                public_identity_key_file: "/x/public_identity.pem".into(),
                gateway_id: "abc".into(),
                directory_key: None,
                threshold: None,
                authorities: Vec::new(),
            },
            socket: SocketSection {
                socket_type: "WebSocket".into(),
                listening_port: 1977,
                allowed_origins: crate::origin::default_allowed_origins(),
                max_applications: DEFAULT_MAX_APPLICATIONS,
                push_after_quiet_ms: DEFAULT_PUSH_AFTER_QUIET_MS,
            },
            debug: DebugSection::default(),
        };
        let text = c.to_toml().unwrap();
        for needle in [
            "[client]",
            "[socket]",
            "[debug]",
            "listening_port = 1977",
            "socket_type = \"WebSocket\"",
            "gateway_id",
            "directory_server",
            "average_packet_delay = 20",
            "average_hop_delay = 15",
            "loop_cover_traffic_average_delay = 200",
        ] {
            assert!(text.contains(needle), "{needle} missing in\n{text}");
        }
        let back: Config = toml::from_str(&text).unwrap();
        assert_eq!(back, c);
        // [debug] may be partial or missing.
        let partial = text.split("\n[debug]").next().unwrap().to_string() + "\n[debug]\naverage_packet_delay = 0\n";
        let back: Config = toml::from_str(&partial).unwrap();
        assert_eq!(back.debug.average_packet_delay, 0);
        assert_eq!(back.debug.client_config().unwrap().average_packet_delay, Duration::ZERO);
    }

    fn sample() -> Config {
        let mut c = Config::new("alice", "http://127.0.0.1:1", "abc", 1977).unwrap_or_else(|_| {
            // No $HOME in this environment: the paths do not matter here.
            toml::from_str("[client]\nid='alice'\ndirectory_server='http://127.0.0.1:1'\nprivate_identity_key_file='/p'\npublic_identity_key_file='/q'\ngateway_id='abc'\n[socket]\nsocket_type='WebSocket'\nlistening_port=1977\n").unwrap()
        });
        c.client.directory_key = None;
        c
    }

    fn key(seed: u8) -> [u8; 32] {
        ed25519_dalek::SigningKey::from_bytes(&[seed; 32]).verifying_key().to_bytes()
    }

    #[test]
    fn authorities_are_kept_as_client_authorities_with_their_threshold() {
        let mut c = sample();
        let file = (1..=3u8)
            .map(|i| format!("{} http://10.0.0.{i}:8080\n", nym_client_core::encode_key(&key(i))))
            .collect::<String>();
        let authorities = Authorities::parse(&file, None).unwrap();
        c.set_authorities(&authorities);
        let text = c.to_toml().unwrap();
        assert!(text.contains("[[client.authorities]]") && text.contains("threshold = 2"), "{text}");
        let back: Config = toml::from_str(&text).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.directory_trust(None).unwrap(), DirectoryTrust::Authorities(authorities));
        assert!(back.directory_trust(Some("http://x:1")).unwrap_err().to_string().contains("--directory"));

        let mut bad = c.clone();
        bad.client.authorities[1].key = "not-a-key".into();
        let e = bad.directory_trust(None).unwrap_err().to_string();
        assert!(e.contains("entry 2"), "{e}");
        let mut bad = c.clone();
        bad.client.authorities[2].url = "ftp://a:1".into();
        let e = bad.directory_trust(None).unwrap_err().to_string();
        assert!(e.contains("entry 3") && e.contains("not an http"), "{e}");
        let mut bad = c.clone();
        bad.client.threshold = Some(4);
        assert!(bad.directory_trust(None).unwrap_err().to_string().contains("threshold 4"));
    }

    #[test]
    fn one_directory_is_pinned_by_its_key_or_trusted_on_first_use() {
        let mut c = sample();
        assert_eq!(c.directory_trust(None).unwrap(), DirectoryTrust::FirstUse { url: "http://127.0.0.1:1".into() });
        assert_eq!(
            c.directory_trust(Some("http://127.0.0.1:2")).unwrap(),
            DirectoryTrust::FirstUse { url: "http://127.0.0.1:2".into() }
        );
        c.client.directory_key = Some(nym_client_core::encode_key(&key(1)));
        assert_eq!(
            c.directory_trust(None).unwrap(),
            DirectoryTrust::Authorities(Authorities::single(key(1), "http://127.0.0.1:1"))
        );
        c.client.threshold = Some(1);
        assert!(c.directory_trust(None).is_err(), "a threshold without authorities");
    }

    #[test]
    fn bad_ids_are_refused() {
        for id in ["", "..", "a/b", "a b"] {
            assert!(validate_id(id).is_err(), "{id}");
        }
        assert!(validate_id("alice-2_x").is_ok());
    }
}

/// One authority checked as a line of an authorities file is.
fn nym_wire_line_check(key: &str, url: &str) -> std::result::Result<(), String> {
    Authorities::parse(&format!("{key} {url}\n"), None)
        .map(|_| ())
        .map_err(|e| e.to_string().replace("authorities file line 1: ", ""))
}
