//! Batches of upserts written with multi-row INSERTs.
//!
//! One statement per row costs more than the row: each execution opens a cursor on the table and
//! on every index and descends each from its root, even where the row lands right after the
//! previous one (new entries get increasing ids, so the assertion, change-log and most index rows
//! of an import are appends). A statement of many rows keeps its cursors open across them.
//!
//! SQLite keeps a statement journal (a copy of every page the statement touches, so that just
//! that statement can be undone) for a multi-row write that may abort: one that sets a rowid
//! explicitly (it might not be an integer), or hits a NOT NULL or unique constraint whose
//! conflict resolution is ABORT. Hence `entries` and `changes` have no rowid (migration 18) and
//! every statement here is `INSERT OR IGNORE`, with the row counts checked instead, so that a
//! row that was ignored is never lost silently. Measured on a 1,000,000-line import (BENCHMARKS.md,
//! issue 20, third part): about 1.7× the rate of one statement per row; the same statements
//! while they still kept a journal were no faster than one per row.

use std::sync::OnceLock;

use super::SqliteTx;
use crate::error::StoreError;
use crate::rows::own_tags;
use crate::types::{ChangeOp, Outcome, Upsert, WriteMode};

/// Rows per multi-row statement, largest first: a batch goes in statements of 256 rows (measured
/// best: 64 was slower, 1,024 no faster), its remainder in statements of 16, the last few rows one
/// at a time. (At most 7 parameters a row: well below SQLite's limit.)
pub(super) const SIZES: [usize; 2] = [256, 16];

/// `head` followed by `rows` groups of `cols` numbered parameters.
fn multi_row(head: &str, cols: usize, rows: usize) -> String {
    let mut sql = String::from(head);
    for r in 0..rows {
        sql.push_str(if r == 0 { " (" } else { ", (" });
        for c in 0..cols {
            if c > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("?{}", r * cols + c + 1));
        }
        sql.push(')');
    }
    sql
}

/// The tables written in bulk, and their statements for each of [`SIZES`].
#[derive(Clone, Copy)]
enum Table {
    Entries,
    Assertions,
    Changes,
}

impl Table {
    const COUNT: usize = 3;

    fn head(self) -> (&'static str, usize) {
        match self {
            Table::Entries => (
                "INSERT OR IGNORE INTO entries (id, kind, key, created_at) VALUES",
                4,
            ),
            Table::Assertions => (
                "INSERT OR IGNORE INTO assertions (entry_id, source_id, tags, expires_at, seq, updated_at, tag_set) VALUES",
                7,
            ),
            Table::Changes => (
                "INSERT OR IGNORE INTO changes (seq, op, entry_id, kind, value) VALUES",
                5,
            ),
        }
    }

    fn sql(self, rows: usize) -> &'static str {
        static SQL: [[OnceLock<String>; SIZES.len()]; Table::COUNT] =
            [const { [const { OnceLock::new() }; SIZES.len()] }; Table::COUNT];
        let size = SIZES.iter().position(|&s| s == rows).unwrap_or(0);
        SQL[self as usize][size].get_or_init(|| {
            let (head, cols) = self.head();
            multi_row(head, cols, SIZES[size])
        })
    }
}

/// A new entry of the batch whose assertion and change record are still to be written.
struct New<'a> {
    id: i64,
    seq: u64,
    item: &'a Upsert,
}

impl SqliteTx<'_> {
    /// [`crate::WriteTx::upsert`] for items, in order, with the same outcomes; `items.len()` is
    /// one of [`SIZES`].
    pub(super) fn upsert_rows(
        &mut self,
        source_id: i64,
        items: &[Upsert],
        mode: WriteMode,
        out: &mut Vec<Outcome>,
    ) -> Result<(), StoreError> {
        let rows = items.len();
        debug_assert!(SIZES.contains(&rows));
        let first_id = self.next_id;
        let inserted = {
            let mut stmt = self.tx.prepare_cached(Table::Entries.sql(rows))?;
            let cols = Table::Entries.head().1;
            for (k, item) in items.iter().enumerate() {
                let p = k * cols;
                stmt.raw_bind_parameter(p + 1, first_id + k as i64)?;
                stmt.raw_bind_parameter(p + 2, item.kind)?;
                stmt.raw_bind_parameter(p + 3, &item.key)?;
                stmt.raw_bind_parameter(p + 4, self.now)?;
            }
            stmt.raw_execute()?
        };
        // Every id of the statement is spent, inserted or not: ids only need to be new.
        self.next_id += rows as i64;
        // Which rows went in: all of them, unless some key existed already (or came twice); for
        // the others, the id of the entry that has the key.
        let mut existing: Vec<Option<i64>> = vec![None; rows];
        if inserted < rows {
            for (k, item) in items.iter().enumerate() {
                let id = self.entry_id(&item.entry)?.ok_or_else(|| {
                    StoreError::Corrupt(format!("{}: neither inserted nor found", item.entry))
                })?;
                existing[k] = Some(id).filter(|&id| id != first_id + k as i64);
            }
        }
        let mut pending: Vec<New> = Vec::with_capacity(rows);
        for (k, item) in items.iter().enumerate() {
            match existing[k] {
                None => {
                    let seq = self.next_seq();
                    pending.push(New {
                        id: first_id + k as i64,
                        seq,
                        item,
                    });
                    out.push(Outcome::Added);
                }
                Some(id) => {
                    // An earlier row of this batch may be this entry: it must be written first.
                    self.write_new(source_id, &pending)?;
                    pending.clear();
                    out.push(self.merge_into(id, source_id, item, mode)?);
                }
            }
        }
        self.write_new(source_id, &pending)
    }

    /// The assertions and change records of entries just inserted.
    fn write_new(&mut self, source_id: i64, rows: &[New]) -> Result<(), StoreError> {
        if !SIZES.contains(&rows.len()) {
            for r in rows {
                self.put_assertion(r.id, source_id, &r.item.encoded, r.item.expires_at, r.seq)?;
                self.log(r.seq, ChangeOp::Insert, r.id, r.item.kind, None)?;
            }
            return Ok(());
        }
        let sets = rows
            .iter()
            .map(|r| self.tag_set(&r.item.encoded))
            .collect::<Result<Vec<_>, _>>()?;
        let mut stmt = self.tx.prepare_cached(Table::Assertions.sql(rows.len()))?;
        for (k, (r, set)) in rows.iter().zip(sets).enumerate() {
            let p = k * 7;
            let own = own_tags(set, &r.item.encoded);
            stmt.raw_bind_parameter(p + 1, r.id)?;
            stmt.raw_bind_parameter(p + 2, source_id)?;
            stmt.raw_bind_parameter(p + 3, own)?;
            stmt.raw_bind_parameter(p + 4, r.item.expires_at)?;
            stmt.raw_bind_parameter(p + 5, r.seq as i64)?;
            stmt.raw_bind_parameter(p + 6, self.now)?;
            stmt.raw_bind_parameter(p + 7, set)?;
        }
        check(stmt.raw_execute()?, rows.len(), "assertions")?;
        let mut stmt = self.tx.prepare_cached(Table::Changes.sql(rows.len()))?;
        for (k, r) in rows.iter().enumerate() {
            let p = k * 5;
            stmt.raw_bind_parameter(p + 1, r.seq as i64)?;
            stmt.raw_bind_parameter(p + 2, ChangeOp::Insert as i64)?;
            stmt.raw_bind_parameter(p + 3, r.id)?;
            stmt.raw_bind_parameter(p + 4, r.item.kind)?;
            stmt.raw_bind_parameter(p + 5, None::<&str>)?;
        }
        check(stmt.raw_execute()?, rows.len(), "changes")
    }
}

/// Rows of a new entry never collide (new id, new sequence number): one that was ignored means
/// the database is not what this code believes.
fn check(written: usize, rows: usize, table: &str) -> Result<(), StoreError> {
    if written == rows {
        Ok(())
    } else {
        Err(StoreError::Corrupt(format!(
            "{table}: {written} of {rows} new rows written; the others collided with existing rows"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_have_one_numbered_parameter_per_cell() {
        assert_eq!(multi_row("X", 2, 2), "X (?1, ?2), (?3, ?4)");
        for rows in SIZES {
            for table in [Table::Entries, Table::Assertions, Table::Changes] {
                let (head, cols) = table.head();
                assert_eq!(head.matches(',').count() + 1, cols, "{head}");
                assert!(table.sql(rows).ends_with(&format!("?{})", rows * cols)));
            }
        }
    }
}
