//! Filters, profiles, devices and events in SQLite.

use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use super::error::unique;
use crate::dist::{
    DeviceProgress, DeviceRow, DistributionStore, EventQuery, EventRow, FilterRow, KeptRollout,
    NewEvent, ProfileRow,
};
use crate::error::StoreError;

fn device(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeviceRow> {
    Ok(DeviceRow {
        id: r.get(0)?,
        name: r.get(1)?,
        token_hash: r.get(2)?,
        profile_id: r.get(3)?,
        applied_cursor: r.get::<_, i64>(4)? as u64,
        last_seen: r.get(5)?,
        created_at: r.get(6)?,
        last_error: r.get(7)?,
        report: r.get(8)?,
        reported_at: r.get(9)?,
        sensor: r.get(10)?,
    })
}

const DEVICE_COLUMNS: &str = "id, name, token_hash, profile_id, applied_cursor, last_seen, created_at, last_error, report, reported_at, sensor";

impl DistributionStore for SqliteStore {
    fn filters(&self) -> Result<Vec<FilterRow>, StoreError> {
        let conn = self.connection();
        let mut stmt =
            conn.prepare("SELECT id, name, definition, updated_at FROM filters ORDER BY id")?;
        let rows = stmt.query_map([], |r| {
            Ok(FilterRow {
                id: r.get(0)?,
                name: r.get(1)?,
                definition: r.get(2)?,
                updated_at: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn put_filter(&mut self, id: i64, name: &str, definition: &str) -> Result<i64, StoreError> {
        let now = self.now();
        let conn = self.connection();
        let what = || format!("filter {name:?}");
        if id == 0 {
            conn.execute(
                "INSERT INTO filters (name, definition, updated_at) VALUES (?1, ?2, ?3)",
                params![name, definition, now],
            )
            .map_err(|e| unique(e, what()))?;
            return Ok(conn.last_insert_rowid());
        }
        conn.execute(
            "UPDATE filters SET name = ?2, definition = ?3, updated_at = ?4 WHERE id = ?1",
            params![id, name, definition, now],
        )
        .map_err(|e| unique(e, what()))?;
        Ok(id)
    }

    fn delete_filter(&mut self, id: i64) -> Result<bool, StoreError> {
        Ok(self
            .connection()
            .execute("DELETE FROM filters WHERE id = ?1", [id])?
            > 0)
    }

    fn profiles(&self) -> Result<Vec<ProfileRow>, StoreError> {
        let conn = self.connection();
        let mut stmt =
            conn.prepare("SELECT id, name, filters, updated_at FROM profiles ORDER BY id")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, name, filters, updated_at) = row?;
            let filters: Vec<i64> = serde_json::from_str(&filters)
                .map_err(|e| StoreError::Corrupt(format!("profile {name:?}: {e}")))?;
            out.push(ProfileRow {
                id,
                name,
                filters,
                updated_at,
            });
        }
        Ok(out)
    }

    fn put_profile(&mut self, id: i64, name: &str, filters: &[i64]) -> Result<i64, StoreError> {
        let now = self.now();
        let list =
            serde_json::to_string(filters).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let conn = self.connection();
        let what = || format!("profile {name:?}");
        if id == 0 {
            conn.execute(
                "INSERT INTO profiles (name, filters, updated_at) VALUES (?1, ?2, ?3)",
                params![name, list, now],
            )
            .map_err(|e| unique(e, what()))?;
            return Ok(conn.last_insert_rowid());
        }
        conn.execute(
            "UPDATE profiles SET name = ?2, filters = ?3, updated_at = ?4 WHERE id = ?1",
            params![id, name, list, now],
        )
        .map_err(|e| unique(e, what()))?;
        Ok(id)
    }

    fn delete_profile(&mut self, id: i64) -> Result<bool, StoreError> {
        let conn = self.connection();
        conn.execute(
            "UPDATE devices SET profile_id = NULL WHERE profile_id = ?1",
            [id],
        )?;
        conn.execute("DELETE FROM profile_ips WHERE profile_id = ?1", [id])?;
        conn.execute(
            "DELETE FROM profile_ips_distributed WHERE profile_id = ?1",
            [id],
        )?;
        conn.execute(
            "DELETE FROM profile_ips_distributions WHERE profile_id = ?1",
            [id],
        )?;
        Ok(conn.execute("DELETE FROM profiles WHERE id = ?1", [id])? > 0)
    }

    fn devices(&self) -> Result<Vec<DeviceRow>, StoreError> {
        let conn = self.connection();
        let mut stmt = conn.prepare(&format!(
            "SELECT {DEVICE_COLUMNS} FROM devices ORDER BY name"
        ))?;
        let rows = stmt.query_map([], device)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn device(&self, id: i64) -> Result<Option<DeviceRow>, StoreError> {
        let conn = self.connection();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE id = ?1"
        ))?;
        Ok(stmt.query_row([id], device).optional()?)
    }

    fn add_device(
        &mut self,
        name: &str,
        token_hash: &[u8],
        profile_id: Option<i64>,
    ) -> Result<DeviceRow, StoreError> {
        let now = self.now();
        let conn = self.connection();
        conn.execute(
            "INSERT INTO devices (name, token_hash, profile_id, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![name, token_hash, profile_id, now],
        )
        .map_err(|e| unique(e, format!("device {name:?}")))?;
        let id = conn.last_insert_rowid();
        conn.prepare(&format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE id = ?1"
        ))?
        .query_row([id], device)
        .optional()?
        .ok_or_else(|| StoreError::Corrupt("device vanished".into()))
    }

    fn set_device_profile(&mut self, id: i64, profile_id: Option<i64>) -> Result<bool, StoreError> {
        Ok(self.connection().execute(
            "UPDATE devices SET profile_id = ?2, applied_cursor = 0, last_seen = NULL WHERE id = ?1",
            params![id, profile_id],
        )? > 0)
    }

    fn record_device_progress(&mut self, progress: &[DeviceProgress]) -> Result<(), StoreError> {
        let conn = self.connection();
        let tx = conn.unchecked_transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "UPDATE devices SET applied_cursor = ?2, last_seen = ?3, last_error = ?4 WHERE id = ?1",
            )?;
            for p in progress {
                stmt.execute(params![p.device, p.cursor as i64, p.seen, p.error])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn delete_device(&mut self, id: i64) -> Result<bool, StoreError> {
        Ok(self
            .connection()
            .execute("DELETE FROM devices WHERE id = ?1", [id])?
            > 0)
    }

    fn device_sensor(&self, id: i64) -> Result<Option<String>, StoreError> {
        Ok(self
            .connection()
            .prepare_cached("SELECT sensor FROM devices WHERE id = ?1")?
            .query_row([id], |r| r.get::<_, Option<String>>(0))
            .optional()?
            .flatten())
    }

    fn set_device_sensor(&mut self, id: i64, sensor: &str) -> Result<bool, StoreError> {
        Ok(self.connection().execute(
            "UPDATE devices SET sensor = ?2 WHERE id = ?1",
            params![id, sensor],
        )? > 0)
    }

    fn set_device_report(&mut self, id: i64, report: &str) -> Result<bool, StoreError> {
        let now = self.now();
        Ok(self.connection().execute(
            "UPDATE devices SET report = ?2, reported_at = ?3 WHERE id = ?1",
            params![id, report, now],
        )? > 0)
    }

    fn add_events(&mut self, device: i64, events: &[NewEvent]) -> Result<usize, StoreError> {
        let now = self.now();
        let conn = self.connection();
        let tx = conn.unchecked_transaction()?;
        let mut added = 0;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT OR IGNORE INTO events (device_id, device_event, kind, value, action, filter, \
                 hits, first_seen, last_seen, sample, received_at, detail) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )?;
            for e in events {
                added += stmt.execute(params![
                    device,
                    e.device_event,
                    e.kind,
                    e.value,
                    e.action,
                    e.filter,
                    i64::try_from(e.hits).unwrap_or(i64::MAX),
                    e.first_seen,
                    e.last_seen,
                    e.sample,
                    now,
                    e.detail
                ])?;
            }
        }
        tx.commit()?;
        Ok(added)
    }

    fn known_events(&self, device: i64, ids: &[i64]) -> Result<Vec<i64>, StoreError> {
        let mut stmt = self
            .connection()
            .prepare_cached("SELECT 1 FROM events WHERE device_id = ?1 AND device_event = ?2")?;
        let mut known = Vec::new();
        for id in ids {
            if stmt.exists(params![device, id])? {
                known.push(*id);
            }
        }
        Ok(known)
    }

    fn event_hours(&self, since: i64) -> Result<Vec<(i64, u64, u64)>, StoreError> {
        let mut stmt = self.connection().prepare_cached(
            "SELECT (received_at / 3600) * 3600 AS h, count(*), sum(hits) FROM events
             WHERE received_at >= ?1 GROUP BY h ORDER BY h",
        )?;
        let rows = stmt.query_map([since], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?.max(0) as u64,
                r.get::<_, i64>(2)?.max(0) as u64,
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn events(&self, q: &EventQuery) -> Result<Vec<EventRow>, StoreError> {
        let mut stmt = self.connection().prepare_cached(
            "SELECT id, device_id, device_event, kind, value, action, filter, hits, first_seen, \
             last_seen, sample, received_at, detail FROM events \
             WHERE id > ?1 AND (?2 IS NULL OR device_id = ?2) \
               AND (?4 IS NULL OR last_seen >= ?4) AND (?5 IS NULL OR last_seen < ?5) \
               AND (?6 IS NULL OR filter = ?6) \
               AND (?7 IS NULL OR value = ?7 OR sample = ?7 \
                    OR (detail IS NOT NULL AND (json_extract(detail, '$.src') = ?7 \
                                                OR json_extract(detail, '$.dst') = ?7))) \
               AND (?8 IS NULL OR action = ?8) \
               AND (?9 IS NULL OR (detail IS NOT NULL AND EXISTS \
                    (SELECT 1 FROM json_each(detail, '$.cves') WHERE json_each.value = ?9))) \
               AND (?10 IS NULL OR kind = ?10) \
             ORDER BY id LIMIT ?3",
        )?;
        let rows = stmt.query_map(
            params![
                q.after,
                q.device,
                i64::try_from(q.limit).unwrap_or(i64::MAX),
                q.since,
                q.until,
                q.filter,
                q.value,
                q.action,
                q.cve,
                q.kind
            ],
            |r| {
                Ok(EventRow {
                    id: r.get(0)?,
                    device_id: r.get(1)?,
                    event: NewEvent {
                        device_event: r.get(2)?,
                        kind: r.get(3)?,
                        value: r.get(4)?,
                        action: r.get(5)?,
                        filter: r.get(6)?,
                        hits: r.get::<_, i64>(7)?.max(0) as u64,
                        first_seen: r.get(8)?,
                        last_seen: r.get(9)?,
                        sample: r.get(10)?,
                        detail: r.get(12)?,
                    },
                    received_at: r.get(11)?,
                })
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn rollouts(&self) -> Result<Vec<KeptRollout>, StoreError> {
        let conn = self.connection();
        let mut heads = conn.prepare("SELECT id, body FROM sensor_rollouts ORDER BY id")?;
        let mut steps = conn.prepare_cached(
            "SELECT body FROM sensor_rollout_steps WHERE rollout_id = ?1 ORDER BY idx",
        )?;
        let rows: Vec<(i64, String)> = heads
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let mut out = Vec::with_capacity(rows.len());
        for (id, head) in rows {
            let kept = steps
                .query_map([id], |r| r.get(0))?
                .collect::<Result<Vec<String>, _>>()?;
            out.push((id as u64, head, kept));
        }
        Ok(out)
    }

    fn put_rollout(
        &mut self,
        id: u64,
        head: &str,
        running: bool,
        steps: &[(usize, String)],
        keep: usize,
    ) -> Result<(), StoreError> {
        let now = self.now();
        let tx = self.transaction()?;
        tx.execute(
            "INSERT INTO sensor_rollouts (id, running, body, updated_at) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (id) DO UPDATE SET running = ?2, body = ?3, updated_at = ?4",
            params![id as i64, running, head, now],
        )?;
        {
            let mut put = tx.prepare_cached(
                "INSERT INTO sensor_rollout_steps (rollout_id, idx, body) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (rollout_id, idx) DO UPDATE SET body = ?3",
            )?;
            for (i, body) in steps {
                put.execute(params![id as i64, *i as i64, body])?;
            }
        }
        tx.execute(
            "DELETE FROM sensor_rollouts WHERE running = 0 AND id NOT IN \
             (SELECT id FROM sensor_rollouts ORDER BY id DESC LIMIT ?1)",
            [keep as i64],
        )?;
        tx.execute(
            "DELETE FROM sensor_rollout_steps WHERE rollout_id NOT IN (SELECT id FROM sensor_rollouts)",
            [],
        )?;
        tx.commit()?;
        Ok(())
    }
}
