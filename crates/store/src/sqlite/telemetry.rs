//! TLS telemetry in SQLite (`telemetry`, migration 19): the searched fields in columns with
//! their indexes, the whole record as JSON.

use rusqlite::params;

use super::{Clauses, SqliteStore};
use crate::error::StoreError;
use crate::telemetry::{NewTelemetry, TelemetryQuery, TelemetryRow, TelemetryStore};

impl TelemetryStore for SqliteStore {
    fn add_telemetry(
        &mut self,
        downstream_id: i64,
        records: &[NewTelemetry],
    ) -> Result<u64, StoreError> {
        let now = self.now();
        let tx = self.transaction()?;
        let mut added = 0;
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO telemetry (downstream_id, key, device, at_ms, received_at,
                     sni, ja3, ja4, sha256, sha1, record)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?;
            for t in records {
                let r = &t.record;
                let json = serde_json::to_string(r)
                    .map_err(|e| StoreError::Corrupt(format!("telemetry record: {e}")))?;
                added += insert.execute(params![
                    downstream_id,
                    t.key,
                    t.device,
                    r.at_ms,
                    now,
                    r.sni,
                    r.ja3,
                    r.ja4,
                    r.sha256,
                    r.sha1,
                    json
                ])? as u64;
            }
        }
        tx.commit()?;
        Ok(added)
    }

    fn known_telemetry(
        &self,
        downstream_id: i64,
        keys: &[String],
    ) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .connection()
            .prepare_cached("SELECT 1 FROM telemetry WHERE downstream_id = ?1 AND key = ?2")?;
        let mut known = Vec::new();
        for k in keys {
            if stmt.exists(params![downstream_id, k])? {
                known.push(k.clone());
            }
        }
        Ok(known)
    }

    fn telemetry(&self, q: &TelemetryQuery) -> Result<Vec<TelemetryRow>, StoreError> {
        let mut query = Clauses::new(
            "SELECT id, downstream_id, key, device, received_at, record FROM telemetry WHERE id > ?1",
            vec![q.after.into()],
        );
        if let Some(d) = q.downstream_id {
            query.push(" AND downstream_id = ?", d);
        }
        for (clause, v) in [
            (" AND device = ?", &q.device),
            (" AND sni = ?", &q.sni),
            (" AND ja3 = ?", &q.ja3),
            (" AND ja4 = ?", &q.ja4),
        ] {
            if let Some(v) = v {
                query.push(clause, v.clone());
            }
        }
        if let Some(f) = &q.fingerprint {
            let column = if f.len() == 40 { "sha1" } else { "sha256" };
            query.push(&format!(" AND {column} = ?"), f.clone());
        }
        if let Some(t) = q.since_ms {
            query.push(" AND at_ms >= ?", t);
        }
        if let Some(t) = q.until_ms {
            query.push(" AND at_ms < ?", t);
        }
        query.push(
            " ORDER BY id LIMIT ?",
            i64::try_from(q.limit).unwrap_or(i64::MAX),
        );
        let mut stmt = self.connection().prepare(&query.sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(query.args), |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, String>(5)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, downstream_id, key, device, received_at, json) = row?;
            let record = serde_json::from_str(&json)
                .map_err(|e| StoreError::Corrupt(format!("telemetry record {id}: {e}")))?;
            out.push(TelemetryRow {
                id,
                downstream_id,
                key,
                device,
                received_at,
                record,
            });
        }
        Ok(out)
    }

    fn sweep_telemetry(&mut self, before_ms: i64) -> Result<u64, StoreError> {
        // In pieces of 10,000 (each its own transaction), so that sweeping millions of records
        // never holds the writer for long.
        let mut removed = 0;
        loop {
            let n = self.connection().execute(
                "DELETE FROM telemetry WHERE id IN
                     (SELECT id FROM telemetry WHERE at_ms < ?1 LIMIT 10000)",
                [before_ms],
            )? as u64;
            removed += n;
            if n < 10_000 {
                return Ok(removed);
            }
        }
    }
}
