//! The import pipeline: one thread reads and validates lines, the calling thread writes them into
//! one transaction. A bad line is reported with its number and reason and skipped; `strict` rolls
//! the whole import back if any line is bad. Nothing is visible (or durable) before the commit, so
//! a crash or kill during an import leaves the database as it was before.

use std::io::BufRead;
use std::sync::mpsc;

use crate::{Outcome, ReputationStore, StoreError, Upsert, WriteMode, WriteTx};
use rephub_model::{
    Catalog, Entry, Kind, LineError, Lines, MinPrefix, SmsCsvReader, parse_json_line,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    Sms,
    Plain,
    Jsonl,
}

#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Every entry's kind (SMS `type`); `None` detects it per line.
    pub kind: Option<Kind>,
    pub format: InputFormat,
    pub strict: bool,
    pub source: String,
    pub mode: WriteMode,
    /// Networks broader than this are rejected with the reason (`None`: any prefix, `force`).
    pub min_prefix: Option<MinPrefix>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportSummary {
    /// Valid lines.
    pub accepted: u64,
    /// Of those: new entries,
    pub added: u64,
    /// existing entries whose tags changed (merged),
    pub updated: u64,
    /// and entries that already held exactly this.
    pub unchanged: u64,
    pub rejected: u64,
    /// `category,value` pairs dropped because the value was empty.
    pub dropped_pairs: u64,
    /// Whether the import was committed (false: strict import with bad lines).
    pub committed: bool,
    /// The change-log cursor after the import.
    pub last_seq: u64,
}

struct Parsed {
    item: Upsert,
    dropped: usize,
}

type Item = Result<Parsed, LineError>;

/// Lines are handed from the parser to the writer in chunks, to keep channel overhead off the
/// per-line cost; a chunk is also one batch of the store's bulk path. 8,192 rather than 1,024:
/// PostgreSQL takes a batch in a few round trips (a lookup of its keys, three `COPY`s), and fewer,
/// larger batches imported 1,000,000 entries 26 % faster (BENCHMARKS.md, issue 17 third part);
/// SQLite 4 % faster. Two chunks may wait in the channel ([`DEPTH`]): about as many parsed lines
/// as before (16 × 1,024), so memory stays where it was.
const CHUNK: usize = 8192;
/// Chunks the parser may be ahead by.
const DEPTH: usize = 2;

/// Import everything `input` holds into `store`. `progress` gets the bytes read so far; `reject` is
/// called for every bad line, in order.
pub fn import_reader<S, R>(
    store: &mut S,
    input: R,
    opts: &ImportOptions,
    progress: &dyn Fn(u64),
    reject: &mut dyn FnMut(&LineError),
) -> Result<ImportSummary, StoreError>
where
    S: ReputationStore,
    R: BufRead + Send,
{
    let catalog = store.catalog()?;
    let (send, recv) = mpsc::sync_channel::<(Vec<Item>, u64)>(DEPTH);
    // Written batches go back to the parser to be freed there (see `parse_all`).
    let (spent, spent_recv) = mpsc::channel::<Vec<Upsert>>();
    std::thread::scope(|scope| {
        let catalog = &catalog;
        // Named, so that profiles tell parsing from writing.
        std::thread::Builder::new()
            .name("rephub-parse".into())
            .spawn_scoped(scope, move || {
                parse_all(input, opts, catalog, send, spent_recv)
            })
            .map_err(|e| StoreError::Io {
                path: "parser thread".into(),
                source: e,
            })?;
        write_all(store, recv, spent, opts, progress, reject)
    })
}

fn parse_all<R: BufRead>(
    input: R,
    opts: &ImportOptions,
    catalog: &Catalog,
    send: mpsc::SyncSender<(Vec<Item>, u64)>,
    spent: mpsc::Receiver<Vec<Upsert>>,
) {
    let mut chunk = Vec::with_capacity(CHUNK);
    let flush = |chunk: &mut Vec<Item>, pos: u64| -> bool {
        // The writer is the import's narrowest part and the parser has time to spare: freeing
        // a written batch (about ten heap blocks per entry, allocated here, so freed across
        // threads) cost the writer a tenth of its time (`perf`, BENCHMARKS.md, issue 20 ninth
        // part). Each flush frees what has come back since the last one.
        while let Ok(batch) = spent.try_recv() {
            drop(batch);
        }
        sort_for_writing(chunk);
        send.send((std::mem::replace(chunk, Vec::with_capacity(CHUNK)), pos))
            .is_ok()
    };
    match opts.format {
        InputFormat::Sms => {
            let sep = if opts.kind == Some(Kind::Url) {
                '|'
            } else {
                ','
            };
            let mut reader = SmsCsvReader::new(input, sep);
            while let Some(rec) = reader.next_with(|line, address, pairs| {
                convert(catalog, opts, opts.kind, address, pairs, line)
            }) {
                chunk.push(rec.and_then(|r| r));
                if chunk.len() == CHUNK && !flush(&mut chunk, reader.position()) {
                    return;
                }
            }
            flush(&mut chunk, reader.position());
        }
        InputFormat::Plain | InputFormat::Jsonl => {
            let mut lines = Lines::new(input);
            while let Some(l) = lines.next_line() {
                chunk.push(l.and_then(|(line, text)| {
                    if opts.format == InputFormat::Plain {
                        return convert(catalog, opts, opts.kind, text, std::iter::empty(), line);
                    }
                    let (kind, value, pairs) =
                        parse_json_line(text).map_err(|reason| LineError { line, reason })?;
                    let pairs = pairs.iter().map(|(c, v)| (c.as_str(), v.as_str()));
                    convert(catalog, opts, kind.or(opts.kind), &value, pairs, line)
                }));
                if chunk.len() == CHUNK && !flush(&mut chunk, lines.position()) {
                    return;
                }
            }
            flush(&mut chunk, lines.position());
        }
    }
    // Everything parsed: the writer learns it when this end of the channel goes; then free the
    // rest of the written batches as they come, until the writer is done (its end closes this
    // channel).
    drop(send);
    for batch in spent {
        drop(batch);
    }
}

/// A chunk in the order its writes cost least: the refused lines first, as they came (they are
/// reported in line order), then the entries by storage key, so that the writer's inserts into
/// the unique key index go through it front to back instead of at random. Lines with the same
/// entry keep their order, the later one still written last.
///
/// Sorted as a list of small sort keys (the first 8 bytes of the storage key as a number, the
/// position), the items then moved once into that order: a chunk's items are large, and sorting
/// them in place moved each of them about log2(8,192) = 13 times, which with the key compares
/// was a tenth of the parser's time (`perf`, BENCHMARKS.md, issue 20 fourteenth part).
fn sort_for_writing(chunk: &mut Vec<Item>) {
    let mut order: Vec<(bool, i64, u64, u32)> = chunk
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Err(_) => (false, 0, 0, i as u32),
            Ok(p) => (true, p.item.kind, key_prefix(&p.item.key), i as u32),
        })
        .collect();
    let key = |i: u32| match &chunk[i as usize] {
        Ok(p) => p.item.key.as_slice(),
        Err(_) => &[],
    };
    order.sort_unstable_by(|a, b| {
        (a.0, a.1, a.2)
            .cmp(&(b.0, b.1, b.2))
            .then_with(|| key(a.3).cmp(key(b.3)))
            .then(a.3.cmp(&b.3))
    });
    let mut items: Vec<Option<Item>> = chunk.drain(..).map(Some).collect();
    chunk.extend(order.iter().filter_map(|o| items[o.3 as usize].take()));
}

/// The first 8 bytes of a storage key as a big-endian number (zeros after a shorter key): ordered
/// as the keys themselves, except between keys equal in these bytes.
fn key_prefix(key: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = key.len().min(8);
    b[..n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(b)
}

fn convert<'a>(
    catalog: &Catalog,
    opts: &ImportOptions,
    kind: Option<Kind>,
    address: &str,
    pairs: impl Iterator<Item = (&'a str, &'a str)>,
    line: u64,
) -> Result<Parsed, LineError> {
    let entry = match kind {
        Some(k) => Entry::parse(k, address),
        None => Entry::parse_auto(address),
    }
    .and_then(|e| match opts.min_prefix {
        Some(min) => min.check(&e).map(|()| e),
        None => Ok(e),
    })
    .map_err(|e| LineError {
        line,
        reason: e.to_string(),
    })?;
    let (tags, dropped) = catalog.parse_pairs(pairs).map_err(|e| LineError {
        line,
        reason: e.to_string(),
    })?;
    Ok(Parsed {
        item: Upsert::new(entry, tags, catalog),
        dropped: dropped.len(),
    })
}

fn write_all<S: ReputationStore>(
    store: &mut S,
    recv: mpsc::Receiver<(Vec<Item>, u64)>,
    spent: mpsc::Sender<Vec<Upsert>>,
    opts: &ImportOptions,
    progress: &dyn Fn(u64),
    reject: &mut dyn FnMut(&LineError),
) -> Result<ImportSummary, StoreError> {
    let mut summary = ImportSummary::default();
    let mut tx = store.begin()?;
    for (chunk, pos) in recv {
        let mut batch: Vec<Upsert> = Vec::with_capacity(chunk.len());
        for item in chunk {
            match item {
                Ok(p) => {
                    summary.accepted += 1;
                    summary.dropped_pairs += p.dropped as u64;
                    batch.push(p.item);
                }
                Err(e) => {
                    summary.rejected += 1;
                    reject(&e);
                }
            }
        }
        // After a strict failure, lines are still validated (to report every bad one) but no
        // longer written.
        if !(opts.strict && summary.rejected > 0) {
            for outcome in tx.upsert_batch(&opts.source, &batch, opts.mode)? {
                match outcome {
                    Outcome::Added => summary.added += 1,
                    Outcome::Updated => summary.updated += 1,
                    Outcome::Unchanged => summary.unchanged += 1,
                }
            }
        }
        // Freed by the parser (or here, in the error, if it has gone).
        let _ = spent.send(batch);
        progress(pos);
    }
    if opts.strict && summary.rejected > 0 {
        drop(tx);
        summary.added = 0;
        summary.updated = 0;
        summary.unchanged = 0;
        return Ok(summary);
    }
    summary.last_seq = tx.commit()?;
    summary.committed = true;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(value: &str, line: u64) -> Item {
        let catalog = Catalog::new(Vec::new());
        let entry = Entry::parse_auto(value).unwrap();
        // `dropped` carries the line number here: the sort does not read it.
        Ok(Parsed {
            item: Upsert::new(entry, rephub_model::Tags::new(), &catalog),
            dropped: line as usize,
        })
    }

    fn err(line: u64) -> Item {
        Err(LineError {
            line,
            reason: "bad".into(),
        })
    }

    #[test]
    fn a_chunk_is_sorted_by_key_with_refusals_first_and_repeats_in_order() {
        let mut chunk = vec![
            ok("b.example", 1),
            err(2),
            ok("a.example", 3),
            ok("10.0.0.1", 4),
            err(5),
            ok("a.example", 6),
        ];
        sort_for_writing(&mut chunk);
        let order: Vec<(Option<String>, u64)> = chunk
            .iter()
            .map(|i| match i {
                Ok(p) => (Some(p.item.entry.to_string()), p.dropped as u64),
                Err(e) => (None, e.line),
            })
            .collect();
        let s = |v: &str| Some(v.to_string());
        assert_eq!(
            order,
            [
                (None, 2),
                (None, 5),
                (s("10.0.0.1"), 4),
                (s("a.example"), 3),
                (s("a.example"), 6),
                (s("b.example"), 1),
            ]
        );
    }

    /// The sort by small keys orders any chunk as a stable sort of the items by (kind, key) does,
    /// refusals first: keys of any length, equal in their first 8 bytes or altogether.
    #[test]
    fn sorting_by_small_keys_is_the_stable_sort_by_key() {
        use proptest::prelude::*;
        /// An item as the test sees it: (kind, key) or a refusal, and its line.
        type Seen = (Option<(i64, Vec<u8>)>, u64);
        let item = |(line, key): (usize, Option<(i64, Vec<u8>)>)| -> Item {
            match key {
                None => err(line as u64),
                Some((kind, key)) => {
                    let Ok(mut p) = ok("10.0.0.1", line as u64) else {
                        unreachable!()
                    };
                    p.item.kind = kind;
                    p.item.key = key;
                    Ok(p)
                }
            }
        };
        let seen = |chunk: &[Item]| -> Vec<Seen> {
            chunk
                .iter()
                .map(|i| match i {
                    Ok(p) => (Some((p.item.kind, p.item.key.clone())), p.dropped as u64),
                    Err(e) => (None, e.line),
                })
                .collect()
        };
        // Keys from a small alphabet with a common 7-byte start, so that many share a prefix.
        let key = prop::collection::vec(prop::sample::select(vec![0u8, 1, 255]), 0..12)
            .prop_map(|tail| [&b"\x01\x02\x03\x04\x05\x06\x07"[..], &tail].concat());
        let line = prop::option::weighted(0.9, (0i64..3, key));
        proptest!(|(lines in prop::collection::vec(line, 0..200))| {
            let mut chunk: Vec<Item> = lines.into_iter().enumerate().map(item).collect();
            let mut want = seen(&chunk);
            want.sort_by(|a, b| match (&a.0, &b.0) {
                (None, None) => std::cmp::Ordering::Equal,
                (None, Some(_)) => std::cmp::Ordering::Less,
                (Some(_), None) => std::cmp::Ordering::Greater,
                (Some(x), Some(y)) => x.cmp(y),
            });
            sort_for_writing(&mut chunk);
            prop_assert_eq!(seen(&chunk), want);
        });
    }
}
