//! Distribution targets in SQLite.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use crate::error::StoreError;
use crate::targets::{Sent, TargetRow, TargetRunRow, TargetStore};

impl TargetStore for SqliteStore {
    fn targets(&self) -> Result<Vec<TargetRow>, StoreError> {
        let mut stmt = self.connection().prepare(
            "SELECT name, config, state, created_at, updated_at FROM targets ORDER BY name",
        )?;
        let rows = stmt.query_map([], row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn target(&self, name: &str) -> Result<Option<TargetRow>, StoreError> {
        Ok(self
            .connection()
            .query_row(
                "SELECT name, config, state, created_at, updated_at FROM targets WHERE name = ?1",
                [name],
                row,
            )
            .optional()?)
    }

    fn put_target(&mut self, name: &str, config: &str) -> Result<(), StoreError> {
        let now = self.now();
        self.connection().execute(
            "INSERT INTO targets (name, config, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)
             ON CONFLICT (name) DO UPDATE SET config = ?2, updated_at = ?3",
            params![name, config, now],
        )?;
        Ok(())
    }

    fn delete_target(&mut self, name: &str) -> Result<bool, StoreError> {
        let tx = self.transaction()?;
        let n = tx.execute("DELETE FROM targets WHERE name = ?1", [name])?;
        tx.execute("DELETE FROM target_entries WHERE target = ?1", [name])?;
        tx.execute("DELETE FROM target_runs WHERE target = ?1", [name])?;
        tx.commit()?;
        Ok(n > 0)
    }

    fn save_target_state(&mut self, name: &str, state: &str) -> Result<bool, StoreError> {
        let n = self.connection().execute(
            "UPDATE targets SET state = ?2 WHERE name = ?1",
            [name, state],
        )?;
        Ok(n > 0)
    }

    fn target_entries(&self, name: &str) -> Result<HashMap<(u8, String), Vec<u8>>, StoreError> {
        let mut stmt = self
            .connection()
            .prepare("SELECT kind, value, digest FROM target_entries WHERE target = ?1")?;
        let mut rows = stmt.query([name])?;
        let mut out = HashMap::new();
        while let Some(r) = rows.next()? {
            out.insert((r.get::<_, u8>(0)?, r.get::<_, String>(1)?), r.get(2)?);
        }
        Ok(out)
    }

    fn record_sent(
        &mut self,
        name: &str,
        took: &[Sent],
        dropped: &[(u8, String)],
    ) -> Result<(), StoreError> {
        let tx = self.transaction()?;
        {
            let mut put = tx.prepare_cached(
                "INSERT OR REPLACE INTO target_entries (target, kind, value, digest) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for ((kind, value), digest) in took {
                put.execute(params![name, kind, value, digest])?;
            }
            let mut del = tx.prepare_cached(
                "DELETE FROM target_entries WHERE target = ?1 AND kind = ?2 AND value = ?3",
            )?;
            for (kind, value) in dropped {
                del.execute(params![name, kind, value])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn add_target_run(&mut self, name: &str, r: &TargetRunRow) -> Result<i64, StoreError> {
        let conn = self.connection();
        conn.execute(
            "INSERT INTO target_runs (target, started_at, finished_at, added, removed, failed, error)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                name,
                r.started_at,
                r.finished_at,
                r.added as i64,
                r.removed as i64,
                r.failed as i64,
                r.error
            ],
        )?;
        let id = conn.last_insert_rowid();
        // Keep the last 1,000 runs of a target.
        conn.execute(
            "DELETE FROM target_runs WHERE target = ?1 AND id <= ?2 - 1000",
            params![name, id],
        )?;
        Ok(id)
    }

    fn target_runs(&self, name: &str, limit: usize) -> Result<Vec<TargetRunRow>, StoreError> {
        let mut stmt = self.connection().prepare(
            "SELECT id, started_at, finished_at, added, removed, failed, error FROM target_runs
             WHERE target = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![name, limit as i64], |r| {
            Ok(TargetRunRow {
                id: r.get(0)?,
                started_at: r.get(1)?,
                finished_at: r.get(2)?,
                added: r.get::<_, i64>(3)? as u64,
                removed: r.get::<_, i64>(4)? as u64,
                failed: r.get::<_, i64>(5)? as u64,
                error: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TargetRow> {
    Ok(TargetRow {
        name: r.get(0)?,
        config: r.get(1)?,
        state: r.get(2)?,
        created_at: r.get(3)?,
        updated_at: r.get(4)?,
    })
}
