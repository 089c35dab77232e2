//! Replay protection: a Bloom filter over the 32-byte Sphinx replay tags seen
//! under one Sphinx key, bounded in memory and saved to disk so that a restart
//! does not forget what was seen. See `docs/replay-filter.md`.
//!
//! - Sizing: [`ReplayFilterParams`] (`capacity` insertions at
//!   `false_positive_rate`) gives about `m = -n ln p / (ln 2)^2` bits (exactly:
//!   the fewest for which the rate at capacity is at most `p`, rounded up to a
//!   multiple of 64) and `k ≈ (m / n) ln 2` hashes. Memory is exactly `m / 8`
//!   bytes, at most [`MAX_FILTER_BYTES`].
//! - Index derivation: tags are attacker-influenced (anyone can build a
//!   packet), so the bit indexes come from a keyed hash, BLAKE2s-128 keyed
//!   with a random per-filter 256-bit salt, split into two 64-bit halves and
//!   extended to `k` indexes by double hashing (Kirsch–Mitzenmacher).
//!   Without the salt an attacker cannot aim packets at chosen bits.
//! - No false negatives: a tag once inserted is always reported as seen. A
//!   fresh tag is wrongly reported as seen (and its packet dropped) with
//!   probability [`ReplayFilter::current_false_positive_rate`], which grows
//!   past `capacity`: the owner rotates the filter with the key.
//! - Files ([`ReplayFilter::save`], [`ReplayFilter::load`]): versioned,
//!   checksummed (BLAKE2b-256: detects damage, not tampering; the data dir is
//!   trusted), bound to 32 caller-chosen bytes, written atomically, 0600.

use blake2::digest::consts::U16;
use blake2::digest::FixedOutput;
use blake2::{Blake2b256, Blake2sMac, Digest};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The largest bit array a filter may have (and so the most memory one
/// takes, and the largest bit array a file may declare): 4 GiB.
pub const MAX_FILTER_BYTES: u64 = 4 << 30;
/// [`MAX_FILTER_BYTES`] in bits.
pub const MAX_FILTER_BITS: u64 = MAX_FILTER_BYTES * 8;
/// The most hash functions (bit indexes per tag); `k ≈ -log2(p)`, so rates
/// below about 2^-64 are refused.
pub const MAX_HASHES: u32 = 64;
/// [`ReplayFilter::default`]'s capacity.
pub const DEFAULT_CAPACITY: u64 = 100_000;
/// [`ReplayFilter::default`]'s false-positive rate at capacity.
pub const DEFAULT_FALSE_POSITIVE_RATE: f64 = 1e-6;

/// The first 8 bytes of a saved filter.
pub const FILE_MAGIC: [u8; 8] = *b"NYMRPLF1";
/// The file format version written by [`ReplayFilter::save`]; the only one
/// [`ReplayFilter::load`] reads.
pub const FILE_VERSION: u32 = 1;
/// Bytes before the bit array in a saved filter.
pub const FILE_HEADER_LEN: usize = 121;
/// Bytes of the checksum (BLAKE2b-256) that ends a saved filter.
pub const FILE_CHECKSUM_LEN: usize = 32;

/// Bytes of the per-filter random key of the index hash.
const SALT_LEN: usize = 32;
/// BLAKE2s personalization of the index hash (domain separation).
const INDEX_PERSONA: &[u8; 8] = b"nymrplf1";
/// Fed to the index hash before each tag; it makes the keyed state absorb
/// its key block once (in [`ReplayFilter::with_salt`]), so each tag costs
/// one BLAKE2s compression. Part of the index derivation: changing it makes
/// saved filters useless.
const INDEX_PREFIX: &[u8; 1] = &[1];
/// Read/write chunk for the bit array.
const IO_CHUNK: usize = 64 * 1024;

// Header layout (little-endian), offsets into the first FILE_HEADER_LEN bytes.
const OFF_MAGIC: usize = 0; // 8
const OFF_VERSION: usize = 8; // u32
const OFF_BINDING: usize = 12; // 32
const OFF_CLEAN: usize = 44; // u8: 0 or 1
const OFF_SAVED_AT: usize = 45; // u64 unix ms
const OFF_CAPACITY: usize = 53; // u64
const OFF_RATE: usize = 61; // u64: f64 bits
const OFF_BITS: usize = 69; // u64
const OFF_HASHES: usize = 77; // u32
const OFF_INSERTED: usize = 81; // u64
const OFF_SALT: usize = 89; // 32
const _: () = assert!(OFF_SALT + SALT_LEN == FILE_HEADER_LEN);

/// How big a filter is: sized for `capacity` insertions at `false_positive_rate`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplayFilterParams {
    pub capacity: u64,
    pub false_positive_rate: f64,
}

impl Default for ReplayFilterParams {
    fn default() -> Self {
        ReplayFilterParams { capacity: DEFAULT_CAPACITY, false_positive_rate: DEFAULT_FALSE_POSITIVE_RATE }
    }
}

impl ReplayFilterParams {
    /// The classic optimum `m = -n ln p / (ln 2)^2`, unrounded.
    pub fn optimal_bits(&self) -> f64 {
        let ln2 = std::f64::consts::LN_2;
        -(self.capacity as f64) * self.false_positive_rate.ln() / (ln2 * ln2)
    }

    /// `(m, k)` before rounding `m` to whole words: `k` is the floor or the
    /// ceiling of the optimal `(m/n) ln 2 = log2(1/p)`, whichever needs the
    /// smaller `m`, and `m = -k n / ln(1 - p^(1/k))`, the fewest bits for
    /// which `(1 - e^(-k n / m))^k <= p` at `n = capacity`. (Rounding the
    /// classic `m` and `k` separately can land a little above `p`.)
    fn sizing(&self) -> (f64, u32) {
        let (n, p) = (self.capacity as f64, self.false_positive_rate);
        if !(p > 0.0 && p < 1.0) || self.capacity == 0 {
            // nonsense that validate() refuses: some well-defined values
            return (64.0, 1);
        }
        let k_opt = -p.log2();
        let mut best = (f64::INFINITY, 1u32);
        for k in [k_opt.floor().max(1.0), k_opt.ceil().max(1.0)] {
            let m = -k * n / (-p.powf(1.0 / k)).ln_1p();
            // `as` saturates: a k past u32 is refused by validate() anyway
            if m < best.0 {
                best = (m, k as u32);
            }
        }
        best
    }

    /// Refuses nonsense: capacity 0, a rate outside (0, 1), a bit array over
    /// [`MAX_FILTER_BYTES`], more than [`MAX_HASHES`] hashes.
    pub fn validate(&self) -> Result<(), String> {
        if self.capacity == 0 {
            return Err("replay filter capacity must be at least 1".into());
        }
        let p = self.false_positive_rate;
        if !(p > 0.0 && p < 1.0) {
            return Err(format!("replay filter false-positive rate must be in (0, 1), got {p}"));
        }
        let (m, k) = self.sizing();
        if k > MAX_HASHES {
            return Err(format!(
                "a replay filter false-positive rate of {p} needs {k} hash functions, over the cap of {MAX_HASHES}: raise the rate"
            ));
        }
        if !(m <= MAX_FILTER_BITS as f64) {
            return Err(format!(
                "a replay filter for {} tags at a false-positive rate of {p} needs {:.0} bytes, over the cap of {} bytes (4 GiB): lower the capacity or raise the rate",
                self.capacity,
                m / 8.0,
                MAX_FILTER_BYTES
            ));
        }
        Ok(())
    }

    /// Bits of the array: the fewest for `capacity` tags at
    /// `false_positive_rate` with [`Self::hashes`] hashes (within a fraction
    /// of a percent of `-n ln p / (ln 2)^2`), rounded up to a multiple of 64.
    /// Meaningful when [`Self::validate`] passes.
    pub fn bits(&self) -> u64 {
        let m = self.sizing().0.ceil();
        // `as` saturates (NaN to 0) for params validate() refuses
        let m = if m.is_nan() { 0 } else { m as u64 };
        m.max(1).div_ceil(64).saturating_mul(64)
    }

    /// Hash functions (bit indexes per tag): the floor or ceiling of the
    /// optimal `(m / n) ln 2 = log2(1/p)`, at least 1.
    pub fn hashes(&self) -> u32 {
        self.sizing().1
    }

    /// Memory of the bit array in bytes: `bits / 8`.
    pub fn bytes(&self) -> u64 {
        self.bits().div_ceil(8)
    }

    /// The expected false-positive rate after `inserted` distinct tags:
    /// `(1 - e^(-k n / m))^k`.
    pub fn false_positive_rate_at(&self, inserted: u64) -> f64 {
        let (m, k) = (self.bits() as f64, self.hashes() as f64);
        (1.0 - (-k * inserted as f64 / m).exp()).powf(k)
    }
}

/// A Bloom filter over 32-byte Sphinx replay tags.
///
/// `Clone` copies the bit array: a caller can clone under its lock and
/// [`save`](Self::save) the copy without holding the lock through the fsyncs.
#[derive(Clone)]
pub struct ReplayFilter {
    params: ReplayFilterParams,
    /// Bits of `words`: a multiple of 64, `words.len() * 64`.
    bits: u64,
    hashes: u32,
    words: Vec<u64>,
    /// Insertions that returned true.
    inserted: u64,
    /// Set bits in `words`.
    ones: u64,
    salt: [u8; SALT_LEN],
    /// Keyed with `salt`, personalized, `INDEX_PREFIX` absorbed: cloned per tag.
    index_hash: Blake2sMac<U16>,
}

impl fmt::Debug for ReplayFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayFilter")
            .field("params", &self.params)
            .field("bits", &self.bits)
            .field("hashes", &self.hashes)
            .field("inserted", &self.inserted)
            .field("set_bits", &self.ones)
            .finish_non_exhaustive()
    }
}

impl ReplayFilter {
    /// An empty filter with a fresh random salt.
    pub fn new(params: ReplayFilterParams) -> Result<Self, String> {
        let mut salt = [0u8; SALT_LEN];
        rand::fill(&mut salt);
        Self::with_salt(params, salt)
    }

    /// An empty filter keyed with `salt` (deterministic: for tests and
    /// tools; nodes use [`Self::new`]).
    pub fn with_salt(params: ReplayFilterParams, salt: [u8; SALT_LEN]) -> Result<Self, String> {
        params.validate()?;
        let words = zeroed_words(params.bits())?;
        Self::from_parts(params, params.bits(), params.hashes(), words, 0, salt)
    }

    fn from_parts(
        params: ReplayFilterParams,
        bits: u64,
        hashes: u32,
        words: Vec<u64>,
        inserted: u64,
        salt: [u8; SALT_LEN],
    ) -> Result<Self, String> {
        if bits == 0 || words.len() as u64 * 64 != bits || hashes == 0 || hashes > MAX_HASHES {
            return Err(format!("inconsistent replay filter: {bits} bits, {} words, {hashes} hashes", words.len()));
        }
        let mut index_hash = Blake2sMac::<U16>::new_with_salt_and_personal(Some(&salt), &[], INDEX_PERSONA)
            .map_err(|e| format!("cannot key the replay filter hash: {e}"))?;
        blake2::digest::Update::update(&mut index_hash, INDEX_PREFIX);
        let ones = words.iter().map(|w| w.count_ones() as u64).sum();
        Ok(ReplayFilter { params, bits, hashes, words, inserted, ones, salt, index_hash })
    }

    /// The first bit index and the step of the double hashing: index `i` is
    /// `(h1 + i * h2) mod m`, with `h2` in `[1, m)`.
    fn probe(&self, tag: &[u8; 32]) -> (u64, u64) {
        let mut h = self.index_hash.clone();
        blake2::digest::Update::update(&mut h, tag);
        let out = h.finalize_fixed();
        let mut a = [0u8; 8];
        let mut b = [0u8; 8];
        a.copy_from_slice(&out[..8]);
        b.copy_from_slice(&out[8..16]);
        let m = self.bits;
        (u64::from_le_bytes(a) % m, u64::from_le_bytes(b) % (m - 1) + 1)
    }

    /// Records `tag`; false when it was (probably) seen before, i.e. a replay.
    /// A tag that returned true once returns false forever after.
    pub fn insert(&mut self, tag: [u8; 32]) -> bool {
        let (mut idx, step) = self.probe(&tag);
        let m = self.bits;
        let mut new_bits = 0u64;
        for _ in 0..self.hashes {
            let (word, mask) = ((idx >> 6) as usize, 1u64 << (idx & 63));
            if self.words[word] & mask == 0 {
                self.words[word] |= mask;
                new_bits += 1;
            }
            idx += step;
            if idx >= m {
                idx -= m;
            }
        }
        if new_bits == 0 {
            return false;
        }
        self.ones += new_bits;
        self.inserted = self.inserted.saturating_add(1);
        true
    }

    /// Whether `tag` was (probably) inserted.
    pub fn contains(&self, tag: &[u8; 32]) -> bool {
        let (mut idx, step) = self.probe(tag);
        let m = self.bits;
        for _ in 0..self.hashes {
            if self.words[(idx >> 6) as usize] & (1u64 << (idx & 63)) == 0 {
                return false;
            }
            idx += step;
            if idx >= m {
                idx -= m;
            }
        }
        true
    }

    /// Insertions that returned true.
    pub fn len(&self) -> u64 {
        self.inserted
    }

    pub fn is_empty(&self) -> bool {
        self.inserted == 0
    }

    /// Whether [`Self::len`] has reached the capacity the filter was sized
    /// for: from here on the false-positive rate exceeds the configured one.
    pub fn is_at_capacity(&self) -> bool {
        self.inserted >= self.params.capacity
    }

    pub fn params(&self) -> ReplayFilterParams {
        self.params
    }

    /// Bits of the array (a multiple of 64).
    pub fn bits(&self) -> u64 {
        self.bits
    }

    /// Bit indexes per tag.
    pub fn hashes(&self) -> u32 {
        self.hashes
    }

    /// Memory of the bit array in bytes: `bits / 8`.
    pub fn bytes(&self) -> u64 {
        self.words.len() as u64 * 8
    }

    /// The false-positive rate at the current fill (for logs/metrics):
    /// `(set bits / m)^k`, the chance that a fresh tag finds all its `k`
    /// bits already set.
    pub fn current_false_positive_rate(&self) -> f64 {
        (self.ones as f64 / self.bits as f64).powi(self.hashes as i32)
    }

    /// Writes the filter to `path` atomically (temp file in the same dir,
    /// fsync, rename, fsync dir), mode 0600 whatever the umask; a missing
    /// parent directory is created and the parent made 0700 (as for key
    /// files). On error the previous file at `path`, if any, is untouched
    /// (except when only the final directory fsync fails: the new file is
    /// then in place but maybe not durable). `binding` is 32 bytes the caller
    /// ties the file to; `clean` says whether this is the final save of a
    /// clean shutdown.
    pub fn save(&self, path: &Path, binding: &[u8; 32], clean: bool) -> io::Result<()> {
        let saved_at = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        write_atomically(path, |out| self.write_to(out, binding, clean, saved_at))
    }

    fn header(&self, binding: &[u8; 32], clean: bool, saved_at_unix_ms: u64) -> [u8; FILE_HEADER_LEN] {
        let mut h = [0u8; FILE_HEADER_LEN];
        h[OFF_MAGIC..OFF_MAGIC + 8].copy_from_slice(&FILE_MAGIC);
        h[OFF_VERSION..OFF_VERSION + 4].copy_from_slice(&FILE_VERSION.to_le_bytes());
        h[OFF_BINDING..OFF_BINDING + 32].copy_from_slice(binding);
        h[OFF_CLEAN] = clean as u8;
        h[OFF_SAVED_AT..OFF_SAVED_AT + 8].copy_from_slice(&saved_at_unix_ms.to_le_bytes());
        h[OFF_CAPACITY..OFF_CAPACITY + 8].copy_from_slice(&self.params.capacity.to_le_bytes());
        h[OFF_RATE..OFF_RATE + 8].copy_from_slice(&self.params.false_positive_rate.to_bits().to_le_bytes());
        h[OFF_BITS..OFF_BITS + 8].copy_from_slice(&self.bits.to_le_bytes());
        h[OFF_HASHES..OFF_HASHES + 4].copy_from_slice(&self.hashes.to_le_bytes());
        h[OFF_INSERTED..OFF_INSERTED + 8].copy_from_slice(&self.inserted.to_le_bytes());
        h[OFF_SALT..OFF_SALT + SALT_LEN].copy_from_slice(&self.salt);
        h
    }

    /// The file's bytes: header, bit array (little-endian u64 words),
    /// BLAKE2b-256 of both.
    fn write_to(&self, out: &mut dyn Write, binding: &[u8; 32], clean: bool, saved_at: u64) -> io::Result<()> {
        let header = self.header(binding, clean, saved_at);
        let mut checksum = Blake2b256::new();
        Digest::update(&mut checksum, header);
        out.write_all(&header)?;
        let mut buf = Vec::with_capacity(IO_CHUNK);
        for chunk in self.words.chunks(IO_CHUNK / 8) {
            buf.clear();
            for w in chunk {
                buf.extend_from_slice(&w.to_le_bytes());
            }
            Digest::update(&mut checksum, &buf);
            out.write_all(&buf)?;
        }
        out.write_all(&checksum.finalize())
    }

    /// Reads a filter saved by [`Self::save`]: `Missing` when there is no
    /// file, `WrongBinding` when it was saved with another binding,
    /// `Damaged` for anything else (unreadable, truncated, bad magic,
    /// unknown version, a header out of bounds or not matching the file's
    /// length, a checksum mismatch). Sizes in the header are checked against
    /// the file's length and [`MAX_FILTER_BYTES`] before any allocation.
    pub fn load(path: &Path, binding: &[u8; 32]) -> Result<LoadedFilter, FilterLoadError> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(FilterLoadError::Missing),
            Err(e) => return Err(FilterLoadError::Damaged(format!("cannot open {}: {e}", path.display()))),
        };
        let len = file
            .metadata()
            .map_err(|e| FilterLoadError::Damaged(format!("cannot stat {}: {e}", path.display())))?
            .len();
        Self::read_from(BufReader::with_capacity(IO_CHUNK, file), len, binding)
    }

    /// Parses a saved filter of `len` bytes from `r`.
    fn read_from(mut r: impl Read, len: u64, binding: &[u8; 32]) -> Result<LoadedFilter, FilterLoadError> {
        use FilterLoadError::Damaged;
        let min_len = (FILE_HEADER_LEN + FILE_CHECKSUM_LEN) as u64;
        if len < min_len {
            return Err(Damaged(format!("truncated: {len} bytes, less than the {min_len} of a header and checksum")));
        }
        let mut h = [0u8; FILE_HEADER_LEN];
        r.read_exact(&mut h).map_err(|e| Damaged(format!("cannot read the header: {e}")))?;
        if h[OFF_MAGIC..OFF_MAGIC + 8] != FILE_MAGIC {
            return Err(Damaged("not a replay filter file (bad magic)".into()));
        }
        let version = le_u32(&h, OFF_VERSION);
        if version != FILE_VERSION {
            return Err(Damaged(format!("unsupported file version {version} (this build reads {FILE_VERSION})")));
        }
        let clean = match h[OFF_CLEAN] {
            0 => false,
            1 => true,
            other => return Err(Damaged(format!("bad clean flag {other}"))),
        };
        let params = ReplayFilterParams {
            capacity: le_u64(&h, OFF_CAPACITY),
            false_positive_rate: f64::from_bits(le_u64(&h, OFF_RATE)),
        };
        params.validate().map_err(|e| Damaged(format!("bad parameters in the header: {e}")))?;
        let bits = le_u64(&h, OFF_BITS);
        if bits == 0 || bits % 64 != 0 || bits > MAX_FILTER_BITS {
            return Err(Damaged(format!(
                "bad bit count {bits} in the header (a positive multiple of 64, at most {MAX_FILTER_BITS})"
            )));
        }
        let hashes = le_u32(&h, OFF_HASHES);
        if hashes == 0 || hashes > MAX_HASHES {
            return Err(Damaged(format!("bad hash count {hashes} in the header (1 to {MAX_HASHES})")));
        }
        let expected_len = min_len + bits / 8;
        if len != expected_len {
            return Err(Damaged(format!(
                "length mismatch: the header's {bits} bits make a {expected_len}-byte file, the file has {len} bytes"
            )));
        }
        let mut checksum = Blake2b256::new();
        Digest::update(&mut checksum, h);
        // bounded by the file's actual length and MAX_FILTER_BYTES (above)
        let mut words = zeroed_words(bits).map_err(Damaged)?;
        let mut buf = vec![0u8; IO_CHUNK];
        for chunk in words.chunks_mut(IO_CHUNK / 8) {
            let bytes = &mut buf[..chunk.len() * 8];
            r.read_exact(bytes).map_err(|e| Damaged(format!("cannot read the bit array: {e}")))?;
            Digest::update(&mut checksum, &*bytes);
            for (w, b) in chunk.iter_mut().zip(bytes.chunks_exact(8)) {
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                *w = u64::from_le_bytes(a);
            }
        }
        let mut stored = [0u8; FILE_CHECKSUM_LEN];
        r.read_exact(&mut stored).map_err(|e| Damaged(format!("cannot read the checksum: {e}")))?;
        if checksum.finalize()[..] != stored[..] {
            return Err(Damaged("checksum mismatch: the file is damaged".into()));
        }
        if h[OFF_BINDING..OFF_BINDING + 32] != binding[..] {
            return Err(FilterLoadError::WrongBinding);
        }
        let inserted = le_u64(&h, OFF_INSERTED);
        let mut salt = [0u8; SALT_LEN];
        salt.copy_from_slice(&h[OFF_SALT..OFF_SALT + SALT_LEN]);
        let filter = ReplayFilter::from_parts(params, bits, hashes, words, inserted, salt).map_err(Damaged)?;
        // each insertion that returned true set at least one bit
        if filter.inserted > filter.ones {
            return Err(Damaged(format!(
                "the header counts {} insertions, more than the {} set bits",
                filter.inserted, filter.ones
            )));
        }
        Ok(LoadedFilter { filter, clean, saved_at_unix_ms: le_u64(&h, OFF_SAVED_AT) })
    }
}

impl Default for ReplayFilter {
    /// [`DEFAULT_CAPACITY`] tags at [`DEFAULT_FALSE_POSITIVE_RATE`] (351 KiB).
    fn default() -> Self {
        Self::new(ReplayFilterParams::default()).expect("the default replay filter parameters are valid")
    }
}

/// A filter read by [`ReplayFilter::load`], with what its file said.
#[derive(Debug)]
pub struct LoadedFilter {
    pub filter: ReplayFilter,
    /// Saved as the final save of a clean shutdown.
    pub clean: bool,
    pub saved_at_unix_ms: u64,
}

/// Why [`ReplayFilter::load`] returned no filter.
#[derive(Debug)]
pub enum FilterLoadError {
    /// There is no file at the path.
    Missing,
    /// The file is unreadable or not a valid filter file; the reason.
    Damaged(String),
    /// A valid filter file saved with another binding (another key or epoch).
    WrongBinding,
}

impl fmt::Display for FilterLoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FilterLoadError::Missing => write!(f, "no saved replay filter (file missing)"),
            FilterLoadError::Damaged(why) => write!(f, "saved replay filter is damaged: {why}"),
            FilterLoadError::WrongBinding => {
                write!(f, "saved replay filter belongs to another key or epoch (binding mismatch)")
            }
        }
    }
}

impl std::error::Error for FilterLoadError {}

fn le_u64(h: &[u8; FILE_HEADER_LEN], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&h[at..at + 8]);
    u64::from_le_bytes(a)
}

fn le_u32(h: &[u8; FILE_HEADER_LEN], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&h[at..at + 4]);
    u32::from_le_bytes(a)
}

/// `bits / 64` zero words, allocated exactly, an error (not an abort) when
/// memory is short.
fn zeroed_words(bits: u64) -> Result<Vec<u64>, String> {
    let n = usize::try_from(bits.div_ceil(64)).map_err(|_| format!("{bits} bits do not fit in memory here"))?;
    let mut words = Vec::new();
    words.try_reserve_exact(n).map_err(|e| format!("cannot allocate {} bytes for a replay filter: {e}", n * 8))?;
    words.resize(n, 0);
    Ok(words)
}

/// Writes `path` through `write` atomically: a new 0600 temp file in the same
/// directory, fsync, rename over `path`, fsync of the directory. On error the
/// temp file is removed and `path` is untouched.
fn write_atomically(path: &Path, write: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{} names no file", path.display())))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if dir != Path::new(".") {
        crate::keyfiles::ensure_dir(&dir).map_err(|e| io::Error::other(format!("{e:#}")))?;
    }
    let mut tmp_prefix = std::ffi::OsString::from(".");
    tmp_prefix.push(name);
    tmp_prefix.push(".tmp-");
    let mut tmp_name = tmp_prefix.clone();
    tmp_name.push(format!("{}-{:016x}", std::process::id(), rand::random::<u64>()));
    let tmp = dir.join(&tmp_name);

    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let file = opts.open(&tmp)?;
    let result = (|| {
        #[cfg(unix)]
        {
            // the mode above was masked by the umask: set it exactly
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(fs::Permissions::from_mode(0o600))?;
        }
        let mut out = BufWriter::with_capacity(IO_CHUNK, &file);
        write(&mut out)?;
        out.flush()?;
        drop(out);
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    drop(file);
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    #[cfg(unix)]
    File::open(&dir)?.sync_all()?;
    remove_stale_temps(&dir, &tmp_prefix);
    Ok(())
}

/// Best effort: deletes temp files of earlier saves of the same file that a
/// crash left behind (`.<name>.tmp-<pid>-<random>`), so that repeated crashes
/// mid-save cannot fill the disk. One writer per file is assumed: a
/// concurrent save of the same path could lose its temp file and fail
/// (leaving the file as it was).
fn remove_stale_temps(dir: &Path, prefix: &std::ffi::OsStr) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    let prefix = prefix.as_encoded_bytes();
    for entry in entries.flatten() {
        if entry.file_name().as_encoded_bytes().starts_with(prefix) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// SplitMix64: deterministic test tags.
    struct Tags(u64);
    impl Tags {
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn tag(&mut self) -> [u8; 32] {
            let mut t = [0u8; 32];
            for c in t.chunks_exact_mut(8) {
                c.copy_from_slice(&self.next_u64().to_le_bytes());
            }
            t
        }
    }

    fn params(capacity: u64, rate: f64) -> ReplayFilterParams {
        ReplayFilterParams { capacity, false_positive_rate: rate }
    }

    fn bytes_of(f: &ReplayFilter, binding: &[u8; 32], clean: bool) -> Vec<u8> {
        let mut v = Vec::new();
        f.write_to(&mut v, binding, clean, 1_700_000_000_000).unwrap();
        v
    }

    fn parse(bytes: &[u8], binding: &[u8; 32]) -> Result<LoadedFilter, FilterLoadError> {
        ReplayFilter::read_from(bytes, bytes.len() as u64, binding)
    }

    /// Recomputes the checksum after a test edits the header or bits.
    fn reseal(bytes: &mut [u8]) {
        let n = bytes.len() - FILE_CHECKSUM_LEN;
        let sum = Blake2b256::digest(&bytes[..n]);
        bytes[n..].copy_from_slice(&sum);
    }

    fn damaged(r: Result<LoadedFilter, FilterLoadError>) -> String {
        match r {
            Err(FilterLoadError::Damaged(why)) => why,
            Err(e) => panic!("expected Damaged, got {e}"),
            Ok(_) => panic!("expected Damaged, got a filter"),
        }
    }

    const BINDING: [u8; 32] = [7; 32];

    #[test]
    fn sizing_follows_the_formula() {
        let p = params(100_000, 1e-6);
        p.validate().unwrap();
        let raw = -100_000f64 * 1e-6f64.ln() / (2f64.ln() * 2f64.ln());
        assert!((p.optimal_bits() - raw).abs() < 1e-6);
        assert_eq!(p.bits() % 64, 0);
        assert_eq!(p.bits(), 2_875_584);
        assert_eq!(p.hashes(), 20);
        assert!(p.bits() as f64 <= p.optimal_bits() * 1.0001 + 64.0);
        assert_eq!(p.bytes(), p.bits() / 8);
        assert_eq!(params(1_000, 1e-3).hashes(), 10);
        assert_eq!(params(1, 0.5).bits(), 64);
        // the expected rate at capacity is (about) the configured one
        // the expected rate at capacity is at most the configured one, and
        // barely under it
        for (n, rate) in [(100_000, 1e-6), (1, 0.5), (1_000, 1e-3), (7, 0.3), (1_000_000_000, 1e-6), (123_457, 1e-12)] {
            let q = params(n, rate);
            let at_cap = q.false_positive_rate_at(n);
            assert!(at_cap <= rate, "{q:?}: {at_cap}");
            // (a tiny filter is rounded up to 64 bits, far below its rate)
            assert!(n < 1_000 || at_cap > 0.9 * rate, "{q:?}: {at_cap}");
            assert!(q.bits() as f64 >= q.optimal_bits() * 0.999, "{q:?}");
        }
        assert!(p.false_positive_rate_at(p.capacity) > 0.99e-6);
        // and memory is exactly the bit array
        let f = ReplayFilter::new(p).unwrap();
        assert_eq!(f.bytes(), p.bytes());
        assert_eq!(f.words.len() as u64 * 8, p.bytes());
        assert_eq!(f.words.capacity(), f.words.len());
    }

    #[test]
    fn nonsense_params_are_refused() {
        for (p, needle) in [
            (params(0, 1e-6), "capacity"),
            (params(10, 0.0), "(0, 1)"),
            (params(10, 1.0), "(0, 1)"),
            (params(10, -0.5), "(0, 1)"),
            (params(10, 1.5), "(0, 1)"),
            (params(10, f64::NAN), "(0, 1)"),
            (params(10, f64::INFINITY), "(0, 1)"),
            (params(10_000_000_000, 1e-9), "4 GiB"),
            (params(u64::MAX, 0.5), "4 GiB"),
            (params(10, 1e-30), "hash functions"),
            (params(10, f64::MIN_POSITIVE), "hash functions"),
        ] {
            let e = p.validate().unwrap_err();
            assert!(e.contains(needle), "{p:?}: {e}");
            assert_eq!(ReplayFilter::new(p).unwrap_err(), e);
        }
        // just under the cap is fine (as parameters; not allocated here)
        params(1_000_000_000, 1e-6).validate().unwrap();
        assert!(params(1_000_000_000, 1e-6).bytes() <= MAX_FILTER_BYTES);
    }

    #[test]
    fn default_is_small_and_empty() {
        let f = ReplayFilter::default();
        assert_eq!(f.params(), params(DEFAULT_CAPACITY, DEFAULT_FALSE_POSITIVE_RATE));
        assert!(f.bytes() < 400 * 1024, "{}", f.bytes());
        assert!(f.is_empty() && f.len() == 0 && !f.is_at_capacity());
        assert_eq!(f.current_false_positive_rate(), 0.0);
    }

    #[test]
    fn catches_replays() {
        let mut f = ReplayFilter::new(params(1_000, 1e-6)).unwrap();
        assert!(!f.contains(&[1; 32]));
        assert!(f.insert([1; 32]));
        assert!(f.contains(&[1; 32]));
        assert!(!f.insert([1; 32]));
        assert!(!f.insert([1; 32]));
        assert!(f.insert([2; 32]));
        assert_eq!(f.len(), 2);
        assert!(!f.is_empty());
        assert!(f.current_false_positive_rate() > 0.0);
        // a clone is an independent copy (same salt, same bits)
        let mut g = f.clone();
        assert!(!g.insert([2; 32]));
        assert!(g.insert([3; 32]));
        assert!(!f.contains(&[3; 32]) && g.contains(&[3; 32]));
        assert_eq!((f.len(), g.len()), (2, 3));
    }

    #[test]
    fn deterministic_given_the_salt() {
        let p = params(1_000, 1e-3);
        let (mut a, mut b, mut c) = (
            ReplayFilter::with_salt(p, [1; 32]).unwrap(),
            ReplayFilter::with_salt(p, [1; 32]).unwrap(),
            ReplayFilter::with_salt(p, [2; 32]).unwrap(),
        );
        let mut tags = Tags(5);
        for _ in 0..500 {
            let t = tags.tag();
            assert_eq!(a.insert(t), b.insert(t));
            c.insert(t);
        }
        assert_eq!(a.words, b.words);
        assert_ne!(a.words, c.words, "the salt keys the indexes");
        // and new() draws a fresh salt each time
        assert_ne!(ReplayFilter::new(p).unwrap().salt, ReplayFilter::new(p).unwrap().salt);
    }

    #[test]
    fn measured_false_positive_rate_at_capacity_is_under_twice_the_configured() {
        let p = params(50_000, 1e-3);
        let mut f = ReplayFilter::with_salt(p, [3; 32]).unwrap();
        let mut tags = Tags(1);
        let inserted: Vec<[u8; 32]> = (0..p.capacity).map(|_| tags.tag()).collect();
        for t in &inserted {
            f.insert(*t);
        }
        assert!(f.len() > p.capacity - 100, "{}", f.len());
        assert!(inserted.iter().all(|t| f.contains(t)), "a false negative");
        let trials = 200_000u64;
        let false_positives = (0..trials).filter(|_| f.contains(&tags.tag())).count() as f64;
        let measured = false_positives / trials as f64;
        eprintln!(
            "capacity {} at {}: measured {measured} over {trials} fresh tags, current_false_positive_rate {}",
            p.capacity,
            p.false_positive_rate,
            f.current_false_positive_rate()
        );
        assert!(measured < 2.0 * p.false_positive_rate, "{measured}");
        assert!(measured > 0.25 * p.false_positive_rate, "{measured}: oversized?");
        let estimate = f.current_false_positive_rate();
        assert!(estimate > 0.5 * p.false_positive_rate && estimate < 1.5 * p.false_positive_rate, "{estimate}");
    }

    #[test]
    fn false_positive_rate_past_capacity_follows_the_formula() {
        let p = params(20_000, 1e-3);
        let mut f = ReplayFilter::with_salt(p, [4; 32]).unwrap();
        let mut tags = Tags(2);
        let inserted: Vec<[u8; 32]> = (0..2 * p.capacity).map(|_| tags.tag()).collect();
        for t in &inserted {
            f.insert(*t);
        }
        assert!(f.is_at_capacity());
        assert!(inserted.iter().all(|t| f.contains(t)), "a false negative");
        let expected = p.false_positive_rate_at(2 * p.capacity);
        let trials = 100_000;
        let measured = (0..trials).filter(|_| f.contains(&tags.tag())).count() as f64 / trials as f64;
        eprintln!("at 2x capacity: expected {expected}, measured {measured}");
        assert!((measured - expected).abs() < 0.15 * expected, "{measured} vs {expected}");
        let estimate = f.current_false_positive_rate();
        assert!((estimate - expected).abs() < 0.15 * expected, "{estimate} vs {expected}");
    }

    /// The figures in docs/replay-filter.md:
    /// `cargo test --release -p nym-mixnet --lib replay::tests::sizing_table -- --nocapture`
    #[test]
    fn sizing_table() {
        println!("| capacity | rate | bits | hashes | memory |");
        println!("| ---: | ---: | ---: | ---: | ---: |");
        let mut last = 0;
        for (n, p) in [
            (100_000u64, 1e-6),
            (1_000_000, 1e-3),
            (1_000_000, 1e-6),
            (1_000_000, 1e-9),
            (10_000_000, 1e-6),
            (100_000_000, 1e-6),
            (1_000_000_000, 1e-6),
        ] {
            let q = params(n, p);
            q.validate().unwrap();
            println!("| {n} | {p:e} | {} | {} | {} |", q.bits(), q.hashes(), human(q.bytes()));
            if p == 1e-6 {
                assert!(q.bytes() > last);
                last = q.bytes();
            }
        }
        let d = ReplayFilterParams::default();
        for mult in [1.0, 1.5, 2.0, 3.0, 5.0, 10.0] {
            let rate = d.false_positive_rate_at((d.capacity as f64 * mult) as u64);
            println!("default filter at {mult}x capacity: false-positive rate {rate:.3e}");
        }
        assert!(d.false_positive_rate_at(d.capacity * 2) > 100.0 * d.false_positive_rate);
    }

    fn human(b: u64) -> String {
        match b {
            b if b >= 1 << 30 => format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64),
            b if b >= 1 << 20 => format!("{:.2} MiB", b as f64 / (1u64 << 20) as f64),
            b => format!("{:.1} KiB", b as f64 / 1024.0),
        }
    }

    #[test]
    fn no_false_negatives_far_past_capacity() {
        let mut f = ReplayFilter::new(params(1_000, 1e-3)).unwrap();
        let mut tags = Tags(9);
        let inserted: Vec<[u8; 32]> = (0..20_000).map(|_| tags.tag()).collect();
        for t in &inserted {
            f.insert(*t);
        }
        for t in &inserted {
            assert!(f.contains(t));
            assert!(!f.insert(*t));
        }
        assert!(f.len() <= 20_000);
    }

    proptest! {
        #[test]
        fn prop_no_false_negatives(salt in any::<[u8; 32]>(), tags in prop::collection::vec(any::<[u8; 32]>(), 0..400), cap in 1u64..200) {
            let mut f = ReplayFilter::with_salt(params(cap, 0.01), salt).unwrap();
            let mut distinct = std::collections::HashSet::new();
            for t in &tags {
                let fresh = distinct.insert(*t);
                let accepted = f.insert(*t);
                // a tag seen before is always refused
                prop_assert!(fresh || !accepted);
                prop_assert!(f.contains(t));
            }
            for t in &tags {
                prop_assert!(f.contains(t));
                prop_assert!(!f.insert(*t));
            }
            prop_assert!(f.len() <= distinct.len() as u64);
            prop_assert_eq!(f.is_empty(), f.len() == 0);
        }

        #[test]
        fn prop_save_load_round_trip(salt in any::<[u8; 32]>(), tags in prop::collection::vec(any::<[u8; 32]>(), 0..200), clean in any::<bool>()) {
            let mut f = ReplayFilter::with_salt(params(100, 0.001), salt).unwrap();
            for t in &tags {
                f.insert(*t);
            }
            let bytes = bytes_of(&f, &BINDING, clean);
            let loaded = parse(&bytes, &BINDING).unwrap();
            prop_assert_eq!(loaded.clean, clean);
            prop_assert_eq!(loaded.saved_at_unix_ms, 1_700_000_000_000);
            let mut g = loaded.filter;
            prop_assert_eq!(g.len(), f.len());
            prop_assert_eq!(g.params(), f.params());
            prop_assert_eq!(&g.words, &f.words);
            prop_assert_eq!(g.current_false_positive_rate(), f.current_false_positive_rate());
            for t in &tags {
                prop_assert!(!g.insert(*t));
            }
        }
    }

    #[test]
    fn save_and_load_round_trip_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("replay.bin");
        let mut f = ReplayFilter::new(params(10_000, 1e-6)).unwrap();
        let mut tags = Tags(11);
        let inserted: Vec<[u8; 32]> = (0..5_000).map(|_| tags.tag()).collect();
        for t in &inserted {
            assert!(f.insert(*t));
        }
        let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        f.save(&path, &BINDING, true).unwrap();
        let after = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        assert_eq!(fs::metadata(&path).unwrap().len(), (FILE_HEADER_LEN + FILE_CHECKSUM_LEN) as u64 + f.bytes());

        let loaded = ReplayFilter::load(&path, &BINDING).unwrap();
        assert!(loaded.clean);
        assert!((before..=after).contains(&loaded.saved_at_unix_ms));
        let mut g = loaded.filter;
        assert_eq!(g.len(), 5_000);
        assert_eq!(g.params(), f.params());
        assert_eq!((g.bits(), g.hashes()), (f.bits(), f.hashes()));
        assert_eq!(g.current_false_positive_rate(), f.current_false_positive_rate());
        for t in &inserted {
            assert!(g.contains(t));
            assert!(!g.insert(*t), "a replay across a restart");
        }
        // the salt came along: fresh tags still mostly fresh, and new ones stick
        let t = tags.tag();
        assert!(g.insert(t));
        assert!(!g.insert(t));
        assert_eq!(g.len(), 5_001);

        // an unclean save says so, and replaces the clean one
        g.save(&path, &BINDING, false).unwrap();
        let again = ReplayFilter::load(&path, &BINDING).unwrap();
        assert!(!again.clean);
        assert_eq!(again.filter.len(), 5_001);
        assert!(again.filter.contains(&t));
        // no temp files left behind
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn missing_and_wrong_binding() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("replay.bin");
        assert!(matches!(ReplayFilter::load(&path, &BINDING), Err(FilterLoadError::Missing)));
        let mut f = ReplayFilter::new(params(100, 1e-3)).unwrap();
        f.insert([1; 32]);
        f.save(&path, &BINDING, true).unwrap();
        let mut other = BINDING;
        other[31] ^= 1;
        assert!(matches!(ReplayFilter::load(&path, &other), Err(FilterLoadError::WrongBinding)));
        // a directory where the file should be: damaged, not a panic
        let as_dir = dir.path().join("a-dir");
        fs::create_dir(&as_dir).unwrap();
        damaged(ReplayFilter::load(&as_dir, &BINDING));
        // messages
        let msgs = [
            FilterLoadError::Missing.to_string(),
            FilterLoadError::Damaged("checksum mismatch".into()).to_string(),
            FilterLoadError::WrongBinding.to_string(),
        ];
        assert!(msgs[0].contains("missing"));
        assert!(msgs[1].contains("damaged") && msgs[1].contains("checksum mismatch"));
        assert!(msgs[2].contains("binding"));
    }

    fn small_file() -> Vec<u8> {
        let mut f = ReplayFilter::with_salt(params(50, 1e-2), [5; 32]).unwrap();
        let mut tags = Tags(3);
        for _ in 0..30 {
            f.insert(tags.tag());
        }
        let bytes = bytes_of(&f, &BINDING, true);
        assert!(parse(&bytes, &BINDING).is_ok());
        bytes
    }

    #[test]
    fn truncated_files_are_damaged() {
        let bytes = small_file();
        let n = bytes.len();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("replay.bin");
        for cut in [0, 1, 7, 8, 12, FILE_HEADER_LEN - 1, FILE_HEADER_LEN, FILE_HEADER_LEN + 1, n - 33, n - 32, n - 1] {
            let why = damaged(parse(&bytes[..cut], &BINDING));
            assert!(why.contains("truncated") || why.contains("length mismatch"), "cut {cut}: {why}");
            fs::write(&path, &bytes[..cut]).unwrap();
            damaged(ReplayFilter::load(&path, &BINDING));
        }
        // a reader shorter than the length it claims (the file shrank while read)
        let why = damaged(ReplayFilter::read_from(&bytes[..n - 5], n as u64, &BINDING));
        assert!(why.contains("cannot read"), "{why}");
        // and a longer file
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(damaged(parse(&longer, &BINDING)).contains("length mismatch"));
    }

    #[test]
    fn any_flipped_bit_is_damage() {
        let bytes = small_file();
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                damaged(parse(&b, &BINDING));
            }
        }
        // the same through a file on disk, a few places
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("replay.bin");
        for i in [0, OFF_BINDING, OFF_CLEAN, OFF_BITS, OFF_SALT, FILE_HEADER_LEN + 3, bytes.len() - 1] {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            fs::write(&path, &b).unwrap();
            damaged(ReplayFilter::load(&path, &BINDING));
        }
    }

    #[test]
    fn wrong_magic_version_or_header_is_damage() {
        let bytes = small_file();
        let edit = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut b = bytes.clone();
            f(&mut b);
            reseal(&mut b);
            damaged(parse(&b, &BINDING))
        };
        assert!(edit(&|b: &mut Vec<u8>| b[..8].copy_from_slice(b"NYMRPLF0")).contains("magic"));
        assert!(edit(&|b: &mut Vec<u8>| b[..8].copy_from_slice(b"SQLite f")).contains("magic"));
        assert!(edit(&|b: &mut Vec<u8>| b[OFF_VERSION] = 2).contains("version 2"));
        assert!(edit(&|b: &mut Vec<u8>| b[OFF_VERSION..OFF_VERSION + 4].copy_from_slice(&0u32.to_le_bytes()))
            .contains("version 0"));
        assert!(edit(&|b: &mut Vec<u8>| b[OFF_CLEAN] = 2).contains("clean flag"));
        assert!(edit(&|b: &mut Vec<u8>| b[OFF_CAPACITY..OFF_CAPACITY + 8].copy_from_slice(&0u64.to_le_bytes()))
            .contains("capacity"));
        assert!(edit(&|b: &mut Vec<u8>| b[OFF_RATE..OFF_RATE + 8].copy_from_slice(&f64::NAN.to_bits().to_le_bytes()))
            .contains("(0, 1)"));
        assert!(edit(&|b: &mut Vec<u8>| b[OFF_RATE..OFF_RATE + 8].copy_from_slice(&1.0f64.to_bits().to_le_bytes()))
            .contains("(0, 1)"));
        assert!(edit(&|b: &mut Vec<u8>| b[OFF_HASHES..OFF_HASHES + 4].copy_from_slice(&0u32.to_le_bytes()))
            .contains("hash count"));
        assert!(edit(&|b: &mut Vec<u8>| b[OFF_HASHES..OFF_HASHES + 4].copy_from_slice(&1000u32.to_le_bytes()))
            .contains("hash count"));
        assert!(edit(&|b: &mut Vec<u8>| b[OFF_BITS..OFF_BITS + 8].copy_from_slice(&100u64.to_le_bytes()))
            .contains("bit count"));
        assert!(edit(&|b: &mut Vec<u8>| b[OFF_BITS..OFF_BITS + 8].copy_from_slice(&0u64.to_le_bytes()))
            .contains("bit count"));
        // more insertions than set bits cannot come from a real filter
        assert!(edit(&|b: &mut Vec<u8>| b[OFF_INSERTED..OFF_INSERTED + 8].copy_from_slice(&u64::MAX.to_le_bytes()))
            .contains("insertions"));
        // a consistent edit of the binding is a wrong binding, not damage
        let mut b = bytes.clone();
        b[OFF_BINDING] ^= 1;
        reseal(&mut b);
        assert!(matches!(parse(&b, &BINDING), Err(FilterLoadError::WrongBinding)));
    }

    #[test]
    fn absurd_sizes_are_refused_before_allocating() {
        let bytes = small_file();
        let with_bits = |bits: u64| {
            let mut b = bytes.clone();
            b[OFF_BITS..OFF_BITS + 8].copy_from_slice(&bits.to_le_bytes());
            reseal(&mut b);
            b
        };
        // over the 4 GiB cap, and the largest u64 multiple of 64
        for bits in [MAX_FILTER_BITS + 64, 1 << 62, u64::MAX - 63] {
            assert!(damaged(parse(&with_bits(bits), &BINDING)).contains("bit count"), "{bits}");
        }
        // at the cap but not matching the file's length: refused from the
        // length alone (a 4 GiB allocation here would be slow or abort)
        let started = std::time::Instant::now();
        let why = damaged(parse(&with_bits(MAX_FILTER_BITS), &BINDING));
        assert!(why.contains("length mismatch"), "{why}");
        // a reader claiming a matching length but holding a small file: the
        // read fails after one chunk, the filter is never built
        let b = with_bits(1 << 20);
        let claimed = (FILE_HEADER_LEN + FILE_CHECKSUM_LEN) as u64 + (1 << 17);
        assert!(damaged(ReplayFilter::read_from(&b[..], claimed, &BINDING)).contains("cannot read"));
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn a_failed_save_leaves_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("replay.bin");
        let mut f = ReplayFilter::new(params(1_000, 1e-3)).unwrap();
        f.insert([1; 32]);
        f.save(&path, &BINDING, true).unwrap();
        let old = fs::read(&path).unwrap();

        // the writer fails half way (disk full, I/O error)
        f.insert([2; 32]);
        let e = write_atomically(&path, |out| {
            out.write_all(&bytes_of(&f, &BINDING, false)[..100])?;
            Err(io::Error::other("injected failure"))
        })
        .unwrap_err();
        assert_eq!(e.to_string(), "injected failure");
        assert_eq!(fs::read(&path).unwrap(), old);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "temp file left behind");
        let loaded = ReplayFilter::load(&path, &BINDING).unwrap();
        assert!(loaded.filter.contains(&[1; 32]) && loaded.filter.len() == 1);

        // a temp file left by a crash mid-save is removed by the next save
        let stale = dir.path().join(".replay.bin.tmp-1-0000000000000001");
        let other = dir.path().join(".other.bin.tmp-1-0000000000000001");
        fs::write(&stale, b"half a filter").unwrap();
        fs::write(&other, b"not ours").unwrap();
        f.save(&path, &BINDING, true).unwrap();
        assert!(!stale.exists() && other.exists());
        fs::remove_file(&other).unwrap();
        f.save(&path, &BINDING, true).unwrap();
        let old = fs::read(&path).unwrap();
        assert_eq!(ReplayFilter::load(&path, &BINDING).unwrap().filter.len(), 2);

        // the rename fails (a directory is in the way): no temp file left
        let blocked = dir.path().join("blocked");
        fs::create_dir(&blocked).unwrap();
        fs::write(blocked.join("x"), b"x").unwrap();
        assert!(f.save(&blocked, &BINDING, true).is_err());
        assert_eq!(fs::read(blocked.join("x")).unwrap(), b"x");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);

        // the parent is a file: an error, nothing written
        assert!(f.save(&path.join("under-a-file"), &BINDING, true).is_err());
        assert_eq!(fs::read(&path).unwrap(), old);

        // (a read-only directory is no test here: save() makes the parent
        // 0700 again, as keyfiles does, and root writes anyway)

        // a successful save replaces the whole file
        f.save(&path, &BINDING, false).unwrap();
        let loaded = ReplayFilter::load(&path, &BINDING).unwrap();
        assert!(!loaded.clean && loaded.filter.len() == 2 && loaded.filter.contains(&[2; 32]));
    }

    const UMASK_CHILD_ENV: &str = "NYM_REPLAY_TEST_UMASK_CHILD_PATH";

    /// Run by `file_is_0600_in_a_0700_dir_whatever_the_umask` in a child
    /// process under a given umask; does nothing otherwise.
    #[test]
    fn umask_child() {
        if let Some(path) = std::env::var_os(UMASK_CHILD_ENV) {
            let mut f = ReplayFilter::new(params(100, 1e-3)).unwrap();
            f.insert([9; 32]);
            f.save(Path::new(&path), &BINDING, true).unwrap();
            // and over an existing file
            f.save(Path::new(&path), &BINDING, true).unwrap();
        }
    }

    #[cfg(unix)]
    #[test]
    fn file_is_0600_in_a_0700_dir_whatever_the_umask() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let exe = std::env::current_exe().unwrap();
        let dir = tempfile::tempdir().unwrap();
        for umask in ["000", "022", "277"] {
            let base = dir.path().join(format!("umask-{umask}"));
            fs::create_dir(&base).unwrap();
            let sub = base.join("replay");
            let path = sub.join("replay.bin");
            let status = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("umask {umask}; exec \"$0\" replay::tests::umask_child --exact --test-threads=1 -q"))
                .arg(&exe)
                .env(UMASK_CHILD_ENV, &path)
                .stdout(std::process::Stdio::null())
                .status()
                .unwrap();
            assert!(status.success(), "umask {umask}: {status}");
            assert_eq!(mode(&path), 0o600, "umask {umask}");
            assert_eq!(mode(&sub), 0o700, "umask {umask}");
            assert!(ReplayFilter::load(&path, &BINDING).unwrap().filter.contains(&[9; 32]));
        }
        // an existing looser file is replaced by a 0600 one
        let path = dir.path().join("loose.bin");
        fs::write(&path, b"old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
        ReplayFilter::new(params(100, 1e-3)).unwrap().save(&path, &BINDING, true).unwrap();
        assert_eq!(mode(&path), 0o600);
    }
}
