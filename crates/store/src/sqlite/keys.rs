//! API keys in SQLite.

use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use crate::error::StoreError;
use crate::keys::{ApiKey, KeyStore, User, UserStore};

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

fn user_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        name: r.get(0)?,
        role: r.get(1)?,
        password_hash: r.get(2)?,
        created_at: r.get(3)?,
        updated_at: r.get(4)?,
    })
}

const USER_COLUMNS: &str = "name, role, password_hash, created_at, updated_at";

impl UserStore for SqliteStore {
    fn add_user(
        &mut self,
        name: &str,
        role: &str,
        password_hash: &str,
    ) -> Result<User, StoreError> {
        let now = self.now();
        let added = self.connection().execute(
            "INSERT INTO users (name, role, password_hash, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?4) ON CONFLICT (name) DO NOTHING",
            params![name, role, password_hash, now],
        )?;
        if added == 0 {
            return Err(StoreError::Conflict(format!("user {name:?}")));
        }
        Ok(User {
            name: name.to_string(),
            role: role.to_string(),
            password_hash: password_hash.to_string(),
            created_at: now,
            updated_at: now,
        })
    }

    fn user(&self, name: &str) -> Result<Option<User>, StoreError> {
        Ok(self
            .connection()
            .prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE name = ?1"))?
            .query_row([name], user_row)
            .optional()?)
    }

    fn users(&self) -> Result<Vec<User>, StoreError> {
        let conn = self.connection();
        let mut stmt = conn.prepare(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY name"))?;
        let rows = stmt.query_map([], user_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn update_user(
        &mut self,
        name: &str,
        role: Option<&str>,
        password_hash: Option<&str>,
    ) -> Result<bool, StoreError> {
        let now = self.now();
        Ok(self.connection().execute(
            "UPDATE users SET role = coalesce(?2, role), password_hash = coalesce(?3, password_hash),
                              updated_at = ?4 WHERE name = ?1",
            params![name, role, password_hash, now],
        )? > 0)
    }

    fn delete_user(&mut self, name: &str) -> Result<bool, StoreError> {
        Ok(self
            .connection()
            .execute("DELETE FROM users WHERE name = ?1", [name])?
            > 0)
    }
}
