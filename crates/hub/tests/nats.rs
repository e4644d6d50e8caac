//! The NATS JetStream sink against a real nats-server (`.ci/run` installs it; without it each test
//! prints "SKIPPED: nats-server not installed" past the output capture): agents' events reach the
//! stream once each and a SIEM's pull consumer reads them with their keys; a broker killed with
//! SIGKILL and started again loses nothing it acknowledged, and nothing that waited in the spool
//! meanwhile; an upstream passes what its downstreams share to the broker as well as keeping it;
//! bad configurations are refused with a message that names the problem.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;
#[path = "peers/nats.rs"]
mod nats;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull};
use common::{Hub, connect, device};
use nats::NatsServer;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_stream::StreamExt as _;

const STREAM: &str = "REPHUB";

/// Events as an agent sends them: ids `ids`, each with `hits` = its id.
fn events(ids: std::ops::Range<i64>) -> Value {
    let at = common::now();
    let list: Vec<Value> = ids
        .map(|i| {
            json!({"id": i, "kind": "ipv4", "value": format!("203.0.113.{}", i % 250),
                   "action": "block", "filter": "block High", "hits": i,
                   "first_seen": at - 5, "last_seen": at})
        })
        .collect();
    json!({ "events": list })
}

async fn post_events(h: &Hub, token: &str, ids: std::ops::Range<i64>) {
    let (s, v) = h
        .call("POST", "/api/v1/agent/events", token, Some(events(ids)))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

/// A nats sink as `[[sharing.sinks]]` has it.
fn sink(broker: &NatsServer, streams: &[&str]) -> rephub_hub::SinkSpec {
    serde_json::from_value(
        json!({"kind": "nats", "name": "broker", "servers": [broker.url()],
        "stream": STREAM, "subject_prefix": "rephub", "streams": streams, "batch_secs": 1,
        "timeout_secs": 2}),
    )
    .unwrap()
}

/// A hub whose nats sink takes its agents' events, and the token of a device `fw1` on it.
async fn hub_to_broker(broker: &NatsServer) -> (Hub, String) {
    let h = Hub::start_with(|c, _| {
        c.tls = false;
        c.sharing.sinks = vec![sink(broker, &["events"])];
    })
    .await;
    let token = device(&h, "fw1").await;
    (h, token)
}

/// `branch-1`, a downstream of `up` that shares every second, 25 records a batch at most, and
/// the token of a device `fw1` on it.
async fn downstream_of(up: &Hub) -> (Hub, String) {
    let down = Hub::start_with(|c, _| {
        c.tls = false;
        c.sharing.upstream_batch_secs = 1;
        c.sharing.telemetry_batch_secs = 1;
        c.sharing.upstream_batch_max = 25;
    })
    .await;
    connect(up, &down, "branch-1").await;
    let token = device(&down, "fw1").await;
    (down, token)
}

/// The sink's status for `stream`.
fn status(sharing: &Value, stream: &str) -> Value {
    sharing["sinks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["sink"] == "broker" && s["stream"] == stream)
        .cloned()
        .unwrap_or(Value::Null)
}

/// Waits (bounded) until the sink has handed everything of `stream` to the broker and had it
/// acknowledged.
async fn drained(h: &Hub, stream: &str, delivered: u64) -> Value {
    h.wait_until("/api/v1/sharing", "the broker sink drained", |v| {
        let s = status(v, stream);
        s["depth"] == 0 && s["delivered"].as_u64() == Some(delivered)
    })
    .await
}

/// A message as a SIEM sees it.
#[derive(Debug)]
struct Got {
    subject: String,
    headers: BTreeMap<String, String>,
    body: Value,
}

/// Everything the stream holds, read as a SIEM would: a durable pull consumer of its own with
/// explicit acks, fetching until it has read as many messages as the stream holds.
async fn consume(broker: &NatsServer, consumer: &str) -> Vec<Got> {
    let js = jetstream::new(async_nats::connect(broker.url()).await.unwrap());
    let mut stream = js.get_stream(STREAM).await.unwrap();
    let held = stream.info().await.unwrap().state.messages;
    let c = stream
        .create_consumer(pull::Config {
            durable_name: Some(consumer.into()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..100 {
        if got.len() as u64 >= held {
            break;
        }
        let mut batch = c
            .fetch()
            .max_messages(1000)
            .expires(Duration::from_millis(500))
            .messages()
            .await
            .unwrap();
        while let Some(m) = batch.next().await {
            let m = m.unwrap();
            let headers = m
                .headers
                .iter()
                .flat_map(|h| h.iter())
                .map(|(n, v)| (n.to_string(), v[0].as_str().to_string()))
                .collect();
            got.push(Got {
                subject: m.subject.to_string(),
                headers,
                body: serde_json::from_slice(&m.payload).unwrap(),
            });
            m.ack().await.unwrap();
        }
    }
    assert_eq!(got.len() as u64, held, "read everything the stream holds");
    got
}

/// The number of messages the stream holds.
async fn held(broker: &NatsServer) -> u64 {
    let js = jetstream::new(async_nats::connect(broker.url()).await.unwrap());
    js.get_stream(STREAM)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .messages
}

/// Every message has its key, and each (subject, key) is there once: those.
fn once_each(got: &[Got]) -> BTreeSet<(String, String)> {
    let mut keys = BTreeSet::new();
    for g in got {
        let key = g.body["key"].as_str().unwrap().to_string();
        assert_eq!(g.headers.get("Rephub-Key"), Some(&key), "{g:?}");
        assert!(keys.insert((g.subject.clone(), key)), "a key twice: {g:?}");
    }
    keys
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_events_reach_jetstream_once_each_and_a_siem_reads_them() {
    let Some(broker) = NatsServer::start("agent_events_reach_jetstream_once_each") else {
        return;
    };
    let (h, token) = hub_to_broker(&broker).await;
    post_events(&h, &token, 1..51).await;
    // The agent sends the batch again (a lost answer): spooled once, published once.
    post_events(&h, &token, 1..51).await;
    post_events(&h, &token, 51..76).await;
    drained(&h, "events", 75).await;

    let got = consume(&broker, "siem").await;
    assert_eq!(got.len(), 75);
    let keys = once_each(&got);
    assert_eq!(keys.len(), 75);
    let hits: u64 = got
        .iter()
        .map(|g| {
            assert_eq!(g.subject, "rephub.events");
            assert_eq!(g.headers["Rephub-Stream"], "events");
            assert_eq!(
                g.headers["Nats-Msg-Id"],
                format!("events/{}", g.body["key"].as_str().unwrap())
            );
            assert_eq!(g.body["event"]["dvchost"], "fw1");
            g.body["event"]["aggregatedCount"]
                .as_str()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    assert_eq!(hits, (1..76).sum::<u64>(), "every event, each once");
    // The same as the hub's own events and as a file sink would have them.
    let local = h.get("/api/v1/events?limit=1000").await;
    assert_eq!(local["events"].as_array().unwrap().len(), 75);

    // The stream the sink made: file storage, the prefix's subjects, a duplicate window.
    let js = jetstream::new(async_nats::connect(broker.url()).await.unwrap());
    let mut stream = js.get_stream(STREAM).await.unwrap();
    let info = stream.info().await.unwrap().clone();
    assert_eq!(info.config.subjects, ["rephub.>"]);
    assert_eq!(
        info.config.storage,
        jetstream::stream::StorageType::File,
        "{info:?}"
    );
    assert_eq!(info.config.duplicate_window, Duration::from_secs(120));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_killed_and_restarted_loses_nothing_it_acknowledged() {
    let Some(mut broker) = NatsServer::start("a_broker_killed_and_restarted_loses_nothing") else {
        return;
    };
    let (h, token) = hub_to_broker(&broker).await;
    post_events(&h, &token, 1..41).await;
    drained(&h, "events", 40).await;
    assert_eq!(held(&broker).await, 40);

    // SIGKILL: whatever the broker acknowledged must survive it.
    broker.kill9();
    for batch in [41..61, 61..91, 91..121] {
        post_events(&h, &token, batch).await;
    }
    // The sink retries; the spool keeps everything the broker did not acknowledge.
    let st = h
        .wait_until("/api/v1/sharing", "a failed delivery", |v| {
            status(v, "events")["retried"].as_u64() >= Some(1) && status(v, "events")["depth"] == 80
        })
        .await;
    let s = status(&st, "events");
    assert_eq!(s["delivered"], 40, "{st}");
    assert!(s["last_error"].as_str().unwrap().contains("NATS"), "{st}");

    // Back on the same port and store: the 40 acknowledged are there, the 80 waiting arrive.
    broker.up();
    drained(&h, "events", 120).await;
    let got = consume(&broker, "siem").await;
    let keys = once_each(&got);
    assert_eq!(keys.len(), 120, "each of the 120 records once");
    let hits: u64 = got
        .iter()
        .map(|g| {
            g.body["event"]["aggregatedCount"]
                .as_str()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    assert_eq!(hits, (1..121).sum::<u64>());

    // A batch the sink sends again (a PubAck lost to a crash or a timeout) carries the same
    // Nats-Msg-Ids, and the broker keeps the first copy only.
    let js = jetstream::new(async_nats::connect(broker.url()).await.unwrap());
    let again = &got[7];
    let ack = js
        .send_publish(
            again.subject.clone(),
            jetstream::message::PublishMessage::build()
                .message_id(&again.headers["Nats-Msg-Id"])
                .payload(serde_json::to_vec(&again.body).unwrap().into()),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(ack.duplicate, "{ack:?}");
    assert_eq!(held(&broker).await, 120);
}

/// A TLS handshake as an agent reports it.
fn handshake(id: i64, at_ms: i64) -> Value {
    json!({"id": id, "tls": {"at_ms": at_ms, "dst": "192.0.2.10", "dpt": 443,
        "sni": format!("h{id}.example"), "version": "TLS 1.3"}})
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_passes_what_downstreams_share_to_the_broker_and_keeps_it() {
    let Some(broker) = NatsServer::start("an_upstream_passes_what_downstreams_share") else {
        return;
    };
    let up = Hub::start_with(|c, _| {
        c.sharing.sinks = vec![sink(
            &broker,
            &["events", "received_events", "received_telemetry"],
        )];
    })
    .await;
    let (down, token) = downstream_of(&up).await;
    post_events(&down, &token, 1..61).await;
    let now_ms = common::now() * 1000;
    let records: Vec<Value> = (1..31).map(|i| handshake(i, now_ms + i)).collect();
    let (s, v) = down
        .call(
            "POST",
            "/api/v1/agent/telemetry",
            &token,
            Some(json!({ "records": records })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");

    // On the upstream: kept in its store, and handed to the broker.
    drained(&up, "received_events", 60).await;
    drained(&up, "received_telemetry", 30).await;
    let kept = up.get("/api/v1/shared/events?limit=1000").await;
    assert_eq!(kept["events"].as_array().unwrap().len(), 60);
    let kept = up
        .get("/api/v1/telemetry?downstream=branch-1&limit=1000")
        .await;
    assert_eq!(kept["records"].as_array().unwrap().len(), 30);

    let got = consume(&broker, "lake").await;
    let keys = once_each(&got);
    assert_eq!(keys.len(), 90);
    let (events, telemetry): (Vec<&Got>, Vec<&Got>) = got
        .iter()
        .partition(|g| g.subject == "rephub.received_events");
    assert_eq!(events.len(), 60);
    assert_eq!(telemetry.len(), 30);
    for g in &events {
        assert_eq!(g.body["downstream"], "branch-1", "{g:?}");
        assert_eq!(g.body["event"]["dvchost"], "fw1");
        assert_eq!(g.headers["Rephub-Downstream"], "branch-1");
        assert_eq!(
            g.headers["Nats-Msg-Id"],
            format!(
                "received_events/branch-1/{}",
                g.body["key"].as_str().unwrap()
            )
        );
    }
    for g in &telemetry {
        assert_eq!(g.subject, "rephub.received_telemetry");
        assert_eq!(g.body["device"], "fw1");
        assert!(g.body["tls"]["sni"].as_str().unwrap().ends_with(".example"));
    }
    // The keys are the downstream's: the ones its upstream keeps.
    let stored: BTreeSet<String> = up.get("/api/v1/shared/events?limit=1000").await["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap().to_string())
        .collect();
    let published: BTreeSet<String> = events
        .iter()
        .map(|g| g.body["key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(stored, published);
}

#[test]
fn bad_nats_configurations_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let refused = |sink: &str| {
        let path = dir.path().join("rephub.toml");
        std::fs::write(
            &path,
            format!("[[sharing.sinks]]\nkind = \"nats\"\nname = \"broker\"\n{sink}\n"),
        )
        .unwrap();
        rephub_hub::Config::load(Some(&path))
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let ok = "servers = [\"nats://127.0.0.1:4222\"]\nstream = \"REPHUB\"";
    let e = refused("servers = []\nstream = \"REPHUB\"");
    assert!(e.contains("servers: at least one nats:// URL"), "{e}");
    let e = refused("servers = [\"http://broker:4222\"]\nstream = \"REPHUB\"");
    assert!(
        e.contains("servers[0]") && e.contains("not a nats://"),
        "{e}"
    );
    let e = refused("servers = [\"nats://\"]\nstream = \"REPHUB\"");
    assert!(e.contains("servers[0]"), "{e}");
    // Credentials in a URL: refused, and not repeated in the message.
    let e = refused("servers = [\"nats://siem:hunter2@broker:4222\"]\nstream = \"REPHUB\"");
    assert!(e.contains("password_file") && !e.contains("hunter2"), "{e}");
    let e = refused("servers = [\"nats://127.0.0.1:4222\"]\nstream = \"\"");
    assert!(
        e.contains("stream \"\"") && e.contains("JetStream stream name"),
        "{e}"
    );
    let e = refused("servers = [\"nats://127.0.0.1:4222\"]\nstream = \"a.b\"");
    assert!(e.contains("stream \"a.b\""), "{e}");
    let e = refused(&format!("{ok}\nsubject_prefix = \"rephub.*\""));
    assert!(e.contains("subject_prefix"), "{e}");
    let e = refused(&format!("{ok}\nuser = \"siem\""));
    assert!(e.contains("user needs password_file"), "{e}");
    let e = refused(&format!("{ok}\npassword = \"hunter2\""));
    assert!(
        e.contains("password"),
        "a literal secret is not a field: {e}"
    );
    let e = refused(&format!("{ok}\nstreams = [\"alerts\"]"));
    assert!(e.contains("unknown stream \"alerts\""), "{e}");
    // What a good one looks like, with every stream an upstream can pass on.
    let path = dir.path().join("good.toml");
    std::fs::write(
        &path,
        format!(
            "[[sharing.sinks]]\nkind = \"nats\"\nname = \"broker\"\n{ok}\ntoken_file = \"/etc/rephub/nats.token\"\nstreams = [\"events\", \"telemetry\", \"received_events\", \"received_telemetry\"]\n"
        ),
    )
    .unwrap();
    let c = rephub_hub::Config::load(Some(&path)).unwrap();
    assert_eq!(c.sharing.sinks.len(), 1);
}

/// The upstream's spool cannot take what a downstream sends (full, `block`): the downstream is
/// refused (503) and nothing is kept or acknowledged, so nothing can be in the store without
/// being on its way to the broker; it sends again, and once there is room everything arrives in
/// both, once.
#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_whose_spool_is_full_refuses_and_the_downstream_sends_again() {
    let Some(broker) = NatsServer::start("an_upstream_whose_spool_is_full_refuses") else {
        return;
    };
    let mut up = Hub::start_with(|c, _| {
        c.sharing.spool_max_records = 10;
        c.sharing.sinks = vec![sink(&broker, &["received_events"])];
    })
    .await;
    // The same HTTPS port after a restart: the downstream's settings name it.
    up.config.tls_listen = up.hub.as_ref().unwrap().tls_addr.unwrap();
    let (down, token) = downstream_of(&up).await;
    post_events(&down, &token, 1..61).await;

    let upstream = |v: &Value| {
        v["sinks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["sink"] == "upstream" && s["stream"] == "events")
            .cloned()
            .unwrap_or(Value::Null)
    };
    let st = down
        .wait_until("/api/v1/sharing", "refused by the upstream", |v| {
            upstream(v)["retried"].as_u64() >= Some(2)
        })
        .await;
    let s = upstream(&st);
    assert_eq!(s["depth"], 60, "{st}");
    assert_eq!(
        s["parked"], 0,
        "a full spool is not a refusal of the records: {st}"
    );
    assert!(s["last_error"].as_str().unwrap().contains("503"), "{st}");
    let kept = up.get("/api/v1/shared/events?limit=1000").await;
    assert_eq!(kept["events"].as_array().unwrap().len(), 0, "{kept}");

    // Room again: everything arrives, in the upstream's store and in the broker, each once.
    up.config.sharing.spool_max_records = 10_000_000;
    up.restart().await;
    drained(&up, "received_events", 60).await;
    down.wait_until("/api/v1/sharing", "delivered upstream", |v| {
        upstream(v)["depth"] == 0
    })
    .await;
    let kept = up.get("/api/v1/shared/events?limit=1000").await;
    assert_eq!(kept["events"].as_array().unwrap().len(), 60);
    let got = consume(&broker, "siem").await;
    assert_eq!(once_each(&got).len(), 60);
}

/// A CA and a certificate for 127.0.0.1 signed by it, as PEM: (CA, certificate, key).
fn tls_files() -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_pem, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    (ca_pem, cert.pem(), key.serialize_pem())
}

/// The sink's connection settings, as `[[sharing.sinks]]` has them, with `extra` added.
fn secured_sink(url: String, extra: Value) -> rephub_hub::SinkSpec {
    let mut v = json!({"kind": "nats", "name": "broker", "servers": [url], "stream": STREAM,
        "subject_prefix": "rephub", "streams": ["events"], "batch_secs": 1, "timeout_secs": 2});
    v.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    serde_json::from_value(v).unwrap()
}

/// Waits (bounded) until the sink reports an error that says `word` (the last error is kept
/// over a restart: an earlier one does not count), and returns it.
async fn sink_error(h: &Hub, word: &str) -> String {
    let st = h
        .wait_until("/api/v1/sharing", "the sink reports the error", |v| {
            status(v, "events")["last_error"]
                .as_str()
                .is_some_and(|e| e.to_lowercase().contains(word))
        })
        .await;
    let s = status(&st, "events");
    assert_eq!(s["delivered"], 0, "{st}");
    assert_eq!(s["depth"], 5, "kept in the spool meanwhile: {st}");
    s["last_error"].as_str().unwrap().to_lowercase()
}

/// A broker that requires TLS and a user and password: the sink connects with the CA and the
/// password from their files; a wrong password, or no CA for the broker's certificate, is an
/// error the sink's status names while the records wait in the spool; once mended, they arrive.
#[tokio::test(flavor = "multi_thread")]
async fn a_broker_that_requires_tls_and_a_password() {
    let (ca, cert, key) = tls_files();
    let Some(broker) = NatsServer::start_with("a_broker_that_requires_tls_and_a_password", |dir| {
        std::fs::write(dir.join("cert.pem"), &cert).unwrap();
        std::fs::write(dir.join("key.pem"), &key).unwrap();
        format!(
            "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n}}\n\
             authorization {{\n  user: rephub\n  password: \"correct horse\"\n}}\n",
            dir.join("cert.pem").display(),
            dir.join("key.pem").display()
        )
    }) else {
        return;
    };
    let files = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = files.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let (ca_file, good, bad) = (
        write("ca.pem", &ca),
        write("good.pw", "correct horse\n"),
        write("bad.pw", "wrong horse\n"),
    );
    let url = format!("tls://127.0.0.1:{}", broker.port);
    let settings = |pw: &std::path::Path, ca: Option<&std::path::Path>| {
        let mut extra = json!({"user": "rephub", "password_file": pw, "tls": true});
        if let Some(ca) = ca {
            extra["ca_file"] = json!(ca);
        }
        secured_sink(url.clone(), extra)
    };

    // A wrong password: refused by the broker, said so; the records wait.
    let wrong = settings(&bad, Some(&ca_file));
    let mut h = Hub::start_with(move |c, _| {
        c.tls = false;
        c.sharing.sinks = vec![wrong];
    })
    .await;
    let token = device(&h, "fw1").await;
    post_events(&h, &token, 1..6).await;
    let e = sink_error(&h, "authorization").await;
    assert!(!e.contains("wrong horse"), "never shows the secret: {e}");

    // The right password but no CA for the broker's certificate (the system's roots).
    h.config.sharing.sinks = vec![settings(&good, None)];
    h.restart().await;
    sink_error(&h, "certificate").await;

    // Both right: everything that waited arrives.
    h.config.sharing.sinks = vec![settings(&good, Some(&ca_file))];
    h.restart().await;
    drained(&h, "events", 5).await;
    let log = broker.log();
    assert!(log.contains("TLS"), "the broker speaks TLS: {log}");
}

/// A broker that requires a token: a wrong one is refused and said so, the right one delivers.
#[tokio::test(flavor = "multi_thread")]
async fn a_broker_that_requires_a_token() {
    let Some(broker) = NatsServer::start_with("a_broker_that_requires_a_token", |_| {
        "authorization {\n  token: \"s3cret-t0ken\"\n}\n".to_string()
    }) else {
        return;
    };
    let files = tempfile::tempdir().unwrap();
    let (good, bad) = (files.path().join("good"), files.path().join("bad"));
    std::fs::write(&good, "s3cret-t0ken").unwrap();
    std::fs::write(&bad, "guess").unwrap();
    let wrong = secured_sink(broker.url(), json!({"token_file": bad}));
    let mut h = Hub::start_with(move |c, _| {
        c.tls = false;
        c.sharing.sinks = vec![wrong];
    })
    .await;
    let token = device(&h, "fw1").await;
    post_events(&h, &token, 1..6).await;
    sink_error(&h, "authorization").await;
    h.config.sharing.sinks = vec![secured_sink(broker.url(), json!({"token_file": good}))];
    h.restart().await;
    drained(&h, "events", 5).await;
}
