use std::path::PathBuf;

use anyhow::bail;
use clap::{Parser, Subcommand, ValueEnum};
use rephub_model::{CategoryType, NewCategory};

/// rephub — an open reputation hub for IP addresses, networks, domains, URLs and file hashes.
#[derive(Debug, Parser)]
#[command(name = "rephub", version, about, max_term_width = 100)]
pub struct Args {
    /// Data directory; the database is `rephub.db` inside it [default: rephub-data].
    #[arg(long, global = true, env = "REPHUB_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Database file (overrides --data-dir), or a PostgreSQL connection string
    /// (`postgres://user@host/db`) for a hub of several replicas on one database.
    #[arg(long, global = true, env = "REPHUB_DB", hide_env_values = true)]
    pub db: Option<PathBuf>,

    /// SQLite page cache in MiB. A bulk import into a large database runs faster with a larger
    /// cache; memory use grows up to it.
    #[arg(long, global = true, env = "REPHUB_CACHE_MIB", default_value_t = 512)]
    pub cache_mib: u32,

    /// Work against a running hub (`https://hub:8443`) instead of the database file: import,
    /// query, search, delete, categories and keys. For `agent`: the hub it syncs from. Filters,
    /// profiles, devices, distributions, sources, targets, events and status always talk to a hub:
    /// this one, or the hub on this machine (http://127.0.0.1:8080).
    #[arg(long, global = true, env = "REPHUB_HUB")]
    pub hub: Option<String>,

    /// API key for --hub.
    #[arg(long, global = true, env = "REPHUB_KEY", hide_env_values = true)]
    pub key: Option<String>,

    /// A file holding the API key (mode 0600; e.g. /etc/rephub/cli.key), instead of --key.
    #[arg(long, global = true, env = "REPHUB_KEY_FILE", conflicts_with = "key")]
    pub key_file: Option<PathBuf>,

    /// With --hub over HTTPS: accept the hub's self-signed certificate.
    #[arg(long, global = true)]
    pub insecure: bool,

    /// No progress bars and no summary lines.
    #[arg(long, short, global = true)]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

impl Args {
    pub(crate) fn db_location(&self) -> rephub_store::Location {
        match &self.db {
            Some(db) => rephub_store::Location::parse(&db.to_string_lossy()),
            None => rephub_store::Location::Sqlite(
                self.data_dir
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("rephub-data"))
                    .join("rephub.db"),
            ),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the hub: the reputation database behind its APIs (SMS, REST, Vision One, STIX, CrowdSec, RPZ), sources, distribution and targets.
    /// On first start it creates an admin API key and prints it once.
    Serve {
        /// TOML configuration file (see docs/hub.md); environment variables override it.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Address to listen on (overrides the configuration).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Address of the HTTPS listener (overrides the configuration).
        #[arg(long)]
        tls_listen: Option<std::net::SocketAddr>,
        /// Run as if the time were this many seconds later (drills and tests: certificate
        /// renewal, expiry). Never in production.
        #[arg(long, hide = true, default_value_t = 0, allow_negative_numbers = true)]
        clock_offset_secs: i64,
        /// Log lines as text or JSON (overrides the configuration's `log_format`).
        #[arg(long, value_enum)]
        log_format: Option<LogFormatArg>,
    },
    /// Fetch one URL for the sandbox analyzer and print what happened as JSON (the hub runs
    /// this inside its isolated network namespace; see docs/sandbox.md).
    #[command(hide = true)]
    SandboxFetch {
        #[arg(long)]
        timeout_ms: u64,
        #[arg(long)]
        max_bytes: u64,
        #[arg(long)]
        max_redirects: u32,
        /// Where the body goes.
        #[arg(long)]
        out: PathBuf,
        url: String,
    },
    /// Run the device agent: keep a profile's filter set from the hub (--hub) and enforce it with
    /// nftables and/or a local check endpoint (see docs/agent.md).
    Agent(AgentArgs),
    /// Manage API keys (stored hashed; a new key is shown once).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage the web console's users (name, role, password; passwords are read from standard
    /// input and stored as argon2id hashes).
    #[command(subcommand)]
    Users(UsersCommand),
    /// Import entries from files (SMS CSV, plain lists, JSON lines); `-` reads standard input.
    Import(ImportArgs),
    /// Look up entries by value; prints each found entry as an SMS query line.
    Query(QueryArgs),
    /// Search with SMS Entry Criteria and tag criteria.
    Search(SearchArgs),
    /// Write entries (all, or those matching criteria) to a file or standard output.
    Export(ExportArgs),
    /// Delete entries by value, by file, by source, or by criteria.
    Delete(DeleteArgs),
    /// Counts per kind and source, change-log cursor, database size.
    Stats,
    /// List or add tag categories.
    #[command(subcommand)]
    Categories(CategoriesCommand),
    /// Remove expired entries now (the TTL sweeper).
    Sweep,
    /// Connect this hub (--hub) to its upstream with an enrollment token (see docs/connection.md).
    Connect {
        /// The upstream hub's HTTPS URL (the previous one when reconnecting).
        #[arg(long)]
        upstream: Option<String>,
        /// The enrollment token made on the upstream.
        #[arg(long)]
        token: String,
        /// The SHA-256 of the upstream's CA, given with the token.
        #[arg(long)]
        fingerprint: String,
        #[command(flatten)]
        settings: ConnectionSettings,
    },
    /// Disconnect this hub (--hub) from its upstream; what it synced is kept.
    Disconnect,
    /// What this hub (--hub) shares: the spool and its sinks, parked records (see docs/sharing.md).
    #[command(subcommand)]
    Sharing(SharingCommand),
    /// Show this hub's (--hub) connection to its upstream and its status; with settings, change
    /// them first (no token needed); with --test, run Test Connectivity.
    Connection {
        #[command(flatten)]
        settings: ConnectionSettings,
        /// Check each enabled feature against the upstream (changes nothing).
        #[arg(long)]
        test: bool,
    },
    /// Reputation filters: list, show, add, edit, delete (through the hub's API).
    Filters {
        #[command(flatten)]
        view: crate::admin_args::View,
        #[command(subcommand)]
        command: crate::admin_args::FiltersCommand,
    },
    /// Profiles: ordered lists of filters that devices enforce.
    Profiles {
        #[command(flatten)]
        view: crate::admin_args::View,
        #[command(subcommand)]
        command: crate::admin_args::ProfilesCommand,
    },
    /// Devices: register (prints the token), list with sync status, delete, IPS state.
    Devices {
        #[command(flatten)]
        view: crate::admin_args::View,
        #[command(subcommand)]
        command: crate::admin_args::DevicesCommand,
    },
    /// Distribute a profile to devices, and see what each device runs.
    Distributions {
        #[command(flatten)]
        view: crate::admin_args::View,
        #[command(subcommand)]
        command: crate::admin_args::DistributionsCommand,
    },
    /// Threat-intelligence sources: list, show, add/edit from a spec file, delete, run (sync),
    /// test.
    Sources {
        #[command(flatten)]
        view: crate::admin_args::View,
        #[command(subcommand)]
        command: crate::admin_args::JobsCommand,
    },
    /// Distribution targets (SMS-compatible products): list, show, add/edit, delete, run, test,
    /// history.
    Targets {
        #[command(flatten)]
        view: crate::admin_args::View,
        #[command(subcommand)]
        command: crate::admin_args::JobsCommand,
    },
    /// Detection events the devices reported (reputation hits, IPS alerts), oldest first.
    Events {
        #[command(flatten)]
        view: crate::admin_args::View,
        #[command(flatten)]
        args: crate::admin_args::EventsArgs,
    },
    /// TLS handshakes the devices saw (network telemetry, docs/telemetry.md), oldest first.
    Telemetry {
        #[command(flatten)]
        view: crate::admin_args::View,
        #[command(flatten)]
        args: crate::admin_args::TelemetryArgs,
    },
    /// The hub at a glance: devices by status, profiles, sources, targets, sharing sinks.
    Status {
        #[command(flatten)]
        view: crate::admin_args::View,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the manual pages (rephub.1 and one per command) into a directory.
    Man { dir: PathBuf },
    /// Copy this SQLite database (--db FILE or --data-dir) into a new PostgreSQL database, every
    /// table in one transaction, for a hub of several replicas (docs/postgresql.md). Stop the hub
    /// first: what it writes afterwards is not copied.
    Migrate {
        /// The PostgreSQL database to copy into, new and empty: `postgres://user@host/db` or
        /// `host=… dbname=…`. Give a password through the environment, not the command line.
        #[arg(long, env = "REPHUB_MIGRATE_TO", hide_env_values = true)]
        to: String,
    },
    /// Drop change-log records up to a sequence number; cursors below it get a snapshot.
    Compact {
        /// Keep this many most recent changes.
        #[arg(long, default_value_t = 1_000_000)]
        keep: u64,
    },
}

/// Entry kinds as the command line names them; `dns` is the SMS spelling of `domain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    Auto,
    Ipv4,
    Ipv6,
    #[value(alias = "dns")]
    Domain,
    Url,
    Sha1,
    Sha256,
}

impl KindArg {
    pub(crate) fn kind(self) -> Option<rephub_model::Kind> {
        use rephub_model::Kind;
        match self {
            KindArg::Auto => None,
            KindArg::Ipv4 => Some(Kind::Ipv4),
            KindArg::Ipv6 => Some(Kind::Ipv6),
            KindArg::Domain => Some(Kind::Domain),
            KindArg::Url => Some(Kind::Url),
            KindArg::Sha1 => Some(Kind::Sha1),
            KindArg::Sha256 => Some(Kind::Sha256),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// Guess from the file name (.jsonl, .ndjson, .json → jsonl; .txt, .lst → plain) and contents.
    Auto,
    /// SMS CSV import format: address, then category,value pairs (`|` for --type url).
    Sms,
    /// One value per line.
    Plain,
    /// JSON lines: {"value": ..., "kind": ..., "tags": {...}}.
    Jsonl,
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// Files to import; `-` is standard input.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Kind of every entry in the files (SMS `type`); auto detects it per line.
    #[arg(long = "type", short = 't', value_enum, default_value = "auto")]
    pub kind: KindArg,
    #[arg(long, short = 'f', value_enum, default_value = "auto")]
    pub format: FormatArg,
    /// Import nothing if any line is bad.
    #[arg(long)]
    pub strict: bool,
    /// Take networks broader than /8 (IPv4) or /16 (IPv6) too; without it they are rejected.
    #[arg(long)]
    pub force: bool,
    /// The source the entries are attributed to; `user` is manual and SMS API writes.
    #[arg(long, default_value = rephub_store::USER_SOURCE)]
    pub source: String,
    /// Replace the source's tags of each entry instead of merging (SMS merge: named categories are
    /// overwritten, others kept).
    #[arg(long)]
    pub replace: bool,
    /// Write every rejected line with its reason to this file (the terminal shows the first 100).
    #[arg(long)]
    pub rejects: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    /// Values to look up.
    #[arg(required = true)]
    pub values: Vec<String>,
    #[arg(long = "type", short = 't', value_enum, default_value = "auto")]
    pub kind: KindArg,
    #[arg(long, short = 'f', value_enum, default_value = "sms")]
    pub format: OutputFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// SMS CSV lines (the SMS query answer format).
    Sms,
    /// JSON lines with tags and sources.
    Jsonl,
    /// Values only.
    Plain,
}

#[derive(Debug, Default, clap::Args)]
pub struct CriteriaArgs {
    /// IP address or prefix: entries inside it.
    #[arg(long)]
    pub ip: Option<String>,
    /// Domain: the name and the names below it.
    #[arg(long)]
    pub domain: Option<String>,
    /// With --domain: the name only.
    #[arg(long, requires = "domain")]
    pub exact: bool,
    /// URL, with at most one `*` wildcard.
    #[arg(long)]
    pub url: Option<String>,
    /// Part of a hash, optionally prefixed `sha1:` or `sha256:`.
    #[arg(long)]
    pub hash: Option<String>,
    /// Only these kinds (repeatable).
    #[arg(long = "kind", value_enum)]
    pub kinds: Vec<KindArg>,
    /// Tag criterion (repeatable, all must hold): `Category=Value[~~~Value]`, `Category=min..max`,
    /// `Category` (has the tag) or `!Category` (does not).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Only entries asserted by this source.
    #[arg(long)]
    pub source: Option<String>,
    /// Only entries without tags.
    #[arg(long, conflicts_with = "tagged_only")]
    pub untagged_only: bool,
    /// Only entries with tags.
    #[arg(long)]
    pub tagged_only: bool,
    /// Only user entries (manual and SMS API writes).
    #[arg(long, conflicts_with = "feed_only")]
    pub user_only: bool,
    /// Only feed entries (any other source).
    #[arg(long)]
    pub feed_only: bool,
}

#[derive(Debug, clap::Args)]
pub struct SearchArgs {
    #[command(flatten)]
    pub criteria: CriteriaArgs,
    /// At most this many results (0: all).
    #[arg(long, default_value_t = 1000)]
    pub limit: usize,
    #[arg(long, short = 'f', value_enum, default_value = "sms")]
    pub format: OutputFormat,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub criteria: CriteriaArgs,
    #[arg(long, short = 'f', value_enum, default_value = "sms")]
    pub format: ExportFormatArg,
    /// Output file (default: standard output). Written to a temporary file and renamed when
    /// complete. For `-f suricata`: a directory, which gets every Suricata list and the rules.
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
}

/// What `export` writes (docs/interchange.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormatArg {
    /// SMS CSV lines (the SMS query answer format).
    Sms,
    /// JSON lines with tags and sources.
    Jsonl,
    /// Values only.
    Plain,
    /// CSV with a header line: kind, value, expires, tags.
    Csv,
    /// A STIX 2.1 bundle of indicators.
    Stix,
    /// Every Suricata list and the rules that use them, into the directory -o.
    Suricata,
    /// Suricata IP reputation (addresses and networks).
    SuricataIprep,
    /// A Suricata string dataset of the domain names (base64).
    SuricataDomains,
    /// A Suricata filesha1 list.
    SuricataSha1,
    /// A Suricata filesha256 list.
    SuricataSha256,
    /// Suricata's reputation categories file.
    SuricataCategories,
    /// Suricata rules that use the lists.
    SuricataRules,
    /// An nftables script: the agent's table (`inet rephub`) dropping the exported addresses and
    /// networks, for hosts without the agent (`nft -f`).
    Nft,
    /// A MISP feed (manifest.json, an event per source, hashes.csv) into the directory -o.
    Misp,
}

impl ExportFormatArg {
    /// The line formats the query commands share, or the interchange format.
    pub(crate) fn kind(self) -> Result<OutputFormat, Option<rephub_model::ExportFormat>> {
        use rephub_model::ExportFormat as X;
        match self {
            ExportFormatArg::Sms => Ok(OutputFormat::Sms),
            ExportFormatArg::Jsonl => Ok(OutputFormat::Jsonl),
            ExportFormatArg::Plain => Ok(OutputFormat::Plain),
            ExportFormatArg::Csv => Err(Some(X::Csv)),
            ExportFormatArg::Stix => Err(Some(X::Stix)),
            ExportFormatArg::Suricata => Err(None),
            ExportFormatArg::SuricataIprep => Err(Some(X::SuricataIprep)),
            ExportFormatArg::SuricataDomains => Err(Some(X::SuricataDomains)),
            ExportFormatArg::SuricataSha1 => Err(Some(X::SuricataSha1)),
            ExportFormatArg::SuricataSha256 => Err(Some(X::SuricataSha256)),
            ExportFormatArg::SuricataCategories => Err(Some(X::SuricataCategories)),
            ExportFormatArg::SuricataRules => Err(Some(X::SuricataRules)),
            // Written by their own code, not by an `Exporter`.
            ExportFormatArg::Nft | ExportFormatArg::Misp => Err(None),
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    /// Values to delete.
    pub values: Vec<String>,
    #[arg(long = "type", short = 't', value_enum, default_value = "auto")]
    pub kind: KindArg,
    /// Delete every value listed in this file (SMS CSV or plain; tags are ignored).
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Only withdraw this source's assertions (of the values given, or all of them when no values,
    /// file or criteria are given); other sources' assertions stay.
    #[arg(long)]
    pub from_source: Option<String>,
    /// Delete every entry matching these criteria.
    #[command(flatten)]
    pub criteria: CriteriaArgs,
    /// Delete every entry (SMS `criteria=all`).
    #[arg(long)]
    pub all: bool,
    /// Required to delete by criteria or everything.
    #[arg(long)]
    pub yes: bool,
}

#[derive(Debug, Subcommand)]
pub enum CategoriesCommand {
    /// List tag categories.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Add a tag category. Its type cannot change later.
    Add {
        name: String,
        #[arg(long = "type", value_enum)]
        kind: CategoryKindArg,
        /// Allowed values of a list category, comma-separated.
        #[arg(long, value_delimiter = ',')]
        values: Vec<String>,
        /// A list category that takes several values at once (joined with ~~~).
        #[arg(long)]
        multiple: bool,
        #[arg(long, allow_hyphen_values = true)]
        min: Option<i64>,
        #[arg(long, allow_hyphen_values = true)]
        max: Option<i64>,
        #[arg(long, default_value = "")]
        description: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CategoryKindArg {
    Text,
    List,
    Date,
    #[value(alias = "yes-no", alias = "bool")]
    Yesno,
    #[value(alias = "numeric")]
    Range,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print it (once).
    Add {
        name: String,
        /// admin, producer (may write entries) or read-only.
        #[arg(long, default_value = "producer")]
        role: String,
    },
    /// List keys (names and roles; keys themselves are not stored).
    List,
    /// Delete a key.
    Delete { name: String },
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Add a user; the password is the first line of standard input (at least 12 characters).
    Add {
        name: String,
        /// admin, producer (may write entries) or read-only.
        #[arg(long, default_value = "read-only")]
        role: String,
    },
    /// List users (names and roles).
    List,
    /// Change a user's role, or password (--password: the first line of standard input). The
    /// user's console sessions end.
    Set {
        name: String,
        #[arg(long)]
        role: Option<String>,
        #[arg(long)]
        password: bool,
    },
    /// Delete a user.
    Delete { name: String },
}

#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// TOML configuration file (see docs/agent.md); the flags below override it.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// The device token (`rhd_…`).
    #[arg(long, env = "REPHUB_DEVICE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A file holding the device token.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Where the agent keeps its filter set and event spool [default: rephub-agent-data].
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// `nftables` (default) or `none` (the check endpoint only).
    #[arg(long)]
    pub backend: Option<String>,
    /// Serve `GET /check?ip=…` here (e.g. 127.0.0.1:8081).
    #[arg(long)]
    pub check_listen: Option<std::net::SocketAddr>,
    /// The nftables table the agent owns [default: rephub].
    #[arg(long)]
    pub nft_table: Option<String>,
    /// The name reported to the hub [default: the host name].
    #[arg(long)]
    pub name: Option<String>,
    /// Seconds each sync request waits for a change [default: 30].
    #[arg(long)]
    pub wait: Option<u64>,
    /// Seconds between detection-event collections [default: 10].
    #[arg(long)]
    pub events_secs: Option<u64>,
    /// Log filter (RUST_LOG syntax).
    #[arg(long, default_value = "info")]
    pub log: String,
    /// Log lines as text (colours only on a terminal) or JSON.
    #[arg(long, value_enum, default_value_t = LogFormatArg::Text)]
    pub log_format: LogFormatArg,
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormatArg {
    Text,
    Json,
}

/// The category `categories add` describes (locally or through `--hub`).
pub(crate) fn new_category(c: CategoriesCommand) -> anyhow::Result<NewCategory> {
    let CategoriesCommand::Add {
        name,
        kind,
        values,
        multiple,
        min,
        max,
        description,
    } = c
    else {
        bail!("not a category to add");
    };
    let kind = match kind {
        CategoryKindArg::Text => CategoryType::Text,
        CategoryKindArg::Date => CategoryType::Date,
        CategoryKindArg::Yesno => CategoryType::YesNo,
        CategoryKindArg::List => CategoryType::List { values, multiple },
        CategoryKindArg::Range => match (min, max) {
            (Some(min), Some(max)) => CategoryType::Range { min, max },
            _ => bail!("a range category needs --min and --max"),
        },
    };
    Ok(NewCategory {
        name,
        kind,
        description,
    })
}

/// Settings of a connection (`rephub connect`, `rephub connection`). Absent: the previous one.
#[derive(Debug, Default, clap::Args)]
pub struct ConnectionSettings {
    /// Suspicious-object download interval, seconds (default 60).
    #[arg(long)]
    pub interval_secs: Option<u64>,
    /// Switch features on: suspicious_object_sync, policy_inventory, event_sharing,
    /// filter_status_sharing, network_telemetry (repeatable).
    #[arg(long, value_name = "FEATURE")]
    pub enable: Vec<String>,
    /// Switch features off (repeatable).
    #[arg(long, value_name = "FEATURE")]
    pub disable: Vec<String>,
    /// Service gateway URL (an HTTP forward proxy that takes an API key).
    #[arg(long)]
    pub gateway: Option<String>,
    /// File holding the gateway's API key (kept out of the process list).
    #[arg(long, requires = "gateway")]
    pub gateway_key_file: Option<PathBuf>,
    /// Use the gateway (default) or not.
    #[arg(long)]
    pub gateway_enabled: Option<bool>,
    /// HTTP proxy URL (CONNECT).
    #[arg(long)]
    pub proxy: Option<String>,
    /// Proxy user name.
    #[arg(long, requires = "proxy")]
    pub proxy_username: Option<String>,
    /// File holding the proxy password.
    #[arg(long, requires = "proxy")]
    pub proxy_password_file: Option<PathBuf>,
}

impl ConnectionSettings {
    /// Whether anything is set.
    pub fn any(&self) -> bool {
        self.interval_secs.is_some()
            || !self.enable.is_empty()
            || !self.disable.is_empty()
            || self.gateway.is_some()
            || self.gateway_enabled.is_some()
            || self.proxy.is_some()
    }
}

/// `rephub sharing …`
#[derive(Debug, Subcommand)]
pub enum SharingCommand {
    /// The spool's limits and each sink's depth, oldest record and counters.
    Status,
    /// Records a receiver refused, with the reason.
    Parked {
        #[arg(long)]
        sink: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Deliver a sink's parked records again (all, or --id …).
    Replay {
        sink: String,
        #[arg(long = "id")]
        ids: Vec<i64>,
    },
    /// Forget a sink's parked records (all, or --id …).
    Discard {
        sink: String,
        #[arg(long = "id")]
        ids: Vec<i64>,
    },
    /// Deliver a sink's waiting records now.
    Flush { sink: String },
}
