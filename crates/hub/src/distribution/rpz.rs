//! DNS Response Policy Zones: `GET /rpz/<profile>.zone` is the profile's filter set as an RPZ
//! zone, for resolvers that load RPZ by URL (unbound's `rpz:` with `url:`).
//!
//! - A domain entry `evil.example` blocks the name and every name below it: `evil.example CNAME .`
//!   and `*.evil.example CNAME .` (NXDOMAIN); an exact entry `[evil.example]` only the first.
//! - An IP entry is a response-IP trigger: `24.0.113.0.203.rpz-ip CNAME .`.
//! - `block` and `block+notify` answer NXDOMAIN; `permit` is `rpz-passthru.` (an exception that
//!   wins over a block in a less specific entry). `notify` and `trace` change no answer, so they
//!   are not in the zone; URL and hash entries have no DNS form.
//! - Owner names are relative: the zone works under whatever name the resolver gives it.
//! - The SOA serial is the profile's cursor (the change-log number of its newest change), so it
//!   grows with every change of the filter set and only then.
//!
//! Authentication: a device token (a resolver registered as a device of the profile, which then
//! shows its fetches in the distribution status) or an API key, as `Authorization: Bearer`, or as
//! `?key=` because resolvers fetching by URL cannot send headers.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::Router;
use axum::extract::{Extension, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ipnet::{Ipv4Net, Ipv6Net};

use rephub_model::{ActionSet, Entry};
use rephub_store::DistributionStore;

use crate::distribution::engine::{Selected, SyncAnswer};
use crate::http::auth::{Principal, Who, guard};
use crate::http::error::{ApiError, Dialect};
use crate::state::AppState;

pub(crate) fn router(state: &AppState) -> Router<AppState> {
    guard(
        Router::new().route("/rpz/{file}", get(zone)),
        state,
        Who::DeviceOrUser,
        Dialect::Text,
    )
}

fn text(status: StatusCode, message: String) -> Response {
    ApiError::status(status, message).render(Dialect::Text)
}

/// The owner name of an IPv4 trigger: prefix length, then the octets reversed.
fn ipv4_trigger(n: &Ipv4Net) -> String {
    let o = n.network().octets();
    format!(
        "{}.{}.{}.{}.{}.rpz-ip",
        n.prefix_len(),
        o[3],
        o[2],
        o[1],
        o[0]
    )
}

/// IPv6: prefix length, then the 16-bit groups reversed, the longest run of zero groups (two or
/// more) written `zz`.
fn ipv6_trigger(n: &Ipv6Net) -> String {
    let g = n.network().segments();
    // The longest run of zero groups, as the textual form would compress it.
    let (mut best, mut run) = ((0usize, 0usize), (0usize, 0usize));
    for (i, x) in g.iter().enumerate() {
        if *x == 0 {
            if run.1 == 0 {
                run.0 = i;
            }
            run.1 += 1;
            if run.1 > best.1 {
                best = run;
            }
        } else {
            run.1 = 0;
        }
    }
    let mut labels: Vec<String> = Vec::with_capacity(9);
    let mut i = 0;
    while i < 8 {
        if best.1 >= 2 && i == best.0 {
            labels.push("zz".into());
            i += best.1;
        } else {
            labels.push(format!("{:x}", g[i]));
            i += 1;
        }
    }
    labels.reverse();
    format!("{}.{}.rpz-ip", n.prefix_len(), labels.join("."))
}

/// The RPZ records of one selected entry: `(owner relative to the zone, rank, CNAME target)`. On
/// an owner two entries share (an exact `[evil.example]` and `evil.example`), the higher rank
/// wins.
pub(crate) fn contributions(s: &Selected) -> Vec<(String, u8, &'static str)> {
    let target = match s.decision.action {
        ActionSet::Block | ActionSet::BlockNotify => ".",
        ActionSet::Permit => "rpz-passthru.",
        ActionSet::Notify | ActionSet::Trace => return Vec::new(),
    };
    match &s.entry {
        Entry::Domain(d) if d.is_exact() => vec![(d.name().to_string(), 2, target)],
        Entry::Domain(d) => vec![
            (d.name().to_string(), 1, target),
            (format!("*.{}", d.name()), 1, target),
        ],
        Entry::Ipv4(n) => vec![(ipv4_trigger(n), 1, target)],
        Entry::Ipv6(n) => vec![(ipv6_trigger(n), 1, target)],
        Entry::Url { .. } | Entry::Sha1(_) | Entry::Sha256(_) => Vec::new(),
    }
}

/// Owner names and their policy, more specific entries winning on the same owner.
fn records(items: &[Selected]) -> BTreeMap<String, (u8, &'static str)> {
    let mut out: BTreeMap<String, (u8, &'static str)> = BTreeMap::new();
    for (owner, rank, target) in items.iter().flat_map(contributions) {
        let slot = out.entry(owner).or_insert((rank, target));
        if rank > slot.0 {
            *slot = (rank, target);
        }
    }
    out
}

async fn zone(
    State(state): State<AppState>,
    Path(file): Path<String>,
    Extension(who): Extension<Principal>,
) -> Response {
    let Some(name) = file.strip_suffix(".zone") else {
        return text(
            StatusCode::NOT_FOUND,
            format!("{file}: zones are <profile>.zone"),
        );
    };
    let name = name.to_string();
    let profiles = match state.read(|s| s.profiles()).await {
        Ok(Ok(p)) => p,
        _ => return text(StatusCode::INTERNAL_SERVER_ERROR, "internal error".into()),
    };
    let Some(profile) = profiles.iter().find(|p| p.name == name).map(|p| p.id) else {
        return text(StatusCode::NOT_FOUND, format!("no profile named {name:?}"));
    };
    // A device token of this profile, or any API key.
    if let Principal::Device(_, d) = &who {
        if d.profile != Some(profile) {
            return text(
                StatusCode::FORBIDDEN,
                format!("device {} is not given profile {name:?}", d.name),
            );
        }
    }
    // The zone includes everything written before the request (read-your-writes).
    if state.catch_up().await.is_err() {
        return text(StatusCode::INTERNAL_SERVER_ERROR, "internal error".into());
    }
    let engine = state.engine();
    let e = engine.clone();
    let items = match tokio::task::spawn_blocking(move || e.answer(profile, None)).await {
        Ok(Ok(Some(SyncAnswer::Snapshot { items, .. }))) => items,
        Ok(Ok(_)) => Vec::new(),
        _ => return text(StatusCode::INTERNAL_SERVER_ERROR, "internal error".into()),
    };
    let serial = engine.last_change(profile).unwrap_or(0);
    if let Principal::Device(hash, d) = &who {
        state.record_progress(hash, d.id, serial, None);
        state.mark_synced(hash);
    }
    let refresh = state.config().rpz_refresh_secs;
    let body = crate::http::chunked::body(
        move |out| {
            let mut head = String::new();
            // Serial arithmetic (RFC 1982) works modulo 2^32.
            let _ = write!(
                head,
                "; rephub RPZ zone of profile {name:?}: {} triggers\n$TTL 60\n\
                 @ SOA localhost. hostmaster.localhost. {} {refresh} {} 604800 30\n@ NS localhost.\n",
                items.len(),
                serial as u32,
                (refresh / 2).max(1),
            );
            if !out.push(head.as_bytes()) {
                return;
            }
            for (owner, (_, target)) in records(&items) {
                let line = format!("{owner} CNAME {target}\n");
                if !out.push(line.as_bytes()) {
                    return;
                }
            }
        },
        || {},
    );
    ([(header::CONTENT_TYPE, "text/dns; charset=utf-8")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_triggers() {
        assert_eq!(
            ipv4_trigger(&"203.0.113.0/24".parse().unwrap_or_else(|_| unreachable!())),
            "24.0.113.0.203.rpz-ip"
        );
        assert_eq!(
            ipv4_trigger(&"1.2.3.4/32".parse().unwrap_or_else(|_| unreachable!())),
            "32.4.3.2.1.rpz-ip"
        );
        let v6 = |s: &str| ipv6_trigger(&s.parse().unwrap_or_else(|_| unreachable!()));
        assert_eq!(v6("2001:db8::/32"), "32.zz.db8.2001.rpz-ip");
        assert_eq!(v6("2001:db8::1/128"), "128.1.zz.db8.2001.rpz-ip");
        assert_eq!(v6("::/0"), "0.zz.rpz-ip");
        // A single zero group is written out.
        assert_eq!(
            v6("2001:db8:0:1:1:1:1:1/128"),
            "128.1.1.1.1.1.0.db8.2001.rpz-ip"
        );
    }
}
