//! The upstream hub, over the connection (mutual TLS, the connection's route): `POST
//! /api/v1/shared/events` with `{"events": [{"key": …, "event": {…}}, …]}`, and `POST
//! /api/v1/shared/filter-status` with `{"statuses": [{"key": …, "status": {…}}]}`. The upstream keeps
//! each key once per downstream and answers which records it refused and why; those are parked,
//! the rest is confirmed. A refused certificate (revoked, not yet reconnected), an unreachable
//! upstream or a 5xx: the batch waits and is retried.

use reqwest::StatusCode;
use serde_json::Value;

use rephub_store::SpoolRecord;

use super::Outcome;
use crate::connection::client::{connected, reach};
use crate::sources::VisionOneSpec;
use crate::state::AppState;

/// The client of the last delivery that worked (its connection stays open between batches),
/// for the connection's settings it was made with; made again after any failure.
#[derive(Debug, Default)]
pub(crate) struct UpstreamSink {
    client: std::sync::Mutex<Option<(VisionOneSpec, reqwest::Client)>>,
}

impl UpstreamSink {
    async fn client(&self, spec: &VisionOneSpec) -> Result<reqwest::Client, String> {
        if let Some((s, c)) = &*self.lock() {
            if s == spec {
                return Ok(c.clone());
            }
        }
        let (client, _, _) =
            reach(spec, "/v3.0/healthcheck/connectivity", spec.timeout_secs).await?;
        *self.lock() = Some((spec.clone(), client.clone()));
        Ok(client)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(VisionOneSpec, reqwest::Client)>> {
        self.client.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) async fn deliver(
        &self,
        state: &AppState,
        stream: &str,
        records: &[SpoolRecord],
    ) -> Outcome {
        let out = self.send(state, stream, records).await;
        if matches!(out, Outcome::Retry(_)) {
            *self.lock() = None;
        }
        out
    }

    async fn send(&self, state: &AppState, stream: &str, records: &[SpoolRecord]) -> Outcome {
        let (path, list) = crate::sharing::upstream_path(stream);
        let spec = match connected(state).await {
            Ok(Some(s)) => s,
            Ok(None) => return Outcome::Retry("not connected to an upstream".into()),
            Err(e) => return Outcome::Retry(e.to_string()),
        };
        let client = match self.client(&spec).await {
            Ok(c) => c,
            Err(e) => return Outcome::Retry(e),
        };
        // The records are the envelopes' JSON already: joined, not parsed again.
        let mut body =
            Vec::with_capacity(records.iter().map(|r| r.payload.len() + 1).sum::<usize>() + 16);
        body.extend_from_slice(format!("{{\"{list}\":[").as_bytes());
        for (i, r) in records.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(&r.payload);
        }
        body.extend_from_slice(b"]}");
        let url = format!("{}{path}", spec.url);
        let resp = match client
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => {
                return Outcome::Retry(format!("{url}: {}", crate::http::client::error_text(&e)));
            }
        };
        let status = resp.status();
        let answer: Value = resp.json().await.unwrap_or(Value::Null);
        let message = answer["error"]["message"]
            .as_str()
            .unwrap_or("")
            .to_string();
        match status {
            s if s.is_success() => {
                let refused = answer["refused"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|r| {
                                let i = usize::try_from(r["index"].as_u64()?).ok()?;
                                let why = format!(
                                    "refused by the upstream: {}: {}",
                                    r["field"].as_str().unwrap_or("event"),
                                    r["message"].as_str().unwrap_or("invalid")
                                );
                                Some((i, why))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                Outcome::Delivered(refused)
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Outcome::Retry(format!(
                "the upstream refused this hub's certificate ({status}): revoked? connect again"
            )),
            StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS => {
                Outcome::Retry(format!("the upstream answered {status}"))
            }
            s if s.is_server_error() => {
                Outcome::Retry(format!("the upstream answered {status} {message}"))
            }
            // Any other 4xx: the upstream refuses the batch as such; every record is parked with
            // the reason, and can be replayed once the cause is fixed.
            _ => Outcome::Delivered(
                (0..records.len())
                    .map(|i| (i, format!("refused by the upstream ({status}): {message}")))
                    .collect(),
            ),
        }
    }
}
