//! The durable spool's invariants (crate docs of `rephub_store::spool`), against SQLite.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::sync::Arc;

use rephub_model::FixedClock;
use rephub_store::{FullPolicy, SinkStats, Spool, SpoolLimits, SqliteSpool, StoreError};

const T0: i64 = 1_800_000_000;

fn open(dir: &tempfile::TempDir, limits: SpoolLimits) -> SqliteSpool {
    SqliteSpool::open(
        &dir.path().join("spool.db"),
        limits,
        Arc::new(FixedClock::new(T0)),
    )
    .unwrap()
}

fn payloads(range: std::ops::Range<u32>) -> Vec<Vec<u8>> {
    range.map(|i| format!("event {i}").into_bytes()).collect()
}

fn ids(s: &SqliteSpool, sink: &str) -> Vec<i64> {
    s.pending(sink, "events", 1000)
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect()
}

fn stats(s: &SqliteSpool, sink: &str) -> SinkStats {
    s.stats()
        .unwrap()
        .into_iter()
        .find(|x| x.sink == sink)
        .unwrap()
}

#[test]
fn records_wait_for_every_sink_and_ids_are_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir, SpoolLimits::default());
    // Nobody subscribed: nothing kept.
    assert_eq!(s.append("events", &payloads(0..3)).unwrap().kept, 0);
    s.subscribe("upstream", "events").unwrap();
    s.subscribe("syslog", "events").unwrap();
    s.subscribe("syslog", "events").unwrap();
    assert_eq!(s.append("events", &payloads(0..3)).unwrap().kept, 3);
    assert_eq!(ids(&s, "upstream"), [1, 2, 3]);
    let first = s.pending("upstream", "events", 1).unwrap();
    assert_eq!(first[0].payload, b"event 0");
    assert_eq!(first[0].created_at, T0);

    // One sink confirms two: it moves on; the other still has all three.
    s.ack("upstream", "events", 2, &[]).unwrap();
    assert_eq!(ids(&s, "upstream"), [3]);
    assert_eq!(ids(&s, "syslog"), [1, 2, 3]);
    // An ack behind the cursor changes nothing.
    s.ack("upstream", "events", 1, &[]).unwrap();
    assert_eq!(stats(&s, "upstream").delivered, 2);
    s.ack("syslog", "events", 3, &[]).unwrap();
    s.ack("upstream", "events", 3, &[]).unwrap();
    let st = stats(&s, "upstream");
    assert_eq!((st.delivered, st.depth, st.oldest), (3, 0, None));
    assert_eq!(st.last_success, Some(T0));

    // Everything delivered and deleted; reopened, the next id still follows, and the keys
    // (spool id and record id) never name two records.
    let key = s.key(3);
    drop(s);
    let mut s = open(&dir, SpoolLimits::default());
    assert_eq!(s.key(3), key, "the spool id is kept");
    s.append("events", &payloads(3..4)).unwrap();
    assert_eq!(ids(&s, "syslog"), [4]);
    let other = tempfile::tempdir().unwrap();
    assert_ne!(
        open(&other, SpoolLimits::default()).spool_id(),
        s.spool_id()
    );

    // A new subscriber starts at the end; one that leaves frees what only it needed.
    s.subscribe("file", "events").unwrap();
    assert!(ids(&s, "file").is_empty());
    s.append("events", &payloads(4..5)).unwrap();
    assert_eq!(ids(&s, "file"), [5]);
    s.unsubscribe("syslog", "events").unwrap();
    s.unsubscribe("upstream", "events").unwrap();
    assert_eq!(s.stats().unwrap().len(), 1);
    assert_eq!(ids(&s, "file"), [5]);
    assert!(matches!(
        s.pending("syslog", "events", 10),
        Err(StoreError::NotFound(_))
    ));
}

#[test]
fn refused_records_are_parked_replayed_or_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir, SpoolLimits::default());
    s.subscribe("upstream", "events").unwrap();
    s.append("events", &payloads(0..5)).unwrap();
    s.failed("upstream", "events", "connection refused")
        .unwrap();
    assert_eq!(
        stats(&s, "upstream").last_error.as_deref(),
        Some("connection refused")
    );
    s.ack(
        "upstream",
        "events",
        5,
        &[(3, "400 rt: not a number".into())],
    )
    .unwrap();
    let st = stats(&s, "upstream");
    assert_eq!(
        (st.delivered, st.parked, st.parked_now, st.retried, st.depth),
        (4, 1, 1, 1, 0)
    );
    assert_eq!(st.last_error, None, "a success clears the error");
    let parked = s.parked(Some("upstream"), 10).unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].record.payload, b"event 2");
    assert_eq!(parked[0].reason, "400 rt: not a number");
    assert!(!parked[0].replay);
    // Parked records outlive the records table's cleanup, and wait for a replay.
    assert!(s.replays("upstream", "events", 10).unwrap().is_empty());
    assert_eq!(s.replay("upstream", None).unwrap(), 1);
    assert_eq!(s.replay("upstream", None).unwrap(), 0, "asked once");
    let again = s.replays("upstream", "events", 10).unwrap();
    assert_eq!(again[0].id, 3);
    // Refused again: parked, with the new reason, not replayed until asked.
    s.replayed("upstream", "events", &[], &[(3, "400 still bad".into())])
        .unwrap();
    assert!(s.replays("upstream", "events", 10).unwrap().is_empty());
    assert_eq!(s.parked(None, 10).unwrap()[0].reason, "400 still bad");
    s.replay("upstream", Some(&[3])).unwrap();
    s.replayed("upstream", "events", &[3], &[]).unwrap();
    let st = stats(&s, "upstream");
    assert_eq!((st.delivered, st.parked_now), (5, 0));
    // Discard.
    s.append("events", &payloads(5..7)).unwrap();
    s.ack("upstream", "events", 7, &[(6, "x".into()), (7, "y".into())])
        .unwrap();
    assert_eq!(s.discard("upstream", Some(&[6])).unwrap(), 1);
    assert_eq!(s.discard("upstream", None).unwrap(), 1);
    assert!(s.parked(None, 10).unwrap().is_empty());
}

#[test]
fn a_full_spool_refuses_or_drops_the_oldest_and_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let limits = SpoolLimits {
        max_records: 5,
        max_bytes: 1 << 20,
        policy: FullPolicy::Block,
    };
    let mut s = open(&dir, limits);
    s.subscribe("upstream", "events").unwrap();
    s.append("events", &payloads(0..4)).unwrap(); // ids 1..4, one segment
    let e = s.append("events", &payloads(4..6)).unwrap_err();
    assert!(matches!(e, StoreError::Full(_)), "{e}");
    assert!(e.to_string().contains("4 records"), "{e}");
    assert_eq!(ids(&s, "upstream"), [1, 2, 3, 4], "nothing half-written");
    // Too big for the spool at all, whatever the policy.
    assert!(matches!(
        s.append("events", &payloads(0..6)),
        Err(StoreError::Full(_))
    ));
    // Room again once delivered (a segment is freed when all of it is).
    s.ack("upstream", "events", 4, &[]).unwrap();
    s.append("events", &payloads(4..6)).unwrap(); // ids 5, 6
    drop(s);

    // Drop the oldest: the sinks that had not delivered them skip them and count them.
    let limits = SpoolLimits {
        policy: FullPolicy::DropOldest,
        ..limits
    };
    let mut s = open(&dir, limits);
    s.subscribe("file", "events").unwrap();
    s.subscribe("syslog", "other").unwrap();
    s.append("other", &payloads(0..1)).unwrap(); // id 7
    let done = s.append("events", &payloads(6..9)).unwrap(); // ids 8..10
    assert_eq!(done.dropped, 2);
    assert_eq!(ids(&s, "upstream"), [8, 9, 10], "5 and 6 were dropped");
    let st = stats(&s, "upstream");
    assert_eq!((st.dropped, st.cursor), (2, 6));
    assert_eq!(stats(&s, "file").dropped, 0, "it never had them");
    // The oldest of any stream goes first: now 7, of the other stream.
    s.append("events", &payloads(9..10)).unwrap();
    assert_eq!(s.pending("syslog", "other", 10).unwrap().len(), 1);
    s.append("events", &payloads(10..11)).unwrap();
    assert!(s.pending("syslog", "other", 10).unwrap().is_empty());
    assert_eq!(stats(&s, "syslog").dropped, 1);
    assert_eq!(ids(&s, "upstream"), [8, 9, 10, 11, 12]);
    assert_eq!(stats(&s, "upstream").depth, 5);
    // Bytes count too.
    let tiny = SpoolLimits {
        max_records: 100,
        max_bytes: 20,
        policy: FullPolicy::Block,
    };
    let d2 = tempfile::tempdir().unwrap();
    let mut s = open(&d2, tiny);
    s.subscribe("a", "events").unwrap();
    s.append("events", &[vec![0; 15]]).unwrap();
    assert!(matches!(
        s.append("events", &[vec![0; 10]]),
        Err(StoreError::Full(_))
    ));
}

/// Segments are read across their edges: any cursor, any batch size.
#[test]
fn records_come_back_in_order_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir, SpoolLimits::default());
    s.subscribe("a", "events").unwrap();
    s.append("events", &payloads(0..5000)).unwrap(); // 4096 + 904
    s.append("events", &payloads(5000..5003)).unwrap();
    let mut seen = Vec::new();
    loop {
        let batch = s.pending("a", "events", 777).unwrap();
        let Some(last) = batch.last() else { break };
        seen.extend(batch.iter().map(|r| r.payload.clone()));
        s.ack("a", "events", last.id, &[(last.id - 1, "x".into())])
            .unwrap();
    }
    assert_eq!(seen, payloads(0..5003));
    let st = stats(&s, "a");
    assert_eq!(st.delivered + st.parked, 5003);
    assert_eq!(st.depth, 0);
    assert_eq!(
        s.parked(Some("a"), 100).unwrap()[0].record.payload,
        b"event 775"
    );
}
