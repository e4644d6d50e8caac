//! The agent against a misbehaving hub: garbage, truncated streams, outages, and a corrupt state
//! file. The hub here is a fake whose answers the test scripts; the agent is the real one (with
//! the check endpoint as its backend, so that what it enforces can be asked).
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rephub_agent::{AgentConfig, Backend};

#[derive(Default)]
struct Fake {
    /// What the next sync requests get: (status, body). The last one repeats.
    answers: Vec<(u16, String)>,
    /// Query strings of the sync requests seen.
    seen: Vec<std::collections::HashMap<String, String>>,
}

type Shared = Arc<Mutex<Fake>>;

async fn sync(
    State(f): State<Shared>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let (status, body) = {
        let mut f = f.lock().unwrap();
        f.seen.push(q);
        if f.answers.len() > 1 {
            f.answers.remove(0)
        } else {
            f.answers.first().cloned().unwrap_or((503, String::new()))
        }
    };
    // Do not spin: a real hub long-polls.
    tokio::time::sleep(Duration::from_millis(100)).await;
    (StatusCode::from_u16(status).unwrap(), body).into_response()
}

async fn fake_hub() -> (String, Shared) {
    let f: Shared = Arc::default();
    let app = Router::new()
        .route("/api/v1/sync", get(sync))
        .route("/api/v1/agent/report", post(|| async { "{}" }))
        .with_state(f.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    (format!("http://{addr}"), f)
}

fn script(f: &Shared, answers: &[(u16, &str)]) {
    f.lock().unwrap().answers = answers.iter().map(|(s, b)| (*s, b.to_string())).collect();
}

const SNAPSHOT: &str = "{\"cursor\": 5, \"snapshot\": true, \"upserts\": 1, \"deletes\": 0}\n\
{\"op\": \"upsert\", \"kind\": \"ipv4\", \"value\": \"203.0.113.0/24\", \"action\": \"block\", \"filter\": \"block High\"}\n";
const NOTHING: &str = "{\"cursor\": 5, \"snapshot\": false, \"upserts\": 0, \"deletes\": 0}\n";
const TRUNCATED: &str = "{\"cursor\": 6, \"snapshot\": false, \"upserts\": 2, \"deletes\": 0}\n\
{\"op\": \"upsert\", \"kind\": \"domain\", \"value\": \"evil.example\", \"action\": \"block\", \"filter\": \"f\"}\n";
const DELTA: &str = "{\"cursor\": 6, \"snapshot\": false, \"upserts\": 1, \"deletes\": 0}\n\
{\"op\": \"upsert\", \"kind\": \"domain\", \"value\": \"evil.example\", \"action\": \"block\", \"filter\": \"f\"}\n";

struct Agent {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    check: String,
}

impl Agent {
    async fn start(hub: &str, dir: &std::path::Path) -> Agent {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = AgentConfig {
            hub: hub.to_string(),
            token: Some("rhd_test".into()),
            data_dir: dir.to_path_buf(),
            backend: Backend::None,
            check_listen: Some(format!("127.0.0.1:{port}").parse().unwrap()),
            wait_secs: 1,
            max_backoff_secs: 1,
            ..AgentConfig::default()
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            rephub_agent::run(config, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Agent {
            stop: Some(tx),
            task,
            check: format!("http://127.0.0.1:{port}/check"),
        }
    }

    /// The action the check endpoint answers (waits for it to listen).
    async fn action(&self, query: &str) -> String {
        for _ in 0..50 {
            if let Ok(r) = reqwest::get(format!("{}?{query}", self.check)).await {
                let v: serde_json::Value = r.json().await.unwrap();
                return v["action"].as_str().unwrap().to_string();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the check endpoint does not answer");
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap();
    }
}

/// Wait (at most 10 s) until `f` holds.
async fn eventually(mut f: impl AsyncFnMut() -> bool) -> bool {
    for _ in 0..100 {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

fn cursors(f: &Shared) -> Vec<Option<String>> {
    f.lock()
        .unwrap()
        .seen
        .iter()
        .map(|q| q.get("cursor").cloned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_answers_change_nothing_and_state_survives() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (hub, f) = fake_hub().await;
    let dir = tempfile::tempdir().unwrap();
    script(&f, &[(200, SNAPSHOT), (200, NOTHING)]);
    let agent = Agent::start(&hub, dir.path()).await;
    assert!(eventually(async || agent.action("ip=203.0.113.7").await == "block").await);

    // Garbage, a 500 and a truncated stream: nothing applied, the agent asks again from cursor 5.
    script(
        &f,
        &[
            (200, "<html>proxy error</html>"),
            (500, "oops"),
            (200, TRUNCATED),
            (200, NOTHING),
        ],
    );
    let seen = f.lock().unwrap().seen.len();
    assert!(eventually(async || f.lock().unwrap().seen.len() >= seen + 4).await);
    assert_eq!(
        agent.action("domain=evil.example").await,
        "none",
        "the truncated delta was not applied"
    );
    assert_eq!(
        agent.action("ip=203.0.113.7").await,
        "block",
        "the last good set stays"
    );
    assert!(
        cursors(&f)[seen..]
            .iter()
            .all(|c| c.as_deref() == Some("5"))
    );

    // A good delta is applied and the cursor moves.
    script(&f, &[(200, DELTA), (200, &NOTHING.replace("5", "6"))]);
    assert!(eventually(async || agent.action("domain=www.evil.example").await == "block").await);
    assert!(eventually(async || cursors(&f).last().unwrap().as_deref() == Some("6")).await);
    agent.stop().await;

    // Restarted while the hub is down: it enforces from disk and asks from its cursor.
    script(&f, &[(503, "down")]);
    let agent = Agent::start(&hub, dir.path()).await;
    assert_eq!(agent.action("ip=203.0.113.200").await, "block");
    assert_eq!(agent.action("domain=evil.example").await, "block");
    assert!(eventually(async || cursors(&f).last().unwrap().as_deref() == Some("6")).await);
    agent.stop().await;

    // A corrupt state file: set aside (kept for inspection), the agent starts empty and asks for
    // a snapshot instead of trusting it.
    std::fs::write(
        dir.path().join("state/snapshot.ndjson"),
        "{\"cursor\": 6, \"snapshot\": true, \"upserts\": 3, \"deletes\": 0}\n{\"op\": \"ups",
    )
    .unwrap();
    let before = f.lock().unwrap().seen.len();
    let agent = Agent::start(&hub, dir.path()).await;
    assert_eq!(agent.action("ip=203.0.113.7").await, "none");
    assert!(dir.path().join("state/snapshot.ndjson.corrupt").exists());
    assert!(eventually(async || f.lock().unwrap().seen.len() > before).await);
    assert_eq!(
        f.lock().unwrap().seen[before].get("cursor"),
        None,
        "asks for a snapshot"
    );
    script(&f, &[(200, SNAPSHOT), (200, NOTHING)]);
    assert!(eventually(async || agent.action("ip=203.0.113.7").await == "block").await);
    agent.stop().await;

    // Malformed checks are answered 400.
    let agent = Agent::start(&hub, dir.path()).await;
    let _ = agent.action("ip=192.0.2.1").await;
    let r = reqwest::get(format!("{}?ip=300.1.1.1", agent.check))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = reqwest::get(format!("{}?ip=1.2.3.4&domain=x", agent.check))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = reqwest::get(format!("{}?sha256=abc", agent.check))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    agent.stop().await;
}
