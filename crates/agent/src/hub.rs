//! Talking to the hub: the sync long poll, reports and events (docs/sync-protocol.md).

use std::time::Duration;

use reqwest::StatusCode;

use crate::answer::{self, Answer, AnswerError};
use crate::events::{Event, Telemetry};

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("cannot reach the hub: {0}")]
    Transport(String),
    #[error("the hub refused the device token (401): the device was deleted or the token is wrong")]
    Unauthorized,
    #[error("the device has no profile yet (409)")]
    NoProfile,
    #[error("the hub answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("the hub's answer is unusable: {0}")]
    Garbage(#[from] AnswerError),
    #[error("the hub's IPS policy is unusable: {0}")]
    Policy(String),
}

#[derive(Debug, Clone)]
pub struct HubClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

fn transport(e: reqwest::Error) -> HubError {
    // Without the URL: it may hold query parameters; the token is a header and never printed.
    HubError::Transport(e.without_url().to_string())
}

impl HubClient {
    pub fn new(
        base: &str,
        token: String,
        insecure: bool,
        ca: Option<&std::path::Path>,
        wait: Duration,
    ) -> Result<HubClient, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut b = reqwest::Client::builder()
            .danger_accept_invalid_certs(insecure)
            .connect_timeout(Duration::from_secs(10))
            // A long poll lasts `wait`; a hub that says nothing for much longer is stuck.
            .read_timeout(wait + Duration::from_secs(60));
        if let Some(p) = ca {
            let pem = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| format!("{}: {e}", p.display()))?;
            b = b.add_root_certificate(cert);
        }
        let http = b.build().map_err(|e| e.to_string())?;
        Ok(HubClient {
            http,
            base: base.trim_end_matches('/').to_string(),
            token,
        })
    }

    async fn check(r: reqwest::Response) -> Result<reqwest::Response, HubError> {
        match r.status() {
            s if s.is_success() => Ok(r),
            StatusCode::UNAUTHORIZED => Err(HubError::Unauthorized),
            StatusCode::CONFLICT => Err(HubError::NoProfile),
            s => {
                let body: String = r
                    .text()
                    .await
                    .unwrap_or_default()
                    .chars()
                    .take(300)
                    .collect();
                Err(HubError::Status {
                    status: s.as_u16(),
                    body,
                })
            }
        }
    }

    /// One long poll: what changed after `cursor` (`None`: a snapshot).
    pub async fn sync(
        &self,
        cursor: Option<u64>,
        wait: u64,
        error: Option<&str>,
    ) -> Result<Answer, HubError> {
        let mut q: Vec<(&str, String)> = vec![("wait", wait.to_string())];
        if let Some(c) = cursor {
            q.push(("cursor", c.to_string()));
        }
        if let Some(e) = error {
            q.push(("error", e.chars().take(1000).collect()));
        }
        let asked = std::time::Instant::now();
        let r = self
            .http
            .get(format!("{}/api/v1/sync", self.base))
            .query(&q)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(transport)?;
        let r = Self::check(r).await?;
        let waited = asked.elapsed();
        let started = std::time::Instant::now();
        // Compressed on the wire (reqwest asks for gzip and decompresses).
        let body = r.bytes().await.map_err(transport)?;
        let received = started.elapsed();
        let answer = answer::parse(&body)?;
        if answer.snapshot {
            // Where a full load's time goes: the answer, its parse, then (logged after the load)
            // the matcher and the firewall.
            tracing::info!(bytes = body.len(), head = ?waited, receive = ?received, parse = ?(started.elapsed() - received), "received a snapshot");
        }
        Ok(answer)
    }

    /// The device's IPS policy; `None` when it is still `etag` (the version applied).
    pub async fn ips_policy(
        &self,
        etag: Option<&str>,
    ) -> Result<Option<crate::suricata::Policy>, HubError> {
        let mut r = self
            .http
            .get(format!("{}/api/v1/agent/ips", self.base))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(60));
        if let Some(v) = etag {
            r = r.header(reqwest::header::IF_NONE_MATCH, format!("\"{v}\""));
        }
        let r = r.send().await.map_err(transport)?;
        if r.status() == StatusCode::NOT_MODIFIED {
            return Ok(None);
        }
        let r = Self::check(r).await?;
        let body = r.bytes().await.map_err(transport)?;
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| HubError::Policy(e.to_string()))
    }

    /// Send the report; the hub's answer (it says what network sensor to run, once asked).
    pub async fn report(&self, report: &serde_json::Value) -> Result<serde_json::Value, HubError> {
        let r = self
            .http
            .post(format!("{}/api/v1/agent/report", self.base))
            .bearer_auth(&self.token)
            .json(report)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(transport)?;
        let r = Self::check(r).await?;
        Ok(r.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// Send events; the hub has all of them when this returns Ok (rejected ones are logged: they
    /// would be rejected again).
    pub async fn events(&self, events: &[Event]) -> Result<(), HubError> {
        self.send("/api/v1/agent/events", "events", events).await
    }

    /// Send a file for sandbox analysis (by its SHA-256). `Ok(false)`: the hub did not keep it
    /// (sandbox analysis is off there); it is not sent again either way.
    pub async fn file(&self, sha256: &str, data: Vec<u8>) -> Result<bool, HubError> {
        let r = self
            .http
            .put(format!("{}/api/v1/agent/files/{sha256}", self.base))
            .bearer_auth(&self.token)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(data)
            .timeout(Duration::from_secs(120))
            .send()
            .await
            .map_err(transport)?;
        let r = Self::check(r).await?;
        let v: serde_json::Value = r.json().await.unwrap_or(serde_json::Value::Null);
        Ok(v["kept"].as_bool().unwrap_or(false))
    }

    /// Send TLS telemetry, as [`HubClient::events`].
    pub async fn telemetry(&self, records: &[Telemetry]) -> Result<(), HubError> {
        self.send("/api/v1/agent/telemetry", "records", records)
            .await
    }

    async fn send<T: serde::Serialize>(
        &self,
        path: &str,
        key: &str,
        items: &[T],
    ) -> Result<(), HubError> {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&serde_json::json!({ key: items }))
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .map_err(transport)?;
        let r = Self::check(r).await?;
        let v: serde_json::Value = r.json().await.map_err(transport)?;
        if let Some(rej) = v["rejected"].as_array().filter(|a| !a.is_empty()) {
            tracing::warn!(path, rejected = %serde_json::Value::Array(rej.clone()), "the hub rejected records");
        }
        Ok(())
    }
}
