//! Sandbox analysis (seed 002, chapter 9): on the submitting side, the objects (URLs, files)
//! devices saw and what became of them — one row per object, so that an object seen a thousand
//! times is submitted once; on the analyzing side, the tasks this hub's own analyzer was given,
//! with who asked and on which day (the daily reserve).

use crate::error::StoreError;

/// Submission states.
pub mod status {
    /// Seen, waiting for the analyzer (or for the daily reserve).
    pub const PENDING: &str = "pending";
    /// Accepted by the analyzer; polled until it finishes.
    pub const SUBMITTED: &str = "submitted";
    /// Finished: a risk level, or `notAnalyzed` with the reason.
    pub const DONE: &str = "done";
    /// Never sent: a new enrollment moved the submission index past it (seed 002).
    pub const SKIPPED: &str = "skipped";
}

/// An object to submit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSubmission {
    /// The canonical URL, or a file's SHA-256.
    pub object: String,
    /// `url` or `file`.
    pub kind: String,
    /// The device that saw it, or "Manual Submission".
    pub submitter: String,
}

/// An object and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubmissionRow {
    pub id: i64,
    pub object: String,
    pub kind: String,
    pub submitter: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub status: String,
    /// The analyzer's task.
    pub task_id: Option<String>,
    pub submitted_at: Option<i64>,
    /// The analyzer's SHA-1 of the object.
    pub sha1: Option<String>,
    /// `high`, `medium`, `low`, `noRisk` or `notAnalyzed`.
    pub risk: Option<String>,
    pub threat_type: Option<String>,
    pub threat_name: Option<String>,
    /// Why it was not analysed, or the last failure to reach the analyzer.
    pub error: Option<String>,
}

/// Which submissions to list (every field given must match), newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubmissionQuery {
    /// Before this id (0: from the newest).
    pub before: i64,
    pub limit: usize,
    pub status: Option<String>,
    pub risk: Option<String>,
    pub submitter: Option<String>,
    /// Found in the object, SHA-1, threat type or threat name.
    pub text: Option<String>,
}

/// A task of this hub's analyzer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxTask {
    pub id: String,
    /// Who asked: `local` (this hub), a downstream hub's name, an API key's name.
    pub origin: String,
    /// `url` or `file`.
    pub kind: String,
    pub object: String,
    /// `queued`, `running`, `succeeded`, `failed` (Vision One's names).
    pub status: String,
    /// The UTC day it was asked on (days since the epoch).
    pub day: i64,
    /// Answered from an earlier analysis of the same object (does not count toward the reserve).
    pub cached: bool,
    pub created_at: i64,
    pub updated_at: i64,
    /// The result, as JSON (the analyzer's own shape).
    pub result: Option<String>,
}

/// Tasks of one origin and day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SandboxUsage {
    /// Counted toward the reserve.
    pub urls: u64,
    pub files: u64,
    /// Not counted: answered from cache, or not analysed.
    pub url_exemptions: u64,
    pub file_exemptions: u64,
}

pub trait SandboxStore {
    /// Keep objects not seen before (one row per object). Returns how many were new.
    fn collect_submissions(&mut self, items: &[NewSubmission]) -> Result<u64, StoreError>;

    /// Submissions in a state, oldest first.
    fn submissions_in(&self, status: &str, limit: usize) -> Result<Vec<SubmissionRow>, StoreError>;

    /// A listing, newest first.
    fn submissions(&self, q: &SubmissionQuery) -> Result<Vec<SubmissionRow>, StoreError>;

    /// Write back what became of a submission (by id).
    fn update_submission(&mut self, row: &SubmissionRow) -> Result<(), StoreError>;

    /// Mark every pending submission skipped with `reason`. Returns how many.
    fn skip_pending_submissions(&mut self, reason: &str) -> Result<u64, StoreError>;

    /// How many submissions are in each state.
    fn submission_counts(&self) -> Result<Vec<(String, u64)>, StoreError>;

    fn add_sandbox_task(&mut self, task: &SandboxTask) -> Result<(), StoreError>;

    fn sandbox_task(&self, id: &str) -> Result<Option<SandboxTask>, StoreError>;

    /// Tasks in a state, oldest first.
    fn sandbox_tasks_in(&self, status: &str, limit: usize) -> Result<Vec<SandboxTask>, StoreError>;

    /// Write back a task's state and result (by id).
    fn update_sandbox_task(&mut self, task: &SandboxTask) -> Result<(), StoreError>;

    /// The newest analysis of `object` — a task that succeeded, not an answer from the cache —
    /// finished at or after `since`.
    fn analysed_since(&self, object: &str, since: i64) -> Result<Option<SandboxTask>, StoreError>;

    /// What `origin` used on `day`.
    fn sandbox_usage(&self, origin: &str, day: i64) -> Result<SandboxUsage, StoreError>;
}
