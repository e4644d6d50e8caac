//! The reputation database: the SMS "Entry Criteria" search with paged results, an entry's page
//! (its assertions per source and its change history), add, edit tags, delete, import of a file
//! with its real progress, and export.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Value, json};

use super::page::{
    checkbox, count, csrf, failure, field, general_error, input, page, page_with, select, text,
    text_field,
};
use super::{Failure, Form, Ui, see, with_query};
use crate::http::error::{ApiError, Dialect};
use crate::keys::Role;
use crate::state::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/ui/entries", get(search))
        .route("/ui/entries/view", get(view))
        .route("/ui/entries/new", get(new_form).post(add))
        .route("/ui/entries/edit", post(edit))
        .route("/ui/entries/delete", post(delete))
        .route("/ui/import", get(import_page).post(import_start))
        .route("/ui/import/{id}", get(import_progress))
        .route("/ui/export", get(export))
}

const PAGE: usize = 50;

const KINDS: &[(&str, &str)] = &[
    ("", "any"),
    ("ipv4", "IPv4 address or network"),
    ("ipv6", "IPv6 address or network"),
    ("domain", "domain"),
    ("url", "URL"),
    ("sha1", "SHA-1"),
    ("sha256", "SHA-256"),
];

/// The Entry Criteria, as the search form and the API take them.
#[derive(Debug, Default, Deserialize)]
struct Criteria {
    #[serde(default)]
    ip: String,
    #[serde(default)]
    domain: String,
    #[serde(default)]
    exact: Option<String>,
    #[serde(default)]
    url: String,
    #[serde(default)]
    hash: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    tag: String,
    #[serde(default)]
    source: String,
    #[serde(default)]
    page: Option<usize>,
    /// The cursor of a search without an address, domain, URL or hash (insertion order).
    #[serde(default)]
    after: Option<i64>,
    #[serde(default)]
    format: String,
}

impl Criteria {
    fn pairs(&self) -> Vec<(&'static str, &str)> {
        vec![
            ("ip", self.ip.trim()),
            ("domain", self.domain.trim()),
            ("exact", if self.exact.is_some() { "true" } else { "" }),
            ("url", self.url.trim()),
            ("hash", self.hash.trim()),
            ("kind", self.kind.trim()),
            ("tag", self.tag.trim()),
            ("source", self.source.trim()),
        ]
    }
}

fn criteria_form(c: &Criteria, err: Option<&Failure>) -> Markup {
    html! {
        form.criteria method="get" action="/ui/entries" id="criteria" {
            fieldset {
                legend { "Entry Criteria" }
                (text_field("Address or network (IPv4/IPv6, CIDR)", "ip", &c.ip, err))
                (field("Domain (and its subdomains)", "domain", err, |id, _| html! {
                    input id=(id) name="domain" value=(c.domain) type="text";
                    (checkbox("exact domain only", "exact", "true", c.exact.is_some(), false))
                }))
                (text_field("URL (* matches any text)", "url", &c.url, err))
                (text_field("Hash (SHA-1 or SHA-256)", "hash", &c.hash, err))
                (select("Kind", "kind", KINDS, &c.kind, err))
                (text_field("Tag criteria (Category=Value~~~Value; Category=1..5; !Category)", "tag", &c.tag, err))
                (text_field("Source", "source", &c.source, err))
            }
            (general_error(err, &["ip", "domain", "url", "hash", "kind", "tag", "source"]))
            button type="submit" id="search" { "Search" }
        }
    }
}

/// Pages of a search by address, network, domain, URL or hash (the index's order): at most this
/// many, so that no page view reads more than 10,000 entries; narrower criteria or an export go
/// further.
const MAX_PAGE: usize = 200;

impl Criteria {
    /// Whether the search goes by the index (address, domain, URL, hash): paged by offset; else
    /// by cursor, in insertion order, a bounded piece of the database per page.
    fn indexed(&self) -> bool {
        [&self.ip, &self.domain, &self.url, &self.hash]
            .iter()
            .any(|v| !v.trim().is_empty())
    }
}

async fn search(mut ui: Ui, Query(c): Query<Criteria>) -> Response {
    let page_no = c.page.unwrap_or(0).min(MAX_PAGE);
    let limit = PAGE.to_string();
    let offset = (page_no * PAGE).to_string();
    let after = c.after.unwrap_or(0).max(0).to_string();
    let mut pairs = c.pairs();
    pairs.push(("limit", &limit));
    if c.indexed() {
        pairs.push(("offset", &offset));
    } else {
        pairs.push(("after", &after));
    }
    let found = ui.get(&with_query("/api/v1/entries", pairs)).await;
    let here = c.pairs();
    let page_link = |p: usize| {
        let p = p.to_string();
        let mut q = here.clone();
        q.push(("page", &p));
        with_query("/ui/entries", q)
    };
    let after_link = |a: &str| {
        let mut q = here.clone();
        q.push(("after", a));
        with_query("/ui/entries", q)
    };
    let export_link = |format: &'static str| {
        let mut q = here.clone();
        q.push(("format", format));
        with_query("/ui/export", q)
    };
    let err = found.as_ref().err();
    let body = html! {
        (criteria_form(&c, err))
        @if ui.may(Role::Producer) {
            p.actions { a.button href="/ui/entries/new" id="add-entry" { "Add entry" } " " a.button href="/ui/import" id="import" { "Import a file" } }
        }
        @if let Ok(v) = &found {
            @let rows = v["entries"].as_array().cloned().unwrap_or_default();
            @let more = v["more"].as_bool() == Some(true);
            @if rows.is_empty() && !more {
                p.empty id="no-results" { "No entry matches." }
            } @else if !rows.is_empty() {
                table id="results" {
                    thead { tr { th { "Entry" } th { "Kind" } th { "Tags" } th { "Sources" } th { "Expires" } } }
                    tbody {
                        @for e in &rows {
                            tr {
                                td { a href=(with_query("/ui/entries/view", [("kind", e["kind"].as_str().unwrap_or("")), ("value", e["value"].as_str().unwrap_or(""))])) { (text(&e["value"])) } }
                                td { (text(&e["kind"])) }
                                td { (tags_text(&e["tags"])) }
                                td { (text(&e["sources"])) }
                                td { (text(&e["expires"])) }
                            }
                        }
                    }
                }
            }
            p.pager {
                @if c.indexed() {
                    @if !rows.is_empty() { "Entries " (count((page_no * PAGE + 1) as u64)) "–" (count((page_no * PAGE + rows.len()) as u64)) }
                    @if page_no > 0 { " " a href=(page_link(page_no - 1)) id="prev" { "← previous" } }
                    @if more && page_no < MAX_PAGE { " " a href=(page_link(page_no + 1)) id="next" { "next →" } }
                    @if more && page_no >= MAX_PAGE { " " span.note { "More match: narrow the criteria, or export them." } }
                } @else {
                    @if c.after.is_some_and(|a| a > 0) { a href=(after_link("0")) id="first" { "← first page" } " " }
                    @if let (true, Some(next)) = (more, v["next"].as_i64()) {
                        @if rows.len() < PAGE { span.note id="partial" { "Not every entry has been searched yet. " } }
                        a href=(after_link(&next.to_string())) id="next" { "next →" }
                    }
                }
            }
            p { "Export these entries: "
                a href=(export_link("sms")) { "SMS CSV" } ", "
                a href=(export_link("jsonl")) { "JSON lines" } ", "
                a href=(export_link("csv")) { "CSV" } ", "
                a href=(export_link("stix")) { "STIX 2.1" }
            }
        }
    };
    let status = if err.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    page_with(status, &mut ui, "Reputation database", "/ui/entries", body)
}

fn tags_text(tags: &Value) -> String {
    tags.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", text(v)))
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_default()
}

/// Tags as lines `Category=Value` (what the edit form shows).
fn tags_lines(tags: &Value) -> String {
    tags.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", text(v).replace(", ", "~~~")))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// The tags a form gives, one `Category=Value` a line, as the API's map; a line without `=` is
/// the form's mistake, named by its number.
fn parse_tags(text: &str) -> Result<serde_json::Map<String, Value>, Failure> {
    let mut map = serde_json::Map::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err(Failure {
                status: StatusCode::BAD_REQUEST,
                field: Some("tags".into()),
                message: format!("line {}: write Category=Value", i + 1),
            });
        };
        map.insert(k.trim().to_string(), Value::String(v.trim().to_string()));
    }
    Ok(map)
}

#[derive(Debug, Deserialize)]
struct One {
    kind: String,
    value: String,
}

async fn view(mut ui: Ui, Query(one): Query<One>) -> Response {
    let uri = with_query(
        "/api/v1/entries",
        [
            ("value", one.value.as_str()),
            ("kind", one.kind.as_str()),
            ("detail", "true"),
        ],
    );
    let found = ui.get(&uri).await;
    let entry = found
        .as_ref()
        .ok()
        .and_then(|v| v["entries"].as_array().and_then(|a| a.first()).cloned());
    let body = match (&found, &entry) {
        (Err(e), _) => failure(e),
        (Ok(_), None) => {
            html! { p.empty id="not-found" { "No such entry (it may have been deleted or expired)." } }
        }
        (Ok(_), Some(e)) => entry_page(&ui, e, None, None),
    };
    page(&mut ui, &one.value, "/ui/entries", body)
}

fn entry_page(ui: &Ui, e: &Value, tags_typed: Option<&str>, err: Option<&Failure>) -> Markup {
    let user_tags = e["assertions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["source"] == "user")
        .map(|a| tags_lines(&a["tags"]))
        .unwrap_or_default();
    html! {
        dl.entry id="entry" {
            dt { "Kind" } dd { (text(&e["kind"])) }
            dt { "Effective tags" } dd id="effective-tags" { (tags_text(&e["tags"])) }
            dt { "Expires" } dd { (text(&e["expires"])) }
        }
        h2 { "Assertions per source" }
        table id="assertions" {
            thead { tr { th { "Source" } th { "Tags" } th { "Updated" } th { "Expires" } } }
            tbody {
                @for a in e["assertions"].as_array().into_iter().flatten() {
                    tr { td { (text(&a["source"])) } td { (tags_text(&a["tags"])) } td { (text(&a["updated"])) } td { (text(&a["expires"])) } }
                }
            }
        }
        h2 { "History" }
        table id="history" {
            thead { tr { th { "Change" } th { "What" } th { "When" } } }
            tbody {
                @for h in e["history"].as_array().into_iter().flatten() {
                    tr { td { (text(&h["seq"])) } td { (text(&h["op"])) } td { (text(&h["at"])) } }
                }
            }
        }
        @if ui.may(Role::Producer) {
            h2 { "Edit the tags you asserted (source user)" }
            form method="post" action="/ui/entries/edit" id="edit-tags" {
                (csrf(ui))
                input type="hidden" name="kind" value=(text(&e["kind"]));
                input type="hidden" name="value" value=(text(&e["value"]));
                (tags_area(tags_typed.unwrap_or(&user_tags), err))
                (general_error(err, &["tags"]))
                button type="submit" id="save-tags" { "Save tags" }
            }
            form method="post" action="/ui/entries/delete" id="delete-entry" {
                (csrf(ui))
                input type="hidden" name="kind" value=(text(&e["kind"]));
                input type="hidden" name="value" value=(text(&e["value"]));
                button.danger type="submit" id="delete" { "Delete this entry (every source)" }
            }
        }
    }
}

fn tags_area(value: &str, err: Option<&Failure>) -> Markup {
    field(
        "Tags, one Category=Value a line (several values: Value~~~Value)",
        "tags",
        err,
        |id, _| html! { textarea id=(id) name="tags" rows="5" { (value) } },
    )
}

fn new_entry_form(ui: &Ui, f: &Form, err: Option<&Failure>) -> Markup {
    html! {
        form method="post" action="/ui/entries/new" id="new-entry" {
            (csrf(ui))
            (text_field("Entry (address, network, domain, URL or hash)", "value", f.get("value"), err))
            (select("Kind", "kind", &[("auto", "detect"), ("ipv4", "IPv4"), ("ipv6", "IPv6"), ("domain", "domain"), ("url", "URL"), ("sha1", "SHA-1"), ("sha256", "SHA-256")], f.get("kind"), err))
            (tags_area(f.get("tags"), err))
            (general_error(err, &["value", "kind", "tags"]))
            button type="submit" id="save" { "Add" }
        }
    }
}

async fn new_form(mut ui: Ui) -> Response {
    let body = new_entry_form(&ui, &Form::default(), None);
    page(&mut ui, "Add an entry", "/ui/entries", body)
}

async fn add(mut ui: Ui, b: Bytes) -> Response {
    let f = match ui.form(&b) {
        Ok(f) => f,
        Err(r) => return r.into_response(),
    };
    let result = match parse_tags(f.get("tags")) {
        Ok(tags) => {
            let kind = match f.get("kind") {
                "" => "auto",
                k => k,
            };
            let body = json!({"entries": [{"value": f.get("value"), "kind": kind, "tags": tags}]});
            ui.send(Method::POST, "/api/v1/entries", Some(body)).await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => {
            ui.flash(format!("Added {}.", f.get("value"))).await;
            see("/ui/entries")
        }
        Err(e) => {
            let body = new_entry_form(&ui, &f, Some(&e));
            page_with(e.status, &mut ui, "Add an entry", "/ui/entries", body)
        }
    }
}

fn entry_link(kind: &str, value: &str) -> String {
    with_query("/ui/entries/view", [("kind", kind), ("value", value)])
}

async fn edit(mut ui: Ui, b: Bytes) -> Response {
    let f = match ui.form(&b) {
        Ok(f) => f,
        Err(r) => return r.into_response(),
    };
    let (kind, value) = (f.get("kind").to_string(), f.get("value").to_string());
    let result = match parse_tags(f.get("tags")) {
        // The user's assertion becomes exactly these tags (replace), the other sources' stay.
        Ok(tags) => {
            let body = json!({"entries": [{"value": value, "kind": kind, "tags": tags}], "mode": "replace"});
            ui.send(Method::POST, "/api/v1/entries", Some(body)).await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => {
            ui.flash("Tags saved.").await;
            see(&entry_link(&kind, &value))
        }
        Err(e) => {
            let uri = with_query(
                "/api/v1/entries",
                [
                    ("value", value.as_str()),
                    ("kind", kind.as_str()),
                    ("detail", "true"),
                ],
            );
            let entry = ui
                .get(&uri)
                .await
                .ok()
                .and_then(|v| v["entries"].as_array().and_then(|a| a.first()).cloned())
                .unwrap_or_else(|| json!({"kind": kind, "value": value}));
            let body = entry_page(&ui, &entry, Some(f.get("tags")), Some(&e));
            page_with(e.status, &mut ui, &value, "/ui/entries", body)
        }
    }
}

async fn delete(ui: Ui, b: Bytes) -> Response {
    let f = match ui.form(&b) {
        Ok(f) => f,
        Err(r) => return r.into_response(),
    };
    let body = json!({"entries": [{"value": f.get("value"), "kind": f.get("kind")}]});
    match ui.send(Method::DELETE, "/api/v1/entries", Some(body)).await {
        Ok(_) => {
            ui.flash(format!("Deleted {}.", f.get("value"))).await;
            see("/ui/entries")
        }
        Err(e) => {
            ui.flash(format!("Not deleted: {}", e.message)).await;
            see(&entry_link(f.get("kind"), f.get("value")))
        }
    }
}

async fn import_page(mut ui: Ui) -> Response {
    let body = html! {
        @if ui.may(Role::Producer) {
            form id="import-form" data-import="/ui/import" {
                (input("file", "File", "file", "", None))
                (select("Format", "format", &[("sms", "SMS CSV (entry,Category,Value,…)"), ("plain", "one entry a line"), ("jsonl", "JSON lines")], "sms", None))
                (select("Type", "type", &[("auto", "detect per line"), ("ipv4", "IPv4"), ("ipv6", "IPv6"), ("domain", "domain"), ("url", "URL"), ("sha1", "SHA-1"), ("sha256", "SHA-256")], "auto", None))
                (text_field("Source", "source", "user", None))
                button type="submit" id="start-import" { "Import" }
            }
            div id="import-status" hidden {
                progress id="import-progress" max="100" value="0" {}
                span id="import-percent" { "0 %" }
                p id="import-result" {}
            }
            noscript { p.error { "Importing from the console needs JavaScript; the CLI (rephub import) and the API do not." } }
        } @else {
            p.error { "Your role may not import." }
        }
    };
    page(&mut ui, "Import a file", "/ui/entries", body)
}

#[derive(Debug, Deserialize)]
struct ImportParams {
    #[serde(default)]
    format: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    source: Option<String>,
}

/// The upload (the file as the body, `X-CSRF-Token` and `X-File-Name` headers): checked like
/// `/api/v1/import`, then imported in the background; the answer is the job to follow.
async fn import_start(
    ui: Ui,
    headers: HeaderMap,
    Query(p): Query<ImportParams>,
    b: Bytes,
) -> Response {
    if !ui.csrf_header_ok(&headers) {
        return super::csrf_refused();
    }
    let fail = |e: ApiError| e.render(Dialect::Rest);
    if !ui.may(Role::Producer) {
        return fail(ApiError::status(
            StatusCode::FORBIDDEN,
            format!("{} ({}) may not import", ui.caller.name, ui.role().as_str()),
        ));
    }
    let q: crate::ingest::entries::ImportQuery = match serde_json::from_value(json!({
        "format": p.format, "type": p.kind, "source": p.source,
    })) {
        Ok(q) => q,
        Err(e) => return fail(ApiError::status(StatusCode::BAD_REQUEST, e.to_string())),
    };
    let opts = match crate::ingest::entries::import_options(&ui.state, q) {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    let file = headers
        .get("x-file-name")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("upload")
        .to_string();
    let (id, job) = ui
        .state
        .console_imports()
        .start(&ui.caller.name, &file, b.len() as u64);
    let state = ui.state.clone();
    tokio::spawn(async move {
        let outcome = crate::ingest::entries::run_import(&state, opts, b, job.read.clone())
            .await
            .map_err(|e| (e.field().map(str::to_string), e.message().to_string()));
        job.read.store(job.total, Ordering::Relaxed);
        job.finish(outcome);
    });
    (
        StatusCode::ACCEPTED,
        Json(json!({"id": id, "progress": format!("/ui/import/{id}")})),
    )
        .into_response()
}

async fn import_progress(ui: Ui, Path(id): Path<u64>) -> Response {
    let Some(job) = ui.state.console_imports().get(id, &ui.caller.name) else {
        return ApiError::not_found("import").render(Dialect::Rest);
    };
    let (done, result, error) = match job.outcome() {
        None => (false, Value::Null, Value::Null),
        Some(Ok(v)) => (true, v, Value::Null),
        Some(Err((field, message))) => (
            true,
            Value::Null,
            json!({"field": field, "message": message}),
        ),
    };
    let percent = (job.done_bytes().saturating_mul(100))
        .checked_div(job.total)
        .unwrap_or(100);
    Json(
        json!({"file": job.file, "bytes": job.total, "read": job.done_bytes(),
                "percent": if done { 100 } else { percent.min(99) },
                "done": done, "result": result, "error": error}),
    )
    .into_response()
}

/// An export, streamed from the API as a download.
async fn export(ui: Ui, Query(c): Query<Criteria>) -> Response {
    let format = if c.format.is_empty() {
        "sms"
    } else {
        c.format.as_str()
    };
    let mut pairs = c.pairs();
    pairs.push(("format", format));
    let mut res = ui
        .raw(
            Method::GET,
            &with_query("/api/v1/export", pairs),
            Body::empty(),
        )
        .await;
    if res.status().is_success() {
        let ext = match format {
            "jsonl" => "jsonl",
            "stix" => "json",
            "csv" => "csv",
            _ => "txt",
        };
        if let Ok(v) =
            HeaderValue::from_str(&format!("attachment; filename=\"rephub-export.{ext}\""))
        {
            res.headers_mut().insert(header::CONTENT_DISPOSITION, v);
        }
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_lines_of_category_and_value() {
        let m = parse_tags("Trend Micro Severity=High\n\n  Trend Micro Source = ddd \n").unwrap();
        assert_eq!(m["Trend Micro Severity"], "High");
        assert_eq!(m["Trend Micro Source"], "ddd");
        let e = parse_tags("A=1\nno equals sign").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("tags"));
        assert!(e.message.starts_with("line 2"));
    }
}
