//! Configured sources, the exception list and entries by modification time in SQLite.

use std::collections::HashMap;

use rephub_model::Entry;
use rusqlite::{OptionalExtension, params, params_from_iter, types::Value};

use super::{SqliteStore, entry_at_key, parse_stored};
use crate::ReputationStore;
use crate::error::StoreError;
use crate::sources::{
    ExceptionRow, ModifiedKey, ModifiedPage, ModifiedQuery, SourceConfigRow, SourceStore,
    UpstreamStore,
};
use crate::types::StoredEntry;

impl SourceStore for SqliteStore {
    fn source_configs(&self) -> Result<Vec<SourceConfigRow>, StoreError> {
        let mut stmt = self.connection().prepare(
            "SELECT name, kind, config, origin, state, created_at, updated_at FROM source_configs ORDER BY name",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(SourceConfigRow {
                name: r.get(0)?,
                kind: r.get(1)?,
                config: r.get(2)?,
                origin: r.get(3)?,
                state: r.get(4)?,
                created_at: r.get(5)?,
                updated_at: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn put_source_config(
        &mut self,
        name: &str,
        kind: &str,
        config: &str,
        origin: &str,
    ) -> Result<(), StoreError> {
        let now = self.now();
        self.connection().execute(
            "INSERT INTO source_configs (name, kind, config, origin, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)
             ON CONFLICT (name) DO UPDATE SET kind = ?2, config = ?3, origin = ?4, updated_at = ?5",
            params![name, kind, config, origin, now],
        )?;
        Ok(())
    }

    fn delete_source_config(&mut self, name: &str) -> Result<bool, StoreError> {
        let n = self
            .connection()
            .execute("DELETE FROM source_configs WHERE name = ?1", [name])?;
        Ok(n > 0)
    }

    fn save_source_state(&mut self, name: &str, state: &str) -> Result<bool, StoreError> {
        let n = self.connection().execute(
            "UPDATE source_configs SET state = ?2 WHERE name = ?1",
            [name, state],
        )?;
        Ok(n > 0)
    }

    fn source_entries(&self, source: &str) -> Result<HashMap<Entry, Option<i64>>, StoreError> {
        let mut stmt = self.connection().prepare(
            "SELECT e.kind, e.key, a.expires_at FROM sources s
             JOIN assertions a ON a.source_id = s.id
             JOIN entries e ON e.id = a.entry_id
             WHERE s.name = ?1",
        )?;
        let mut rows = stmt.query([source])?;
        let mut out = HashMap::new();
        while let Some(r) = rows.next()? {
            let key = r.get_ref(1)?.as_blob().map_err(rusqlite::Error::from)?;
            out.insert(entry_at_key(r.get(0)?, key)?, r.get(2)?);
        }
        Ok(out)
    }

    fn rename_source(&mut self, old: &str, new: &str) -> Result<bool, StoreError> {
        let conn = self.connection();
        let taken: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM sources WHERE name = ?1)",
            [new],
            |r| r.get(0),
        )?;
        if taken {
            return Err(StoreError::Conflict(format!("source {new:?}")));
        }
        let n = conn.execute("UPDATE sources SET name = ?2 WHERE name = ?1", [old, new])?;
        Ok(n > 0)
    }
}

impl UpstreamStore for SqliteStore {
    fn put_exceptions(&mut self, items: &[(Entry, String)]) -> Result<Vec<bool>, StoreError> {
        let now = self.now();
        let tx = self.transaction()?;
        let mut out = Vec::with_capacity(items.len());
        {
            let mut old = tx.prepare_cached(
                "SELECT description FROM exceptions WHERE kind = ?1 AND key = ?2",
            )?;
            let mut put = tx.prepare_cached(
                "INSERT OR REPLACE INTO exceptions (kind, key, value, description, modified_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for (entry, description) in items {
                let kind = entry.kind().code();
                let key = entry.store_key();
                let before: Option<String> =
                    old.query_row(params![kind, key], |r| r.get(0)).optional()?;
                let changed = before.as_deref() != Some(description.as_str());
                if changed {
                    put.execute(params![kind, key, entry.to_string(), description, now])?;
                }
                out.push(changed);
            }
        }
        tx.commit()?;
        Ok(out)
    }

    fn delete_exceptions(&mut self, entries: &[Entry]) -> Result<Vec<bool>, StoreError> {
        let tx = self.transaction()?;
        let mut out = Vec::with_capacity(entries.len());
        {
            let mut del =
                tx.prepare_cached("DELETE FROM exceptions WHERE kind = ?1 AND key = ?2")?;
            for entry in entries {
                out.push(del.execute(params![entry.kind().code(), entry.store_key()])? > 0);
            }
        }
        tx.commit()?;
        Ok(out)
    }

    fn exceptions(&self, offset: usize, limit: usize) -> Result<Vec<ExceptionRow>, StoreError> {
        let mut stmt = self.connection().prepare_cached(
            "SELECT kind, value, description, modified_at FROM exceptions
             ORDER BY kind, key LIMIT ?1 OFFSET ?2",
        )?;
        let mut rows = stmt.query(params![limit as i64, offset as i64])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            out.push(ExceptionRow {
                entry: parse_stored(r.get(0)?, &r.get::<_, String>(1)?)?,
                description: r.get(2)?,
                modified_at: r.get(3)?,
            });
        }
        Ok(out)
    }

    fn modified_entries(&self, q: &ModifiedQuery) -> Result<ModifiedPage, StoreError> {
        let mut sql = String::from("SELECT a.updated_at, a.entry_id FROM assertions a");
        let mut args: Vec<Value> = Vec::new();
        if !q.kinds.is_empty() {
            sql.push_str(" JOIN entries e ON e.id = a.entry_id AND e.kind IN (");
            for (i, k) in q.kinds.iter().enumerate() {
                sql.push_str(if i == 0 { "?" } else { ", ?" });
                args.push(Value::Integer(i64::from(k.code())));
            }
            sql.push(')');
        }
        sql.push_str(" WHERE 1");
        if let Some(after) = q.after {
            sql.push_str(if q.descending {
                " AND (a.updated_at, a.entry_id) < (?, ?)"
            } else {
                " AND (a.updated_at, a.entry_id) > (?, ?)"
            });
            args.push(Value::Integer(after.at));
            args.push(Value::Integer(after.id));
        }
        if let Some(start) = q.start {
            sql.push_str(" AND a.updated_at >= ?");
            args.push(Value::Integer(start));
        }
        if let Some(end) = q.end {
            sql.push_str(" AND a.updated_at <= ?");
            args.push(Value::Integer(end));
        }
        sql.push_str(if q.descending {
            " ORDER BY a.updated_at DESC, a.entry_id DESC LIMIT ?"
        } else {
            " ORDER BY a.updated_at, a.entry_id LIMIT ?"
        });
        args.push(Value::Integer(q.limit as i64));
        let keys: Vec<ModifiedKey> = {
            let mut stmt = self.connection().prepare_cached(&sql)?;
            let rows = stmt.query_map(params_from_iter(args), |r| {
                Ok(ModifiedKey {
                    at: r.get(0)?,
                    id: r.get(1)?,
                })
            })?;
            rows.collect::<Result<_, _>>()?
        };
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
