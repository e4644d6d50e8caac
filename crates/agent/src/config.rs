//! The agent's configuration: a TOML file (unknown fields refused), flags override it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// The hub, e.g. `https://hub.example:8443`.
    pub hub: String,
    /// The device token (`rhd_…`), or…
    pub token: Option<String>,
    /// …a file holding it (mode 0600), so that it is not in the config or the process list.
    pub token_file: Option<PathBuf>,
    /// Where the filter set and the event spool are kept.
    pub data_dir: PathBuf,
    /// The name reported to the hub (the host name by default).
    pub name: Option<String>,
    /// The management address reported to the hub.
    pub address: Option<String>,
    /// `nftables` or `none` (the check endpoint only).
    pub backend: Backend,
    /// The nftables table rephub owns (family `inet`).
    pub nft_table: String,
    pub nft_bin: String,
    /// The local check endpoint (`GET /check?ip=…`); none if unset.
    pub check_listen: Option<SocketAddr>,
    /// Seconds a sync request waits for a change (the long poll).
    pub wait_secs: u64,
    /// How often detection events are collected and sent.
    pub events_secs: u64,
    /// How often the agent reports its state to the hub.
    pub report_secs: u64,
    /// Accept any certificate from the hub (self-signed test hubs only).
    pub insecure: bool,
    /// A CA certificate (PEM) to verify the hub with, besides the system roots.
    pub ca_file: Option<PathBuf>,
    /// Longest pause between retries after failures.
    pub max_backoff_secs: u64,
    /// A Suricata to drive (docs/suricata.md); none if unset.
    pub suricata: Option<SuricataConfig>,
    /// FIPS mode: no network telemetry is collected or sent (seed 002, chapter 10).
    pub fips_mode: bool,
    /// The network sensor the hub may switch on (docs/network-sensor.md); none if unset.
    pub sensor: Option<SensorConfig>,
    /// The agent's own TLS capture on an interface, for hosts without Suricata (off in FIPS
    /// mode); none if unset.
    pub capture: Option<CaptureConfig>,
}

/// `[sensor]`: how the agent starts and stops the network sensor (Suricata with telemetry) when
/// the hub asks, and how it knows the sensor inspects traffic.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SensorConfig {
    /// The command that starts it, e.g. `["systemctl", "enable", "--now", "suricata"]`.
    pub enable: Vec<String>,
    /// The command that stops it, e.g. `["systemctl", "disable", "--now", "suricata"]`.
    pub disable: Vec<String>,
    /// A command that succeeds once the sensor inspects traffic; without one, Suricata's command
    /// socket (of `[suricata]`) must answer `uptime`.
    #[serde(default)]
    pub health: Vec<String>,
    /// How long the sensor may take to become healthy (and a command to end).
    #[serde(default = "default_health_timeout_secs")]
    pub health_timeout_secs: u64,
    /// Where the sensor keeps its data: its free space is reported (the hub wants 50 GB).
    #[serde(default = "default_sensor_data_dir")]
    pub data_dir: PathBuf,
}

fn default_health_timeout_secs() -> u64 {
    300
}

fn default_sensor_data_dir() -> PathBuf {
    PathBuf::from("/var/log/suricata")
}

/// `[capture]`: TLS handshakes read off an interface by the agent itself.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureConfig {
    /// The interface (`eth0`); the agent needs root or CAP_NET_RAW.
    pub interface: String,
    /// Most handshakes kept on disk while the hub is away (without a `[suricata]`; with one,
    /// its `telemetry_max_pending` counts for both).
    #[serde(default = "default_telemetry_max_pending")]
    pub max_pending: usize,
}

/// `[suricata]`: the rules file the agent writes, the command socket it reloads through, the
/// `eve.json` it reads alerts from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuricataConfig {
    /// The rules file, listed in suricata.yaml's `rule-files`; the agent owns it.
    pub rules_file: PathBuf,
    /// Suricata's `unix-command` socket.
    pub socket: PathBuf,
    /// Suricata's `eve.json` (with `alert` records).
    pub eve: PathBuf,
    /// How often the hub is asked for a new IPS policy.
    #[serde(default = "default_policy_secs")]
    pub policy_secs: u64,
    /// Longest wait for Suricata to reload its rules.
    #[serde(default = "default_reload_timeout_secs")]
    pub reload_timeout_secs: u64,
    /// Send the `tls` records of `eve.json` to the hub as network telemetry (docs/telemetry.md);
    /// off in FIPS mode whatever this says.
    #[serde(default = "default_telemetry")]
    pub telemetry: bool,
    /// Most TLS records kept on disk while the hub cannot be reached; more are counted as lost.
    #[serde(default = "default_telemetry_max_pending")]
    pub telemetry_max_pending: usize,
    /// Suricata's file-store (`version: 2`) directory: the files it extracted from traffic are
    /// sent to the hub for sandbox analysis while Send to Sandbox is on (docs/sandbox.md).
    #[serde(default)]
    pub filestore: Option<PathBuf>,
    /// Larger files are not sent (counted as skipped).
    #[serde(default = "default_max_file_bytes")]
    pub max_file_bytes: u64,
}

fn default_max_file_bytes() -> u64 {
    16 << 20
}

fn default_telemetry() -> bool {
    true
}

fn default_telemetry_max_pending() -> usize {
    crate::events::DEFAULT_MAX_TLS
}

fn default_policy_secs() -> u64 {
    30
}

fn default_reload_timeout_secs() -> u64 {
    300
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Nftables,
    None,
}

impl Default for AgentConfig {
    fn default() -> AgentConfig {
        AgentConfig {
            hub: "http://127.0.0.1:8080".into(),
            token: None,
            token_file: None,
            data_dir: PathBuf::from("rephub-agent-data"),
            name: None,
            address: None,
            backend: Backend::Nftables,
            nft_table: "rephub".into(),
            nft_bin: "nft".into(),
            check_listen: None,
            wait_secs: 30,
            events_secs: 10,
            report_secs: 60,
            insecure: false,
            ca_file: None,
            max_backoff_secs: 60,
            suricata: None,
            fips_mode: false,
            sensor: None,
            capture: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

impl AgentConfig {
    pub fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Whether the `tls` records of `eve.json` are sent to the hub: with a Suricata whose
    /// `telemetry` is on, never in FIPS mode.
    pub fn telemetry(&self) -> bool {
        !self.fips_mode && self.suricata.as_ref().is_some_and(|s| s.telemetry)
    }

    /// Whether the agent collects TLS telemetry at all: from `eve.json`, or its own capture;
    /// never in FIPS mode.
    pub fn collects_telemetry(&self) -> bool {
        self.telemetry() || (!self.fips_mode && self.capture.is_some())
    }

    /// The token, from the config or its file.
    pub fn token(&self) -> Result<String, ConfigError> {
        let t = match (&self.token, &self.token_file) {
            (Some(t), _) => t.clone(),
            (None, Some(p)) => std::fs::read_to_string(p)
                .map_err(|source| ConfigError::Read {
                    path: p.clone(),
                    source,
                })?
                .trim()
                .to_string(),
            (None, None) => {
                return Err(ConfigError::Invalid {
                    field: "token",
                    reason: "a device token is required (token, token_file or --token)".into(),
                });
            }
        };
        if t.is_empty() || t.contains(char::is_whitespace) {
            return Err(ConfigError::Invalid {
                field: "token",
                reason: "empty or contains spaces".into(),
            });
        }
        Ok(t)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.hub.starts_with("http://") || self.hub.starts_with("https://")) {
            return Err(ConfigError::Invalid {
                field: "hub",
                reason: format!("{:?} is not an http:// or https:// URL", self.hub),
            });
        }
        if self.wait_secs > 300 {
            return Err(ConfigError::Invalid {
                field: "wait_secs",
                reason: "at most 300".into(),
            });
        }
        for (field, v) in [
            ("events_secs", self.events_secs),
            ("report_secs", self.report_secs),
            ("max_backoff_secs", self.max_backoff_secs),
        ] {
            if v == 0 {
                return Err(ConfigError::Invalid {
                    field,
                    reason: "must be at least 1".into(),
                });
            }
        }
        if let Some(s) = &self.suricata {
            for (field, v) in [
                ("suricata.policy_secs", s.policy_secs),
                ("suricata.reload_timeout_secs", s.reload_timeout_secs),
            ] {
                if v == 0 {
                    return Err(ConfigError::Invalid {
                        field,
                        reason: "must be at least 1".into(),
                    });
                }
            }
        }
        if let Some(s) = &self.sensor {
            if s.enable.is_empty() || s.disable.is_empty() {
                return Err(ConfigError::Invalid {
                    field: "sensor",
                    reason: "enable and disable are commands (a program and its arguments)".into(),
                });
            }
            if s.health.is_empty() && self.suricata.is_none() {
                return Err(ConfigError::Invalid {
                    field: "sensor.health",
                    reason: "a health command, or a [suricata] section whose socket is asked"
                        .into(),
                });
            }
            if s.health_timeout_secs == 0 {
                return Err(ConfigError::Invalid {
                    field: "sensor.health_timeout_secs",
                    reason: "must be at least 1".into(),
                });
            }
        }
        if self.nft_table.is_empty()
            || !self
                .nft_table
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(ConfigError::Invalid {
                field: "nft_table",
                reason: "letters, digits, '_' and '-' only".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_parses_and_typos_are_refused() {
        let doc = include_str!("../../../docs/agent.md");
        let start = doc.find("```toml\n").map(|i| i + 8).unwrap_or(0);
        let len = doc[start..].find("```").unwrap_or(0);
        let c: AgentConfig = toml::from_str(&doc[start..start + len]).unwrap();
        c.validate().unwrap();
        assert_eq!(c.backend, Backend::Nftables);
        assert!(c.check_listen.is_some());
        assert!(toml::from_str::<AgentConfig>("hub_url = \"x\"").is_err());
        // And the one of docs/suricata.md.
        let doc = include_str!("../../../docs/suricata.md");
        let start = doc.find("```toml\n").map(|i| i + 8).unwrap_or(0);
        let len = doc[start..].find("```").unwrap_or(0);
        let c: AgentConfig = toml::from_str(&doc[start..start + len]).unwrap();
        c.validate().unwrap();
        assert!(c.telemetry(), "telemetry is on by default with a Suricata");
        let fips = AgentConfig {
            fips_mode: true,
            ..c.clone()
        };
        assert!(!fips.telemetry(), "FIPS mode turns it off");
        assert!(
            !AgentConfig::default().telemetry(),
            "no Suricata, no telemetry"
        );
        assert!(fips.collects_telemetry() == fips.telemetry() && c.collects_telemetry());
        // The own capture collects telemetry without a Suricata, but not in FIPS mode.
        let capture = AgentConfig {
            capture: Some(CaptureConfig {
                interface: "eth0".into(),
                max_pending: 10,
            }),
            ..AgentConfig::default()
        };
        assert!(capture.collects_telemetry() && !capture.telemetry());
        assert!(
            !AgentConfig {
                fips_mode: true,
                ..capture
            }
            .collects_telemetry()
        );
        let s = c.suricata.unwrap();
        assert_eq!((s.policy_secs, s.reload_timeout_secs), (30, 300));
        assert_eq!((s.telemetry, s.telemetry_max_pending), (true, 200_000));
        assert!(toml::from_str::<AgentConfig>("[suricata]\nrules = \"x\"").is_err());
        // The network sensor: commands, and a health check or a Suricata to ask.
        let sensor = |extra: &str| {
            toml::from_str::<AgentConfig>(&format!(
                "[sensor]\nenable = [\"systemctl\", \"enable\", \"--now\", \"suricata\"]\n\
                 disable = [\"systemctl\", \"disable\", \"--now\", \"suricata\"]\n{extra}"
            ))
            .map_err(|e| e.to_string())
            .and_then(|c| c.validate().map(|()| c).map_err(|e| e.to_string()))
        };
        let c = sensor("health = [\"true\"]\n").unwrap();
        let s = c.sensor.unwrap();
        assert_eq!(
            (s.health_timeout_secs, s.data_dir),
            (300, PathBuf::from("/var/log/suricata"))
        );
        assert!(sensor("").unwrap_err().contains("sensor.health"));
        assert!(sensor("health = [\"true\"]\nhealth_timeout = 3\n").is_err());
        assert!(toml::from_str::<AgentConfig>("backend = \"iptables\"").is_err());
        let bad = AgentConfig {
            nft_table: "x; flush ruleset".into(),
            ..AgentConfig::default()
        };
        assert!(bad.validate().is_err());
    }
}
