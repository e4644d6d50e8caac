//! API keys and console users in PostgreSQL.

use postgres::Row;

use super::PgStore;
use crate::error::StoreError;
use crate::keys::{ApiKey, KeyStore, User, UserStore};

fn key_row(r: &Row) -> ApiKey {
    ApiKey {
        id: r.get(0),
        name: r.get(1),
        role: r.get(2),
        hash: r.get(3),
        created_at: r.get(4),
    }
}

impl KeyStore for PgStore {
    fn add_api_key(&mut self, name: &str, role: &str, hash: &[u8]) -> Result<ApiKey, StoreError> {
        let now = self.now();
        // Only a taken name is a conflict; a taken hash stays an error, as in SQLite.
        let rows = self.rows(
            "INSERT INTO api_keys (name, role, hash, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (name) DO NOTHING RETURNING id",
            &[&name, &role, &hash, &now],
        )?;
        let Some(r) = rows.first() else {
            return Err(StoreError::Conflict(format!("API key {name:?}")));
        };
        Ok(ApiKey {
            id: r.get(0),
            name: name.to_string(),
            role: role.to_string(),
            hash: hash.to_vec(),
            created_at: now,
        })
    }

    fn api_key_by_hash(&self, hash: &[u8]) -> Result<Option<ApiKey>, StoreError> {
        Ok(self
            .rows(
                "SELECT id, name, role, hash, created_at FROM api_keys WHERE hash = $1",
                &[&hash],
            )?
            .first()
            .map(key_row))
    }

    fn api_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        Ok(self
            .rows(
                "SELECT id, name, role, hash, created_at FROM api_keys ORDER BY name",
                &[],
            )?
            .iter()
            .map(key_row)
            .collect())
    }

    fn delete_api_key(&mut self, name: &str) -> Result<bool, StoreError> {
        Ok(self.execute("DELETE FROM api_keys WHERE name = $1", &[&name])? > 0)
    }
}

fn user_row(r: &Row) -> User {
    User {
        name: r.get(0),
        role: r.get(1),
        password_hash: r.get(2),
        created_at: r.get(3),
        updated_at: r.get(4),
    }
}

impl UserStore for PgStore {
    fn add_user(
        &mut self,
        name: &str,
        role: &str,
        password_hash: &str,
    ) -> Result<User, StoreError> {
        let now = self.now();
        let added = self.execute(
            "INSERT INTO users (name, role, password_hash, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $4) ON CONFLICT (name) DO NOTHING",
            &[&name, &role, &password_hash, &now],
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
            .rows(
                "SELECT name, role, password_hash, created_at, updated_at FROM users
                 WHERE name = $1",
                &[&name],
            )?
            .first()
            .map(user_row))
    }

    fn users(&self) -> Result<Vec<User>, StoreError> {
        Ok(self
            .rows(
                "SELECT name, role, password_hash, created_at, updated_at FROM users ORDER BY name",
                &[],
            )?
            .iter()
            .map(user_row)
            .collect())
    }

    fn update_user(
        &mut self,
        name: &str,
        role: Option<&str>,
        password_hash: Option<&str>,
    ) -> Result<bool, StoreError> {
        let now = self.now();
        Ok(self.execute(
            "UPDATE users SET role = coalesce($2, role), password_hash = coalesce($3, password_hash),
                              updated_at = $4 WHERE name = $1",
            &[&name, &role, &password_hash, &now],
        )? > 0)
    }

    fn delete_user(&mut self, name: &str) -> Result<bool, StoreError> {
        Ok(self.execute("DELETE FROM users WHERE name = $1", &[&name])? > 0)
    }
}
