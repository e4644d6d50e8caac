//! Versioned schema migrations, applied in order inside one transaction each; the version lives in
//! `PRAGMA user_version`.
//!
//! Layout and why:
//! - `entries`: one row per (kind, canonical value). `key` is `Entry::store_key`: unique like the
//!   value, which is read back from it (`Entry::from_store_key`; not stored since migration 26),
//!   and ordered (start address then prefix length for IP entries, reversed labels for
//!   domains), so the one unique index serves point lookups, "entries inside this prefix" and "names
//!   below this domain" as range scans. Ids come from
//!   `meta.next_entry_id` and are never reused, so a change-log record can never point at a later
//!   entry that took a deleted entry's id (and inserts append to the table).
//! - `assertions`: one row per (entry, source), clustered by entry (WITHOUT ROWID) so an entry's
//!   assertions are adjacent; `tags` is the compact encoding of `rephub_model::Tags` without the
//!   TTL (its date is `expires_at`), or empty when `tag_set` names the row of `tag_sets` that
//!   holds it.
//! - `tag_sets`: encoded tag sets shared by assertions (since migration 27; never changed or
//!   removed, at most `rows::SHARED_TAGS_MAX` of them).
//! - `changes`: the append-only change log; `value` is only kept for deletes, when the entry row is
//!   gone. Inserts and updates point at the entry.
//! - `commit_times`: one row per commit that changed entries: its last sequence number and when
//!   it was committed (microseconds, strictly increasing), for readers that page by time (TAXII).
//!   Compaction keeps the row at or below the horizon and everything after.
//! - `meta`: `last_seq` (the newest sequence number, kept even when the log is compacted),
//!   `horizon` (the highest compacted sequence number) and `next_entry_id`.
//! - Every other table with an integer id (`categories`, `sources`, `api_keys`, `filters`,
//!   `profiles`, `devices`, `events`, `target_runs`) declares it AUTOINCREMENT (since migration 8):
//!   an id is never handed out twice, even after the newest row is deleted, because ids are
//!   referred to (a profile lists filter ids, events name their device, clients page events by id).
//!   Tables keyed by name (`source_configs`, `targets`) have no id to reuse.

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
    // 8: ids are never reused. Without AUTOINCREMENT SQLite hands out max(id) + 1, so deleting the
    // newest filter and creating another gave the new one the old id, and it silently joined every
    // profile that still listed the old one (likewise a new device and a deleted one's events).
    // SQLite can only add AUTOINCREMENT by rebuilding a table: new table, copy (ids kept), drop,
    // rename, indexes again. `sqlite_sequence` is then seeded with the highest id in use *or still
    // referred to*, so an id a profile, device, event or assertion points at is never handed out.
    r#"
    CREATE TABLE categories_v8 (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        definition TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        builtin INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL
    );
    INSERT INTO categories_v8 (id, name, definition, description, builtin, created_at)
        SELECT id, name, definition, description, builtin, created_at FROM categories;
    DROP TABLE categories;
    ALTER TABLE categories_v8 RENAME TO categories;

    CREATE TABLE sources_v8 (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL
    );
    INSERT INTO sources_v8 (id, name, created_at) SELECT id, name, created_at FROM sources;
    DROP TABLE sources;
    ALTER TABLE sources_v8 RENAME TO sources;

    CREATE TABLE api_keys_v8 (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        role TEXT NOT NULL,
        hash BLOB NOT NULL UNIQUE,
        created_at INTEGER NOT NULL
    );
    INSERT INTO api_keys_v8 (id, name, role, hash, created_at)
        SELECT id, name, role, hash, created_at FROM api_keys;
    DROP TABLE api_keys;
    ALTER TABLE api_keys_v8 RENAME TO api_keys;

    CREATE TABLE filters_v8 (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        definition TEXT NOT NULL,
        updated_at INTEGER NOT NULL
    );
    INSERT INTO filters_v8 (id, name, definition, updated_at)
        SELECT id, name, definition, updated_at FROM filters;
    DROP TABLE filters;
    ALTER TABLE filters_v8 RENAME TO filters;

    CREATE TABLE profiles_v8 (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        filters TEXT NOT NULL,
        updated_at INTEGER NOT NULL
    );
    INSERT INTO profiles_v8 (id, name, filters, updated_at)
        SELECT id, name, filters, updated_at FROM profiles;
    DROP TABLE profiles;
    ALTER TABLE profiles_v8 RENAME TO profiles;

    CREATE TABLE devices_v8 (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        token_hash BLOB NOT NULL UNIQUE,
        profile_id INTEGER,
        applied_cursor INTEGER NOT NULL DEFAULT 0,
        last_seen INTEGER,
        created_at INTEGER NOT NULL,
        last_error TEXT,
        report TEXT,
        reported_at INTEGER
    );
    INSERT INTO devices_v8 (id, name, token_hash, profile_id, applied_cursor, last_seen, created_at,
                            last_error, report, reported_at)
        SELECT id, name, token_hash, profile_id, applied_cursor, last_seen, created_at,
               last_error, report, reported_at FROM devices;
    DROP TABLE devices;
    ALTER TABLE devices_v8 RENAME TO devices;

    CREATE TABLE events_v8 (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
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
    INSERT INTO events_v8 (id, device_id, device_event, kind, value, action, filter, hits,
                           first_seen, last_seen, sample, received_at)
        SELECT id, device_id, device_event, kind, value, action, filter, hits,
               first_seen, last_seen, sample, received_at FROM events;
    DROP TABLE events;
    ALTER TABLE events_v8 RENAME TO events;

    CREATE TABLE target_runs_v8 (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        target TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        finished_at INTEGER NOT NULL,
        added INTEGER NOT NULL,
        removed INTEGER NOT NULL,
        failed INTEGER NOT NULL,
        error TEXT
    );
    INSERT INTO target_runs_v8 (id, target, started_at, finished_at, added, removed, failed, error)
        SELECT id, target, started_at, finished_at, added, removed, failed, error FROM target_runs;
    DROP TABLE target_runs;
    ALTER TABLE target_runs_v8 RENAME TO target_runs;
    CREATE INDEX target_runs_target ON target_runs (target, id);

    DELETE FROM sqlite_sequence WHERE name IN ('categories', 'sources', 'api_keys', 'filters',
        'profiles', 'devices', 'events', 'target_runs');
    INSERT INTO sqlite_sequence (name, seq)
    SELECT 'categories', coalesce(max(id), 0) FROM categories
    UNION ALL
    SELECT 'sources', max(coalesce((SELECT max(id) FROM sources), 0),
                          coalesce((SELECT max(source_id) FROM assertions), 0))
    UNION ALL
    SELECT 'api_keys', coalesce(max(id), 0) FROM api_keys
    UNION ALL
    SELECT 'filters', max(coalesce((SELECT max(id) FROM filters), 0),
                          coalesce((SELECT max(j.value)
                                    FROM profiles p, json_each(CASE WHEN json_valid(p.filters)
                                                              THEN p.filters ELSE '[]' END) j
                                    WHERE j.type = 'integer'), 0))
    UNION ALL
    SELECT 'profiles', max(coalesce((SELECT max(id) FROM profiles), 0),
                           coalesce((SELECT max(profile_id) FROM devices), 0))
    UNION ALL
    SELECT 'devices', max(coalesce((SELECT max(id) FROM devices), 0),
                          coalesce((SELECT max(device_id) FROM events), 0))
    UNION ALL
    SELECT 'events', coalesce(max(id), 0) FROM events
    UNION ALL
    SELECT 'target_runs', coalesce(max(id), 0) FROM target_runs;
    "#,
    // 9: connections between hubs (upstream side): enrollment tokens (hashed, single use), the
    // downstreams that enrolled, and the client certificates issued to them, by serial.
    r#"
    CREATE TABLE enrollment_tokens (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL,
        hash BLOB NOT NULL UNIQUE,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        used_at INTEGER,
        revoked_at INTEGER
    );
    CREATE TABLE downstreams (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        address TEXT,
        enrolled_at INTEGER NOT NULL,
        revoked_at INTEGER
    );
    CREATE TABLE downstream_certificates (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        downstream_id INTEGER NOT NULL REFERENCES downstreams (id),
        serial BLOB NOT NULL UNIQUE,
        issued_at INTEGER NOT NULL,
        not_after INTEGER NOT NULL,
        revoked_at INTEGER
    );
    CREATE INDEX downstream_certificates_downstream ON downstream_certificates (downstream_id, id);
    "#,
    // 10: connection features. On the upstream, what it grants a downstream (sandbox URL
    // analysis is switched on from this side); on the downstream, which features of its
    // connection are switched on (kept across disconnects, so a reconnection has them again).
    r#"
    ALTER TABLE downstreams ADD COLUMN sandbox INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE connection_features (
        feature TEXT PRIMARY KEY,
        enabled INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    "#,
    // 11: what downstream hubs share (the upstream's side): records of a stream, once per
    // downstream and idempotency key; listed in the order they arrived (by id: no index of its
    // own per stream, which would cost every insert more than it saves the few streams).
    r#"
    CREATE TABLE shared_records (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        downstream_id INTEGER NOT NULL,
        stream TEXT NOT NULL,
        key TEXT NOT NULL,
        body TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        UNIQUE (downstream_id, stream, key)
    );
    "#,
    // 12: the IPS filter catalog (Suricata rules as filters, by number = sid; lists as JSON
    // arrays) and each profile's overrides of their state and action.
    r#"
    CREATE TABLE ips_filters (
        number INTEGER PRIMARY KEY,
        rev INTEGER NOT NULL,
        name TEXT NOT NULL,
        classtype TEXT,
        severity INTEGER NOT NULL,
        cves TEXT NOT NULL,
        techniques TEXT NOT NULL,
        tactics TEXT NOT NULL,
        enabled INTEGER NOT NULL,
        action TEXT NOT NULL,
        rule TEXT NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE TABLE profile_ips (
        profile_id INTEGER NOT NULL,
        number INTEGER NOT NULL,
        enabled INTEGER NOT NULL,
        action TEXT NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (profile_id, number)
    ) WITHOUT ROWID;
    "#,
    // 13: what each profile's IPS policy was when it was last distributed (every filter's
    // effective state and action then): filter status counts only what devices were given.
    r#"
    CREATE TABLE profile_ips_distributed (
        profile_id INTEGER NOT NULL,
        number INTEGER NOT NULL,
        enabled INTEGER NOT NULL,
        action TEXT NOT NULL,
        PRIMARY KEY (profile_id, number)
    ) WITHOUT ROWID;
    CREATE TABLE profile_ips_distributions (
        profile_id INTEGER PRIMARY KEY,
        distributed_at INTEGER NOT NULL
    );
    "#,
    // 14: policy deployments the upstream asks of its downstreams, and what they reported.
    r#"
    CREATE TABLE deployments (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        downstream_id INTEGER NOT NULL,
        request TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        done_at INTEGER,
        result TEXT
    );
    CREATE INDEX deployments_downstream ON deployments (downstream_id, id);
    "#,
    // 15: what an IPS event carries besides the reputation columns (filter number, endpoints,
    // CVEs, techniques, request), as JSON; NULL for reputation hits.
    r#"
    ALTER TABLE events ADD COLUMN detail TEXT;
    "#,
    // 16: when each commit became visible (its last sequence number and a time in microseconds,
    // strictly increasing), so a TAXII poller's `added_after` time maps to a change-log cursor.
    // Commits made before this migration count as made at the migration.
    r#"
    CREATE TABLE commit_times (seq INTEGER PRIMARY KEY, at INTEGER NOT NULL);
    CREATE INDEX commit_times_at ON commit_times (at);
    INSERT INTO commit_times (seq, at)
        SELECT value, CAST(strftime('%s', 'now') AS INTEGER) * 1000000 FROM meta
        WHERE key = 'last_seq' AND value > 0;
    "#,
    // 17: the web console: users who sign in with a name and a password (an argon2 PHC string,
    // never the password), an entry's change history (the change log by entry; new entries get
    // increasing ids, so a bulk load appends to this index), and events per hour.
    r#"
    CREATE TABLE users (
        name TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX changes_entry ON changes (entry_id, seq);
    CREATE INDEX events_received ON events (received_at);
    "#,
    // 18: `entries` and `changes` keyed by their integer id without a separate rowid. Bulk writes
    // insert many rows per statement (see `sqlite/bulk.rs`); SQLite keeps a statement journal
    // (a copy of every page touched) for any such statement that sets a rowid explicitly, and
    // these ids are always set by rephub. Same columns, same order, same index.
    r#"
    CREATE TABLE entries_v18 (
        id INTEGER PRIMARY KEY,
        kind INTEGER NOT NULL,
        key BLOB NOT NULL,
        key_end BLOB,
        value TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        UNIQUE (kind, key)
    ) WITHOUT ROWID;
    INSERT INTO entries_v18 (id, kind, key, key_end, value, created_at)
        SELECT id, kind, key, key_end, value, created_at FROM entries ORDER BY id;
    DROP TABLE entries;
    ALTER TABLE entries_v18 RENAME TO entries;
    CREATE TABLE changes_v18 (
        seq INTEGER PRIMARY KEY,
        op INTEGER NOT NULL,
        entry_id INTEGER NOT NULL,
        kind INTEGER NOT NULL,
        value TEXT
    ) WITHOUT ROWID;
    INSERT INTO changes_v18 (seq, op, entry_id, kind, value)
        SELECT seq, op, entry_id, kind, value FROM changes ORDER BY seq;
    DROP TABLE changes;
    ALTER TABLE changes_v18 RENAME TO changes;
    CREATE INDEX changes_entry ON changes (entry_id, seq);
    "#,
    // 19: TLS network telemetry (seed 002, chapter 10): this hub's devices' handshakes
    // (downstream_id 0) and its downstreams', kept once per origin and key; the searched fields
    // in columns with partial indexes, the whole record as JSON; swept by handshake time.
    r#"
    CREATE TABLE telemetry (
        id INTEGER PRIMARY KEY,
        downstream_id INTEGER NOT NULL,
        key TEXT NOT NULL,
        device TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        received_at INTEGER NOT NULL,
        sni TEXT,
        ja3 TEXT,
        ja4 TEXT,
        sha256 TEXT,
        sha1 TEXT,
        record TEXT NOT NULL,
        UNIQUE (downstream_id, key)
    );
    CREATE INDEX telemetry_at ON telemetry (at_ms);
    CREATE INDEX telemetry_sni ON telemetry (sni) WHERE sni IS NOT NULL;
    CREATE INDEX telemetry_ja3 ON telemetry (ja3) WHERE ja3 IS NOT NULL;
    CREATE INDEX telemetry_ja4 ON telemetry (ja4) WHERE ja4 IS NOT NULL;
    CREATE INDEX telemetry_sha256 ON telemetry (sha256) WHERE sha256 IS NOT NULL;
    CREATE INDEX telemetry_sha1 ON telemetry (sha1) WHERE sha1 IS NOT NULL;
    "#,
    // 20: the network sensor a device is asked to run (JSON: enabled, sandbox, generation),
    // set by a rolling enablement and sent to the agent with the answer to its report.
    r#"
    ALTER TABLE devices ADD COLUMN sensor TEXT;
    "#,
    // 21: sandbox analysis (seed 002, chapter 9). `sandbox_submissions`: the objects this hub's
    // devices saw (or a user submitted) and what the analyzer said of them, one row per object
    // (the canonical URL): seen again, it is not submitted again. `sandbox_tasks`: what this
    // hub's own analyzer was asked, by whom (`origin`) and on which UTC day (the daily reserve),
    // and its result as JSON.
    r#"
    CREATE TABLE sandbox_submissions (
        id INTEGER PRIMARY KEY,
        object TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        submitter TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        status TEXT NOT NULL,
        task_id TEXT,
        submitted_at INTEGER,
        sha1 TEXT,
        risk TEXT,
        threat_type TEXT,
        threat_name TEXT,
        error TEXT
    );
    CREATE INDEX sandbox_submissions_status ON sandbox_submissions (status, id);
    CREATE TABLE sandbox_tasks (
        id TEXT PRIMARY KEY,
        origin TEXT NOT NULL,
        kind TEXT NOT NULL,
        object TEXT NOT NULL,
        status TEXT NOT NULL,
        day INTEGER NOT NULL,
        cached INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        result TEXT
    );
    CREATE INDEX sandbox_tasks_status ON sandbox_tasks (status, created_at);
    CREATE INDEX sandbox_tasks_object ON sandbox_tasks (object, updated_at);
    CREATE INDEX sandbox_tasks_day ON sandbox_tasks (origin, day);
    "#,
    // 22: rolling enablements of the network sensor, so that a restarted hub still lists them
    // and says which it stopped in the middle of: what was asked and where it stands (JSON), and
    // each device's step as a row of its own (a step that changes is written alone).
    r#"
    CREATE TABLE sensor_rollouts (
        id INTEGER PRIMARY KEY,
        running INTEGER NOT NULL,
        body TEXT NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE TABLE sensor_rollout_steps (
        rollout_id INTEGER NOT NULL,
        idx INTEGER NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (rollout_id, idx)
    ) WITHOUT ROWID;
    "#,
    // 23: what the web console and the TAXII server keep between requests, shared by every
    // replica and kept over restarts: console sessions by the SHA-256 of their token (a user's
    // name and password stamp, or an API key's hash), failed sign-ins per name, and the status
    // resources of TAXII pushes (`n` orders them, so that only the newest are kept).
    r#"
    CREATE TABLE console_sessions (
        digest BLOB PRIMARY KEY,
        user_name TEXT,
        stamp INTEGER NOT NULL,
        key_hash BLOB,
        csrf TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        last_at INTEGER NOT NULL,
        flash TEXT
    ) WITHOUT ROWID;
    CREATE INDEX console_sessions_user ON console_sessions (user_name);
    CREATE INDEX console_sessions_last ON console_sessions (last_at);
    CREATE TABLE sign_in_failures (
        name TEXT PRIMARY KEY,
        count INTEGER NOT NULL,
        at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX sign_in_failures_at ON sign_in_failures (at);
    CREATE TABLE stix_statuses (
        n INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        body TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    "#,
    // 24: the enrollment CA (it was `ca/` in the data directory): one row, its key sealed with
    // the hub's secret key, so that every replica on a database is the same CA.
    r#"
    CREATE TABLE certificate_authority (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        cert TEXT NOT NULL,
        sealed_key TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    "#,
    // 25: telemetry ids AUTOINCREMENT (as every other table with an id referred to since 8):
    // clients page by the last id they saw, and a retention sweep that removed even the newest
    // rows let SQLite hand the same ids out again, so those clients missed what came next.
    r#"
    CREATE TABLE telemetry_new (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        downstream_id INTEGER NOT NULL,
        key TEXT NOT NULL,
        device TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        received_at INTEGER NOT NULL,
        sni TEXT,
        ja3 TEXT,
        ja4 TEXT,
        sha256 TEXT,
        sha1 TEXT,
        record TEXT NOT NULL,
        UNIQUE (downstream_id, key)
    );
    INSERT INTO telemetry_new (id, downstream_id, key, device, at_ms, received_at, sni, ja3, ja4,
                               sha256, sha1, record)
        SELECT id, downstream_id, key, device, at_ms, received_at, sni, ja3, ja4, sha256, sha1,
               record FROM telemetry ORDER BY id;
    DROP TABLE telemetry;
    ALTER TABLE telemetry_new RENAME TO telemetry;
    CREATE INDEX telemetry_at ON telemetry (at_ms);
    CREATE INDEX telemetry_sni ON telemetry (sni) WHERE sni IS NOT NULL;
    CREATE INDEX telemetry_ja3 ON telemetry (ja3) WHERE ja3 IS NOT NULL;
    CREATE INDEX telemetry_ja4 ON telemetry (ja4) WHERE ja4 IS NOT NULL;
    CREATE INDEX telemetry_sha256 ON telemetry (sha256) WHERE sha256 IS NOT NULL;
    CREATE INDEX telemetry_sha1 ON telemetry (sha1) WHERE sha1 IS NOT NULL;
    "#,
    // 26: entries without their value: it is derived from the storage key (`Entry::store_key`
    // is one to one, and `Entry::from_store_key` its inverse), which the row and the unique
    // index hold anyway; a URL was stored three times. 22 bytes per entry on the benchmark mix.
    // And without `key_end` (an IP entry's last address): a search for the entries inside a
    // prefix reads the key range of the prefix's addresses, which holds at most one entry per
    // shorter prefix length that reaches beyond it, and the criteria drop those.
    r#"
    CREATE TABLE entries_v26 (
        id INTEGER PRIMARY KEY,
        kind INTEGER NOT NULL,
        key BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        UNIQUE (kind, key)
    ) WITHOUT ROWID;
    INSERT INTO entries_v26 (id, kind, key, created_at)
        SELECT id, kind, key, created_at FROM entries ORDER BY id;
    DROP TABLE entries;
    ALTER TABLE entries_v26 RENAME TO entries;
    "#,
    // 27: tag sets shared by assertions. The tags of a reputation database repeat: on the
    // benchmark mix a million assertions hold fewer than a thousand different sets (the TTL's
    // date, which differs, is the expiry column and not stored in the set). An assertion refers to
    // its set by id (`tag_set`, its own `tags` then empty) instead of holding the bytes; sets are
    // never changed or removed, so a reference stays valid. Older assertions keep their bytes.
    r#"
    CREATE TABLE tag_sets (id INTEGER PRIMARY KEY, tags BLOB NOT NULL UNIQUE);
    ALTER TABLE assertions ADD COLUMN tag_set INTEGER;
    "#,
    // 28: an entry's history without an index entry per insert. The index of the change log by
    // entry (migration 17) keeps its updates and deletions only; an entry's insert is found from
    // `entry_marks`, a sparse map of the log: every 1,024th sequence number with the id the next
    // new entry was to get then (`next_id`). Entry ids and their inserts' sequence numbers rise
    // together (ids are handed out in the order the inserts are logged, and never reused), so an
    // entry's insert is at or after the mark of the largest `next_id` not above its id, within a
    // few thousand changes of it. Marks for the log already there: every 1,024th change with the
    // highest id inserted by then, plus one.
    r#"
    DROP INDEX changes_entry;
    CREATE INDEX changes_entry ON changes (entry_id, seq) WHERE op != 1;
    CREATE TABLE entry_marks (next_id INTEGER PRIMARY KEY, seq INTEGER NOT NULL);
    INSERT OR REPLACE INTO entry_marks (next_id, seq)
        SELECT next_id, seq FROM (
            SELECT seq,
                   coalesce(max(CASE WHEN op = 1 THEN entry_id END) OVER (ORDER BY seq), 0) + 1
                       AS next_id
            FROM changes)
        WHERE seq % 1024 = 0
        ORDER BY seq;
    "#,
];

pub(crate) const VERSION: i64 = MIGRATIONS.len() as i64;

pub(crate) fn migrate(conn: &mut Connection, path: &str, now: i64) -> Result<(), StoreError> {
    migrate_to(conn, path, now, VERSION)
}

/// Migrate up to `target` (tests build databases of older versions with it).
fn migrate_to(conn: &mut Connection, path: &str, now: i64, target: i64) -> Result<(), StoreError> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > VERSION {
        return Err(StoreError::TooNew {
            path: path.to_string(),
            found,
            known: VERSION,
        });
    }
    for (i, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .take(target as usize)
        .skip(found as usize)
    {
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

    /// Every row of `table`, in id order, as SQLite holds it.
    fn rows(conn: &Connection, table: &str) -> Vec<Vec<rusqlite::types::Value>> {
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM {table} ORDER BY id"))
            .unwrap();
        let n = stmt.column_count();
        stmt.query_map([], |r| (0..n).map(|i| r.get(i)).collect())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    const REBUILT: [&str; 8] = [
        "categories",
        "sources",
        "api_keys",
        "filters",
        "profiles",
        "devices",
        "events",
        "target_runs",
    ];

    #[test]
    fn migration_25_keeps_telemetry_and_its_ids_and_never_hands_one_out_again() {
        use crate::TelemetryStore;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rep.db");
        let mut conn = Connection::open(&path).unwrap();
        migrate_to(&mut conn, "test", 1000, 24).unwrap();
        conn.execute_batch(
            r#"
            INSERT INTO telemetry (id, downstream_id, key, device, at_ms, received_at, sni, ja3,
                                   ja4, sha256, sha1, record)
                VALUES (5, 0, 'a', 'fw1', 100, 1, 'a.example', NULL, 'j4', NULL, NULL, '{"at_ms":100}'),
                       (9, 7, 'b', 'fw2', 200, 2, NULL, 'j3', NULL, 'ff', NULL, '{"at_ms":200}');
            "#,
        )
        .unwrap();
        drop(conn);
        let mut s = SqliteStore::open(&path).unwrap();
        let rows = s
            .telemetry(&crate::TelemetryQuery {
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        let kept: Vec<(i64, &str, &str)> = rows
            .iter()
            .map(|r| (r.id, r.key.as_str(), r.device.as_str()))
            .collect();
        assert_eq!(kept, [(5, "a", "fw1"), (9, "b", "fw2")]);
        assert_eq!(s.known_telemetry(7, &["b".into()]).unwrap(), ["b"]);
        // Everything swept: the next record still gets a new id.
        assert_eq!(s.sweep_telemetry(i64::MAX).unwrap(), 2);
        let rec = crate::NewTelemetry {
            key: "c".into(),
            device: "fw1".into(),
            record: rephub_model::telemetry::TlsRecord {
                at_ms: 300,
                ..Default::default()
            },
        };
        assert_eq!(s.add_telemetry(0, &[rec]).unwrap(), 1);
        let after = s
            .telemetry(&crate::TelemetryQuery {
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(after[0].id, 10);
        s.check_integrity().unwrap();
    }

    #[test]
    fn migration_26_reads_every_value_back_from_its_key() {
        use crate::ReputationStore;
        use rephub_model::{Entry, Kind};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rep.db");
        let mut conn = Connection::open(&path).unwrap();
        migrate_to(&mut conn, "test", 1000, 25).unwrap();
        let values = [
            (Kind::Ipv4, "192.0.2.7"),
            (Kind::Ipv4, "198.51.100.0/24"),
            (Kind::Ipv6, "2001:db8::/32"),
            (Kind::Domain, "www.example.com"),
            (Kind::Domain, "[10.1.1.300]"),
            (Kind::Url, "http://example.com/a?b=c"),
            (Kind::Url, "http://example.com/dir/*"),
            (Kind::Sha1, "a9993e364706816aba3e25717850c26c9cd0d89d"),
            (
                Kind::Sha256,
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            ),
        ];
        let entries: Vec<Entry> = values
            .iter()
            .map(|&(k, v)| Entry::from_stored(k, v).unwrap())
            .collect();
        for (i, e) in entries.iter().enumerate() {
            conn.execute(
                "INSERT INTO entries (id, kind, key, key_end, value, created_at)
                 VALUES (?1, ?2, ?3, NULL, ?4, 1000)",
                params![i as i64 + 1, e.kind().code(), e.store_key(), e.to_string()],
            )
            .unwrap();
        }
        drop(conn);
        let s = SqliteStore::open(&path).unwrap();
        for (i, e) in entries.iter().enumerate() {
            let id = i as i64 + 1;
            assert_eq!(s.get_by_id(id).unwrap().unwrap().entry, *e);
            assert_eq!(s.get(e).unwrap().unwrap().id, id);
        }
        let columns: Vec<String> = s
            .conn
            .prepare("SELECT name FROM pragma_table_info('entries')")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(columns, ["id", "kind", "key", "created_at"]);
        s.check_integrity().unwrap();
    }

    /// Assertions written before migration 27 hold all their tags, the TTL too: they read the
    /// same after it, an unchanged write finds them unchanged, and new writes share a set.
    #[test]
    fn migration_27_reads_older_tags_and_shares_new_ones() {
        use crate::types::{Outcome, Upsert, WriteMode};
        use crate::{ReputationStore, WriteTx};
        use rephub_model::{Entry, Kind};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rep.db");
        let mut conn = Connection::open(&path).unwrap();
        migrate_to(&mut conn, "test", 1000, 26).unwrap();
        let cat = super::super::load_catalog(&conn).unwrap();
        let tags = cat
            .parse_pairs([
                ("Trend Micro Severity", "High"),
                ("Trend Micro Publisher", "Apex Central"),
                ("Reputation Entries TTL", "2030-01-01 00:00:00"),
            ])
            .unwrap()
            .0;
        let old = Entry::parse(Kind::Ipv4, "192.0.2.1").unwrap();
        conn.execute_batch("INSERT INTO sources (id, name, created_at) VALUES (1, 'feed', 1)")
            .unwrap();
        conn.execute(
            "INSERT INTO entries (id, kind, key, created_at) VALUES (1, ?1, ?2, 1000)",
            params![old.kind().code(), old.store_key()],
        )
        .unwrap();
        let expires = crate::types::expiry_of(&tags, cat.ttl_id());
        conn.execute(
            "INSERT INTO assertions (entry_id, source_id, tags, expires_at, seq, updated_at)
             VALUES (1, 1, ?1, ?2, 1, 1000)",
            params![tags.encode(&cat), expires],
        )
        .unwrap();
        conn.execute_batch("UPDATE meta SET value = 2 WHERE key = 'next_entry_id'")
            .unwrap();
        drop(conn);

        let mut s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.get(&old).unwrap().unwrap().tags, tags);
        let new = Entry::parse(Kind::Ipv4, "192.0.2.2").unwrap();
        let mut tx = s.begin().unwrap();
        let same = Upsert::new(old.clone(), tags.clone(), &cat);
        assert_eq!(
            tx.upsert("feed", &same, WriteMode::Merge).unwrap(),
            Outcome::Unchanged
        );
        let other = Upsert::new(new.clone(), tags.clone(), &cat);
        assert_eq!(
            tx.upsert("feed", &other, WriteMode::Merge).unwrap(),
            Outcome::Added
        );
        tx.commit().unwrap();
        assert_eq!(s.get(&new).unwrap().unwrap().tags, tags);
        let count = |sql: &str| -> i64 { s.conn.query_row(sql, [], |r| r.get(0)).unwrap() };
        assert_eq!(count("SELECT count(*) FROM tag_sets"), 1);
        assert_eq!(
            count("SELECT count(*) FROM assertions WHERE tag_set IS NULL"),
            1
        );
        s.check_integrity().unwrap();
    }

    /// A change log written before migration 28 (inserts in id order, updates of older entries
    /// between them, a deletion): after it, every entry's history is still its part of the log,
    /// its insert found from the marks the migration made.
    #[test]
    fn migration_28_marks_the_log_already_there() {
        use crate::ReputationStore;
        use crate::types::ChangeOp;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rep.db");
        let mut conn = Connection::open(&path).unwrap();
        migrate_to(&mut conn, "test", 1000, 27).unwrap();
        let mut log: Vec<(i64, i64, i64)> = Vec::new(); // (seq, op, entry_id)
        for id in 1..=3000i64 {
            log.push((log.len() as i64 + 1, 1, id));
            if id % 3 == 0 {
                for older in [id / 2, id / 3] {
                    log.push((log.len() as i64 + 1, 2, older));
                }
            }
        }
        log.push((log.len() as i64 + 1, 3, 5));
        let tx = conn.transaction().unwrap();
        for (seq, op, id) in &log {
            let value = (*op == 3).then_some("192.0.2.5");
            tx.execute(
                "INSERT INTO changes (seq, op, entry_id, kind, value) VALUES (?1, ?2, ?3, 1, ?4)",
                params![seq, op, id, value],
            )
            .unwrap();
        }
        let last = log.len() as i64;
        tx.execute(
            "INSERT INTO commit_times (seq, at) VALUES (?1, 5000000)",
            [last],
        )
        .unwrap();
        tx.execute("UPDATE meta SET value = ?1 WHERE key = 'last_seq'", [last])
            .unwrap();
        tx.execute(
            "UPDATE meta SET value = 3001 WHERE key = 'next_entry_id'",
            [],
        )
        .unwrap();
        tx.commit().unwrap();
        drop(conn);

        let s = SqliteStore::open(&path).unwrap();
        let marks: i64 = s
            .conn
            .query_row("SELECT count(*) FROM entry_marks", [], |r| r.get(0))
            .unwrap();
        assert_eq!(marks, last / 1024);
        for id in 1..=3000i64 {
            let mut expected: Vec<(u64, ChangeOp)> = log
                .iter()
                .filter(|c| c.2 == id)
                .map(|c| (c.0 as u64, ChangeOp::from_code(c.1).unwrap()))
                .collect();
            expected.reverse();
            let history: Vec<(u64, ChangeOp)> = s
                .entry_history(id, 100)
                .unwrap()
                .iter()
                .map(|h| (h.seq, h.op))
                .collect();
            assert_eq!(history, expected, "entry {id}");
        }
        s.check_integrity().unwrap();
    }

    #[test]
    fn migration_8_keeps_rows_and_ids_and_hands_out_no_id_still_referred_to() {
        use crate::{DistributionStore, KeyStore, ReputationStore, TargetRunRow, TargetStore};

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rep.db");
        let mut conn = Connection::open(&path).unwrap();
        conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))
            .unwrap();
        migrate_to(&mut conn, "test", 1000, 7).unwrap();
        // A version-7 database that has seen deletions: filter 3 is gone but profile 1 still lists
        // it (and a 5 deleted long ago), device 2 is gone but its events stay.
        conn.execute_batch(
            r#"
            INSERT INTO categories (name, definition, description, builtin, created_at)
                SELECT 'Country', definition, 'mine', 0, 5 FROM categories LIMIT 1;
            INSERT INTO sources (id, name, created_at) VALUES (1, 'user', 1), (2, 'feed', 2);
            INSERT INTO api_keys (id, name, role, hash, created_at)
                VALUES (1, 'k1', 'admin', x'01', 3), (2, 'k2', 'read-only', x'02', 4);
            INSERT INTO filters (id, name, definition, updated_at)
                VALUES (1, 'f1', '{}', 5), (2, 'f2', '{"a":1}', 6), (3, 'f3', '{}', 7);
            DELETE FROM filters WHERE id = 3;
            INSERT INTO profiles (id, name, filters, updated_at)
                VALUES (1, 'p1', '[1,3,5]', 8), (2, 'p2', '[]', 9);
            INSERT INTO devices (id, name, token_hash, profile_id, applied_cursor, last_seen,
                                 created_at, last_error, report, reported_at)
                VALUES (1, 'd1', x'aa', 2, 17, 20, 10, 'oops', '{"m":1}', 21),
                       (2, 'd2', x'bb', NULL, 0, NULL, 11, NULL, NULL, NULL);
            INSERT INTO events (id, device_id, device_event, kind, value, action, filter, hits,
                                first_seen, last_seen, sample, received_at)
                VALUES (1, 2, 1, 'ipv4', '1.2.3.4', 'block', 'f1', 3, 1, 2, '1.2.3.4', 22),
                       (2, 1, 1, 'domain', 'x.example', 'block', NULL, 1, 1, 1, NULL, 23);
            DELETE FROM devices WHERE id = 2;
            INSERT INTO target_runs (id, target, started_at, finished_at, added, removed, failed, error)
                VALUES (1, 't', 1, 2, 3, 4, 5, NULL), (2, 't', 3, 4, 0, 0, 1, 'down'),
                       (3, 'u', 5, 6, 1, 0, 0, NULL);
            "#,
        )
        .unwrap();
        let before: Vec<_> = REBUILT.iter().map(|t| rows(&conn, t)).collect();
        let max_category: i64 = conn
            .query_row("SELECT max(id) FROM categories", [], |r| r.get(0))
            .unwrap();
        drop(conn);

        let mut s = SqliteStore::open(&path).unwrap();
        let conn = s.connection();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, VERSION);
        for (table, rows_before) in REBUILT.iter().zip(&before) {
            // Later migrations may add columns (NULL for old rows): the old ones are as they were.
            let after: Vec<Vec<rusqlite::types::Value>> = rows(conn, table)
                .into_iter()
                .zip(rows_before)
                .map(|(mut row, old)| {
                    let added = row.split_off(old.len());
                    assert!(
                        added.iter().all(|v| *v == rusqlite::types::Value::Null),
                        "{table}: {added:?}"
                    );
                    row
                })
                .collect();
            assert_eq!(rows(conn, table).len(), rows_before.len(), "{table}");
            assert_eq!(&after, rows_before, "{table}");
            let sql: String = conn
                .query_row(
                    "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?1",
                    [table],
                    |r| r.get(0),
                )
                .unwrap();
            assert!(sql.contains("AUTOINCREMENT"), "{table}: {sql}");
        }
        let index: bool = conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'target_runs_target')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(index);
        s.check_integrity().unwrap();

        // What the store reads is what it read before.
        let profiles = s.profiles().unwrap();
        assert_eq!(profiles[0].filters, [1, 3, 5]);
        assert_eq!(s.devices().unwrap()[0].applied_cursor, 17);
        assert_eq!(
            s.catalog().unwrap().by_name("Country").unwrap().id as i64,
            max_category
        );
        // Unique constraints came along.
        assert!(matches!(
            s.put_filter(0, "f1", "{}"),
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(s.add_events(1, &[]).unwrap(), 0);

        // New ids start above every id in use or referred to.
        assert_eq!(s.put_filter(0, "f6", "{}").unwrap(), 6);
        assert_eq!(s.put_profile(0, "p3", &[]).unwrap(), 3);
        assert_eq!(s.add_device("d3", b"cc", None).unwrap().id, 3);
        assert_eq!(s.add_api_key("k3", "admin", b"03").unwrap().id, 3);
        let run = TargetRunRow {
            id: 0,
            started_at: 7,
            finished_at: 8,
            added: 0,
            removed: 0,
            failed: 0,
            error: None,
        };
        assert_eq!(s.add_target_run("u", &run).unwrap(), 4);
        let c = s
            .add_category(&rephub_model::NewCategory {
                name: "Region".into(),
                kind: rephub_model::CategoryType::Text,
                description: String::new(),
            })
            .unwrap();
        assert_eq!(i64::from(c.id), max_category + 1);
        let source: i64 = s
            .transaction()
            .and_then(|tx| {
                tx.execute(
                    "INSERT INTO sources (name, created_at) VALUES ('new', 0)",
                    [],
                )?;
                let id = tx.last_insert_rowid();
                tx.commit()?;
                Ok(id)
            })
            .unwrap();
        assert_eq!(source, 3);
    }
}
