//! Shared records from downstream hubs in SQLite (`shared_records`, migration 11).

use rusqlite::params;

use super::{Clauses, SqliteStore};
use crate::error::StoreError;
use crate::shared::{SharedQuery, SharedRow, SharedStore};

/// JSON paths a query may name: `$.` and then letters, digits, `_` and dots (they are put in the
/// SQL as parameters, but a path is also checked so that a mistake is an error, not no rows).
fn path_ok(p: &str) -> bool {
    p.strip_prefix("$.").is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
    })
}

impl SharedStore for SqliteStore {
    fn add_shared(
        &mut self,
        downstream_id: i64,
        stream: &str,
        records: &[(String, String)],
    ) -> Result<u64, StoreError> {
        let now = self.now();
        let tx = self.transaction()?;
        let mut added = 0;
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO shared_records (downstream_id, stream, key, body, received_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for (key, body) in records {
                added += insert.execute(params![downstream_id, stream, key, body, now])? as u64;
            }
        }
        tx.commit()?;
        Ok(added)
    }

    fn known_shared(
        &self,
        downstream_id: i64,
        stream: &str,
        keys: &[String],
    ) -> Result<Vec<String>, StoreError> {
        let mut stmt = self.connection().prepare_cached(
            "SELECT 1 FROM shared_records WHERE downstream_id = ?1 AND stream = ?2 AND key = ?3",
        )?;
        let mut known = Vec::new();
        for k in keys {
            if stmt.exists(params![downstream_id, stream, k])? {
                known.push(k.clone());
            }
        }
        Ok(known)
    }

    fn shared(&self, q: &SharedQuery) -> Result<Vec<SharedRow>, StoreError> {
        let mut query = Clauses::new(
            "SELECT id, downstream_id, stream, key, body, received_at FROM shared_records
             WHERE stream = ?1 AND id > ?2",
            vec![q.stream.clone().into(), q.after.into()],
        );
        if let Some(d) = q.downstream_id {
            query.push(" AND downstream_id = ?", d);
        }
        if let Some(t) = q.since {
            query.push(" AND received_at >= ?", t);
        }
        if let Some(t) = q.until {
            query.push(" AND received_at < ?", t);
        }
        for (path, value) in &q.equal {
            if !path_ok(path) {
                return Err(StoreError::NotFound(format!("field {path}")));
            }
            query.push(" AND json_extract(body, ?", path.clone());
            query.push(") = ?", value.clone());
        }
        for (path, value) in &q.contains {
            if !path_ok(path) {
                return Err(StoreError::NotFound(format!("field {path}")));
            }
            query.push(" AND EXISTS (SELECT 1 FROM json_each(body, ?", path.clone());
            query.push(") WHERE value = ?)", value.clone());
        }
        query.push(
            " ORDER BY id LIMIT ?",
            i64::try_from(q.limit).unwrap_or(i64::MAX),
        );
        let mut stmt = self.connection().prepare(&query.sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(query.args), |r| {
            Ok(SharedRow {
                id: r.get(0)?,
                downstream_id: r.get(1)?,
                stream: r.get(2)?,
                key: r.get(3)?,
                body: r.get(4)?,
                received_at: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
