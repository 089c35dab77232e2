//! What the directory is told at start: its listen address, data dir,
//! limits and admission list (`nym-directory` flags), and the `--admit` file.

use anyhow::{anyhow, Context, Result};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long an entry lives without being re-announced (`--expiry-secs`).
pub const DEFAULT_EXPIRY: Duration = Duration::from_secs(10);
/// `expiresAt - issuedAt` of the topology document (`--topology-validity-secs`).
pub const DEFAULT_TOPOLOGY_VALIDITY: Duration = Duration::from_secs(300);
/// Most nodes listed at once (`--max-nodes`).
pub const DEFAULT_MAX_NODES: usize = 1000;
/// A descriptor signed longer ago than this is refused (`--max-descriptor-age-secs`).
pub const DEFAULT_MAX_DESCRIPTOR_AGE: Duration = Duration::from_secs(60);
/// A descriptor signed further in the future than this is refused (`--max-clock-skew-secs`).
pub const DEFAULT_MAX_CLOCK_SKEW: Duration = Duration::from_secs(60);
/// Announcements per second per source IP, and the burst (`--source-rate`, `--source-burst`).
pub const DEFAULT_SOURCE_RATE: f64 = 100.0;
pub const DEFAULT_SOURCE_BURST: u32 = 200;
/// Announcements per second per identity, and the burst (`--identity-rate`, `--identity-burst`).
pub const DEFAULT_IDENTITY_RATE: f64 = 10.0;
pub const DEFAULT_IDENTITY_BURST: u32 = 20;
/// Source IPs the rate limiter tracks at once (`--max-sources`).
pub const DEFAULT_MAX_SOURCES: usize = 10_000;
/// Largest announcement body in bytes (`--max-body`); a real descriptor is under 1 KiB.
pub const DEFAULT_MAX_BODY: usize = 4096;

/// Everything the directory is told at start.
#[derive(Debug, Clone)]
pub struct DirectoryConfig {
    /// Port 0 picks a free port.
    pub listen: SocketAddr,
    /// The directory's key lives here (`directory_private.pem` 0600,
    /// `directory_public.pem`); made on first start.
    pub data_dir: PathBuf,
    pub expiry: Duration,
    pub topology_validity: Duration,
    /// `Some`: only these identities may announce (403 for everyone else).
    /// `None`: open, within the limits below.
    pub admit: Option<HashSet<[u8; 32]>>,
    pub max_nodes: usize,
    pub max_descriptor_age: Duration,
    pub max_clock_skew: Duration,
    pub source_rate: f64,
    pub source_burst: u32,
    pub identity_rate: f64,
    pub identity_burst: u32,
    pub max_sources: usize,
    pub max_body: usize,
    /// The network's key epoch length (`--epoch-secs`): stated in every
    /// document; descriptors must carry the keys of their signing epoch and
    /// the next under it.
    pub epoch_secs: u64,
    /// `--metrics`: serve Prometheus metrics on `GET /metrics` here (port 0
    /// picks a free port); None: no metrics listener.
    pub metrics: Option<SocketAddr>,
    /// The network's authorities (None: a network of this one authority).
    pub authorities: Option<nym_wire::authority::Authorities>,
    /// The consensus round length (`--round-secs`).
    pub round: Duration,
    /// `--open`: admit any identity.
    pub open: bool,
}

impl DirectoryConfig {
    /// Defaults: 127.0.0.1:8080, open, the limits above.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        DirectoryConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: data_dir.into(),
            expiry: DEFAULT_EXPIRY,
            topology_validity: DEFAULT_TOPOLOGY_VALIDITY,
            admit: None,
            max_nodes: DEFAULT_MAX_NODES,
            max_descriptor_age: DEFAULT_MAX_DESCRIPTOR_AGE,
            max_clock_skew: DEFAULT_MAX_CLOCK_SKEW,
            source_rate: DEFAULT_SOURCE_RATE,
            source_burst: DEFAULT_SOURCE_BURST,
            identity_rate: DEFAULT_IDENTITY_RATE,
            identity_burst: DEFAULT_IDENTITY_BURST,
            max_sources: DEFAULT_MAX_SOURCES,
            max_body: DEFAULT_MAX_BODY,
            epoch_secs: nym_wire::epoch::DEFAULT_EPOCH_SECS,
            metrics: None,
            authorities: None,
            round: Duration::from_secs(60),
            open: false,
        }
    }

    /// `$HOME/.nym/directory` (or `./.nym/directory` without HOME).
    pub fn default_data_dir() -> PathBuf {
        std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(".")).join(".nym").join("directory")
    }

    /// Identities remembered (with the highest seq accepted from each) at
    /// once: the seq of every identity heard from within the descriptor age.
    pub(super) fn max_remembered(&self) -> usize {
        self.max_nodes.saturating_mul(4).max(1024) + self.admit.as_ref().map_or(0, HashSet::len)
    }

    /// The startup log line's list of limits.
    pub fn describe_limits(&self) -> String {
        format!(
            "entries expire after {:?} (--expiry-secs); documents valid {:?} (--topology-validity-secs); at most {} nodes \
             (--max-nodes); descriptors at most {:?} old (--max-descriptor-age-secs) and {:?} ahead \
             (--max-clock-skew-secs); {}/s burst {} announcements per source IP (--source-rate, --source-burst), \
             {} sources tracked (--max-sources); {}/s burst {} per identity (--identity-rate, --identity-burst); \
             bodies up to {} bytes (--max-body); key epochs of {} s (--epoch-secs)",
            self.expiry,
            self.topology_validity,
            self.max_nodes,
            self.max_descriptor_age,
            self.max_clock_skew,
            self.source_rate,
            self.source_burst,
            self.max_sources,
            self.identity_rate,
            self.identity_burst,
            self.max_body,
            self.epoch_secs
        )
    }
}

/// Reads an `--admit` file: one base58 ed25519 key per line; `#` starts a
/// comment; blank lines are allowed. A bad line is an error naming it.
pub fn parse_admit_file(text: &str) -> Result<HashSet<[u8; 32]>> {
    let mut keys = HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let key = crate::keyfiles::parse_ed25519_b58(line).map_err(|e| anyhow!("line {}: {e:#}", i + 1))?;
        keys.insert(key);
    }
    Ok(keys)
}

/// [`parse_admit_file`] of a file.
pub fn load_admit_file(path: &Path) -> Result<HashSet<[u8; 32]>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse_admit_file(&text).with_context(|| format!("bad admit file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use nym_wire::address::encode_key;

    fn b58(seed: u8) -> String {
        encode_key(SigningKey::from_bytes(&[seed; 32]).verifying_key().as_bytes())
    }

    #[test]
    fn admit_files_allow_comments_and_blank_lines_and_name_a_bad_line() {
        let text = format!("# our nodes\n\n{}\n  {}  # gateway\n\n", b58(1), b58(2));
        let keys = parse_admit_file(&text).unwrap();
        assert_eq!(keys.len(), 2);
        assert!(keys.contains(&SigningKey::from_bytes(&[1; 32]).verifying_key().to_bytes()));
        assert!(parse_admit_file("").unwrap().is_empty());

        let e = format!("{:#}", parse_admit_file(&format!("{}\n# ok\nnot-a-key\n", b58(1))).unwrap_err());
        assert!(e.contains("line 3") && e.contains("base58"), "{e}");
        let short = encode_key(&[7u8; 31]);
        let e = format!("{:#}", parse_admit_file(&format!("\n{short}\n")).unwrap_err());
        assert!(e.contains("line 2") && e.contains("32 bytes"), "{e}");
        // 32 bytes that are not a curve point
        let mut not_a_point = [0u8; 32];
        not_a_point[0] = 2;
        not_a_point[31] = 0x7f;
        if ed25519_dalek::VerifyingKey::from_bytes(&not_a_point).is_err() {
            let e = format!("{:#}", parse_admit_file(&encode_key(&not_a_point)).unwrap_err());
            assert!(e.contains("line 1") && e.contains("not an ed25519"), "{e}");
        }
        // two keys on one line are one bad line
        let e = format!("{:#}", parse_admit_file(&format!("{} {}", b58(1), b58(2))).unwrap_err());
        assert!(e.contains("line 1"), "{e}");
    }
}
