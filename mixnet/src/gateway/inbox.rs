//! The gateway's SQLite store: registered clients and their inboxes.
//! WAL with synchronous=FULL: a message is on disk once `store_batch`
//! returns. Every final-hop message goes through here, also for a connected
//! client: it stays until the client acknowledges it (`delete`).
//!
//! Everything here is bounded and expires ([`InboxLimits`]): messages per
//! client, bytes per client, bytes in all inboxes together (the disk
//! budget), registered clients; a stored message older than the expiry is
//! deleted, and so is the registration of a client that has not
//! authenticated for that long and has nothing stored.

use anyhow::{Context, Result};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const DB_FILE: &str = "gateway.sqlite";

/// The bounds of the store; see the gateway's flags of the same names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboxLimits {
    /// Messages stored per client (`--inbox-limit`).
    pub messages_per_client: u64,
    /// Payload bytes stored per client (`--inbox-max-bytes`).
    pub bytes_per_client: u64,
    /// Payload bytes stored for all clients together (`--inbox-disk-budget`).
    pub total_bytes: u64,
    /// Registered clients (`--max-clients`).
    pub clients: u64,
    /// Age after which a stored message is deleted, and a registration
    /// without messages and without a connection is forgotten (`--inbox-expiry-secs`).
    pub expiry: Duration,
}

pub const DEFAULT_INBOX_LIMITS: InboxLimits = InboxLimits {
    messages_per_client: 100_000,
    bytes_per_client: 256 << 20,
    total_bytes: 8 << 30,
    clients: 100_000,
    expiry: Duration::from_secs(7 * 24 * 3600),
};

pub(crate) struct Inbox {
    conn: Connection,
    registered: HashSet<[u8; 32]>,
    /// Per client: (messages, payload bytes) stored.
    usage: HashMap<[u8; 32], (u64, u64)>,
    total_bytes: u64,
    total_messages: u64,
    limits: InboxLimits,
    gauges: Arc<InboxGauges>,
}

/// The inbox's totals, published after every change, for readers that must
/// not take the store's lock (the metrics endpoint).
#[derive(Debug, Default)]
pub struct InboxGauges {
    pub registered: AtomicU64,
    pub messages: AtomicU64,
    pub bytes: AtomicU64,
}

fn key_of(bytes: Vec<u8>) -> Option<[u8; 32]> {
    <[u8; 32]>::try_from(bytes.as_slice()).ok()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreResult {
    /// On disk under this id.
    Stored(i64),
    /// A bound of [`InboxLimits`] was reached (which one, for logs).
    OverLimit(&'static str),
    UnknownClient,
}

/// Why a registration was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RegisterError {
    Full(u64),
    Db(String),
}

pub(crate) fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Adds `column` to `table` when a database from an older gateway lacks it,
/// filled with `fill` for the rows already there.
fn add_column(conn: &Connection, table: &str, column: &str, fill: i64) -> Result<()> {
    let mut stmt = conn.prepare(&format!("PRAGMA table_info({table})"))?;
    let has = stmt.query_map([], |r| r.get::<_, String>(1))?.filter_map(|c| c.ok()).any(|c| c == column);
    if !has {
        conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} INTEGER NOT NULL DEFAULT {fill}"))?;
    }
    Ok(())
}

impl Inbox {
    pub fn open(dir: &Path, limits: InboxLimits) -> Result<Self> {
        let path = dir.join(DB_FILE);
        let conn = Connection::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
        }
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS clients (key BLOB PRIMARY KEY, registered_at INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS inbox (id INTEGER PRIMARY KEY AUTOINCREMENT, client BLOB NOT NULL, payload BLOB NOT NULL);
             CREATE INDEX IF NOT EXISTS inbox_client ON inbox (client, id);",
        )?;
        // Older stores had no times: what they hold counts from now.
        let now = unix_now();
        add_column(&conn, "clients", "last_seen", now)?;
        add_column(&conn, "inbox", "stored_at", now)?;
        conn.execute_batch("CREATE INDEX IF NOT EXISTS inbox_stored_at ON inbox (stored_at);")?;
        let mut registered = HashSet::new();
        {
            let mut stmt = conn.prepare("SELECT key FROM clients")?;
            for key in stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))? {
                if let Some(k) = key_of(key?) {
                    registered.insert(k);
                }
            }
        }
        let mut usage = HashMap::new();
        let mut total_bytes = 0u64;
        let mut total_messages = 0u64;
        {
            let mut stmt = conn.prepare("SELECT client, COUNT(*), SUM(LENGTH(payload)) FROM inbox GROUP BY client")?;
            let rows = stmt.query_map([], |r| {
                Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?, r.get::<_, Option<i64>>(2)?.unwrap_or(0)))
            })?;
            for row in rows {
                let (k, n, bytes) = row?;
                if let Some(k) = key_of(k) {
                    let bytes = bytes.max(0) as u64;
                    usage.insert(k, (n.max(0) as u64, bytes));
                    total_bytes += bytes;
                    total_messages += n.max(0) as u64;
                }
            }
        }
        let limits = InboxLimits {
            messages_per_client: limits.messages_per_client.max(1),
            clients: limits.clients.max(1),
            ..limits
        };
        let inbox = Inbox { conn, registered, usage, total_bytes, total_messages, limits, gauges: Arc::default() };
        inbox.publish();
        Ok(inbox)
    }

    /// The totals this inbox publishes after every change.
    pub fn gauges(&self) -> Arc<InboxGauges> {
        self.gauges.clone()
    }

    fn publish(&self) {
        self.gauges.registered.store(self.registered.len() as u64, Ordering::Relaxed);
        self.gauges.messages.store(self.total_messages, Ordering::Relaxed);
        self.gauges.bytes.store(self.total_bytes, Ordering::Relaxed);
    }

    /// Registers `key` (a client that proved it holds it), or notes that a
    /// registered one is back. A new key past the client cap is refused.
    pub fn register(&mut self, key: &[u8; 32]) -> std::result::Result<(), RegisterError> {
        let now = unix_now();
        let db = |e: rusqlite::Error| RegisterError::Db(e.to_string());
        if self.registered.contains(key) {
            self.conn
                .execute("UPDATE clients SET last_seen = ?2 WHERE key = ?1", params![key.as_slice(), now])
                .map_err(db)?;
            return Ok(());
        }
        if self.registered.len() as u64 >= self.limits.clients {
            return Err(RegisterError::Full(self.limits.clients));
        }
        self.conn
            .execute(
                "INSERT OR IGNORE INTO clients (key, registered_at, last_seen) VALUES (?1, ?2, ?2)",
                params![key.as_slice(), now],
            )
            .map_err(db)?;
        self.registered.insert(*key);
        self.publish();
        Ok(())
    }

    pub fn registered_count(&self) -> usize {
        self.registered.len()
    }

    /// Payload bytes stored for all clients.
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    /// Deletes messages stored before `now - expiry` (`now` in Unix
    /// seconds; [`unix_now`] outside tests), and registrations last seen
    /// before that with nothing stored (`connected` ones are kept).
    /// Returns (messages, registrations) removed.
    pub fn expire(&mut self, now: i64, connected: &HashSet<[u8; 32]>) -> Result<(u64, u64)> {
        let cutoff = now.saturating_sub(i64::try_from(self.limits.expiry.as_secs()).unwrap_or(i64::MAX));
        let mut per_client: HashMap<[u8; 32], (u64, u64)> = HashMap::new();
        {
            let mut stmt = self.conn.prepare("SELECT client, LENGTH(payload) FROM inbox WHERE stored_at < ?1")?;
            let rows = stmt.query_map(params![cutoff], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?)))?;
            for row in rows {
                let (k, len) = row?;
                if let Some(k) = key_of(k) {
                    let e = per_client.entry(k).or_insert((0, 0));
                    e.0 += 1;
                    e.1 += len.max(0) as u64;
                }
            }
        }
        let messages = self.conn.execute("DELETE FROM inbox WHERE stored_at < ?1", params![cutoff])? as u64;
        for (k, (n, bytes)) in per_client {
            self.release(&k, n, bytes);
        }
        let stale: Vec<[u8; 32]> = {
            let mut stmt = self.conn.prepare("SELECT key FROM clients WHERE last_seen < ?1")?;
            let rows = stmt.query_map(params![cutoff], |r| r.get::<_, Vec<u8>>(0))?;
            rows.filter_map(|k| k.ok().and_then(key_of))
                .filter(|k| !connected.contains(k) && self.count(k) == 0)
                .collect()
        };
        for k in &stale {
            self.conn.execute("DELETE FROM clients WHERE key = ?1", params![k.as_slice()])?;
            self.registered.remove(k);
            self.usage.remove(k);
        }
        self.publish();
        Ok((messages, stale.len() as u64))
    }

    fn release(&mut self, key: &[u8; 32], messages: u64, bytes: u64) {
        let u = self.usage.entry(*key).or_insert((0, 0));
        u.0 = u.0.saturating_sub(messages);
        u.1 = u.1.saturating_sub(bytes);
        self.total_bytes = self.total_bytes.saturating_sub(bytes);
        self.total_messages = self.total_messages.saturating_sub(messages);
        self.publish();
    }

    pub fn is_registered(&self, key: &[u8; 32]) -> bool {
        self.registered.contains(key)
    }

    pub fn count(&self, key: &[u8; 32]) -> u64 {
        self.usage.get(key).map_or(0, |u| u.0)
    }

    /// Payload bytes stored for `key`.
    pub fn bytes(&self, key: &[u8; 32]) -> u64 {
        self.usage.get(key).map_or(0, |u| u.1)
    }

    /// Stores a batch of messages in one transaction (one disk sync for
    /// all: the gateway's group commit). Nothing is stored on an error.
    pub fn store_batch<'a>(
        &mut self,
        items: impl IntoIterator<Item = (&'a [u8; 32], &'a [u8])>,
    ) -> Result<Vec<StoreResult>> {
        let mut results = Vec::new();
        let mut added: HashMap<[u8; 32], (u64, u64)> = HashMap::new();
        let mut added_bytes = 0u64;
        let limits = self.limits;
        let now = unix_now();
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached("INSERT INTO inbox (client, payload, stored_at) VALUES (?1, ?2, ?3)")?;
            for (key, payload) in items {
                if !self.registered.contains(key) {
                    results.push(StoreResult::UnknownClient);
                    continue;
                }
                let len = payload.len() as u64;
                let (count, bytes) = self.usage.get(key).copied().unwrap_or((0, 0));
                let pending = added.entry(*key).or_insert((0, 0));
                let over = if count + pending.0 >= limits.messages_per_client {
                    Some("messages per client")
                } else if bytes + pending.1 + len > limits.bytes_per_client {
                    Some("bytes per client")
                } else if self.total_bytes + added_bytes + len > limits.total_bytes {
                    Some("disk budget")
                } else {
                    None
                };
                if let Some(which) = over {
                    results.push(StoreResult::OverLimit(which));
                    continue;
                }
                stmt.execute(params![key.as_slice(), payload, now])?;
                pending.0 += 1;
                pending.1 += len;
                added_bytes += len;
                results.push(StoreResult::Stored(tx.last_insert_rowid()));
            }
        }
        tx.commit()?;
        for (key, (n, bytes)) in added {
            let u = self.usage.entry(key).or_insert((0, 0));
            u.0 += n;
            u.1 += bytes;
            self.total_messages += n;
        }
        self.total_bytes += added_bytes;
        self.publish();
        Ok(results)
    }

    /// Up to `limit` stored messages of `key` with id > `after`, oldest first.
    pub fn load(&self, key: &[u8; 32], after: i64, limit: usize) -> Result<Vec<(i64, Vec<u8>)>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, payload FROM inbox WHERE client = ?1 AND id > ?2 ORDER BY id LIMIT ?3")?;
        let rows = stmt.query_map(params![key.as_slice(), after, limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<std::result::Result<Vec<_>, _>>()?)
    }

    /// Deletes `key`'s messages with these ids (another client's ids match
    /// nothing); returns how many were deleted.
    pub fn delete(&mut self, key: &[u8; 32], ids: &[i64]) -> Result<u64> {
        // A delete need not reach the disk before we go on: lost in a power
        // cut, its messages are delivered again and the client recognises
        // them. So no sync of its own; the next stored message's commit
        // (synchronous=FULL) syncs it along.
        self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        let deleted = self.delete_unsynced(key, ids);
        self.conn.pragma_update(None, "synchronous", "FULL")?;
        deleted
    }

    fn delete_unsynced(&mut self, key: &[u8; 32], ids: &[i64]) -> Result<u64> {
        let tx = self.conn.transaction()?;
        let mut removed = 0u64;
        let mut bytes = 0u64;
        {
            let mut size = tx.prepare_cached("SELECT LENGTH(payload) FROM inbox WHERE id = ?1 AND client = ?2")?;
            let mut stmt = tx.prepare_cached("DELETE FROM inbox WHERE id = ?1 AND client = ?2")?;
            for id in ids {
                let len: Option<i64> = size.query_row(params![id, key.as_slice()], |r| r.get(0)).optional()?;
                if let Some(len) = len {
                    removed += stmt.execute(params![id, key.as_slice()])? as u64;
                    bytes += len.max(0) as u64;
                }
            }
        }
        tx.commit()?;
        self.release(key, removed, bytes);
        Ok(removed)
    }

    /// Messages stored for `key`, straight from the database (for tests/tools).
    #[allow(dead_code)]
    pub fn count_in_db(&self, key: &[u8; 32]) -> Result<u64> {
        let n: Option<i64> = self
            .conn
            .query_row("SELECT COUNT(*) FROM inbox WHERE client = ?1", params![key.as_slice()], |r| r.get(0))
            .optional()?;
        Ok(n.unwrap_or(0).max(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path, limits: InboxLimits) -> Inbox {
        Inbox::open(dir, limits).unwrap()
    }

    #[test]
    fn every_bound_refuses_and_deletes_give_room_back() {
        let dir = tempfile::tempdir().unwrap();
        let limits = InboxLimits { messages_per_client: 3, bytes_per_client: 250, total_bytes: 400, clients: 2, ..DEFAULT_INBOX_LIMITS };
        let mut inbox = open(dir.path(), limits);
        let (a, b, c) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        inbox.register(&a).unwrap();
        inbox.register(&b).unwrap();
        assert_eq!(inbox.register(&c), Err(RegisterError::Full(2)));
        inbox.register(&a).unwrap(); // a known client always comes back
        let p100 = [0u8; 100];
        let r = inbox.store_batch([(&a, &p100[..]), (&a, &p100[..]), (&a, &p100[..])]).unwrap();
        assert!(matches!(r[..], [StoreResult::Stored(_), StoreResult::Stored(_), StoreResult::OverLimit("bytes per client")]));
        let r = inbox.store_batch([(&b, &p100[..]), (&b, &p100[..]), (&c, &p100[..])]).unwrap();
        assert!(matches!(r[..], [StoreResult::Stored(_), StoreResult::Stored(_), StoreResult::UnknownClient]));
        assert_eq!(inbox.total_bytes(), 400);
        let r = inbox.store_batch([(&b, &[0u8; 1][..])]).unwrap();
        assert_eq!(r, vec![StoreResult::OverLimit("disk budget")]);
        // a's deliveries acknowledged: its bytes, and the budget, come back
        let ids: Vec<i64> = inbox.load(&a, 0, 10).unwrap().into_iter().map(|(id, _)| id).collect();
        assert_eq!(inbox.delete(&a, &ids).unwrap(), 2);
        assert_eq!((inbox.count(&a), inbox.bytes(&a), inbox.total_bytes()), (0, 0, 200));
        let small = [0u8; 10];
        let r = inbox.store_batch([(&a, &small[..]), (&a, &small[..]), (&a, &small[..]), (&a, &small[..])]).unwrap();
        assert_eq!(r[3], StoreResult::OverLimit("messages per client"));
        let g = inbox.gauges();
        assert_eq!((g.registered.load(Ordering::Relaxed), g.messages.load(Ordering::Relaxed), g.bytes.load(Ordering::Relaxed)), (2, 5, 230));
        // what is counted survives a restart
        drop(inbox);
        let inbox = open(dir.path(), limits);
        assert_eq!((inbox.count(&a), inbox.bytes(&a), inbox.count(&b), inbox.total_bytes()), (3, 30, 2, 230));
        assert_eq!(inbox.registered_count(), 2);
        // the published totals (what the metrics endpoint reads) agree
        let g = inbox.gauges();
        let read = |g: &InboxGauges| (g.registered.load(Ordering::Relaxed), g.messages.load(Ordering::Relaxed), g.bytes.load(Ordering::Relaxed));
        assert_eq!(read(&g), (2, 5, 230));
    }

    #[test]
    fn old_messages_and_idle_registrations_expire() {
        let dir = tempfile::tempdir().unwrap();
        let limits = InboxLimits { expiry: Duration::from_secs(3600), ..DEFAULT_INBOX_LIMITS };
        let mut inbox = open(dir.path(), limits);
        let (a, b, idle) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        for k in [&a, &b, &idle] {
            inbox.register(k).unwrap();
        }
        inbox.store_batch([(&a, &[1u8; 50][..]), (&b, &[2u8; 70][..])]).unwrap();
        let now = unix_now();
        // nothing is old yet
        assert_eq!(inbox.expire(now, &HashSet::new()).unwrap(), (0, 0));
        // an hour and a bit later: both messages go; a is connected, so it
        // stays registered; b and idle have nothing left and go too
        let connected: HashSet<[u8; 32]> = [a].into();
        assert_eq!(inbox.expire(now + 3601, &connected).unwrap(), (2, 2));
        assert_eq!((inbox.count(&a), inbox.count(&b), inbox.total_bytes()), (0, 0, 0));
        assert!(inbox.is_registered(&a) && !inbox.is_registered(&b) && !inbox.is_registered(&idle));
        let g = inbox.gauges();
        assert_eq!(
            (g.registered.load(Ordering::Relaxed), g.messages.load(Ordering::Relaxed), g.bytes.load(Ordering::Relaxed)),
            (1, 0, 0)
        );
        assert_eq!(inbox.count_in_db(&a).unwrap(), 0);
        // a forgotten client registers again when it comes back
        inbox.register(&b).unwrap();
        assert!(inbox.is_registered(&b));
    }

    #[test]
    fn a_store_from_an_older_gateway_gets_its_times() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
            conn.execute_batch(
                "CREATE TABLE clients (key BLOB PRIMARY KEY, registered_at INTEGER NOT NULL);
                 CREATE TABLE inbox (id INTEGER PRIMARY KEY AUTOINCREMENT, client BLOB NOT NULL, payload BLOB NOT NULL);
                 INSERT INTO clients VALUES (x'0101010101010101010101010101010101010101010101010101010101010101', 1);
                 INSERT INTO inbox (client, payload) VALUES (x'0101010101010101010101010101010101010101010101010101010101010101', x'00ff');",
            )
            .unwrap();
        }
        let mut inbox = open(dir.path(), DEFAULT_INBOX_LIMITS);
        assert_eq!((inbox.count(&[1; 32]), inbox.bytes(&[1; 32])), (1, 2));
        // counted from the upgrade, not from 1970
        assert_eq!(inbox.expire(unix_now(), &HashSet::new()).unwrap(), (0, 0));
    }
}
