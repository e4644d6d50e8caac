//! `rephub migrate --to postgres://…`: a SQLite database copied into a new PostgreSQL database,
//! every table, in one PostgreSQL transaction.
//!
//! Both backends keep the same tables with the same columns (`pg/schema.rs` mirrors SQLite's
//! current shape), so the copy is generic: the columns come from PostgreSQL's catalogue, each
//! SQLite value is converted to its PostgreSQL column's type, and the rows go in by binary `COPY`.
//! A table one side has and the other has not stops the copy before anything is written (the two
//! schemas drifted: a bug to report, not data to drop).
//!
//! - The source is read in one SQLite read transaction: a consistent snapshot even if a hub still
//!   writes to it (what it writes afterwards is not copied: stop the hub first).
//! - The target must be new: only what creating the schema puts there (the built-in categories,
//!   the counters in `meta`). Those rows are replaced by the source's, so ids, sequence numbers and
//!   device cursors carry over unchanged: devices go on with a delta, not a snapshot.
//! - Nothing is half-written: one transaction, committed after every table's row count was
//!   checked against the source. The sequence row is locked throughout (see `pg/mod.rs`), so a
//!   replica started too early waits instead of writing in between.
//! - Identity columns continue after the copied ids.

use std::path::Path;

use postgres::Transaction;
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};
use rusqlite::types::ValueRef;

use super::{PgOptions, PgStore, Session};
use crate::SqliteStore;
use crate::error::StoreError;

/// Tables only one backend has by design (PostgreSQL keeps its schema version in a table, SQLite in
/// `PRAGMA user_version`).
const POSTGRES_ONLY: [&str; 1] = ["schema_version"];
/// Tables a new PostgreSQL schema fills; their rows are the source's after the copy.
const PREFILLED: [&str; 2] = ["meta", "categories"];

/// What was copied: each table and its number of rows, in copy order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    pub tables: Vec<(String, u64)>,
}

/// Copy the SQLite database at `sqlite` into the new PostgreSQL database `conninfo` (see the
/// module docs). `done(table, rows)` is called after each table.
pub fn migrate_sqlite_to_postgres(
    sqlite: &Path,
    conninfo: &str,
    done: &mut dyn FnMut(&str, u64),
) -> Result<Migrated, StoreError> {
    if !sqlite.exists() {
        return Err(StoreError::NotFound(format!(
            "the SQLite database {}",
            sqlite.display()
        )));
    }
    // Both brought to this rephub's current schema first (opening does), so they match.
    drop(SqliteStore::open(sqlite)?);
    drop(PgStore::connect(conninfo)?);
    let source = rusqlite::Connection::open_with_flags(
        sqlite,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    source.execute_batch("BEGIN")?;
    let (mut client, _) = Session::new(conninfo, &PgOptions::default(), false).open()?;
    let mut tx = client.transaction()?;
    tx.batch_execute("SELECT value FROM meta WHERE key = 'last_seq' FOR UPDATE")?;
    let tables = copy_order(&mut tx)?;
    check_same_tables(&source, &tables)?;
    check_new(&mut tx, &tables)?;
    for t in PREFILLED {
        tx.batch_execute(&format!("DELETE FROM {}", quote(t)))?;
    }
    let mut copied = Vec::with_capacity(tables.len());
    for table in &tables {
        let rows = copy_table(&source, &mut tx, table)?;
        let count: i64 = tx
            .query_one(&format!("SELECT count(*) FROM {}", quote(table)), &[])?
            .get(0);
        if count as u64 != rows {
            return Err(StoreError::Corrupt(format!(
                "table {table}: {rows} rows read, {count} in PostgreSQL"
            )));
        }
        done(table, rows);
        copied.push((table.clone(), rows));
    }
    continue_identities(&mut tx)?;
    tx.commit()?;
    source.execute_batch("COMMIT")?;
    Ok(Migrated { tables: copied })
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// PostgreSQL's tables (but [`POSTGRES_ONLY`]), a table others refer to before them, by name
/// otherwise.
fn copy_order(tx: &mut Transaction<'_>) -> Result<Vec<String>, StoreError> {
    let mut tables: Vec<String> = tx
        .query(
            "SELECT table_name::text FROM information_schema.tables
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'
             ORDER BY table_name",
            &[],
        )?
        .iter()
        .map(|r| r.get(0))
        .filter(|t: &String| !POSTGRES_ONLY.contains(&t.as_str()))
        .collect();
    let refs: Vec<(String, String)> = tx
        .query(
            "SELECT conrelid::regclass::text, confrelid::regclass::text FROM pg_constraint
             WHERE contype = 'f' AND connamespace = current_schema()::regnamespace",
            &[],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    // A referenced table moves before the first table that refers to it; references form no
    // cycle in rephub's schema, and the pass count is bounded anyway.
    for _ in 0..tables.len() {
        let mut moved = false;
        for (from, to) in &refs {
            let (Some(f), Some(t)) = (
                tables.iter().position(|x| x == from),
                tables.iter().position(|x| x == to),
            ) else {
                continue;
            };
            if t > f {
                let referenced = tables.remove(t);
                tables.insert(f, referenced);
                moved = true;
            }
        }
        if !moved {
            break;
        }
    }
    Ok(tables)
}

/// The same tables on both sides.
fn check_same_tables(source: &rusqlite::Connection, tables: &[String]) -> Result<(), StoreError> {
    let mut stmt = source.prepare(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
    )?;
    let in_sqlite: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let only_sqlite: Vec<&String> = in_sqlite.iter().filter(|t| !tables.contains(t)).collect();
    let only_pg: Vec<&String> = tables.iter().filter(|t| !in_sqlite.contains(t)).collect();
    if only_sqlite.is_empty() && only_pg.is_empty() {
        return Ok(());
    }
    Err(StoreError::Corrupt(format!(
        "the two schemas differ (tables only in SQLite: {only_sqlite:?}; only in PostgreSQL: \
         {only_pg:?}): nothing was copied"
    )))
}

/// The target holds nothing but what creating its schema put there.
fn check_new(tx: &mut Transaction<'_>, tables: &[String]) -> Result<(), StoreError> {
    for table in tables.iter().filter(|t| !PREFILLED.contains(&t.as_str())) {
        let used: bool = tx
            .query_one(
                &format!("SELECT EXISTS (SELECT 1 FROM {})", quote(table)),
                &[],
            )?
            .get(0);
        if used {
            return Err(not_new(&format!("its table {table} has rows")));
        }
    }
    let last: i64 = tx
        .query_one("SELECT value FROM meta WHERE key = 'last_seq'", &[])?
        .get(0);
    let own: i64 = tx
        .query_one("SELECT count(*) FROM categories WHERE NOT builtin", &[])?
        .get(0);
    if last != 0 || own != 0 {
        return Err(not_new("it has a change log or categories of its own"));
    }
    Ok(())
}

fn not_new(why: &str) -> StoreError {
    StoreError::Conflict(format!(
        "data in the target database ({why}): migrate into a new, empty database"
    ))
}

/// One SQLite value as its PostgreSQL column's type.
enum Cell {
    Bool(Option<bool>),
    I16(Option<i16>),
    I32(Option<i32>),
    I64(Option<i64>),
    Text(Option<String>),
    Bytes(Option<Vec<u8>>),
}

impl Cell {
    fn as_sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            Cell::Bool(v) => v,
            Cell::I16(v) => v,
            Cell::I32(v) => v,
            Cell::I64(v) => v,
            Cell::Text(v) => v,
            Cell::Bytes(v) => v,
        }
    }
}

/// `v` for a column of type `ty`; the error says what does not fit.
fn cell(ty: &Type, v: ValueRef<'_>) -> Result<Cell, String> {
    let int = |v: ValueRef<'_>| match v {
        ValueRef::Integer(i) => Ok(i),
        other => Err(format!("{:?} where an integer belongs", other.data_type())),
    };
    if v == ValueRef::Null {
        return Ok(match *ty {
            Type::BOOL => Cell::Bool(None),
            Type::INT2 => Cell::I16(None),
            Type::INT4 => Cell::I32(None),
            Type::INT8 => Cell::I64(None),
            Type::BYTEA => Cell::Bytes(None),
            _ => Cell::Text(None),
        });
    }
    Ok(match *ty {
        Type::BOOL => Cell::Bool(Some(int(v)? != 0)),
        Type::INT2 => Cell::I16(Some(
            i16::try_from(int(v)?).map_err(|_| "out of range of smallint".to_string())?,
        )),
        Type::INT4 => Cell::I32(Some(
            i32::try_from(int(v)?).map_err(|_| "out of range of integer".to_string())?,
        )),
        Type::INT8 => Cell::I64(Some(int(v)?)),
        Type::BYTEA => Cell::Bytes(Some(match v {
            ValueRef::Blob(b) | ValueRef::Text(b) => b.to_vec(),
            other => return Err(format!("{:?} where bytes belong", other.data_type())),
        })),
        Type::TEXT | Type::VARCHAR => {
            let bytes = match v {
                ValueRef::Text(b) | ValueRef::Blob(b) => b,
                other => return Err(format!("{:?} where text belongs", other.data_type())),
            };
            let text = std::str::from_utf8(bytes).map_err(|_| "text that is not UTF-8")?;
            if text.contains('\0') {
                return Err("text with a NUL character (PostgreSQL's text cannot hold one)".into());
            }
            Cell::Text(Some(text.to_string()))
        }
        ref other => return Err(format!("no conversion to PostgreSQL's {other}")),
    })
}

/// Copy one table; the number of rows.
fn copy_table(
    source: &rusqlite::Connection,
    tx: &mut Transaction<'_>,
    table: &str,
) -> Result<u64, StoreError> {
    let columns: Vec<(String, Type)> = {
        let rows = tx.query(
            "SELECT a.attname::text, a.atttypid FROM pg_attribute a
             WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attnum",
            &[&table],
        )?;
        rows.iter()
            .map(|r| {
                let oid: u32 = r.get(1);
                let ty = Type::from_oid(oid).unwrap_or(Type::TEXT);
                (r.get(0), ty)
            })
            .collect()
    };
    let names: Vec<String> = columns.iter().map(|(n, _)| quote(n)).collect();
    let types: Vec<Type> = columns.iter().map(|(_, t)| t.clone()).collect();
    let mut read = source
        .prepare(&format!(
            "SELECT {} FROM {}",
            names.join(", "),
            quote(table)
        ))
        .map_err(|e| {
            StoreError::Corrupt(format!("table {table} cannot be read as PostgreSQL's: {e}"))
        })?;
    let sink = tx.copy_in(&format!(
        "COPY {} ({}) FROM STDIN BINARY",
        quote(table),
        names.join(", ")
    ))?;
    let mut writer = BinaryCopyInWriter::new(sink, &types);
    let mut rows = read.query([])?;
    let mut n = 0u64;
    while let Some(row) = rows.next()? {
        let mut cells = Vec::with_capacity(columns.len());
        for (i, (name, ty)) in columns.iter().enumerate() {
            let v = row.get_ref(i)?;
            cells.push(cell(ty, v).map_err(|why| {
                // Tables without a rowid have no row number of their own: the row's place in
                // the table and its first column (the key, in rephub's tables) name it.
                let first = match row.get_ref(0) {
                    Ok(ValueRef::Integer(k)) => k.to_string(),
                    Ok(ValueRef::Text(t)) => String::from_utf8_lossy(t).into_owned(),
                    _ => "?".into(),
                };
                StoreError::Corrupt(format!(
                    "table {table}, row {} ({} = {first}), column {name}: {why}",
                    n + 1,
                    columns[0].0
                ))
            })?);
        }
        let refs: Vec<&(dyn ToSql + Sync)> = cells.iter().map(Cell::as_sql).collect();
        writer.write(&refs)?;
        n += 1;
    }
    writer.finish()?;
    Ok(n)
}

/// Identity columns go on after the largest copied id.
fn continue_identities(tx: &mut Transaction<'_>) -> Result<(), StoreError> {
    let cols: Vec<(String, String)> = tx
        .query(
            "SELECT table_name::text, column_name::text FROM information_schema.columns
             WHERE table_schema = current_schema() AND is_identity = 'YES'",
            &[],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for (table, column) in cols {
        tx.query_one(
            &format!(
                "SELECT setval(pg_get_serial_sequence($1, $2), coalesce(max({c}), 0) + 1, false)
                 FROM {t}",
                c = quote(&column),
                t = quote(&table)
            ),
            &[&table, &column],
        )?;
    }
    Ok(())
}
