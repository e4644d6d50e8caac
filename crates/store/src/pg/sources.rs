//! Configured sources, the exception list and entries by modification time in PostgreSQL.

use std::collections::HashMap;

use rephub_model::Entry;

use super::{Clauses, PgStore, each_row, error, lock_sequence, prepared};
use crate::ReputationStore;
use crate::error::StoreError;
use crate::rows::{entry_at_key, parse_stored};
use crate::sources::{
    ExceptionRow, ModifiedKey, ModifiedPage, ModifiedQuery, SourceConfigRow, SourceStore,
    UpstreamStore,
};
use crate::types::StoredEntry;

impl SourceStore for PgStore {
    fn source_configs(&self) -> Result<Vec<SourceConfigRow>, StoreError> {
        Ok(self
            .rows(
                "SELECT name, kind, config, origin, state, created_at, updated_at
                 FROM source_configs ORDER BY name",
                &[],
            )?
            .iter()
            .map(|r| SourceConfigRow {
                name: r.get(0),
                kind: r.get(1),
                config: r.get(2),
                origin: r.get(3),
                state: r.get(4),
                created_at: r.get(5),
                updated_at: r.get(6),
            })
            .collect())
    }

    fn put_source_config(
        &mut self,
        name: &str,
        kind: &str,
        config: &str,
        origin: &str,
    ) -> Result<(), StoreError> {
        let now = self.now();
        self.execute(
            "INSERT INTO source_configs (name, kind, config, origin, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $5)
             ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, config = excluded.config,
                origin = excluded.origin, updated_at = excluded.updated_at",
            &[&name, &kind, &config, &origin, &now],
        )?;
        Ok(())
    }

    fn delete_source_config(&mut self, name: &str) -> Result<bool, StoreError> {
        Ok(self.execute("DELETE FROM source_configs WHERE name = $1", &[&name])? > 0)
    }

    fn save_source_state(&mut self, name: &str, state: &str) -> Result<bool, StoreError> {
        Ok(self.execute(
            "UPDATE source_configs SET state = $2 WHERE name = $1",
            &[&name, &state],
        )? > 0)
    }

    fn source_entries(&self, source: &str) -> Result<HashMap<Entry, Option<i64>>, StoreError> {
        self.snapshot(|tx, _| {
            let mut out = HashMap::new();
            each_row(
                tx,
                "SELECT e.kind, e.key, a.expires_at FROM sources s
                 JOIN assertions a ON a.source_id = s.id
                 JOIN entries e ON e.id = a.entry_id
                 WHERE s.name = $1",
                &[&source],
                &mut |r| {
                    let entry = entry_at_key(i64::from(r.get::<_, i16>(0)), r.get(1))?;
                    out.insert(entry, r.get(2));
                    Ok(true)
                },
            )?;
            Ok(out)
        })
    }

    fn rename_source(&mut self, old: &str, new: &str) -> Result<bool, StoreError> {
        self.write(|tx, cache| {
            // Under the writers' lock, as SQLite's single writer: a write transaction that is
            // about to create `new` (it looked the name up under that lock) cannot collide.
            lock_sequence(tx, cache)?;
            let taken = tx
                .query_opt("SELECT 1 FROM sources WHERE name = $1", &[&new])?
                .is_some();
            if taken {
                return Err(StoreError::Conflict(format!("source {new:?}")));
            }
            let n = tx
                .execute(
                    "UPDATE sources SET name = $2 WHERE name = $1",
                    &[&old, &new],
                )
                .map_err(|e| error::unique(e, format!("source {new:?}")))?;
            Ok(n > 0)
        })
    }
}

impl UpstreamStore for PgStore {
    fn put_exceptions(&mut self, items: &[(Entry, String)]) -> Result<Vec<bool>, StoreError> {
        let now = self.now();
        self.write(|tx, cache| {
            // One row changed when the exception is new or its description differs.
            let put = prepared(
                tx,
                cache,
                "INSERT INTO exceptions (kind, key, value, description, modified_at)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value,
                    description = excluded.description, modified_at = excluded.modified_at
                 WHERE exceptions.description <> excluded.description",
            )?;
            let mut out = Vec::with_capacity(items.len());
            for (entry, description) in items {
                let n = tx.execute(
                    &put,
                    &[
                        &i16::from(entry.kind().code()),
                        &entry.store_key(),
                        &entry.to_string(),
                        description,
                        &now,
                    ],
                )?;
                out.push(n > 0);
            }
            Ok(out)
        })
    }

    fn delete_exceptions(&mut self, entries: &[Entry]) -> Result<Vec<bool>, StoreError> {
        self.write(|tx, cache| {
            let del = prepared(
                tx,
                cache,
                "DELETE FROM exceptions WHERE kind = $1 AND key = $2",
            )?;
            let mut out = Vec::with_capacity(entries.len());
            for entry in entries {
                let n = tx.execute(&del, &[&i16::from(entry.kind().code()), &entry.store_key()])?;
                out.push(n > 0);
            }
            Ok(out)
        })
    }

    fn exceptions(&self, offset: usize, limit: usize) -> Result<Vec<ExceptionRow>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        self.rows(
            "SELECT kind, value, description, modified_at FROM exceptions
             ORDER BY kind, key LIMIT $1 OFFSET $2",
            &[&limit, &offset],
        )?
        .iter()
        .map(|r| {
            Ok(ExceptionRow {
                entry: parse_stored(i64::from(r.get::<_, i16>(0)), r.get(1))?,
                description: r.get(2),
                modified_at: r.get(3),
            })
        })
        .collect()
    }

    fn modified_entries(&self, q: &ModifiedQuery) -> Result<ModifiedPage, StoreError> {
        let mut sql = Clauses::new("SELECT a.updated_at, a.entry_id FROM assertions a", vec![]);
        if !q.kinds.is_empty() {
            let kinds: Vec<i16> = q.kinds.iter().map(|k| i16::from(k.code())).collect();
            sql.push(
                " JOIN entries e ON e.id = a.entry_id AND e.kind = ANY(?)",
                kinds,
            );
        }
        sql.sql.push_str(" WHERE true");
        if let Some(after) = q.after {
            sql.push(
                if q.descending {
                    " AND (a.updated_at, a.entry_id) < (?"
                } else {
                    " AND (a.updated_at, a.entry_id) > (?"
                },
                after.at,
            );
            sql.push(", ?)", after.id);
        }
        if let Some(start) = q.start {
            sql.push(" AND a.updated_at >= ?", start);
        }
        if let Some(end) = q.end {
            sql.push(" AND a.updated_at <= ?", end);
        }
        sql.push(
            if q.descending {
                " ORDER BY a.updated_at DESC, a.entry_id DESC LIMIT ?"
            } else {
                " ORDER BY a.updated_at, a.entry_id LIMIT ?"
            },
            i64::try_from(q.limit).unwrap_or(i64::MAX),
        );
        let keys: Vec<ModifiedKey> = self.snapshot(|tx, _| {
            Ok(tx
                .query(sql.sql.as_str(), &sql.params())?
                .iter()
                .map(|r| ModifiedKey {
                    at: r.get(0),
                    id: r.get(1),
                })
                .collect())
        })?;
        // An entry with several assertions in range comes once per assertion: keep the one
        // furthest along (its later ones are then not served again on the next page).
        let mut last: HashMap<i64, usize> = HashMap::new();
        for (i, k) in keys.iter().enumerate() {
            last.insert(k.id, i);
        }
        let ids: Vec<i64> = last.keys().copied().collect();
        let mut found: HashMap<i64, StoredEntry> = self
            .get_many(&ids)?
            .into_iter()
            .map(|e| (e.id, e))
            .collect();
        let mut items = Vec::with_capacity(ids.len());
        for (i, k) in keys.iter().enumerate() {
            if last.get(&k.id) != Some(&i) {
                continue;
            }
            if let Some(e) = found.remove(&k.id) {
                items.push((*k, e));
            }
        }
        Ok(ModifiedPage {
            items,
            last: keys.last().copied(),
            // A limit of 0 reads nothing and there is nothing more to say ("more" would loop).
            more: q.limit > 0 && keys.len() == q.limit,
        })
    }
}
