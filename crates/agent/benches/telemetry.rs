//! TLS telemetry from `eve.json` on one core: Suricata `tls` records (60 % TLS 1.3, which shows
//! no certificate; 40 % TLS 1.2 with the server certificate logged, base64 DER) read by the
//! tailer in batches of 10,000, parsed into records, checked against a filter set of 100,000
//! domains and 10,000 SHA-256 hashes (a hit is a detection event), and kept in the agent's spool
//! (one synced append per batch, then acknowledged as the hub would). Handshakes per second,
//! parse and match alone and with the spool, over a file of N records (100,000 by default), five
//! rounds; and the records the spool had to drop (it keeps at most 200,000 waiting).
//!
//! `cargo bench -p rephub-agent --bench telemetry [-- N]`
#![allow(clippy::unwrap_used)]

use std::io::Write as _;
use std::sync::Arc;
use std::time::Instant;

use rephub_agent::answer::Rule;
use rephub_agent::eve::{Line, Tailer, parse_line};
use rephub_agent::events::{Spool, tls_events};
use rephub_matcher::Matcher;
use rephub_model::{ActionSet, Entry};

/// A certificate's DER as Suricata logs it: base64 of 900 bytes (a typical leaf's size).
fn certificate(i: usize) -> String {
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    (0..1200)
        .map(|j| B64[(i * 31 + j * 7) % 64] as char)
        .collect()
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let eve = dir.path().join("eve.json");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&eve).unwrap());
        for i in 0..n {
            let head = format!(
                r#"{{"timestamp":"2026-12-03T08:00:{:02}.{:06}+0000","flow_id":{i},"in_iface":"eth0","event_type":"tls","src_ip":"10.1.{}.{}","src_port":{},"dest_ip":"203.0.113.{}","dest_port":443,"proto":"TCP","pkt_src":"wire/pcap","tls":{{"#,
                i % 60,
                i % 1_000_000,
                i % 200,
                i % 250,
                1024 + i % 60_000,
                i % 250
            );
            // One handshake in 100 goes to a blocked name.
            let sni = if i % 100 == 0 {
                format!("www.bad{}.example", i % 100_000)
            } else {
                format!("host{i}.example.com")
            };
            if i % 10 < 6 {
                writeln!(f, r#"{head}"sni":"{sni}","version":"TLS 1.3","ja3":{{"hash":"0149f47eabf9a20d0893e2a44e5a6323","string":"771,4866-4867-4865-49196-49200-159-52393-52392-52394-49195-49199-158-49188-49192-107,0-11-10-16-22-23-49-13-43-45-51-21,29-23-30-25-24,0-1-2"}},"ja3s":{{"hash":"15af977ce25de452b96affa2addb1036","string":"771,4866,43-51"}},"ja4":"t13d3112h2_e8f1e7e78f70_b26ce05bbdd6"}}}}"#).unwrap();
            } else {
                writeln!(f, r#"{head}"subject":"CN={sni}, O=Example","issuerdn":"CN=Example CA, O=Example","serial":"54:C2:35:37:E4:D5:3D:A5:E4:A2:FD:88:65:A7:6D:EB:9F:F8:5A:{:02X}","fingerprint":"5a:96:4a:35:06:f2:83:ab:7e:dc:3c:35:83:60:95:04:fd:e6:c4:82","sni":"{sni}","version":"TLS 1.2","notbefore":"2026-12-03T06:13:21","notafter":"2027-01-02T06:13:21","certificate":"{}","ja3":{{"hash":"87b9bfc7da97115ed2276737b09f8d74","string":"771,49196-49200-159-52393-52392-52394,0-11-10-16-22-23-13,29-23-30-25-24,0-1-2"}},"ja3s":{{"hash":"a548c224ffe85e7076d7897c27f6758c","string":"771,49196,65281-11-23"}},"ja4":"t12d2807h2_d943125447b4_a44c6288192a"}}}}"#, i % 256, certificate(i)).unwrap();
            }
        }
    }
    let bytes = std::fs::metadata(&eve).unwrap().len();
    let rule = Rule {
        action: ActionSet::Block,
        filter: Arc::from("block High"),
        expires: None,
    };
    let set = Matcher::build(
        (0..100_000)
            .map(|i| Entry::parse_auto(&format!("bad{i}.example")).unwrap())
            .chain((0..10_000u64).map(|i| {
                Entry::parse_auto(&format!("{:064x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
                    .unwrap()
            }))
            .map(|e| (e, rule.clone())),
    );
    println!(
        "{n} tls records, {:.1} MiB; filter set of {} entries",
        bytes as f64 / (1 << 20) as f64,
        set.len()
    );
    for round in 1..=5 {
        let (parse_s, records, hits) = run(&eve, &set, None);
        let spool_path = dir.path().join(format!("spool-{round}.ndjson"));
        let mut spool = Spool::open(&spool_path, 0).unwrap();
        let (all_s, kept, _) = run(&eve, &set, Some(&mut spool));
        assert_eq!(records, n);
        println!(
            "round {round}: {records} handshakes ({hits} hit the set): parse and match {:.0}/s; with the spool {:.0}/s; dropped {}",
            records as f64 / parse_s,
            kept as f64 / all_s,
            spool.tls_lost()
        );
    }
}

/// One pass over the file: seconds, records, detection events.
fn run(
    eve: &std::path::Path,
    set: &Matcher<Rule>,
    mut spool: Option<&mut Spool>,
) -> (f64, usize, usize) {
    let mut t = Tailer::open(eve, None);
    let start = Instant::now();
    let (mut records, mut hits) = (0, 0);
    loop {
        let (got, at) = t.read(10_000).unwrap();
        if got.is_empty() {
            break;
        }
        let mut batch = Vec::with_capacity(got.len());
        for l in &got {
            if let Line::Tls(r) = parse_line(&l.text) {
                batch.push(*r);
            }
        }
        records += batch.len();
        let events = tls_events(&batch, set);
        hits += events.len();
        if let Some(s) = spool.as_deref_mut() {
            s.push_read(events, batch, Some((at.inode, at.offset)))
                .unwrap();
            let (e, t) = (s.pending().len(), s.pending_tls().len());
            s.acknowledge(e).unwrap();
            s.acknowledge_tls(t).unwrap();
        }
    }
    (start.elapsed().as_secs_f64(), records, hits)
}
