//! Files Suricata extracted from traffic (its file-store, version 2: `dir/ab/ab12…` named by
//! SHA-256, written in `dir/tmp/` and moved there when complete), sent to the hub for sandbox
//! analysis (seed 002, chapter 6: with the network sensor and Send to Sandbox on, files are
//! analysed in addition to URLs).
//!
//! The file-store itself is the queue: a file is sent when it is not in the list of files sent
//! (`files-sent`, one SHA-256 per line, synced after each), so a restart neither loses a file
//! nor sends one twice but for the one whose line a crash cut off (the hub keeps each SHA-256
//! once).

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The files sent (or skipped for good), by SHA-256.
#[derive(Debug)]
pub struct Sent {
    path: PathBuf,
    done: HashSet<String>,
}

impl Sent {
    /// The list at `path`; missing: none sent yet. A line cut by a crash is ignored.
    pub fn load(path: &Path) -> Sent {
        let done = fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter(|l| is_sha256(l))
            .map(str::to_string)
            .collect();
        Sent {
            path: path.to_path_buf(),
            done,
        }
    }

    pub fn contains(&self, sha256: &str) -> bool {
        self.done.contains(sha256)
    }

    pub fn len(&self) -> usize {
        self.done.len()
    }

    pub fn is_empty(&self) -> bool {
        self.done.is_empty()
    }

    /// Record `sha256` as sent, durably.
    pub fn add(&mut self, sha256: &str) -> std::io::Result<()> {
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        // A line a crash tore leaves no newline: start on a fresh one.
        f.write_all(format!("\n{sha256}\n").as_bytes())?;
        f.sync_data()?;
        self.done.insert(sha256.to_string());
        Ok(())
    }
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A complete file of the store that was not sent yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub sha256: String,
    pub path: PathBuf,
    pub size: u64,
}

/// At most `limit` files of the store at `dir` not in `sent`, in no particular order. Only
/// complete files count: the store's two-hex-digit directories, names of 64 hex digits.
pub fn candidates(dir: &Path, sent: &Sent, limit: usize) -> std::io::Result<Vec<Candidate>> {
    let mut out = Vec::new();
    let mut subdirs: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.len() == 2 && n.bytes().all(|b| b.is_ascii_hexdigit()))
        })
        .collect();
    subdirs.sort();
    for sub in subdirs {
        for e in fs::read_dir(&sub)?.filter_map(Result::ok) {
            let name = e.file_name();
            let Some(name) = name.to_str() else {
                continue;
            };
            if !is_sha256(name) || sent.contains(name) {
                continue;
            }
            let Ok(meta) = e.metadata() else {
                continue;
            };
            if meta.is_file() {
                out.push(Candidate {
                    sha256: name.to_string(),
                    path: e.path(),
                    size: meta.len(),
                });
                if out.len() >= limit {
                    return Ok(out);
                }
            }
        }
    }
    Ok(out)
}

/// The bytes of a candidate, if they still are what its name says (a file being replaced
/// under the agent is skipped this time).
pub fn read(c: &Candidate) -> std::io::Result<Option<Vec<u8>>> {
    use sha2::Digest;
    let mut data = Vec::new();
    std::io::Read::read_to_end(&mut File::open(&c.path)?, &mut data)?;
    Ok((hex::encode(sha2::Sha256::digest(&data)) == c.sha256).then_some(data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    fn store(dir: &Path, data: &[u8]) -> String {
        let sha = hex::encode(sha2::Sha256::digest(data));
        let sub = dir.join(&sha[..2]);
        fs::create_dir_all(&sub).unwrap();
        fs::write(sub.join(&sha), data).unwrap();
        sha
    }

    #[test]
    fn complete_files_not_sent_are_candidates_and_the_list_survives_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let fs_dir = dir.path().join("filestore");
        fs::create_dir_all(fs_dir.join("tmp")).unwrap();
        // Being written: not a candidate.
        fs::write(fs_dir.join("tmp").join("file.1"), b"partial").unwrap();
        let a = store(&fs_dir, b"first file");
        let b = store(&fs_dir, b"second file");
        // Suricata's metadata beside a file is not one.
        fs::write(fs_dir.join(&a[..2]).join(format!("{a}.1.2.json")), b"{}").unwrap();
        let list = dir.path().join("files-sent");
        let mut sent = Sent::load(&list);
        let mut found: Vec<String> = candidates(&fs_dir, &sent, 10)
            .unwrap()
            .into_iter()
            .map(|c| c.sha256)
            .collect();
        found.sort();
        let mut want = vec![a.clone(), b.clone()];
        want.sort();
        assert_eq!(found, want);
        assert_eq!(candidates(&fs_dir, &sent, 1).unwrap().len(), 1);
        sent.add(&a).unwrap();
        // A crash in the middle of the next line.
        let mut f = OpenOptions::new().append(true).open(&list).unwrap();
        f.write_all(&b.as_bytes()[..20]).unwrap();
        let sent = Sent::load(&list);
        assert!(sent.contains(&a) && !sent.contains(&b));
        let left = candidates(&fs_dir, &sent, 10).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(read(&left[0]).unwrap().unwrap(), b"second file");
        // Changed under its name: not sent.
        fs::write(&left[0].path, b"something else").unwrap();
        assert_eq!(read(&left[0]).unwrap(), None);
    }
}
