//! The agent's filter set on disk, so that it enforces from disk when the hub is down and resumes
//! from its cursor when the hub is back.
//!
//! Two files in the state directory, both in the sync answer format:
//! - `snapshot.ndjson`: the whole set at some cursor, replaced atomically (written aside, synced,
//!   renamed, directory synced);
//! - `journal.ndjson`: the deltas applied since, appended and synced one by one.
//!
//! Loading reads the snapshot, then the journal's deltas in order. A journal that ends in a torn
//! write (a crash during an append) loses only that last delta: loading stops at the last complete
//! one and cuts the rest off, and the hub sends the delta again for the earlier cursor. A snapshot
//! that does not parse is an error for the caller to handle (keep the firewall as it is, start
//! from a hub snapshot).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use rephub_matcher::Matcher;

use crate::answer::{self, Answer, AnswerError, Rule};

const SNAPSHOT: &str = "snapshot.ndjson";
const JOURNAL: &str = "journal.ndjson";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: AnswerError },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug)]
pub struct StateDir {
    dir: PathBuf,
    /// Bytes in the journal, to decide when to write a new snapshot instead.
    journal_bytes: u64,
    snapshot_bytes: u64,
}

/// A filter set and the cursor it is at.
#[derive(Debug, Default)]
pub struct Loaded {
    pub cursor: u64,
    pub set: Matcher<Rule>,
    /// Deltas replayed from the journal.
    pub deltas: usize,
    /// Set when the journal's tail was torn and cut off.
    pub torn_tail: Option<String>,
}

impl StateDir {
    pub fn open(dir: &Path) -> Result<StateDir, StateError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        Ok(StateDir {
            dir: dir.to_path_buf(),
            journal_bytes: 0,
            snapshot_bytes: 0,
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The saved filter set, `None` when there is none yet.
    pub fn load(&mut self) -> Result<Option<Loaded>, StateError> {
        let snap_path = self.path(SNAPSHOT);
        let bytes = match fs::read(&snap_path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&snap_path)(e)),
        };
        let snap = answer::parse(&bytes).map_err(|reason| StateError::Corrupt {
            path: snap_path.clone(),
            reason,
        })?;
        if !snap.snapshot {
            return Err(StateError::Corrupt {
                path: snap_path,
                reason: AnswerError::Header("not a snapshot".into()),
            });
        }
        self.snapshot_bytes = bytes.len() as u64;
        let mut loaded = Loaded {
            cursor: snap.cursor,
            set: Matcher::build(snap.upserts),
            ..Loaded::default()
        };
        let jpath = self.path(JOURNAL);
        let journal = match fs::read(&jpath) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(&jpath)(e)),
        };
        let mut pos = 0;
        while pos < journal.len() {
            match answer::parse_one(&journal[pos..]) {
                // A record ends with its last line's newline; one without is torn.
                Ok((delta, used)) if journal[pos + used - 1] == b'\n' && !delta.snapshot => {
                    loaded.cursor = delta.cursor;
                    loaded.set.apply(delta.upserts, delta.deletes);
                    loaded.deltas += 1;
                    pos += used;
                }
                Ok(_) => {
                    loaded.torn_tail = Some(format!("incomplete record at byte {pos}"));
                    break;
                }
                Err(e) => {
                    loaded.torn_tail = Some(format!("byte {pos}: {e}"));
                    break;
                }
            }
        }
        if loaded.torn_tail.is_some() {
            let f = OpenOptions::new()
                .write(true)
                .open(&jpath)
                .map_err(io(&jpath))?;
            f.set_len(pos as u64).map_err(io(&jpath))?;
            f.sync_all().map_err(io(&jpath))?;
        }
        self.journal_bytes = pos as u64;
        Ok(Some(loaded))
    }

    /// Replace the saved state with this whole set.
    pub fn save_snapshot(&mut self, cursor: u64, set: &Matcher<Rule>) -> Result<(), StateError> {
        let mut out = Vec::with_capacity(set.len() * 100 + 100);
        let snap = Answer {
            cursor,
            snapshot: true,
            ..Answer::default()
        };
        // Written by hand rather than through `Answer` to avoid cloning a million entries.
        let head = serde_json::json!({"cursor": snap.cursor, "snapshot": true,
            "upserts": set.len(), "deletes": 0});
        let _ = serde_json::to_writer(&mut out, &head);
        out.push(b'\n');
        for (e, r) in set.iter() {
            answer::write_upsert(e, r, &mut out);
        }
        let path = self.path(SNAPSHOT);
        let tmp = self.path("snapshot.ndjson.tmp");
        {
            let mut f = File::create(&tmp).map_err(io(&tmp))?;
            f.write_all(&out).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
        }
        fs::rename(&tmp, &path).map_err(io(&path))?;
        // The journal's deltas are in the snapshot now.
        let jpath = self.path(JOURNAL);
        let j = File::create(&jpath).map_err(io(&jpath))?;
        j.sync_all().map_err(io(&jpath))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))?;
        self.snapshot_bytes = out.len() as u64;
        self.journal_bytes = 0;
        Ok(())
    }

    /// Append an applied delta. Returns whether the journal has grown past the snapshot, so that
    /// a new snapshot is due.
    pub fn append(&mut self, delta: &Answer) -> Result<bool, StateError> {
        let mut out = Vec::new();
        answer::write(delta, &mut out);
        let jpath = self.path(JOURNAL);
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&jpath)
            .map_err(io(&jpath))?;
        f.write_all(&out).map_err(io(&jpath))?;
        f.sync_data().map_err(io(&jpath))?;
        self.journal_bytes += out.len() as u64;
        Ok(self.journal_bytes > self.snapshot_bytes.max(1 << 20))
    }

    /// Move a corrupt snapshot aside (kept for inspection) so that the next save starts clean.
    pub fn set_aside(&self) -> Result<PathBuf, StateError> {
        let from = self.path(SNAPSHOT);
        let to = self.path("snapshot.ndjson.corrupt");
        fs::rename(&from, &to).map_err(io(&from))?;
        let _ = fs::remove_file(self.path(JOURNAL));
        Ok(to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rephub_model::{ActionSet, Entry};
    use std::sync::Arc;

    fn up(v: &str) -> (Entry, Rule) {
        (
            Entry::parse_auto(v).unwrap(),
            Rule {
                action: ActionSet::Block,
                filter: Arc::from("f"),
                expires: None,
            },
        )
    }

    fn values(set: &Matcher<Rule>) -> Vec<String> {
        let mut v: Vec<String> = set.iter().map(|(e, _)| e.to_string()).collect();
        v.sort();
        v
    }

    #[test]
    fn snapshot_journal_and_torn_tails() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = StateDir::open(dir.path()).unwrap();
        assert!(s.load().unwrap().is_none());
        let set = Matcher::build(vec![up("192.0.2.1"), up("evil.example")]);
        s.save_snapshot(5, &set).unwrap();
        let d1 = Answer {
            cursor: 7,
            snapshot: false,
            upserts: vec![up("198.51.100.0/24")],
            deletes: vec![up("evil.example").0],
        };
        s.append(&d1).unwrap();
        let l = s.load().unwrap().unwrap_or_default();
        assert_eq!((l.cursor, l.deltas), (7, 1));
        assert_eq!(values(&l.set), vec!["192.0.2.1", "198.51.100.0/24"]);

        // A crash in the middle of the next append: that delta is lost, the rest is kept.
        let mut torn = Vec::new();
        answer::write(
            &Answer {
                cursor: 9,
                snapshot: false,
                upserts: vec![up("203.0.113.5")],
                deletes: vec![],
            },
            &mut torn,
        );
        torn.truncate(torn.len() - 5);
        let jpath = dir.path().join(JOURNAL);
        let mut f = OpenOptions::new().append(true).open(&jpath).unwrap();
        f.write_all(&torn).unwrap();
        drop(f);
        let l = s.load().unwrap().unwrap_or_default();
        assert_eq!(l.cursor, 7);
        assert!(l.torn_tail.is_some());
        // The torn bytes were cut off: appending goes on cleanly.
        s.append(&Answer {
            cursor: 10,
            snapshot: false,
            upserts: vec![up("203.0.113.6")],
            deletes: vec![],
        })
        .unwrap();
        let l = s.load().unwrap().unwrap_or_default();
        assert_eq!((l.cursor, l.deltas, l.torn_tail), (10, 2, None));

        // A corrupt snapshot is an error, not an empty set.
        fs::write(
            dir.path().join(SNAPSHOT),
            b"{\"cursor\": 1, \"snapshot\": true, \"upserts\": 5, \"deletes\": 0}\n",
        )
        .unwrap();
        assert!(matches!(s.load(), Err(StateError::Corrupt { .. })));
        s.set_aside().unwrap();
        assert!(s.load().unwrap().is_none());
    }
}
