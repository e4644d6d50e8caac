//! The reputation entry model of rephub: entry kinds and their canonical forms, tag categories and
//! their values, search criteria, the import file formats, and STIX indicators (patterns, bundles).
//!
//! Invariants this crate guarantees to every caller:
//! - An [`Entry`] is always in canonical form: two spellings of the same address, name, URL or hash
//!   produce equal `Entry` values and the same [`Entry::to_string`]. Parsing the printed form gives the
//!   same `Entry` back.
//! - A [`TagValue`] has been validated against its [`Category`]; a [`Tags`] set holds at most one value
//!   per category.
//! - No parser in this crate panics on any input (they are fuzzed, see `fuzz/`).
//!
//! The crate is pure: no I/O, no clock reads (time comes from a [`Clock`]).

mod breadth;
mod criteria;
mod domain;
mod entry;
mod error;
mod export;
mod filter;
mod formats;
mod ips;
mod kind;
mod misp;
mod severity;
mod stix;
mod tags;
pub mod telemetry;
mod time;
pub mod url;

pub use breadth::MinPrefix;
pub use criteria::{Criteria, CriteriaError, Include, Query, TagCriterion};
pub use domain::Domain;
pub use entry::{Entry, IpRange};
pub use error::EntryError;
pub use export::{
    ExportFormat, ExportItem, Exporter, StixWriter, stix_indicator_id, stix_pattern, uuid_of,
    uuid_text,
};
pub use filter::{ActionSet, Decision, Filter, FilterError, decide, sort_filters};
pub use formats::{
    ExportRecord, JsonLine, LineError, Lines, Pairs, RawRecord, SmsCsvReader, format_sms_line,
    parse_json_line, parse_tag_data, strip_bom,
};
pub use ips::{
    FilterQuery, IpsAction, IpsAlert, IpsFilter, RuleError, RuleLineError, cve, parse_rule,
    parse_rules, with_action,
};
pub use kind::{Kind, UnknownKind};
pub use misp::{FeedFiles, MispFeed, is_uuid};
pub use severity::{RiskThreshold, ScanAction, Severity};
pub use stix::{
    Indicator, ObjectOutcome, PatternError, StixError, confidence_label, indicator_tags,
    parse_bundle, parse_pattern, read_bundle, read_object, severity_label,
};
pub use tags::{
    Catalog, Category, CategoryError, CategoryId, CategoryType, LIST_SEPARATOR, MAX_LIST_VALUES,
    MAX_TEXT, NewCategory, TagError, TagValue, Tags, builtin,
};
pub use time::{
    Clock, FixedClock, OffsetClock, SystemClock, TimeError, default_ttl, format_utc, parse_datetime,
};
