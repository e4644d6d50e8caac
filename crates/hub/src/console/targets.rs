//! Auxiliary Products/Services (seed 000, steps 1–9): the same fields in the same order —
//! distribute on/off, product, server address, user name and password, Test Connection, object
//! types, risk level, frequency, Save — and each target's history. rephub keeps several targets,
//! so a target also has a name, and the SMS version (which decides whether URLs may be sent).

use axum::Router;
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::{Markup, html};
use serde_json::{Value, json};

use super::page::{
    checkbox, csrf, failure, general_error, input, page, page_with, post_button, select, table,
    text, text_field,
};
use super::{Failure, Form, Ui, see, seg};
use crate::keys::Role;
use crate::state::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/ui/targets", get(targets))
        .route("/ui/targets/new", get(new_target).post(save_new))
        .route("/ui/targets/{name}", get(edit_target).post(save_existing))
        .route("/ui/targets/{name}/run", post(run_now))
        .route("/ui/targets/{name}/delete", post(delete_target))
}

const FREQUENCIES: &[(&str, &str)] = &[
    ("60", "Every minute"),
    ("300", "Every 5 minutes"),
    ("900", "Every 15 minutes"),
    ("1800", "Every 30 minutes"),
    ("3600", "Every hour"),
    ("21600", "Every 6 hours"),
    ("86400", "Every day"),
];

const RISKS: &[(&str, &str)] = &[
    ("high", "High only"),
    ("high_medium", "High and medium"),
    ("all", "High, medium, and low"),
];

const TYPES: &[(&str, &str)] = &[
    ("ipv4", "IPv4 address"),
    ("domain", "Domain"),
    ("url", "URL"),
];

async fn targets(mut ui: Ui) -> Response {
    let list = ui.get("/api/v1/targets").await;
    let body = html! {
        @match &list {
            Err(e) => { (failure(e)) }
            Ok(v) => {
                @let rows: Vec<Value> = v["targets"].as_array().cloned().unwrap_or_default().into_iter().map(|t| json!({
                    "name": t["name"], "address": t["config"]["address"], "version": t["config"]["version"],
                    "status": t["status"], "error": t["state"]["last_error"],
                })).collect();
                table id="targets" {
                    thead { tr { th { "Name" } th { "Server address" } th { "SMS version" } th { "Status" } th { "Last error" } } }
                    tbody {
                        @for t in &rows {
                            tr {
                                td { a href={"/ui/targets/" (seg(&text(&t["name"])))} { (text(&t["name"])) } }
                                td { (text(&t["address"])) } td { (text(&t["version"])) } td { (text(&t["status"])) } td { (text(&t["error"])) }
                            }
                        }
                    }
                }
            }
        }
        @if ui.may(Role::Admin) { p.actions { a.button href="/ui/targets/new" id="new-target" { "Add an auxiliary product" } } }
    };
    page(&mut ui, "Auxiliary Products/Services", "/ui/targets", body)
}

/// The form's values, from a saved target or as typed.
fn values_of(config: &Value, enabled: bool) -> Form {
    let mut v: Vec<(String, String)> = vec![
        ("name".into(), text(&config["name"])),
        ("address".into(), text(&config["address"])),
        ("username".into(), text(&config["username"])),
        ("version".into(), text(&config["version"])),
        ("risk".into(), text(&config["risk"])),
        ("interval_secs".into(), text(&config["interval_secs"])),
    ];
    if enabled {
        v.push(("enabled".into(), "true".into()));
    }
    if config["https"].as_bool() != Some(false) {
        v.push(("https".into(), "true".into()));
    }
    for (group, key) in [("cnc", "cnc"), ("suspicious", "suspicious")] {
        for t in config["objects"][key].as_array().into_iter().flatten() {
            v.push((group.into(), text(t)));
        }
    }
    Form(v)
}

/// `(major, minor)` of a version as typed; URLs need SMS 5.0.
fn urls_supported(version: &str) -> bool {
    let mut it = version.trim().split('.');
    let major = it.next().and_then(|m| m.parse::<u32>().ok());
    major.is_some_and(|m| m >= 5)
}

fn target_form(
    ui: &Ui,
    action: &str,
    f: &Form,
    existing: bool,
    err: Option<&Failure>,
    tested: Option<&Result<Value, Failure>>,
) -> Markup {
    let urls = urls_supported(f.get("version"));
    let risk = if f.get("risk").is_empty() {
        "high"
    } else {
        f.get("risk")
    };
    let interval = if f.get("interval_secs").is_empty() {
        "300"
    } else {
        f.get("interval_secs")
    };
    html! {
        form method="post" action=(action) id="target-form" {
            (csrf(ui))
            @if existing {
                input type="hidden" name="name" value=(f.get("name"));
                p { "Name: " strong { (f.get("name")) } }
            } @else {
                (text_field("Name", "name", f.get("name"), err))
            }
            (checkbox("Distribute objects to auxiliary products/services", "enabled", "true", f.has("enabled") || (!existing && f.get("address").is_empty()), false))
            (select("Product", "kind", &[("sms", "Trend Micro TippingPoint Security Management System (SMS)")], "sms", err))
            (text_field("Server address (IPv4 address or FQDN)", "address", f.get("address"), err))
            (checkbox("HTTPS", "https", "true", f.has("https") || (!existing && f.get("address").is_empty()), false))
            (text_field("SMS version", "version", f.get("version"), err))
            (text_field("User name", "username", f.get("username"), err))
            (input("password", if existing { "Password (leave empty to keep the saved one)" } else { "Password" }, "password", "", err))
            button type="submit" name="do" value="test" id="test-connection" { "Test Connection" }
            @if let Some(t) = tested {
                @match t {
                    Ok(v) if v["ok"].as_bool() == Some(true) => {
                        div.tested.ok id="test-result" { "Connection OK" ul { @for c in v["checks"].as_array().into_iter().flatten() { li { (text(c)) } } } }
                    }
                    Ok(v) => { div.tested.bad id="test-result" { "Connection failed: " (text(&v["error"])) } }
                    Err(e) => { div.tested.bad id="test-result" { "Not tested: " (e.message) } }
                }
            }
            fieldset id="object-types" {
                legend { "Object type" }
                @for (group, label) in [("cnc", "C&C Callback Address"), ("suspicious", "Suspicious Object")] {
                    div.group {
                        strong { (label) }
                        @for (t, tl) in TYPES {
                            @let url = *t == "url";
                            (checkbox(&format!("{tl}{}", if url { " (SMS 5.0 or higher)" } else { "" }), group, t, f.all(group).contains(t) && (!url || urls), url && !urls))
                        }
                    }
                }
                @if let Some(m) = err.and_then(|e| e.about("objects")) { span.error id="e-objects" { (m) } }
            }
            fieldset id="risk-level" {
                legend { "Risk level" }
                @for (v, l) in RISKS {
                    label.check { input type="radio" name="risk" value=(v) checked[*v == risk]; " " (l) }
                }
            }
            (select("Frequency", "interval_secs", FREQUENCIES, interval, err))
            (general_error(err, &["name", "address", "version", "username", "password", "objects", "risk", "interval_secs", "kind"]))
            button type="submit" name="do" value="save" id="save-target" { "Save" }
        }
    }
}

/// The API's body: the saved configuration of an existing target (`base`, secrets redacted: the
/// API keeps the stored ones), with the form's fields over it — so what the form does not show
/// (a CA file, batch size, timeout, source name) stays as it was. Unticked URL boxes of an SMS
/// before 5.0 are simply not sent.
fn spec_of(f: &Form, base: Option<&Value>) -> Value {
    let mut spec = base
        .filter(|b| b.is_object())
        .cloned()
        .unwrap_or_else(|| json!({}));
    let fields = json!({
        "name": f.get("name"),
        "kind": "sms",
        "enabled": f.has("enabled"),
        "address": f.get("address"),
        "https": f.has("https"),
        "version": f.get("version"),
        "objects": {"cnc": f.all("cnc"), "suspicious": f.all("suspicious")},
        "risk": if f.get("risk").is_empty() { "high" } else { f.get("risk") },
    });
    for (k, v) in fields.as_object().into_iter().flatten() {
        spec[k] = v.clone();
    }
    match f.get("username") {
        "" => {
            if let Some(o) = spec.as_object_mut() {
                o.remove("username");
            }
        }
        u => spec["username"] = u.into(),
    }
    if !f.get("password").is_empty() {
        spec["password"] = f.get("password").into();
    }
    if let Ok(n) = f.get("interval_secs").parse::<u64>() {
        spec["interval_secs"] = n.into();
    }
    spec
}

async fn history(ui: &Ui, name: &str) -> Markup {
    match ui
        .get(&format!("/api/v1/targets/{}/history?limit=20", seg(name)))
        .await
    {
        Err(e) => failure(&e),
        Ok(v) => html! {
            h2 { "History" }
            (table(v["runs"].as_array().map_or(&[][..], Vec::as_slice), &[("started", "Started"), ("finished", "Finished"), ("added", "Added"), ("removed", "Removed"), ("failed", "Failed"), ("error", "Error")], "history"))
        },
    }
}

async fn new_target(mut ui: Ui) -> Response {
    let f = Form(vec![
        ("cnc".into(), "ipv4".into()),
        ("cnc".into(), "domain".into()),
        ("suspicious".into(), "ipv4".into()),
        ("suspicious".into(), "domain".into()),
        ("version".into(), "6.0".into()),
    ]);
    let body = target_form(&ui, "/ui/targets/new", &f, false, None, None);
    page(&mut ui, "Add an auxiliary product", "/ui/targets", body)
}

async fn edit_target(mut ui: Ui, Path(name): Path<String>) -> Response {
    let found = ui.get(&format!("/api/v1/targets/{}", seg(&name))).await;
    let body = match &found {
        Err(e) => failure(e),
        Ok(t) => {
            let f = values_of(
                &t["config"],
                t["config"]["enabled"].as_bool() != Some(false),
            );
            let admin = ui.may(Role::Admin);
            html! {
                p { "Status: " strong id="target-status" { (text(&t["status"])) } }
                @if admin {
                    (target_form(&ui, &format!("/ui/targets/{}", seg(&name)), &f, true, None, None))
                    (post_button(&ui, &format!("/ui/targets/{}/run", seg(&name)), "Distribute now", "run-target"))
                    (post_button(&ui, &format!("/ui/targets/{}/delete", seg(&name)), "Delete", "delete-target"))
                }
                (history(&ui, &name).await)
            }
        }
    };
    page(
        &mut ui,
        &format!("Auxiliary product {name}"),
        "/ui/targets",
        body,
    )
}

async fn save_new(ui: Ui, b: Bytes) -> Response {
    submit(ui, b, None).await
}

async fn save_existing(ui: Ui, Path(name): Path<String>, b: Bytes) -> Response {
    submit(ui, b, Some(name)).await
}

async fn submit(mut ui: Ui, b: Bytes, existing: Option<String>) -> Response {
    let f = match ui.form(&b) {
        Ok(f) => f,
        Err(r) => return r.into_response(),
    };
    let action = existing
        .as_deref()
        .map_or("/ui/targets/new".to_string(), |n| {
            format!("/ui/targets/{}", seg(n))
        });
    // An existing target's saved configuration: what the form does not show is kept.
    let base = match &existing {
        Some(n) => ui
            .get(&format!("/api/v1/targets/{}", seg(n)))
            .await
            .ok()
            .map(|t| t["config"].clone()),
        None => None,
    };
    let spec = spec_of(&f, base.as_ref());
    if f.get("do") == "test" {
        let tested = ui
            .send(Method::POST, "/api/v1/target-tests", Some(spec))
            .await;
        let err = tested.as_ref().err().cloned();
        let body = target_form(
            &ui,
            &action,
            &f,
            existing.is_some(),
            err.as_ref(),
            Some(&tested),
        );
        return page(&mut ui, "Auxiliary product", "/ui/targets", body);
    }
    let result = match &existing {
        None => ui.send(Method::POST, "/api/v1/targets", Some(spec)).await,
        Some(n) => {
            ui.send(
                Method::PUT,
                &format!("/api/v1/targets/{}", seg(n)),
                Some(spec),
            )
            .await
        }
    };
    match result {
        Ok(_) => {
            ui.flash(format!("Auxiliary product {} saved.", f.get("name")))
                .await;
            see(&format!("/ui/targets/{}", seg(f.get("name"))))
        }
        Err(e) => {
            let body = target_form(&ui, &action, &f, existing.is_some(), Some(&e), None);
            page_with(e.status, &mut ui, "Auxiliary product", "/ui/targets", body)
        }
    }
}

async fn run_now(ui: Ui, Path(name): Path<String>, b: Bytes) -> Response {
    if let Err(r) = ui.form(&b) {
        return r.into_response();
    }
    match ui
        .send(
            Method::POST,
            &format!("/api/v1/targets/{}/run", seg(&name)),
            None,
        )
        .await
    {
        Ok(_) => ui.flash("Distribution started.").await,
        Err(e) => ui.flash(format!("Not started: {}", e.message)).await,
    }
    see(&format!("/ui/targets/{}", seg(&name)))
}

async fn delete_target(ui: Ui, Path(name): Path<String>, b: Bytes) -> Response {
    if let Err(r) = ui.form(&b) {
        return r.into_response();
    }
    match ui
        .send(
            Method::DELETE,
            &format!("/api/v1/targets/{}", seg(&name)),
            None,
        )
        .await
    {
        Ok(_) => {
            ui.flash(format!("Auxiliary product {name} deleted.")).await;
            see("/ui/targets")
        }
        Err(e) => {
            ui.flash(format!("Not deleted: {}", e.message)).await;
            see(&format!("/ui/targets/{}", seg(&name)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_need_sms_5() {
        assert!(!urls_supported("4.6"));
        assert!(urls_supported("5.0"));
        assert!(urls_supported("6.3"));
        assert!(!urls_supported(""));
    }

    #[test]
    fn the_form_becomes_the_api_body() {
        let f = Form(vec![
            ("name".into(), "sms1".into()),
            ("enabled".into(), "true".into()),
            ("address".into(), "10.0.0.5".into()),
            ("version".into(), "6.3".into()),
            ("cnc".into(), "ipv4".into()),
            ("suspicious".into(), "url".into()),
            ("risk".into(), "high_medium".into()),
            ("interval_secs".into(), "900".into()),
            ("username".into(), "admin".into()),
        ]);
        let s = spec_of(&f, None);
        assert_eq!(s["objects"]["cnc"], json!(["ipv4"]));
        assert_eq!(s["objects"]["suspicious"], json!(["url"]));
        assert_eq!(
            (s["enabled"].as_bool(), s["https"].as_bool()),
            (Some(true), Some(false))
        );
        assert_eq!(s["interval_secs"], 900);
        assert!(
            s.get("password").is_none(),
            "an empty password keeps the saved one"
        );
    }
}
