//! What the hub does and sees: sources (status, run now, test), events (filterable), TLS
//! telemetry (searchable), IPS filter status, inventory, the sharing spool; and the console's
//! users (admin).

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::html;
use serde::Deserialize;
use serde_json::{Value, json};

use super::page::{
    csrf, failure, general_error, input, page, page_with, post_button, select, table, text,
    text_field, when,
};
use super::{Failure, Form, Ui, see, seg, with_query};
use crate::keys::Role;
use crate::state::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/ui/sources", get(sources))
        .route("/ui/sources/{name}/run", post(run_source))
        .route("/ui/sources/{name}/test", post(test_source))
        .route("/ui/events", get(events))
        .route("/ui/telemetry", get(telemetry))
        .route("/ui/filter-status", get(filter_status))
        .route("/ui/inventory", get(inventory))
        .route("/ui/sharing", get(sharing))
        .route("/ui/users", get(users).post(add_user))
        .route("/ui/users/{name}/delete", post(delete_user))
}

async fn sources(mut ui: Ui) -> Response {
    let list = ui.get("/api/v1/sources").await;
    let admin = ui.may(Role::Admin);
    let body = html! {
        @match &list {
            Err(e) => { (failure(e)) }
            Ok(v) => {
                table id="sources" {
                    thead { tr { th { "Name" } th { "Kind" } th { "Status" } th { "Last success" } th { "Next run" } th { "Last error" } @if admin { th {} } } }
                    tbody {
                        @for s in v["sources"].as_array().into_iter().flatten() {
                            @let name = text(&s["name"]);
                            tr {
                                td { (name) } td { (text(&s["kind"])) } td { (text(&s["status"])) }
                                td { (when(&s["state"]["last_success"])) } td { (when(&s["state"]["next_run"])) } td { (text(&s["state"]["last_error"])) }
                                @if admin {
                                    td.actions {
                                        (post_button(&ui, &format!("/ui/sources/{}/run", seg(&name)), "Sync now", &format!("run-{name}")))
                                        (post_button(&ui, &format!("/ui/sources/{}/test", seg(&name)), "Test", &format!("test-{name}")))
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        p.note { "Sources are added from a file or the API (rephub sources add), as docs/sources.md shows." }
    };
    page(&mut ui, "Sources", "/ui/sources", body)
}

async fn run_source(ui: Ui, Path(name): Path<String>, b: Bytes) -> Response {
    if let Err(r) = ui.form(&b) {
        return r.into_response();
    }
    match ui
        .send(
            Method::POST,
            &format!("/api/v1/sources/{}/sync", seg(&name)),
            None,
        )
        .await
    {
        Ok(_) => ui.flash(format!("Source {name}: sync started.")).await,
        Err(e) => ui.flash(format!("Source {name}: {}", e.message)).await,
    }
    see("/ui/sources")
}

async fn test_source(ui: Ui, Path(name): Path<String>, b: Bytes) -> Response {
    if let Err(r) = ui.form(&b) {
        return r.into_response();
    }
    match ui
        .send(
            Method::POST,
            &format!("/api/v1/sources/{}/test", seg(&name)),
            None,
        )
        .await
    {
        Ok(v) if v["ok"] == true => ui.flash(format!("Source {name}: connection OK.")).await,
        Ok(v) => {
            ui.flash(format!("Source {name}: test failed: {}", text(&v["error"])))
                .await
        }
        Err(e) => ui.flash(format!("Source {name}: {}", e.message)).await,
    }
    see("/ui/sources")
}

#[derive(Debug, Default, Deserialize)]
struct EventFilter {
    #[serde(default)]
    device: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    cve: String,
    #[serde(default)]
    after: String,
}

async fn events(mut ui: Ui, Query(q): Query<EventFilter>) -> Response {
    let pairs = [
        ("device", q.device.as_str()),
        ("kind", q.kind.as_str()),
        ("value", q.value.as_str()),
        ("action", q.action.as_str()),
        ("cve", q.cve.as_str()),
        ("after", q.after.as_str()),
        ("limit", "100"),
    ];
    let found = ui.get(&with_query("/api/v1/events", pairs)).await;
    let err = found.as_ref().err();
    let f = Form(
        pairs[..5]
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect(),
    );
    let body = html! {
        form.criteria method="get" action="/ui/events" id="event-filter" {
            (text_field("Device", "device", f.get("device"), err))
            (select("Kind", "kind", &[("", "any"), ("ipv4", "IPv4"), ("ipv6", "IPv6"), ("domain", "domain"), ("url", "URL"), ("sha1", "SHA-1"), ("sha256", "SHA-256"), ("ips", "IPS")], f.get("kind"), err))
            (text_field("Entry or address", "value", f.get("value"), err))
            (text_field("Action", "action", f.get("action"), err))
            (text_field("CVE", "cve", f.get("cve"), err))
            (general_error(err, &["device", "kind", "value", "action", "cve"]))
            button type="submit" { "Filter" }
        }
        @if let Ok(v) = &found {
            @let rows: Vec<Value> = v["events"].as_array().cloned().unwrap_or_default();
            (table(&rows, &[("id", "#"), ("device", "Device"), ("kind", "Kind"), ("value", "Entry"), ("action", "Action"), ("filter", "Filter"), ("hits", "Hits"), ("first_seen", "First seen"), ("last_seen", "Last seen"), ("sample", "Matched")], "events"))
            @if let Some(last) = rows.last().and_then(|r| r["id"].as_i64()) {
                @if rows.len() == 100 {
                    @let next = last.to_string();
                    p.pager { a id="next" href=(with_query("/ui/events", [("device", q.device.as_str()), ("kind", q.kind.as_str()), ("value", q.value.as_str()), ("action", q.action.as_str()), ("cve", q.cve.as_str()), ("after", next.as_str())])) { "next →" } }
                }
            }
        }
    };
    let status = err.map_or(StatusCode::OK, |e| e.status);
    page_with(status, &mut ui, "Events", "/ui/events", body)
}

#[derive(Debug, Default, Deserialize)]
struct TelemetryFilter {
    #[serde(default)]
    sni: String,
    #[serde(default)]
    ja4: String,
    #[serde(default)]
    fingerprint: String,
    #[serde(default)]
    device: String,
    #[serde(default)]
    downstream: String,
    #[serde(default)]
    after: String,
}

/// TLS handshakes (docs/telemetry.md), searched with the API's filters, 100 a page.
async fn telemetry(mut ui: Ui, Query(q): Query<TelemetryFilter>) -> Response {
    let filters = [
        ("sni", q.sni.as_str()),
        ("ja4", q.ja4.as_str()),
        ("fingerprint", q.fingerprint.as_str()),
        ("device", q.device.as_str()),
        ("downstream", q.downstream.as_str()),
    ];
    let mut pairs = filters.to_vec();
    pairs.extend([("after", q.after.as_str()), ("limit", "100")]);
    let found = ui.get(&with_query("/api/v1/telemetry", pairs)).await;
    let err = found.as_ref().err();
    let f = Form(
        filters
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect(),
    );
    // One row a handshake, the record's fields beside where it came from.
    let rows: Vec<Value> = found
        .as_ref()
        .ok()
        .and_then(|v| v["records"].as_array())
        .into_iter()
        .flatten()
        .map(|r| {
            let t = &r["tls"];
            let at = t["at_ms"].as_i64().map(|ms| ms.div_euclid(1000));
            json!({"id": r["id"], "device": r["device"], "downstream": r["downstream"],
                   "at": at, "src": t["src"], "dst": t["dst"], "dpt": t["dpt"], "sni": t["sni"],
                   "version": t["version"], "cipher": t["cipher"], "ja4": t["ja4"],
                   "subject": t["subject"], "issuer": t["issuer"], "sha256": t["sha256"]})
        })
        .collect();
    // A full page may have more after it.
    let next = rows
        .last()
        .and_then(|r| r["id"].as_i64())
        .filter(|_| rows.len() == 100)
        .map(|last| {
            let last = last.to_string();
            let mut more = filters.to_vec();
            more.push(("after", last.as_str()));
            with_query("/ui/telemetry", more)
        });
    let body = html! {
        form.criteria method="get" action="/ui/telemetry" id="telemetry-filter" {
            (text_field("Server name (SNI)", "sni", f.get("sni"), err))
            (text_field("JA4", "ja4", f.get("ja4"), err))
            (text_field("Certificate SHA-256 or SHA-1", "fingerprint", f.get("fingerprint"), err))
            (text_field("Device", "device", f.get("device"), err))
            (text_field("Downstream (or local)", "downstream", f.get("downstream"), err))
            (general_error(err, &["sni", "ja4", "fingerprint", "device", "downstream"]))
            button type="submit" { "Search" }
        }
        (table(&rows, &[("id", "#"), ("at", "Seen"), ("device", "Device"), ("downstream", "Downstream"), ("src", "Source"), ("dst", "Destination"), ("dpt", "Port"), ("sni", "Server name"), ("version", "Version"), ("cipher", "Cipher"), ("ja4", "JA4"), ("subject", "Subject"), ("issuer", "Issuer"), ("sha256", "Certificate SHA-256")], "telemetry"))
        @if let Some(next) = &next {
            p.pager { a id="next" href=(next) { "next →" } }
        }
    };
    let status = err.map_or(StatusCode::OK, |e| e.status);
    page_with(status, &mut ui, "TLS telemetry", "/ui/telemetry", body)
}

async fn filter_status(mut ui: Ui) -> Response {
    let found = ui.get("/api/v1/filter-status?limit=500").await;
    let body = match &found {
        Err(e) => failure(e),
        Ok(v) => {
            let rows = v["filters"].as_array().cloned().unwrap_or_default();
            html! {
                (table(&rows, &[("number", "Filter"), ("name", "Name"), ("status", "Status"), ("cves", "CVEs")], "filter-status"))
            }
        }
    };
    page(&mut ui, "Filter status", "/ui/filter-status", body)
}

async fn inventory(mut ui: Ui) -> Response {
    let found = ui.get("/api/v1/inventory").await;
    let body = match &found {
        Err(e) => failure(e),
        Ok(v) => html! {
            h2 { "Devices" }
            (table(v["devices"].as_array().map_or(&[][..], Vec::as_slice), &[("name", "Name"), ("address", "Address"), ("model", "Model"), ("version", "Version"), ("health", "Health"), ("managed_by", "Managed by")], "inventory-devices"))
            h2 { "Profiles" }
            (table(v["profiles"].as_array().map_or(&[][..], Vec::as_slice), &[("name", "Name"), ("reputation_filters", "Reputation filters")], "inventory-profiles"))
        },
    };
    page(&mut ui, "Inventory", "/ui/inventory", body)
}

async fn sharing(mut ui: Ui) -> Response {
    let found = ui.get("/api/v1/sharing").await;
    let body = match &found {
        Err(e) => failure(e),
        Ok(v) => html! {
            (table(v["sinks"].as_array().map_or(&[][..], Vec::as_slice), &[("sink", "Sink"), ("stream", "Stream"), ("depth", "Waiting"), ("oldest_age_secs", "Oldest (s)"), ("delivered", "Delivered"), ("retried", "Retried"), ("parked_now", "Parked"), ("dropped", "Dropped"), ("last_error", "Last error")], "sinks"))
            h2 { "Sandbox Analysis" }
            p.note { "Sandbox URL analysis is not built yet (issue: sandbox and telemetry); its table (object, status, submitter, submitted, SHA-1, risk level, threat type, threat name) will show here." }
        },
    };
    page(&mut ui, "Sharing", "/ui/sharing", body)
}

async fn users_page(mut ui: Ui, f: &Form, err: Option<&Failure>) -> Response {
    let list = ui.get("/api/v1/users").await;
    let body = html! {
        @match &list {
            Err(e) => { (failure(e)) }
            Ok(v) => {
                table id="users" {
                    thead { tr { th { "Name" } th { "Role" } th { "Created" } th {} } }
                    tbody {
                        @for u in v["users"].as_array().into_iter().flatten() {
                            @let name = text(&u["name"]);
                            tr { td { (name) } td { (text(&u["role"])) } td { (text(&u["created"])) }
                                 td { (post_button(&ui, &format!("/ui/users/{}/delete", seg(&name)), "Delete", &format!("delete-user-{name}"))) } }
                        }
                    }
                }
            }
        }
        h2 { "Add a user" }
        form method="post" action="/ui/users" id="new-user" {
            (csrf(&ui))
            (text_field("Name", "name", f.get("name"), err))
            (select("Role", "role", &[("read-only", "read-only"), ("producer", "producer"), ("admin", "admin")], f.get("role"), err))
            (input("password", "Password (at least 12 characters)", "password", "", err))
            (general_error(err, &["name", "role", "password"]))
            button type="submit" id="add-user" { "Add user" }
        }
    };
    let status = err.map_or(StatusCode::OK, |e| e.status);
    page_with(status, &mut ui, "Users", "/ui/users", body)
}

async fn users(ui: Ui) -> Response {
    users_page(ui, &Form::default(), None).await
}

async fn add_user(ui: Ui, b: Bytes) -> Response {
    let f = match ui.form(&b) {
        Ok(f) => f,
        Err(r) => return r.into_response(),
    };
    let body = json!({"name": f.get("name"), "role": f.get("role"), "password": f.get("password")});
    match ui.send(Method::POST, "/api/v1/users", Some(body)).await {
        Ok(_) => {
            ui.flash(format!("User {} added.", f.get("name"))).await;
            see("/ui/users")
        }
        Err(e) => users_page(ui, &f, Some(&e)).await,
    }
}

async fn delete_user(ui: Ui, Path(name): Path<String>, b: Bytes) -> Response {
    if let Err(r) = ui.form(&b) {
        return r.into_response();
    }
    match ui
        .send(
            Method::DELETE,
            &format!("/api/v1/users/{}", seg(&name)),
            None,
        )
        .await
    {
        Ok(_) => ui.flash(format!("User {name} deleted.")).await,
        Err(e) => ui.flash(format!("Not deleted: {}", e.message)).await,
    }
    see("/ui/users")
}
