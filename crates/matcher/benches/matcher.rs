//! Lookup throughput of `rephub-matcher` on 1,000,000 entries of each kind, against `prefix-trie`
//! (IP) and std `HashMap` with SipHash and with foldhash (names, URLs, hashes); then build time,
//! the time of a 1,000-entry delta and bytes per entry.
//!
//! Every lookup reads the value it found (as the agent does: the action), summed so that the
//! compiler keeps it. Every batch is 4,096 queries: half hit (an address inside an entry, a name below or at an entry,
//! an entry's URL or a URL below a prefix entry, a present hash), half are random misses.
//!
//! `cargo bench -p rephub-matcher` (a filter argument selects benchmarks, e.g. `-- ipv4`).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use criterion::{BenchmarkGroup, Criterion, Throughput, measurement::WallTime};
use ipnet::{Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;
use rephub_matcher::Matcher;
use rephub_model::{Domain, Entry, url};

/// Entries of each kind: 1,000,000, or `BENCH_N` (the CI smoke run uses a small set).
fn n() -> usize {
    std::env::var("BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}
const BATCH: usize = 4096;

/// SplitMix64: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn label(&mut self, min: usize, max: usize) -> String {
        let len = min + self.below((max - min + 1) as u64) as usize;
        (0..len)
            .map(|_| (b'a' + self.below(26) as u8) as char)
            .collect()
    }
}

fn group<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(BATCH as u64));
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_secs(1));
    g.sample_size(20);
    g
}

/// One line of the summary printed at the end.
struct Summary {
    kind: &'static str,
    entries: usize,
    build: Duration,
    delta: Duration,
    bytes_per_entry: f64,
}

/// Build time (best of 3), the time of a delta of 500 new entries, 250 replaced values and 250
/// deletes (median of 5, each on a fresh delta), and memory per entry.
fn measure_changes(
    kind: &'static str,
    items: &[(Entry, u32)],
    mut fresh: impl FnMut(&mut Rng) -> Entry,
) -> (Matcher<u32>, Summary) {
    let mut build = Duration::MAX;
    let mut m = Matcher::new();
    for _ in 0..3 {
        let copy = items.to_vec();
        let t = Instant::now();
        m = Matcher::build(copy);
        build = build.min(t.elapsed());
    }
    let bytes_per_entry = m.memory_bytes() as f64 / m.len() as f64;
    // The deltas go to a copy: the lookups below run on the matcher as built.
    let mut d = m.clone();
    let mut rng = Rng(99);
    let mut times = Vec::new();
    for _ in 0..5 {
        let mut ups: Vec<(Entry, u32)> = (0..500).map(|i| (fresh(&mut rng), i)).collect();
        for _ in 0..250 {
            let (e, _) = &items[rng.below(items.len() as u64) as usize];
            ups.push((e.clone(), 7));
        }
        let dels: Vec<Entry> = (0..250)
            .map(|_| items[rng.below(items.len() as u64) as usize].0.clone())
            .collect();
        let t = Instant::now();
        d.apply(ups, dels);
        times.push(t.elapsed());
    }
    drop(d);
    times.sort();
    let s = Summary {
        kind,
        entries: m.len(),
        build,
        delta: times[2],
        bytes_per_entry,
    };
    (m, s)
}

// --- IPv4 ----------------------------------------------------------------------------------------

/// Mostly addresses, some networks: 95% /32, 4.5% /24, 0.45% /16–/23, 50 networks /8–/15.
fn ipv4_net(rng: &mut Rng, i: usize) -> Ipv4Net {
    let len = if i < 50 {
        8 + rng.below(8) as u8
    } else {
        match rng.below(1000) {
            0..950 => 32,
            950..995 => 24,
            _ => 16 + rng.below(8) as u8,
        }
    };
    Ipv4Net::new(Ipv4Addr::from(rng.next() as u32), len)
        .expect("length ≤ 32")
        .trunc()
}

fn bench_ipv4(c: &mut Criterion, out: &mut Vec<Summary>) {
    let mut rng = Rng(1);
    let nets: Vec<Ipv4Net> = (0..n()).map(|i| ipv4_net(&mut rng, i)).collect();
    let items: Vec<(Entry, u32)> = nets
        .iter()
        .enumerate()
        .map(|(i, n)| (Entry::Ipv4(*n), i as u32))
        .collect();
    let (m, s) = measure_changes("IPv4", &items, |r| Entry::Ipv4(ipv4_net(r, 100)));
    out.push(s);
    let mut trie: PrefixMap<Ipv4Net, u32> = PrefixMap::new();
    for (i, n) in nets.iter().enumerate() {
        trie.insert(*n, i as u32);
    }
    let queries: Vec<Ipv4Addr> = (0..BATCH)
        .map(|i| {
            if i % 2 == 0 {
                let n = nets[rng.below(n() as u64) as usize];
                let host = u32::MAX.checked_shr(u32::from(n.prefix_len())).unwrap_or(0);
                Ipv4Addr::from(u32::from(n.network()) | (rng.next() as u32 & host))
            } else {
                Ipv4Addr::from(rng.next() as u32)
            }
        })
        .collect();
    let hits = queries
        .iter()
        .filter(|q| m.lookup_ipv4(**q).is_some())
        .count();
    for q in &queries {
        let want = trie.get_lpm(&Ipv4Net::from(*q)).map(|(_, v)| *v);
        assert_eq!(m.lookup_ipv4(*q).map(|h| *h.value), want, "{q}");
    }
    let mut out = vec![None; queries.len()];
    m.lookup_ipv4_batch(&queries, &mut out);
    for (q, o) in queries.iter().zip(&out) {
        assert_eq!(
            o.map(|h| *h.value),
            m.lookup_ipv4(*q).map(|h| *h.value),
            "{q}"
        );
    }
    println!("ipv4: {hits} of {BATCH} queries hit");
    let mut g = group(c, "ipv4");
    g.bench_function("rephub-matcher", |b| {
        b.iter(|| {
            let mut sum = 0u32;
            for q in &queries {
                sum = sum.wrapping_add(m.lookup_ipv4(black_box(*q)).map_or(0, |h| *h.value));
            }
            sum
        })
    });
    let mut out = vec![None; queries.len()];
    g.bench_function("rephub-matcher batch", |b| {
        b.iter(|| {
            m.lookup_ipv4_batch(black_box(&queries), &mut out);
            let mut sum = 0u32;
            for h in &out {
                sum = sum.wrapping_add(h.map_or(0, |h| *h.value));
            }
            sum
        })
    });
    g.bench_function("prefix-trie", |b| {
        b.iter(|| {
            let mut sum = 0u32;
            for q in &queries {
                sum = sum.wrapping_add(
                    trie.get_lpm(&Ipv4Net::from(black_box(*q)))
                        .map_or(0, |(_, v)| *v),
                );
            }
            sum
        })
    });
    g.finish();
}

// --- IPv6 ----------------------------------------------------------------------------------------

/// Inside 2000::/3: 70% /128, 20% /64, 7% /48, 3% /32–/44.
fn ipv6_net(rng: &mut Rng) -> Ipv6Net {
    let len = match rng.below(100) {
        0..70 => 128,
        70..90 => 64,
        90..97 => 48,
        _ => 32 + 4 * rng.below(4) as u8,
    };
    Ipv6Net::new(global6(rng), len)
        .expect("length ≤ 128")
        .trunc()
}

fn global6(rng: &mut Rng) -> Ipv6Addr {
    let a = u128::from(rng.next()) << 64 | u128::from(rng.next());
    Ipv6Addr::from(a >> 3 | 1 << 125)
}

fn bench_ipv6(c: &mut Criterion, out: &mut Vec<Summary>) {
    let mut rng = Rng(2);
    let nets: Vec<Ipv6Net> = (0..n()).map(|_| ipv6_net(&mut rng)).collect();
    let items: Vec<(Entry, u32)> = nets
        .iter()
        .enumerate()
        .map(|(i, n)| (Entry::Ipv6(*n), i as u32))
        .collect();
    let (m, s) = measure_changes("IPv6", &items, |r| Entry::Ipv6(ipv6_net(r)));
    out.push(s);
    let mut trie: PrefixMap<Ipv6Net, u32> = PrefixMap::new();
    for (i, n) in nets.iter().enumerate() {
        trie.insert(*n, i as u32);
    }
    let queries: Vec<Ipv6Addr> = (0..BATCH)
        .map(|i| {
            if i % 2 == 0 {
                let n = nets[rng.below(n() as u64) as usize];
                let host = u128::MAX
                    .checked_shr(u32::from(n.prefix_len()))
                    .unwrap_or(0);
                let r = u128::from(rng.next()) << 64 | u128::from(rng.next());
                Ipv6Addr::from(u128::from(n.network()) | (r & host))
            } else {
                global6(&mut rng)
            }
        })
        .collect();
    for q in &queries {
        let want = trie.get_lpm(&Ipv6Net::from(*q)).map(|(_, v)| *v);
        assert_eq!(m.lookup_ipv6(*q).map(|h| *h.value), want, "{q}");
    }
    let mut g = group(c, "ipv6");
    g.bench_function("rephub-matcher", |b| {
        b.iter(|| {
            let mut sum = 0u32;
            for q in &queries {
                sum = sum.wrapping_add(m.lookup_ipv6(black_box(*q)).map_or(0, |h| *h.value));
            }
            sum
        })
    });
    g.bench_function("prefix-trie", |b| {
        b.iter(|| {
            let mut sum = 0u32;
            for q in &queries {
                sum = sum.wrapping_add(
                    trie.get_lpm(&Ipv6Net::from(black_box(*q)))
                        .map_or(0, |(_, v)| *v),
                );
            }
            sum
        })
    });
    g.finish();
}

// --- Domains -------------------------------------------------------------------------------------

const TLDS: &[&str] = &[
    "com", "net", "org", "info", "io", "ru", "cn", "de", "uk", "xyz", "top", "biz", "online",
    "site", "shop", "app", "dev", "co", "me", "tk",
];

fn random_name(rng: &mut Rng) -> String {
    let tld = TLDS[rng.below(TLDS.len() as u64) as usize];
    format!("{}.{}.{tld}", rng.label(3, 10), rng.label(4, 12))
}

/// The suffix loop a `HashMap` user writes: the `[name]` entry, then the name and each parent.
fn map_domain<S: BuildHasher>(
    exact: &HashMap<String, u32, S>,
    below: &HashMap<String, u32, S>,
    q: &str,
) -> Option<u32> {
    if let Some(v) = exact.get(q) {
        return Some(*v);
    }
    let mut s = q;
    loop {
        if let Some(v) = below.get(s) {
            return Some(*v);
        }
        s = &s[s.find('.')? + 1..];
    }
}

fn bench_domains(c: &mut Criterion, out: &mut Vec<Summary>) {
    let mut rng = Rng(3);
    let names: Vec<(String, bool)> = (0..n())
        .map(|_| (random_name(&mut rng), rng.below(10) == 0))
        .collect();
    let items: Vec<(Entry, u32)> = names
        .iter()
        .enumerate()
        .map(|(i, (n, exact))| {
            let d = if *exact {
                Domain::parse(&format!("[{n}]"))
            } else {
                Domain::parse(n)
            };
            (Entry::Domain(d.expect("valid name")), i as u32)
        })
        .collect();
    let (m, s) = measure_changes("domains", &items, |r| {
        Entry::Domain(Domain::parse(&random_name(r)).expect("valid name"))
    });
    out.push(s);
    let queries: Vec<String> = (0..BATCH)
        .map(|i| {
            if i % 2 == 0 {
                let (n, exact) = &names[rng.below(n() as u64) as usize];
                match (exact, rng.below(3)) {
                    (true, _) | (false, 0) => n.clone(),
                    (false, 1) => format!("www.{n}"),
                    (false, _) => format!("{}.cdn.{n}", rng.label(3, 8)),
                }
            } else {
                format!("www.{}", random_name(&mut rng))
            }
        })
        .collect();
    fn maps<S: BuildHasher + Default>(
        names: &[(String, bool)],
    ) -> (HashMap<String, u32, S>, HashMap<String, u32, S>) {
        let mut exact = HashMap::default();
        let mut below = HashMap::default();
        for (i, (n, x)) in names.iter().enumerate() {
            if *x { &mut exact } else { &mut below }.insert(n.clone(), i as u32);
        }
        (exact, below)
    }
    let (sip_exact, sip_below) = maps::<std::hash::RandomState>(&names);
    let (fold_exact, fold_below) = maps::<foldhash::fast::RandomState>(&names);
    for q in &queries {
        let want = map_domain(&sip_exact, &sip_below, q);
        assert_eq!(m.lookup_domain(q).map(|h| *h.value), want, "{q}");
    }
    let mut g = group(c, "domains");
    g.bench_function("rephub-matcher", |b| {
        b.iter(|| {
            let mut sum = 0u32;
            for q in &queries {
                sum = sum.wrapping_add(m.lookup_domain(black_box(q)).map_or(0, |h| *h.value));
            }
            sum
        })
    });
    g.bench_function("HashMap SipHash", |b| {
        b.iter(|| {
            let mut sum = 0u32;
            for q in &queries {
                sum =
                    sum.wrapping_add(map_domain(&sip_exact, &sip_below, black_box(q)).unwrap_or(0));
            }
            sum
        })
    });
    g.bench_function("HashMap foldhash", |b| {
        b.iter(|| {
            let mut sum = 0u32;
            for q in &queries {
                sum = sum
                    .wrapping_add(map_domain(&fold_exact, &fold_below, black_box(q)).unwrap_or(0));
            }
            sum
        })
    });
    g.finish();
}

// --- URLs ----------------------------------------------------------------------------------------

/// 90% exact URLs, 10% prefix entries ending in `/`; 100,000 hosts.
fn random_url(rng: &mut Rng, hosts: &[String]) -> (String, bool) {
    let host = &hosts[rng.below(hosts.len() as u64) as usize];
    if rng.below(10) == 0 {
        (format!("http://{host}/{}/", rng.label(3, 10)), true)
    } else {
        let path = format!("{}/{}.php", rng.label(3, 10), rng.label(4, 16));
        (format!("http://{host}/{path}"), false)
    }
}

/// What a `HashMap` user writes for the same entries: the exact key, then the prefixes ending at
/// each `/` (this data's prefix entries all end in `/`), longest first.
fn map_url<S: BuildHasher>(
    exact: &HashMap<String, u32, S>,
    prefixes: &HashMap<String, u32, S>,
    canonical: &str,
) -> Option<u32> {
    let key = url::match_key(canonical);
    if let Some(v) = exact.get(key) {
        return Some(*v);
    }
    let mut end = key.len();
    while let Some(i) = key[..end].rfind('/') {
        if let Some(v) = prefixes.get(&key[..=i]) {
            return Some(*v);
        }
        end = i;
    }
    None
}

fn bench_urls(c: &mut Criterion, out: &mut Vec<Summary>) {
    let mut rng = Rng(4);
    let hosts: Vec<String> = (0..100_000).map(|_| random_name(&mut rng)).collect();
    let urls: Vec<(String, bool)> = (0..n()).map(|_| random_url(&mut rng, &hosts)).collect();
    let items: Vec<(Entry, u32)> = urls
        .iter()
        .enumerate()
        .map(|(i, (u, prefix))| {
            let url = url::canonicalize(u).expect("valid URL");
            (
                Entry::Url {
                    url,
                    prefix: *prefix,
                },
                i as u32,
            )
        })
        .collect();
    let (m, s) = measure_changes("URLs", &items, |r| {
        let (u, prefix) = random_url(r, &hosts);
        Entry::Url { url: u, prefix }
    });
    out.push(s);
    let queries: Vec<String> = (0..BATCH)
        .map(|i| {
            if i % 2 == 0 {
                let (u, prefix) = &urls[rng.below(n() as u64) as usize];
                if *prefix {
                    format!("{u}{}/index.html", rng.label(2, 8))
                } else {
                    u.clone()
                }
            } else {
                let host = random_name(&mut rng);
                format!(
                    "http://{host}/{}/{}.php",
                    rng.label(3, 10),
                    rng.label(4, 16)
                )
            }
        })
        .collect();
    fn maps<S: BuildHasher + Default>(
        items: &[(Entry, u32)],
    ) -> (HashMap<String, u32, S>, HashMap<String, u32, S>) {
        let mut exact = HashMap::default();
        let mut prefixes = HashMap::default();
        for (e, i) in items {
            if let Entry::Url { url: u, prefix } = e {
                let k = url::match_key(u).to_string();
                if *prefix { &mut prefixes } else { &mut exact }.insert(k, *i);
            }
        }
        (exact, prefixes)
    }
    let (sip_exact, sip_prefix) = maps::<std::hash::RandomState>(&items);
    let (fold_exact, fold_prefix) = maps::<foldhash::fast::RandomState>(&items);
    for q in &queries {
        let want = map_url(&sip_exact, &sip_prefix, q);
        assert_eq!(m.lookup_url_canonical(q).map(|h| *h.value), want, "{q}");
        assert_eq!(m.lookup_url(q).map(|h| *h.value), want, "{q}");
    }
    let mut g = group(c, "urls");
    g.bench_function("rephub-matcher canonical", |b| {
        b.iter(|| {
            let mut sum = 0u32;
            for q in &queries {
                sum =
                    sum.wrapping_add(m.lookup_url_canonical(black_box(q)).map_or(0, |h| *h.value));
            }
            sum
        })
    });
    g.bench_function("rephub-matcher with canonicalisation", |b| {
        b.iter(|| {
            let mut sum = 0u32;
            for q in &queries {
                sum = sum.wrapping_add(m.lookup_url(black_box(q)).map_or(0, |h| *h.value));
            }
            sum
        })
    });
    // Canonicalisation alone: of these canonical URLs (a device's own logs, mostly), and of the
    // same URLs made non-canonical (host in capitals, the default port, a fragment).
    g.bench_function("canonicalize, canonical already", |b| {
        b.iter(|| {
            let mut sum = 0usize;
            for q in &queries {
                sum = sum.wrapping_add(url::canonicalize_cow(black_box(q)).map_or(0, |c| c.len()));
            }
            sum
        })
    });
    let raw: Vec<String> = queries
        .iter()
        .map(|q| {
            let rest = q.strip_prefix("http://").expect("http");
            let (host, path) = rest.split_once('/').expect("path");
            format!("http://{}:80/{path}#top", host.to_uppercase())
        })
        .collect();
    for (r, q) in raw.iter().zip(&queries) {
        assert_eq!(url::canonicalize(r).as_deref(), Ok(q.as_str()));
    }
    g.bench_function("canonicalize, not canonical", |b| {
        b.iter(|| {
            let mut sum = 0usize;
            for r in &raw {
                sum = sum.wrapping_add(url::canonicalize_cow(black_box(r)).map_or(0, |c| c.len()));
            }
            sum
        })
    });
    g.bench_function("HashMap SipHash", |b| {
        b.iter(|| {
            let mut sum = 0u32;
            for q in &queries {
                sum = sum.wrapping_add(map_url(&sip_exact, &sip_prefix, black_box(q)).unwrap_or(0));
            }
            sum
        })
    });
    g.bench_function("HashMap foldhash", |b| {
        b.iter(|| {
            let mut sum = 0u32;
            for q in &queries {
                sum =
                    sum.wrapping_add(map_url(&fold_exact, &fold_prefix, black_box(q)).unwrap_or(0));
            }
            sum
        })
    });
    g.finish();
}

// --- Hashes --------------------------------------------------------------------------------------

fn digest(rng: &mut Rng) -> [u8; 32] {
    let mut d = [0u8; 32];
    for c in d.chunks_mut(8) {
        c.copy_from_slice(&rng.next().to_le_bytes());
    }
    d
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn bench_hashes(c: &mut Criterion, out: &mut Vec<Summary>) {
    let mut rng = Rng(5);
    let digests: Vec<[u8; 32]> = (0..n()).map(|_| digest(&mut rng)).collect();
    let items: Vec<(Entry, u32)> = digests
        .iter()
        .enumerate()
        .map(|(i, d)| (Entry::Sha256(hex(d)), i as u32))
        .collect();
    let (m, s) = measure_changes("SHA-256", &items, |r| Entry::Sha256(hex(&digest(r))));
    out.push(s);
    let queries: Vec<[u8; 32]> = (0..BATCH)
        .map(|i| {
            if i % 2 == 0 {
                digests[rng.below(n() as u64) as usize]
            } else {
                digest(&mut rng)
            }
        })
        .collect();
    let hex_queries: Vec<String> = queries.iter().map(|d| hex(d)).collect();
    let sip: HashMap<[u8; 32], u32> = digests
        .iter()
        .enumerate()
        .map(|(i, d)| (*d, i as u32))
        .collect();
    let fold: HashMap<[u8; 32], u32, foldhash::fast::RandomState> = digests
        .iter()
        .enumerate()
        .map(|(i, d)| (*d, i as u32))
        .collect();
    for q in &queries {
        assert_eq!(m.lookup_sha256(q).map(|h| *h.value), sip.get(q).copied());
    }
    let mut g = group(c, "sha256");
    g.bench_function("rephub-matcher", |b| {
        b.iter(|| {
            let mut sum = 0u32;
            for q in &queries {
                sum = sum.wrapping_add(m.lookup_sha256(black_box(q)).map_or(0, |h| *h.value));
            }
            sum
        })
    });
    g.bench_function("rephub-matcher hex", |b| {
        b.iter(|| {
            let mut sum = 0u32;
            for q in &hex_queries {
                sum = sum.wrapping_add(m.lookup_hash_hex(black_box(q)).map_or(0, |h| *h.value));
            }
            sum
        })
    });
    g.bench_function("HashMap SipHash", |b| {
        b.iter(|| {
            let mut sum = 0u32;
            for q in &queries {
                sum = sum.wrapping_add(sip.get(black_box(q)).copied().unwrap_or(0));
            }
            sum
        })
    });
    g.bench_function("HashMap foldhash", |b| {
        b.iter(|| {
            let mut sum = 0u32;
            for q in &queries {
                sum = sum.wrapping_add(fold.get(black_box(q)).copied().unwrap_or(0));
            }
            sum
        })
    });
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let mut summary = Vec::new();
    bench_ipv4(&mut c, &mut summary);
    bench_ipv6(&mut c, &mut summary);
    bench_domains(&mut c, &mut summary);
    bench_urls(&mut c, &mut summary);
    bench_hashes(&mut c, &mut summary);
    c.final_summary();
    println!("\n| kind | entries | build 1M | apply 1,000-entry delta | bytes/entry |");
    println!("|---|---|---|---|---|");
    for s in summary {
        println!(
            "| {} | {} | {:.0} ms | {:.2} ms | {:.0} |",
            s.kind,
            s.entries,
            s.build.as_secs_f64() * 1e3,
            s.delta.as_secs_f64() * 1e3,
            s.bytes_per_entry
        );
    }
}
