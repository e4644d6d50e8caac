//! The OpenAPI 3.1 document of the hub's HTTP APIs, served at `/api/v1/openapi.json`. A test
//! checks that every operation it lists is routed.

use serde_json::{Value, json};

fn op(summary: &str, security: &str, extra: Value) -> Value {
    let mut o = json!({
        "summary": summary,
        "security": [{ security: [] }],
        "responses": {
            "200": {"description": "done"},
            "400": {"description": "malformed request; the body names the field", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            "401": {"description": "missing or unknown credentials"},
            "403": {"description": "the key's role may not do this"}
        }
    });
    if let (Some(o), Some(extra)) = (o.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            o.insert(k.clone(), v.clone());
        }
    }
    o
}

/// An operation without credentials (its body or nothing is the credential).
fn open_op(summary: &str, extra: Value) -> Value {
    let mut o = op(summary, "apiKey", extra);
    o["security"] = json!([]);
    o
}

fn json_body(schema: Value) -> Value {
    json!({"requestBody": {"required": true, "content": {"application/json": {"schema": schema}}}})
}

fn query(names: &[&str]) -> Value {
    let params: Vec<Value> = names
        .iter()
        .map(|n| json!({"name": n, "in": "query", "required": false, "schema": {"type": "string"}}))
        .collect();
    json!({"parameters": params})
}

fn path_id(name: &str) -> Value {
    json!({"parameters": [{"name": name, "in": "path", "required": true, "schema": {"type": "string"}}]})
}

pub(crate) fn document() -> Value {
    let sms = |summary: &str| {
        let o = op(
            summary,
            "smsKey",
            query(&[
                "ip", "dns", "url", "TagData", "criteria", "type", "smsuser", "smspass",
            ]),
        );
        json!({"get": o.clone(), "post": o})
    };
    let filter = json!({"type": "object", "required": ["name", "action"], "properties": {
        "name": {"type": "string"}, "enabled": {"type": "boolean"}, "precedence": {"type": "integer"},
        "action": {"enum": ["block", "block+notify", "permit", "notify", "trace"]},
        "kinds": {"type": "array", "items": {"enum": ["ipv4", "ipv6", "domain", "url", "sha1", "sha256"]}},
        "criteria": {"type": "array", "items": {"type": "string"}, "description": "Category=Value~~~Value, Category=min..max, Category, !Category"}}});
    let entries = json!({"type": "object", "required": ["entries"], "properties": {
        "entries": {"type": "array", "items": {"type": "object", "required": ["value"], "properties": {
            "value": {"type": "string"}, "kind": {"type": "string"}, "tags": {"type": "object"}}}},
        "source": {"type": "string"}, "mode": {"enum": ["merge", "replace"]}}});
    let mut add = entries.clone();
    add["properties"]["force"] = json!({"type": "boolean",
        "description": "take networks broader than the configured minimum prefix too"});
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {"title": "rephub hub", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Reputation hub: SMS-compatible Web API, REST API, device sync. See docs/hub.md and docs/sync-protocol.md."},
        "components": {
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer", "description": "API key (rh_…); X-Api-Key also accepted"},
                "deviceToken": {"type": "http", "scheme": "bearer", "description": "device token (rhd_…)"},
                "bouncerKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key", "description": "a device token used as a CrowdSec bouncer key"},
                "smsKey": {"type": "apiKey", "in": "header", "name": "X-SMS-API-KEY", "description": "or HTTP Basic (key name, key), or smsuser/smspass"}
            },
            "schemas": {"Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
                "field": {"type": ["string", "null"]}, "message": {"type": "string"}}}}}}
        },
        "paths": {
            "/repEntries/add": sms("SMS: add or update one entry (ip, dns or url; TagData)"),
            "/repEntries/delete": sms("SMS: delete entries (criteria=all|user|repdv|entry)"),
            "/repEntries/query": sms("SMS: query user entries (plain text, ordered by address)"),
            "/repEntries/import": sms("SMS: import an SMS CSV file (multipart file, type)"),
            "/api/v1/filters": {
                "get": op("list reputation filters", "apiKey", json!({})),
                "post": op("create a reputation filter (admin)", "apiKey", json_body(filter.clone()))},
            "/api/v1/filters/{id}": {
                "put": op("replace a filter (admin)", "apiKey", merge(json_body(filter), path_id("id"))),
                "delete": op("delete a filter (admin)", "apiKey", path_id("id"))},
            "/api/v1/profiles": {
                "get": op("list profiles with their filter-set sizes and cursors", "apiKey", json!({})),
                "post": op("create a profile (admin): {name, filters: [name or id]}", "apiKey", json_body(json!({"type": "object"})))},
            "/api/v1/profiles/{id}": {
                "put": op("replace a profile (admin)", "apiKey", merge(json_body(json!({"type": "object"})), path_id("id"))),
                "delete": op("delete a profile (admin)", "apiKey", path_id("id"))},
            "/api/v1/devices": {
                "get": op("devices and their distribution status", "apiKey", json!({})),
                "post": op("register a device (admin); answers its token once", "apiKey", json_body(json!({"type": "object", "properties": {"name": {"type": "string"}, "profile": {"type": "string"}}})))},
            "/api/v1/devices/{id}": {"delete": op("delete a device (admin)", "apiKey", path_id("id"))},
            "/api/v1/distributions": {
                "get": op("per profile, its devices and their status", "apiKey", json!({})),
                "post": op("distribute a profile to devices (admin)", "apiKey", json_body(json!({"type": "object", "properties": {"profile": {"type": "string"}, "devices": {"type": "array", "items": {"type": "string"}}}})))},
            "/api/v1/entries": {
                "get": op("search entries (Entry Criteria, tags; paged with limit and offset, or with the cursor after=0 then next; count=true counts) or look one up (value; detail=true adds each source's assertion and the history)", "apiKey", query(&["value", "detail", "ip", "domain", "exact", "url", "hash", "kind", "tag", "source", "limit", "offset", "after", "count"])),
                "post": op("add or update entries (producer)", "apiKey", json_body(add)),
                "delete": op("delete entries, or a source's assertions of them (producer)", "apiKey", json_body(entries))},
            "/api/v1/export": {"get": op("every matching entry, streamed (sms, jsonl, plain, csv, stix, suricata-*: docs/interchange.md)", "apiKey", query(&["format", "ip", "domain", "exact", "url", "hash", "kind", "tag", "source"]))},
            "/api/v1/import": {"post": op("import a file given as the body (producer)", "apiKey", query(&["type", "format", "strict", "source", "force"]))},
            "/api/v1/categories": {
                "get": op("tag categories", "apiKey", json!({})),
                "post": op("add a tag category (admin)", "apiKey", json_body(json!({"type": "object"})))},
            "/api/v1/keys": {
                "get": op("API keys (names and roles only)", "apiKey", json!({})),
                "post": op("create an API key (admin); answers the key once", "apiKey", json_body(json!({"type": "object", "properties": {"name": {"type": "string"}, "role": {"enum": ["admin", "producer", "read-only"]}}})))},
            "/api/v1/keys/{name}": {"delete": op("delete an API key (admin)", "apiKey", path_id("name"))},
            "/api/v1/users": {
                "get": op("the web console's users (names and roles; admin)", "apiKey", json!({})),
                "post": op("add a console user (admin); the password is stored as an argon2id hash", "apiKey", json_body(json!({"type": "object", "required": ["name", "role", "password"], "properties": {"name": {"type": "string"}, "role": {"enum": ["admin", "producer", "read-only"]}, "password": {"type": "string", "minLength": 12}}})))},
            "/api/v1/users/{name}": {
                "put": op("change a console user's role or password (admin); their sessions end", "apiKey", merge(path_id("name"), json_body(json!({"type": "object", "properties": {"role": {"enum": ["admin", "producer", "read-only"]}, "password": {"type": "string", "minLength": 12}}})))),
                "delete": op("delete a console user (admin)", "apiKey", path_id("name"))},
            "/api/v1/sync": {"get": op("the device's filter set: snapshot or delta, long-poll; NDJSON (docs/sync-protocol.md)", "deviceToken", query(&["cursor", "wait", "error"]))},
            "/api/v1/agent/report": {"post": op("a device's report: inventory and backend state (docs/agent.md)", "deviceToken", json_body(json!({"type": "object", "required": ["name", "model", "version", "backend"]})))},
            "/api/v1/agent/events": {"post": op("detection events of a device; the valid ones are kept, each invalid one answered with its index", "deviceToken", json_body(json!({"type": "object", "required": ["events"]})))},
            "/api/v1/events": {"get": op("detection events, oldest first; page with after", "apiKey", query(&["after", "limit", "device", "since", "until", "filter", "value", "action"]))},
            "/rpz/{file}": {"get": op("a profile's filter set as a DNS RPZ zone (<profile>.zone); key also as ?key=", "apiKey", merge(path_id("file"), query(&["key"])))},
            "/v1/decisions/stream": {
                "get": op("CrowdSec bouncer API: decisions of the bouncer's profile, {new, deleted}", "bouncerKey", query(&["startup", "scopes", "origins", "scenarios_containing", "scenarios_not_containing"])),
                "head": op("CrowdSec bouncer API: health check", "bouncerKey", json!({}))},
            "/v1/decisions": {
                "get": op("CrowdSec bouncer API: decisions that apply to an address or range, or null", "bouncerKey", query(&["ip", "range", "scope", "value"])),
                "head": op("CrowdSec bouncer API: health check", "bouncerKey", json!({}))}
        }
    });
    if let (Some(paths), Value::Object(more)) = (doc["paths"].as_object_mut(), sources_paths()) {
        paths.extend(more);
    }
    doc
}

/// Sources, the Vision One-compatible API and STIX push (a second `json!`: one would exceed the
/// macro's recursion limit).
fn sources_paths() -> Value {
    let source = json!({"type": "object", "required": ["kind", "name", "url"], "properties": {
        "kind": {"enum": ["visionone", "taxii", "feed"]}, "name": {"type": "string"}, "url": {"type": "string"},
        "enabled": {"type": "boolean"}, "interval_secs": {"type": "integer"}}});
    let items = json!({"type": "array", "items": {"type": "object"}});
    json!({
            "/api/v1/sources": {
                "get": op("threat-intelligence sources with their state (docs/sources.md)", "apiKey", json!({})),
                "post": op("create a source (admin): visionone, taxii or feed", "apiKey", json_body(source.clone()))},
            "/api/v1/sources/{name}": {
                "get": op("one source and its state", "apiKey", path_id("name")),
                "put": op("replace a source's config (admin); secrets given as ******** are kept; runs at once", "apiKey", merge(path_id("name"), json_body(source))),
                "delete": op("stop a source and withdraw what it brought (admin)", "apiKey", path_id("name"))},
            "/api/v1/sources/{name}/sync": {"post": op("run a source now (202); full=true reconciles", "apiKey", merge(path_id("name"), query(&["full"])))},
            "/api/v1/sources/{name}/test": {"post": op("test connectivity with the source's config; changes nothing", "apiKey", path_id("name"))},
            "/v3.0/healthcheck/connectivity": {"get": op("Vision One-compatible: connectivity", "apiKey", json!({}))},
            "/v3.0/threatintel/suspiciousObjects": {
                "get": op("Vision One-compatible: suspicious objects, paged by nextLink; header TMV1-Filter", "apiKey", query(&["top", "orderBy", "startDateTime", "endDateTime", "skipToken"])),
                "post": op("Vision One-compatible: add suspicious objects (producer); 207 per item", "apiKey", json_body(items.clone()))},
            "/v3.0/threatintel/suspiciousObjects/delete": {"post": op("Vision One-compatible: remove suspicious objects (producer); 207 per item", "apiKey", json_body(items.clone()))},
            "/v3.0/threatintel/suspiciousObjectExceptions": {
                "get": op("Vision One-compatible: the exception list, paged", "apiKey", query(&["top", "skipToken"])),
                "post": op("Vision One-compatible: add exceptions (producer); never distributed", "apiKey", json_body(items.clone()))},
            "/v3.0/threatintel/suspiciousObjectExceptions/delete": {"post": op("Vision One-compatible: remove exceptions (producer)", "apiKey", json_body(items.clone()))},
            "/taxii/feeds/collections/{id}/objects/": {"post": op("STIX 2.0/2.1 bundle push (producer), answered 202 with a TAXII status", "apiKey", merge(path_id("id"), json_body(json!({"type": "object", "required": ["type", "objects"]}))))},
            "/taxii/feeds/status/{id}/": {"get": op("the status resource of a STIX push", "apiKey", path_id("id"))},
            "/taxii2/": {"get": op("TAXII 2.1 discovery (docs/taxii-server.md)", "apiKey", json!({}))},
            "/misp/{id}/manifest.json": {"get": op("a MISP feed of all entries or of a profile's filter set (docs/interchange.md); events at /misp/{id}/<uuid>.json", "apiKey", path_id("id"))},
            "/taxii2/rephub/": {"get": op("the TAXII 2.1 API root", "apiKey", json!({}))},
            "/taxii2/rephub/collections/": {"get": op("TAXII collections: all, and one per profile (read-only; a device token sees its profile's)", "apiKey", json!({}))},
            "/taxii2/rephub/collections/{id}/objects/": {"get": op("STIX 2.1 indicators of a collection, paged by next; removals revoked", "apiKey", merge(path_id("id"), query(&["added_after", "limit", "next", "match[id]", "match[type]", "match[version]", "match[spec_version]"])))},
            "/taxii2/rephub/collections/{id}/manifest/": {"get": op("the manifest of a collection, paged like its objects", "apiKey", merge(path_id("id"), query(&["added_after", "limit", "next", "match[id]", "match[type]", "match[version]"])))},
            "/api/v1/targets": {
                "get": op("SMS-compatible targets the hub distributes to, with their state (docs/targets.md)", "apiKey", json!({})),
                "post": op("create a target (admin)", "apiKey", json_body(json!({"type": "object", "required": ["name", "address", "version"]})))},
            "/api/v1/target-tests": {"post": op("Test Connection with a target configuration before saving it (admin); nothing is stored", "apiKey", json_body(json!({"type": "object", "required": ["name", "address", "version"]})))},
            "/api/v1/targets/{name}": {
                "get": op("one target and its state", "apiKey", path_id("name")),
                "put": op("replace a target's config (admin); secrets given as ******** are kept; runs at once", "apiKey", merge(path_id("name"), json_body(json!({"type": "object"})))),
                "delete": op("remove a target (admin); purge=true deletes what it was sent from it first", "apiKey", merge(path_id("name"), query(&["purge"])))},
            "/api/v1/targets/{name}/run": {"post": op("distribute now (202)", "apiKey", path_id("name"))},
            "/api/v1/targets/{name}/test": {"post": op("Test Connection: reachability, credentials, tag categories", "apiKey", path_id("name"))},
            "/api/v1/targets/{name}/history": {"get": op("the target's runs, newest first", "apiKey", merge(path_id("name"), query(&["limit"])))},
            "/api/v1/enrollment-tokens": {
                "get": op("enrollment tokens and their status (admin)", "apiKey", json!({})),
                "post": op("a single-use enrollment token for a downstream hub, shown once (admin)", "apiKey", json_body(json!({"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}, "ttl_secs": {"type": "integer"}}})))},
            "/api/v1/enrollment-tokens/{id}": {"delete": op("revoke an unused enrollment token (admin)", "apiKey", path_id("id"))},
            "/api/v1/enroll": {"post": open_op("enroll a downstream hub: token and certificate signing request in, client certificate and CA out", json_body(json!({"type": "object", "required": ["token", "csr"], "properties": {"token": {"type": "string"}, "csr": {"type": "string"}, "address": {"type": "string"}}})))},
            "/api/v1/ca.pem": {"get": open_op("the enrollment CA certificate (public)", json!({}))},
            "/api/v1/downstreams": {"get": op("enrolled downstream hubs", "apiKey", json!({}))},
            "/api/v1/downstreams/{id}": {
                "delete": op("revoke a downstream hub (admin)", "apiKey", path_id("id")),
                "patch": op("grant a downstream hub features switched on from this side: sandbox URL analysis (admin)", "apiKey", json_body(json!({"type": "object", "required": ["sandbox_url_analysis"], "properties": {"sandbox_url_analysis": {"type": "boolean"}}})))},
            "/api/v1/downstream": {"get": open_op("a downstream's own record, read with its client certificate (mutual TLS)", json!({}))},
            "/api/v1/renew": {"post": open_op("renew a downstream's client certificate, authenticated by the current one (mutual TLS)", json_body(json!({"type": "object", "required": ["csr"], "properties": {"csr": {"type": "string"}}})))},
            "/api/v1/connection": {
                "get": op("this hub's connection to its upstream, and its status", "apiKey", json!({})),
                "put": op("connect (or reconnect) to an upstream with an enrollment token and its CA fingerprint (admin)", "apiKey", json_body(json!({"type": "object", "required": ["token", "ca_fingerprint"], "properties": {"upstream": {"type": "string"}, "token": {"type": "string"}, "ca_fingerprint": {"type": "string"}, "interval_secs": {"type": "integer"}, "sync_enabled": {"type": "boolean"}, "features": {"type": "object", "additionalProperties": {"type": "boolean"}}, "gateway": {"type": "object"}, "proxy": {"type": "object"}}}))),
                "patch": op("change the connection's settings without a token: interval, feature switches, gateway, proxy (admin)", "apiKey", json_body(json!({"type": "object", "properties": {"interval_secs": {"type": "integer"}, "sync_enabled": {"type": "boolean"}, "features": {"type": "object", "additionalProperties": {"type": "boolean"}}, "gateway": {"type": "object", "required": ["url"], "properties": {"enabled": {"type": "boolean"}, "url": {"type": "string"}, "api_key": {"type": "string"}}}, "proxy": {"type": "object", "required": ["url"], "properties": {"url": {"type": "string"}, "username": {"type": "string"}, "password": {"type": "string"}}}}}))),
                "delete": op("disconnect from the upstream, keeping what was synced (admin)", "apiKey", json!({}))},
            "/api/v1/connection/test": {"post": op("test connectivity of each enabled feature (admin)", "apiKey", json!({}))},
            "/api/v1/ips-filters": {"get": op("the IPS filter catalog (query in the seed's syntax: ^3316: , !13629; cve; technique; limit)", "apiKey", json!({}))},
            "/api/v1/ips-filters/import": {"post": op("import a Suricata rule file (text) or a JSON catalog {filters: [...]}; bad lines by number, the rest kept (admin)", "apiKey", json!({}))},
            "/api/v1/profiles/{id}/ips": {
                "get": op("a profile's state and action of each IPS filter (query, cve, technique)", "apiKey", path_id("id")),
                "patch": op("bulk edit a profile's IPS filters: {query|cve|technique, enabled?, action?} (admin)", "apiKey", path_id("id"))},
            "/api/v1/profiles/{id}/ips/distribute": {"post": op("distribute a profile's IPS policy to its devices (what filter status counts); shares filter status (admin)", "apiKey", path_id("id"))},
            "/api/v1/filter-status": {"get": op("every IPS filter: blocked on all, some or no distributed profiles, with its CVEs (cve, status, limit)", "apiKey", json!({}))},
            "/api/v1/shared/filter-status": {
                "get": op("each downstream's newest filter status (downstream, cve)", "apiKey", json!({})),
                "post": open_op("a downstream shares filter status: {statuses: [{key, status}]} (its client certificate, mutual TLS)", json_body(json!({"type": "object", "required": ["statuses"]})))},
            "/api/v1/inventory": {"get": op("policy and inventory now: devices, action sets, profiles, distributions", "apiKey", json!({}))},
            "/api/v1/shared/inventory": {
                "get": op("each downstream's newest policy and inventory (downstream)", "apiKey", json!({})),
                "post": open_op("a downstream shares policy and inventory: {inventories: [{key, inventory}]} (its client certificate, mutual TLS)", json_body(json!({"type": "object", "required": ["inventories"]})))},
            "/api/v1/downstreams/{id}/deployments": {
                "get": op("policy deployments asked of a downstream, with their status and result", "apiKey", path_id("id")),
                "post": op("ask a downstream to set IPS filters in a named profile and distribute it: {profile, query|cve|technique, enabled?, action?, distribute?} (admin)", "apiKey", path_id("id"))},
            "/api/v1/downstream/deployments": {"get": open_op("a downstream's pending policy deployments (its client certificate, mutual TLS)", json!({}))},
            "/api/v1/downstream/deployments/{id}": {"post": open_op("a downstream reports a deployment: {applied, filters, distributed, error?} (its client certificate)", json!({}))},
            "/api/v1/sharing": {"get": op("the sharing spool: limits, and per sink its depth, oldest record, delivered, retried, parked and dropped", "apiKey", json!({}))},
            "/api/v1/sharing/parked": {"get": op("records a receiver refused, with the reason (sink, limit)", "apiKey", json!({}))},
            "/api/v1/sharing/parked/replay": {"post": op("deliver parked records again: {sink, ids?} (admin)", "apiKey", json_body(json!({"type": "object", "required": ["sink"], "properties": {"sink": {"type": "string"}, "ids": {"type": "array", "items": {"type": "integer"}}}})))},
            "/api/v1/sharing/parked/discard": {"post": op("forget parked records: {sink, ids?} (admin)", "apiKey", json_body(json!({"type": "object", "required": ["sink"], "properties": {"sink": {"type": "string"}, "ids": {"type": "array", "items": {"type": "integer"}}}})))},
            "/api/v1/sharing/sinks/{name}/flush": {"post": op("deliver a sink's waiting records now (admin)", "apiKey", json!({}))},
            "/api/v1/shared/events": {
                "get": op("events downstream hubs shared (downstream, since, until, device, rule, cve, ip, after, limit)", "apiKey", json!({})),
                "post": open_op("a downstream shares events: {events: [{key, event}]} (its client certificate, mutual TLS)", json_body(json!({"type": "object", "required": ["events"]})))},
            "/api/v1/agent/telemetry": {"post": op("TLS handshakes a device saw: {records: [{id, tls}]}; the valid ones are kept once per device and id, each invalid one answered with its index, field and reason", "deviceToken", json_body(json!({"type": "object", "required": ["records"]})))},
            "/api/v1/shared/telemetry": {"post": open_op("a downstream shares TLS telemetry: {records: [{key, device, tls}]} (its client certificate, mutual TLS)", json_body(json!({"type": "object", "required": ["records"]})))},
            "/api/v1/sensor-rollouts": {
                "get": op("rolling enablements of the network sensor (kept in the database: the last 200 finished and every running one), with each device's step", "apiKey", json!({})),
                "post": op("switch the network sensor on (or off) on devices one at a time: {devices, enable?, sandbox?, timeout_secs?, min_free_mib?, silent_secs?} (admin); 202, runs in the background", "apiKey", json_body(json!({"type": "object", "required": ["devices"]})))},
            "/api/v1/sensor-rollouts/{id}": {"get": op("one rolling enablement: status, error, each device's step", "apiKey", json!({}))},
            "/api/v1/telemetry": {"get": op("TLS handshakes, in the order they arrived; page with after = next", "apiKey", query(&["after", "limit", "downstream", "device", "sni", "ja3", "ja4", "fingerprint", "since", "until"]))},
            "/api/v1/sandbox": {"get": op("sandbox analysis: enabled or not (and why), the analyzer, Submissions (Total / Reserve), counts per state, the last error, the own analyzer's rules", "apiKey", json!({}))},
            "/api/v1/sandbox/submissions": {
                "get": op("objects seen or submitted and what the analyzer said (object, status, submitter, submitted, sha1, risk_level, threat_type, threat_name), newest first; page with before = next", "apiKey", query(&["before", "limit", "status", "risk", "submitter", "q"])),
                "post": op("Submit Object: {urls: [...]} (producer); each kept once in canonical form, the bad ones answered with their index", "apiKey", json_body(json!({"type": "object", "required": ["urls"]})))},
            "/api/v1/sandbox/files/{sha256}": {"put": op("submit a file (producer): the body is the file, its SHA-256 the one named", "apiKey", json!({}))},
            "/api/v1/agent/files/{sha256}": {"put": op("a file the device's Suricata extracted, for sandbox analysis: the body is the file, its SHA-256 the one named", "deviceToken", json!({}))}
    })
}

fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Some(b)) = (a.as_object_mut(), b.as_object()) {
        for (k, v) in b {
            a.insert(k.clone(), v.clone());
        }
    }
    a
}
