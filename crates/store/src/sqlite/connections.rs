//! Enrollment tokens, downstreams and their certificates in SQLite.

use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use crate::connections::{
    ActiveCertificate, ConnectionStore, Deployment, Downstream, EnrollmentToken,
};
use crate::error::StoreError;

const TOKEN_COLUMNS: &str = "id, name, hash, created_at, expires_at, used_at, revoked_at";

fn token(r: &rusqlite::Row<'_>) -> rusqlite::Result<EnrollmentToken> {
    Ok(EnrollmentToken {
        id: r.get(0)?,
        name: r.get(1)?,
        hash: r.get(2)?,
        created_at: r.get(3)?,
        expires_at: r.get(4)?,
        used_at: r.get(5)?,
        revoked_at: r.get(6)?,
    })
}

/// A downstream with its newest certificate.
const DOWNSTREAM: &str = "SELECT d.id, d.name, d.address, d.enrolled_at, c.serial, c.not_after, \
     d.revoked_at, d.sandbox FROM downstreams d JOIN downstream_certificates c ON c.id = \
     (SELECT max(id) FROM downstream_certificates WHERE downstream_id = d.id)";

fn downstream(r: &rusqlite::Row<'_>) -> rusqlite::Result<Downstream> {
    Ok(Downstream {
        id: r.get(0)?,
        name: r.get(1)?,
        address: r.get(2)?,
        enrolled_at: r.get(3)?,
        serial: r.get(4)?,
        not_after: r.get(5)?,
        revoked_at: r.get(6)?,
        sandbox: r.get(7)?,
    })
}

impl ConnectionStore for SqliteStore {
    fn add_enrollment_token(
        &mut self,
        name: &str,
        hash: &[u8],
        expires_at: i64,
    ) -> Result<EnrollmentToken, StoreError> {
        let now = self.now();
        let tx = self.transaction()?;
        let exists: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM enrollment_tokens WHERE hash = ?1)",
            [hash],
            |r| r.get(0),
        )?;
        if exists {
            return Err(StoreError::Conflict("enrollment token".into()));
        }
        tx.execute(
            "INSERT INTO enrollment_tokens (name, hash, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
            params![name, hash, now, expires_at],
        )?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(EnrollmentToken {
            id,
            name: name.to_string(),
            hash: hash.to_vec(),
            created_at: now,
            expires_at,
            used_at: None,
            revoked_at: None,
        })
    }

    fn enrollment_tokens(&self) -> Result<Vec<EnrollmentToken>, StoreError> {
        let mut stmt = self.connection().prepare(&format!(
            "SELECT {TOKEN_COLUMNS} FROM enrollment_tokens ORDER BY id"
        ))?;
        let rows = stmt.query_map([], token)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn revoke_enrollment_token(&mut self, id: i64) -> Result<bool, StoreError> {
        let now = self.now();
        let tx = self.transaction()?;
        let n = tx.execute(
            "UPDATE enrollment_tokens SET revoked_at = ?2
             WHERE id = ?1 AND used_at IS NULL AND revoked_at IS NULL",
            params![id, now],
        )?;
        tx.commit()?;
        Ok(n > 0)
    }

    fn enrollment_token_by_hash(&self, hash: &[u8]) -> Result<Option<EnrollmentToken>, StoreError> {
        Ok(self
            .connection()
            .prepare_cached(&format!(
                "SELECT {TOKEN_COLUMNS} FROM enrollment_tokens WHERE hash = ?1"
            ))?
            .query_row([hash], token)
            .optional()?)
    }

    fn enroll(
        &mut self,
        token_id: i64,
        address: Option<&str>,
        serial: &[u8],
        not_after: i64,
    ) -> Result<Downstream, StoreError> {
        let now = self.now();
        let tx = self.transaction()?;
        let name: Option<String> = tx
            .query_row(
                "UPDATE enrollment_tokens SET used_at = ?2
                 WHERE id = ?1 AND used_at IS NULL AND revoked_at IS NULL RETURNING name",
                params![token_id, now],
                |r| r.get(0),
            )
            .optional()?;
        let Some(name) = name else {
            return Err(StoreError::Conflict(
                "enrollment token already used or revoked".into(),
            ));
        };
        // A reconnection (a new token for the same name) keeps the downstream's id.
        tx.execute(
            "INSERT INTO downstreams (name, address, enrolled_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO UPDATE SET address = excluded.address,
                 enrolled_at = excluded.enrolled_at, revoked_at = NULL",
            params![name, address, now],
        )?;
        let id: i64 = tx.query_row("SELECT id FROM downstreams WHERE name = ?1", [&name], |r| {
            r.get(0)
        })?;
        tx.execute(
            "INSERT INTO downstream_certificates (downstream_id, serial, issued_at, not_after)
             VALUES (?1, ?2, ?3, ?4)",
            params![id, serial, now, not_after],
        )?;
        let d = tx.query_row(&format!("{DOWNSTREAM} WHERE d.id = ?1"), [id], downstream)?;
        tx.commit()?;
        Ok(d)
    }

    fn downstreams(&self) -> Result<Vec<Downstream>, StoreError> {
        let mut stmt = self
            .connection()
            .prepare(&format!("{DOWNSTREAM} ORDER BY d.name"))?;
        let rows = stmt.query_map([], downstream)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn revoke_downstream(&mut self, id: i64) -> Result<bool, StoreError> {
        let now = self.now();
        let tx = self.transaction()?;
        let n = tx.execute(
            "UPDATE downstreams SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
            params![id, now],
        )?;
        tx.execute(
            "UPDATE downstream_certificates SET revoked_at = ?2
             WHERE downstream_id = ?1 AND revoked_at IS NULL",
            params![id, now],
        )?;
        tx.commit()?;
        Ok(n > 0)
    }

    fn add_certificate(
        &mut self,
        downstream_id: i64,
        serial: &[u8],
        not_after: i64,
    ) -> Result<(), StoreError> {
        let now = self.now();
        let tx = self.transaction()?;
        let active: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM downstreams WHERE id = ?1 AND revoked_at IS NULL)",
            [downstream_id],
            |r| r.get(0),
        )?;
        if !active {
            return Err(StoreError::NotFound(format!("downstream {downstream_id}")));
        }
        tx.execute(
            "INSERT INTO downstream_certificates (downstream_id, serial, issued_at, not_after)
             VALUES (?1, ?2, ?3, ?4)",
            params![downstream_id, serial, now, not_after],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn active_certificates(&self, now: i64) -> Result<Vec<ActiveCertificate>, StoreError> {
        let mut stmt = self.connection().prepare(
            "SELECT c.serial, d.id, d.name, c.not_after FROM downstream_certificates c
             JOIN downstreams d ON d.id = c.downstream_id
             WHERE c.revoked_at IS NULL AND d.revoked_at IS NULL AND c.not_after > ?1
             ORDER BY c.id",
        )?;
        let rows = stmt.query_map([now], |r| {
            Ok(ActiveCertificate {
                serial: r.get(0)?,
                downstream_id: r.get(1)?,
                downstream: r.get(2)?,
                not_after: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn set_downstream_sandbox(&mut self, id: i64, on: bool) -> Result<bool, StoreError> {
        let tx = self.transaction()?;
        let n = tx.execute(
            "UPDATE downstreams SET sandbox = ?2 WHERE id = ?1",
            params![id, on],
        )?;
        tx.commit()?;
        Ok(n > 0)
    }

    fn connection_features(&self) -> Result<Vec<(String, bool)>, StoreError> {
        let mut stmt = self
            .connection()
            .prepare("SELECT feature, enabled FROM connection_features ORDER BY feature")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn set_connection_features(&mut self, features: &[(String, bool)]) -> Result<(), StoreError> {
        let now = self.now();
        let tx = self.transaction()?;
        for (feature, on) in features {
            tx.execute(
                "INSERT INTO connection_features (feature, enabled, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (feature) DO UPDATE SET enabled = excluded.enabled,
                     updated_at = excluded.updated_at",
                params![feature, on, now],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn add_deployment(&mut self, downstream_id: i64, request: &str) -> Result<i64, StoreError> {
        let now = self.now();
        let tx = self.transaction()?;
        let known: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM downstreams WHERE id = ?1)",
            [downstream_id],
            |r| r.get(0),
        )?;
        if !known {
            return Err(StoreError::NotFound(format!("downstream {downstream_id}")));
        }
        tx.execute(
            "INSERT INTO deployments (downstream_id, request, status, created_at)
             VALUES (?1, ?2, 'pending', ?3)",
            params![downstream_id, request, now],
        )?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(id)
    }

    fn deployments(
        &self,
        downstream_id: i64,
        pending_only: bool,
    ) -> Result<Vec<Deployment>, StoreError> {
        let mut stmt = self.connection().prepare(
            "SELECT id, downstream_id, request, status, created_at, done_at, result
             FROM deployments WHERE downstream_id = ?1 AND (?2 = 0 OR status = 'pending')
             ORDER BY id DESC",
        )?;
        let rows = stmt.query_map(params![downstream_id, pending_only], |r| {
            Ok(Deployment {
                id: r.get(0)?,
                downstream_id: r.get(1)?,
                request: r.get(2)?,
                status: r.get(3)?,
                created_at: r.get(4)?,
                done_at: r.get(5)?,
                result: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn finish_deployment(
        &mut self,
        id: i64,
        downstream_id: i64,
        applied: bool,
        result: &str,
    ) -> Result<bool, StoreError> {
        let now = self.now();
        let tx = self.transaction()?;
        let n = tx.execute(
            "UPDATE deployments SET status = ?3, done_at = ?4, result = ?5
             WHERE id = ?1 AND downstream_id = ?2 AND status = 'pending'",
            params![
                id,
                downstream_id,
                if applied { "applied" } else { "failed" },
                now,
                result
            ],
        )?;
        tx.commit()?;
        Ok(n > 0)
    }
}
