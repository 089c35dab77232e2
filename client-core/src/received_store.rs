//! The client's own store of received messages: what it keeps while no
//! application is connected, and which messages it has already handed over.
//!
//! The client acknowledges a delivery to its gateway only once the message is
//! safe here or with an application, so this store must survive a crash and
//! must recognise a message the gateway delivers again (its acknowledgement
//! may not have arrived). Sans-IO: the shim keeps the bytes (an append-only
//! file natively, one storage entry in the browser) and this type says what
//! to write.
//!
//! ## Log format
//! A sequence of records `kind (u8) || length (u32 BE) || body`:
//! - `1` kept: `set count (u16 BE) || set ids (u32 BE each) || has tag (u8)
//!   || [sender tag (16 bytes)] || message`: a message waiting for an application;
//! - `2` handed over: `set count || set ids`: delivered to an application;
//! - `3` all kept messages were handed over.
//!
//! A torn last record (a crash mid-write) is ignored: its message was not
//! acknowledged yet, so the gateway delivers it again.

use crate::client::ReceivedMessage;
use crate::reply::{SenderTag, SENDER_TAG_LEN};
use std::collections::{HashSet, VecDeque};

const KEPT: u8 = 1;
const HANDED_OVER: u8 = 2;
const ALL_HANDED_OVER: u8 = 3;
const RECORD_HEADER: usize = 5;
/// Set ids of handed-over messages remembered across restarts; a message
/// delivered again after this many later ones would be delivered twice.
pub(crate) const REMEMBERED_SETS: usize = 8192;

/// What the log holds, and what to write next.
#[derive(Debug, Default)]
pub struct ReceivedStore {
    kept: VecDeque<ReceivedMessage>,
    kept_bytes: usize,
    handed_over: VecDeque<u32>,
    /// Bytes of the log as the shim holds it.
    log_len: usize,
}

fn record(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(RECORD_HEADER + body.len());
    out.push(kind);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn encode_sets(sets: &[u32], out: &mut Vec<u8>) {
    let sets = &sets[..sets.len().min(usize::from(u16::MAX))];
    out.extend_from_slice(&(sets.len() as u16).to_be_bytes());
    for id in sets {
        out.extend_from_slice(&id.to_be_bytes());
    }
}

/// Reads a set list; returns the ids and the rest.
fn decode_sets(body: &[u8]) -> Option<(Vec<u32>, &[u8])> {
    let (count, rest) = body.split_at_checked(2)?;
    let count = usize::from(u16::from_be_bytes([count[0], count[1]]));
    let (ids, rest) = rest.split_at_checked(count * 4)?;
    let ids = ids.chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]])).collect();
    Some((ids, rest))
}

fn encode_kept(message: &ReceivedMessage) -> Vec<u8> {
    let mut body = Vec::with_capacity(2 + 4 * message.sets.len() + 1 + SENDER_TAG_LEN + message.message.len());
    encode_sets(&message.sets, &mut body);
    match &message.sender_tag {
        Some(tag) => {
            body.push(1);
            body.extend_from_slice(tag);
        }
        None => body.push(0),
    }
    body.extend_from_slice(&message.message);
    record(KEPT, &body)
}

fn decode_kept(body: &[u8]) -> Option<ReceivedMessage> {
    let (sets, rest) = decode_sets(body)?;
    let (&has_tag, rest) = rest.split_first()?;
    let (sender_tag, message) = match has_tag {
        0 => (None, rest),
        1 => {
            let (tag, message) = rest.split_at_checked(SENDER_TAG_LEN)?;
            let tag: SenderTag = tag.try_into().ok()?;
            (Some(tag), message)
        }
        _ => return None,
    };
    Some(ReceivedMessage { message: message.to_vec(), sender_tag, sets })
}

/// What loading a log found besides its messages.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Bytes at the end that were not a whole record (a crash mid-write).
    pub torn_bytes: usize,
    /// Whole records that could not be read (damage): skipped.
    pub bad_records: usize,
}

impl ReceivedStore {
    /// An empty store (a new client, or the log was missing).
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads a log written by earlier calls. Never fails: what can't be
    /// read is skipped and reported.
    pub fn load(log: &[u8]) -> (Self, LoadReport) {
        let mut store = ReceivedStore { log_len: log.len(), ..Self::default() };
        let mut report = LoadReport::default();
        let mut rest = log;
        while !rest.is_empty() {
            let Some((header, after)) = rest.split_at_checked(RECORD_HEADER) else {
                report.torn_bytes = rest.len();
                break;
            };
            let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
            let Some((body, after)) = after.split_at_checked(len) else {
                report.torn_bytes = rest.len();
                break;
            };
            rest = after;
            match header[0] {
                KEPT => match decode_kept(body) {
                    Some(message) => store.remember_kept(message),
                    None => report.bad_records += 1,
                },
                HANDED_OVER => match decode_sets(body) {
                    Some((sets, [])) => store.remember_handed_over(&sets),
                    _ => report.bad_records += 1,
                },
                ALL_HANDED_OVER if body.is_empty() => store.remember_all_handed_over(),
                _ => report.bad_records += 1,
            }
        }
        (store, report)
    }

    /// Messages waiting for an application, oldest first.
    pub fn kept(&self) -> impl Iterator<Item = &ReceivedMessage> {
        self.kept.iter()
    }

    /// Messages kept (no application has taken them yet).
    pub fn kept_count(&self) -> usize {
        self.kept.len()
    }

    /// Bytes of the kept messages.
    pub fn kept_bytes(&self) -> usize {
        self.kept_bytes
    }

    /// Every set id the client has (kept or handed over): give them to
    /// [`crate::Client::import_delivered_sets`] after a restart.
    pub fn known_sets(&self) -> Vec<u32> {
        let mut sets: Vec<u32> = self.handed_over.iter().copied().collect();
        sets.extend(self.kept.iter().flat_map(|m| m.sets.iter().copied()));
        sets
    }

    fn remember_kept(&mut self, message: ReceivedMessage) {
        self.kept_bytes += message.message.len();
        self.kept.push_back(message);
    }

    fn remember_handed_over(&mut self, sets: &[u32]) {
        self.handed_over.extend(sets.iter().copied());
        while self.handed_over.len() > REMEMBERED_SETS {
            self.handed_over.pop_front();
        }
    }

    fn remember_all_handed_over(&mut self) {
        let kept: Vec<u32> = self.kept.drain(..).flat_map(|m| m.sets).collect();
        self.kept_bytes = 0;
        self.remember_handed_over(&kept);
    }

    fn appended(&mut self, bytes: Vec<u8>) -> Vec<u8> {
        self.log_len += bytes.len();
        bytes
    }

    /// Keeps `message` for a later application; returns the bytes to
    /// append to the log (write them before the message is acknowledged).
    pub fn keep(&mut self, message: ReceivedMessage) -> Vec<u8> {
        let bytes = encode_kept(&message);
        self.remember_kept(message);
        self.appended(bytes)
    }

    /// Records that a message was handed to an application; returns the
    /// bytes to append.
    pub fn handed_over(&mut self, sets: &[u32]) -> Vec<u8> {
        let mut body = Vec::with_capacity(2 + 4 * sets.len());
        encode_sets(sets, &mut body);
        self.remember_handed_over(sets);
        self.appended(record(HANDED_OVER, &body))
    }

    /// Takes every kept message to hand to an application that connected;
    /// returns them and the bytes to append.
    pub fn take_kept(&mut self) -> (Vec<ReceivedMessage>, Vec<u8>) {
        let kept: Vec<ReceivedMessage> = self.kept.iter().cloned().collect();
        self.remember_all_handed_over();
        (kept, self.appended(record(ALL_HANDED_OVER, &[])))
    }

    /// Drops the oldest kept message, remembering its sets as handed over.
    fn drop_oldest(&mut self) -> Option<ReceivedMessage> {
        let message = self.kept.pop_front()?;
        self.kept_bytes -= message.message.len();
        self.remember_handed_over(&message.sets);
        Some(message)
    }

    /// Drops the oldest kept messages while over either limit; once over,
    /// down to nine tenths of it, so a flood past a limit costs one rewrite
    /// of the log per tenth of the limit, not one per message. Returns the
    /// dropped messages; the log must then be rewritten with
    /// [`ReceivedStore::snapshot`].
    pub fn trim(&mut self, max_messages: usize, max_bytes: usize) -> Vec<ReceivedMessage> {
        if self.kept.len() <= max_messages && self.kept_bytes <= max_bytes {
            return Vec::new();
        }
        let (count_target, bytes_target) = (max_messages - max_messages / 10, max_bytes - max_bytes / 10);
        let mut dropped = Vec::new();
        while self.kept.len() > count_target || (self.kept_bytes > bytes_target && self.kept.len() > 1) {
            match self.drop_oldest() {
                Some(m) => dropped.push(m),
                None => break,
            }
        }
        dropped
    }

    /// The whole state as a fresh log (to replace the old one, or to store
    /// where appending is not possible).
    pub fn snapshot(&mut self) -> Vec<u8> {
        let handed: Vec<u32> = self.handed_over.iter().copied().collect();
        let mut body = Vec::with_capacity(2 + 4 * handed.len());
        encode_sets(&handed, &mut body);
        let mut log = record(HANDED_OVER, &body);
        for message in &self.kept {
            log.extend(encode_kept(message));
        }
        self.log_len = log.len();
        log
    }

    /// True when the log has grown well past what it holds: rewrite it
    /// with [`ReceivedStore::snapshot`].
    pub fn wants_compaction(&self) -> bool {
        let live = RECORD_HEADER + 2 + 4 * self.handed_over.len() + self.kept_bytes + self.kept.len() * 64;
        self.log_len > 2 * live + 64 * 1024
    }

    /// Set ids remembered as handed over (for tests and diagnostics).
    pub fn handed_over_sets(&self) -> HashSet<u32> {
        self.handed_over.iter().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn msg(n: u8, tag: bool) -> ReceivedMessage {
        ReceivedMessage {
            message: vec![n; usize::from(n) * 3],
            sender_tag: tag.then_some([n; SENDER_TAG_LEN]),
            sets: vec![u32::from(n) * 10, u32::from(n) * 10 + 1],
        }
    }

    #[test]
    fn a_log_replays_to_the_same_state() {
        let mut s = ReceivedStore::new();
        let mut log = Vec::new();
        log.extend(s.keep(msg(1, false)));
        log.extend(s.keep(msg(2, true)));
        let (handed, bytes) = s.take_kept();
        assert_eq!(handed, vec![msg(1, false), msg(2, true)]);
        log.extend(bytes);
        log.extend(s.handed_over(&[99]));
        log.extend(s.keep(msg(3, true)));
        let (loaded, report) = ReceivedStore::load(&log);
        assert_eq!(report, LoadReport::default());
        assert_eq!(loaded.kept().cloned().collect::<Vec<_>>(), vec![msg(3, true)]);
        let mut known = loaded.known_sets();
        known.sort();
        assert_eq!(known, vec![10, 11, 20, 21, 30, 31, 99]);
        // a snapshot holds the same
        let snap = s.snapshot();
        let (again, _) = ReceivedStore::load(&snap);
        assert_eq!(again.kept().cloned().collect::<Vec<_>>(), vec![msg(3, true)]);
        assert_eq!(again.handed_over_sets(), loaded.handed_over_sets());
    }

    #[test]
    fn a_torn_tail_is_ignored_and_damage_is_skipped() {
        let mut s = ReceivedStore::new();
        let mut log = s.keep(msg(1, false));
        let second = s.keep(msg(2, false));
        log.extend_from_slice(&second[..second.len() - 1]);
        let (loaded, report) = ReceivedStore::load(&log);
        assert_eq!(loaded.kept_count(), 1);
        assert_eq!(report.torn_bytes, second.len() - 1);
        // an unknown kind is skipped, what follows still loads
        let mut log = record(77, b"junk");
        log.extend(ReceivedStore::new().keep(msg(4, true)));
        let (loaded, report) = ReceivedStore::load(&log);
        assert_eq!((loaded.kept_count(), report.bad_records), (1, 1));
    }

    #[test]
    fn handed_over_sets_are_bounded_and_dropping_remembers() {
        let mut s = ReceivedStore::new();
        for i in 0..(REMEMBERED_SETS as u32 + 10) {
            s.handed_over(&[i]);
        }
        assert_eq!(s.handed_over_sets().len(), REMEMBERED_SETS);
        assert!(s.wants_compaction() || s.log_len < 200_000);
        s.keep(msg(5, false));
        let dropped = s.drop_oldest().map(|m| m.sets);
        assert_eq!(dropped, Some(vec![50, 51]));
        assert!(s.handed_over_sets().contains(&50));
        assert_eq!(s.kept_bytes(), 0);
    }

    #[test]
    fn trimming_drops_the_oldest_down_to_nine_tenths() {
        let mut s = ReceivedStore::new();
        for n in 1..=10u8 {
            s.keep(msg(n, false));
        }
        assert!(s.trim(10, usize::MAX).is_empty(), "at the limit nothing goes");
        s.keep(msg(11, false));
        let dropped: Vec<u8> = s.trim(10, usize::MAX).iter().map(|m| m.message[0]).collect();
        assert_eq!(dropped, vec![1, 2], "down to 9 of 10, oldest first");
        assert_eq!(s.kept_count(), 9);
        // by bytes: message n has 3n bytes
        let bytes = s.kept_bytes();
        let dropped = s.trim(100, bytes - 1);
        assert!(!dropped.is_empty() && s.kept_bytes() <= (bytes - 1) * 9 / 10 + 1);
        // the dropped are remembered as handed over (their redeliveries are duplicates)
        assert!(s.handed_over_sets().contains(&10));
    }

    proptest! {
        #[test]
        fn any_bytes_load_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let (s, report) = ReceivedStore::load(&bytes);
            prop_assert!(report.torn_bytes <= bytes.len());
            prop_assert!(s.kept_bytes() <= bytes.len());
        }
    }
}
