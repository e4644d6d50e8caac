//! Shared records from downstream hubs in PostgreSQL (`shared_records`, migration 2). The body is
//! kept as text, as the hub accepted it; field conditions read it as `jsonb`.

use super::{Clauses, PgStore, prepared};
use crate::error::StoreError;
use crate::shared::{SharedQuery, SharedRow, SharedStore};

/// Records inserted per statement (one round trip each, arrays as parameters).
const CHUNK: usize = 5_000;

/// A query's JSON path (`$.` and then names of letters, digits and `_`, separated by dots) as a
/// strict SQL/JSON path: like SQLite's `json_extract`, a name missing or met on an array finds
/// nothing. A path of another shape is refused, so a mistake is an error, not no rows.
fn json_path(p: &str) -> Option<String> {
    let rest = p.strip_prefix("$.")?;
    let mut out = String::from("strict $");
    for name in rest.split('.') {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return None;
        }
        out.push_str(".\"");
        out.push_str(name);
        out.push('"');
    }
    Some(out)
}

impl SharedStore for PgStore {
    fn add_shared(
        &mut self,
        downstream_id: i64,
        stream: &str,
        records: &[(String, String)],
    ) -> Result<u64, StoreError> {
        if records.is_empty() {
            return Ok(0);
        }
        let now = self.now();
        self.write(|tx, cache| {
            // In arrival order (ids follow it); a key sent twice, in this batch or before, is
            // kept once: ON CONFLICT also skips a duplicate of a row this statement inserted.
            let insert = prepared(
                tx,
                cache,
                "INSERT INTO shared_records (downstream_id, stream, key, body, received_at)
                 SELECT $1, $2, t.key, t.body, $3
                 FROM unnest($4::text[], $5::text[]) WITH ORDINALITY AS t(key, body, n)
                 ORDER BY t.n
                 ON CONFLICT (downstream_id, stream, key) DO NOTHING",
            )?;
            let mut added = 0;
            for chunk in records.chunks(CHUNK) {
                let keys: Vec<&str> = chunk.iter().map(|(k, _)| k.as_str()).collect();
                let bodies: Vec<&str> = chunk.iter().map(|(_, b)| b.as_str()).collect();
                added += tx.execute(&insert, &[&downstream_id, &stream, &now, &keys, &bodies])?;
            }
            Ok(added)
        })
    }

    fn known_shared(
        &self,
        downstream_id: i64,
        stream: &str,
        keys: &[String],
    ) -> Result<Vec<String>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self.rows(
            "SELECT key FROM shared_records WHERE downstream_id = $1 AND stream = $2
             AND key = ANY($3)",
            &[&downstream_id, &stream, &keys],
        )?;
        let found: std::collections::HashSet<String> = rows.iter().map(|r| r.get(0)).collect();
        // In the order asked, as SQLite's one lookup per key gives them.
        Ok(keys
            .iter()
            .filter(|k| found.contains(*k))
            .cloned()
            .collect())
    }

    fn shared(&self, q: &SharedQuery) -> Result<Vec<SharedRow>, StoreError> {
        let mut query = Clauses::new(
            "SELECT id, downstream_id, stream, key, body, received_at FROM shared_records
             WHERE stream = $1 AND id > $2",
            vec![Box::new(q.stream.clone()), Box::new(q.after)],
        );
        if let Some(d) = q.downstream_id {
            query.push(" AND downstream_id = ?", d);
        }
        if let Some(t) = q.since {
            query.push(" AND received_at >= ?", t);
        }
        if let Some(t) = q.until {
            query.push(" AND received_at < ?", t);
        }
        // A value matches a JSON string only, as SQLite compares json_extract's text.
        for (path, value) in &q.equal {
            let path =
                json_path(path).ok_or_else(|| StoreError::NotFound(format!("field {path}")))?;
            query.push(
                " AND jsonb_path_query_first(body::jsonb, ?::text::jsonpath, '{}', true)",
                path,
            );
            query.push(" = to_jsonb(?::text)", value.clone());
        }
        // SQLite's json_each: an array's elements, an object's values, or a scalar itself.
        for (path, value) in &q.contains {
            let path =
                json_path(path).ok_or_else(|| StoreError::NotFound(format!("field {path}")))?;
            query.push(
                " AND EXISTS (SELECT 1
                     FROM jsonb_path_query(body::jsonb, ?::text::jsonpath, '{}', true) AS f(v)
                     WHERE ",
                path,
            );
            query.push(
                "CASE jsonb_typeof(f.v)
                     WHEN 'array' THEN EXISTS (SELECT 1 FROM jsonb_array_elements(f.v) AS e(x)
                                               WHERE e.x = to_jsonb(?::text))
                     WHEN 'object' THEN EXISTS (SELECT 1 FROM jsonb_each(f.v) AS e(k, x)
                                                WHERE e.x = to_jsonb(?::text))
                     ELSE f.v = to_jsonb(?::text) END)",
                value.clone(),
            );
        }
        query.push(
            " ORDER BY id LIMIT ?",
            i64::try_from(q.limit).unwrap_or(i64::MAX),
        );
        let rows = self.snapshot(|tx, _| Ok(tx.query(query.sql.as_str(), &query.params())?))?;
        Ok(rows
            .iter()
            .map(|r| SharedRow {
                id: r.get(0),
                downstream_id: r.get(1),
                stream: r.get(2),
                key: r.get(3),
                body: r.get(4),
                received_at: r.get(5),
            })
            .collect())
    }
}
