//! Sandbox submissions and tasks in SQLite (migration 21).

use rusqlite::{OptionalExtension, Row, params};

use super::{Clauses, SqliteStore};
use crate::error::StoreError;
use crate::sandbox::{
    NewSubmission, SandboxStore, SandboxTask, SandboxUsage, SubmissionQuery, SubmissionRow, status,
};

const SUBMISSION: &str = "SELECT id, object, kind, submitter, created_at, updated_at, status,
    task_id, submitted_at, sha1, risk, threat_type, threat_name, error FROM sandbox_submissions";
const TASK: &str = "SELECT id, origin, kind, object, status, day, cached, created_at, updated_at,
    result FROM sandbox_tasks";

fn submission(r: &Row<'_>) -> rusqlite::Result<SubmissionRow> {
    Ok(SubmissionRow {
        id: r.get(0)?,
        object: r.get(1)?,
        kind: r.get(2)?,
        submitter: r.get(3)?,
        created_at: r.get(4)?,
        updated_at: r.get(5)?,
        status: r.get(6)?,
        task_id: r.get(7)?,
        submitted_at: r.get(8)?,
        sha1: r.get(9)?,
        risk: r.get(10)?,
        threat_type: r.get(11)?,
        threat_name: r.get(12)?,
        error: r.get(13)?,
    })
}

fn task(r: &Row<'_>) -> rusqlite::Result<SandboxTask> {
    Ok(SandboxTask {
        id: r.get(0)?,
        origin: r.get(1)?,
        kind: r.get(2)?,
        object: r.get(3)?,
        status: r.get(4)?,
        day: r.get(5)?,
        cached: r.get(6)?,
        created_at: r.get(7)?,
        updated_at: r.get(8)?,
        result: r.get(9)?,
    })
}

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl SandboxStore for SqliteStore {
    fn collect_submissions(&mut self, items: &[NewSubmission]) -> Result<u64, StoreError> {
        let now = self.now();
        let tx = self.transaction()?;
        let mut added = 0;
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO sandbox_submissions
                     (object, kind, submitter, created_at, updated_at, status)
                 VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
            )?;
            for i in items {
                added +=
                    insert.execute(params![i.object, i.kind, i.submitter, now, status::PENDING])?
                        as u64;
            }
        }
        tx.commit()?;
        Ok(added)
    }

    fn submissions_in(&self, status: &str, n: usize) -> Result<Vec<SubmissionRow>, StoreError> {
        let mut stmt = self.connection().prepare_cached(&format!(
            "{SUBMISSION} WHERE status = ?1 ORDER BY id LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![status, limit(n)], submission)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn submissions(&self, q: &SubmissionQuery) -> Result<Vec<SubmissionRow>, StoreError> {
        let before = if q.before > 0 { q.before } else { i64::MAX };
        let mut query = Clauses::new(&format!("{SUBMISSION} WHERE id < ?1"), vec![before.into()]);
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
            // Every `?` of the clause is the one parameter.
            query.push(
                " AND (object LIKE ? ESCAPE '\\' OR sha1 LIKE ? ESCAPE '\\'
                   OR threat_type LIKE ? ESCAPE '\\' OR threat_name LIKE ? ESCAPE '\\')",
                like,
            );
        }
        query.push(" ORDER BY id DESC LIMIT ?", limit(q.limit));
        let mut stmt = self.connection().prepare(&query.sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(query.args), submission)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn update_submission(&mut self, r: &SubmissionRow) -> Result<(), StoreError> {
        let now = self.now();
        self.connection().execute(
            "UPDATE sandbox_submissions SET updated_at = ?2, status = ?3, task_id = ?4,
                 submitted_at = ?5, sha1 = ?6, risk = ?7, threat_type = ?8, threat_name = ?9,
                 error = ?10
             WHERE id = ?1",
            params![
                r.id,
                now,
                r.status,
                r.task_id,
                r.submitted_at,
                r.sha1,
                r.risk,
                r.threat_type,
                r.threat_name,
                r.error
            ],
        )?;
        Ok(())
    }

    fn skip_pending_submissions(&mut self, reason: &str) -> Result<u64, StoreError> {
        let now = self.now();
        Ok(self.connection().execute(
            "UPDATE sandbox_submissions SET status = ?1, error = ?2, updated_at = ?3
             WHERE status = ?4",
            params![status::SKIPPED, reason, now, status::PENDING],
        )? as u64)
    }

    fn submission_counts(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let mut stmt = self.connection().prepare_cached(
            "SELECT status, count(*) FROM sandbox_submissions GROUP BY status ORDER BY status",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn add_sandbox_task(&mut self, t: &SandboxTask) -> Result<(), StoreError> {
        self.connection().execute(
            "INSERT INTO sandbox_tasks (id, origin, kind, object, status, day, cached,
                 created_at, updated_at, result)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                t.id,
                t.origin,
                t.kind,
                t.object,
                t.status,
                t.day,
                t.cached,
                t.created_at,
                t.updated_at,
                t.result
            ],
        )?;
        Ok(())
    }

    fn sandbox_task(&self, id: &str) -> Result<Option<SandboxTask>, StoreError> {
        Ok(self
            .connection()
            .prepare_cached(&format!("{TASK} WHERE id = ?1"))?
            .query_row([id], task)
            .optional()?)
    }

    fn sandbox_tasks_in(&self, status: &str, n: usize) -> Result<Vec<SandboxTask>, StoreError> {
        let mut stmt = self.connection().prepare_cached(&format!(
            "{TASK} WHERE status = ?1 ORDER BY created_at, id LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![status, limit(n)], task)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn update_sandbox_task(&mut self, t: &SandboxTask) -> Result<(), StoreError> {
        self.connection().execute(
            "UPDATE sandbox_tasks SET status = ?2, updated_at = ?3, result = ?4 WHERE id = ?1",
            params![t.id, t.status, t.updated_at, t.result],
        )?;
        Ok(())
    }

    fn analysed_since(&self, object: &str, since: i64) -> Result<Option<SandboxTask>, StoreError> {
        Ok(self
            .connection()
            .prepare_cached(&format!(
                "{TASK} WHERE object = ?1 AND updated_at >= ?2 AND status = 'succeeded'
                   AND cached = 0
                 ORDER BY updated_at DESC LIMIT 1"
            ))?
            .query_row(params![object, since], task)
            .optional()?)
    }

    fn sandbox_usage(&self, origin: &str, day: i64) -> Result<SandboxUsage, StoreError> {
        let mut stmt = self.connection().prepare_cached(
            "SELECT kind, cached OR status = 'failed', count(*) FROM sandbox_tasks
             WHERE origin = ?1 AND day = ?2 GROUP BY 1, 2",
        )?;
        let mut u = SandboxUsage::default();
        let rows = stmt.query_map(params![origin, day], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, bool>(1)?,
                r.get::<_, i64>(2)? as u64,
            ))
        })?;
        for row in rows {
            let (kind, exempt, n) = row?;
            match (kind.as_str(), exempt) {
                ("file", false) => u.files += n,
                ("file", true) => u.file_exemptions += n,
                (_, false) => u.urls += n,
                (_, true) => u.url_exemptions += n,
            }
        }
        Ok(u)
    }
}
