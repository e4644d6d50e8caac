//! Vision One's sandbox API (`/v3.0/sandbox/…`) served by this hub's own analyzer, for the
//! downstream hubs it has switched sandbox analysis on for (their certificate) and for API keys
//! (producer or admin): submit URLs, follow tasks, read results, suspicious objects found and
//! the daily reserve. Shapes as Vision One's (docs/notes/sandbox-research.md); the official SDK
//! `pytmv1` is tested against it. Every error uses the `{"error": {"code", "message"}}` envelope.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use axum_server::tls::TlsInfo;
use serde_json::{Value, json};

use rephub_store::{ConnectionStore, SandboxStore, SandboxTask};

use crate::http::auth::{Principal, Who, guard};
use crate::http::error::Dialect;
use crate::ingest::visionone::{V1Error, V1Result, base_url, items, multi};
use crate::keys::Role;
use crate::sandbox::service::{self, Analysis, FAILED, FILE, MAX_PER_REQUEST, SUCCEEDED};
use crate::state::AppState;
use crate::suspicious_object::datetime;

pub(crate) fn router(state: &AppState) -> Router<AppState> {
    let routes = Router::new()
        .route("/v3.0/sandbox/urls/analyze", post(analyze_urls))
        .route("/v3.0/sandbox/files/analyze", post(analyze_file))
        .route("/v3.0/sandbox/tasks/{id}", get(task))
        .route("/v3.0/sandbox/analysisResults/{id}", get(result))
        .route(
            "/v3.0/sandbox/analysisResults/{id}/suspiciousObjects",
            get(suspicious_objects),
        )
        .route("/v3.0/sandbox/submissionUsage", get(usage));
    guard(
        routes,
        state,
        Who::DownstreamOrUser(Role::Producer),
        Dialect::VisionOne,
    )
}

/// Who asks, as the reserve counts them; refused when the analyzer is off or the downstream
/// was not granted sandbox analysis.
async fn origin(state: &AppState, who: &Principal) -> V1Result<String> {
    if !state.config().sandbox.local.enabled {
        return Err(V1Error::new(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "this hub's sandbox analyzer is not enabled ([sandbox.local] enabled = true)",
        ));
    }
    match who {
        Principal::Downstream(d) => {
            let id = d.id;
            let granted = state
                .read(move |s| s.downstreams())
                .await??
                .into_iter()
                .any(|x| x.id == id && x.sandbox && x.revoked_at.is_none());
            if !granted {
                return Err(V1Error::new(
                    StatusCode::FORBIDDEN,
                    "AccessDenied",
                    "sandbox URL analysis is not switched on for this hub (PATCH /api/v1/downstreams/{id} on the upstream)",
                ));
            }
            Ok(format!("downstream:{}", d.name))
        }
        Principal::User(c) => Ok(format!("key:{}", c.name)),
        Principal::Device(..) => Err(V1Error::new(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "devices do not submit",
        )),
    }
}

async fn analyze_urls(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
    tls: Option<Extension<Arc<TlsInfo>>>,
    b: Bytes,
) -> V1Result<Response> {
    let origin = origin(&state, &who).await?;
    let list = items(&b)?;
    if list.len() > MAX_PER_REQUEST {
        return Err(V1Error::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            format!("at most {MAX_PER_REQUEST} URLs per request"),
        ));
    }
    // One answer per item, in order: those without a URL are refused alone.
    let mut urls = Vec::new();
    let mut slots = Vec::new();
    for v in &list {
        match v.get("url").and_then(Value::as_str) {
            Some(u) => {
                slots.push(Ok(urls.len()));
                urls.push(u.to_string());
            }
            None => slots.push(Err(v.to_string())),
        }
    }
    let answers = service::submit_urls(&state, &origin, &urls).await?;
    let base = base_url(&state, &headers, tls.is_some());
    let out = slots
        .into_iter()
        .map(|slot| match slot {
            Err(raw) => json!({"status": 400, "body": {"url": raw,
                "error": {"code": "BadRequest", "message": "an item needs \"url\": a string"}}}),
            Ok(i) => match &answers[i] {
                Ok(t) => json!({
                    "status": 202,
                    "headers": [{"name": "Operation-Location",
                                 "value": format!("{base}/v3.0/sandbox/tasks/{}", t.id)}],
                    "body": {"url": urls[i], "id": t.id, "digest": service::task_digest(t)},
                }),
                Err(r) => json!({"status": r.status, "body": {"url": urls[i],
                    "error": {"code": r.code, "message": r.message}}}),
            },
        })
        .collect();
    Ok(multi(out))
}

/// `multipart/form-data` with the file in `file` (as pytmv1 sends it; `documentPassword`,
/// `archivePassword` and `arguments` are accepted and not used) → 202 `{id, digest, arguments}`.
async fn analyze_file(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
    tls: Option<Extension<Arc<TlsInfo>>>,
    mut form: axum::extract::Multipart,
) -> V1Result<Response> {
    let origin = origin(&state, &who).await?;
    let mut data = None;
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| V1Error::bad(format!("the form: {e}")))?
    {
        if field.name() == Some("file") {
            let bytes = field
                .bytes()
                .await
                .map_err(|e| V1Error::bad(format!("the file: {e}")))?;
            data = Some(bytes.to_vec());
        }
    }
    let data = data.ok_or_else(|| V1Error::bad("no `file` in the form"))?;
    match service::submit_file(&state, &origin, data).await? {
        Ok(t) => {
            let base = base_url(&state, &headers, tls.is_some());
            let location = format!("{base}/v3.0/sandbox/tasks/{}", t.id);
            Ok((
                StatusCode::ACCEPTED,
                [("Operation-Location", location)],
                Json(json!({"id": t.id, "digest": service::task_digest(&t), "arguments": ""})),
            )
                .into_response())
        }
        Err(r) => Err(V1Error::new(
            StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST),
            r.code,
            r.message,
        )),
    }
}

async fn find(state: &AppState, id: String) -> V1Result<SandboxTask> {
    state
        .read(move |s| s.sandbox_task(&id))
        .await??
        .ok_or_else(|| V1Error::new(StatusCode::NOT_FOUND, "NotFound", "no such task"))
}

async fn task(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
    tls: Option<Extension<Arc<TlsInfo>>>,
    Path(id): Path<String>,
) -> V1Result<Json<Value>> {
    origin(&state, &who).await?;
    let t = find(&state, id).await?;
    let base = base_url(&state, &headers, tls.is_some());
    let mut v = json!({
        "id": t.id,
        "action": if t.kind == FILE { "analyzeFile" } else { "analyzeUrl" },
        "status": t.status,
        "createdDateTime": datetime(t.created_at),
        "lastActionDateTime": datetime(t.updated_at),
        "isCached": t.cached,
        "digest": service::task_digest(&t),
        "arguments": "",
    });
    if t.status == SUCCEEDED {
        v["resourceLocation"] = format!("{base}/v3.0/sandbox/analysisResults/{}", t.id).into();
    }
    if t.status == FAILED {
        let why = Analysis::of(&t)
            .and_then(|a| a.error)
            .unwrap_or_else(|| "not analysed".into());
        v["error"] = json!({"code": "Unsupported", "message": why});
    }
    Ok(Json(v))
}

/// The task's analysis, once it succeeded.
async fn analysis(
    state: &AppState,
    who: &Principal,
    id: String,
) -> V1Result<(SandboxTask, Analysis)> {
    origin(state, who).await?;
    let t = find(state, id).await?;
    match (t.status.as_str(), Analysis::of(&t)) {
        (SUCCEEDED, Some(a)) if a.risk_level.is_some() => Ok((t, a)),
        _ => Err(V1Error::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("no analysis result: the task is {}", t.status),
        )),
    }
}

async fn result(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> V1Result<Json<Value>> {
    let (t, a) = analysis(&state, &who, id).await?;
    Ok(Json(json!({
        "id": t.id,
        "type": t.kind,
        "digest": service::task_digest(&t),
        "arguments": "",
        "analysisCompletionDateTime": datetime(a.completed_at),
        "riskLevel": a.risk_level.map_or("noRisk", |r| r.as_str()),
        "detectionNames": a.detection_names,
        "threatTypes": a.threat_types,
        "trueFileType": a.true_file_type,
        // rephub's own: what the fetch saw.
        "redirectChain": a.report.chain,
        "finalUrl": a.report.final_url,
        "contentType": a.report.content_type,
        "contentSha1": a.report.sha1,
        "contentBytes": a.report.bytes,
        "truncated": a.report.truncated,
    })))
}

async fn suspicious_objects(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> V1Result<Json<Value>> {
    let (t, a) = analysis(&state, &who, id).await?;
    let root = service::task_digest(&t)["sha1"].clone();
    let items: Vec<Value> = a
        .suspicious
        .iter()
        .map(|o| {
            // A file's objects are its SHA-256 and SHA-1; a URL's are URLs.
            let key = match (t.kind.as_str(), o.len()) {
                (FILE, 64) => "fileSha256",
                (FILE, _) => "fileSha1",
                _ => "url",
            };
            json!({
                "riskLevel": "high",
                "analysisCompletionDateTime": datetime(a.completed_at),
                "expiredDateTime": a.expires_at.map(datetime),
                "rootSha1": root,
                key: o,
            })
        })
        .collect();
    Ok(Json(json!({ "items": items })))
}

async fn usage(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
) -> V1Result<Json<Value>> {
    let origin = origin(&state, &who).await?;
    let (u, reserve, file_reserve) = service::usage(&state, &origin).await?;
    let count = u.urls + u.files;
    Ok(Json(json!({
        // The reserve of URLs (Vision One counts one reserve; rephub keeps files apart, below).
        "submissionReserveCount": reserve,
        "submissionRemainingCount": reserve.saturating_sub(u.urls),
        "submissionCount": count,
        "submissionExemptionCount": u.url_exemptions + u.file_exemptions,
        "submissionCountDetail": {
            "fileCount": u.files,
            "fileExemptionCount": u.file_exemptions,
            "urlCount": u.urls,
            "urlExemptionCount": u.url_exemptions,
        },
        // rephub's own: the reserve of files (daily_file_reserve).
        "fileReserveCount": file_reserve,
        "fileRemainingCount": file_reserve.saturating_sub(u.files),
    })))
}
