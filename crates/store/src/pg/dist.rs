//! Filters, profiles, devices, events and sensor rollouts in PostgreSQL (SQLite's `dist.rs`).

use std::collections::HashSet;

use postgres::Row;
use postgres::types::ToSql;

use super::error::unique;
use super::{PgStore, prepared};
use crate::dist::{
    DeviceProgress, DeviceRow, DistributionStore, EventQuery, EventRow, FilterRow, KeptRollout,
    NewEvent, ProfileRow,
};
use crate::error::StoreError;

/// The columns [`device`] reads, as a literal so that statements using it stay `&'static str`.
macro_rules! device_columns {
    () => {
        "id, name, token_hash, profile_id, applied_cursor, last_seen, created_at, last_error, \
         report, reported_at, sensor"
    };
}

fn device(r: &Row) -> DeviceRow {
    DeviceRow {
        id: r.get(0),
        name: r.get(1),
        token_hash: r.get(2),
        profile_id: r.get(3),
        applied_cursor: r.get::<_, i64>(4) as u64,
        last_seen: r.get(5),
        created_at: r.get(6),
        last_error: r.get(7),
        report: r.get(8),
        reported_at: r.get(9),
        sensor: r.get(10),
    }
}

fn count(v: i64) -> u64 {
    v.max(0) as u64
}

/// One statement in a transaction of its own, a unique violation meaning `what` exists.
fn execute_unique(
    store: &mut PgStore,
    sql: &'static str,
    params: &[&(dyn ToSql + Sync)],
    what: String,
) -> Result<u64, StoreError> {
    store.write(|tx, cache| {
        let stmt = prepared(tx, cache, sql)?;
        tx.execute(&stmt, params).map_err(|e| unique(e, what))
    })
}

impl DistributionStore for PgStore {
    fn filters(&self) -> Result<Vec<FilterRow>, StoreError> {
        let rows = self.rows(
            "SELECT id, name, definition, updated_at FROM filters ORDER BY id",
            &[],
        )?;
        Ok(rows
            .iter()
            .map(|r| FilterRow {
                id: r.get(0),
                name: r.get(1),
                definition: r.get(2),
                updated_at: r.get(3),
            })
            .collect())
    }

    fn put_filter(&mut self, id: i64, name: &str, definition: &str) -> Result<i64, StoreError> {
        let now = self.now();
        let what = format!("filter {name:?}");
        if id == 0 {
            let rows = self.rows(
                "INSERT INTO filters (name, definition, updated_at) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO NOTHING RETURNING id",
                &[&name, &definition, &now],
            )?;
            return rows
                .first()
                .map(|r| r.get(0))
                .ok_or(StoreError::Conflict(what));
        }
        execute_unique(
            self,
            "UPDATE filters SET name = $2, definition = $3, updated_at = $4 WHERE id = $1",
            &[&id, &name, &definition, &now],
            what,
        )?;
        Ok(id)
    }

    fn delete_filter(&mut self, id: i64) -> Result<bool, StoreError> {
        Ok(self.execute("DELETE FROM filters WHERE id = $1", &[&id])? > 0)
    }

    fn profiles(&self) -> Result<Vec<ProfileRow>, StoreError> {
        let rows = self.rows(
            "SELECT id, name, filters, updated_at FROM profiles ORDER BY id",
            &[],
        )?;
        rows.iter()
            .map(|r| {
                let name: String = r.get(1);
                let filters: Vec<i64> = serde_json::from_str(r.get(2))
                    .map_err(|e| StoreError::Corrupt(format!("profile {name:?}: {e}")))?;
                Ok(ProfileRow {
                    id: r.get(0),
                    name,
                    filters,
                    updated_at: r.get(3),
                })
            })
            .collect()
    }

    fn put_profile(&mut self, id: i64, name: &str, filters: &[i64]) -> Result<i64, StoreError> {
        let now = self.now();
        let list =
            serde_json::to_string(filters).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let what = format!("profile {name:?}");
        if id == 0 {
            let rows = self.rows(
                "INSERT INTO profiles (name, filters, updated_at) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO NOTHING RETURNING id",
                &[&name, &list, &now],
            )?;
            return rows
                .first()
                .map(|r| r.get(0))
                .ok_or(StoreError::Conflict(what));
        }
        execute_unique(
            self,
            "UPDATE profiles SET name = $2, filters = $3, updated_at = $4 WHERE id = $1",
            &[&id, &name, &list, &now],
            what,
        )?;
        Ok(id)
    }

    fn delete_profile(&mut self, id: i64) -> Result<bool, StoreError> {
        // One transaction: devices never point at a profile half gone.
        self.write(|tx, _| {
            tx.execute(
                "UPDATE devices SET profile_id = NULL WHERE profile_id = $1",
                &[&id],
            )?;
            tx.execute("DELETE FROM profile_ips WHERE profile_id = $1", &[&id])?;
            tx.execute(
                "DELETE FROM profile_ips_distributed WHERE profile_id = $1",
                &[&id],
            )?;
            tx.execute(
                "DELETE FROM profile_ips_distributions WHERE profile_id = $1",
                &[&id],
            )?;
            Ok(tx.execute("DELETE FROM profiles WHERE id = $1", &[&id])? > 0)
        })
    }

    fn devices(&self) -> Result<Vec<DeviceRow>, StoreError> {
        let rows = self.rows(
            concat!("SELECT ", device_columns!(), " FROM devices ORDER BY name"),
            &[],
        )?;
        Ok(rows.iter().map(device).collect())
    }

    fn device(&self, id: i64) -> Result<Option<DeviceRow>, StoreError> {
        let rows = self.rows(
            concat!("SELECT ", device_columns!(), " FROM devices WHERE id = $1"),
            &[&id],
        )?;
        Ok(rows.first().map(device))
    }

    fn add_device(
        &mut self,
        name: &str,
        token_hash: &[u8],
        profile_id: Option<i64>,
    ) -> Result<DeviceRow, StoreError> {
        let now = self.now();
        // No row: the name or the token hash is taken (SQLite's constraint error).
        let rows = self.rows(
            concat!(
                "INSERT INTO devices (name, token_hash, profile_id, created_at)
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING ",
                device_columns!()
            ),
            &[&name, &token_hash, &profile_id, &now],
        )?;
        rows.first()
            .map(device)
            .ok_or_else(|| StoreError::Conflict(format!("device {name:?}")))
    }

    fn set_device_profile(&mut self, id: i64, profile_id: Option<i64>) -> Result<bool, StoreError> {
        Ok(self.execute(
            "UPDATE devices SET profile_id = $2, applied_cursor = 0, last_seen = NULL
             WHERE id = $1",
            &[&id, &profile_id],
        )? > 0)
    }

    fn record_device_progress(&mut self, progress: &[DeviceProgress]) -> Result<(), StoreError> {
        self.write(|tx, cache| {
            let stmt = prepared(
                tx,
                cache,
                "UPDATE devices SET applied_cursor = $2, last_seen = $3, last_error = $4
                 WHERE id = $1",
            )?;
            // One by one, in order: a device reported twice keeps its last report.
            for p in progress {
                tx.execute(&stmt, &[&p.device, &(p.cursor as i64), &p.seen, &p.error])?;
            }
            Ok(())
        })
    }

    fn delete_device(&mut self, id: i64) -> Result<bool, StoreError> {
        Ok(self.execute("DELETE FROM devices WHERE id = $1", &[&id])? > 0)
    }

    fn set_device_report(&mut self, id: i64, report: &str) -> Result<bool, StoreError> {
        let now = self.now();
        Ok(self.execute(
            "UPDATE devices SET report = $2, reported_at = $3 WHERE id = $1",
            &[&id, &report, &now],
        )? > 0)
    }

    fn device_sensor(&self, id: i64) -> Result<Option<String>, StoreError> {
        let rows = self.rows("SELECT sensor FROM devices WHERE id = $1", &[&id])?;
        Ok(rows.first().and_then(|r| r.get(0)))
    }

    fn set_device_sensor(&mut self, id: i64, sensor: &str) -> Result<bool, StoreError> {
        Ok(self.execute(
            "UPDATE devices SET sensor = $2 WHERE id = $1",
            &[&id, &sensor],
        )? > 0)
    }

    fn add_events(&mut self, device: i64, events: &[NewEvent]) -> Result<usize, StoreError> {
        let now = self.now();
        self.write(|tx, cache| {
            let stmt = prepared(
                tx,
                cache,
                "INSERT INTO events (device_id, device_event, kind, value, action, filter, hits,
                     first_seen, last_seen, sample, received_at, detail)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
                 ON CONFLICT (device_id, device_event) DO NOTHING",
            )?;
            let mut added = 0;
            for e in events {
                let hits = i64::try_from(e.hits).unwrap_or(i64::MAX);
                added += tx.execute(
                    &stmt,
                    &[
                        &device,
                        &e.device_event,
                        &e.kind,
                        &e.value,
                        &e.action,
                        &e.filter,
                        &hits,
                        &e.first_seen,
                        &e.last_seen,
                        &e.sample,
                        &now,
                        &e.detail,
                    ],
                )? as usize;
            }
            Ok(added)
        })
    }

    fn known_events(&self, device: i64, ids: &[i64]) -> Result<Vec<i64>, StoreError> {
        let rows = self.rows(
            "SELECT device_event FROM events WHERE device_id = $1 AND device_event = ANY($2)",
            &[&device, &ids],
        )?;
        let known: HashSet<i64> = rows.iter().map(|r| r.get(0)).collect();
        // In the order asked, as SQLite's one lookup per id answers.
        Ok(ids
            .iter()
            .copied()
            .filter(|id| known.contains(id))
            .collect())
    }

    fn events(&self, q: &EventQuery) -> Result<Vec<EventRow>, StoreError> {
        // One prepared statement for every combination (as SQLite's): a criterion not given is
        // NULL. The detail is kept as the text the hub wrote and read as JSON only here; a
        // `src`/`dst` matches only as a JSON string, as json_extract's text compares in SQLite.
        let rows = self.rows(
            "SELECT id, device_id, device_event, kind, value, action, filter, hits, first_seen,
                    last_seen, sample, received_at, detail FROM events
             WHERE id > $1 AND ($2::bigint IS NULL OR device_id = $2)
               AND ($4::bigint IS NULL OR last_seen >= $4)
               AND ($5::bigint IS NULL OR last_seen < $5)
               AND ($6::text IS NULL OR filter = $6)
               AND ($7::text IS NULL OR value = $7 OR sample = $7
                    OR detail::jsonb -> 'src' = to_jsonb($7)
                    OR detail::jsonb -> 'dst' = to_jsonb($7))
               AND ($8::text IS NULL OR action = $8)
               AND ($9::text IS NULL OR detail::jsonb -> 'cves' @> to_jsonb($9))
               AND ($10::text IS NULL OR kind = $10)
             ORDER BY id LIMIT $3",
            &[
                &q.after,
                &q.device,
                &i64::try_from(q.limit).unwrap_or(i64::MAX),
                &q.since,
                &q.until,
                &q.filter,
                &q.value,
                &q.action,
                &q.cve,
                &q.kind,
            ],
        )?;
        Ok(rows
            .iter()
            .map(|r| EventRow {
                id: r.get(0),
                device_id: r.get(1),
                event: NewEvent {
                    device_event: r.get(2),
                    kind: r.get(3),
                    value: r.get(4),
                    action: r.get(5),
                    filter: r.get(6),
                    hits: count(r.get(7)),
                    first_seen: r.get(8),
                    last_seen: r.get(9),
                    sample: r.get(10),
                    detail: r.get(12),
                },
                received_at: r.get(11),
            })
            .collect())
    }

    fn event_hours(&self, since: i64) -> Result<Vec<(i64, u64, u64)>, StoreError> {
        // sum(bigint) is numeric in PostgreSQL: back to bigint (SQLite's integer sum).
        let rows = self.rows(
            "SELECT (received_at / 3600) * 3600 AS h, count(*), sum(hits)::bigint FROM events
             WHERE received_at >= $1 GROUP BY h ORDER BY h",
            &[&since],
        )?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), count(r.get(1)), count(r.get(2))))
            .collect())
    }

    fn rollouts(&self) -> Result<Vec<KeptRollout>, StoreError> {
        // One statement, so heads and steps come from one snapshot.
        let rows = self.rows(
            "SELECT r.id, r.body, s.body FROM sensor_rollouts r
             LEFT JOIN sensor_rollout_steps s ON s.rollout_id = r.id
             ORDER BY r.id, s.idx",
            &[],
        )?;
        let mut out: Vec<KeptRollout> = Vec::new();
        for r in &rows {
            let id = r.get::<_, i64>(0) as u64;
            let step: Option<String> = r.get(2);
            match out.last_mut() {
                Some((last, _, steps)) if *last == id => steps.extend(step),
                _ => out.push((id, r.get(1), step.into_iter().collect())),
            }
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
        let id = id as i64;
        self.write(|tx, cache| {
            tx.execute(
                "INSERT INTO sensor_rollouts (id, running, body, updated_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (id) DO UPDATE SET running = excluded.running, body = excluded.body,
                     updated_at = excluded.updated_at",
                &[&id, &running, &head, &now],
            )?;
            let put = prepared(
                tx,
                cache,
                "INSERT INTO sensor_rollout_steps (rollout_id, idx, body) VALUES ($1, $2, $3)
                 ON CONFLICT (rollout_id, idx) DO UPDATE SET body = excluded.body",
            )?;
            for (i, body) in steps {
                tx.execute(&put, &[&id, &(*i as i64), body])?;
            }
            // The newest `keep` count running ones too, as in SQLite.
            tx.execute(
                "DELETE FROM sensor_rollouts WHERE NOT running AND id NOT IN
                     (SELECT id FROM sensor_rollouts ORDER BY id DESC LIMIT $1)",
                &[&i64::try_from(keep).unwrap_or(i64::MAX)],
            )?;
            tx.execute(
                "DELETE FROM sensor_rollout_steps s
                 WHERE NOT EXISTS (SELECT 1 FROM sensor_rollouts r WHERE r.id = s.rollout_id)",
                &[],
            )?;
            Ok(())
        })
    }
}
