//! Enrollment tokens, downstreams and their certificates, connection features and deployments in
//! PostgreSQL (migration 2).

use postgres::Row;

use super::{PgStore, prepared};
use crate::connections::{
    ActiveCertificate, ConnectionStore, Deployment, Downstream, EnrollmentToken,
};
use crate::error::StoreError;

/// `SELECT` of a token's columns, then `$tail`.
macro_rules! token_sql {
    ($tail:literal) => {
        concat!(
            "SELECT id, name, hash, created_at, expires_at, used_at, revoked_at
             FROM enrollment_tokens ",
            $tail
        )
    };
}

/// A downstream with its newest certificate, then `$tail`.
macro_rules! downstream_sql {
    ($tail:literal) => {
        concat!(
            "SELECT d.id, d.name, d.address, d.enrolled_at, c.serial, c.not_after, d.revoked_at,
                    d.sandbox
             FROM downstreams d JOIN downstream_certificates c ON c.id =
                 (SELECT max(id) FROM downstream_certificates WHERE downstream_id = d.id) ",
            $tail
        )
    };
}

fn token(r: &Row) -> EnrollmentToken {
    EnrollmentToken {
        id: r.get(0),
        name: r.get(1),
        hash: r.get(2),
        created_at: r.get(3),
        expires_at: r.get(4),
        used_at: r.get(5),
        revoked_at: r.get(6),
    }
}

fn downstream(r: &Row) -> Downstream {
    Downstream {
        id: r.get(0),
        name: r.get(1),
        address: r.get(2),
        enrolled_at: r.get(3),
        serial: r.get(4),
        not_after: r.get(5),
        revoked_at: r.get(6),
        sandbox: r.get(7),
    }
}

const INSERT_CERTIFICATE: &str =
    "INSERT INTO downstream_certificates (downstream_id, serial, issued_at, not_after)
     VALUES ($1, $2, $3, $4)";

impl ConnectionStore for PgStore {
    fn add_enrollment_token(
        &mut self,
        name: &str,
        hash: &[u8],
        expires_at: i64,
    ) -> Result<EnrollmentToken, StoreError> {
        let now = self.now();
        // One statement: a concurrent writer of the same hash cannot slip between check and insert.
        let rows = self.rows(
            "INSERT INTO enrollment_tokens (name, hash, created_at, expires_at)
             VALUES ($1, $2, $3, $4) ON CONFLICT (hash) DO NOTHING RETURNING id",
            &[&name, &hash, &now, &expires_at],
        )?;
        let Some(row) = rows.first() else {
            return Err(StoreError::Conflict("enrollment token".into()));
        };
        Ok(EnrollmentToken {
            id: row.get(0),
            name: name.to_string(),
            hash: hash.to_vec(),
            created_at: now,
            expires_at,
            used_at: None,
            revoked_at: None,
        })
    }

    fn enrollment_tokens(&self) -> Result<Vec<EnrollmentToken>, StoreError> {
        let rows = self.rows(token_sql!("ORDER BY id"), &[])?;
        Ok(rows.iter().map(token).collect())
    }

    fn revoke_enrollment_token(&mut self, id: i64) -> Result<bool, StoreError> {
        let now = self.now();
        let n = self.execute(
            "UPDATE enrollment_tokens SET revoked_at = $2
             WHERE id = $1 AND used_at IS NULL AND revoked_at IS NULL",
            &[&id, &now],
        )?;
        Ok(n > 0)
    }

    fn enrollment_token_by_hash(&self, hash: &[u8]) -> Result<Option<EnrollmentToken>, StoreError> {
        let rows = self.rows(token_sql!("WHERE hash = $1"), &[&hash])?;
        Ok(rows.first().map(token))
    }

    fn enroll(
        &mut self,
        token_id: i64,
        address: Option<&str>,
        serial: &[u8],
        not_after: i64,
    ) -> Result<Downstream, StoreError> {
        let now = self.now();
        self.write(|tx, cache| {
            // The conditional update is the check: of two concurrent enrollments with one token,
            // the second waits for the first's row lock, then finds the token used.
            let row = tx.query_opt(
                "UPDATE enrollment_tokens SET used_at = $2
                 WHERE id = $1 AND used_at IS NULL AND revoked_at IS NULL RETURNING name",
                &[&token_id, &now],
            )?;
            let Some(row) = row else {
                return Err(StoreError::Conflict(
                    "enrollment token already used or revoked".into(),
                ));
            };
            let name: String = row.get(0);
            // A reconnection (a new token for the same name) keeps the downstream's id.
            let id: i64 = tx
                .query_one(
                    "INSERT INTO downstreams (name, address, enrolled_at) VALUES ($1, $2, $3)
                     ON CONFLICT (name) DO UPDATE SET address = excluded.address,
                         enrolled_at = excluded.enrolled_at, revoked_at = NULL
                     RETURNING id",
                    &[&name, &address, &now],
                )?
                .get(0);
            let insert = prepared(tx, cache, INSERT_CERTIFICATE)?;
            tx.execute(&insert, &[&id, &serial, &now, &not_after])?;
            let row = tx.query_one(downstream_sql!("WHERE d.id = $1"), &[&id])?;
            Ok(downstream(&row))
        })
    }

    fn downstreams(&self) -> Result<Vec<Downstream>, StoreError> {
        // Byte order, as SQLite sorts text.
        let rows = self.rows(downstream_sql!("ORDER BY d.name COLLATE \"C\""), &[])?;
        Ok(rows.iter().map(downstream).collect())
    }

    fn revoke_downstream(&mut self, id: i64) -> Result<bool, StoreError> {
        let now = self.now();
        self.write(|tx, _| {
            let n = tx.execute(
                "UPDATE downstreams SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
                &[&id, &now],
            )?;
            tx.execute(
                "UPDATE downstream_certificates SET revoked_at = $2
                 WHERE downstream_id = $1 AND revoked_at IS NULL",
                &[&id, &now],
            )?;
            Ok(n > 0)
        })
    }

    fn add_certificate(
        &mut self,
        downstream_id: i64,
        serial: &[u8],
        not_after: i64,
    ) -> Result<(), StoreError> {
        let now = self.now();
        self.write(|tx, cache| {
            // FOR SHARE holds off a concurrent revocation until this certificate is committed,
            // so the revocation then retires it too (and one already committed is seen here).
            let active = tx.query_opt(
                "SELECT 1 FROM downstreams WHERE id = $1 AND revoked_at IS NULL FOR SHARE",
                &[&downstream_id],
            )?;
            if active.is_none() {
                return Err(StoreError::NotFound(format!("downstream {downstream_id}")));
            }
            let insert = prepared(tx, cache, INSERT_CERTIFICATE)?;
            tx.execute(&insert, &[&downstream_id, &serial, &now, &not_after])?;
            Ok(())
        })
    }

    fn active_certificates(&self, now: i64) -> Result<Vec<ActiveCertificate>, StoreError> {
        let rows = self.rows(
            "SELECT c.serial, d.id, d.name, c.not_after FROM downstream_certificates c
             JOIN downstreams d ON d.id = c.downstream_id
             WHERE c.revoked_at IS NULL AND d.revoked_at IS NULL AND c.not_after > $1
             ORDER BY c.id",
            &[&now],
        )?;
        Ok(rows
            .iter()
            .map(|r| ActiveCertificate {
                serial: r.get(0),
                downstream_id: r.get(1),
                downstream: r.get(2),
                not_after: r.get(3),
            })
            .collect())
    }

    fn set_downstream_sandbox(&mut self, id: i64, on: bool) -> Result<bool, StoreError> {
        let n = self.execute(
            "UPDATE downstreams SET sandbox = $2 WHERE id = $1",
            &[&id, &on],
        )?;
        Ok(n > 0)
    }

    fn add_deployment(&mut self, downstream_id: i64, request: &str) -> Result<i64, StoreError> {
        let now = self.now();
        // Downstreams are never deleted: the check and the insert in one statement suffice.
        let rows = self.rows(
            "INSERT INTO deployments (downstream_id, request, status, created_at)
             SELECT $1, $2, 'pending', $3
             WHERE EXISTS (SELECT 1 FROM downstreams WHERE id = $1)
             RETURNING id",
            &[&downstream_id, &request, &now],
        )?;
        rows.first()
            .map(|r| r.get(0))
            .ok_or_else(|| StoreError::NotFound(format!("downstream {downstream_id}")))
    }

    fn deployments(
        &self,
        downstream_id: i64,
        pending_only: bool,
    ) -> Result<Vec<Deployment>, StoreError> {
        let rows = self.rows(
            "SELECT id, downstream_id, request, status, created_at, done_at, result
             FROM deployments WHERE downstream_id = $1 AND (NOT $2 OR status = 'pending')
             ORDER BY id DESC",
            &[&downstream_id, &pending_only],
        )?;
        Ok(rows
            .iter()
            .map(|r| Deployment {
                id: r.get(0),
                downstream_id: r.get(1),
                request: r.get(2),
                status: r.get(3),
                created_at: r.get(4),
                done_at: r.get(5),
                result: r.get(6),
            })
            .collect())
    }

    fn finish_deployment(
        &mut self,
        id: i64,
        downstream_id: i64,
        applied: bool,
        result: &str,
    ) -> Result<bool, StoreError> {
        let now = self.now();
        let status = if applied { "applied" } else { "failed" };
        let n = self.execute(
            "UPDATE deployments SET status = $3, done_at = $4, result = $5
             WHERE id = $1 AND downstream_id = $2 AND status = 'pending'",
            &[&id, &downstream_id, &status, &now, &result],
        )?;
        Ok(n > 0)
    }

    fn connection_features(&self) -> Result<Vec<(String, bool)>, StoreError> {
        let rows = self.rows(
            "SELECT feature, enabled FROM connection_features ORDER BY feature COLLATE \"C\"",
            &[],
        )?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    fn set_connection_features(&mut self, features: &[(String, bool)]) -> Result<(), StoreError> {
        let now = self.now();
        self.write(|tx, cache| {
            let upsert = prepared(
                tx,
                cache,
                "INSERT INTO connection_features (feature, enabled, updated_at)
                 VALUES ($1, $2, $3)
                 ON CONFLICT (feature) DO UPDATE SET enabled = excluded.enabled,
                     updated_at = excluded.updated_at",
            )?;
            for (feature, on) in features {
                tx.execute(&upsert, &[feature, on, &now])?;
            }
            Ok(())
        })
    }
}
