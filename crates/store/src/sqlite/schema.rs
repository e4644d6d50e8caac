//! Versioned schema migrations, applied in order inside one transaction each; the version lives in
//! `PRAGMA user_version`.
//!
//! Layout and why:
//! - `entries`: one row per (kind, canonical value). `key` is `Entry::store_key`: unique like the
//!   value and ordered (start address then prefix length for IP entries, reversed labels for
//!   domains), so the one unique index serves point lookups, "entries inside this prefix" and "names
//!   below this domain" as range scans. `key_end` is the last address of an IP entry. Ids come from
//!   `meta.next_entry_id` and are never reused, so a change-log record can never point at a later
//!   entry that took a deleted entry's id (and inserts append to the table). `key` is the ordered search key (start address
//!   as big-endian bytes for IP entries, reversed labels for domains) and `key_end` the last address,
//!   so that "entries inside this prefix" and "names below this domain" are range scans of
//!   `entries_key` rather than table scans.
//! - `assertions`: one row per (entry, source), clustered by entry (WITHOUT ROWID) so an entry's
//!   assertions are adjacent; `tags` is the compact encoding of `rephub_model::Tags`.
//! - `changes`: the append-only change log; `value` is only kept for deletes, when the entry row is
//!   gone. Inserts and updates point at the entry.
//! - `meta`: `last_seq` (the newest sequence number, kept even when the log is compacted),
//!   `horizon` (the highest compacted sequence number) and `next_entry_id`.

use rusqlite::{Connection, params};

use rephub_model::builtin;

use crate::error::StoreError;

const MIGRATIONS: &[&str] = &[
    // 1: initial schema.
    r#"
    CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
    INSERT INTO meta (key, value) VALUES ('last_seq', 0), ('horizon', 0), ('next_entry_id', 1);
    CREATE TABLE categories (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        definition TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        builtin INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE sources (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE entries (
        id INTEGER PRIMARY KEY,
        kind INTEGER NOT NULL,
        key BLOB NOT NULL,
        key_end BLOB,
        value TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        UNIQUE (kind, key)
    );
    CREATE TABLE assertions (
        entry_id INTEGER NOT NULL,
        source_id INTEGER NOT NULL,
        tags BLOB NOT NULL,
        expires_at INTEGER,
        seq INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (entry_id, source_id)
    ) WITHOUT ROWID;
    CREATE INDEX assertions_source ON assertions (source_id, entry_id);
    CREATE INDEX assertions_expiry ON assertions (expires_at) WHERE expires_at IS NOT NULL;
    CREATE TABLE changes (
        seq INTEGER PRIMARY KEY,
        op INTEGER NOT NULL,
        entry_id INTEGER NOT NULL,
        kind INTEGER NOT NULL,
        value TEXT
    );
    "#,
    // 2: API keys of users, producers and read-only clients; only a hash of each key is kept.
    r#"
    CREATE TABLE api_keys (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        role TEXT NOT NULL,
        hash BLOB NOT NULL UNIQUE,
        created_at INTEGER NOT NULL
    );
    "#,
    // 3: distribution: reputation filters, profiles (a set of filters), devices (a token hash and
    // the profile distributed to them, and the cursor they last reported).
    r#"
    CREATE TABLE filters (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        definition TEXT NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE TABLE profiles (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        filters TEXT NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE TABLE devices (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        token_hash BLOB NOT NULL UNIQUE,
        profile_id INTEGER,
        applied_cursor INTEGER NOT NULL DEFAULT 0,
        last_seen INTEGER,
        created_at INTEGER NOT NULL
    );
    "#,
    // 4: what a device reported it could not apply.
    r#"
    ALTER TABLE devices ADD COLUMN last_error TEXT;
    "#,
    // 5: what agents report: inventory and backend state (JSON), and detection events. An event is
    // unique per device by the id the device gave it, so a batch sent twice is stored once.
    r#"
    ALTER TABLE devices ADD COLUMN report TEXT;
    ALTER TABLE devices ADD COLUMN reported_at INTEGER;
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        device_id INTEGER NOT NULL,
        device_event INTEGER NOT NULL,
        kind TEXT NOT NULL,
        value TEXT NOT NULL,
        action TEXT NOT NULL,
        filter TEXT,
        hits INTEGER NOT NULL,
        first_seen INTEGER NOT NULL,
        last_seen INTEGER NOT NULL,
        sample TEXT,
        received_at INTEGER NOT NULL,
        UNIQUE (device_id, device_event)
    );
    "#,
    // 6: threat-intelligence sources. The Vision One-compatible API pages and selects entries by
    // the time they last changed, which is the newest `updated_at` of their assertions: indexed.
    // The exception list (objects never distributed), and the configured sources with their state
    // (config and state are JSON the hub validates).
    r#"
    CREATE INDEX assertions_updated ON assertions (updated_at, entry_id);
    CREATE TABLE exceptions (
        kind INTEGER NOT NULL,
        key BLOB NOT NULL,
        value TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        modified_at INTEGER NOT NULL,
        PRIMARY KEY (kind, key)
    ) WITHOUT ROWID;
    CREATE TABLE source_configs (
        name TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        config TEXT NOT NULL,
        origin TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT '{}',
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    "#,
    // 7: distribution to SMS-compatible targets (seed 000): their config and state (JSON the hub
    // validates), what each target was sent and holds now (a digest of the line sent, so that a
    // tag change is sent again), and the history of runs.
    r#"
    CREATE TABLE targets (
        name TEXT PRIMARY KEY,
        config TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT '{}',
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE TABLE target_entries (
        target TEXT NOT NULL,
        kind INTEGER NOT NULL,
        value TEXT NOT NULL,
        digest BLOB NOT NULL,
        PRIMARY KEY (target, kind, value)
    ) WITHOUT ROWID;
    CREATE TABLE target_runs (
        id INTEGER PRIMARY KEY,
        target TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        finished_at INTEGER NOT NULL,
        added INTEGER NOT NULL,
        removed INTEGER NOT NULL,
        failed INTEGER NOT NULL,
        error TEXT
    );
    CREATE INDEX target_runs_target ON target_runs (target, id);
    "#,
];

pub(crate) const VERSION: i64 = MIGRATIONS.len() as i64;

pub(crate) fn migrate(conn: &mut Connection, path: &str, now: i64) -> Result<(), StoreError> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > VERSION {
        return Err(StoreError::TooNew {
            path: path.to_string(),
            found,
            known: VERSION,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let version = i as i64 + 1;
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        if version == 1 || version == 6 {
            // 6 added the `Description` built-in; seeding again adds what is missing.
            seed_builtin_categories(&tx, now)?;
        }
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
    }
    Ok(())
}

/// Refuse a database whose schema is not this rephub's (for readers, which do not migrate).
pub(crate) fn check_current(conn: &Connection, path: &str) -> Result<(), StoreError> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > VERSION {
        return Err(StoreError::TooNew {
            path: path.to_string(),
            found,
            known: VERSION,
        });
    }
    if found < VERSION {
        return Err(StoreError::Backend(
            format!(
                "database at {path} has schema version {found}, not {VERSION}: open it for writing \
                 first, which migrates it"
            )
            .into(),
        ));
    }
    Ok(())
}

fn seed_builtin_categories(conn: &Connection, now: i64) -> Result<(), StoreError> {
    let mut stmt = conn.prepare(
        "INSERT OR IGNORE INTO categories (name, definition, description, builtin, created_at) VALUES (?1, ?2, ?3, 1, ?4)",
    )?;
    for c in builtin::all() {
        let def = serde_json::to_string(&c.kind).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        stmt.execute(params![c.name, def, c.description, now])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

    use super::*;
    use crate::sqlite::SqliteStore;

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rep.db");
        let s = SqliteStore::open(&path).unwrap();
        s.connection()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        drop(s);
        assert!(matches!(
            SqliteStore::open(&path),
            Err(StoreError::TooNew {
                found: 99,
                known: VERSION,
                ..
            })
        ));
    }

    #[test]
    fn a_reader_does_not_migrate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rep.db");
        let conn = Connection::open(&path).unwrap();
        conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))
            .unwrap();
        conn.pragma_update(None, "user_version", 3).unwrap();
        let opened = SqliteStore::open_reader(&path, crate::sqlite::OpenOptions::default());
        assert!(matches!(opened, Err(StoreError::Backend(_))));
        let found: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(found, 3);
    }
}
