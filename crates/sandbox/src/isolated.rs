//! The fetch in a child process inside a network namespace: `ip netns exec <netns> <rephub>
//! sandbox-fetch …`. The namespace is the operator's (docs/sandbox.md shows one with its own
//! route out and no way into the hub's networks); the hub refuses to analyse without one. The
//! child is killed when it outlives its limits, and when the hub drops the fetch.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use crate::fetch::{Limits, Report};

/// Time the child gets beyond its own deadline to start and report before it is killed.
const GRACE: Duration = Duration::from_secs(10);
/// Most bytes of a child's report (a chain of hops, each at most a long URL).
const MAX_REPORT: u64 = 1 << 20;

/// Where and how fetches run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Isolation {
    /// The network namespace (`ip netns add …`).
    pub netns: String,
    /// The rephub executable the child runs (`sandbox-fetch`).
    pub exe: PathBuf,
    /// `ip`.
    pub ip: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum IsolationError {
    #[error("starting the fetch in network namespace {netns}: {error}")]
    Start {
        netns: String,
        error: std::io::Error,
    },
    #[error("the fetch in network namespace {netns} failed: {detail}")]
    Child { netns: String, detail: String },
    #[error("the fetch in network namespace {netns} ran past its limits and was killed")]
    Killed { netns: String },
}

impl Isolation {
    pub fn new(netns: impl Into<String>, exe: impl Into<PathBuf>) -> Isolation {
        Isolation {
            netns: netns.into(),
            exe: exe.into(),
            ip: PathBuf::from("ip"),
        }
    }

    /// Fetch `url` in the namespace; the body lands in `out`.
    pub async fn fetch(
        &self,
        url: &str,
        limits: &Limits,
        out: &Path,
    ) -> Result<Report, IsolationError> {
        let netns = || self.netns.clone();
        let mut child = tokio::process::Command::new(&self.ip)
            .args(["netns", "exec", &self.netns])
            .arg(&self.exe)
            .arg("sandbox-fetch")
            .arg("--timeout-ms")
            .arg(limits.timeout.as_millis().to_string())
            .arg("--max-bytes")
            .arg(limits.max_bytes.to_string())
            .arg("--max-redirects")
            .arg(limits.max_redirects.to_string())
            .arg("--out")
            .arg(out)
            .arg("--")
            .arg(url)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| IsolationError::Start {
                netns: netns(),
                error,
            })?;
        let (mut stdout, mut stderr) = match (child.stdout.take(), child.stderr.take()) {
            (Some(o), Some(e)) => (o.take(MAX_REPORT), e.take(8192)),
            _ => {
                return Err(IsolationError::Child {
                    netns: netns(),
                    detail: "no output pipes".into(),
                });
            }
        };
        let run = async {
            let mut out = Vec::new();
            let mut err = Vec::new();
            let (a, b, status) = tokio::join!(
                stdout.read_to_end(&mut out),
                stderr.read_to_end(&mut err),
                child.wait()
            );
            (a.and(b).and(status), out, err)
        };
        let (status, out, err) = match tokio::time::timeout(limits.timeout + GRACE, run).await {
            Ok(r) => r,
            // Dropping the future drops the child: kill_on_drop.
            Err(_) => return Err(IsolationError::Killed { netns: netns() }),
        };
        let err = String::from_utf8_lossy(&err).trim().to_string();
        match status {
            Ok(s) if s.success() => {
                serde_json::from_slice(&out).map_err(|e| IsolationError::Child {
                    netns: netns(),
                    detail: format!("an unreadable report ({e}) {err}")
                        .trim()
                        .to_string(),
                })
            }
            Ok(s) => Err(IsolationError::Child {
                netns: netns(),
                detail: format!("{s}: {err}"),
            }),
            Err(e) => Err(IsolationError::Child {
                netns: netns(),
                detail: e.to_string(),
            }),
        }
    }
}
