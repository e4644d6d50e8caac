//! The console's layout and the pieces every page uses: the frame with its navigation, form
//! fields that show the API's message beside the field they are about, tables, times, and the
//! static files (served from the binary: the console works without internet access).

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};
use serde_json::Value;

use super::{Failure, Ui};
use crate::keys::Role;

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

/// `/ui/static/{file}`: the style sheet and the script (no CDN, no inline code: the CSP allows
/// only files of the hub).
pub(super) async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "console.css" => (CSS, "text/css; charset=utf-8"),
        "console.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// The navigation: (path, label, role needed to see it).
const NAV: &[(&str, &str, Role)] = &[
    ("/ui/", "Dashboard", Role::ReadOnly),
    ("/ui/entries", "Reputation database", Role::ReadOnly),
    ("/ui/categories", "Tag categories", Role::ReadOnly),
    ("/ui/filters", "Reputation filters", Role::ReadOnly),
    ("/ui/profiles", "Profiles", Role::ReadOnly),
    ("/ui/devices", "Devices", Role::ReadOnly),
    ("/ui/distributions", "Distributions", Role::ReadOnly),
    ("/ui/targets", "Auxiliary products", Role::ReadOnly),
    ("/ui/upstream", "Connect to upstream", Role::Admin),
    ("/ui/sources", "Sources", Role::ReadOnly),
    ("/ui/events", "Events", Role::ReadOnly),
    ("/ui/telemetry", "TLS telemetry", Role::ReadOnly),
    ("/ui/sandbox", "Sandbox analysis", Role::ReadOnly),
    ("/ui/filter-status", "Filter status", Role::ReadOnly),
    ("/ui/inventory", "Inventory", Role::ReadOnly),
    ("/ui/sharing", "Sharing", Role::ReadOnly),
    ("/ui/users", "Users", Role::Admin),
];

/// A whole page: the frame, the navigation with `active` marked, the flash message, `body`.
pub(super) fn page(ui: &mut Ui, title: &str, active: &str, body: Markup) -> Response {
    let flash = ui.take_flash();
    let html = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · rephub" }
                link rel="stylesheet" href="/ui/static/console.css";
                script src="/ui/static/console.js" defer {}
            }
            body data-csrf=(ui.csrf) {
                header.top {
                    a.brand href="/ui/" { "rephub" }
                    span.who {
                        (ui.caller.name) " (" (ui.role().as_str()) ")"
                        form.inline method="post" action="/ui/logout" {
                            (csrf(ui))
                            button.link type="submit" id="sign-out" { "Sign out" }
                        }
                    }
                }
                div.frame {
                    nav {
                        ul {
                            @for (path, label, need) in NAV {
                                @if ui.may(*need) {
                                    li { a href=(path) class=[(*path == active).then_some("active")] { (label) } }
                                }
                            }
                        }
                    }
                    main {
                        h1 { (title) }
                        @if let Some(m) = flash { p.flash role="status" { (m) } }
                        (body)
                    }
                }
            }
        }
    };
    Html(html.into_string()).into_response()
}

/// The same page, with a status other than 200 (a form shown again with its errors).
pub(super) fn page_with(
    status: StatusCode,
    ui: &mut Ui,
    title: &str,
    active: &str,
    body: Markup,
) -> Response {
    let mut res = page(ui, title, active, body);
    *res.status_mut() = status;
    res
}

/// The hidden CSRF field every form carries.
pub(super) fn csrf(ui: &Ui) -> Markup {
    html! { input type="hidden" name="csrf" value=(ui.csrf); }
}

/// The message of a failed API call, when it is about no field of the form.
pub(super) fn general_error(err: Option<&Failure>, fields: &[&str]) -> Markup {
    html! {
        @if let Some(e) = err {
            @if !fields.iter().any(|f| e.about(f).is_some()) {
                p.error role="alert" { (e.message) }
            }
        }
    }
}

/// A labelled text input that keeps what was typed and shows the API's message about it.
pub(super) fn text_field(label: &str, name: &str, value: &str, err: Option<&Failure>) -> Markup {
    input("text", label, name, value, err)
}

/// A labelled input of a type (`password`, `number`, `file`…), like [`text_field`].
pub(super) fn input(
    kind: &str,
    label: &str,
    name: &str,
    value: &str,
    err: Option<&Failure>,
) -> Markup {
    field(label, name, err, |id, invalid| {
        html! {
            input id=(id) name=(name) value=(value) type=(kind) aria-invalid=[invalid.then_some("true")];
        }
    })
}

/// A select of (value, label) with `selected` chosen.
pub(super) fn select(
    label: &str,
    name: &str,
    options: &[(&str, &str)],
    selected: &str,
    err: Option<&Failure>,
) -> Markup {
    field(label, name, err, |id, _| {
        html! {
            select id=(id) name=(name) {
                @for (v, l) in options {
                    option value=(v) selected[*v == selected] { (l) }
                }
            }
        }
    })
}

/// A form field: its label, its control (made with the control's id and whether it is
/// invalid), and the API's message about it (`#e-<name>`).
pub(super) fn field(
    label: &str,
    name: &str,
    err: Option<&Failure>,
    control: impl FnOnce(&str, bool) -> Markup,
) -> Markup {
    let message = err.and_then(|e| e.about(name));
    let id = format!("f-{name}");
    html! {
        div.field class=[message.map(|_| "invalid")] {
            label for=(id) { (label) }
            (control(&id, message.is_some()))
            @if let Some(m) = message { span.error id={"e-" (name)} { (m) } }
        }
    }
}

/// A checkbox.
pub(super) fn checkbox(
    label: &str,
    name: &str,
    value: &str,
    checked: bool,
    disabled: bool,
) -> Markup {
    html! {
        label.check {
            input type="checkbox" name=(name) value=(value) checked[checked] disabled[disabled];
            " " (label)
        }
    }
}

/// A button that posts a small form (delete, run now, move up) with the CSRF token.
pub(super) fn post_button(ui: &Ui, action: &str, label: &str, id: &str) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            (csrf(ui))
            button type="submit" id=(id) { (label) }
        }
    }
}

/// A value of a JSON answer as text ("" for null).
pub(super) fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

/// A time in Unix seconds as UTC text (other values as they are).
pub(super) fn when(v: &Value) -> String {
    v.as_i64().map_or_else(|| text(v), rephub_model::format_utc)
}

/// A table of JSON objects: the given columns (key, heading).
pub(super) fn table(rows: &[Value], columns: &[(&str, &str)], id: &str) -> Markup {
    html! {
        @if rows.is_empty() {
            p.empty { "None." }
        } @else {
            table id=(id) {
                thead { tr { @for (_, h) in columns { th { (h) } } } }
                tbody {
                    @for r in rows {
                        tr { @for (k, _) in columns { td { (text(&r[*k])) } } }
                    }
                }
            }
        }
    }
}

/// The message of an API failure as a whole page section.
pub(super) fn failure(err: &Failure) -> Markup {
    html! { p.error role="alert" { (err.message) } }
}

/// A number with thousands separators.
pub(super) fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_have_separators() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(1234567), "1,234,567");
    }

    #[test]
    fn values_are_escaped() {
        let m = table(
            &[serde_json::json!({"v": "<script>alert(1)</script>"})],
            &[("v", "V")],
            "t",
        );
        let s = m.into_string();
        assert!(!s.contains("<script>"));
        assert!(s.contains("&lt;script&gt;"));
    }
}
