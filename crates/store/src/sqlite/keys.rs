//! API keys in SQLite.

use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use crate::error::StoreError;
use crate::keys::{ApiKey, KeyStore};

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApiKey> {
    Ok(ApiKey {
        id: r.get(0)?,
        name: r.get(1)?,
        role: r.get(2)?,
        hash: r.get(3)?,
        created_at: r.get(4)?,
    })
}

impl KeyStore for SqliteStore {
    fn add_api_key(&mut self, name: &str, role: &str, hash: &[u8]) -> Result<ApiKey, StoreError> {
        let now = self.now();
        let conn = self.connection();
        let exists: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM api_keys WHERE name = ?1)",
            [name],
            |r| r.get(0),
        )?;
        if exists {
            return Err(StoreError::Conflict(format!("API key {name:?}")));
        }
        conn.execute(
            "INSERT INTO api_keys (name, role, hash, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![name, role, hash, now],
        )?;
        Ok(ApiKey {
            id: conn.last_insert_rowid(),
            name: name.to_string(),
            role: role.to_string(),
            hash: hash.to_vec(),
            created_at: now,
        })
    }

    fn api_key_by_hash(&self, hash: &[u8]) -> Result<Option<ApiKey>, StoreError> {
        Ok(self
            .connection()
            .prepare_cached(
                "SELECT id, name, role, hash, created_at FROM api_keys WHERE hash = ?1",
            )?
            .query_row([hash], row)
            .optional()?)
    }

    fn api_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        let conn = self.connection();
        let mut stmt =
            conn.prepare("SELECT id, name, role, hash, created_at FROM api_keys ORDER BY name")?;
        let rows = stmt.query_map([], row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn delete_api_key(&mut self, name: &str) -> Result<bool, StoreError> {
        Ok(self
            .connection()
            .execute("DELETE FROM api_keys WHERE name = ?1", [name])?
            > 0)
    }
}
