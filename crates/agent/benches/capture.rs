//! The agent's own TLS capture, the parse alone (`capture_live` measures it live): Ethernet frames
//! carrying curl's TLS 1.3 ClientHello cut by etherparse and read by tls-parser into records
//! with JA3 and JA4, on one core; five rounds of N frames (200,000 by default).
//!
//! `cargo bench -p rephub-agent --bench capture [-- N]`
#![allow(clippy::unwrap_used)]

use std::time::Instant;

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200_000);
    let hello = include_bytes!("../src/testdata/curl-hello-tls13.bin");
    let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([192, 0, 2, 1], [192, 0, 2, 2], 64)
        .tcp(50_000, 443, 1, 64_000);
    let mut frame = Vec::new();
    b.write(&mut frame, hello).unwrap();
    let mut rates = Vec::new();
    for round in 1..=5 {
        let t = Instant::now();
        let mut found = 0;
        for i in 0..n {
            if rephub_agent::capture::client_record(&frame, i as i64).is_some() {
                found += 1;
            }
        }
        assert_eq!(found, n);
        let rate = n as f64 / t.elapsed().as_secs_f64();
        println!("round {round}: {rate:.0} ClientHellos/s");
        rates.push(rate);
    }
    rates.sort_by(|a, b| a.total_cmp(b));
    println!("median: {:.0} ClientHellos/s on one core", rates[2]);
}
