//! The sandbox page (seed 002, chapter 9's mock-up): whether Cloud Sandbox URL analysis is
//! enabled, "Submissions (Total / Reserve)", the submissions with the seed's columns, filtered
//! by status, risk level and submitter and searched by object, SHA-1, threat type or name, and
//! Submit Object (producer).

use axum::Router;
use axum::body::Bytes;
use axum::extract::Query;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maud::html;
use serde::Deserialize;
use serde_json::{Value, json};

use super::page::{
    csrf, failure, field, general_error, page_with, select, table, text, text_field,
};
use super::{Failure, Form, Ui, see, with_query};
use crate::keys::Role;
use crate::state::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/ui/sandbox", get(sandbox).post(submit))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Filter {
    status: String,
    risk: String,
    submitter: String,
    q: String,
    before: String,
}

/// The seed's words for the risk levels.
fn risk_words(r: &Value) -> &'static str {
    match r.as_str() {
        Some("high") => "High",
        Some("medium") => "Medium",
        Some("low") => "Low",
        Some("noRisk") => "No risk",
        Some("notAnalyzed") => "Not analyzed",
        _ => "",
    }
}

async fn sandbox(ui: Ui, Query(q): Query<Filter>) -> Response {
    sandbox_page(ui, q, &Form::default(), None).await
}

async fn sandbox_page(mut ui: Ui, q: Filter, f: &Form, err: Option<&Failure>) -> Response {
    let status = ui.get("/api/v1/sandbox").await;
    let filters = [
        ("status", q.status.as_str()),
        ("risk", q.risk.as_str()),
        ("submitter", q.submitter.as_str()),
        ("q", q.q.as_str()),
    ];
    let mut pairs: Vec<(&str, &str)> = filters
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .copied()
        .collect();
    pairs.extend([("before", q.before.as_str()), ("limit", "100")]);
    pairs.retain(|(_, v)| !v.is_empty());
    let found = ui
        .get(&with_query("/api/v1/sandbox/submissions", pairs))
        .await;
    let rows: Vec<Value> = found
        .as_ref()
        .ok()
        .and_then(|v| v["submissions"].as_array())
        .into_iter()
        .flatten()
        .map(|r| {
            let status = match (r["status"].as_str(), r["error"].as_str()) {
                (Some("done"), _) => "Done".to_string(),
                (Some("submitted"), _) => "Analyzing".to_string(),
                (Some("skipped"), _) => "Skipped".to_string(),
                (_, Some(e)) => format!("Waiting ({e})"),
                _ => "Waiting".to_string(),
            };
            json!({"id": r["id"], "object": r["object"], "status": status,
                   "submitter": r["submitter"], "submitted": r["submitted"].as_i64().map(rephub_model::format_utc),
                   "sha1": r["sha1"], "risk": risk_words(&r["risk_level"]),
                   "threat_type": r["threat_type"], "threat_name": r["threat_name"]})
        })
        .collect();
    let next = found
        .as_ref()
        .ok()
        .and_then(|v| v["next"].as_i64())
        .filter(|_| rows.len() == 100)
        .map(|n| {
            let n = n.to_string();
            let mut more = filters.to_vec();
            more.push(("before", n.as_str()));
            with_query("/ui/sandbox", more)
        });
    let may_submit = ui.may(Role::Producer);
    let body = html! {
        @match &status {
            Err(e) => { (failure(e)) }
            Ok(s) => {
                p id="sandbox-status" {
                    "Cloud Sandbox URL analysis: "
                    strong { @if s["enabled"] == true { "Enabled" } @else { "Disabled" } }
                    @if let Some(why) = s["why_not"].as_str() { " (" (why) ")" }
                    " · analyzer: " (text(&s["analyzer"]))
                }
                p id="sandbox-reserve" {
                    "Submissions (Total / Reserve): " (text(&s["submissions"]["total"])) " / " (text(&s["submissions"]["reserve"]))
                    @if !s["submissions"]["file_reserve"].is_null() {
                        " · files reserve: " (text(&s["submissions"]["file_reserve"]))
                    }
                }
                @if let Some(e) = s["last_error"].as_str() { p.error role="alert" { "The analyzer could not be reached: " (e) } }
            }
        }
        form.criteria method="get" action="/ui/sandbox" id="sandbox-filter" {
            (select("Status", "status", &[("", "All"), ("pending", "Waiting"), ("submitted", "Analyzing"), ("done", "Done"), ("skipped", "Skipped")], &q.status, None))
            (select("Risk level", "risk", &[("", "All"), ("high", "High"), ("medium", "Medium"), ("low", "Low"), ("noRisk", "No risk"), ("notAnalyzed", "Not analyzed")], &q.risk, None))
            (text_field("Submitter", "submitter", &q.submitter, None))
            (text_field("Object, SHA-1, threat type or name", "q", &q.q, None))
            button type="submit" { "Search" }
        }
        (table(&rows, &[("object", "Object"), ("status", "Status"), ("submitter", "Submitter"), ("submitted", "Submitted"), ("sha1", "SHA-1 hash value"), ("risk", "Risk level"), ("threat_type", "Threat type"), ("threat_name", "Threat name")], "submissions"))
        @if let Some(next) = &next {
            p.pager { a id="next" href=(next) { "next →" } }
        }
        @if may_submit {
            h2 { "Submit Object" }
            form method="post" action="/ui/sandbox" id="submit-object" {
                (csrf(&ui))
                (field("URLs, one a line (http or https)", "urls", err, |id, _| html! { textarea id=(id) name="urls" rows="4" { (f.get("urls")) } }))
                (general_error(err, &["urls"]))
                button type="submit" id="submit" { "Submit" }
            }
        }
    };
    let code = err.map_or(StatusCode::OK, |e| e.status);
    page_with(code, &mut ui, "Sandbox analysis", "/ui/sandbox", body)
}

async fn submit(ui: Ui, b: Bytes) -> Response {
    let f = match ui.form(&b) {
        Ok(f) => f,
        Err(r) => return r.into_response(),
    };
    let urls: Vec<&str> = f
        .get("urls")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    match ui
        .send(
            Method::POST,
            "/api/v1/sandbox/submissions",
            Some(json!({ "urls": urls })),
        )
        .await
    {
        Ok(v) => {
            let refused = v["rejected"].as_array().map_or(0, Vec::len);
            ui.flash(format!(
                "{} submitted, {} known already, {} refused{}.",
                text(&v["accepted"]),
                text(&v["known"]),
                refused,
                v["rejected"]
                    .as_array()
                    .and_then(|r| r.first())
                    .map(|r| format!(
                        " (line {}: {})",
                        r["index"].as_u64().unwrap_or(0) + 1,
                        text(&r["message"])
                    ))
                    .unwrap_or_default()
            ))
            .await;
            see("/ui/sandbox")
        }
        Err(e) => sandbox_page(ui, Filter::default(), &f, Some(&e)).await,
    }
}
