//! Tag categories, reputation filters (order changed with up/down buttons, the effect previewed
//! as the number of entries a filter selects), profiles, devices and distributions.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Value, json};

use super::page::{
    checkbox, count, csrf, failure, field, general_error, input, page, page_with, post_button,
    select, table, text, text_field,
};
use super::{Failure, Form, Ui, see, seg, with_query};
use crate::keys::Role;
use crate::state::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/ui/categories", get(categories).post(add_category))
        .route("/ui/filters", get(filters))
        .route("/ui/filters/new", get(new_filter).post(save_new_filter))
        .route("/ui/filters/{id}", get(edit_filter).post(save_filter))
        .route("/ui/filters/{id}/move", post(move_filter))
        .route("/ui/filters/{id}/delete", post(delete_filter))
        .route("/ui/profiles", get(profiles).post(add_profile))
        .route("/ui/profiles/{id}", post(save_profile))
        .route("/ui/profiles/{id}/delete", post(delete_profile))
        .route("/ui/devices", get(devices).post(add_device))
        .route("/ui/devices/{id}/delete", post(delete_device))
        .route("/ui/distributions", get(distributions).post(distribute))
}

/// A form shown again after the API refused it, or fresh.
fn status_of(err: Option<&Failure>) -> StatusCode {
    err.map_or(StatusCode::OK, |e| e.status)
}

// ---- tag categories ----

fn category_form(ui: &Ui, f: &Form, err: Option<&Failure>) -> Markup {
    html! {
        @if ui.may(Role::Admin) {
            h2 { "Add a category" }
            form method="post" action="/ui/categories" id="new-category" {
                (csrf(ui))
                (text_field("Name", "name", f.get("name"), err))
                (select("Type", "type", &[("text", "text"), ("list", "list"), ("yesno", "yes/no"), ("date", "date"), ("range", "range")], f.get("type"), err))
                (text_field("List values (list: comma-separated)", "values", f.get("values"), err))
                (checkbox("several values (list)", "multiple", "true", f.has("multiple"), false))
                (text_field("Range minimum", "min", f.get("min"), err))
                (text_field("Range maximum", "max", f.get("max"), err))
                (text_field("Description", "description", f.get("description"), err))
                (general_error(err, &["name", "type", "values", "min", "max", "description"]))
                button type="submit" id="add-category" { "Add category" }
            }
        }
    }
}

async fn categories_page(mut ui: Ui, f: &Form, err: Option<&Failure>) -> Response {
    let list = ui.get("/api/v1/categories").await;
    let body = html! {
        @match &list {
            Ok(v) => {
                @let rows: Vec<Value> = v["categories"].as_array().cloned().unwrap_or_default().into_iter().map(|mut c| {
                    c["values"] = Value::String(text(&c["values"]));
                    c["builtin"] = Value::String(if c["builtin"].as_bool() == Some(true) { "built-in".into() } else { String::new() });
                    c
                }).collect();
                (table(&rows, &[("name", "Name"), ("type", "Type"), ("values", "Values"), ("description", "Description"), ("builtin", "")], "categories"))
            }
            Err(e) => { (failure(e)) }
        }
        (category_form(&ui, f, err))
    };
    page_with(
        status_of(err),
        &mut ui,
        "Tag categories",
        "/ui/categories",
        body,
    )
}

async fn categories(ui: Ui) -> Response {
    categories_page(ui, &Form::default(), None).await
}

async fn add_category(ui: Ui, b: Bytes) -> Response {
    let f = match ui.form(&b) {
        Ok(f) => f,
        Err(r) => return r.into_response(),
    };
    let mut body =
        json!({"name": f.get("name"), "type": f.get("type"), "description": f.get("description")});
    match f.get("type") {
        "list" => {
            body["values"] = f
                .get("values")
                .split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .collect::<Vec<_>>()
                .into();
            body["multiple"] = f.has("multiple").into();
        }
        "range" => {
            for k in ["min", "max"] {
                match f.get(k).parse::<i64>() {
                    Ok(n) => body[k] = n.into(),
                    Err(_) => {
                        let e = Failure {
                            status: StatusCode::BAD_REQUEST,
                            field: Some(k.into()),
                            message: "a whole number".into(),
                        };
                        return categories_page(ui, &f, Some(&e)).await;
                    }
                }
            }
        }
        _ => {}
    }
    match ui
        .send(Method::POST, "/api/v1/categories", Some(body))
        .await
    {
        Ok(_) => {
            ui.flash(format!("Category {} added.", f.get("name"))).await;
            see("/ui/categories")
        }
        Err(e) => categories_page(ui, &f, Some(&e)).await,
    }
}

// ---- reputation filters ----

const KINDS: &[&str] = &["ipv4", "ipv6", "domain", "url", "sha1", "sha256"];
const ACTIONS: &[(&str, &str)] = &[
    ("block", "Block"),
    ("block+notify", "Block + Notify"),
    ("permit", "Permit"),
    ("notify", "Notify"),
    ("trace", "Trace"),
];

/// Filters in evaluation order: precedence, then id (as profiles evaluate them).
async fn filter_list(ui: &Ui) -> Result<Vec<Value>, Failure> {
    let v = ui.get("/api/v1/filters").await?;
    let mut rows = v["filters"].as_array().cloned().unwrap_or_default();
    rows.sort_by_key(|f| {
        (
            f["precedence"].as_i64().unwrap_or(0),
            f["id"].as_i64().unwrap_or(0),
        )
    });
    Ok(rows)
}

async fn filters(mut ui: Ui) -> Response {
    let list = filter_list(&ui).await;
    let admin = ui.may(Role::Admin);
    let body = html! {
        p.note { "Profiles evaluate their enabled filters in this order; the first that matches an entry decides its action." }
        @match &list {
            Err(e) => { (failure(e)) }
            Ok(rows) if rows.is_empty() => { p.empty { "No filter yet." } }
            Ok(rows) => {
                table id="filters" {
                    thead { tr { th { "Order" } th { "Name" } th { "Action" } th { "Kinds" } th { "Criteria" } th { "Enabled" } @if admin { th {} } } }
                    tbody {
                        @for (i, f) in rows.iter().enumerate() {
                            @let id = f["id"].as_i64().unwrap_or(0);
                            tr data-id=(id) {
                                td { (i + 1) " (" (text(&f["precedence"])) ")" }
                                td { a href={"/ui/filters/" (id)} { (text(&f["name"])) } }
                                td { (text(&f["action"])) }
                                td { @if f["kinds"].as_array().is_some_and(|k| k.is_empty()) { "all" } @else { (text(&f["kinds"])) } }
                                td { (text(&f["criteria"])) }
                                td { (if f["enabled"].as_bool() == Some(true) { "yes" } else { "no" }) }
                                @if admin {
                                    td.actions {
                                        @if i > 0 { (post_button(&ui, &format!("/ui/filters/{id}/move?to=up"), "↑", &format!("up-{id}"))) }
                                        @if i + 1 < rows.len() { (post_button(&ui, &format!("/ui/filters/{id}/move?to=down"), "↓", &format!("down-{id}"))) }
                                        (post_button(&ui, &format!("/ui/filters/{id}/delete"), "Delete", &format!("delete-{id}")))
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if admin { p.actions { a.button href="/ui/filters/new" id="new-filter" { "New filter" } } }
    };
    page(&mut ui, "Reputation filters", "/ui/filters", body)
}

/// The filter as the form has it.
struct FilterForm {
    name: String,
    action: String,
    kinds: Vec<String>,
    criteria: String,
    precedence: String,
    enabled: bool,
}

impl FilterForm {
    fn from_json(f: &Value) -> FilterForm {
        FilterForm {
            name: text(&f["name"]),
            action: text(&f["action"]),
            kinds: f["kinds"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|k| k.as_str().map(str::to_string))
                .collect(),
            criteria: f["criteria"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
            precedence: text(&f["precedence"]),
            enabled: f["enabled"].as_bool() != Some(false),
        }
    }

    fn from_form(f: &Form) -> FilterForm {
        FilterForm {
            name: f.get("name").into(),
            action: f.get("action").into(),
            kinds: f.all("kinds").into_iter().map(str::to_string).collect(),
            criteria: f.get("criteria").into(),
            precedence: f.get("precedence").into(),
            enabled: f.has("enabled"),
        }
    }

    fn criteria(&self) -> Vec<&str> {
        self.criteria
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// The API's body; a precedence that is not a number is the form's mistake.
    fn body(&self) -> Result<Value, Failure> {
        let precedence = if self.precedence.trim().is_empty() {
            0
        } else {
            self.precedence.trim().parse::<i64>().map_err(|_| Failure {
                status: StatusCode::BAD_REQUEST,
                field: Some("precedence".into()),
                message: "a whole number (lower goes first)".into(),
            })?
        };
        Ok(
            json!({"name": self.name, "action": self.action, "kinds": self.kinds,
                  "criteria": self.criteria(), "precedence": precedence, "enabled": self.enabled}),
        )
    }
}

fn filter_form(
    ui: &Ui,
    action: &str,
    f: &FilterForm,
    err: Option<&Failure>,
    preview: Option<&Result<u64, Failure>>,
) -> Markup {
    html! {
        form method="post" action=(action) id="filter-form" {
            (csrf(ui))
            (text_field("Name", "name", &f.name, err))
            (select("Action set", "action", ACTIONS, &f.action, err))
            fieldset {
                legend { "Kinds (none: every kind)" }
                @for k in KINDS { (checkbox(k, "kinds", k, f.kinds.iter().any(|x| x == k), false)) }
                @if let Some(m) = err.and_then(|e| e.about("kinds")) { span.error id="e-kinds" { (m) } }
            }
            (field("Tag criteria, one a line (all must hold): Category=Value~~~Value, Category=1..5, Category, !Category", "criteria", err,
                |id, _| html! { textarea id=(id) name="criteria" rows="4" { (f.criteria) } }))
            (input("number", "Precedence (lower goes first)", "precedence", &f.precedence, err))
            (checkbox("enabled", "enabled", "true", f.enabled, false))
            (general_error(err, &["name", "action", "kinds", "criteria", "precedence"]))
            @if let Some(p) = preview {
                @match p {
                    Ok(n) => { p.preview id="preview" { "This filter selects " strong { (count(*n)) } " entries now." } }
                    Err(e) => { p.error id="preview" { "Preview: " (e.message) } }
                }
            }
            button type="submit" name="do" value="preview" id="preview-filter" { "Preview" }
            " "
            button type="submit" name="do" value="save" id="save-filter" { "Save" }
        }
    }
}

/// How many entries the criteria select, per kind summed (the API counts one kind at a time).
async fn preview(ui: &Ui, f: &FilterForm) -> Result<u64, Failure> {
    let tag = f.criteria().join(";");
    let kinds: Vec<&str> = if f.kinds.is_empty() {
        vec![""]
    } else {
        f.kinds.iter().map(String::as_str).collect()
    };
    let mut n = 0;
    for k in kinds {
        let v = ui
            .get(&with_query(
                "/api/v1/entries",
                [("count", "true"), ("tag", tag.as_str()), ("kind", k)],
            ))
            .await
            .map_err(|mut e| {
                // The search calls them `tag`; the form `criteria`.
                if e.field.as_deref() == Some("tag") {
                    e.field = Some("criteria".into());
                }
                e
            })?;
        n += v["count"].as_u64().unwrap_or(0);
    }
    Ok(n)
}

async fn new_filter(mut ui: Ui) -> Response {
    let f = FilterForm::from_json(&json!({"action": "block", "precedence": 0}));
    let body = filter_form(&ui, "/ui/filters/new", &f, None, None);
    page(&mut ui, "New filter", "/ui/filters", body)
}

async fn edit_filter(mut ui: Ui, Path(id): Path<i64>) -> Response {
    let found = filter_list(&ui)
        .await
        .map(|rows| rows.into_iter().find(|f| f["id"] == id));
    let body = match &found {
        Err(e) => failure(e),
        Ok(None) => html! { p.error { "No such filter." } },
        Ok(Some(f)) => filter_form(
            &ui,
            &format!("/ui/filters/{id}"),
            &FilterForm::from_json(f),
            None,
            None,
        ),
    };
    page(&mut ui, "Filter", "/ui/filters", body)
}

async fn save_new_filter(ui: Ui, b: Bytes) -> Response {
    submit_filter(ui, b, None).await
}

async fn save_filter(ui: Ui, Path(id): Path<i64>, b: Bytes) -> Response {
    submit_filter(ui, b, Some(id)).await
}

async fn submit_filter(mut ui: Ui, b: Bytes, id: Option<i64>) -> Response {
    let form = match ui.form(&b) {
        Ok(f) => f,
        Err(r) => return r.into_response(),
    };
    let f = FilterForm::from_form(&form);
    let action = id.map_or("/ui/filters/new".to_string(), |id| {
        format!("/ui/filters/{id}")
    });
    if form.get("do") == "preview" {
        let p = preview(&ui, &f).await;
        let body = filter_form(&ui, &action, &f, p.as_ref().err(), Some(&p));
        return page(&mut ui, "Filter", "/ui/filters", body);
    }
    let result = match f.body() {
        Ok(body) => match id {
            None => ui.send(Method::POST, "/api/v1/filters", Some(body)).await,
            Some(id) => {
                ui.send(Method::PUT, &format!("/api/v1/filters/{id}"), Some(body))
                    .await
            }
        },
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => {
            ui.flash(format!("Filter {} saved.", f.name)).await;
            see("/ui/filters")
        }
        Err(e) => {
            let body = filter_form(&ui, &action, &f, Some(&e), None);
            page_with(e.status, &mut ui, "Filter", "/ui/filters", body)
        }
    }
}

#[derive(Debug, Deserialize)]
struct MoveTo {
    to: String,
}

/// The new precedences that move the filter at `from` just past its neighbour (`up`: before the
/// one above; else after the one below), in evaluation order `(precedence, id)`. One filter's
/// precedence changes when a number fits — the moving filter's, or else the neighbour's moving
/// the other way (the usual case); when none does, every filter is renumbered 10, 20, 30… in the
/// new order.
fn moved(order: &[(i64, i64)], from: usize, up: bool) -> Vec<(i64, i64)> {
    let n = order.len();
    if from >= n || (up && from == 0) || (!up && from + 1 >= n) {
        return Vec::new();
    }
    let to = if up { from - 1 } else { from + 1 };
    if let Some(one) = single(order, from, up).or_else(|| single(order, to, !up)) {
        return vec![one];
    }
    let mut ids: Vec<(i64, i64)> = order.to_vec();
    ids.swap(from, to);
    ids.iter()
        .enumerate()
        .filter_map(|(i, &(p, fid))| {
            let new = (i as i64 + 1) * 10;
            (new != p).then_some((fid, new))
        })
        .collect()
}

/// A precedence for the filter at `from` that puts it just past its neighbour, if one fits.
fn single(order: &[(i64, i64)], from: usize, up: bool) -> Option<(i64, i64)> {
    let (_, id) = *order.get(from)?;
    let mut rest: Vec<(i64, i64)> = order.to_vec();
    rest.remove(from);
    // Where the filter goes in `rest`: between `before` and `after`.
    let at = if up { from.checked_sub(1)? } else { from + 1 };
    let before = at.checked_sub(1).and_then(|i| rest.get(i)).copied();
    let after = rest.get(at).copied();
    let fits = |p: i64| before.is_none_or(|b| (p, id) > b) && after.is_none_or(|a| (p, id) < a);
    let (p, _) = if up { after? } else { before? };
    [p, p.saturating_sub(1), p.saturating_add(1)]
        .into_iter()
        .find(|c| fits(*c))
        .map(|c| (id, c))
}

async fn move_filter(ui: Ui, Path(id): Path<i64>, Query(m): Query<MoveTo>, b: Bytes) -> Response {
    if let Err(r) = ui.form(&b) {
        return r.into_response();
    }
    let rows = match filter_list(&ui).await {
        Ok(r) => r,
        Err(e) => {
            ui.flash(e.message).await;
            return see("/ui/filters");
        }
    };
    let order: Vec<(i64, i64)> = rows
        .iter()
        .map(|f| {
            (
                f["precedence"].as_i64().unwrap_or(0),
                f["id"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    let Some(from) = order.iter().position(|(_, fid)| *fid == id) else {
        ui.flash("No such filter.").await;
        return see("/ui/filters");
    };
    for (fid, precedence) in moved(&order, from, m.to == "up") {
        let Some(f) = rows.iter().find(|f| f["id"] == fid) else {
            continue;
        };
        let body = json!({"name": f["name"], "action": f["action"], "kinds": f["kinds"],
                          "criteria": f["criteria"], "precedence": precedence, "enabled": f["enabled"]});
        if let Err(e) = ui
            .send(Method::PUT, &format!("/api/v1/filters/{fid}"), Some(body))
            .await
        {
            ui.flash(format!("Not moved: {}", e.message)).await;
            return see("/ui/filters");
        }
    }
    see("/ui/filters")
}

async fn delete_filter(ui: Ui, Path(id): Path<i64>, b: Bytes) -> Response {
    if let Err(r) = ui.form(&b) {
        return r.into_response();
    }
    match ui
        .send(Method::DELETE, &format!("/api/v1/filters/{id}"), None)
        .await
    {
        Ok(_) => ui.flash("Filter deleted.").await,
        Err(e) => ui.flash(format!("Not deleted: {}", e.message)).await,
    }
    see("/ui/filters")
}

// ---- profiles ----

fn profile_form(
    ui: &Ui,
    action: &str,
    name: &str,
    chosen: &[String],
    filters: &[Value],
    err: Option<&Failure>,
    id: &str,
) -> Markup {
    html! {
        form method="post" action=(action) id=(id) {
            (csrf(ui))
            (text_field("Name", "name", name, err))
            fieldset {
                legend { "Filters" }
                @for f in filters {
                    @let fname = text(&f["name"]);
                    (checkbox(&fname, "filters", &fname, chosen.contains(&fname), false))
                }
                @if let Some(m) = err.and_then(|e| e.about("filters")) { span.error { (m) } }
            }
            (general_error(err, &["name", "filters"]))
            button type="submit" { "Save profile" }
        }
    }
}

async fn profiles_page(mut ui: Ui, f: &Form, err: Option<&Failure>) -> Response {
    let list = ui.get("/api/v1/profiles").await;
    let filters = filter_list(&ui).await.unwrap_or_default();
    let names = |ids: &Value| -> Vec<String> {
        ids.as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| {
                filters
                    .iter()
                    .find(|f| f["id"] == *i)
                    .map(|f| text(&f["name"]))
            })
            .collect()
    };
    let admin = ui.may(Role::Admin);
    let body = html! {
        @match &list {
            Err(e) => { (failure(e)) }
            Ok(v) => {
                table id="profiles" {
                    thead { tr { th { "Name" } th { "Filters" } th { "Selected entries" } @if admin { th {} } } }
                    tbody {
                        @for p in v["profiles"].as_array().into_iter().flatten() {
                            @let id = p["id"].as_i64().unwrap_or(0);
                            tr {
                                td { (text(&p["name"])) }
                                td { (names(&p["filters"]).join(", ")) }
                                td.num { (count(p["selected"].as_u64().unwrap_or(0))) }
                                @if admin {
                                    td.actions {
                                        details {
                                            summary { "Edit" }
                                            (profile_form(&ui, &format!("/ui/profiles/{id}"), &text(&p["name"]), &names(&p["filters"]), &filters, None, &format!("profile-{id}")))
                                        }
                                        (post_button(&ui, &format!("/ui/profiles/{id}/delete"), "Delete", &format!("delete-profile-{id}")))
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if admin {
            h2 { "New profile" }
            @let chosen: Vec<String> = f.all("filters").into_iter().map(str::to_string).collect();
            (profile_form(&ui, "/ui/profiles", f.get("name"), &chosen, &filters, err, "new-profile"))
        }
    };
    page_with(status_of(err), &mut ui, "Profiles", "/ui/profiles", body)
}

async fn profiles(ui: Ui) -> Response {
    profiles_page(ui, &Form::default(), None).await
}

async fn add_profile(ui: Ui, b: Bytes) -> Response {
    let f = match ui.form(&b) {
        Ok(f) => f,
        Err(r) => return r.into_response(),
    };
    let body = json!({"name": f.get("name"), "filters": f.all("filters")});
    match ui.send(Method::POST, "/api/v1/profiles", Some(body)).await {
        Ok(_) => {
            ui.flash(format!("Profile {} created.", f.get("name")))
                .await;
            see("/ui/profiles")
        }
        Err(e) => profiles_page(ui, &f, Some(&e)).await,
    }
}

async fn save_profile(ui: Ui, Path(id): Path<i64>, b: Bytes) -> Response {
    let f = match ui.form(&b) {
        Ok(f) => f,
        Err(r) => return r.into_response(),
    };
    let body = json!({"name": f.get("name"), "filters": f.all("filters")});
    match ui
        .send(Method::PUT, &format!("/api/v1/profiles/{id}"), Some(body))
        .await
    {
        Ok(_) => {
            ui.flash(format!("Profile {} saved.", f.get("name"))).await;
            see("/ui/profiles")
        }
        Err(e) => profiles_page(ui, &Form::default(), Some(&e)).await,
    }
}

async fn delete_profile(ui: Ui, Path(id): Path<i64>, b: Bytes) -> Response {
    if let Err(r) = ui.form(&b) {
        return r.into_response();
    }
    match ui
        .send(Method::DELETE, &format!("/api/v1/profiles/{id}"), None)
        .await
    {
        Ok(_) => ui.flash("Profile deleted.").await,
        Err(e) => ui.flash(format!("Not deleted: {}", e.message)).await,
    }
    see("/ui/profiles")
}

// ---- devices and distributions ----

async fn profile_names(ui: &Ui) -> Vec<String> {
    ui.get("/api/v1/profiles")
        .await
        .ok()
        .map(|v| {
            v["profiles"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| text(&p["name"]))
                .collect()
        })
        .unwrap_or_default()
}

async fn devices_page(
    mut ui: Ui,
    f: &Form,
    err: Option<&Failure>,
    token: Option<(String, String)>,
) -> Response {
    let list = ui.get("/api/v1/devices").await;
    let profiles = profile_names(&ui).await;
    let mut options: Vec<(&str, &str)> = vec![("", "none")];
    options.extend(profiles.iter().map(|p| (p.as_str(), p.as_str())));
    let admin = ui.may(Role::Admin);
    let body = html! {
        @if let Some((name, token)) = &token {
            div.token id="device-token" {
                p { "The token of " strong { (name) } " — shown this once; the hub keeps only its hash:" }
                code { (token) }
            }
        }
        @match &list {
            Err(e) => { (failure(e)) }
            Ok(v) => {
                table id="devices" {
                    thead { tr { th { "Name" } th { "Profile" } th { "Status" } th { "Applied" } th { "Last seen" } th { "Error" } @if admin { th {} } } }
                    tbody {
                        @for d in v["devices"].as_array().into_iter().flatten() {
                            @let id = d["id"].as_i64().unwrap_or(0);
                            tr {
                                td { (text(&d["name"])) }
                                td { (text(&d["profile"])) }
                                td { (text(&d["status"])) }
                                td.num { (text(&d["applied_cursor"])) " / " (text(&d["profile_cursor"])) }
                                td { (d["last_seen"].as_i64().map(rephub_model::format_utc).unwrap_or_default()) }
                                td { (text(&d["error"])) }
                                @if admin { td { (post_button(&ui, &format!("/ui/devices/{id}/delete"), "Delete", &format!("delete-device-{id}"))) } }
                            }
                        }
                    }
                }
            }
        }
        @if admin {
            h2 { "Add a device" }
            form method="post" action="/ui/devices" id="new-device" {
                (csrf(&ui))
                (text_field("Name", "name", f.get("name"), err))
                (select("Profile", "profile", &options, f.get("profile"), err))
                (general_error(err, &["name", "profile"]))
                button type="submit" id="add-device" { "Add device" }
            }
        }
    };
    page_with(status_of(err), &mut ui, "Devices", "/ui/devices", body)
}

async fn devices(ui: Ui) -> Response {
    devices_page(ui, &Form::default(), None, None).await
}

async fn add_device(ui: Ui, b: Bytes) -> Response {
    let f = match ui.form(&b) {
        Ok(f) => f,
        Err(r) => return r.into_response(),
    };
    let mut body = json!({"name": f.get("name")});
    if !f.get("profile").is_empty() {
        body["profile"] = f.get("profile").into();
    }
    match ui.send(Method::POST, "/api/v1/devices", Some(body)).await {
        // The token is shown on this answer only (not after a redirect: it is not kept).
        Ok(v) => {
            devices_page(
                ui,
                &Form::default(),
                None,
                Some((text(&v["name"]), text(&v["token"]))),
            )
            .await
        }
        Err(e) => devices_page(ui, &f, Some(&e), None).await,
    }
}

async fn delete_device(ui: Ui, Path(id): Path<i64>, b: Bytes) -> Response {
    if let Err(r) = ui.form(&b) {
        return r.into_response();
    }
    match ui
        .send(Method::DELETE, &format!("/api/v1/devices/{id}"), None)
        .await
    {
        Ok(_) => ui.flash("Device deleted.").await,
        Err(e) => ui.flash(format!("Not deleted: {}", e.message)).await,
    }
    see("/ui/devices")
}

async fn distributions_page(mut ui: Ui, f: &Form, err: Option<&Failure>) -> Response {
    let list = ui.get("/api/v1/distributions").await;
    let devices = ui.get("/api/v1/devices").await.unwrap_or_default();
    let profiles = profile_names(&ui).await;
    let options: Vec<(&str, &str)> = profiles.iter().map(|p| (p.as_str(), p.as_str())).collect();
    let chosen = f.all("devices");
    let body = html! {
        @match &list {
            Err(e) => { (failure(e)) }
            Ok(v) => {
                @for d in v["distributions"].as_array().into_iter().flatten() {
                    h2 { "Profile " (text(&d["profile"])) }
                    (table(d["devices"].as_array().map_or(&[][..], Vec::as_slice), &[("name", "Device"), ("status", "Status"), ("applied_cursor", "Applied"), ("profile_cursor", "Profile at")], &format!("distribution-{}", seg(&text(&d["profile"])))))
                }
            }
        }
        @if ui.may(Role::Admin) {
            h2 { "Distribute a profile" }
            form method="post" action="/ui/distributions" id="distribute" {
                (csrf(&ui))
                (select("Profile", "profile", &options, f.get("profile"), err))
                fieldset {
                    legend { "Devices" }
                    @for d in devices["devices"].as_array().into_iter().flatten() {
                        @let n = text(&d["name"]);
                        (checkbox(&n, "devices", &n, chosen.contains(&n.as_str()), false))
                    }
                    @if let Some(m) = err.and_then(|e| e.about("devices")) { span.error { (m) } }
                }
                (general_error(err, &["profile", "devices"]))
                button type="submit" id="distribute-now" { "Distribute" }
            }
        }
    };
    page_with(
        status_of(err),
        &mut ui,
        "Distributions",
        "/ui/distributions",
        body,
    )
}

async fn distributions(ui: Ui) -> Response {
    distributions_page(ui, &Form::default(), None).await
}

async fn distribute(ui: Ui, b: Bytes) -> Response {
    let f = match ui.form(&b) {
        Ok(f) => f,
        Err(r) => return r.into_response(),
    };
    let body = json!({"profile": f.get("profile"), "devices": f.all("devices")});
    match ui
        .send(Method::POST, "/api/v1/distributions", Some(body))
        .await
    {
        Ok(_) => {
            ui.flash(format!("Profile {} distributed.", f.get("profile")))
                .await;
            see("/ui/distributions")
        }
        Err(e) => distributions_page(ui, &f, Some(&e)).await,
    }
}

#[cfg(test)]
mod tests {
    use super::moved;

    /// Apply the changes and return the ids in evaluation order.
    fn apply(order: &[(i64, i64)], changes: &[(i64, i64)]) -> Vec<i64> {
        let mut v: Vec<(i64, i64)> = order
            .iter()
            .map(|&(p, id)| (changes.iter().find(|c| c.0 == id).map_or(p, |c| c.1), id))
            .collect();
        v.sort();
        v.into_iter().map(|(_, id)| id).collect()
    }

    #[test]
    fn moving_swaps_with_the_neighbour_changing_one_filter_when_it_can() {
        let order = [(0, 1), (0, 2), (0, 3)];
        let up = moved(&order, 2, true);
        assert_eq!(up.len(), 1);
        assert_eq!(apply(&order, &up), vec![1, 3, 2]);
        let down = moved(&order, 0, false);
        assert_eq!(down.len(), 1);
        assert_eq!(apply(&order, &down), vec![2, 1, 3]);
        assert!(moved(&order, 0, true).is_empty());
        assert!(moved(&order, 2, false).is_empty());
        // Distinct precedences.
        let order = [(10, 5), (20, 1), (30, 9)];
        assert_eq!(apply(&order, &moved(&order, 1, true)), vec![1, 5, 9]);
        assert_eq!(apply(&order, &moved(&order, 1, false)), vec![5, 9, 1]);
    }

    #[test]
    fn with_no_room_every_filter_is_renumbered() {
        // Filter 1 must go between (5, 2) and (5, 3)... after moving 4 up past 3: no number
        // between (5, 2) and (5, 3) sorts id 4 in between (4 > 3).
        let order = [(5, 2), (5, 3), (5, 4)];
        let changes = moved(&order, 2, true);
        assert_eq!(apply(&order, &changes), vec![2, 4, 3]);
        for i in 0..4 {
            for up in [true, false] {
                let order = [(1, 7), (1, 8), (2, 3), (2, 4)];
                let changes = moved(&order, i, up);
                let mut ids: Vec<i64> = order.iter().map(|o| o.1).collect();
                let j = if up {
                    i.checked_sub(1)
                } else {
                    Some(i + 1).filter(|j| *j < 4)
                };
                if let Some(j) = j {
                    ids.swap(i, j);
                }
                assert_eq!(apply(&order, &changes), ids, "move {i} up={up}");
            }
        }
    }
}
