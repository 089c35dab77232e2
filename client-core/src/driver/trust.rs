//! Whom the driver believes about the network, and whom it asks: the pinned
//! authorities (or one directory trusted on first use), which of them the
//! next fetch goes to, and what each one's last failure was.
//!
//! The first authority asked is drawn at random (so clients spread over the
//! authorities); a failed, timed-out or refused fetch moves on to the next
//! one in the list (failover), and a good document keeps the client with
//! the authority that served it.

use nym_wire::authority::Authorities;
use rand::{Rng, RngExt};

/// What the driver trusts about the directory, given to [`super::Driver::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectoryTrust {
    /// The network's authorities: a document counts when at least their
    /// threshold of their keys signed it. One authority with its key pinned
    /// is `Authorities::single(key, url)`.
    Authorities(Authorities),
    /// One directory whose key is not known yet: the key of the authority
    /// that served the first document is trusted, comes out as a
    /// [`super::StoreName::DirectoryKey`] write, and is required from then on.
    FirstUse {
        /// Where the directory serves (`http://host:port`).
        url: String,
    },
}

impl DirectoryTrust {
    /// The pinned authorities (`None` before a first use).
    pub fn authorities(&self) -> Option<&Authorities> {
        match self {
            DirectoryTrust::Authorities(a) => Some(a),
            DirectoryTrust::FirstUse { .. } => None,
        }
    }

    fn urls(&self) -> Vec<String> {
        match self {
            DirectoryTrust::Authorities(a) => a.list().iter().map(|a| a.url.clone()).collect(),
            DirectoryTrust::FirstUse { url } => vec![url.clone()],
        }
    }
}

/// What the shims expose about the directory side (metrics, status).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DirectoryStats {
    /// The URL of the authority the document in use came from.
    pub last_good_from: Option<String>,
    /// Times a fetch failed or was refused and the next went to another authority.
    pub failovers: u64,
    /// Authorities pinned (1 for a directory trusted on first use).
    pub authorities: usize,
    /// Valid signatures by pinned keys a document needs.
    pub threshold: usize,
}

/// The authorities and the fetch rotation over them.
#[derive(Debug)]
pub(super) struct Directories {
    trust: DirectoryTrust,
    urls: Vec<String>,
    /// The authority the next (or the outstanding) fetch goes to.
    current: usize,
    /// Each authority's last failure (or that it served nothing newer);
    /// cleared by a newer document from it.
    errors: Vec<Option<String>>,
    last_good: Option<usize>,
    failovers: u64,
    /// Failures since the last good document.
    failures_in_a_row: usize,
}

impl Directories {
    pub(super) fn new<R: Rng + ?Sized>(trust: DirectoryTrust, rng: &mut R) -> Self {
        let urls = trust.urls();
        let n = urls.len().max(1);
        Directories {
            current: rng.random_range(0..n),
            errors: vec![None; urls.len()],
            urls,
            trust,
            last_good: None,
            failovers: 0,
            failures_in_a_row: 0,
        }
    }

    pub(super) fn trust(&self) -> &DirectoryTrust {
        &self.trust
    }

    /// Where the next fetch goes.
    pub(super) fn url(&self) -> String {
        self.urls.get(self.current).cloned().unwrap_or_default()
    }

    /// The fetch from the current authority failed (or what it served was
    /// refused): remember why, and move on to the next. Returns whether
    /// every authority has failed once since the last good document (then
    /// the next attempt should wait).
    pub(super) fn failed(&mut self, reason: &str) -> bool {
        if let Some(slot) = self.errors.get_mut(self.current) {
            *slot = Some(reason.to_string());
        }
        if self.urls.len() > 1 {
            self.current = (self.current + 1) % self.urls.len();
            self.failovers += 1;
        }
        self.failures_in_a_row += 1;
        self.failures_in_a_row.is_multiple_of(self.urls.len().max(1))
    }

    /// The current authority served nothing newer than the document in
    /// use: fine, but the next fetch asks the next authority (one that is
    /// cut off from the others and stuck on an old document is left behind,
    /// and each one's state is known when the document expires).
    pub(super) fn not_newer(&mut self) {
        if let Some(slot) = self.errors.get_mut(self.current) {
            *slot = Some("it served nothing newer than the document in use".into());
        }
        if !self.urls.is_empty() {
            self.current = (self.current + 1) % self.urls.len();
        }
        self.failures_in_a_row = 0;
    }

    /// The current authority served a newer document, now in use.
    pub(super) fn succeeded(&mut self) {
        if let Some(slot) = self.errors.get_mut(self.current) {
            *slot = None;
        }
        self.last_good = Some(self.current);
        self.failures_in_a_row = 0;
    }

    /// Trust on first use: `key` served the first document; only its
    /// documents count from now on.
    pub(super) fn learned(&mut self, key: [u8; 32]) {
        if let DirectoryTrust::FirstUse { url } = &self.trust {
            self.trust = DirectoryTrust::Authorities(Authorities::single(key, url.clone()));
        }
    }

    /// `url: reason` of the failed fetch, for events.
    pub(super) fn named(&self, reason: &str) -> String {
        format!("{}: {reason}", self.url())
    }

    /// Every authority's last failure, in list order: why no document is acceptable.
    pub(super) fn why_none(&self) -> String {
        let failures: Vec<String> = self
            .urls
            .iter()
            .zip(&self.errors)
            .filter_map(|(url, e)| e.as_ref().map(|e| format!("{url}: {e}")))
            .collect();
        if failures.is_empty() {
            "no authority has served a newer document yet".into()
        } else {
            failures.join("; ")
        }
    }

    pub(super) fn stats(&self) -> DirectoryStats {
        DirectoryStats {
            last_good_from: self.last_good.and_then(|i| self.urls.get(i).cloned()),
            failovers: self.failovers,
            authorities: self.urls.len(),
            threshold: self.trust.authorities().map_or(1, Authorities::threshold),
        }
    }
}
