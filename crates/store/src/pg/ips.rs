//! The IPS filter catalog and profiles' settings in PostgreSQL (SQLite's `ips.rs`).

use rephub_model::{IpsAction, IpsFilter};

use super::{PgStore, prepared};
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

/// Settings from rows `(number, enabled, action)` at `first..first + 3`.
fn setting(r: &postgres::Row, first: usize) -> Result<IpsSetting, StoreError> {
    Ok(IpsSetting {
        number: r.get::<_, i64>(first) as u64,
        enabled: r.get(first + 1),
        action: action(r.get(first + 2))?,
    })
}

impl IpsStore for PgStore {
    fn import_ips_filters(&mut self, filters: &[IpsFilter]) -> Result<IpsImport, StoreError> {
        let now = self.now();
        self.write(|tx, cache| {
            let same = prepared(
                tx,
                cache,
                "SELECT rev = $2 AND name = $3 AND classtype IS NOT DISTINCT FROM $4
                    AND severity = $5 AND cves = $6 AND techniques = $7 AND tactics = $8
                    AND enabled = $9 AND action = $10 AND rule = $11
                 FROM ips_filters WHERE number = $1",
            )?;
            let put = prepared(
                tx,
                cache,
                "INSERT INTO ips_filters (number, rev, name, classtype, severity, cves, techniques,
                     tactics, enabled, action, rule, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
                 ON CONFLICT (number) DO UPDATE SET rev = excluded.rev, name = excluded.name,
                     classtype = excluded.classtype, severity = excluded.severity,
                     cves = excluded.cves, techniques = excluded.techniques,
                     tactics = excluded.tactics, enabled = excluded.enabled,
                     action = excluded.action, rule = excluded.rule,
                     updated_at = excluded.updated_at",
            )?;
            let mut out = IpsImport::default();
            for f in filters {
                let number = i64::try_from(f.number)
                    .map_err(|_| StoreError::NotFound(format!("filter number {}", f.number)))?;
                let (cves, techniques, tactics) =
                    (list(&f.cves), list(&f.techniques), list(&f.tactics));
                let row: [&(dyn postgres::types::ToSql + Sync); 11] = [
                    &number,
                    &i64::from(f.rev),
                    &f.name,
                    &f.classtype,
                    &i16::from(f.severity),
                    &cves,
                    &techniques,
                    &tactics,
                    &f.enabled,
                    &f.action.as_str(),
                    &f.rule,
                ];
                match tx.query_opt(&same, &row)?.map(|r| r.get::<_, bool>(0)) {
                    Some(true) => {
                        out.unchanged += 1;
                        continue;
                    }
                    Some(false) => out.updated += 1,
                    None => out.added += 1,
                }
                let mut params = row.to_vec();
                params.push(&now);
                tx.execute(&put, &params)?;
            }
            Ok(out)
        })
    }

    fn ips_filters(&self) -> Result<Vec<IpsFilter>, StoreError> {
        let rows = self.rows(
            "SELECT number, rev, name, classtype, severity, cves, techniques, tactics, enabled,
                    action, rule FROM ips_filters ORDER BY number",
            &[],
        )?;
        rows.iter()
            .map(|r| {
                Ok(IpsFilter {
                    number: r.get::<_, i64>(0) as u64,
                    rev: u32::try_from(r.get::<_, i64>(1)).unwrap_or(0),
                    name: r.get(2),
                    classtype: r.get(3),
                    severity: u8::try_from(r.get::<_, i16>(4)).unwrap_or(2),
                    cves: unlist(r.get(5)),
                    techniques: unlist(r.get(6)),
                    tactics: unlist(r.get(7)),
                    enabled: r.get(8),
                    action: action(r.get(9))?,
                    rule: r.get(10),
                })
            })
            .collect()
    }

    fn profile_ips(&self, profile_id: i64) -> Result<Vec<IpsSetting>, StoreError> {
        let rows = self.rows(
            "SELECT number, enabled, action FROM profile_ips WHERE profile_id = $1
             ORDER BY number",
            &[&profile_id],
        )?;
        rows.iter().map(|r| setting(r, 0)).collect()
    }

    fn set_profile_ips(
        &mut self,
        profile_id: i64,
        settings: &[IpsSetting],
    ) -> Result<(), StoreError> {
        let now = self.now();
        // Nothing is written unless the profile and every filter exist: an error rolls back.
        self.write(|tx, cache| {
            let exists: bool = tx
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM profiles WHERE id = $1)",
                    &[&profile_id],
                )?
                .get(0);
            if !exists {
                return Err(StoreError::NotFound(format!("profile {profile_id}")));
            }
            let known = prepared(
                tx,
                cache,
                "SELECT EXISTS (SELECT 1 FROM ips_filters WHERE number = $1)",
            )?;
            let put = prepared(
                tx,
                cache,
                "INSERT INTO profile_ips (profile_id, number, enabled, action, updated_at)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (profile_id, number) DO UPDATE SET enabled = excluded.enabled,
                     action = excluded.action, updated_at = excluded.updated_at",
            )?;
            for s in settings {
                let number = i64::try_from(s.number).unwrap_or(i64::MAX);
                if !tx.query_one(&known, &[&number])?.get::<_, bool>(0) {
                    return Err(StoreError::NotFound(format!("IPS filter {}", s.number)));
                }
                tx.execute(
                    &put,
                    &[&profile_id, &number, &s.enabled, &s.action.as_str(), &now],
                )?;
            }
            Ok(())
        })
    }

    fn distribute_profile_ips(&mut self, profile_id: i64) -> Result<(), StoreError> {
        let now = self.now();
        self.write(|tx, _| {
            tx.execute(
                "DELETE FROM profile_ips_distributed WHERE profile_id = $1",
                &[&profile_id],
            )?;
            // ON CONFLICT: a replica distributing the same profile at once inserted rows this
            // statement's snapshot did not see to delete.
            tx.execute(
                "INSERT INTO profile_ips_distributed (profile_id, number, enabled, action)
                 SELECT $1, f.number, coalesce(o.enabled, f.enabled), coalesce(o.action, f.action)
                 FROM ips_filters f
                 LEFT JOIN profile_ips o ON o.profile_id = $1 AND o.number = f.number
                 ON CONFLICT (profile_id, number) DO UPDATE SET enabled = excluded.enabled,
                     action = excluded.action",
                &[&profile_id],
            )?;
            tx.execute(
                "INSERT INTO profile_ips_distributions (profile_id, distributed_at) VALUES ($1, $2)
                 ON CONFLICT (profile_id) DO UPDATE SET distributed_at = excluded.distributed_at",
                &[&profile_id, &now],
            )?;
            Ok(())
        })
    }

    fn distributed_ips(&self) -> Result<Vec<(i64, i64, Vec<IpsSetting>)>, StoreError> {
        let rows = self.rows(
            "SELECT d.profile_id, d.distributed_at, s.number, s.enabled, s.action
             FROM profile_ips_distributions d
             JOIN profile_ips_distributed s ON s.profile_id = d.profile_id
             ORDER BY d.profile_id, s.number",
            &[],
        )?;
        let mut out: Vec<(i64, i64, Vec<IpsSetting>)> = Vec::new();
        for r in &rows {
            let profile: i64 = r.get(0);
            let s = setting(r, 2)?;
            match out.last_mut() {
                Some((p, _, list)) if *p == profile => list.push(s),
                _ => out.push((profile, r.get(1), vec![s])),
            }
        }
        Ok(out)
    }
}
