//! Console sessions, failed sign-ins, TAXII push statuses (migration 5) and the enrollment CA (6)
//! in PostgreSQL.

use super::{PgStore, prepared};
use crate::connections::CaStore;
use crate::error::StoreError;
use crate::sessions::{ConsoleSession, SessionStore, owner_columns, owner_of};
use crate::statuses::StatusStore;

impl SessionStore for PgStore {
    fn add_session(
        &mut self,
        session: &ConsoleSession,
        idle_before: i64,
        made_before: i64,
        most: usize,
    ) -> Result<(), StoreError> {
        let (user, stamp, key) = owner_columns(&session.owner);
        let most = i64::try_from(most).unwrap_or(i64::MAX);
        self.write(|tx, cache| {
            let expired = prepared(
                tx,
                cache,
                "DELETE FROM console_sessions WHERE last_at < $1 OR created_at < $2",
            )?;
            tx.execute(&expired, &[&idle_before, &made_before])?;
            let count: i64 = tx
                .query_one("SELECT count(*) FROM console_sessions", &[])?
                .get(0);
            let over = count.saturating_sub(most - 1);
            if over > 0 {
                tx.execute(
                    "DELETE FROM console_sessions WHERE digest IN
                       (SELECT digest FROM console_sessions ORDER BY last_at, digest LIMIT $1)",
                    &[&over],
                )?;
            }
            let insert = prepared(
                tx,
                cache,
                "INSERT INTO console_sessions
                   (digest, user_name, stamp, key_hash, csrf, created_at, last_at, flash)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )?;
            tx.execute(
                &insert,
                &[
                    &session.digest,
                    &user,
                    &stamp,
                    &key,
                    &session.csrf,
                    &session.created_at,
                    &session.last_at,
                    &session.flash,
                ],
            )?;
            Ok(())
        })
    }

    fn session(&self, digest: &[u8]) -> Result<Option<ConsoleSession>, StoreError> {
        let rows = self.rows(
            "SELECT digest, user_name, stamp, key_hash, csrf, created_at, last_at, flash
             FROM console_sessions WHERE digest = $1",
            &[&digest],
        )?;
        rows.first()
            .map(|r| {
                Ok(ConsoleSession {
                    digest: r.get(0),
                    owner: owner_of(r.get(1), r.get(2), r.get(3))?,
                    csrf: r.get(4),
                    created_at: r.get(5),
                    last_at: r.get(6),
                    flash: r.get(7),
                })
            })
            .transpose()
    }

    fn touch_session(&mut self, digest: &[u8], at: i64) -> Result<bool, StoreError> {
        Ok(self.execute(
            "UPDATE console_sessions SET last_at = greatest(last_at, $2) WHERE digest = $1",
            &[&digest, &at],
        )? > 0)
    }

    fn set_session_flash(
        &mut self,
        digest: &[u8],
        flash: Option<&str>,
    ) -> Result<bool, StoreError> {
        Ok(self.execute(
            "UPDATE console_sessions SET flash = $2 WHERE digest = $1",
            &[&digest, &flash],
        )? > 0)
    }

    fn delete_session(&mut self, digest: &[u8]) -> Result<bool, StoreError> {
        Ok(self.execute("DELETE FROM console_sessions WHERE digest = $1", &[&digest])? > 0)
    }

    fn delete_user_sessions(&mut self, name: &str) -> Result<u64, StoreError> {
        self.execute(
            "DELETE FROM console_sessions WHERE user_name = $1",
            &[&name],
        )
    }

    fn sign_in_failures(&self, name: &str) -> Result<Option<(u32, i64)>, StoreError> {
        Ok(self
            .rows(
                "SELECT count, at FROM sign_in_failures WHERE name = $1",
                &[&name],
            )?
            .first()
            .map(|r| {
                (
                    u32::try_from(r.get::<_, i64>(0)).unwrap_or(u32::MAX),
                    r.get(1),
                )
            }))
    }

    fn add_sign_in_failure(
        &mut self,
        name: &str,
        at: i64,
        reset_before: i64,
    ) -> Result<u32, StoreError> {
        self.write(|tx, cache| {
            let old = prepared(
                tx,
                cache,
                "DELETE FROM sign_in_failures WHERE at < $1 AND name <> $2",
            )?;
            tx.execute(&old, &[&reset_before, &name])?;
            let add = prepared(
                tx,
                cache,
                "INSERT INTO sign_in_failures (name, count, at) VALUES ($1, 1, $2)
                 ON CONFLICT (name) DO UPDATE SET
                   count = CASE WHEN sign_in_failures.at < $3 THEN 1
                                ELSE sign_in_failures.count + 1 END,
                   at = excluded.at
                 RETURNING count",
            )?;
            let count: i64 = tx.query_one(&add, &[&name, &at, &reset_before])?.get(0);
            Ok(u32::try_from(count).unwrap_or(u32::MAX))
        })
    }

    fn clear_sign_in_failures(&mut self, name: &str) -> Result<(), StoreError> {
        self.execute("DELETE FROM sign_in_failures WHERE name = $1", &[&name])?;
        Ok(())
    }
}

impl StatusStore for PgStore {
    fn put_status(&mut self, id: &str, body: &str, at: i64, keep: usize) -> Result<(), StoreError> {
        let offset = i64::try_from(keep.max(1) - 1).unwrap_or(i64::MAX);
        self.write(|tx, cache| {
            let put = prepared(
                tx,
                cache,
                "INSERT INTO stix_statuses (id, body, created_at) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO UPDATE SET body = excluded.body",
            )?;
            tx.execute(&put, &[&id, &body, &at])?;
            let trim = prepared(
                tx,
                cache,
                "DELETE FROM stix_statuses
                 WHERE n < (SELECT n FROM stix_statuses ORDER BY n DESC LIMIT 1 OFFSET $1)",
            )?;
            tx.execute(&trim, &[&offset])?;
            Ok(())
        })
    }

    fn status(&self, id: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .rows("SELECT body FROM stix_statuses WHERE id = $1", &[&id])?
            .first()
            .map(|r| r.get(0)))
    }
}

impl CaStore for PgStore {
    fn certificate_authority(&self) -> Result<Option<(String, String)>, StoreError> {
        Ok(self
            .rows(
                "SELECT cert, sealed_key FROM certificate_authority WHERE id = 1",
                &[],
            )?
            .first()
            .map(|r| (r.get(0), r.get(1))))
    }

    fn keep_certificate_authority(
        &mut self,
        cert_pem: &str,
        sealed_key: &str,
        at: i64,
    ) -> Result<(String, String), StoreError> {
        self.write(|tx, _| {
            tx.execute(
                "INSERT INTO certificate_authority (id, cert, sealed_key, created_at)
                 VALUES (1, $1, $2, $3) ON CONFLICT (id) DO NOTHING",
                &[&cert_pem, &sealed_key, &at],
            )?;
            let r = tx.query_one(
                "SELECT cert, sealed_key FROM certificate_authority WHERE id = 1",
                &[],
            )?;
            Ok((r.get(0), r.get(1)))
        })
    }
}
