//! The command line against a running hub (`--hub URL --key KEY`): the same commands, sent to the
//! hub's REST API, so that operators never need the hub's machine or to stop it.

use std::io::{Read, Write};

use anyhow::{Context, bail};
use reqwest::blocking::{Client, RequestBuilder, Response};
use serde_json::{Value, json};

use crate::Status;
use crate::args::{CategoriesCommand, Command, CriteriaArgs, KindArg, OutputFormat};
use crate::files::{detect_format, export_to, open_input};
use rephub_store::import::InputFormat;

#[derive(Debug)]
pub(crate) struct Remote {
    base: String,
    key: String,
    http: Client,
}

impl Remote {
    pub(crate) fn new(url: &str, key: &str, insecure: bool) -> anyhow::Result<Remote> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = Client::builder()
            .danger_accept_invalid_certs(insecure)
            .timeout(std::time::Duration::from_secs(600))
            .build()
            .context("making the HTTP client")?;
        Ok(Remote {
            base: url.trim_end_matches('/').to_string(),
            key: key.to_string(),
            http,
        })
    }

    /// A call of the REST API with an optional JSON body: the answer, or the hub's error (with
    /// the field it names).
    pub(crate) fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut r = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            r = r.json(&b);
        }
        self.send(r)
    }

    fn send(&self, r: RequestBuilder) -> anyhow::Result<Value> {
        let resp: Response = r.bearer_auth(&self.key).send().context("calling the hub")?;
        let status = resp.status();
        let text = resp.text().context("reading the hub's answer")?;
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if !status.is_success() {
            let msg = v["error"]["message"].as_str().unwrap_or("");
            match v["error"]["field"].as_str() {
                Some(f) => bail!("hub answered {status}: {f}: {msg}"),
                None => bail!("hub answered {status}: {msg}"),
            }
        }
        Ok(v)
    }

    pub(crate) fn get(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
        self.send(self.http.get(format!("{}{path}", self.base)).query(query))
    }
}

/// One `/api/v1/export` answer to a file (written beside it, renamed when complete) or standard
/// output; its size.
fn export_one(
    remote: &Remote,
    q: &[(&str, String)],
    output: Option<&std::path::Path>,
) -> anyhow::Result<u64> {
    let mut resp = export_request(remote, q)?;
    // As locally: a partial export never replaces a good file.
    let mut n = 0;
    export_to(output, &mut |out| {
        n = std::io::copy(&mut resp, out).context("reading the export")?;
        Ok(())
    })?;
    Ok(n)
}

/// `GET /api/v1/export` with `q`: the answer, if the hub said yes.
fn export_request(remote: &Remote, q: &[(&str, String)]) -> anyhow::Result<Response> {
    let resp = remote
        .http
        .get(format!("{}/api/v1/export", remote.base))
        .query(q)
        .bearer_auth(&remote.key)
        .send()
        .context("calling the hub")?;
    if !resp.status().is_success() {
        let status = resp.status();
        let v: Value = resp.json().unwrap_or(Value::Null);
        bail!(
            "hub answered {status}: {}",
            v["error"]["message"].as_str().unwrap_or("")
        );
    }
    Ok(resp)
}

/// An export of the hub into memory (for the formats made here from the hub's entries).
fn export_to_vec(remote: &Remote, q: &[(&str, String)], out: &mut Vec<u8>) -> anyhow::Result<()> {
    export_request(remote, q)?
        .read_to_end(out)
        .context("reading the export")?;
    Ok(())
}

/// `name` as one path segment: everything but unreserved characters percent-encoded.
pub(crate) fn segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn kind_name(k: KindArg) -> Option<String> {
    k.kind().map(|k| k.as_str().to_string())
}

pub(crate) fn run(remote: &Remote, command: Command, quiet: bool) -> anyhow::Result<Status> {
    match command {
        Command::Import(a) => {
            if a.replace {
                bail!("--replace is not available with --hub");
            }
            let mut rejects = match &a.rejects {
                Some(p) => Some(
                    std::fs::File::create(p)
                        .with_context(|| format!("creating {}", p.display()))?,
                ),
                None => None,
            };
            let mut status = Status::Ok;
            for path in &a.files {
                let (mut input, _) = open_input(path)?;
                let format = detect_format(a.format, path, &mut input);
                let mut body = Vec::new();
                input
                    .read_to_end(&mut body)
                    .with_context(|| format!("reading {}", path.display()))?;
                let mut q = vec![
                    ("type", kind_name(a.kind).unwrap_or_else(|| "auto".into())),
                    (
                        "format",
                        match format {
                            InputFormat::Sms => "sms",
                            InputFormat::Plain => "plain",
                            InputFormat::Jsonl => "jsonl",
                        }
                        .to_string(),
                    ),
                    ("source", a.source.clone()),
                ];
                if a.strict {
                    q.push(("strict", "true".into()));
                }
                let v = remote.send(
                    remote
                        .http
                        .post(format!("{}/api/v1/import", remote.base))
                        .query(&q)
                        .body(body),
                )?;
                let name = path.display().to_string();
                for r in v["rejects"].as_array().into_iter().flatten() {
                    let line = format!(
                        "{name}:{}: {}",
                        r["line"],
                        r["reason"].as_str().unwrap_or("")
                    );
                    eprintln!("{line}");
                    if let Some(f) = rejects.as_mut() {
                        writeln!(f, "{line}")?;
                    }
                }
                if v["committed"] == false {
                    eprintln!(
                        "{name}: {} rejected line(s); nothing imported (--strict)",
                        v["rejected"]
                    );
                    return Ok(Status::Failed);
                }
                if !quiet {
                    eprintln!(
                        "{name}: {} accepted ({} added, {} merged, {} unchanged), {} rejected; cursor {}",
                        v["accepted"],
                        v["added"],
                        v["updated"],
                        v["unchanged"],
                        v["rejected"],
                        v["cursor"]
                    );
                }
                if v["rejected"].as_u64().unwrap_or(0) > 0 {
                    status = Status::Partial;
                }
            }
            Ok(status)
        }
        Command::Query(a) => {
            let mut status = Status::Ok;
            let mut out = std::io::stdout().lock();
            for value in &a.values {
                let mut q = vec![("value", value.clone())];
                if let Some(k) = kind_name(a.kind) {
                    q.push(("kind", k));
                }
                let v = remote.get("/api/v1/entries", &q)?;
                let found = v["entries"].as_array().cloned().unwrap_or_default();
                if found.is_empty() {
                    eprintln!("{value}: not found");
                    status = Status::Partial;
                }
                for e in &found {
                    print_entry(&mut out, e, a.format)?;
                }
            }
            Ok(status)
        }
        Command::Search(a) => {
            let mut q = criteria_query(&a.criteria)?;
            q.push((
                "limit",
                if a.limit == 0 { 100_000 } else { a.limit }.to_string(),
            ));
            let v = remote.get("/api/v1/entries", &q)?;
            let found = v["entries"].as_array().cloned().unwrap_or_default();
            let mut out = std::io::stdout().lock();
            for e in &found {
                print_entry(&mut out, e, a.format)?;
            }
            if !quiet {
                let more = if v["more"] == true {
                    " (more: raise --limit)"
                } else {
                    ""
                };
                eprintln!("{} entries{more}", found.len());
            }
            Ok(Status::Ok)
        }
        Command::Delete(a) => {
            if a.all
                || a.file.is_some()
                || criteria_query(&a.criteria)
                    .map(|q| !q.is_empty())
                    .unwrap_or(true)
            {
                bail!(
                    "with --hub, delete takes values (and --from-source); --file, --all and criteria work on the database itself"
                );
            }
            if a.values.is_empty() {
                bail!("nothing to delete: give values");
            }
            let entries: Vec<Value> = a
                .values
                .iter()
                .map(|v| match kind_name(a.kind) {
                    Some(k) => json!({"value": v, "kind": k}),
                    None => json!({"value": v}),
                })
                .collect();
            let mut body = json!({"entries": entries});
            if let Some(s) = &a.from_source {
                body["source"] = json!(s);
            }
            let v = remote.send(
                remote
                    .http
                    .delete(format!("{}/api/v1/entries", remote.base))
                    .json(&body),
            )?;
            let n = v["deleted"].as_u64().unwrap_or(0);
            if !quiet {
                eprintln!(
                    "{n} deleted, {} not found; cursor {}",
                    a.values.len() as u64 - n,
                    v["cursor"]
                );
            }
            Ok(if n < a.values.len() as u64 {
                Status::Partial
            } else {
                Status::Ok
            })
        }
        Command::Categories(CategoriesCommand::List { json: as_json }) => {
            let v = remote.get("/api/v1/categories", &[])?;
            for c in v["categories"].as_array().into_iter().flatten() {
                if as_json {
                    println!("{c}");
                } else {
                    println!(
                        "{:>3}  {}: {}",
                        c["id"],
                        c["name"].as_str().unwrap_or(""),
                        c["type"].as_str().unwrap_or("")
                    );
                }
            }
            Ok(Status::Ok)
        }
        Command::Categories(add @ CategoriesCommand::Add { .. }) => {
            let body = serde_json::to_value(crate::args::new_category(add)?)?;
            let v = remote.send(
                remote
                    .http
                    .post(format!("{}/api/v1/categories", remote.base))
                    .json(&body),
            )?;
            println!(
                "added category {} with id {}",
                v["name"].as_str().unwrap_or(""),
                v["id"]
            );
            Ok(Status::Ok)
        }
        Command::Export(a) => {
            if a.format == crate::args::ExportFormatArg::Nft {
                // The entries as JSON lines, the script made here as from a local database.
                let mut q = criteria_query(&a.criteria)?;
                q.push(("format", "jsonl".into()));
                let mut lines = Vec::new();
                export_to_vec(remote, &q, &mut lines)?;
                let mut entries = Vec::new();
                for (i, line) in lines.split(|b| *b == b'\n').enumerate() {
                    if line.is_empty() {
                        continue;
                    }
                    let v: Value = serde_json::from_slice(line)
                        .with_context(|| format!("the hub's export, line {}", i + 1))?;
                    let (Some(kind), Some(value)) = (v["kind"].as_str(), v["value"].as_str())
                    else {
                        bail!("the hub's export, line {}: no kind or value", i + 1);
                    };
                    let entry = rephub_model::Entry::parse(kind.parse()?, value)
                        .with_context(|| format!("the hub's export, line {}", i + 1))?;
                    let expires = match v["expires"].as_str() {
                        Some(t) => Some(rephub_model::parse_datetime(t)?),
                        None => None,
                    };
                    entries.push((entry, expires));
                }
                let n = crate::interchange::write_nft(entries, a.output.as_deref())?;
                if !quiet {
                    eprintln!("exported {n} addresses and networks");
                }
                return Ok(Status::Ok);
            }
            if a.format == crate::args::ExportFormatArg::Misp {
                // The hub's own feed of every entry (/misp/all/), into a directory.
                if !criteria_query(&a.criteria)?.is_empty() {
                    bail!(
                        "through a hub, -f misp exports the hub's whole feed (/misp/all/): leave the search criteria out, or export locally"
                    );
                }
                let dir = a
                    .output
                    .as_ref()
                    .context("-f misp writes a feed directory: give it with -o")?;
                let get = |file: &str| -> anyhow::Result<Vec<u8>> {
                    let mut buf = Vec::new();
                    let mut resp = remote
                        .http
                        .get(format!("{}/misp/all/{file}", remote.base))
                        .bearer_auth(&remote.key)
                        .send()
                        .context("calling the hub")?;
                    if !resp.status().is_success() {
                        bail!("hub answered {} for /misp/all/{file}", resp.status());
                    }
                    resp.read_to_end(&mut buf)
                        .context("reading the hub's answer")?;
                    Ok(buf)
                };
                let manifest: Value = serde_json::from_slice(&get("manifest.json")?)
                    .context("the hub's MISP manifest")?;
                let mut events = Vec::new();
                for uuid in manifest.as_object().into_iter().flat_map(|m| m.keys()) {
                    // A uuid becomes a file name in DIR: nothing else is taken.
                    if !rephub_model::is_uuid(uuid) {
                        bail!("the hub's MISP manifest names {uuid:?}, which is not an event uuid");
                    }
                    let event: Value = serde_json::from_slice(&get(&format!("{uuid}.json"))?)
                        .with_context(|| format!("the hub's MISP event {uuid}"))?;
                    events.push((uuid.clone(), event));
                }
                let hashes =
                    String::from_utf8(get("hashes.csv")?).context("the hub's hashes.csv")?;
                let files = rephub_model::FeedFiles {
                    manifest,
                    events,
                    hashes,
                };
                crate::interchange::write_misp(&files, dir)?;
                if !quiet {
                    eprintln!(
                        "exported {} MISP events into {}",
                        files.events.len(),
                        dir.display()
                    );
                }
                return Ok(Status::Ok);
            }
            // Every Suricata piece into a directory: one request each.
            let pieces: Vec<(String, Option<std::path::PathBuf>)> = match a.format.kind() {
                Ok(f) => vec![(
                    match f {
                        OutputFormat::Sms => "sms",
                        OutputFormat::Jsonl => "jsonl",
                        OutputFormat::Plain => "plain",
                    }
                    .to_string(),
                    a.output.clone(),
                )],
                Err(Some(f)) => vec![(f.name().to_string(), a.output.clone())],
                Err(None) => {
                    let dir = a
                        .output
                        .as_ref()
                        .context("-f suricata writes several files: give the directory with -o")?;
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("creating {}", dir.display()))?;
                    rephub_model::ExportFormat::SURICATA
                        .iter()
                        .map(|f| (f.name().to_string(), Some(dir.join(f.file_name()))))
                        .collect()
                }
            };
            for (format, output) in pieces {
                let mut q = criteria_query(&a.criteria)?;
                q.push(("format", format));
                let n = export_one(remote, &q, output.as_deref())?;
                if !quiet {
                    eprintln!("exported {n} bytes");
                }
            }
            Ok(Status::Ok)
        }
        Command::Connect {
            upstream,
            token,
            fingerprint,
            settings,
        } => {
            let mut body = settings_json(&settings)?;
            body["token"] = serde_json::json!(token);
            body["ca_fingerprint"] = serde_json::json!(fingerprint);
            if let Some(u) = upstream {
                body["upstream"] = serde_json::json!(u);
            }
            let v = remote.send(
                remote
                    .http
                    .put(format!("{}/api/v1/connection", remote.base))
                    .json(&body),
            )?;
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(Status::Ok)
        }
        Command::Disconnect => {
            let v = remote.send(
                remote
                    .http
                    .delete(format!("{}/api/v1/connection", remote.base)),
            )?;
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(Status::Ok)
        }
        Command::Sharing(c) => {
            use crate::args::SharingCommand as S;
            let post = |path: String, body: serde_json::Value| {
                remote.send(
                    remote
                        .http
                        .post(format!("{}{path}", remote.base))
                        .json(&body),
                )
            };
            let select = |sink: &str, ids: &[i64]| {
                let mut b = serde_json::json!({ "sink": sink });
                if !ids.is_empty() {
                    b["ids"] = serde_json::json!(ids);
                }
                b
            };
            let v = match c {
                S::Status => remote.get("/api/v1/sharing", &[])?,
                S::Parked { sink, limit } => {
                    let mut q = vec![("limit", limit.to_string())];
                    if let Some(s) = sink {
                        q.push(("sink", s));
                    }
                    remote.get("/api/v1/sharing/parked", &q)?
                }
                S::Replay { sink, ids } => {
                    post("/api/v1/sharing/parked/replay".into(), select(&sink, &ids))?
                }
                S::Discard { sink, ids } => {
                    post("/api/v1/sharing/parked/discard".into(), select(&sink, &ids))?
                }
                S::Flush { sink } => post(
                    format!("/api/v1/sharing/sinks/{sink}/flush"),
                    serde_json::json!({}),
                )?,
            };
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(Status::Ok)
        }
        Command::Connection { settings, test } => {
            if settings.any() {
                remote.send(
                    remote
                        .http
                        .patch(format!("{}/api/v1/connection", remote.base))
                        .json(&settings_json(&settings)?),
                )?;
            }
            let v = if test {
                remote.send(
                    remote
                        .http
                        .post(format!("{}/api/v1/connection/test", remote.base)),
                )?
            } else {
                remote.get("/api/v1/connection", &[])?
            };
            println!("{}", serde_json::to_string_pretty(&v)?);
            // Test Connectivity that found a failure is a failing command.
            if test && v["ok"] == serde_json::json!(false) {
                return Ok(Status::Failed);
            }
            Ok(Status::Ok)
        }
        Command::Keys(k) => {
            use crate::args::KeysCommand as K;
            match k {
                K::Add { name, role } => {
                    let v = remote.call(
                        reqwest::Method::POST,
                        "/api/v1/keys",
                        Some(json!({"name": name, "role": role})),
                    )?;
                    println!("{}", v["key"].as_str().unwrap_or_default());
                    eprintln!("created key {name:?} ({role}); it is shown this once");
                }
                K::List => {
                    let v = remote.get("/api/v1/keys", &[])?;
                    for k in v["keys"].as_array().into_iter().flatten() {
                        println!(
                            "{:<20} {:<10} created {}",
                            k["name"].as_str().unwrap_or_default(),
                            k["role"].as_str().unwrap_or_default(),
                            k["created"].as_str().unwrap_or_default()
                        );
                    }
                }
                K::Delete { name } => {
                    remote.call(
                        reqwest::Method::DELETE,
                        &format!("/api/v1/keys/{}", segment(&name)),
                        None,
                    )?;
                    eprintln!("deleted key {name:?}");
                }
            }
            Ok(Status::Ok)
        }
        Command::Users(u) => {
            use crate::args::UsersCommand as U;
            match u {
                U::Add { name, role } => {
                    let password = crate::password::read()?;
                    remote.call(
                        reqwest::Method::POST,
                        "/api/v1/users",
                        Some(json!({"name": name, "role": role, "password": password})),
                    )?;
                    eprintln!("added user {name:?} ({role})");
                }
                U::List => {
                    let v = remote.get("/api/v1/users", &[])?;
                    for u in v["users"].as_array().into_iter().flatten() {
                        println!(
                            "{:<20} {:<10} created {}",
                            u["name"].as_str().unwrap_or_default(),
                            u["role"].as_str().unwrap_or_default(),
                            u["created"].as_str().unwrap_or_default()
                        );
                    }
                }
                U::Set {
                    name,
                    role,
                    password,
                } => {
                    let mut body = json!({});
                    if let Some(r) = role {
                        body["role"] = json!(r);
                    }
                    if password {
                        body["password"] = json!(crate::password::read()?);
                    }
                    if body == json!({}) {
                        bail!("nothing to change: give --role or --password");
                    }
                    remote.call(
                        reqwest::Method::PUT,
                        &format!("/api/v1/users/{}", segment(&name)),
                        Some(body),
                    )?;
                    eprintln!("changed user {name:?}; their console sessions ended");
                }
                U::Delete { name } => {
                    remote.call(
                        reqwest::Method::DELETE,
                        &format!("/api/v1/users/{}", segment(&name)),
                        None,
                    )?;
                    eprintln!("deleted user {name:?}");
                }
            }
            Ok(Status::Ok)
        }
        Command::Stats => {
            let text = remote
                .http
                .get(format!("{}/metrics", remote.base))
                .send()
                .and_then(Response::text)
                .context("calling the hub")?;
            for l in text
                .lines()
                .filter(|l| !l.starts_with('#') && !l.starts_with("rephub_http"))
            {
                println!("{l}");
            }
            Ok(Status::Ok)
        }
        other => bail!(
            "{} works on the database itself, not with --hub",
            format!("{other:?}")
                .split([' ', '(', '{'])
                .next()
                .unwrap_or("this command")
                .to_ascii_lowercase()
        ),
    }
}

fn criteria_query(c: &CriteriaArgs) -> anyhow::Result<Vec<(&'static str, String)>> {
    let mut q = Vec::new();
    if let Some(v) = &c.ip {
        q.push(("ip", v.clone()));
    }
    if let Some(v) = &c.domain {
        q.push(("domain", v.clone()));
        if c.exact {
            q.push(("exact", "true".into()));
        }
    }
    if let Some(v) = &c.url {
        q.push(("url", v.clone()));
    }
    if let Some(v) = &c.hash {
        q.push(("hash", v.clone()));
    }
    match c.kinds.as_slice() {
        [] => {}
        [k] => {
            if let Some(k) = kind_name(*k) {
                q.push(("kind", k));
            }
        }
        _ => bail!("with --hub, give at most one --kind"),
    }
    if !c.tags.is_empty() {
        q.push(("tag", c.tags.join(";")));
    }
    if let Some(s) = &c.source {
        q.push(("source", s.clone()));
    }
    if c.untagged_only || c.tagged_only || c.user_only || c.feed_only {
        bail!("with --hub, the --*-only options are not available yet");
    }
    Ok(q)
}

fn print_entry(out: &mut dyn Write, e: &Value, format: OutputFormat) -> anyhow::Result<()> {
    let value = e["value"].as_str().unwrap_or("");
    match format {
        OutputFormat::Plain => writeln!(out, "{value}")?,
        OutputFormat::Jsonl => writeln!(out, "{e}")?,
        OutputFormat::Sms => {
            let pairs: Vec<(&str, String)> = e["tags"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.as_str(), tag_text(v)))
                .collect();
            writeln!(out, "{}", rephub_model::format_sms_line(value, pairs, ','))?;
        }
    }
    Ok(())
}

fn tag_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => if *b { "yes" } else { "no" }.to_string(),
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join("~~~"),
        other => other.to_string(),
    }
}

/// The body of `PUT`/`PATCH /api/v1/connection` for `s`; secrets are read from their files.
fn settings_json(s: &crate::args::ConnectionSettings) -> anyhow::Result<serde_json::Value> {
    use anyhow::Context as _;
    let read = |p: &std::path::Path| -> anyhow::Result<String> {
        Ok(std::fs::read_to_string(p)
            .with_context(|| format!("reading {}", p.display()))?
            .trim()
            .to_string())
    };
    let mut body = serde_json::json!({});
    if let Some(i) = s.interval_secs {
        body["interval_secs"] = serde_json::json!(i);
    }
    let mut features = serde_json::Map::new();
    for (names, on) in [(&s.enable, true), (&s.disable, false)] {
        for n in names {
            features.insert(n.clone(), serde_json::json!(on));
        }
    }
    if !features.is_empty() {
        body["features"] = serde_json::Value::Object(features);
    }
    if let Some(url) = &s.gateway {
        let mut g = serde_json::json!({"url": url, "enabled": s.gateway_enabled.unwrap_or(true)});
        if let Some(f) = &s.gateway_key_file {
            g["api_key"] = serde_json::json!(read(f)?);
        }
        body["gateway"] = g;
    } else if s.gateway_enabled.is_some() {
        anyhow::bail!("--gateway-enabled needs --gateway (the gateway's URL)");
    }
    if let Some(url) = &s.proxy {
        let mut p = serde_json::json!({"url": url});
        if let Some(u) = &s.proxy_username {
            p["username"] = serde_json::json!(u);
        }
        if let Some(f) = &s.proxy_password_file {
            p["password"] = serde_json::json!(read(f)?);
        }
        body["proxy"] = p;
    }
    Ok(body)
}
