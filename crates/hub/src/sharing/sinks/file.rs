//! A JSON-lines file: each record is appended as one line (`{"key": …, "event": {…}}`), and the
//! batch is confirmed once the file is synced to disk. A crash between the sync and the
//! confirmation writes the batch again on restart: readers de-duplicate by `key`. Rotation is the
//! operator's (`logrotate` with `copytruncate`): the sink opens the file for every batch.

use std::io::Write as _;
use std::path::PathBuf;

use rephub_store::SpoolRecord;

use super::Outcome;

#[derive(Debug)]
pub(crate) struct FileSink {
    pub(crate) path: PathBuf,
}

impl FileSink {
    pub(crate) async fn deliver(&self, records: &[SpoolRecord]) -> Outcome {
        let mut text = Vec::with_capacity(records.iter().map(|r| r.payload.len() + 1).sum());
        for r in records {
            text.extend_from_slice(&r.payload);
            text.push(b'\n');
        }
        let path = self.path.clone();
        let done = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?;
            f.write_all(&text)?;
            f.sync_data()
        })
        .await;
        match done {
            Ok(Ok(())) => Outcome::Delivered(Vec::new()),
            Ok(Err(e)) => Outcome::Retry(format!("{}: {e}", self.path.display())),
            Err(e) => Outcome::Retry(e.to_string()),
        }
    }
}
