//! Console sessions, failed sign-ins, TAXII push statuses (migration 23) and the enrollment CA
//! (24) in SQLite.

use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use crate::connections::CaStore;
use crate::error::StoreError;
use crate::sessions::{ConsoleSession, SessionStore, owner_columns, owner_of};
use crate::statuses::StatusStore;

const SESSION_COLUMNS: &str =
    "digest, user_name, stamp, key_hash, csrf, created_at, last_at, flash";

impl SessionStore for SqliteStore {
    fn add_session(
        &mut self,
        session: &ConsoleSession,
        idle_before: i64,
        made_before: i64,
        most: usize,
    ) -> Result<(), StoreError> {
        let (user, stamp, key) = owner_columns(&session.owner);
        let tx = self.transaction()?;
        tx.execute(
            "DELETE FROM console_sessions WHERE last_at < ?1 OR created_at < ?2",
            params![idle_before, made_before],
        )?;
        let count: i64 = tx.query_row("SELECT count(*) FROM console_sessions", [], |r| r.get(0))?;
        let over = count.saturating_sub(i64::try_from(most).unwrap_or(i64::MAX) - 1);
        if over > 0 {
            tx.execute(
                "DELETE FROM console_sessions WHERE digest IN
                   (SELECT digest FROM console_sessions ORDER BY last_at, digest LIMIT ?1)",
                [over],
            )?;
        }
        tx.execute(
            &format!("INSERT INTO console_sessions ({SESSION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
            params![
                session.digest,
                user,
                stamp,
                key,
                session.csrf,
                session.created_at,
                session.last_at,
                session.flash
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn session(&self, digest: &[u8]) -> Result<Option<ConsoleSession>, StoreError> {
        let row = self
            .connection()
            .prepare_cached(&format!(
                "SELECT {SESSION_COLUMNS} FROM console_sessions WHERE digest = ?1"
            ))?
            .query_row([digest], |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Option<Vec<u8>>>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, i64>(6)?,
                    r.get::<_, Option<String>>(7)?,
                ))
            })
            .optional()?;
        row.map(
            |(digest, user, stamp, key, csrf, created_at, last_at, flash)| {
                Ok(ConsoleSession {
                    digest,
                    owner: owner_of(user, stamp, key)?,
                    csrf,
                    created_at,
                    last_at,
                    flash,
                })
            },
        )
        .transpose()
    }

    fn touch_session(&mut self, digest: &[u8], at: i64) -> Result<bool, StoreError> {
        Ok(self.connection().execute(
            "UPDATE console_sessions SET last_at = max(last_at, ?2) WHERE digest = ?1",
            params![digest, at],
        )? > 0)
    }

    fn set_session_flash(
        &mut self,
        digest: &[u8],
        flash: Option<&str>,
    ) -> Result<bool, StoreError> {
        Ok(self.connection().execute(
            "UPDATE console_sessions SET flash = ?2 WHERE digest = ?1",
            params![digest, flash],
        )? > 0)
    }

    fn delete_session(&mut self, digest: &[u8]) -> Result<bool, StoreError> {
        Ok(self
            .connection()
            .execute("DELETE FROM console_sessions WHERE digest = ?1", [digest])?
            > 0)
    }

    fn delete_user_sessions(&mut self, name: &str) -> Result<u64, StoreError> {
        Ok(self
            .connection()
            .execute("DELETE FROM console_sessions WHERE user_name = ?1", [name])?
            as u64)
    }

    fn sign_in_failures(&self, name: &str) -> Result<Option<(u32, i64)>, StoreError> {
        Ok(self
            .connection()
            .prepare_cached("SELECT count, at FROM sign_in_failures WHERE name = ?1")?
            .query_row([name], |r| {
                Ok((
                    u32::try_from(r.get::<_, i64>(0)?).unwrap_or(u32::MAX),
                    r.get(1)?,
                ))
            })
            .optional()?)
    }

    fn add_sign_in_failure(
        &mut self,
        name: &str,
        at: i64,
        reset_before: i64,
    ) -> Result<u32, StoreError> {
        let tx = self.transaction()?;
        tx.execute(
            "DELETE FROM sign_in_failures WHERE at < ?1 AND name <> ?2",
            params![reset_before, name],
        )?;
        let count: i64 = tx.query_row(
            "INSERT INTO sign_in_failures (name, count, at) VALUES (?1, 1, ?2)
             ON CONFLICT (name) DO UPDATE SET
               count = CASE WHEN sign_in_failures.at < ?3 THEN 1
                            ELSE sign_in_failures.count + 1 END,
               at = excluded.at
             RETURNING count",
            params![name, at, reset_before],
            |r| r.get(0),
        )?;
        tx.commit()?;
        Ok(u32::try_from(count).unwrap_or(u32::MAX))
    }

    fn clear_sign_in_failures(&mut self, name: &str) -> Result<(), StoreError> {
        self.connection()
            .execute("DELETE FROM sign_in_failures WHERE name = ?1", [name])?;
        Ok(())
    }
}

impl StatusStore for SqliteStore {
    fn put_status(&mut self, id: &str, body: &str, at: i64, keep: usize) -> Result<(), StoreError> {
        let tx = self.transaction()?;
        tx.execute(
            "INSERT INTO stix_statuses (id, body, created_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (id) DO UPDATE SET body = excluded.body",
            params![id, body, at],
        )?;
        tx.execute(
            "DELETE FROM stix_statuses
             WHERE n < (SELECT n FROM stix_statuses ORDER BY n DESC LIMIT 1 OFFSET ?1)",
            [i64::try_from(keep.max(1) - 1).unwrap_or(i64::MAX)],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn status(&self, id: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .connection()
            .prepare_cached("SELECT body FROM stix_statuses WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?)
    }
}

impl CaStore for SqliteStore {
    fn certificate_authority(&self) -> Result<Option<(String, String)>, StoreError> {
        Ok(self
            .connection()
            .query_row(
                "SELECT cert, sealed_key FROM certificate_authority WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    fn keep_certificate_authority(
        &mut self,
        cert_pem: &str,
        sealed_key: &str,
        at: i64,
    ) -> Result<(String, String), StoreError> {
        let tx = self.transaction()?;
        tx.execute(
            "INSERT INTO certificate_authority (id, cert, sealed_key, created_at)
             VALUES (1, ?1, ?2, ?3) ON CONFLICT (id) DO NOTHING",
            params![cert_pem, sealed_key, at],
        )?;
        let kept = tx.query_row(
            "SELECT cert, sealed_key FROM certificate_authority WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        tx.commit()?;
        Ok(kept)
    }
}
