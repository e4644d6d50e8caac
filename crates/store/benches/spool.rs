//! The durable spool: events accepted (appended, durable: one fsynced commit per batch) and
//! drained (read, confirmed, deleted) per second.
//!
//! `cargo bench -p rephub-store --bench spool`. Records are ~330-byte shared events (the seed's
//! keys, as the hub spools them), in batches of 1,000 and 10,000, into a spool with one sink.
#![allow(clippy::unwrap_used)] // A benchmark fails loudly.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use rephub_model::SystemClock;
use rephub_store::{Spool, SpoolLimits, SqliteSpool};

fn event(i: u64) -> Vec<u8> {
    format!(
        r#"{{"key":"5f0c1e2d3a4b5c6d:d3:e{i}","event":{{"rt":"17{i:011}","dvchost":"edge-fw-1","ruleName":"Reputation: 203.0.113.{}","policyId":"profile-2","severity":3,"ruleUuid":"filter-4","app":"ip","src":"198.51.100.{}","spt":"{}","dst":"203.0.113.{}","dpt":"443","aggregatedCount":"1","act":"Block","mpname":"rephub"}}}}"#,
        i % 250,
        i % 200,
        1024 + i % 60000,
        i % 250
    )
    .into_bytes()
}

fn open() -> (tempfile::TempDir, SqliteSpool) {
    let dir = tempfile::tempdir().unwrap();
    let mut s = SqliteSpool::open(
        &dir.path().join("spool.db"),
        SpoolLimits::default(),
        Arc::new(SystemClock),
    )
    .unwrap();
    s.subscribe("upstream", "events").unwrap();
    (dir, s)
}

fn append(c: &mut Criterion) {
    let mut g = c.benchmark_group("spool_append");
    g.sample_size(20);
    for batch in [1_000u64, 10_000] {
        let payloads: Vec<Vec<u8>> = (0..batch).map(event).collect();
        g.throughput(Throughput::Elements(batch));
        let (_dir, mut s) = open();
        let mut n = 0u64;
        g.bench_function(format!("batch_{batch}"), |b| {
            b.iter(|| {
                s.append("events", black_box(&payloads)).unwrap();
                n += batch;
                // Keep the spool from growing without bound across iterations.
                if n >= 200_000 {
                    let last = s.pending("upstream", "events", usize::MAX).unwrap();
                    s.ack("upstream", "events", last.last().unwrap().id, &[])
                        .unwrap();
                    n = 0;
                }
            });
        });
    }
    g.finish();
}

fn drain(c: &mut Criterion) {
    let mut g = c.benchmark_group("spool_drain");
    g.sample_size(10);
    let batch = 10_000u64;
    let payloads: Vec<Vec<u8>> = (0..batch).map(event).collect();
    g.throughput(Throughput::Elements(batch));
    g.bench_function("pending_ack_10000", |b| {
        b.iter_batched(
            || {
                let (dir, mut s) = open();
                s.append("events", &payloads).unwrap();
                (dir, s)
            },
            |(_dir, mut s)| {
                let batch = s.pending("upstream", "events", 10_000).unwrap();
                s.ack("upstream", "events", batch.last().unwrap().id, &[])
                    .unwrap();
            },
            BatchSize::PerIteration,
        );
    });
    g.finish();
}

criterion_group!(benches, append, drain);
criterion_main!(benches);
