//! The command-line definitions of the administration commands (docs in `admin.rs`, which runs
//! them). Kept apart so that the argument definitions depend on nothing but clap.

use clap::{Args, Subcommand, ValueEnum};

/// How answers are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Output {
    /// Aligned columns (lists) or `field: value` lines (one thing).
    #[default]
    Table,
    /// The hub's JSON answer, as is.
    Json,
}

#[derive(Debug, Args)]
pub struct View {
    /// `table` for people, `json` for scripts.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table, global = true)]
    pub output: Output,
}

/// Reputation filters: which entries a profile selects, and with which action.
#[derive(Debug, Clone, Subcommand)]
pub enum FiltersCommand {
    /// All filters, in precedence order.
    List,
    /// One filter.
    Show { name: String },
    /// A new filter.
    Add {
        name: String,
        #[command(flatten)]
        fields: FilterFields,
    },
    /// Change a filter (only what is given); every profile using it is re-installed.
    Edit {
        name: String,
        /// A new name.
        #[arg(long)]
        rename: Option<String>,
        #[command(flatten)]
        fields: FilterFields,
    },
    /// Delete a filter (refused while a profile uses it).
    Delete { name: String },
}

#[derive(Debug, Clone, Args)]
pub struct FilterFields {
    /// block, block+notify, permit, notify or trace.
    #[arg(long)]
    pub action: Option<String>,
    /// A tag criterion (`Trend Micro Severity=High`, `Country!=DE`); repeat for several (all
    /// must hold).
    #[arg(long = "criterion")]
    pub criteria: Vec<String>,
    /// An entry kind the filter takes (ipv4, ipv6, domain, url, sha1, sha256); repeatable;
    /// none: every kind.
    #[arg(long = "kind")]
    pub kinds: Vec<String>,
    /// Lower runs first.
    #[arg(long, allow_negative_numbers = true)]
    pub precedence: Option<i64>,
    /// Keep the filter but select nothing with it.
    #[arg(long, conflicts_with = "enable")]
    pub disable: bool,
    #[arg(long)]
    pub enable: bool,
}

/// Profiles: ordered lists of filters that devices enforce.
#[derive(Debug, Clone, Subcommand)]
pub enum ProfilesCommand {
    List,
    Show {
        name: String,
    },
    /// A new profile with these filters (by name, in order).
    Add {
        name: String,
        #[arg(long = "filter")]
        filters: Vec<String>,
    },
    /// Replace a profile's filters (and/or its name).
    Edit {
        name: String,
        #[arg(long)]
        rename: Option<String>,
        #[arg(long = "filter")]
        filters: Vec<String>,
        /// No filters at all.
        #[arg(long, conflicts_with = "filters")]
        no_filters: bool,
    },
    /// Delete a profile (refused while devices use it).
    Delete {
        name: String,
    },
}

/// Devices: agents, firewalls and resolvers that sync a profile.
#[derive(Debug, Clone, Subcommand)]
pub enum DevicesCommand {
    /// Devices with their sync status and last report.
    List,
    Show {
        name: String,
    },
    /// Register a device; prints its token once (give it to the agent).
    Add {
        name: String,
        #[arg(long)]
        profile: Option<String>,
    },
    /// Delete a device: its token stops working.
    Delete {
        name: String,
    },
    /// What the device's IPS engine applied, per filter of its profile.
    Ips {
        name: String,
    },
}

/// Distributions: which profile devices sync.
#[derive(Debug, Clone, Subcommand)]
pub enum DistributionsCommand {
    /// Each profile with the devices it is distributed to, and their status.
    List,
    /// Distribute a profile to devices (they sync its filter set from a snapshot).
    Run {
        #[arg(long)]
        profile: String,
        /// A device; repeatable.
        #[arg(long = "device", required = true)]
        devices: Vec<String>,
    },
}

/// Sources (Vision One, TAXII, MISP feeds, lists) or targets (SMS-compatible products): both are
/// configured by a spec, the same fields as in the hub's configuration file.
#[derive(Debug, Clone, Subcommand)]
pub enum JobsCommand {
    /// Each with its status and last run.
    List,
    /// One, with its configuration (secrets hidden) and state.
    Show {
        name: String,
    },
    /// A new one from a spec file (TOML or JSON; `-` reads standard input).
    Add {
        #[arg(long)]
        file: std::path::PathBuf,
    },
    /// Replace one's spec (a secret given as `********` is kept).
    Edit {
        name: String,
        #[arg(long)]
        file: std::path::PathBuf,
    },
    Delete {
        name: String,
    },
    /// Run now (sources: sync; `--full` for a full sync).
    Run {
        name: String,
        #[arg(long)]
        full: bool,
    },
    /// Test Connection / Test Connectivity: changes nothing.
    Test {
        name: String,
    },
    /// Targets: the last runs (when, added, removed, errors).
    History {
        name: String,
    },
}

/// TLS handshakes: every filter given must match (docs/telemetry.md).
#[derive(Debug, Clone, Args)]
pub struct TelemetryArgs {
    /// The server name (SNI), exactly.
    #[arg(long)]
    pub sni: Option<String>,
    #[arg(long)]
    pub ja3: Option<String>,
    #[arg(long)]
    pub ja4: Option<String>,
    /// The server certificate's SHA-256 or SHA-1, with or without `:`.
    #[arg(long)]
    pub fingerprint: Option<String>,
    #[arg(long)]
    pub device: Option<String>,
    /// A downstream hub's name, or `local` for this hub's own devices.
    #[arg(long)]
    pub downstream: Option<String>,
    /// Seen at or after / before (Unix seconds).
    #[arg(long)]
    pub since: Option<i64>,
    #[arg(long)]
    pub until: Option<i64>,
    /// At most this many.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
}

/// Detection events the devices reported (reputation hits, IPS alerts).
#[derive(Debug, Clone, Args)]
pub struct EventsArgs {
    #[arg(long)]
    pub device: Option<String>,
    /// `ips`, `ipv4`, `domain`, …
    #[arg(long)]
    pub kind: Option<String>,
    /// A CVE of an IPS alert.
    #[arg(long)]
    pub cve: Option<String>,
    /// The entry or address that matched, or an IPS alert's filter number, source or destination.
    #[arg(long)]
    pub value: Option<String>,
    #[arg(long)]
    pub action: Option<String>,
    /// Last seen at or after (Unix seconds).
    #[arg(long)]
    pub since: Option<i64>,
    #[arg(long)]
    pub until: Option<i64>,
    /// At most this many (newest pages are not skipped: events come oldest first).
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
}
