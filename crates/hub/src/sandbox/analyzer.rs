//! The analyzers a hub submits to, behind one trait: Vision One's sandbox API over HTTP (Trend
//! Vision One itself with a token, or the connected upstream hub with this hub's certificate),
//! and this hub's own analyzer called in-process.

use serde_json::Value;

use rephub_store::SandboxStore;

use crate::sandbox::service::{self, Analysis, FAILED, LOCAL_ORIGIN, SUCCEEDED};
use crate::state::AppState;

/// The analyzer's daily reserve, as it reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Usage {
    pub(crate) reserve: u64,
    pub(crate) remaining: u64,
    pub(crate) count: u64,
    /// Files' own reserve where the analyzer keeps one (rephub's); else the one reserve.
    pub(crate) file_reserve: Option<u64>,
    pub(crate) file_remaining: u64,
}

/// What became of one submitted object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Sent {
    Accepted {
        task: String,
        sha1: Option<String>,
    },
    /// Over the daily reserve: try again another day.
    OverQuota(String),
    /// Refused for good (a URL the analyzer does not take).
    Refused(String),
    /// The analyzer could not take it now (a 5xx for this item): it waits for the next round.
    Later(String),
}

/// Where a task stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TaskState {
    Pending,
    Succeeded,
    /// Finished without an analysis; why.
    Failed(String),
}

/// A finished analysis, in the seed's columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// `high`, `medium`, `low`, `noRisk`.
    pub(crate) risk: String,
    pub(crate) threat_type: Option<String>,
    pub(crate) threat_name: Option<String>,
}

pub(crate) trait Analyzer {
    async fn usage(&self) -> Result<Usage, String>;
    /// At most [`service::MAX_PER_REQUEST`] URLs; one answer per URL, in order.
    async fn submit_urls(&self, urls: &[String]) -> Result<Vec<Sent>, String>;
    /// A file, named `name` (its SHA-256 when the name is not known).
    async fn submit_file(&self, name: &str, data: Vec<u8>) -> Result<Sent, String>;
    async fn state(&self, task: &str) -> Result<TaskState, String>;
    async fn outcome(&self, task: &str) -> Result<Outcome, String>;
}

/// Vision One's sandbox API at `base`.
#[derive(Debug, Clone)]
pub(crate) struct Remote {
    pub(crate) client: reqwest::Client,
    pub(crate) base: String,
    /// Bearer token (Vision One); none with a client certificate (the upstream hub).
    pub(crate) token: Option<String>,
    pub(crate) name: &'static str,
}

impl Remote {
    fn request(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> Result<reqwest::RequestBuilder, String> {
        let mut r = self.client.request(
            method,
            format!("{}/v3.0/sandbox{path}", self.base.trim_end_matches('/')),
        );
        if let Some(t) = &self.token {
            let h =
                crate::http::client::secret(&format!("Bearer {t}")).map_err(|e| e.to_string())?;
            r = r.header(reqwest::header::AUTHORIZATION, h);
        }
        Ok(r)
    }

    async fn get(&self, path: &str) -> Result<Value, String> {
        let resp = self
            .request(reqwest::Method::GET, path)?
            .send()
            .await
            .map_err(|e| format!("{}: {}", self.name, crate::http::client::error_text(&e)))?;
        crate::http::client::json(resp, self.name)
            .await
            .map(|(v, _)| v)
            .map_err(|e| e.to_string())
    }
}

fn count(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

fn message(v: &Value) -> String {
    v.pointer("/error/message")
        .or_else(|| v.pointer("/body/error/message"))
        .and_then(Value::as_str)
        .unwrap_or("refused")
        .to_string()
}

impl Remote {
    /// The usage, or `None` when the analyzer refuses this caller (403: an upstream that has
    /// not switched sandbox analysis on for this hub).
    pub(crate) async fn usage_if_granted(&self) -> Result<Option<Usage>, String> {
        let resp = self
            .request(reqwest::Method::GET, "/submissionUsage")?
            .send()
            .await
            .map_err(|e| format!("{}: {}", self.name, crate::http::client::error_text(&e)))?;
        self.usage_answer(resp).await
    }

    /// [`Remote::usage_if_granted`] of an answer already in hand (the upstream's, from the
    /// request that found its route).
    pub(crate) async fn usage_answer(
        &self,
        resp: reqwest::Response,
    ) -> Result<Option<Usage>, String> {
        if resp.status() == reqwest::StatusCode::FORBIDDEN {
            return Ok(None);
        }
        let (v, _) = crate::http::client::json(resp, self.name)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Some(usage_of(&v)))
    }
}

fn usage_of(v: &Value) -> Usage {
    let remaining = count(v, "submissionRemainingCount");
    Usage {
        reserve: count(v, "submissionReserveCount"),
        remaining,
        count: count(v, "submissionCount"),
        file_reserve: v.get("fileReserveCount").and_then(Value::as_u64),
        file_remaining: v
            .get("fileRemainingCount")
            .and_then(Value::as_u64)
            .unwrap_or(remaining),
    }
}

impl Analyzer for Remote {
    async fn usage(&self) -> Result<Usage, String> {
        Ok(usage_of(&self.get("/submissionUsage").await?))
    }

    async fn submit_urls(&self, urls: &[String]) -> Result<Vec<Sent>, String> {
        let body: Vec<Value> = urls.iter().map(|u| serde_json::json!({"url": u})).collect();
        let resp = self
            .request(reqwest::Method::POST, "/urls/analyze")?
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("{}: {}", self.name, crate::http::client::error_text(&e)))?;
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Ok(urls.iter().map(|_| Sent::OverQuota(message(&v))).collect());
        }
        if status != reqwest::StatusCode::MULTI_STATUS {
            return Err(format!(
                "{}: submitting: HTTP {status} {}",
                self.name,
                message(&v)
            ));
        }
        let items = v.as_array().cloned().unwrap_or_default();
        if items.len() != urls.len() {
            return Err(format!(
                "{}: {} answers to {} URLs",
                self.name,
                items.len(),
                urls.len()
            ));
        }
        Ok(items
            .iter()
            .map(|i| match i.get("status").and_then(Value::as_u64) {
                Some(200..=299) => {
                    let from_header = i
                        .get("headers")
                        .and_then(Value::as_array)
                        .and_then(|h| {
                            h.iter()
                                .find(|h| h["name"].as_str() == Some("Operation-Location"))
                        })
                        .and_then(|h| h["value"].as_str())
                        .and_then(|l| l.rsplit('/').next())
                        .map(str::to_string);
                    match i
                        .pointer("/body/id")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .or(from_header)
                    {
                        Some(task) => Sent::Accepted {
                            task,
                            sha1: i
                                .pointer("/body/digest/sha1")
                                .and_then(Value::as_str)
                                .map(str::to_string),
                        },
                        None => Sent::Refused("accepted without a task id".into()),
                    }
                }
                Some(429) => Sent::OverQuota(message(i)),
                Some(500..=599) => Sent::Later(message(i)),
                _ => Sent::Refused(message(i)),
            })
            .collect())
    }

    async fn submit_file(&self, name: &str, data: Vec<u8>) -> Result<Sent, String> {
        let part = reqwest::multipart::Part::bytes(data)
            .file_name(name.to_string())
            .mime_str("application/octet-stream")
            .map_err(|e| e.to_string())?;
        let form = reqwest::multipart::Form::new().part("file", part);
        let resp = self
            .request(reqwest::Method::POST, "/files/analyze")?
            .multipart(form)
            .send()
            .await
            .map_err(|e| format!("{}: {}", self.name, crate::http::client::error_text(&e)))?;
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        Ok(match status.as_u16() {
            200..=299 => match v.get("id").and_then(Value::as_str) {
                Some(id) => Sent::Accepted {
                    task: id.to_string(),
                    sha1: v
                        .pointer("/digest/sha1")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                },
                None => Sent::Refused("accepted without a task id".into()),
            },
            429 => Sent::OverQuota(message(&v)),
            400..=499 => Sent::Refused(message(&v)),
            _ => {
                return Err(format!(
                    "{}: submitting a file: HTTP {status} {}",
                    self.name,
                    message(&v)
                ));
            }
        })
    }

    async fn state(&self, task: &str) -> Result<TaskState, String> {
        let resp = self
            .request(reqwest::Method::GET, &format!("/tasks/{task}"))?
            .send()
            .await
            .map_err(|e| format!("{}: {}", self.name, crate::http::client::error_text(&e)))?;
        // A task the analyzer says it does not know (Vision One's NotFound, not any 404: a
        // wrong URL must not end every submission) is over: asked again, it would be asked
        // every round forever.
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            let v: Value = resp.json().await.unwrap_or(Value::Null);
            if v.pointer("/error/code").and_then(Value::as_str) == Some("NotFound") {
                return Ok(TaskState::Failed(format!(
                    "{}: the analyzer no longer knows task {task}: {}",
                    self.name,
                    message(&v)
                )));
            }
            return Err(format!(
                "{}: task {task}: HTTP 404 {}",
                self.name,
                message(&v)
            ));
        }
        let v = crate::http::client::json(resp, self.name)
            .await
            .map(|(v, _)| v)
            .map_err(|e| e.to_string())?;
        Ok(match v.get("status").and_then(Value::as_str) {
            Some("succeeded") => TaskState::Succeeded,
            Some("queued" | "running" | "pendingApproval") | None => TaskState::Pending,
            Some(other) => TaskState::Failed(
                v.pointer("/error/message")
                    .and_then(Value::as_str)
                    .map_or_else(|| other.to_string(), str::to_string),
            ),
        })
    }

    async fn outcome(&self, task: &str) -> Result<Outcome, String> {
        let v = self.get(&format!("/analysisResults/{task}")).await?;
        let first = |key: &str| {
            v.get(key)
                .and_then(Value::as_array)
                .and_then(|a| a.first())
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        Ok(Outcome {
            risk: v
                .get("riskLevel")
                .and_then(Value::as_str)
                .unwrap_or("noRisk")
                .to_string(),
            threat_type: first("threatTypes"),
            threat_name: first("detectionNames"),
        })
    }
}

/// This hub's own analyzer, called in-process.
#[derive(Debug, Clone)]
pub(crate) struct Local(pub(crate) AppState);

impl Local {
    async fn task(&self, id: &str) -> Result<rephub_store::SandboxTask, String> {
        let id = id.to_string();
        self.0
            .read(move |s| s.sandbox_task(&id))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "no such task".to_string())
    }
}

impl Analyzer for Local {
    async fn usage(&self) -> Result<Usage, String> {
        let (used, reserve, file_reserve) = service::usage(&self.0, LOCAL_ORIGIN)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Usage {
            reserve,
            remaining: reserve.saturating_sub(used.urls),
            count: used.urls + used.files,
            file_reserve: Some(file_reserve),
            file_remaining: file_reserve.saturating_sub(used.files),
        })
    }

    async fn submit_urls(&self, urls: &[String]) -> Result<Vec<Sent>, String> {
        let out = service::submit_urls(&self.0, LOCAL_ORIGIN, urls)
            .await
            .map_err(|e| e.to_string())?;
        Ok(out
            .into_iter()
            .map(|r| match r {
                Ok(t) => accepted(&t),
                Err(r) if r.status == 429 => Sent::OverQuota(r.message),
                Err(r) => Sent::Refused(r.message),
            })
            .collect())
    }

    async fn submit_file(&self, _name: &str, data: Vec<u8>) -> Result<Sent, String> {
        Ok(
            match service::submit_file(&self.0, LOCAL_ORIGIN, data)
                .await
                .map_err(|e| e.to_string())?
            {
                Ok(t) => accepted(&t),
                Err(r) if r.status == 429 => Sent::OverQuota(r.message),
                Err(r) => Sent::Refused(r.message),
            },
        )
    }

    async fn state(&self, task: &str) -> Result<TaskState, String> {
        let id = task.to_string();
        let found = self
            .0
            .read(move |s| s.sandbox_task(&id))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        // Not in this hub's own database (restored from an older backup): over, as Remote's.
        let Some(t) = found else {
            return Ok(TaskState::Failed(format!(
                "the analyzer no longer knows task {task}"
            )));
        };
        Ok(match t.status.as_str() {
            SUCCEEDED => TaskState::Succeeded,
            FAILED => TaskState::Failed(
                Analysis::of(&t)
                    .and_then(|a| a.error)
                    .unwrap_or_else(|| "failed".into()),
            ),
            _ => TaskState::Pending,
        })
    }

    async fn outcome(&self, task: &str) -> Result<Outcome, String> {
        let t = self.task(task).await?;
        let a = Analysis::of(&t).ok_or_else(|| "no analysis yet".to_string())?;
        Ok(Outcome {
            risk: a.risk_level.map_or("noRisk", |r| r.as_str()).to_string(),
            threat_type: a.threat_types.first().cloned(),
            threat_name: a.detection_names.first().cloned(),
        })
    }
}

fn accepted(t: &rephub_store::SandboxTask) -> Sent {
    Sent::Accepted {
        sha1: service::task_digest(t)["sha1"].as_str().map(str::to_string),
        task: t.id.clone(),
    }
}
