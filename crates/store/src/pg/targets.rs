//! Distribution targets in PostgreSQL.

use std::collections::HashMap;

use postgres::Row;

use super::{PgStore, each_row, prepared};
use crate::error::StoreError;
use crate::targets::{Sent, TargetRow, TargetRunRow, TargetStore};

fn row(r: &Row) -> TargetRow {
    TargetRow {
        name: r.get(0),
        config: r.get(1),
        state: r.get(2),
        created_at: r.get(3),
        updated_at: r.get(4),
    }
}

fn kind_code(r: &Row) -> Result<u8, StoreError> {
    let code: i16 = r.get(0);
    u8::try_from(code).map_err(|_| StoreError::Corrupt(format!("target entry kind {code}")))
}

impl TargetStore for PgStore {
    fn targets(&self) -> Result<Vec<TargetRow>, StoreError> {
        Ok(self
            .rows(
                "SELECT name, config, state, created_at, updated_at FROM targets ORDER BY name",
                &[],
            )?
            .iter()
            .map(row)
            .collect())
    }

    fn target(&self, name: &str) -> Result<Option<TargetRow>, StoreError> {
        Ok(self
            .rows(
                "SELECT name, config, state, created_at, updated_at FROM targets WHERE name = $1",
                &[&name],
            )?
            .first()
            .map(row))
    }

    fn put_target(&mut self, name: &str, config: &str) -> Result<(), StoreError> {
        let now = self.now();
        self.execute(
            "INSERT INTO targets (name, config, created_at, updated_at) VALUES ($1, $2, $3, $3)
             ON CONFLICT (name) DO UPDATE SET config = excluded.config,
                updated_at = excluded.updated_at",
            &[&name, &config, &now],
        )?;
        Ok(())
    }

    fn delete_target(&mut self, name: &str) -> Result<bool, StoreError> {
        self.write(|tx, _| {
            let n = tx.execute("DELETE FROM targets WHERE name = $1", &[&name])?;
            tx.execute("DELETE FROM target_entries WHERE target = $1", &[&name])?;
            tx.execute("DELETE FROM target_runs WHERE target = $1", &[&name])?;
            Ok(n > 0)
        })
    }

    fn save_target_state(&mut self, name: &str, state: &str) -> Result<bool, StoreError> {
        Ok(self.execute(
            "UPDATE targets SET state = $2 WHERE name = $1",
            &[&name, &state],
        )? > 0)
    }

    fn target_entries(&self, name: &str) -> Result<HashMap<(u8, String), Vec<u8>>, StoreError> {
        self.snapshot(|tx, _| {
            let mut out = HashMap::new();
            each_row(
                tx,
                "SELECT kind, value, digest FROM target_entries WHERE target = $1",
                &[&name],
                &mut |r| {
                    out.insert((kind_code(r)?, r.get(1)), r.get(2));
                    Ok(true)
                },
            )?;
            Ok(out)
        })
    }

    fn record_sent(
        &mut self,
        name: &str,
        took: &[Sent],
        dropped: &[(u8, String)],
    ) -> Result<(), StoreError> {
        // Whole arrays per statement: one round trip for a batch, not one per entry. An entry
        // sent twice keeps its last digest (as one row after the other would), and one upsert
        // must not meet the same row twice.
        let mut last: HashMap<(u8, &str), &[u8]> = HashMap::with_capacity(took.len());
        for ((kind, value), digest) in took {
            last.insert((*kind, value.as_str()), digest.as_slice());
        }
        let mut kinds = Vec::with_capacity(last.len());
        let mut values = Vec::with_capacity(last.len());
        let mut digests = Vec::with_capacity(last.len());
        for ((kind, value), digest) in last {
            kinds.push(i16::from(kind));
            values.push(value);
            digests.push(digest);
        }
        let gone_kinds: Vec<i16> = dropped.iter().map(|(k, _)| i16::from(*k)).collect();
        let gone_values: Vec<&str> = dropped.iter().map(|(_, v)| v.as_str()).collect();
        self.write(|tx, cache| {
            if !kinds.is_empty() {
                let put = prepared(
                    tx,
                    cache,
                    "INSERT INTO target_entries (target, kind, value, digest)
                     SELECT $1, k, v, d FROM unnest($2::smallint[], $3::text[], $4::bytea[])
                        AS t (k, v, d)
                     ON CONFLICT (target, kind, value) DO UPDATE SET digest = excluded.digest",
                )?;
                tx.execute(&put, &[&name, &kinds, &values, &digests])?;
            }
            if !gone_kinds.is_empty() {
                let del = prepared(
                    tx,
                    cache,
                    "DELETE FROM target_entries WHERE target = $1 AND (kind, value) IN
                        (SELECT * FROM unnest($2::smallint[], $3::text[]))",
                )?;
                tx.execute(&del, &[&name, &gone_kinds, &gone_values])?;
            }
            Ok(())
        })
    }

    fn add_target_run(&mut self, name: &str, r: &TargetRunRow) -> Result<i64, StoreError> {
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let (added, removed, failed) = (count(r.added), count(r.removed), count(r.failed));
        self.write(|tx, cache| {
            let put = prepared(
                tx,
                cache,
                "INSERT INTO target_runs
                    (target, started_at, finished_at, added, removed, failed, error)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            )?;
            let id: i64 = tx
                .query_one(
                    &put,
                    &[
                        &name,
                        &r.started_at,
                        &r.finished_at,
                        &added,
                        &removed,
                        &failed,
                        &r.error,
                    ],
                )?
                .get(0);
            // Keep the last 1,000 runs of a target (by id, as SQLite does).
            let trim = prepared(
                tx,
                cache,
                "DELETE FROM target_runs WHERE target = $1 AND id <= $2::bigint - 1000",
            )?;
            tx.execute(&trim, &[&name, &id])?;
            Ok(id)
        })
    }

    fn target_runs(&self, name: &str, limit: usize) -> Result<Vec<TargetRunRow>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        Ok(self
            .rows(
                "SELECT id, started_at, finished_at, added, removed, failed, error FROM target_runs
                 WHERE target = $1 ORDER BY id DESC LIMIT $2",
                &[&name, &limit],
            )?
            .iter()
            .map(|r| TargetRunRow {
                id: r.get(0),
                started_at: r.get(1),
                finished_at: r.get(2),
                added: r.get::<_, i64>(3) as u64,
                removed: r.get::<_, i64>(4) as u64,
                failed: r.get::<_, i64>(5) as u64,
                error: r.get(6),
            })
            .collect())
    }
}
