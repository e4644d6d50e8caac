//! The spool in SQLite: a database file of its own (see [`crate::spool`] for the layout and the
//! invariants).
//!
//! Records are stored in *segments*: one row per run of up to [`SEGMENT`] records appended
//! together (consecutive ids `first_id..=last_id` of one stream), their payloads framed in one
//! blob (each a little-endian `u32` length, then the bytes). One row per segment instead of one
//! per record is what lets an fsynced append take hundreds of thousands of records a second. A
//! segment is deleted when every cursor of its stream has passed its last record; the full
//! policy drops whole segments, oldest first.

use std::path::Path;
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use rephub_model::Clock;

use crate::error::StoreError;
use crate::spool::{
    Appended, FullPolicy, ParkedRecord, SinkStats, Spool, SpoolLimits, SpoolRecord,
};

const SCHEMA: &str = r#"
    CREATE TABLE IF NOT EXISTS spool_meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS spool_segments (
        stream TEXT NOT NULL,
        first_id INTEGER NOT NULL,
        last_id INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        bytes INTEGER NOT NULL,
        frames BLOB NOT NULL,
        PRIMARY KEY (stream, first_id)
    );
    CREATE TABLE IF NOT EXISTS spool_cursors (
        sink TEXT NOT NULL,
        stream TEXT NOT NULL,
        cursor INTEGER NOT NULL,
        delivered INTEGER NOT NULL DEFAULT 0,
        retried INTEGER NOT NULL DEFAULT 0,
        parked INTEGER NOT NULL DEFAULT 0,
        dropped INTEGER NOT NULL DEFAULT 0,
        last_success INTEGER,
        last_error TEXT,
        PRIMARY KEY (sink, stream)
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS spool_parked (
        sink TEXT NOT NULL,
        stream TEXT NOT NULL,
        id INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        payload BLOB NOT NULL,
        reason TEXT NOT NULL,
        parked_at INTEGER NOT NULL,
        replay INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (sink, id)
    ) WITHOUT ROWID;
"#;

/// The spool, through one connection (appends and acknowledgements are short transactions; the
/// hub serializes them).
#[derive(Debug)]
pub struct SqliteSpool {
    conn: Connection,
    clock: Arc<dyn Clock>,
    limits: SpoolLimits,
    id: String,
}

impl SqliteSpool {
    /// Open (or make) the spool at `path`.
    pub fn open(
        path: &Path,
        limits: SpoolLimits,
        clock: Arc<dyn Clock>,
    ) -> Result<SqliteSpool, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Corrupt(format!(
                "cannot switch {} to WAL mode (got {mode})",
                path.display()
            )));
        }
        // Durable when accepted: every commit is on disk before append returns.
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA cache_size = -16384;")?;
        conn.execute_batch(SCHEMA)?;
        let made = getrandom::u64().map_err(|e| StoreError::Backend(e.to_string().into()))?;
        conn.execute(
            "INSERT OR IGNORE INTO spool_meta (key, value) VALUES
                ('spool_id', ?1), ('next_id', 1), ('bytes', 0), ('records', 0)",
            [format!("{made:016x}")],
        )?;
        let id: String = conn.query_row(
            "SELECT value FROM spool_meta WHERE key = 'spool_id'",
            [],
            |r| r.get(0),
        )?;
        conn.set_prepared_statement_cache_capacity(32);
        Ok(SqliteSpool {
            conn,
            clock,
            limits,
            id,
        })
    }

    pub fn limits(&self) -> SpoolLimits {
        self.limits
    }
}

fn meta(tx: &Connection, key: &str) -> Result<i64, StoreError> {
    Ok(tx
        .prepare_cached("SELECT value FROM spool_meta WHERE key = ?1")?
        .query_row([key], |r| r.get(0))?)
}

fn set_meta(tx: &Connection, key: &str, value: i64) -> Result<(), StoreError> {
    tx.prepare_cached("UPDATE spool_meta SET value = ?2 WHERE key = ?1")?
        .execute(params![key, value])?;
    Ok(())
}

fn add_meta(tx: &Connection, key: &str, delta: i64) -> Result<(), StoreError> {
    tx.prepare_cached("UPDATE spool_meta SET value = value + ?2 WHERE key = ?1")?
        .execute(params![key, delta])?;
    Ok(())
}

fn cursor(tx: &Connection, sink: &str, stream: &str) -> Result<i64, StoreError> {
    tx.prepare_cached("SELECT cursor FROM spool_cursors WHERE sink = ?1 AND stream = ?2")?
        .query_row([sink, stream], |r| r.get(0))
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("spool subscription {sink}/{stream}")))
}

/// Records per segment at most.
const SEGMENT: usize = 4096;

/// Frame payloads into a segment's blob.
fn frame(payloads: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payloads.iter().map(|p| p.len() + 4).sum());
    for p in payloads {
        out.extend_from_slice(&u32::try_from(p.len()).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(p);
    }
    out
}

/// The payloads of a segment's blob.
fn unframe(frames: &[u8]) -> Result<Vec<&[u8]>, StoreError> {
    let mut out = Vec::new();
    let mut rest = frames;
    while !rest.is_empty() {
        let (len, tail) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| StoreError::Corrupt("spool segment: a cut length".into()))?;
        let len = u32::from_le_bytes(*len) as usize;
        if tail.len() < len {
            return Err(StoreError::Corrupt("spool segment: a cut record".into()));
        }
        let (p, tail) = tail.split_at(len);
        out.push(p);
        rest = tail;
    }
    Ok(out)
}

/// How many records of `stream` have ids in `(after, through]`.
fn count_between(
    tx: &Connection,
    stream: &str,
    after: i64,
    through: i64,
) -> Result<i64, StoreError> {
    Ok(tx
        .prepare_cached(
            "SELECT coalesce(sum(min(last_id, ?3) - max(first_id, ?2 + 1) + 1), 0)
             FROM spool_segments WHERE stream = ?1 AND last_id > ?2 AND first_id <= ?3",
        )?
        .query_row(params![stream, after, through], |r| r.get(0))?)
}

/// Records of `stream` with ids in `(after, ...)`, at most `max`, oldest first. Segments are
/// read one at a time and only as many as needed: a long backlog is never loaded whole.
fn records_after(
    tx: &Connection,
    stream: &str,
    after: i64,
    max: usize,
) -> Result<Vec<SpoolRecord>, StoreError> {
    // The segment holding `after + 1` starts at or before it: seek there, then scan on.
    let start: i64 = tx
        .prepare_cached(
            "SELECT coalesce(max(first_id), 0) FROM spool_segments WHERE stream = ?1 AND first_id <= ?2",
        )?
        .query_row(params![stream, after.saturating_add(1)], |r| r.get(0))?;
    let mut stmt = tx.prepare_cached(
        "SELECT first_id, created_at, frames FROM spool_segments
         WHERE stream = ?1 AND first_id >= ?2 AND last_id > ?3 ORDER BY first_id",
    )?;
    let mut rows = stmt.query(params![stream, start, after])?;
    let mut out = Vec::new();
    while out.len() < max {
        let Some(row) = rows.next()? else { break };
        let (first, created_at): (i64, i64) = (row.get(0)?, row.get(1)?);
        let frames = row
            .get_ref(2)?
            .as_blob()
            .map_err(|e| StoreError::Corrupt(format!("spool segment: {e}")))?;
        for (i, p) in unframe(frames)?.into_iter().enumerate() {
            let id = first + i as i64;
            if id > after && out.len() < max {
                out.push(SpoolRecord {
                    id,
                    created_at,
                    payload: p.to_vec(),
                });
            }
        }
    }
    Ok(out)
}

/// Delete the segments of `stream` every subscriber has passed (all of them when nobody
/// subscribes), keeping the counters.
fn collect(tx: &Connection, stream: &str) -> Result<(), StoreError> {
    let min: Option<i64> = tx
        .prepare_cached("SELECT min(cursor) FROM spool_cursors WHERE stream = ?1")?
        .query_row([stream], |r| r.get(0))?;
    let upto = min.unwrap_or(i64::MAX);
    let (n, bytes): (i64, i64) = tx
        .prepare_cached(
            "SELECT coalesce(sum(last_id - first_id + 1), 0), coalesce(sum(bytes), 0)
             FROM spool_segments WHERE stream = ?1 AND last_id <= ?2",
        )?
        .query_row(params![stream, upto], |r| Ok((r.get(0)?, r.get(1)?)))?;
    if n > 0 {
        tx.prepare_cached("DELETE FROM spool_segments WHERE stream = ?1 AND last_id <= ?2")?
            .execute(params![stream, upto])?;
        add_meta(tx, "records", -n)?;
        add_meta(tx, "bytes", -bytes)?;
    }
    Ok(())
}

/// Drop the oldest segments (of any stream) until `need_records` and `need_bytes` more fit. The
/// cursors that had not passed a dropped record move past it, and count what they skipped.
fn drop_oldest(tx: &Connection, need_records: i64, need_bytes: i64) -> Result<u64, StoreError> {
    let (mut freed_records, mut freed_bytes, mut dropped) = (0i64, 0i64, 0u64);
    while freed_records < need_records || freed_bytes < need_bytes {
        let oldest: Option<(String, i64, i64, i64)> = tx
            .prepare_cached(
                "SELECT stream, first_id, last_id, bytes FROM spool_segments
                 ORDER BY first_id LIMIT 1",
            )?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .optional()?;
        let Some((stream, first, last, bytes)) = oldest else {
            break;
        };
        let behind: Vec<(String, i64)> = tx
            .prepare_cached(
                "SELECT sink, cursor FROM spool_cursors WHERE stream = ?1 AND cursor < ?2",
            )?
            .query_map(params![stream, last], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        for (sink, c) in behind {
            let skipped = last - c.max(first - 1);
            tx.prepare_cached(
                "UPDATE spool_cursors SET cursor = ?3, dropped = dropped + ?4
                 WHERE sink = ?1 AND stream = ?2",
            )?
            .execute(params![sink, stream, last, skipped])?;
        }
        tx.prepare_cached("DELETE FROM spool_segments WHERE stream = ?1 AND first_id = ?2")?
            .execute(params![stream, first])?;
        let n = last - first + 1;
        add_meta(tx, "records", -n)?;
        add_meta(tx, "bytes", -bytes)?;
        freed_records += n;
        freed_bytes += bytes;
        dropped += n as u64;
    }
    Ok(dropped)
}

fn record(r: &rusqlite::Row<'_>) -> rusqlite::Result<SpoolRecord> {
    Ok(SpoolRecord {
        id: r.get(0)?,
        created_at: r.get(1)?,
        payload: r.get(2)?,
    })
}

impl Spool for SqliteSpool {
    fn spool_id(&self) -> &str {
        &self.id
    }

    fn subscribe(&mut self, sink: &str, stream: &str) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let next = meta(&tx, "next_id")?;
        tx.execute(
            "INSERT OR IGNORE INTO spool_cursors (sink, stream, cursor) VALUES (?1, ?2, ?3)",
            params![sink, stream, next - 1],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn unsubscribe(&mut self, sink: &str, stream: &str) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "DELETE FROM spool_cursors WHERE sink = ?1 AND stream = ?2",
            [sink, stream],
        )?;
        tx.execute(
            "DELETE FROM spool_parked WHERE sink = ?1 AND stream = ?2",
            [sink, stream],
        )?;
        collect(&tx, stream)?;
        tx.commit()?;
        Ok(())
    }

    fn subscriptions(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT sink, stream FROM spool_cursors ORDER BY sink, stream")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn append(&mut self, stream: &str, payloads: &[Vec<u8>]) -> Result<Appended, StoreError> {
        if payloads.is_empty() {
            return Ok(Appended::default());
        }
        let now = self.clock.now();
        let limits = self.limits;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let subscribed: bool = tx
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM spool_cursors WHERE stream = ?1)")?
            .query_row([stream], |r| r.get(0))?;
        if !subscribed {
            return Ok(Appended::default());
        }
        let n = i64::try_from(payloads.len()).unwrap_or(i64::MAX);
        let bytes: i64 = payloads
            .iter()
            .map(|p| i64::try_from(p.len()).unwrap_or(i64::MAX))
            .fold(0i64, i64::saturating_add);
        let max_records = i64::try_from(limits.max_records).unwrap_or(i64::MAX);
        let max_bytes = i64::try_from(limits.max_bytes).unwrap_or(i64::MAX);
        if n > max_records || bytes > max_bytes {
            return Err(StoreError::Full(format!(
                "{n} records of {bytes} bytes are more than the whole spool holds ({} records, {} bytes)",
                limits.max_records, limits.max_bytes
            )));
        }
        let (held, held_bytes) = (meta(&tx, "records")?, meta(&tx, "bytes")?);
        let over_records = (held + n - max_records).max(0);
        let over_bytes = (held_bytes + bytes - max_bytes).max(0);
        let mut dropped = 0;
        if over_records > 0 || over_bytes > 0 {
            match limits.policy {
                FullPolicy::Block => {
                    return Err(StoreError::Full(format!(
                        "the spool holds {held} records of {held_bytes} bytes (limits: {} records, {} bytes)",
                        limits.max_records, limits.max_bytes
                    )));
                }
                FullPolicy::DropOldest => dropped = drop_oldest(&tx, over_records, over_bytes)?,
            }
        }
        let first = meta(&tx, "next_id")?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO spool_segments (stream, first_id, last_id, created_at, bytes, frames)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            let mut id = first;
            for chunk in payloads.chunks(SEGMENT) {
                let n = chunk.len() as i64;
                let bytes: usize = chunk.iter().map(Vec::len).sum();
                insert.execute(params![
                    stream,
                    id,
                    id + n - 1,
                    now,
                    bytes as i64,
                    frame(chunk)
                ])?;
                id += n;
            }
        }
        set_meta(&tx, "next_id", first + n)?;
        add_meta(&tx, "records", n)?;
        add_meta(&tx, "bytes", bytes)?;
        tx.commit()?;
        Ok(Appended {
            kept: payloads.len() as u64,
            dropped,
        })
    }

    fn pending(
        &self,
        sink: &str,
        stream: &str,
        max: usize,
    ) -> Result<Vec<SpoolRecord>, StoreError> {
        let c = cursor(&self.conn, sink, stream)?;
        records_after(&self.conn, stream, c, max)
    }

    fn ack(
        &mut self,
        sink: &str,
        stream: &str,
        through: i64,
        parked: &[(i64, String)],
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let c = cursor(&tx, sink, stream)?;
        if through <= c {
            return Ok(());
        }
        let mut n_parked = 0i64;
        for (id, reason) in parked.iter().filter(|(id, _)| *id > c && *id <= through) {
            let Some(r) = records_after(&tx, stream, id - 1, 1)?
                .into_iter()
                .find(|r| r.id == *id)
            else {
                continue;
            };
            n_parked += tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO spool_parked
                        (sink, stream, id, created_at, payload, reason, parked_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?
                .execute(params![
                    sink,
                    stream,
                    id,
                    r.created_at,
                    r.payload,
                    reason,
                    now
                ])? as i64;
        }
        let handed = count_between(&tx, stream, c, through)?;
        tx.prepare_cached(
            "UPDATE spool_cursors SET cursor = ?3, delivered = delivered + ?4,
                 parked = parked + ?5, last_success = ?6, last_error = NULL
             WHERE sink = ?1 AND stream = ?2",
        )?
        .execute(params![
            sink,
            stream,
            through,
            handed - n_parked,
            n_parked,
            now
        ])?;
        collect(&tx, stream)?;
        tx.commit()?;
        Ok(())
    }

    fn failed(&mut self, sink: &str, stream: &str, error: &str) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "UPDATE spool_cursors SET retried = retried + 1, last_error = ?3
                 WHERE sink = ?1 AND stream = ?2",
            )?
            .execute(params![sink, stream, error])?;
        Ok(())
    }

    fn parked(&self, sink: Option<&str>, max: usize) -> Result<Vec<ParkedRecord>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT sink, stream, id, created_at, payload, reason, parked_at, replay
             FROM spool_parked WHERE ?1 IS NULL OR sink = ?1 ORDER BY id LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![sink, i64::try_from(max).unwrap_or(i64::MAX)], |r| {
            Ok(ParkedRecord {
                sink: r.get(0)?,
                stream: r.get(1)?,
                record: SpoolRecord {
                    id: r.get(2)?,
                    created_at: r.get(3)?,
                    payload: r.get(4)?,
                },
                reason: r.get(5)?,
                parked_at: r.get(6)?,
                replay: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn replay(&mut self, sink: &str, ids: Option<&[i64]>) -> Result<u64, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = match ids {
            None => tx.execute(
                "UPDATE spool_parked SET replay = 1 WHERE sink = ?1 AND replay = 0",
                [sink],
            )?,
            Some(ids) => {
                let mut n = 0;
                for id in ids {
                    n += tx.execute(
                        "UPDATE spool_parked SET replay = 1 WHERE sink = ?1 AND id = ?2 AND replay = 0",
                        params![sink, id],
                    )?;
                }
                n
            }
        };
        tx.commit()?;
        Ok(n as u64)
    }

    fn replays(
        &self,
        sink: &str,
        stream: &str,
        max: usize,
    ) -> Result<Vec<SpoolRecord>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, created_at, payload FROM spool_parked
             WHERE sink = ?1 AND stream = ?2 AND replay = 1 ORDER BY id LIMIT ?3",
        )?;
        let rows = stmt.query_map(
            params![sink, stream, i64::try_from(max).unwrap_or(i64::MAX)],
            record,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn replayed(
        &mut self,
        sink: &str,
        stream: &str,
        ok: &[i64],
        refused: &[(i64, String)],
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut delivered = 0i64;
        for id in ok {
            delivered += tx.execute(
                "DELETE FROM spool_parked WHERE sink = ?1 AND stream = ?2 AND id = ?3",
                params![sink, stream, id],
            )? as i64;
        }
        for (id, reason) in refused {
            tx.execute(
                "UPDATE spool_parked SET replay = 0, reason = ?4, parked_at = ?5
                 WHERE sink = ?1 AND stream = ?2 AND id = ?3",
                params![sink, stream, id, reason, now],
            )?;
        }
        tx.execute(
            "UPDATE spool_cursors SET delivered = delivered + ?3 WHERE sink = ?1 AND stream = ?2",
            params![sink, stream, delivered],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn discard(&mut self, sink: &str, ids: Option<&[i64]>) -> Result<u64, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = match ids {
            None => tx.execute("DELETE FROM spool_parked WHERE sink = ?1", [sink])?,
            Some(ids) => {
                let mut n = 0;
                for id in ids {
                    n += tx.execute(
                        "DELETE FROM spool_parked WHERE sink = ?1 AND id = ?2",
                        params![sink, id],
                    )?;
                }
                n
            }
        };
        tx.commit()?;
        Ok(n as u64)
    }

    fn stats(&self) -> Result<Vec<SinkStats>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT c.sink, c.stream, c.cursor, c.delivered, c.retried, c.parked, c.dropped,
                    c.last_success, c.last_error,
                    (SELECT coalesce(sum(s.last_id - max(s.first_id, c.cursor + 1) + 1), 0)
                     FROM spool_segments s WHERE s.stream = c.stream AND s.last_id > c.cursor),
                    (SELECT s.created_at FROM spool_segments s
                     WHERE s.stream = c.stream AND s.last_id > c.cursor ORDER BY s.first_id LIMIT 1),
                    (SELECT count(*) FROM spool_parked p WHERE p.sink = c.sink AND p.stream = c.stream)
             FROM spool_cursors c ORDER BY c.sink, c.stream",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(SinkStats {
                sink: r.get(0)?,
                stream: r.get(1)?,
                cursor: r.get(2)?,
                delivered: r.get::<_, i64>(3)? as u64,
                retried: r.get::<_, i64>(4)? as u64,
                parked: r.get::<_, i64>(5)? as u64,
                dropped: r.get::<_, i64>(6)? as u64,
                last_success: r.get(7)?,
                last_error: r.get(8)?,
                depth: r.get::<_, i64>(9)? as u64,
                oldest: r.get(10)?,
                parked_now: r.get::<_, i64>(11)? as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Framing round-trips, and any bytes at all unframe to records or an error, never a
        /// panic (a segment is only ever written by `frame`, but a disk can lie).
        #[test]
        fn frames_round_trip_and_garbage_is_an_error(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..16),
            garbage in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            let blob = frame(&payloads);
            let back: Vec<Vec<u8>> = unframe(&blob).unwrap().into_iter().map(<[u8]>::to_vec).collect();
            prop_assert_eq!(back, payloads);
            let _ = unframe(&garbage);
            if blob.len() > 4 {
                prop_assert!(unframe(&blob[..blob.len() - 1]).is_err());
            }
        }
    }
}
