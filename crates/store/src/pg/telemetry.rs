//! TLS telemetry in PostgreSQL (`telemetry`, migration 2): the searched fields in columns with
//! their indexes, the whole record as JSON text.

use std::collections::HashSet;

use super::{Clauses, PgStore, prepared};
use crate::error::StoreError;
use crate::telemetry::{NewTelemetry, TelemetryQuery, TelemetryRow, TelemetryStore};

/// Records inserted per statement (one round trip each, arrays as parameters).
const CHUNK: usize = 5_000;

impl TelemetryStore for PgStore {
    fn add_telemetry(
        &mut self,
        downstream_id: i64,
        records: &[NewTelemetry],
    ) -> Result<u64, StoreError> {
        if records.is_empty() {
            return Ok(0);
        }
        let now = self.now();
        self.write(|tx, cache| {
            // In arrival order (ids follow it); a key sent twice, in this batch or before, is
            // kept once: ON CONFLICT also skips a duplicate of a row this statement inserted.
            let insert = prepared(
                tx,
                cache,
                "INSERT INTO telemetry (downstream_id, key, device, at_ms, received_at,
                     sni, ja3, ja4, sha256, sha1, record)
                 SELECT $1, t.key, t.device, t.at_ms, $2, t.sni, t.ja3, t.ja4, t.sha256, t.sha1,
                     t.record
                 FROM unnest($3::text[], $4::text[], $5::bigint[], $6::text[], $7::text[],
                             $8::text[], $9::text[], $10::text[], $11::text[]) WITH ORDINALITY
                     AS t(key, device, at_ms, sni, ja3, ja4, sha256, sha1, record, n)
                 ORDER BY t.n
                 ON CONFLICT (downstream_id, key) DO NOTHING",
            )?;
            let mut added = 0;
            for chunk in records.chunks(CHUNK) {
                let mut keys = Vec::with_capacity(chunk.len());
                let mut devices = Vec::with_capacity(chunk.len());
                let mut at = Vec::with_capacity(chunk.len());
                let mut sni = Vec::with_capacity(chunk.len());
                let mut ja3 = Vec::with_capacity(chunk.len());
                let mut ja4 = Vec::with_capacity(chunk.len());
                let mut sha256 = Vec::with_capacity(chunk.len());
                let mut sha1 = Vec::with_capacity(chunk.len());
                let mut json = Vec::with_capacity(chunk.len());
                for t in chunk {
                    let r = &t.record;
                    keys.push(t.key.as_str());
                    devices.push(t.device.as_str());
                    at.push(r.at_ms);
                    sni.push(r.sni.as_deref());
                    ja3.push(r.ja3.as_deref());
                    ja4.push(r.ja4.as_deref());
                    sha256.push(r.sha256.as_deref());
                    sha1.push(r.sha1.as_deref());
                    json.push(
                        serde_json::to_string(r)
                            .map_err(|e| StoreError::Corrupt(format!("telemetry record: {e}")))?,
                    );
                }
                added += tx.execute(
                    &insert,
                    &[
                        &downstream_id,
                        &now,
                        &keys,
                        &devices,
                        &at,
                        &sni,
                        &ja3,
                        &ja4,
                        &sha256,
                        &sha1,
                        &json,
                    ],
                )?;
            }
            Ok(added)
        })
    }

    fn known_telemetry(
        &self,
        downstream_id: i64,
        keys: &[String],
    ) -> Result<Vec<String>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self.rows(
            "SELECT key FROM telemetry WHERE downstream_id = $1 AND key = ANY($2)",
            &[&downstream_id, &keys],
        )?;
        let found: HashSet<String> = rows.iter().map(|r| r.get(0)).collect();
        // In the order asked, as SQLite's one lookup per key gives them.
        Ok(keys
            .iter()
            .filter(|k| found.contains(*k))
            .cloned()
            .collect())
    }

    fn telemetry(&self, q: &TelemetryQuery) -> Result<Vec<TelemetryRow>, StoreError> {
        let mut query = Clauses::new(
            "SELECT id, downstream_id, key, device, received_at, record FROM telemetry
             WHERE id > $1",
            vec![Box::new(q.after)],
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
        let rows = self.snapshot(|tx, _| Ok(tx.query(query.sql.as_str(), &query.params())?))?;
        rows.iter()
            .map(|r| {
                let id: i64 = r.get(0);
                let record = serde_json::from_str(r.get(5))
                    .map_err(|e| StoreError::Corrupt(format!("telemetry record {id}: {e}")))?;
                Ok(TelemetryRow {
                    id,
                    downstream_id: r.get(1),
                    key: r.get(2),
                    device: r.get(3),
                    received_at: r.get(4),
                    record,
                })
            })
            .collect()
    }

    fn sweep_telemetry(&mut self, before_ms: i64) -> Result<u64, StoreError> {
        // In pieces of 10,000 (each its own transaction), so that sweeping millions of records
        // never holds locks on them all for long.
        let mut removed = 0;
        loop {
            let n = self.execute(
                "DELETE FROM telemetry WHERE id IN
                     (SELECT id FROM telemetry WHERE at_ms < $1 LIMIT 10000)",
                &[&before_ms],
            )?;
            removed += n;
            if n < 10_000 {
                return Ok(removed);
            }
        }
    }
}
