//! Connect to upstream (seed 002, chapter 2): the status page (onboarding, each feature In sync /
//! Out of sync, Configure, Disconnect, Test Connectivity) with the Connectivity Settings dialog
//! and exactly its fields; and the upstream's side: enrollment tokens (make, list, revoke) and
//! the enrolled downstream hubs.

use axum::Router;
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::{Markup, html};
use serde_json::{Value, json};

use super::page::{
    checkbox, csrf, failure, general_error, input, page_with, post_button, table, text, text_field,
};
use super::{Failure, Form, Ui, see};
use crate::state::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/ui/upstream", get(status).post(save))
        .route("/ui/upstream/test", post(test))
        .route("/ui/upstream/disconnect", post(disconnect))
        .route("/ui/enrollment", get(enrollment).post(make_token))
        .route("/ui/enrollment/{id}/revoke", post(revoke_token))
        .route("/ui/downstreams/{id}/sandbox", post(grant_sandbox))
}

/// The dialog's features in its order: (setting, label).
const FEATURES: &[(&str, &str)] = &[
    ("policy_inventory", "Security Policy and Inventory"),
    ("event_sharing", "Event and Filter Status Sharing"),
    ("network_telemetry", "TLS Network Telemetry"),
];

fn feature_on(c: &Value, f: &str) -> bool {
    if f == "suspicious_object_sync" {
        return c["suspicious_object_sync"]["enabled"].as_bool() == Some(true);
    }
    c["features"][f]["enabled"].as_bool() == Some(true)
}

fn dialog(ui: &Ui, c: &Value, f: Option<&Form>, err: Option<&Failure>) -> Markup {
    let typed = |k: &str, saved: String| f.map_or(saved, |f| f.get(k).to_string());
    let on = |k: &str| f.map_or_else(|| feature_on(c, k) || c["onboarded"] != true, |f| f.has(k));
    let minutes = c["suspicious_object_sync"]["interval_secs"]
        .as_u64()
        .map_or("1".to_string(), |s| (s / 60).max(1).to_string());
    html! {
        dialog open[f.is_some()] id="connectivity-settings" {
            form method="post" action="/ui/upstream" {
                h2 { "Connectivity Settings" }
                (csrf(ui))
                (text_field("Enrollment Token", "token", &typed("token", String::new()), err))
                (text_field("Upstream address (https://host:8443)", "upstream", &typed("upstream", text(&c["upstream"])), err))
                (text_field("Upstream CA fingerprint (given with the token)", "ca_fingerprint", &typed("ca_fingerprint", String::new()), err))
                fieldset {
                    legend { "Service Gateway" }
                    (checkbox("State: Enabled", "gateway_enabled", "true", f.map_or(c["gateway"]["enabled"] == true, |f| f.has("gateway_enabled")), false))
                    (text_field("IP Address", "gateway_url", &typed("gateway_url", text(&c["gateway"]["url"])), err))
                    (input("password", "API Key", "gateway_api_key", "", err))
                }
                fieldset {
                    legend { "Suspicious Object Sync" }
                    (checkbox("State: Enabled", "suspicious_object_sync", "true", on("suspicious_object_sync"), false))
                    (input("number", "Download Interval (minutes)", "interval_minutes", &typed("interval_minutes", minutes), err))
                }
                @for (k, label) in FEATURES {
                    fieldset { legend { (label) } (checkbox("State: Enabled", k, "true", on(k), false)) }
                }
                (general_error(err, &["token", "upstream", "ca_fingerprint", "gateway", "interval_secs", "interval_minutes", "features"]))
                button type="submit" id="save-connection" { "Save" }
                " "
                a.button href="/ui/upstream" id="cancel" { "Cancel" }
            }
        }
    }
}

/// Every feature of the dialog with its state and sync status; before the first connection, all
/// of them Disabled and Out of sync (seed 002: "all options disabled by default").
fn status_table(c: &Value) -> Markup {
    let onboarded = c["onboarded"] == true;
    let sync = &c["suspicious_object_sync"];
    let mut rows = vec![json!({"feature": "Suspicious Object Sync",
        "state": if onboarded && feature_on(c, "suspicious_object_sync") { "Enabled" } else { "Disabled" },
        "status": if onboarded { sync["status"].clone() } else { json!("Out of sync") },
        "last": sync["last_success"], "error": sync["last_error"]})];
    let features = [
        ("policy_inventory", "Security Policy and Inventory"),
        ("event_sharing", "Event Sharing"),
        ("filter_status_sharing", "Filter Status Sharing"),
        ("network_telemetry", "TLS Network Telemetry"),
        ("sandbox_url_analysis", "Cloud Sandbox URL Analysis"),
    ];
    for (k, label) in features {
        let v = &c["features"][k];
        rows.push(json!({"feature": label,
            "state": if onboarded && v["enabled"] == true { "Enabled" } else { "Disabled" },
            "status": if onboarded { v["status"].clone() } else { json!("Out of sync") },
            "last": v["last_success"], "error": v["last_error"]}));
    }
    table(
        &rows,
        &[
            ("feature", "Feature"),
            ("state", "State"),
            ("status", "Sync status"),
            ("last", "Last success"),
            ("error", "Last error"),
        ],
        "features",
    )
}

async fn status_page(
    mut ui: Ui,
    f: Option<&Form>,
    err: Option<&Failure>,
    tested: Option<&Result<Value, Failure>>,
) -> Response {
    let conn = ui.get("/api/v1/connection").await;
    let sources = ui.get("/api/v1/sources").await;
    let body = match &conn {
        Err(e) => failure(e),
        Ok(c) => html! {
            p { "Onboarding status: " strong id="onboarded" { (if c["onboarded"] == true { "True" } else { "False" }) } }
            @if c["onboarded"] == true {
                p { "Upstream: " (text(&c["upstream"])) " · certificate expires " (text(&c["certificate"]["expires"])) }
            }
            (status_table(c))
            @if let Some(t) = tested {
                @match t {
                    Ok(v) => { div.tested id="test-result" { pre { (serde_json::to_string_pretty(v).unwrap_or_default()) } } }
                    Err(e) => { div.tested.bad id="test-result" { (e.message) } }
                }
            }
            p.actions {
                a.button href="/ui/upstream?configure=1" id="configure" { "Configure" }
                @if c["onboarded"] == true {
                    (post_button(&ui, "/ui/upstream/test", "Test Connectivity", "test-connectivity"))
                    (post_button(&ui, "/ui/upstream/disconnect", "Disconnect", "disconnect"))
                }
            }
            (dialog(&ui, c, f, err))
            @if c["onboarded"] != true {
                h2 { "Sources" }
                @if let Ok(s) = &sources {
                    (table(s["sources"].as_array().map_or(&[][..], Vec::as_slice), &[("name", "Source"), ("kind", "Kind"), ("status", "Status")], "sources"))
                }
            }
            p { a href="/ui/enrollment" { "This hub as an upstream: enrollment tokens and downstream hubs" } }
        },
    };
    let status = err.map_or(axum::http::StatusCode::OK, |e| e.status);
    page_with(status, &mut ui, "Connect to upstream", "/ui/upstream", body)
}

#[derive(Debug, serde::Deserialize)]
struct Configure {
    configure: Option<String>,
}

async fn status(ui: Ui, axum::extract::Query(q): axum::extract::Query<Configure>) -> Response {
    if q.configure.is_some() {
        // The dialog open with the saved settings.
        let conn = ui.get("/api/v1/connection").await.unwrap_or_default();
        let mut pairs: Vec<(String, String)> = vec![
            ("upstream".into(), text(&conn["upstream"])),
            ("gateway_url".into(), text(&conn["gateway"]["url"])),
            (
                "interval_minutes".into(),
                conn["suspicious_object_sync"]["interval_secs"]
                    .as_u64()
                    .map_or("1".into(), |s| (s / 60).max(1).to_string()),
            ),
        ];
        if conn["gateway"]["enabled"] == true {
            pairs.push(("gateway_enabled".into(), "true".into()));
        }
        for k in std::iter::once("suspicious_object_sync").chain(FEATURES.iter().map(|f| f.0)) {
            if feature_on(&conn, k) || conn["onboarded"] != true {
                pairs.push((k.into(), "true".into()));
            }
        }
        let f = Form(pairs);
        return status_page(ui, Some(&f), None, None).await;
    }
    status_page(ui, None, None, None).await
}

/// The API body of the dialog. With a token it connects (PUT); without, it changes settings.
fn settings(f: &Form) -> Result<Value, Failure> {
    let minutes = f.get("interval_minutes");
    let interval = if minutes.is_empty() {
        60
    } else {
        minutes
            .parse::<u64>()
            .ok()
            .filter(|m| *m >= 1)
            .ok_or_else(|| Failure {
                status: axum::http::StatusCode::BAD_REQUEST,
                field: Some("interval_minutes".into()),
                message: "whole minutes, at least 1".into(),
            })?
            * 60
    };
    let mut features = serde_json::Map::new();
    features.insert(
        "suspicious_object_sync".into(),
        f.has("suspicious_object_sync").into(),
    );
    for (k, _) in FEATURES {
        features.insert((*k).into(), f.has(k).into());
    }
    // One switch in the dialog for both.
    features.insert(
        "filter_status_sharing".into(),
        f.has("event_sharing").into(),
    );
    let mut body = json!({"interval_secs": interval, "features": features});
    if !f.get("gateway_url").is_empty() {
        let mut gw = json!({"enabled": f.has("gateway_enabled"), "url": f.get("gateway_url")});
        if !f.get("gateway_api_key").is_empty() {
            gw["api_key"] = f.get("gateway_api_key").into();
        }
        body["gateway"] = gw;
    }
    if !f.get("token").is_empty() {
        body["token"] = f.get("token").into();
        body["ca_fingerprint"] = f.get("ca_fingerprint").into();
        if !f.get("upstream").is_empty() {
            body["upstream"] = f.get("upstream").into();
        }
    }
    Ok(body)
}

async fn save(ui: Ui, b: Bytes) -> Response {
    let f = match ui.form(&b) {
        Ok(f) => f,
        Err(r) => return r.into_response(),
    };
    let result = match settings(&f) {
        Ok(body) => {
            let method = if f.get("token").is_empty() {
                Method::PATCH
            } else {
                Method::PUT
            };
            ui.send(method, "/api/v1/connection", Some(body)).await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => {
            ui.flash("Connectivity settings saved.").await;
            see("/ui/upstream")
        }
        Err(e) => status_page(ui, Some(&f), Some(&e), None).await,
    }
}

async fn test(ui: Ui, b: Bytes) -> Response {
    if let Err(r) = ui.form(&b) {
        return r.into_response();
    }
    let tested = ui.send(Method::POST, "/api/v1/connection/test", None).await;
    status_page(ui, None, None, Some(&tested)).await
}

async fn disconnect(ui: Ui, b: Bytes) -> Response {
    if let Err(r) = ui.form(&b) {
        return r.into_response();
    }
    match ui.send(Method::DELETE, "/api/v1/connection", None).await {
        Ok(_) => {
            ui.flash("Disconnected. A new enrollment token reconnects with these settings.")
                .await
        }
        Err(e) => ui.flash(format!("Not disconnected: {}", e.message)).await,
    }
    see("/ui/upstream")
}

async fn enrollment_page(
    mut ui: Ui,
    made: Option<&Value>,
    f: &Form,
    err: Option<&Failure>,
) -> Response {
    let tokens = ui.get("/api/v1/enrollment-tokens").await;
    let downstreams = ui.get("/api/v1/downstreams").await;
    let body = html! {
        @if let Some(t) = made {
            div.token id="enrollment-token" {
                p { "Give the downstream these (shown once):" }
                p { "Enrollment token: " code { (text(&t["token"])) } }
                p { "CA fingerprint: " code { (text(&t["ca_fingerprint"])) } }
            }
        }
        h2 { "Enrollment tokens" }
        @match &tokens {
            Err(e) => { (failure(e)) }
            Ok(v) => {
                table id="tokens" {
                    thead { tr { th { "Downstream" } th { "Status" } th { "Created" } th { "Expires" } th {} } }
                    tbody {
                        @for t in v["tokens"].as_array().into_iter().flatten() {
                            @let id = t["id"].as_i64().unwrap_or(0);
                            tr {
                                td { (text(&t["name"])) } td { (text(&t["status"])) } td { (text(&t["created"])) } td { (text(&t["expires"])) }
                                td { @if t["status"] == "unused" { (post_button(&ui, &format!("/ui/enrollment/{id}/revoke"), "Revoke", &format!("revoke-{id}"))) } }
                            }
                        }
                    }
                }
            }
        }
        form method="post" action="/ui/enrollment" id="new-token" {
            (csrf(&ui))
            (text_field("Downstream name", "name", f.get("name"), err))
            (input("number", "Valid for (hours)", "hours", if f.get("hours").is_empty() { "24" } else { f.get("hours") }, err))
            (general_error(err, &["name", "hours", "ttl_secs"]))
            button type="submit" id="make-token" { "Make a token" }
        }
        h2 { "Enrolled downstream hubs" }
        @match &downstreams {
            Err(e) => { (failure(e)) }
            Ok(v) => {
                table id="downstreams" {
                    thead { tr { th { "Name" } th { "Address" } th { "Enrolled" } th { "Certificate until" } th { "Revoked" } th { "Sandbox URL analysis" } } }
                    tbody {
                        @for d in v["downstreams"].as_array().into_iter().flatten() {
                            @let id = d["id"].as_i64().unwrap_or(0);
                            @let on = d["sandbox_url_analysis"] == true;
                            tr {
                                td { (text(&d["name"])) } td { (text(&d["address"])) } td { (text(&d["enrolled"])) } td { (text(&d["not_after"])) } td { (text(&d["revoked"])) }
                                td { (if on { "Enabled " } else { "Disabled " }) (post_button(&ui, &format!("/ui/downstreams/{id}/sandbox"), if on { "Disable" } else { "Enable" }, &format!("sandbox-{id}"))) }
                            }
                        }
                    }
                }
            }
        }
    };
    let status = err.map_or(axum::http::StatusCode::OK, |e| e.status);
    page_with(status, &mut ui, "Enrollment", "/ui/upstream", body)
}

async fn enrollment(ui: Ui) -> Response {
    enrollment_page(ui, None, &Form::default(), None).await
}

async fn make_token(ui: Ui, b: Bytes) -> Response {
    let f = match ui.form(&b) {
        Ok(f) => f,
        Err(r) => return r.into_response(),
    };
    let hours = match f.get("hours").parse::<u64>() {
        Ok(h) => h,
        Err(_) => {
            let e = Failure {
                status: axum::http::StatusCode::BAD_REQUEST,
                field: Some("hours".into()),
                message: "whole hours".into(),
            };
            return enrollment_page(ui, None, &f, Some(&e)).await;
        }
    };
    let body = json!({"name": f.get("name"), "ttl_secs": hours.saturating_mul(3600)});
    match ui
        .send(Method::POST, "/api/v1/enrollment-tokens", Some(body))
        .await
    {
        Ok(t) => enrollment_page(ui, Some(&t), &Form::default(), None).await,
        Err(mut e) => {
            if e.field.as_deref() == Some("ttl_secs") {
                e.field = Some("hours".into());
            }
            enrollment_page(ui, None, &f, Some(&e)).await
        }
    }
}

async fn revoke_token(ui: Ui, Path(id): Path<i64>, b: Bytes) -> Response {
    if let Err(r) = ui.form(&b) {
        return r.into_response();
    }
    match ui
        .send(
            Method::DELETE,
            &format!("/api/v1/enrollment-tokens/{id}"),
            None,
        )
        .await
    {
        Ok(_) => ui.flash("Token revoked.").await,
        Err(e) => ui.flash(format!("Not revoked: {}", e.message)).await,
    }
    see("/ui/enrollment")
}

async fn grant_sandbox(ui: Ui, Path(id): Path<i64>, b: Bytes) -> Response {
    if let Err(r) = ui.form(&b) {
        return r.into_response();
    }
    let current = ui.get("/api/v1/downstreams").await.ok().and_then(|v| {
        v["downstreams"]
            .as_array()
            .and_then(|a| a.iter().find(|d| d["id"] == id).cloned())
    });
    let Some(d) = current else {
        ui.flash("No such downstream.").await;
        return see("/ui/enrollment");
    };
    let on = d["sandbox_url_analysis"] != true;
    match ui
        .send(
            Method::PATCH,
            &format!("/api/v1/downstreams/{id}"),
            Some(json!({"sandbox_url_analysis": on})),
        )
        .await
    {
        Ok(_) => {
            ui.flash(format!(
                "Sandbox URL analysis {} for {}.",
                if on { "enabled" } else { "disabled" },
                text(&d["name"])
            ))
            .await
        }
        Err(e) => ui.flash(format!("Not changed: {}", e.message)).await,
    }
    see("/ui/enrollment")
}
