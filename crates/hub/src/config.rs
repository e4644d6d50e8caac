//! The hub's configuration: a TOML file (every field optional, unknown fields refused), then
//! environment overrides, then defaults. With no file at all the hub runs on `./rephub-data` and
//! listens on loopback.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the database (`rephub.db`) lives.
    pub data_dir: PathBuf,
    /// The database, if not `rephub.db` in `data_dir`: another file, or a PostgreSQL connection
    /// string (`postgres://rephub@db.example/rephub`) for several replicas on one database.
    pub db: Option<PathBuf>,
    /// The key that encrypts stored credentials (32 bytes), if not `secret.key` in `data_dir`
    /// (made there on first start). Replicas on one PostgreSQL database must share it: give each
    /// the same file (`REPHUB_SECRET_KEY_FILE`). It is never stored in the database.
    pub secret_key_file: Option<PathBuf>,
    /// Address to listen on (plain HTTP). Loopback by default: expose it deliberately.
    pub listen: SocketAddr,
    /// Serve HTTPS too.
    pub tls: bool,
    /// Address of the HTTPS listener.
    pub tls_listen: SocketAddr,
    /// PEM certificate chain and private key; without them a self-signed certificate is made on
    /// first start and kept in `data_dir/tls/`.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Log filter, as in `RUST_LOG` (`info`, `rephub_hub=debug`, ...).
    pub log: String,
    /// `text` (colours only on a terminal) or `json` (one object per line, for log shippers).
    pub log_format: LogFormat,
    /// Longest a request may take before it is answered 408.
    pub request_timeout_secs: u64,
    /// Largest request body (SMS import files included), in MiB.
    pub max_body_mib: usize,
    /// SQLite page cache, in MiB.
    pub cache_mib: u32,
    /// How often expired entries are removed (and the removal distributed), in seconds.
    pub sweep_secs: u64,
    /// Days TLS telemetry is kept (by handshake time); 0 keeps it forever.
    pub telemetry_retention_days: u64,
    /// SOA refresh of the RPZ zones (`/rpz/<profile>.zone`): how often a resolver that fetches
    /// them by URL downloads them again, in seconds.
    pub rpz_refresh_secs: u32,
    /// The URL clients reach this hub at (`https://hub.example:8443`), for the absolute links of
    /// the Vision One-compatible API; by default taken from each request's `Host`.
    pub public_url: Option<String>,
    /// The shortest IPv4 and IPv6 prefixes a write may carry without `force` (default /8 and
    /// /16): broader networks would block everything on every device.
    pub min_prefix_v4: u8,
    pub min_prefix_v6: u8,
    /// Threat-intelligence sources kept in this file (see docs/sources.md); sources can also be
    /// managed through the REST API.
    pub sources: Vec<crate::sources::spec::SourceSpec>,
    /// Sharing: the spool's limits and the sinks (see docs/sharing.md).
    pub sharing: crate::sharing::spec::SharingConfig,
    /// RPZ zones over DNS: AXFR, IXFR and NOTIFY for BIND, Knot and PowerDNS secondaries (see
    /// docs/rpz-transfer.md). Off unless `listen` is set.
    pub rpz_dns: RpzDnsConfig,
    /// Sandbox analysis: the analyzer this hub submits its devices' URLs to, and its own
    /// analyzer (see docs/sandbox.md).
    pub sandbox: crate::sandbox::config::SandboxConfig,
}

/// RPZ zones served over DNS.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RpzDnsConfig {
    /// Address for DNS over TCP (transfers) and UDP (SOA queries, NOTIFY); off when unset.
    pub listen: Option<SocketAddr>,
    /// The zone of profile `P` is `P.<zone_suffix>`.
    pub zone_suffix: String,
    /// Secondaries to NOTIFY when a zone changes (`address:port`).
    pub notify: Vec<SocketAddr>,
    /// A TSIG key (RFC 8945): when set, every request must be signed with it (unless it comes
    /// from `allow_unsigned`), answers are signed, and so are NOTIFYs.
    pub tsig_name: Option<String>,
    /// `hmac-sha256` (default), `hmac-sha384` or `hmac-sha512`.
    pub tsig_algorithm: String,
    /// The key, base64 (as `tsig-keygen` prints it), or a file holding it.
    pub tsig_secret: Option<String>,
    pub tsig_secret_file: Option<PathBuf>,
    /// Networks that may ask without TSIG. Default: loopback when no key is set, nobody when one
    /// is.
    pub allow_unsigned: Option<Vec<ipnet::IpNet>>,
}

impl Default for RpzDnsConfig {
    fn default() -> RpzDnsConfig {
        RpzDnsConfig {
            listen: None,
            zone_suffix: "rpz.rephub".into(),
            notify: Vec::new(),
            tsig_name: None,
            tsig_algorithm: "hmac-sha256".into(),
            tsig_secret: None,
            tsig_secret_file: None,
            allow_unsigned: None,
        }
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            data_dir: PathBuf::from("rephub-data"),
            db: None,
            secret_key_file: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tls: true,
            tls_listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            tls_cert: None,
            tls_key: None,
            log: "info".into(),
            log_format: LogFormat::Text,
            request_timeout_secs: 60,
            max_body_mib: 64,
            cache_mib: 512,
            sweep_secs: 30,
            telemetry_retention_days: 14,
            rpz_refresh_secs: 60,
            public_url: None,
            min_prefix_v4: 8,
            min_prefix_v6: 16,
            sources: Vec::new(),
            sharing: crate::sharing::spec::SharingConfig::default(),
            rpz_dns: RpzDnsConfig::default(),
            sandbox: crate::sandbox::config::SandboxConfig::default(),
        }
    }
}

impl Config {
    /// The breadth limit of writes.
    pub fn min_prefix(&self) -> rephub_model::MinPrefix {
        rephub_model::MinPrefix {
            v4: self.min_prefix_v4,
            v6: self.min_prefix_v6,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: String,
        source: Box<toml::de::Error>,
    },
    #[error("environment variable {name}: {reason}")]
    Env { name: &'static str, reason: String },
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// For people: colours when the output is a terminal, plain text otherwise.
    #[default]
    Text,
    /// One JSON object per line, with the fields of the request it belongs to.
    Json,
}

impl Config {
    /// The file (if any), then `REPHUB_DATA_DIR`, `REPHUB_LISTEN`, `REPHUB_LOG`,
    /// `REPHUB_LOG_FORMAT`, `REPHUB_SECRET_KEY_FILE`.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                Config::parse(&text).map_err(|source| ConfigError::Parse {
                    path: path.display().to_string(),
                    source: Box::new(source),
                })?
            }
            None => Config::default(),
        };
        config.apply_env(|name| std::env::var(name).ok())?;
        config.validate()?;
        Ok(config)
    }

    pub fn parse(text: &str) -> Result<Config, toml::de::Error> {
        toml::from_str(text)
    }

    fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(v) = get("REPHUB_DATA_DIR") {
            self.data_dir = PathBuf::from(v);
        }
        if let Some(v) = get("REPHUB_LISTEN") {
            self.listen = v.parse().map_err(|e| ConfigError::Env {
                name: "REPHUB_LISTEN",
                reason: format!("{v:?} is not an address:port ({e})"),
            })?;
        }
        if let Some(v) = get("REPHUB_SECRET_KEY_FILE") {
            self.secret_key_file = Some(PathBuf::from(v));
        }
        if let Some(v) = get("REPHUB_LOG") {
            self.log = v;
        }
        if let Some(v) = get("REPHUB_LOG_FORMAT") {
            self.log_format = match v.as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                _ => {
                    return Err(ConfigError::Env {
                        name: "REPHUB_LOG_FORMAT",
                        reason: format!("{v:?}: text or json"),
                    });
                }
            };
        }
        Ok(())
    }

    /// Checks that need no I/O.
    pub fn validate(&self) -> Result<(), ConfigError> {
        crate::validate::secs("request_timeout_secs", self.request_timeout_secs, 1).map_err(
            |e| ConfigError::Invalid {
                field: "request_timeout_secs",
                reason: e.reason,
            },
        )?;
        self.sandbox
            .check()
            .map_err(|(field, reason)| ConfigError::Invalid { field, reason })?;
        if self.telemetry_retention_days > 36_500 {
            return Err(ConfigError::Invalid {
                field: "telemetry_retention_days",
                reason: "0 (forever) to 36500".into(),
            });
        }
        crate::validate::secs("sweep_secs", self.sweep_secs, 1).map_err(|e| {
            ConfigError::Invalid {
                field: "sweep_secs",
                reason: e.reason,
            }
        })?;
        let mut names = std::collections::HashSet::new();
        for s in &self.sources {
            s.validate().map_err(|e| ConfigError::Invalid {
                field: "sources",
                reason: format!("{}: {e}", s.name()),
            })?;
            if !names.insert(s.name()) {
                return Err(ConfigError::Invalid {
                    field: "sources",
                    reason: format!("{}: two sources of that name", s.name()),
                });
            }
        }
        crate::validate::secs("rpz_refresh_secs", u64::from(self.rpz_refresh_secs), 1).map_err(
            |e| ConfigError::Invalid {
                field: "rpz_refresh_secs",
                reason: e.reason,
            },
        )?;
        let d = &self.rpz_dns;
        let dns = |reason: String| ConfigError::Invalid {
            field: "rpz_dns",
            reason,
        };
        if hickory_proto::rr::Name::from_ascii(&d.zone_suffix).is_err() || d.zone_suffix.is_empty()
        {
            return Err(dns(format!(
                "zone_suffix: {:?} is not a domain name",
                d.zone_suffix
            )));
        }
        if d.tsig_secret.is_some() && d.tsig_secret_file.is_some() {
            return Err(dns("give tsig_secret or tsig_secret_file, not both".into()));
        }
        if d.tsig_name.is_some() != (d.tsig_secret.is_some() || d.tsig_secret_file.is_some()) {
            return Err(dns("tsig_name and a tsig secret go together".into()));
        }
        if !matches!(
            d.tsig_algorithm.as_str(),
            "hmac-sha256" | "hmac-sha384" | "hmac-sha512"
        ) {
            return Err(dns(format!(
                "tsig_algorithm: {:?}: hmac-sha256, hmac-sha384 or hmac-sha512",
                d.tsig_algorithm
            )));
        }
        if self.min_prefix_v4 > 32 || self.min_prefix_v6 > 128 {
            return Err(ConfigError::Invalid {
                field: "min_prefix_v4",
                reason: "min_prefix_v4 is 0 to 32, min_prefix_v6 0 to 128".into(),
            });
        }
        self.sharing
            .validate()
            .map_err(|reason| ConfigError::Invalid {
                field: "sharing",
                reason,
            })?;
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError::Invalid {
                field: "tls_cert",
                reason: "tls_cert and tls_key go together".into(),
            });
        }
        if !(1..=4096).contains(&self.max_body_mib) {
            return Err(ConfigError::Invalid {
                field: "max_body_mib",
                reason: "must be between 1 and 4096".into(),
            });
        }
        Ok(())
    }

    /// Where the database is: `db` (a file or a PostgreSQL connection string), else
    /// `rephub.db` in `data_dir`.
    pub fn db_location(&self) -> rephub_store::Location {
        match &self.db {
            Some(db) => rephub_store::Location::parse(&db.to_string_lossy()),
            None => rephub_store::Location::Sqlite(self.data_dir.join("rephub.db")),
        }
    }

    pub fn max_body_bytes(&self) -> usize {
        self.max_body_mib << 20
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example in docs/hub.md parses and means what it says.
    #[test]
    fn documented_example_parses() {
        let doc = include_str!("../../../docs/hub.md");
        let start = doc.find("```toml\n").expect("docs/hub.md has a toml block") + 8;
        let len = doc[start..].find("```").expect("the block ends");
        let c = Config::parse(&doc[start..start + len]).unwrap();
        assert_eq!(c.listen.port(), 8080);
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/rephub"));
        assert_eq!(c.max_body_bytes(), 128 << 20);
        assert_eq!(c.request_timeout_secs, 30);
        assert_eq!(c.sources.len(), 2);
        assert_eq!(c.sources[0].kind(), "visionone");
        assert_eq!(c.sources[1].interval_secs(), 3600);
        assert_eq!(c.sharing.sinks.len(), 3);
        assert_eq!(c.sharing.sinks[0].name(), "siem");
        assert_eq!(c.sharing.sinks[2].name(), "broker");
        assert_eq!(
            c.sharing.sinks[2].streams(),
            ["events", "received_events", "received_telemetry"]
        );
        assert_eq!(c.sharing.sinks[0].batch(), (1000, 10));
        assert_eq!(c.sharing.upstream_batch_secs, 60);
        assert_eq!(c.sharing.telemetry_batch_secs, 2);
        assert_eq!(c.telemetry_retention_days, 14);
        assert_eq!(c.sharing.sinks[1].streams(), ["events", "telemetry"]);
        c.validate().unwrap();
        let twice = Config {
            sources: vec![c.sources[1].clone(), c.sources[1].clone()],
            ..Config::default()
        };
        assert!(twice.validate().is_err());
        assert_eq!(Config::parse("").unwrap(), Config::default());
    }

    #[test]
    fn unknown_fields_and_bad_values_are_refused() {
        let e = Config::parse("listen_addr = \"1.2.3.4:1\"").unwrap_err();
        assert!(e.to_string().contains("listen_addr"), "{e}");
        assert!(Config::parse("listen = \"nowhere\"").is_err());
        let c = Config {
            max_body_mib: 0,
            ..Config::default()
        };
        assert!(c.validate().is_err());
    }

    #[test]
    fn sinks_take_the_streams_they_can_carry() {
        let sink = |kind: &str, streams: &str| {
            let extra = if kind == "file" {
                "path = \"/tmp/x.jsonl\""
            } else {
                "address = \"127.0.0.1:514\""
            };
            Config::parse(&format!(
                "[[sharing.sinks]]\nkind = \"{kind}\"\nname = \"s\"\n{extra}\nstreams = {streams}\n"
            ))
            .unwrap()
            .validate()
            .map_err(|e| e.to_string())
        };
        assert_eq!(
            sink(
                "file",
                r#"["events", "filter_status", "inventory", "telemetry"]"#
            ),
            Ok(())
        );
        assert_eq!(sink("syslog", r#"["events"]"#), Ok(()));
        let e = sink("syslog", r#"["events", "telemetry"]"#).unwrap_err();
        assert!(e.contains("events stream only"), "{e}");
        let e = sink("file", r#"["tls"]"#).unwrap_err();
        assert!(
            e.contains("unknown stream") && e.contains("telemetry"),
            "{e}"
        );
    }

    #[test]
    fn environment_overrides_the_file() {
        let mut c = Config::default();
        c.apply_env(|n| match n {
            "REPHUB_LISTEN" => Some("127.0.0.1:9999".into()),
            "REPHUB_DATA_DIR" => Some("/tmp/x".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.listen.port(), 9999);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        assert!(
            c.apply_env(|n| (n == "REPHUB_LISTEN").then(|| "bad".into()))
                .is_err()
        );
    }
}
