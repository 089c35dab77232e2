//! The gateway's SQLite store: registered clients and their inboxes.
//! WAL with synchronous=FULL: a message is on disk once `store_batch`
//! returns. Every final-hop message goes through here, also for a connected
//! client: it stays until the client acknowledges it (`delete`).

use anyhow::{Context, Result};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

pub const DB_FILE: &str = "gateway.sqlite";

pub(crate) struct Inbox {
    conn: Connection,
    registered: HashSet<[u8; 32]>,
    counts: HashMap<[u8; 32], u64>,
    max_per_client: u64,
}

fn key_of(bytes: Vec<u8>) -> Option<[u8; 32]> {
    <[u8; 32]>::try_from(bytes.as_slice()).ok()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreResult {
    /// On disk under this id.
    Stored(i64),
    InboxFull,
    UnknownClient,
}

impl Inbox {
    pub fn open(dir: &Path, max_per_client: u64) -> Result<Self> {
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
        let mut registered = HashSet::new();
        {
            let mut stmt = conn.prepare("SELECT key FROM clients")?;
            for key in stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))? {
                if let Some(k) = key_of(key?) {
                    registered.insert(k);
                }
            }
        }
        let mut counts = HashMap::new();
        {
            let mut stmt = conn.prepare("SELECT client, COUNT(*) FROM inbox GROUP BY client")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?)))?;
            for row in rows {
                let (k, n) = row?;
                if let Some(k) = key_of(k) {
                    counts.insert(k, n.max(0) as u64);
                }
            }
        }
        Ok(Inbox { conn, registered, counts, max_per_client: max_per_client.max(1) })
    }

    pub fn register(&mut self, key: &[u8; 32]) -> Result<()> {
        if self.registered.contains(key) {
            return Ok(());
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        self.conn
            .execute("INSERT OR IGNORE INTO clients (key, registered_at) VALUES (?1, ?2)", params![key.as_slice(), now])?;
        self.registered.insert(*key);
        Ok(())
    }

    pub fn is_registered(&self, key: &[u8; 32]) -> bool {
        self.registered.contains(key)
    }

    pub fn count(&self, key: &[u8; 32]) -> u64 {
        self.counts.get(key).copied().unwrap_or(0)
    }

    /// Stores a batch of messages in one transaction (one disk sync for
    /// all: the gateway's group commit). Nothing is stored on an error.
    pub fn store_batch<'a>(
        &mut self,
        items: impl IntoIterator<Item = (&'a [u8; 32], &'a [u8])>,
    ) -> Result<Vec<StoreResult>> {
        let mut results = Vec::new();
        let mut added: HashMap<[u8; 32], u64> = HashMap::new();
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached("INSERT INTO inbox (client, payload) VALUES (?1, ?2)")?;
            for (key, payload) in items {
                if !self.registered.contains(key) {
                    results.push(StoreResult::UnknownClient);
                    continue;
                }
                let pending = added.entry(*key).or_insert(0);
                if self.counts.get(key).copied().unwrap_or(0) + *pending >= self.max_per_client {
                    results.push(StoreResult::InboxFull);
                    continue;
                }
                stmt.execute(params![key.as_slice(), payload])?;
                *pending += 1;
                results.push(StoreResult::Stored(tx.last_insert_rowid()));
            }
        }
        tx.commit()?;
        for (key, n) in added {
            *self.counts.entry(key).or_insert(0) += n;
        }
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
        {
            let mut stmt = tx.prepare_cached("DELETE FROM inbox WHERE id = ?1 AND client = ?2")?;
            for id in ids {
                removed += stmt.execute(params![id, key.as_slice()])? as u64;
            }
        }
        tx.commit()?;
        let n = self.count(key).saturating_sub(removed);
        self.counts.insert(*key, n);
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
