//! `eve.json` tailing and normalisation on one core: Suricata records (70 % alerts, 30 % flow
//! records, as a busy sensor writes them) read by the tailer in batches of 10,000, parsed into
//! alerts, and the alerts of each batch aggregated into the IPS events the agent sends (what the
//! agent does per reading, without the spool's write). Lines per second, over a file of N lines
//! (200,000 by default), five rounds.
//!
//! `cargo bench -p rephub-agent --bench eve [-- N]`
#![allow(clippy::unwrap_used)]

use std::io::Write as _;
use std::time::Instant;

use rephub_agent::eve::{Line, Tailer, events, parse_line};

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200_000);
    let dir = tempfile::tempdir().unwrap();
    let eve = dir.path().join("eve.json");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&eve).unwrap());
        for i in 0..n {
            if i % 10 < 7 {
                writeln!(f, r#"{{"timestamp":"2027-01-15T08:00:{:02}.{:06}+0000","flow_id":{i},"in_iface":"eth0","event_type":"alert","src_ip":"198.51.100.{}","src_port":{},"dest_ip":"203.0.113.10","dest_port":80,"proto":"TCP","app_proto":"http","alert":{{"action":"blocked","gid":1,"signature_id":{},"rev":1,"signature":"HTTP: test rule {i}","category":"Attempted Administrator Privilege Gain","severity":1,"metadata":{{"cve":["CVE_2021_44228"],"mitre_technique_id":["T1190"]}}}},"http":{{"hostname":"shop.example","url":"/p?id={i}","http_user_agent":"curl/8","xff":"192.0.2.{}"}}}}"#,
                    i % 60, i % 1_000_000, i % 250, 1024 + i % 60000, 3000 + i % 500, i % 250).unwrap();
            } else {
                writeln!(f, r#"{{"timestamp":"2027-01-15T08:00:00.000000+0000","flow_id":{i},"event_type":"flow","src_ip":"198.51.100.1","src_port":5555,"dest_ip":"203.0.113.10","dest_port":443,"proto":"TCP","flow":{{"pkts_toserver":5,"pkts_toclient":4,"bytes_toserver":600,"bytes_toclient":3000,"start":"2027-01-15T08:00:00.000000+0000","end":"2027-01-15T08:00:01.000000+0000","age":1,"state":"closed","reason":"timeout","alerted":false}}}}"#).unwrap();
            }
        }
    }
    let bytes = std::fs::metadata(&eve).unwrap().len();
    println!("{n} lines, {:.1} MiB", bytes as f64 / (1 << 20) as f64);
    for round in 1..=5 {
        // From the start each round.
        let mut t = Tailer::open(&eve, None);
        let start = Instant::now();
        let (mut lines, mut alerts, mut made) = (0, 0, 0);
        loop {
            let (got, _) = t.read(10_000).unwrap();
            if got.is_empty() {
                break;
            }
            lines += got.len();
            let mut batch = Vec::new();
            for l in &got {
                if let Line::Alert(a) = parse_line(&l.text) {
                    batch.push(*a);
                }
            }
            alerts += batch.len();
            made += events(batch).len();
        }
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(lines, n);
        println!(
            "round {round}: {lines} lines ({alerts} alerts, {made} events) in {secs:.3} s: {:.0} lines/s",
            lines as f64 / secs
        );
    }
}
