//! A node's Sphinx keys by key epoch, each with its durable replay filter.
//!
//! The node holds the keys of the previous, current and next epochs
//! ([`nym_wire::epoch`]): packets built near a boundary, or by clients whose
//! clocks differ a little, still open. At every boundary the next epoch's
//! key is made and the oldest is deleted with its replay filter: a retired
//! key opens nothing, so the filter that guarded it can go (and captured
//! packets can no longer be replayed at all).
//!
//! On disk, in `<data dir>/sphinx-keys/` (0700): `epoch-N.pem` (0600, the
//! x25519 secret) and `epoch-N.replay` (0600, its filter, `replay.rs`).
//! Filters are saved every `replay_save_interval` marked unclean, and once
//! more, marked clean, when the node stops (SIGTERM, Ctrl-C, `shutdown`).
//! A key whose filter is missing, damaged, bound to another key, or was not
//! saved by a clean stop is **rotated early** at start: a fresh key replaces
//! it (the previous epoch's is simply dropped) and the node says so. Tags
//! seen since the last save are unknown after a crash, so keeping the key
//! would let those packets be replayed; clients pick up the new key with
//! the next topology, and packets built for the old one are dropped.
//! docs/key-epochs.md has the whole story.

use crate::keyfiles::ensure_dir;
use crate::replay::{FilterLoadError, ReplayFilter, ReplayFilterParams};
use crate::stats::NodeStats;
use anyhow::{bail, Context, Result};
use nym_wire::epoch::{epoch_at, KeyEpoch, DEFAULT_EPOCH_SECS, MIN_EPOCH_SECS};
use nym_wire::keys::{decode_pem32, encode_pem, X25519_PRIVATE_TAG};
use nym_wire::topology::EpochKeyJson;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use x25519_dalek::{PublicKey, StaticSecret};

pub const KEYS_DIR: &str = "sphinx-keys";
/// Written (in `KEYS_DIR`) after the final save of a clean stop, deleted at
/// start: without it, the filters on disk may miss tags (a crash).
pub const CLEAN_STOP_FILE: &str = "clean-stop";

/// Packets a second a node is sized for: its filters hold an epoch of them.
pub const DEFAULT_RATED_PACKETS_PER_SEC: u64 = 200;
/// The chance a fresh packet is taken for a replay, at rated load.
pub const DEFAULT_REPLAY_FP_RATE: f64 = 1e-6;
pub const DEFAULT_REPLAY_SAVE_INTERVAL: Duration = Duration::from_secs(60);

/// How a node's keys rotate and its replay filters are sized and saved.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochSettings {
    /// The key epoch length. A node with a directory replaces it with the
    /// authorities' document's `epochLengthSecs` before making its keys.
    pub epoch_secs: u64,
    /// `--rated-packets-per-sec`: a filter holds `rate x epoch` tags at
    /// `replay_fp_rate`; past that its false-positive rate grows.
    pub rated_packets_per_sec: u64,
    /// `--replay-fp-rate`.
    pub replay_fp_rate: f64,
    /// `--replay-save-secs`: how often filters are written while running.
    pub replay_save_interval: Duration,
}

impl Default for EpochSettings {
    fn default() -> Self {
        EpochSettings {
            epoch_secs: DEFAULT_EPOCH_SECS,
            rated_packets_per_sec: DEFAULT_RATED_PACKETS_PER_SEC,
            replay_fp_rate: DEFAULT_REPLAY_FP_RATE,
            replay_save_interval: DEFAULT_REPLAY_SAVE_INTERVAL,
        }
    }
}

impl EpochSettings {
    pub fn epoch_ms(&self) -> u64 {
        self.epoch_secs.saturating_mul(1000)
    }

    /// The size of each key's replay filter.
    pub fn filter_params(&self) -> ReplayFilterParams {
        ReplayFilterParams {
            capacity: self.rated_packets_per_sec.saturating_mul(self.epoch_secs).max(1),
            false_positive_rate: self.replay_fp_rate,
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.epoch_secs < MIN_EPOCH_SECS {
            bail!(
                "--epoch-secs must be at least {MIN_EPOCH_SECS}, got {}",
                self.epoch_secs
            );
        }
        if self.rated_packets_per_sec == 0 {
            bail!("--rated-packets-per-sec must be positive");
        }
        if self.replay_save_interval.is_zero() {
            bail!("--replay-save-secs must be positive");
        }
        self.filter_params()
            .validate()
            .map_err(|e| anyhow::anyhow!("replay filter: {e}"))
    }
}

/// The flags of [`EpochSettings`], shared by `nym-mixnode` and `nym-gateway`.
#[derive(Debug, Clone, clap::Args)]
pub struct EpochFlags {
    /// Key epoch length in seconds (Sphinx keys rotate this often). Not
    /// needed: a node with authorities takes it from their signed document.
    /// If given and the document states another, the node refuses to start
    /// (the operator expected a different network). Without a directory,
    /// the length used (default 86400).
    #[arg(long)]
    pub epoch_secs: Option<u64>,
    /// Packets a second this node is sized for: each key's replay filter
    /// holds an epoch of them at --replay-fp-rate (past that, the rate grows).
    #[arg(long, default_value_t = DEFAULT_RATED_PACKETS_PER_SEC)]
    pub rated_packets_per_sec: u64,
    /// False-positive rate of the replay filters at the rated load.
    #[arg(long, default_value_t = DEFAULT_REPLAY_FP_RATE)]
    pub replay_fp_rate: f64,
    /// Seconds between saves of the replay filters (also saved at a clean stop).
    #[arg(long, default_value_t = DEFAULT_REPLAY_SAVE_INTERVAL.as_secs_f64())]
    pub replay_save_secs: f64,
}

impl EpochFlags {
    pub fn settings(&self) -> Result<EpochSettings> {
        let settings = EpochSettings {
            epoch_secs: self.epoch_secs.unwrap_or(DEFAULT_EPOCH_SECS),
            rated_packets_per_sec: self.rated_packets_per_sec,
            replay_fp_rate: self.replay_fp_rate,
            replay_save_interval: crate::cli::secs_flag(self.replay_save_secs, "--replay-save-secs")?,
        };
        settings.validate()?;
        Ok(settings)
    }
}

/// One epoch's key and the filter of the replay tags seen under it.
pub struct EpochKey {
    pub epoch: KeyEpoch,
    pub secret: StaticSecret,
    pub public: PublicKey,
    filter: Mutex<ReplayFilter>,
    /// Tags were added since the last save.
    dirty: AtomicBool,
}

impl EpochKey {
    /// Records a packet's replay tag; false when it was seen before.
    pub fn check_tag(&self, tag: [u8; 32]) -> bool {
        let fresh = self.filter.lock().unwrap_or_else(|p| p.into_inner()).insert(tag);
        if fresh {
            self.dirty.store(true, Ordering::Relaxed);
        }
        fresh
    }

    fn binding(&self) -> [u8; 32] {
        filter_binding(self.epoch, &self.public)
    }
}

/// What ties a filter file to its key: a file copied from another key, or
/// left from a key that was replaced, is not believed.
fn filter_binding(epoch: KeyEpoch, public: &PublicKey) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"nym-replay-filter/1");
    h.update(epoch.to_be_bytes());
    h.update(public.as_bytes());
    h.finalize().into()
}

/// The node's keys: previous, current and next epoch.
pub struct SphinxKeys {
    dir: PathBuf,
    settings: EpochSettings,
    keys: RwLock<BTreeMap<KeyEpoch, Arc<EpochKey>>>,
    stats: Arc<NodeStats>,
}

impl SphinxKeys {
    /// Loads the keys kept in `data_dir` for the epochs around `now_unix_ms`
    /// (rotating early those whose filter can't be trusted), makes the
    /// missing ones, deletes the retired. Returns what it had to report.
    pub fn open(
        data_dir: &Path,
        settings: EpochSettings,
        now_unix_ms: u64,
        stats: Arc<NodeStats>,
    ) -> Result<(Arc<Self>, Vec<String>)> {
        settings.validate()?;
        let dir = data_dir.join(KEYS_DIR);
        ensure_dir(&dir)?;
        let current = epoch_at(now_unix_ms, settings.epoch_ms());
        let marker = dir.join(CLEAN_STOP_FILE);
        let clean_stop = marker.exists();
        let mut report = Vec::new();
        let mut keys = BTreeMap::new();
        for (epoch, path) in key_files(&dir)? {
            if epoch.saturating_add(1) < current || epoch > current.saturating_add(1) {
                remove_key_files(&dir, epoch);
                continue;
            }
            match load_key(&dir, epoch, &path, clean_stop) {
                Ok(key) => {
                    keys.insert(epoch, Arc::new(key));
                }
                Err(why) => {
                    report.push(format!(
                        "sphinx key of epoch {epoch}: {why}; {}",
                        if epoch < current {
                            "dropped"
                        } else {
                            "replaced by a fresh key (rotated early)"
                        }
                    ));
                    remove_key_files(&dir, epoch);
                }
            }
        }
        // From now on the filters on disk fall behind: until the next clean
        // stop they must not pass for complete.
        if clean_stop {
            fs::remove_file(&marker).with_context(|| format!("cannot remove {}", marker.display()))?;
            sync_dir(&dir);
        }
        let store = SphinxKeys {
            dir,
            settings,
            keys: RwLock::new(keys),
            stats,
        };
        for epoch in [current, current.saturating_add(1)] {
            store.ensure_key(epoch)?;
        }
        store.stats.epoch.store(u64::from(current), Ordering::Relaxed);
        Ok((Arc::new(store), report))
    }

    pub fn settings(&self) -> &EpochSettings {
        &self.settings
    }

    fn held(&self) -> Vec<Arc<EpochKey>> {
        self.keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// The key for packets of `epoch`, if the node holds it.
    pub fn get(&self, epoch: KeyEpoch) -> Option<Arc<EpochKey>> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).get(&epoch).cloned()
    }

    /// The epochs held, oldest first.
    pub fn epochs(&self) -> Vec<KeyEpoch> {
        self.keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .copied()
            .collect()
    }

    /// The current epoch (the node's clock at the last rotation check).
    pub fn current_epoch(&self) -> KeyEpoch {
        self.stats.epoch.load(Ordering::Relaxed) as KeyEpoch
    }

    /// The public key of the current epoch. The node always holds it:
    /// `open` and every rotation make it before the epoch becomes current.
    pub fn current_public(&self) -> PublicKey {
        self.get(self.current_epoch())
            .map(|k| k.public)
            .unwrap_or(PublicKey::from([0; 32]))
    }

    /// The keys to publish in a descriptor signed at `unix_ms`: that
    /// epoch's and the next.
    ///
    /// Just past a boundary, before the rotation task has run, the next
    /// key is made here: a descriptor always carries both.
    pub fn published(&self, unix_ms: u64) -> Vec<EpochKeyJson> {
        let epoch = epoch_at(unix_ms, self.settings.epoch_ms());
        let current = self.current_epoch();
        let near = |e: KeyEpoch| e.saturating_add(1) >= current && e <= current.saturating_add(2);
        [epoch, epoch.saturating_add(1)]
            .into_iter()
            .filter_map(|e| if near(e) { self.ensure_key(e).ok() } else { self.get(e) })
            .map(|k| EpochKeyJson::new(k.epoch, &k.public))
            .collect()
    }

    /// The key of `epoch`, made (and its file written) if the node has none.
    /// Check and insert happen under one write lock, so two callers can't
    /// make two different keys for one epoch.
    fn ensure_key(&self, epoch: KeyEpoch) -> Result<Arc<EpochKey>> {
        if let Some(k) = self.get(epoch) {
            return Ok(k);
        }
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = keys.get(&epoch) {
            return Ok(k.clone());
        }
        let mut bytes = [0u8; 32];
        rand::fill(&mut bytes);
        let secret = StaticSecret::from(bytes);
        let public = PublicKey::from(&secret);
        let filter =
            ReplayFilter::new(self.settings.filter_params()).map_err(|e| anyhow::anyhow!("replay filter: {e}"))?;
        // Its filter is written with the first save that finds it used (or
        // at the stop): a key file without a filter after a crash is rotated.
        let key = Arc::new(EpochKey {
            epoch,
            secret,
            public,
            filter: Mutex::new(filter),
            dirty: AtomicBool::new(false),
        });
        write_private(
            &key_path(&self.dir, epoch),
            &encode_pem(X25519_PRIVATE_TAG, key.secret.as_bytes()),
        )?;
        keys.insert(epoch, key.clone());
        Ok(key)
    }

    /// Moves to the epoch of `now_unix_ms`: makes the next key, deletes
    /// those before the previous (with their filters). True when the
    /// current epoch changed.
    pub fn rotate(&self, now_unix_ms: u64) -> Result<bool> {
        let current = epoch_at(now_unix_ms, self.settings.epoch_ms());
        let before = self.current_epoch();
        self.ensure_key(current)?;
        self.ensure_key(current.saturating_add(1))?;
        let retired: Vec<KeyEpoch> = self
            .epochs()
            .into_iter()
            .filter(|e| e.saturating_add(1) < current)
            .collect();
        if !retired.is_empty() {
            let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
            for epoch in &retired {
                keys.remove(epoch);
            }
        }
        for epoch in retired {
            remove_key_files(&self.dir, epoch);
            tracing::info!("sphinx key of epoch {epoch} retired and deleted with its replay filter");
        }
        self.stats.epoch.store(u64::from(current), Ordering::Relaxed);
        Ok(current != before)
    }

    /// Writes the filters that changed; with `clean` (the final save of a
    /// clean stop: no packet is processed any more) all of them, then the
    /// clean-stop mark.
    pub fn save(&self, clean: bool) -> Result<()> {
        let mut failed = Vec::new();
        for key in self.held() {
            if clean || key.dirty.load(Ordering::Relaxed) {
                if let Err(e) = self.save_one(&key, clean) {
                    failed.push(format!("epoch {}: {e}", key.epoch));
                }
            }
        }
        if !failed.is_empty() {
            bail!("cannot save replay filters: {}", failed.join("; "));
        }
        if clean {
            write_private(&self.dir.join(CLEAN_STOP_FILE), &format!("{}\n", unix_time_ms()))?;
            sync_dir(&self.dir);
        }
        Ok(())
    }

    fn save_one(&self, key: &EpochKey, clean: bool) -> Result<()> {
        // A copy, so packets aren't held up while it is written.
        let snapshot = {
            let filter = key.filter.lock().unwrap_or_else(|p| p.into_inner());
            key.dirty.store(false, Ordering::Relaxed);
            filter.clone()
        };
        let path = filter_path(&self.dir, key.epoch);
        snapshot
            .save(&path, &key.binding(), clean)
            .with_context(|| format!("cannot write {}", path.display()))
    }
}

/// Unix milliseconds now: key epochs follow the wall clock.
pub fn unix_time_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A node's keys at start: opened (what had to be rotated early is
/// logged), then rotated and saved in the background until `cancel`.
pub(crate) fn start_keys(
    data_dir: &Path,
    settings: EpochSettings,
    stats: Arc<NodeStats>,
    cancel: CancellationToken,
) -> Result<Arc<SphinxKeys>> {
    let (keys, report) = SphinxKeys::open(data_dir, settings, unix_time_ms(), stats)?;
    for line in report {
        tracing::warn!("{line}");
    }
    spawn_maintenance(keys.clone(), cancel);
    Ok(keys)
}

/// Rotates at every epoch boundary and saves the filters every
/// `replay_save_interval`, until cancelled (the final, clean save is the
/// node's `shutdown`).
fn spawn_maintenance(keys: Arc<SphinxKeys>, cancel: CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut last_save = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            match keys.rotate(unix_time_ms()) {
                Ok(true) => tracing::info!("key epoch {} began", keys.current_epoch()),
                Ok(false) => {}
                Err(e) => tracing::error!("sphinx key rotation failed: {e:#}"),
            }
            if last_save.elapsed() >= keys.settings.replay_save_interval {
                last_save = tokio::time::Instant::now();
                let keys = keys.clone();
                if let Ok(Err(e)) = tokio::task::spawn_blocking(move || keys.save(false)).await {
                    tracing::error!("{e:#}");
                }
            }
        }
    });
}

fn key_path(dir: &Path, epoch: KeyEpoch) -> PathBuf {
    dir.join(format!("epoch-{epoch}.pem"))
}

fn filter_path(dir: &Path, epoch: KeyEpoch) -> PathBuf {
    dir.join(format!("epoch-{epoch}.replay"))
}

fn remove_key_files(dir: &Path, epoch: KeyEpoch) {
    for path in [key_path(dir, epoch), filter_path(dir, epoch)] {
        if let Err(e) = fs::remove_file(&path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!("cannot delete {}: {e}", path.display());
            }
        }
    }
}

/// `epoch-N.pem` files in `dir`.
fn key_files(dir: &Path) -> Result<Vec<(KeyEpoch, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        let epoch = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("epoch-"))
            .and_then(|n| n.strip_suffix(".pem"))
            .and_then(|n| n.parse::<KeyEpoch>().ok());
        if let Some(epoch) = epoch {
            out.push((epoch, path));
        }
    }
    Ok(out)
}

/// A kept key with its filter, or why it can't be trusted.
fn load_key(dir: &Path, epoch: KeyEpoch, path: &Path, clean_stop: bool) -> std::result::Result<EpochKey, String> {
    if !clean_stop {
        return Err("the node did not stop cleanly (a crash?): replays since its filter's last save would pass".into());
    }
    let text = fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let secret = StaticSecret::from(decode_pem32(&text, X25519_PRIVATE_TAG).map_err(|e| format!("bad key file: {e}"))?);
    let public = PublicKey::from(&secret);
    let loaded =
        ReplayFilter::load(&filter_path(dir, epoch), &filter_binding(epoch, &public)).map_err(|e| match e {
            FilterLoadError::Missing => "its replay filter is missing".to_string(),
            other => format!("its replay filter can't be used ({other})"),
        })?;
    if !loaded.clean {
        return Err("its replay filter was not saved at the last stop: replays since its last save would pass".into());
    }
    Ok(EpochKey {
        epoch,
        secret,
        public,
        filter: Mutex::new(loaded.filter),
        dirty: AtomicBool::new(false),
    })
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPOCH_MS: u64 = 10_000;

    fn settings() -> EpochSettings {
        EpochSettings {
            epoch_secs: EPOCH_MS / 1000,
            rated_packets_per_sec: 100,
            ..EpochSettings::default()
        }
    }

    fn open(dir: &Path, now: u64) -> (Arc<SphinxKeys>, Vec<String>) {
        SphinxKeys::open(dir, settings(), now, NodeStats::new()).unwrap()
    }

    #[test]
    fn keys_rotate_at_epoch_boundaries_holding_previous_current_and_next() {
        let dir = tempfile::tempdir().unwrap();
        let (keys, report) = open(dir.path(), 50_000);
        assert!(report.is_empty(), "{report:?}");
        assert_eq!(keys.epochs(), vec![5, 6]);
        assert_eq!(
            keys.published(50_000).iter().map(|k| k.epoch).collect::<Vec<_>>(),
            vec![5, 6]
        );
        let next = keys.get(6).unwrap().public;
        // signed just past the boundary, before the rotation task ran: both
        // keys still, the next one made on the spot
        let early: Vec<KeyEpoch> = keys.published(60_100).iter().map(|k| k.epoch).collect();
        assert_eq!(early, vec![6, 7]);
        assert!(keys.published(500_000).is_empty(), "no keys are made for far epochs");
        assert!(!keys.rotate(55_000).unwrap());
        assert!(keys.rotate(61_000).unwrap());
        assert_eq!(keys.epochs(), vec![5, 6, 7]);
        assert_eq!(
            keys.get(6).unwrap().public,
            next,
            "the published next key is the one used"
        );
        assert!(keys.rotate(71_000).unwrap());
        assert_eq!(keys.epochs(), vec![6, 7, 8]);
        assert!(
            !dir.path().join(KEYS_DIR).join("epoch-5.pem").exists(),
            "a retired key is deleted"
        );
        assert!(
            !dir.path().join(KEYS_DIR).join("epoch-5.replay").exists(),
            "with its filter"
        );
        assert_eq!(keys.current_epoch(), 7);
    }

    #[test]
    fn a_clean_stop_keeps_keys_and_replay_tags_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (keys, _) = open(dir.path(), 50_000);
        let key = keys.get(5).unwrap();
        assert!(key.check_tag([1; 32]));
        assert!(!key.check_tag([1; 32]));
        let public = key.public;
        keys.save(true).unwrap();
        drop((keys, key));
        let (again, report) = open(dir.path(), 52_000);
        assert!(report.is_empty(), "{report:?}");
        let key = again.get(5).unwrap();
        assert_eq!(key.public, public);
        assert!(!key.check_tag([1; 32]), "a replay after the restart is caught");
        assert!(key.check_tag([2; 32]));
    }

    #[test]
    fn without_a_clean_save_or_with_a_damaged_filter_the_key_is_rotated_early() {
        let dir = tempfile::tempdir().unwrap();
        let (keys, _) = open(dir.path(), 50_000);
        let before = keys.get(5).unwrap().public;
        keys.get(5).unwrap().check_tag([1; 32]);
        keys.save(false).unwrap(); // a periodic save, then a crash
        drop(keys);
        let (after_crash, report) = open(dir.path(), 51_000);
        assert_eq!(report.len(), 2, "{report:?}");
        assert!(
            report[0].contains("epoch 5")
                && report[0].contains("did not stop cleanly")
                && report[0].contains("rotated early")
        );
        let fresh = after_crash.get(5).unwrap();
        assert_ne!(
            fresh.public, before,
            "a new key: the old one's packets can't be replayed"
        );
        assert!(fresh.check_tag([1; 32]));

        // a clean save, then one flipped byte in a filter
        after_crash.save(true).unwrap();
        drop((after_crash, fresh));
        let path = dir.path().join(KEYS_DIR).join("epoch-6.replay");
        let mut bytes = fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x10;
        fs::write(&path, bytes).unwrap();
        let (_, report) = open(dir.path(), 52_000);
        assert_eq!(report.len(), 1, "{report:?}");
        assert!(
            report[0].contains("epoch 6") && report[0].contains("can't be used"),
            "{report:?}"
        );

        // a missing filter
        let (keys, _) = open(dir.path(), 52_000);
        keys.save(true).unwrap();
        drop(keys);
        fs::remove_file(dir.path().join(KEYS_DIR).join("epoch-5.replay")).unwrap();
        let (_, report) = open(dir.path(), 52_000);
        assert!(
            report.iter().any(|r| r.contains("epoch 5") && r.contains("missing")),
            "{report:?}"
        );
    }

    #[test]
    fn a_restart_after_the_key_retired_deletes_it_and_a_restart_does_not_leave_a_clean_mark_behind() {
        let dir = tempfile::tempdir().unwrap();
        let (keys, _) = open(dir.path(), 50_000);
        keys.save(true).unwrap();
        drop(keys);
        let (keys, report) = open(dir.path(), 90_000);
        assert!(report.is_empty(), "{report:?}");
        assert_eq!(keys.epochs(), vec![9, 10]);
        assert!(!dir.path().join(KEYS_DIR).join("epoch-5.pem").exists());
        // this run crashes without a save: the clean mark of the last stop
        // must not make its filters look complete
        keys.get(9).unwrap().check_tag([3; 32]);
        drop(keys);
        let (_, report) = open(dir.path(), 90_500);
        assert!(
            report
                .iter()
                .any(|r| r.contains("epoch 9") && r.contains("rotated early")),
            "{report:?}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn key_and_filter_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (keys, _) = open(dir.path(), 50_000);
        keys.save(true).unwrap();
        let d = dir.path().join(KEYS_DIR);
        assert_eq!(fs::metadata(&d).unwrap().permissions().mode() & 0o777, 0o700);
        for name in ["epoch-5.pem", "epoch-5.replay"] {
            assert_eq!(
                fs::metadata(d.join(name)).unwrap().permissions().mode() & 0o777,
                0o600,
                "{name}"
            );
        }
    }
}
