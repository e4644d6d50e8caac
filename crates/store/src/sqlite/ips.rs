//! The IPS filter catalog and profiles' settings in SQLite (migration 12).

use rusqlite::{OptionalExtension, params};

use rephub_model::{IpsAction, IpsFilter};

use super::SqliteStore;
use crate::error::StoreError;
use crate::ips::{IpsImport, IpsSetting, IpsStore};

fn list(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

fn unlist(s: &str) -> Vec<String> {
    serde_json::from_str(s).unwrap_or_default()
}

fn action(s: &str) -> Result<IpsAction, StoreError> {
    IpsAction::parse(s).ok_or_else(|| StoreError::Corrupt(format!("IPS action {s:?}")))
}

impl IpsStore for SqliteStore {
    fn import_ips_filters(&mut self, filters: &[IpsFilter]) -> Result<IpsImport, StoreError> {
        let now = self.now();
        let tx = self.transaction()?;
        let mut out = IpsImport::default();
        for f in filters {
            let number = i64::try_from(f.number)
                .map_err(|_| StoreError::NotFound(format!("filter number {}", f.number)))?;
            let row = (
                i64::from(f.rev),
                f.name.as_str(),
                f.classtype.as_deref(),
                i64::from(f.severity),
                list(&f.cves),
                list(&f.techniques),
                list(&f.tactics),
                f.enabled,
                f.action.as_str(),
                f.rule.as_str(),
            );
            let same: Option<bool> = tx
                .prepare_cached(
                    "SELECT rev = ?2 AND name = ?3 AND classtype IS ?4 AND severity = ?5 AND cves = ?6
                        AND techniques = ?7 AND tactics = ?8 AND enabled = ?9 AND action = ?10
                        AND rule = ?11
                     FROM ips_filters WHERE number = ?1",
                )?
                .query_row(
                    params![number, row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7, row.8, row.9],
                    |r| r.get(0),
                )
                .optional()?;
            match same {
                Some(true) => {
                    out.unchanged += 1;
                    continue;
                }
                Some(false) => out.updated += 1,
                None => out.added += 1,
            }
            tx.prepare_cached(
                "INSERT INTO ips_filters (number, rev, name, classtype, severity, cves, techniques,
                     tactics, enabled, action, rule, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                 ON CONFLICT (number) DO UPDATE SET rev = excluded.rev, name = excluded.name,
                     classtype = excluded.classtype, severity = excluded.severity,
                     cves = excluded.cves, techniques = excluded.techniques,
                     tactics = excluded.tactics, enabled = excluded.enabled,
                     action = excluded.action, rule = excluded.rule, updated_at = excluded.updated_at",
            )?
            .execute(params![
                number, row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7, row.8, row.9, now
            ])?;
        }
        tx.commit()?;
        Ok(out)
    }

    fn ips_filters(&self) -> Result<Vec<IpsFilter>, StoreError> {
        let mut stmt = self.connection().prepare(
            "SELECT number, rev, name, classtype, severity, cves, techniques, tactics, enabled,
                    action, rule FROM ips_filters ORDER BY number",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, String>(7)?,
                r.get::<_, bool>(8)?,
                r.get::<_, String>(9)?,
                r.get::<_, String>(10)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (
                number,
                rev,
                name,
                classtype,
                severity,
                cves,
                techniques,
                tactics,
                enabled,
                act,
                rule,
            ) = row?;
            out.push(IpsFilter {
                number: number as u64,
                rev: u32::try_from(rev).unwrap_or(0),
                name,
                classtype,
                severity: u8::try_from(severity).unwrap_or(2),
                cves: unlist(&cves),
                techniques: unlist(&techniques),
                tactics: unlist(&tactics),
                enabled,
                action: action(&act)?,
                rule,
            });
        }
        Ok(out)
    }

    fn profile_ips(&self, profile_id: i64) -> Result<Vec<IpsSetting>, StoreError> {
        let mut stmt = self.connection().prepare(
            "SELECT number, enabled, action FROM profile_ips WHERE profile_id = ?1 ORDER BY number",
        )?;
        let rows = stmt.query_map([profile_id], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, bool>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (number, enabled, act) = row?;
            out.push(IpsSetting {
                number: number as u64,
                enabled,
                action: action(&act)?,
            });
        }
        Ok(out)
    }

    fn set_profile_ips(
        &mut self,
        profile_id: i64,
        settings: &[IpsSetting],
    ) -> Result<(), StoreError> {
        let now = self.now();
        let tx = self.transaction()?;
        let exists: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM profiles WHERE id = ?1)",
            [profile_id],
            |r| r.get(0),
        )?;
        if !exists {
            return Err(StoreError::NotFound(format!("profile {profile_id}")));
        }
        for s in settings {
            let number = i64::try_from(s.number).unwrap_or(i64::MAX);
            let known: bool = tx
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM ips_filters WHERE number = ?1)")?
                .query_row([number], |r| r.get(0))?;
            if !known {
                return Err(StoreError::NotFound(format!("IPS filter {}", s.number)));
            }
            tx.prepare_cached(
                "INSERT INTO profile_ips (profile_id, number, enabled, action, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (profile_id, number) DO UPDATE SET enabled = excluded.enabled,
                     action = excluded.action, updated_at = excluded.updated_at",
            )?
            .execute(params![
                profile_id,
                number,
                s.enabled,
                s.action.as_str(),
                now
            ])?;
        }
        tx.commit()?;
        Ok(())
    }

    fn distribute_profile_ips(&mut self, profile_id: i64) -> Result<(), StoreError> {
        let now = self.now();
        let tx = self.transaction()?;
        tx.execute(
            "DELETE FROM profile_ips_distributed WHERE profile_id = ?1",
            [profile_id],
        )?;
        tx.execute(
            "INSERT INTO profile_ips_distributed (profile_id, number, enabled, action)
             SELECT ?1, f.number, coalesce(o.enabled, f.enabled), coalesce(o.action, f.action)
             FROM ips_filters f
             LEFT JOIN profile_ips o ON o.profile_id = ?1 AND o.number = f.number",
            [profile_id],
        )?;
        tx.execute(
            "INSERT INTO profile_ips_distributions (profile_id, distributed_at) VALUES (?1, ?2)
             ON CONFLICT (profile_id) DO UPDATE SET distributed_at = excluded.distributed_at",
            params![profile_id, now],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn distributed_ips(&self) -> Result<Vec<(i64, i64, Vec<IpsSetting>)>, StoreError> {
        let mut out: Vec<(i64, i64, Vec<IpsSetting>)> = Vec::new();
        let mut stmt = self.connection().prepare(
            "SELECT d.profile_id, d.distributed_at, s.number, s.enabled, s.action
             FROM profile_ips_distributions d
             JOIN profile_ips_distributed s ON s.profile_id = d.profile_id
             ORDER BY d.profile_id, s.number",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let (profile, at, number, enabled, act): (i64, i64, i64, bool, String) =
                (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?);
            let setting = IpsSetting {
                number: number as u64,
                enabled,
                action: action(&act)?,
            };
            match out.last_mut() {
                Some((p, _, list)) if *p == profile => list.push(setting),
                _ => out.push((profile, at, vec![setting])),
            }
        }
        Ok(out)
    }
}
