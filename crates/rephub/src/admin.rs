//! Administration from the command line: reputation filters, profiles, devices, distributions,
//! sources, targets, events and the hub's status, through the hub's REST API (`--hub`, or the
//! hub on this machine at `http://127.0.0.1:8080`). The API validates and names the field of a
//! mistake; the command prints it on standard error and exits 1, and nothing was changed.
//!
//! Things are named by name on the command line; where the API wants an id the command looks it
//! up first. Output is a table for people, or the API's JSON with `-o json` for scripts.

use anyhow::{Context, bail};
use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::Status;
pub(crate) use crate::admin_args::{
    DevicesCommand, DistributionsCommand, EventsArgs, FilterFields, FiltersCommand, JobsCommand,
    Output, ProfilesCommand, TelemetryArgs,
};
use crate::remote::Remote;

/// One admin command, ready to run against a hub.
#[derive(Debug)]
pub(crate) enum AdminCommand {
    Filters(FiltersCommand),
    Profiles(ProfilesCommand),
    Devices(DevicesCommand),
    Distributions(DistributionsCommand),
    Sources(JobsCommand),
    Targets(JobsCommand),
    Events(EventsArgs),
    Telemetry(TelemetryArgs),
    Status,
}

pub(crate) fn run(remote: &Remote, cmd: AdminCommand, out: Output) -> anyhow::Result<Status> {
    match cmd {
        AdminCommand::Filters(c) => filters(remote, c, out),
        AdminCommand::Profiles(c) => profiles(remote, c, out),
        AdminCommand::Devices(c) => devices(remote, c, out),
        AdminCommand::Distributions(c) => distributions(remote, c, out),
        AdminCommand::Sources(c) => jobs(remote, &SOURCES, c, out),
        AdminCommand::Targets(c) => jobs(remote, &TARGETS, c, out),
        AdminCommand::Events(a) => events(remote, &a, out),
        AdminCommand::Telemetry(a) => telemetry(remote, &a, out),
        AdminCommand::Status => status(remote, out),
    }
}

/// A collection of the API: where it is, the key of its list, and the columns people see.
struct Collection {
    path: &'static str,
    key: &'static str,
    what: &'static str,
    columns: &'static [(&'static str, &'static str)],
}

const FILTERS: Collection = Collection {
    path: "/api/v1/filters",
    key: "filters",
    what: "filter",
    columns: &[
        ("NAME", "/name"),
        ("ACTION", "/action"),
        ("PRECEDENCE", "/precedence"),
        ("ENABLED", "/enabled"),
        ("KINDS", "/kinds"),
        ("CRITERIA", "/criteria"),
    ],
};

const PROFILES: Collection = Collection {
    path: "/api/v1/profiles",
    key: "profiles",
    what: "profile",
    columns: &[
        ("NAME", "/name"),
        ("FILTERS", "/filters"),
        ("SELECTED", "/selected"),
        ("CURSOR", "/cursor"),
    ],
};

const DEVICES: Collection = Collection {
    path: "/api/v1/devices",
    key: "devices",
    what: "device",
    columns: &[
        ("NAME", "/name"),
        ("PROFILE", "/profile"),
        ("STATUS", "/status"),
        ("APPLIED", "/applied_cursor"),
        ("LAST SEEN", "/last_seen"),
        ("MODEL", "/report/model"),
        ("ERROR", "/error"),
    ],
};

const SOURCES: Collection = Collection {
    path: "/api/v1/sources",
    key: "sources",
    what: "source",
    columns: &[
        ("NAME", "/name"),
        ("KIND", "/kind"),
        ("ORIGIN", "/origin"),
        ("STATUS", "/status"),
        ("LAST SUCCESS", "/state/last_success"),
        ("ERROR", "/state/last_error"),
    ],
};

const TARGETS: Collection = Collection {
    path: "/api/v1/targets",
    key: "targets",
    what: "target",
    columns: &[
        ("NAME", "/name"),
        ("ADDRESS", "/config/address"),
        ("STATUS", "/status"),
        ("LAST SUCCESS", "/state/last_success"),
        ("ERROR", "/state/last_error"),
    ],
};

impl Collection {
    fn list(&self, remote: &Remote) -> anyhow::Result<Value> {
        remote.get(self.path, &[])
    }

    /// The item named `name`, or a clear error.
    fn find(&self, remote: &Remote, name: &str) -> anyhow::Result<Value> {
        let v = self.list(remote)?;
        v[self.key]
            .as_array()
            .into_iter()
            .flatten()
            .find(|x| x["name"] == name)
            .cloned()
            .with_context(|| format!("no {} named {name:?}", self.what))
    }

    fn id(&self, remote: &Remote, name: &str) -> anyhow::Result<i64> {
        self.find(remote, name)?["id"]
            .as_i64()
            .with_context(|| format!("the hub gave the {} no id", self.what))
    }

    fn print_list(&self, v: &Value, out: Output) -> anyhow::Result<()> {
        match out {
            Output::Json => println!("{}", serde_json::to_string_pretty(v)?),
            Output::Table => print_table(
                self.columns,
                v[self.key].as_array().map_or(&[][..], Vec::as_slice),
            ),
        }
        Ok(())
    }
}

/// A value as one table cell.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => {
            let parts: Vec<String> = a.iter().map(cell).collect();
            if parts.is_empty() {
                "-".into()
            } else {
                parts.join(", ")
            }
        }
        other => other.to_string(),
    }
}

/// Columns aligned, a header line; long cells cut so that a row stays readable.
fn print_table(columns: &[(&str, &str)], rows: &[Value]) {
    const WIDEST: usize = 60;
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            columns
                .iter()
                .map(|(_, ptr)| {
                    let c = cell(r.pointer(ptr).unwrap_or(&Value::Null));
                    match c.char_indices().nth(WIDEST) {
                        Some((i, _)) => format!("{}…", &c[..i]),
                        None => c,
                    }
                })
                .collect()
        })
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, (h, _))| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([h.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |row: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in row.iter().enumerate() {
            if i + 1 == row.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        println!("{}", s.trim_end());
    };
    line(columns.iter().map(|(h, _)| *h).collect());
    for r in &cells {
        line(r.iter().map(String::as_str).collect());
    }
}

/// One thing: `field: value` lines (nested objects as compact JSON), or the JSON.
fn print_one(v: &Value, out: Output) -> anyhow::Result<()> {
    match (out, v) {
        (Output::Table, Value::Object(m)) => {
            let width = m.keys().map(String::len).max().unwrap_or(0);
            for (k, v) in m {
                let text = match v {
                    Value::Object(_) => v.to_string(),
                    other => cell(other),
                };
                println!("{k:<width$}  {text}");
            }
        }
        _ => println!("{}", serde_json::to_string_pretty(v)?),
    }
    Ok(())
}

fn filters(remote: &Remote, c: FiltersCommand, out: Output) -> anyhow::Result<Status> {
    let c_ = &FILTERS;
    match c {
        FiltersCommand::List => c_.print_list(&c_.list(remote)?, out)?,
        FiltersCommand::Show { name } => print_one(&c_.find(remote, &name)?, out)?,
        FiltersCommand::Add { name, fields } => {
            let mut body = json!({ "name": name });
            fields.apply(&mut body);
            if body.get("action").is_none() {
                bail!("--action is required for a new filter");
            }
            let v = remote.call(Method::POST, c_.path, Some(body))?;
            print_one(&v, out)?;
        }
        FiltersCommand::Edit {
            name,
            rename,
            fields,
        } => {
            let mut body = c_.find(remote, &name)?;
            let id = body["id"]
                .as_i64()
                .context("the hub gave the filter no id")?;
            if let Some(m) = body.as_object_mut() {
                m.remove("id");
            }
            if let Some(n) = rename {
                body["name"] = json!(n);
            }
            fields.apply(&mut body);
            let v = remote.call(Method::PUT, &format!("{}/{id}", c_.path), Some(body))?;
            print_one(&v, out)?;
        }
        FiltersCommand::Delete { name } => {
            let id = c_.id(remote, &name)?;
            remote.call(Method::DELETE, &format!("{}/{id}", c_.path), None)?;
            eprintln!("deleted filter {name:?}");
        }
    }
    Ok(Status::Ok)
}

impl FilterFields {
    /// Set the given fields on a filter's JSON; leave the others.
    fn apply(&self, body: &mut Value) {
        if let Some(a) = &self.action {
            body["action"] = json!(a);
        }
        if !self.criteria.is_empty() {
            body["criteria"] = json!(self.criteria);
        }
        if !self.kinds.is_empty() {
            body["kinds"] = json!(self.kinds);
        }
        if let Some(p) = self.precedence {
            body["precedence"] = json!(p);
        }
        if self.disable {
            body["enabled"] = json!(false);
        }
        if self.enable {
            body["enabled"] = json!(true);
        }
    }
}

fn profiles(remote: &Remote, c: ProfilesCommand, out: Output) -> anyhow::Result<Status> {
    let p = &PROFILES;
    match c {
        ProfilesCommand::List => {
            let mut v = p.list(remote)?;
            for x in v["profiles"].as_array_mut().into_iter().flatten() {
                name_filters(remote, x)?;
            }
            p.print_list(&v, out)?;
        }
        ProfilesCommand::Show { name } => {
            let mut v = p.find(remote, &name)?;
            name_filters(remote, &mut v)?;
            print_one(&v, out)?;
        }
        ProfilesCommand::Add { name, filters } => {
            let v = remote.call(
                Method::POST,
                p.path,
                Some(json!({"name": name, "filters": filters})),
            )?;
            print_one(&v, out)?;
        }
        ProfilesCommand::Edit {
            name,
            rename,
            filters,
            no_filters,
        } => {
            let current = p.find(remote, &name)?;
            let id = current["id"]
                .as_i64()
                .context("the hub gave the profile no id")?;
            let filters = if no_filters || !filters.is_empty() {
                json!(filters)
            } else {
                current["filters"].clone()
            };
            let body = json!({"name": rename.unwrap_or(name), "filters": filters});
            let v = remote.call(Method::PUT, &format!("{}/{id}", p.path), Some(body))?;
            print_one(&v, out)?;
        }
        ProfilesCommand::Delete { name } => {
            let id = p.id(remote, &name)?;
            remote.call(Method::DELETE, &format!("{}/{id}", p.path), None)?;
            eprintln!("deleted profile {name:?}");
        }
    }
    Ok(Status::Ok)
}

/// A profile's filters by name (the API lists their ids).
fn name_filters(remote: &Remote, profile: &mut Value) -> anyhow::Result<()> {
    let all = FILTERS.list(remote)?;
    let name = |id: &Value| {
        all["filters"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|f| f["id"] == *id)
            .map_or_else(|| id.clone(), |f| f["name"].clone())
    };
    if let Some(list) = profile["filters"].as_array_mut() {
        for f in list.iter_mut() {
            *f = name(f);
        }
    }
    Ok(())
}

fn devices(remote: &Remote, c: DevicesCommand, out: Output) -> anyhow::Result<Status> {
    let d = &DEVICES;
    match c {
        DevicesCommand::List => d.print_list(&d.list(remote)?, out)?,
        DevicesCommand::Show { name } => print_one(&d.find(remote, &name)?, out)?,
        DevicesCommand::Add { name, profile } => {
            let mut body = json!({ "name": name });
            if let Some(p) = profile {
                body["profile"] = json!(p);
            }
            let v = remote.call(Method::POST, d.path, Some(body))?;
            print_one(&v, out)?;
            if out == Output::Table {
                eprintln!("the token is shown once: give it to the device now");
            }
        }
        DevicesCommand::Delete { name } => {
            let id = d.id(remote, &name)?;
            remote.call(Method::DELETE, &format!("{}/{id}", d.path), None)?;
            eprintln!("deleted device {name:?}");
        }
        DevicesCommand::Ips { name } => {
            let id = d.id(remote, &name)?;
            let v = remote.get(&format!("{}/{id}/ips", d.path), &[])?;
            match out {
                Output::Json => println!("{}", serde_json::to_string_pretty(&v)?),
                Output::Table => {
                    println!(
                        "version {} · running {} · {}",
                        cell(&v["version"]),
                        cell(&v["running"]),
                        if v["in_sync"] == true {
                            "in sync"
                        } else {
                            "not in sync"
                        }
                    );
                    print_table(
                        &[
                            ("NUMBER", "/number"),
                            ("NAME", "/name"),
                            ("ACTION", "/action"),
                            ("APPLIED", "/applied"),
                            ("REASON", "/reason"),
                        ],
                        v["filters"].as_array().map_or(&[][..], Vec::as_slice),
                    );
                }
            }
        }
    }
    Ok(Status::Ok)
}

fn distributions(remote: &Remote, c: DistributionsCommand, out: Output) -> anyhow::Result<Status> {
    match c {
        DistributionsCommand::List => {
            let v = remote.get("/api/v1/distributions", &[])?;
            match out {
                Output::Json => println!("{}", serde_json::to_string_pretty(&v)?),
                Output::Table => {
                    // A row per profile: its devices and how each is doing.
                    let rows: Vec<Value> = v["distributions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|d| {
                            let devices: Vec<String> = d["devices"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .map(|x| format!("{} ({})", cell(&x["name"]), cell(&x["status"])))
                                .collect();
                            json!({"profile": d["profile"], "devices": devices})
                        })
                        .collect();
                    print_table(&[("PROFILE", "/profile"), ("DEVICES", "/devices")], &rows);
                }
            }
        }
        DistributionsCommand::Run { profile, devices } => {
            let v = remote.call(
                Method::POST,
                "/api/v1/distributions",
                Some(json!({"profile": profile, "devices": devices})),
            )?;
            print_one(&v, out)?;
        }
    }
    Ok(Status::Ok)
}

/// A spec file as JSON: JSON as is, TOML converted (the hub's configuration file syntax).
fn spec_file(path: &std::path::Path) -> anyhow::Result<Value> {
    let text = if path == std::path::Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("reading standard input")?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    };
    if text.trim_start().starts_with('{') {
        return serde_json::from_str(&text)
            .with_context(|| format!("{}: not JSON", path.display()));
    }
    let t: toml::Table =
        toml::from_str(&text).with_context(|| format!("{}: not TOML", path.display()))?;
    Ok(serde_json::to_value(t)?)
}

fn jobs(remote: &Remote, c: &Collection, cmd: JobsCommand, out: Output) -> anyhow::Result<Status> {
    let one = |name: &str| format!("{}/{}", c.path, crate::remote::segment(name));
    match cmd {
        JobsCommand::List => c.print_list(&c.list(remote)?, out)?,
        JobsCommand::Show { name } => print_one(&remote.get(&one(&name), &[])?, out)?,
        JobsCommand::Add { file } => {
            let v = remote.call(Method::POST, c.path, Some(spec_file(&file)?))?;
            print_one(&v, out)?;
        }
        JobsCommand::Edit { name, file } => {
            let mut spec = spec_file(&file)?;
            if spec.get("name").is_none() {
                spec["name"] = json!(name);
            }
            let v = remote.call(Method::PUT, &one(&name), Some(spec))?;
            print_one(&v, out)?;
        }
        JobsCommand::Delete { name } => {
            remote.call(Method::DELETE, &one(&name), None)?;
            eprintln!("deleted {} {name:?}", c.what);
        }
        JobsCommand::Run { name, full } => {
            let path = if c.key == "sources" {
                format!(
                    "{}/sync{}",
                    one(&name),
                    if full { "?full=true" } else { "" }
                )
            } else {
                format!("{}/run", one(&name))
            };
            let v = remote.call(Method::POST, &path, None)?;
            print_one(&v, out)?;
        }
        JobsCommand::Test { name } => {
            let v = remote.call(Method::POST, &format!("{}/test", one(&name)), None)?;
            print_one(&v, out)?;
            if v["ok"] == false {
                return Ok(Status::Failed);
            }
        }
        JobsCommand::History { name } => {
            if c.key != "targets" {
                bail!("history is kept for targets");
            }
            let v = remote.get(&format!("{}/history", one(&name)), &[])?;
            match out {
                Output::Json => println!("{}", serde_json::to_string_pretty(&v)?),
                Output::Table => print_table(
                    &[
                        ("STARTED", "/started"),
                        ("FINISHED", "/finished"),
                        ("ADDED", "/added"),
                        ("REMOVED", "/removed"),
                        ("FAILED", "/failed"),
                        ("ERROR", "/error"),
                    ],
                    v["runs"].as_array().map_or(&[][..], Vec::as_slice),
                ),
            }
        }
    }
    Ok(Status::Ok)
}

fn events(remote: &Remote, a: &EventsArgs, out: Output) -> anyhow::Result<Status> {
    let mut q: Vec<(&str, String)> = Vec::new();
    for (k, v) in [
        ("device", &a.device),
        ("kind", &a.kind),
        ("cve", &a.cve),
        ("value", &a.value),
        ("action", &a.action),
    ] {
        if let Some(v) = v {
            q.push((k, v.clone()));
        }
    }
    for (k, v) in [("since", a.since), ("until", a.until)] {
        if let Some(v) = v {
            q.push((k, v.to_string()));
        }
    }
    let all = pages(remote, "/api/v1/events", "events", &q, a.limit)?;
    let v = json!({ "events": all });
    match out {
        Output::Json => println!("{}", serde_json::to_string_pretty(&v)?),
        Output::Table => print_table(
            &[
                ("ID", "/id"),
                ("DEVICE", "/device"),
                ("KIND", "/kind"),
                ("VALUE", "/value"),
                ("ACTION", "/action"),
                ("FILTER", "/filter"),
                ("HITS", "/hits"),
                ("LAST SEEN", "/last_seen"),
                ("CVES", "/ips/cves"),
            ],
            &all,
        ),
    }
    Ok(Status::Ok)
}

/// Up to `limit` items of a listing paged by `after` = `next`, oldest first.
fn pages(
    remote: &Remote,
    path: &str,
    list: &str,
    q: &[(&str, String)],
    limit: usize,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut all = Vec::new();
    let mut after = 0i64;
    while all.len() < limit {
        let mut page_q = q.to_vec();
        page_q.push(("after", after.to_string()));
        page_q.push(("limit", (limit - all.len()).min(10_000).to_string()));
        let v = remote.get(path, &page_q)?;
        let page = v[list].as_array().cloned().unwrap_or_default();
        if page.is_empty() {
            break;
        }
        after = v["next"].as_i64().unwrap_or(after);
        all.extend(page);
    }
    Ok(all)
}

fn telemetry(remote: &Remote, a: &TelemetryArgs, out: Output) -> anyhow::Result<Status> {
    let mut q: Vec<(&str, String)> = Vec::new();
    for (k, v) in [
        ("sni", &a.sni),
        ("ja3", &a.ja3),
        ("ja4", &a.ja4),
        ("fingerprint", &a.fingerprint),
        ("device", &a.device),
        ("downstream", &a.downstream),
    ] {
        if let Some(v) = v {
            q.push((k, v.clone()));
        }
    }
    for (k, v) in [("since", a.since), ("until", a.until)] {
        if let Some(v) = v {
            q.push((k, v.to_string()));
        }
    }
    let all = pages(remote, "/api/v1/telemetry", "records", &q, a.limit)?;
    let v = json!({ "records": all });
    match out {
        Output::Json => println!("{}", serde_json::to_string_pretty(&v)?),
        Output::Table => print_table(
            &[
                ("ID", "/id"),
                ("DEVICE", "/device"),
                ("DOWNSTREAM", "/downstream"),
                ("SERVER NAME", "/tls/sni"),
                ("DESTINATION", "/tls/dst"),
                ("VERSION", "/tls/version"),
                ("JA4", "/tls/ja4"),
                ("SUBJECT", "/tls/subject"),
                ("SHA-256", "/tls/sha256"),
            ],
            &all,
        ),
    }
    Ok(Status::Ok)
}

/// The hub at a glance: devices by status, sources and targets with theirs, the sharing sinks.
fn status(remote: &Remote, out: Output) -> anyhow::Result<Status> {
    let devices = DEVICES.list(remote)?;
    let sources = SOURCES.list(remote)?;
    let targets = TARGETS.list(remote)?;
    let sharing = remote.get("/api/v1/sharing", &[])?;
    let profiles = PROFILES.list(remote)?;
    let mut by_status = Map::new();
    for d in devices["devices"].as_array().into_iter().flatten() {
        let s = d["status"].as_str().unwrap_or("unknown").to_string();
        let n = by_status.get(&s).and_then(Value::as_u64).unwrap_or(0);
        by_status.insert(s, json!(n + 1));
    }
    let named = |v: &Value, key: &str| -> Vec<Value> {
        v[key]
            .as_array()
            .into_iter()
            .flatten()
            .map(|x| json!({"name": x["name"], "status": x["status"]}))
            .collect()
    };
    let v = json!({
        "devices": by_status,
        "profiles": profiles["profiles"].as_array().map_or(0, Vec::len),
        "sources": named(&sources, "sources"),
        "targets": named(&targets, "targets"),
        "sinks": sharing["sinks"],
    });
    match out {
        Output::Json => println!("{}", serde_json::to_string_pretty(&v)?),
        Output::Table => {
            let devices: Vec<String> = by_status.iter().map(|(k, n)| format!("{n} {k}")).collect();
            println!(
                "devices   {}",
                if devices.is_empty() {
                    "none".into()
                } else {
                    devices.join(", ")
                }
            );
            println!("profiles  {}", v["profiles"]);
            for (label, list) in [("source", &v["sources"]), ("target", &v["targets"])] {
                for x in list.as_array().into_iter().flatten() {
                    println!("{label:<9} {}: {}", cell(&x["name"]), cell(&x["status"]));
                }
            }
            for s in v["sinks"].as_array().into_iter().flatten() {
                println!(
                    "sink      {}/{}: {} waiting, {} parked, last error {}",
                    cell(&s["sink"]),
                    cell(&s["stream"]),
                    cell(&s["depth"]),
                    cell(&s["parked_now"]),
                    cell(&s["last_error"])
                );
            }
        }
    }
    Ok(Status::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_readable() {
        assert_eq!(cell(&json!(null)), "-");
        assert_eq!(cell(&json!(["a", "b"])), "a, b");
        assert_eq!(cell(&json!([])), "-");
        assert_eq!(cell(&json!(3)), "3");
        assert_eq!(cell(&json!("x")), "x");
    }

    #[test]
    fn names_are_one_path_segment() {
        assert_eq!(crate::remote::segment("sms-hq_1.x~"), "sms-hq_1.x~");
        assert_eq!(
            crate::remote::segment("a b/c?d#é"),
            "a%20b%2Fc%3Fd%23%C3%A9"
        );
    }

    #[test]
    fn spec_files_in_toml_or_json() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("s.toml");
        std::fs::write(&t, "name = \"f\"\nkind = \"feed\"\nurl = \"http://x/\"\n").unwrap();
        assert_eq!(spec_file(&t).unwrap()["kind"], "feed");
        let j = dir.path().join("s.json");
        std::fs::write(&j, r#"{"name": "f"}"#).unwrap();
        assert_eq!(spec_file(&j).unwrap()["name"], "f");
        std::fs::write(&j, "{not").unwrap();
        assert!(spec_file(&j).is_err());
    }
}
