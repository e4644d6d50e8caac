//! Sandbox submissions and tasks in PostgreSQL (migration 2).

use postgres::Row;

use super::{Clauses, PgStore, prepared};
use crate::error::StoreError;
use crate::sandbox::{
    NewSubmission, SandboxStore, SandboxTask, SandboxUsage, SubmissionQuery, SubmissionRow, status,
};

/// `SELECT` of a submission's columns, then `$tail`.
macro_rules! submission_sql {
    ($tail:literal) => {
        concat!(
            "SELECT id, object, kind, submitter, created_at, updated_at, status, task_id,
                    submitted_at, sha1, risk, threat_type, threat_name, error
             FROM sandbox_submissions ",
            $tail
        )
    };
}

/// `SELECT` of a task's columns, then `$tail`.
macro_rules! task_sql {
    ($tail:literal) => {
        concat!(
            "SELECT id, origin, kind, object, status, day, cached, created_at, updated_at, result
             FROM sandbox_tasks ",
            $tail
        )
    };
}

fn submission(r: &Row) -> SubmissionRow {
    SubmissionRow {
        id: r.get(0),
        object: r.get(1),
        kind: r.get(2),
        submitter: r.get(3),
        created_at: r.get(4),
        updated_at: r.get(5),
        status: r.get(6),
        task_id: r.get(7),
        submitted_at: r.get(8),
        sha1: r.get(9),
        risk: r.get(10),
        threat_type: r.get(11),
        threat_name: r.get(12),
        error: r.get(13),
    }
}

fn task(r: &Row) -> SandboxTask {
    SandboxTask {
        id: r.get(0),
        origin: r.get(1),
        kind: r.get(2),
        object: r.get(3),
        status: r.get(4),
        day: r.get(5),
        cached: r.get(6),
        created_at: r.get(7),
        updated_at: r.get(8),
        result: r.get(9),
    }
}

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Objects inserted per statement (one round trip each, arrays as parameters).
const CHUNK: usize = 5_000;

impl SandboxStore for PgStore {
    fn collect_submissions(&mut self, items: &[NewSubmission]) -> Result<u64, StoreError> {
        if items.is_empty() {
            return Ok(0);
        }
        let now = self.now();
        self.write(|tx, cache| {
            // In the order given, so an object seen twice keeps its first submitter (ON CONFLICT
            // also skips a duplicate of a row this statement inserted, and a concurrent writer's).
            let insert = prepared(
                tx,
                cache,
                "INSERT INTO sandbox_submissions
                     (object, kind, submitter, created_at, updated_at, status)
                 SELECT t.object, t.kind, t.submitter, $1, $1, $2
                 FROM unnest($3::text[], $4::text[], $5::text[]) WITH ORDINALITY
                     AS t(object, kind, submitter, n)
                 ORDER BY t.n
                 ON CONFLICT (object) DO NOTHING",
            )?;
            let mut added = 0;
            for chunk in items.chunks(CHUNK) {
                let objects: Vec<&str> = chunk.iter().map(|i| i.object.as_str()).collect();
                let kinds: Vec<&str> = chunk.iter().map(|i| i.kind.as_str()).collect();
                let by: Vec<&str> = chunk.iter().map(|i| i.submitter.as_str()).collect();
                added += tx.execute(&insert, &[&now, &status::PENDING, &objects, &kinds, &by])?;
            }
            Ok(added)
        })
    }

    fn submissions_in(&self, status: &str, n: usize) -> Result<Vec<SubmissionRow>, StoreError> {
        let rows = self.rows(
            submission_sql!("WHERE status = $1 ORDER BY id LIMIT $2"),
            &[&status, &limit(n)],
        )?;
        Ok(rows.iter().map(submission).collect())
    }

    fn submissions(&self, q: &SubmissionQuery) -> Result<Vec<SubmissionRow>, StoreError> {
        let before = if q.before > 0 { q.before } else { i64::MAX };
        let mut query = Clauses::new(submission_sql!("WHERE id < $1"), vec![Box::new(before)]);
        for (clause, v) in [
            (" AND status = ?", &q.status),
            (" AND risk = ?", &q.risk),
            (" AND submitter = ?", &q.submitter),
        ] {
            if let Some(v) = v {
                query.push(clause, v.clone());
            }
        }
        if let Some(t) = &q.text {
            let like = format!(
                "%{}%",
                t.replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_")
            );
            // Every `?` of the clause is the one parameter. ILIKE: SQLite's LIKE ignores case.
            query.push(
                " AND (object ILIKE ? ESCAPE '\\' OR sha1 ILIKE ? ESCAPE '\\'
                   OR threat_type ILIKE ? ESCAPE '\\' OR threat_name ILIKE ? ESCAPE '\\')",
                like,
            );
        }
        query.push(" ORDER BY id DESC LIMIT ?", limit(q.limit));
        let rows = self.snapshot(|tx, _| Ok(tx.query(query.sql.as_str(), &query.params())?))?;
        Ok(rows.iter().map(submission).collect())
    }

    fn update_submission(&mut self, r: &SubmissionRow) -> Result<(), StoreError> {
        let now = self.now();
        self.execute(
            "UPDATE sandbox_submissions SET updated_at = $2, status = $3, task_id = $4,
                 submitted_at = $5, sha1 = $6, risk = $7, threat_type = $8, threat_name = $9,
                 error = $10
             WHERE id = $1",
            &[
                &r.id,
                &now,
                &r.status,
                &r.task_id,
                &r.submitted_at,
                &r.sha1,
                &r.risk,
                &r.threat_type,
                &r.threat_name,
                &r.error,
            ],
        )?;
        Ok(())
    }

    fn skip_pending_submissions(&mut self, reason: &str) -> Result<u64, StoreError> {
        let now = self.now();
        self.execute(
            "UPDATE sandbox_submissions SET status = $1, error = $2, updated_at = $3
             WHERE status = $4",
            &[&status::SKIPPED, &reason, &now, &status::PENDING],
        )
    }

    fn submission_counts(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let rows = self.rows(
            "SELECT status, count(*) FROM sandbox_submissions
             GROUP BY status ORDER BY status COLLATE \"C\"",
            &[],
        )?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get::<_, i64>(1) as u64))
            .collect())
    }

    fn add_sandbox_task(&mut self, t: &SandboxTask) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO sandbox_tasks (id, origin, kind, object, status, day, cached,
                 created_at, updated_at, result)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            &[
                &t.id,
                &t.origin,
                &t.kind,
                &t.object,
                &t.status,
                &t.day,
                &t.cached,
                &t.created_at,
                &t.updated_at,
                &t.result,
            ],
        )?;
        Ok(())
    }

    fn sandbox_task(&self, id: &str) -> Result<Option<SandboxTask>, StoreError> {
        let rows = self.rows(task_sql!("WHERE id = $1"), &[&id])?;
        Ok(rows.first().map(task))
    }

    fn sandbox_tasks_in(&self, status: &str, n: usize) -> Result<Vec<SandboxTask>, StoreError> {
        let rows = self.rows(
            task_sql!("WHERE status = $1 ORDER BY created_at, id COLLATE \"C\" LIMIT $2"),
            &[&status, &limit(n)],
        )?;
        Ok(rows.iter().map(task).collect())
    }

    fn update_sandbox_task(&mut self, t: &SandboxTask) -> Result<(), StoreError> {
        self.execute(
            "UPDATE sandbox_tasks SET status = $2, updated_at = $3, result = $4 WHERE id = $1",
            &[&t.id, &t.status, &t.updated_at, &t.result],
        )?;
        Ok(())
    }

    fn analysed_since(&self, object: &str, since: i64) -> Result<Option<SandboxTask>, StoreError> {
        // Ties of `updated_at` (SQLite: the row inserted last) go to the task created last.
        let rows = self.rows(
            task_sql!(
                "WHERE object = $1 AND updated_at >= $2 AND status = 'succeeded' AND NOT cached
                 ORDER BY updated_at DESC, created_at DESC, id COLLATE \"C\" DESC LIMIT 1"
            ),
            &[&object, &since],
        )?;
        Ok(rows.first().map(task))
    }

    fn sandbox_usage(&self, origin: &str, day: i64) -> Result<SandboxUsage, StoreError> {
        let rows = self.rows(
            "SELECT kind, cached OR status = 'failed', count(*) FROM sandbox_tasks
             WHERE origin = $1 AND day = $2 GROUP BY 1, 2",
            &[&origin, &day],
        )?;
        let mut u = SandboxUsage::default();
        for r in &rows {
            let kind: &str = r.get(0);
            let exempt: bool = r.get(1);
            let n = r.get::<_, i64>(2) as u64;
            match (kind, exempt) {
                ("file", false) => u.files += n,
                ("file", true) => u.file_exemptions += n,
                (_, false) => u.urls += n,
                (_, true) => u.url_exemptions += n,
            }
        }
        Ok(u)
    }
}
