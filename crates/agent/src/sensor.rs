//! The network sensor (seed 002, chapter 6; docs/network-sensor.md): the hub asks, in the answer
//! to the agent's report, whether the sensor (Suricata with telemetry) is to run; the agent
//! starts or stops it with the commands of `[sensor]` (`systemctl enable --now suricata` and the
//! like), waits until its health check passes ("Ready to Inspect"), and reports each state:
//! `starting`, then `ready` or `failed` with the reason; `off` once stopped. Each request carries
//! a generation, echoed in the report, so the hub knows which request a state answers. It also
//! reports the free space where the sensor keeps its data, which the hub checks before asking.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::SensorConfig;

/// What the hub asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Desired {
    pub enabled: bool,
    #[serde(default)]
    pub sandbox: bool,
    pub generation: u64,
}

/// What the agent reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reported {
    pub enabled: bool,
    pub sandbox: bool,
    /// `off`, `starting`, `ready`, `failed`.
    pub state: &'static str,
    pub generation: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub free_mib: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Default for Reported {
    fn default() -> Reported {
        Reported {
            enabled: false,
            sandbox: false,
            state: "off",
            generation: 0,
            free_mib: None,
            error: None,
        }
    }
}

/// The state kept in `path` (`data_dir/sensor.json`), so that a restarted agent neither runs
/// the sensor's commands again for a request it carried out nor forgets a failure. A request
/// that was being carried out when the agent stopped (`starting`) is carried out again.
pub fn load(path: &Path) -> Reported {
    let Ok(v) = std::fs::read(path).map(|t| serde_json::from_slice::<serde_json::Value>(&t)) else {
        return Reported::default();
    };
    let Ok(v) = v else {
        tracing::warn!(path = %path.display(), "the sensor's state on disk is unreadable; starting afresh");
        return Reported::default();
    };
    let state = match v["state"].as_str() {
        Some("ready") => "ready",
        Some("failed") => "failed",
        Some("off") => "off",
        _ => return Reported::default(),
    };
    Reported {
        enabled: v["enabled"].as_bool().unwrap_or(false),
        sandbox: v["sandbox"].as_bool().unwrap_or(false),
        state,
        generation: v["generation"].as_u64().unwrap_or(0),
        free_mib: None,
        error: v["error"].as_str().map(str::to_string),
    }
}

/// Keep `r` in `path` (written aside, synced, renamed over).
pub fn save(path: &Path, r: &Reported) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(r).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// Free space at `path` in MiB (what an unprivileged writer may use), `None` if unreadable.
pub fn free_mib(path: &Path) -> Option<u64> {
    let s = rustix::fs::statvfs(path).ok()?;
    Some(s.f_bavail.saturating_mul(s.f_frsize) >> 20)
}

/// Run `argv` to its end within `timeout`: `Err` with the exit status and the end of its error
/// output when it fails.
async fn run(argv: &[String], timeout: Duration) -> Result<(), String> {
    let Some((program, args)) = argv.split_first() else {
        return Ok(());
    };
    let out = tokio::time::timeout(
        timeout,
        tokio::process::Command::new(program)
            .args(args)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| format!("{program}: no end within {} s", timeout.as_secs()))?
    .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let tail: String = err
        .trim()
        .chars()
        .rev()
        .take(300)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    Err(format!(
        "{program}: {}{}",
        out.status,
        if tail.is_empty() {
            String::new()
        } else {
            format!(": {tail}")
        }
    ))
}

/// Whether the sensor inspects traffic: the configured health command, else Suricata's command
/// socket answering `uptime`.
async fn healthy(cfg: &SensorConfig, socket: Option<&Path>) -> Result<(), String> {
    if !cfg.health.is_empty() {
        return run(&cfg.health, Duration::from_secs(30)).await;
    }
    let Some(socket) = socket.map(Path::to_path_buf) else {
        return Err("no health command and no Suricata socket to ask".into());
    };
    tokio::task::spawn_blocking(move || {
        crate::suricata::Socket::new(&socket, Duration::from_secs(5))
            .command("uptime")
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Carry out `want`: the states it goes through are given to `report` as they come.
pub async fn apply(
    cfg: &SensorConfig,
    socket: Option<&Path>,
    want: Desired,
    mut report: impl FnMut(Reported),
) {
    let state = |state: &'static str, error: Option<String>| Reported {
        enabled: want.enabled,
        sandbox: want.sandbox,
        state,
        generation: want.generation,
        free_mib: None,
        error,
    };
    report(state("starting", None));
    let timeout = Duration::from_secs(cfg.health_timeout_secs);
    let command = if want.enabled {
        &cfg.enable
    } else {
        &cfg.disable
    };
    if let Err(e) = run(command, timeout).await {
        tracing::error!(error = %e, enable = want.enabled, "the network sensor command failed");
        report(state("failed", Some(e)));
        return;
    }
    if !want.enabled {
        tracing::info!("network sensor stopped");
        report(state("off", None));
        return;
    }
    // Ready once the health check passes, within the timeout.
    let until = Instant::now() + timeout;
    let mut last = String::new();
    while Instant::now() < until {
        match healthy(cfg, socket).await {
            Ok(()) => {
                tracing::info!("network sensor ready to inspect");
                report(state("ready", None));
                return;
            }
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tracing::error!(error = %last, "the network sensor did not become healthy");
    report(state(
        "failed",
        Some(format!(
            "the health check did not pass within {} s: {last}",
            cfg.health_timeout_secs
        )),
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(enable: &str, health: &str, secs: u64) -> SensorConfig {
        let argv = |s: &str| -> Vec<String> { s.split_whitespace().map(str::to_string).collect() };
        SensorConfig {
            enable: argv(enable),
            disable: argv("true"),
            health: argv(health),
            health_timeout_secs: secs,
            data_dir: std::env::temp_dir(),
        }
    }

    async fn states(c: &SensorConfig, enabled: bool) -> Vec<Reported> {
        let mut seen = Vec::new();
        let want = Desired {
            enabled,
            sandbox: false,
            generation: 7,
        };
        apply(c, None, want, |r| seen.push(r)).await;
        seen
    }

    #[tokio::test]
    async fn a_sensor_starts_fails_or_stops_and_says_so() {
        let s = states(&cfg("true", "true", 5), true).await;
        assert_eq!(
            s.iter().map(|r| r.state).collect::<Vec<_>>(),
            ["starting", "ready"]
        );
        assert!(s.iter().all(|r| r.generation == 7 && r.enabled));
        let s = states(&cfg("false", "true", 5), true).await;
        assert_eq!(s[1].state, "failed");
        assert!(
            s[1].error
                .as_deref()
                .unwrap()
                .starts_with("false: exit status: 1"),
            "{s:?}"
        );
        let s = states(&cfg("true", "false", 2), true).await;
        assert_eq!(s[1].state, "failed");
        assert!(
            s[1].error
                .as_deref()
                .unwrap()
                .contains("health check did not pass within 2 s"),
            "{s:?}"
        );
        let s = states(&cfg("true", "false", 2), false).await;
        assert_eq!(s.last().map(|r| r.state), Some("off"));
        assert!(free_mib(&std::env::temp_dir()).is_some_and(|m| m > 0));
        // Kept across restarts; a request cut short is carried out again (generation 0).
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sensor.json");
        assert_eq!(load(&path), Reported::default());
        let failed = states(&cfg("false", "true", 5), true).await.pop().unwrap();
        save(&path, &failed).unwrap();
        assert_eq!(load(&path), failed);
        save(&path, &s[0]).unwrap();
        assert_eq!(s[0].state, "starting");
        assert_eq!(load(&path).generation, 0);
        std::fs::write(&path, b"{not json").unwrap();
        assert_eq!(load(&path), Reported::default());
        assert_eq!(free_mib(Path::new("/nonexistent/x")), None);
    }
}
