//! Lines of Suricata's `eve.json`: `parse_line` never panics, every alert it reads becomes
//! an IPS event the hub accepts, and every TLS record is one the hub accepts (the agent must
//! never send what the hub would refuse).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rephub_agent::eve::{Line, events, parse_line};

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let mut alerts = Vec::new();
    for line in s.lines() {
        match parse_line(line) {
            Line::Alert(a) => alerts.push(*a),
            Line::Tls(t) => assert_eq!(t.check(), Ok(()), "{t:?}"),
            _ => {}
        }
    }
    for e in events(alerts) {
        let detail = e.ips.expect("an IPS event has its detail");
        assert_eq!(detail.check(), Ok(()), "{detail:?}");
        assert!(e.hits >= 1 && e.first_seen <= e.last_seen);
        assert!(e.value.parse::<u64>().is_ok());
    }
});
