//! The matcher against a naive reference written here from the model's own semantics (linear scan,
//! most specific match), after `build` and after random batches of `apply`, `insert` and `remove`.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use proptest::prelude::*;
use rephub_matcher::Matcher;
use rephub_model::{Domain, Entry, Kind, url};

// --- The reference ---------------------------------------------------------------------------------

type Model = BTreeMap<Entry, u32>;

fn ref_ip(m: &Model, ip: IpAddr) -> Option<&Entry> {
    let ip = match ip {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    m.keys()
        .filter(|e| match (e, ip) {
            (Entry::Ipv4(n), IpAddr::V4(a)) => n.contains(&a),
            (Entry::Ipv6(n), IpAddr::V6(a)) => n.contains(&a),
            _ => false,
        })
        .max_by_key(|e| match e {
            Entry::Ipv4(n) => n.prefix_len(),
            Entry::Ipv6(n) => n.prefix_len(),
            _ => 0,
        })
}

fn ref_domain<'a>(m: &'a Model, q: &str) -> Option<&'a Entry> {
    let q = if q.is_ascii() {
        let l = q.to_ascii_lowercase();
        l.strip_suffix('.').map(str::to_string).unwrap_or(l)
    } else {
        Domain::parse(q).ok()?.name().to_string()
    };
    if q.is_empty() {
        return None;
    }
    let domains = || {
        m.keys().filter_map(|e| match e {
            Entry::Domain(d) if d.matches(&q) => Some((e, d)),
            _ => None,
        })
    };
    if let Some((e, _)) = domains().find(|(_, d)| d.is_exact()) {
        return Some(e);
    }
    domains()
        .filter(|(_, d)| !d.is_exact())
        .max_by_key(|(_, d)| d.name().len())
        .map(|(e, _)| e)
}

fn ref_url<'a>(m: &'a Model, canonical: &str) -> Option<&'a Entry> {
    let key = url::match_key(canonical);
    let exact = m.keys().find(|e| match e {
        Entry::Url { url: u, prefix } => !prefix && url::match_key(u) == key,
        _ => false,
    });
    if exact.is_some() {
        return exact; // keys() ascends: the first is the least entry
    }
    let mut best: Option<(usize, &Entry)> = None;
    for e in m.keys() {
        if let Entry::Url {
            url: u,
            prefix: true,
        } = e
        {
            let k = url::match_key(u);
            if key.starts_with(k) && best.is_none_or(|(l, _)| k.len() > l) {
                best = Some((k.len(), e));
            }
        }
    }
    best.map(|(_, e)| e)
}

fn ref_hash<'a>(m: &'a Model, hex: &str) -> Option<&'a Entry> {
    if !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let h = hex.to_ascii_lowercase();
    let want = match h.len() {
        40 => Entry::Sha1(h),
        64 => Entry::Sha256(h),
        _ => return None,
    };
    m.get_key_value(&want).map(|(e, _)| e)
}

// --- Generators: small pools so that prefixes nest, names share suffixes, keys collide -------------

fn v4_addr() -> impl Strategy<Value = Ipv4Addr> {
    (
        prop::sample::select(vec![0u8, 10, 255]),
        prop::sample::select(vec![0u8, 1, 255]),
        prop::sample::select(vec![0u8, 1, 128, 255]),
        any::<u8>(),
    )
        .prop_map(|(a, b, c, d)| Ipv4Addr::new(a, b, c, d))
}

fn v6_addr() -> impl Strategy<Value = Ipv6Addr> {
    (
        prop::sample::select(vec![0u16, 0x2001, 0xffff]),
        prop::sample::select(vec![0u16, 0xdb8, 0xffff]),
        prop::sample::select(vec![0u64, 1, u64::MAX]),
        any::<u64>(),
    )
        .prop_map(|(a, b, c, d)| {
            let v =
                u128::from(a) << 112 | u128::from(b) << 96 | u128::from(c) << 64 | u128::from(d);
            Ipv6Addr::from(v)
        })
}

const LABELS: &[&str] = &[
    "a", "b", "evil", "example", "com", "foo", "barfoo", "x-y", "_s",
];

fn name(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(LABELS), 1..=max).prop_map(|l| l.join("."))
}

const HOSTS: &[&str] = &["a.com", "b.org", "a.com:8080", "[::1]", "10.0.0.1"];
const PATHS: &[&str] = &[
    "", "x", "x/", "x/y", "xy", "x/y/z", "x?q=1", "?q", "%41b", "a%20b/",
];

fn url_text() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["http", "https"]),
        prop::sample::select(HOSTS),
        prop::sample::select(PATHS),
        prop::sample::select(PATHS),
    )
        .prop_map(|(s, h, p1, p2)| format!("{s}://{h}/{p1}{p2}"))
}

/// Entries come from fewer URLs, so that some differ only in their scheme.
fn entry_url_text() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["http", "https"]),
        prop::sample::select(&HOSTS[..3]),
        prop::sample::select(PATHS),
        prop::sample::select(vec!["", "x"]),
    )
        .prop_map(|(s, h, p1, p2)| format!("{s}://{h}/{p1}{p2}"))
}

fn digest(n: usize) -> impl Strategy<Value = Vec<u8>> {
    // Mostly zero bytes: many digests share their first 16 bytes, so their table hashes collide.
    prop::collection::vec(prop::sample::select(vec![0u8, 0, 0, 1, 0xab]), n)
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn entry() -> impl Strategy<Value = Entry> {
    prop_oneof![
        3 => (v4_addr(), prop::sample::select(vec![0u8, 1, 8, 15, 16, 17, 24, 28, 31, 32, 32, 32]))
            .prop_map(|(a, l)| Entry::Ipv4(Ipv4Net::new(a, l).unwrap().trunc())),
        2 => (v6_addr(), prop::sample::select(vec![0u8, 8, 16, 17, 32, 48, 64, 96, 127, 128, 128]))
            .prop_map(|(a, l)| Entry::Ipv6(Ipv6Net::new(a, l).unwrap().trunc())),
        3 => (name(3), any::<bool>()).prop_map(|(n, exact)| {
            let s = if exact { format!("[{n}]") } else { n };
            Entry::parse(Kind::Domain, &s).unwrap()
        }),
        3 => (entry_url_text(), any::<bool>()).prop_map(|(u, star)| {
            let s = if star { format!("{u}*") } else { u };
            Entry::parse(Kind::Url, &s).unwrap()
        }),
        1 => digest(20).prop_map(|d| Entry::Sha1(hex(&d))),
        1 => digest(32).prop_map(|d| Entry::Sha256(hex(&d))),
    ]
}

#[derive(Debug, Clone)]
enum Q {
    /// Derived from the pool entry with this index: an address inside it, a name below it, a URL
    /// that starts with it, its hash; the number picks the variation.
    Pool(usize, u64),
    Ip(IpAddr),
    Domain(String),
    Url(String),
    Hash(String),
}

fn mangle_case(s: &str, mask: u64) -> String {
    s.chars()
        .enumerate()
        .map(|(i, c)| {
            if mask >> (i % 64) & 1 == 1 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

fn query() -> impl Strategy<Value = Q> {
    prop_oneof![
        8 => (any::<usize>(), any::<u64>()).prop_map(|(i, r)| Q::Pool(i, r)),
        2 => v4_addr().prop_map(|a| Q::Ip(IpAddr::V4(a))),
        1 => v4_addr().prop_map(|a| Q::Ip(IpAddr::V6(a.to_ipv6_mapped()))),
        2 => v6_addr().prop_map(|a| Q::Ip(IpAddr::V6(a))),
        3 => (name(5), any::<u64>(), any::<bool>()).prop_map(|(n, m, dot)| {
            let n = mangle_case(&n, m);
            Q::Domain(if dot { format!("{n}.") } else { n })
        }),
        1 => prop::sample::select(vec!["", ".", "..", "a..com", ".com", "com.", "bücher.example",
            "BÜCHER.example.", "ä", "[a.com]", "*.a.com"])
            .prop_map(|s| Q::Domain(s.to_string())),
        3 => (url_text(), prop::sample::select(PATHS)).prop_map(|(u, p)| Q::Url(format!("{u}{p}"))),
        1 => (digest(20), any::<u64>()).prop_map(|(d, m)| Q::Hash(mangle_case(&hex(&d), m))),
        1 => (digest(32), any::<u64>()).prop_map(|(d, m)| Q::Hash(mangle_case(&hex(&d), m))),
        1 => prop::sample::select(vec!["", "ab", "0".repeat(39).leak(), "0".repeat(41).leak(),
            "g".repeat(40).leak(), "0".repeat(63).leak()])
            .prop_map(|s| Q::Hash(s.to_string())),
    ]
}

fn resolve(q: &Q, pool: &[Entry]) -> Q {
    let Q::Pool(i, r) = *q else {
        return q.clone();
    };
    match &pool[i % pool.len()] {
        Entry::Ipv4(n) => {
            let host = u32::MAX.checked_shr(u32::from(n.prefix_len())).unwrap_or(0);
            let a = Ipv4Addr::from(u32::from(n.network()) | (r as u32 & host));
            Q::Ip(if r >> 40 & 1 == 0 {
                IpAddr::V4(a)
            } else {
                IpAddr::V6(a.to_ipv6_mapped())
            })
        }
        Entry::Ipv6(n) => {
            let host = u128::MAX
                .checked_shr(u32::from(n.prefix_len()))
                .unwrap_or(0);
            let r = u128::from(r).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
            Q::Ip(IpAddr::V6(Ipv6Addr::from(
                u128::from(n.network()) | (r & host),
            )))
        }
        Entry::Domain(d) => {
            let below = LABELS[(r % 7) as usize];
            let n = match r >> 8 & 3 {
                0 => d.name().to_string(),
                1 => format!("{below}.{}", d.name()),
                2 => format!("{below}{}", d.name()),
                _ => format!("{below}.{below}.{}.", d.name()),
            };
            Q::Domain(mangle_case(&n, r >> 16))
        }
        Entry::Url { url: u, .. } => {
            let u = u.replacen("https://", "http://", (r & 1) as usize);
            Q::Url(format!("{u}{}", PATHS[(r >> 4) as usize % PATHS.len()]))
        }
        Entry::Sha1(h) | Entry::Sha256(h) => Q::Hash(mangle_case(h, r)),
    }
}

fn check(
    m: &Matcher<u32>,
    model: &Model,
    pool: &[Entry],
    queries: &[Q],
) -> Result<(), TestCaseError> {
    prop_assert_eq!(m.len(), model.len());
    let mut all: Vec<(Entry, u32)> = m.iter().map(|(e, v)| (e.clone(), *v)).collect();
    all.sort();
    let want: Vec<(Entry, u32)> = model.iter().map(|(e, v)| (e.clone(), *v)).collect();
    prop_assert_eq!(all, want);
    for (e, v) in model {
        prop_assert_eq!(m.get(e), Some(v), "get {}", e);
    }
    for q in queries {
        let q = &resolve(q, pool);
        let (got, want) = match q {
            Q::Ip(a) => (m.lookup_ip(*a), ref_ip(model, *a)),
            Q::Domain(n) => (m.lookup_domain(n), ref_domain(model, n)),
            Q::Url(u) => {
                let c = url::canonicalize(u).unwrap();
                let by_raw = m.lookup_url(u).map(|h| h.entry);
                let got = m.lookup_url_canonical(&c);
                prop_assert_eq!(by_raw, got.map(|h| h.entry));
                (got, ref_url(model, &c))
            }
            Q::Hash(h) => (m.lookup_hash_hex(h), ref_hash(model, h)),
            Q::Pool(..) => unreachable!("resolved above"),
        };
        let got = got.map(|h| (h.entry, *h.value));
        let want = want.map(|e| (e, model[e]));
        prop_assert_eq!(got, want, "query {:?}", q);
    }
    // The batch lookup agrees with the single one (on all IPv4 queries at once, so that the groups
    // of 32 are exercised, partial last group included).
    let qs: Vec<Q> = queries.iter().map(|q| resolve(q, pool)).collect();
    let v4: Vec<Ipv4Addr> = qs
        .iter()
        .filter_map(|q| match q {
            Q::Ip(IpAddr::V4(a)) => Some(*a),
            _ => None,
        })
        .chain((0..70u32).map(|i| Ipv4Addr::from(i.wrapping_mul(0x9e37_79b9))))
        .collect();
    let mut out = vec![None; v4.len()];
    m.lookup_ipv4_batch(&v4, &mut out);
    for (a, o) in v4.iter().zip(&out) {
        prop_assert_eq!(
            o.map(|h| h.entry),
            m.lookup_ipv4(*a).map(|h| h.entry),
            "batch {}",
            a
        );
    }
    Ok(())
}

#[derive(Debug, Clone)]
enum Op {
    Upsert(usize, u32),
    Delete(usize),
}

#[derive(Debug, Clone)]
enum Step {
    Apply(Vec<Op>),
    Insert(usize, u32),
    Remove(usize),
}

fn step(pool: usize) -> impl Strategy<Value = Step> {
    let op = prop_oneof![
        2 => (0..pool, any::<u32>()).prop_map(|(i, v)| Op::Upsert(i, v)),
        1 => (0..pool).prop_map(Op::Delete),
    ];
    prop_oneof![
        3 => prop::collection::vec(op, 0..12).prop_map(Step::Apply),
        1 => (0..pool, any::<u32>()).prop_map(|(i, v)| Step::Insert(i, v)),
        1 => (0..pool).prop_map(Step::Remove),
    ]
}

/// The pool, the initial items (pool index, value), the steps and the queries.
type Case = (Vec<Entry>, Vec<(usize, u32)>, Vec<Step>, Vec<Q>);

fn case() -> impl Strategy<Value = Case> {
    prop::collection::vec(entry(), 1..40).prop_flat_map(|mut pool| {
        // Twins that differ only in the scheme: equally specific, the least entry wins.
        let twins: Vec<Entry> = pool
            .iter()
            .filter_map(|e| match e {
                Entry::Url { url: u, prefix } => Some(Entry::Url {
                    url: u.replacen("http://", "https://", 1),
                    prefix: *prefix,
                }),
                _ => None,
            })
            .filter(|t| !pool.contains(t))
            .take(3)
            .collect();
        pool.extend(twins);
        let n = pool.len();
        (
            Just(pool),
            prop::collection::vec((0..n, any::<u32>()), 0..40),
            prop::collection::vec(step(n), 0..8),
            prop::collection::vec(query(), 1..60),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn agrees_with_reference((pool, initial, steps, queries) in case()) {
        let items: Vec<(Entry, u32)> = initial.iter().map(|&(i, v)| (pool[i].clone(), v)).collect();
        let mut model = Model::new();
        for (e, v) in &items {
            model.insert(e.clone(), *v);
        }
        let mut m = Matcher::build(items);
        check(&m, &model, &pool, &queries)?;
        for s in steps {
            match s {
                Step::Apply(ops) => {
                    let mut ups = Vec::new();
                    let mut dels = Vec::new();
                    for op in ops {
                        match op {
                            Op::Upsert(i, v) => ups.push((pool[i].clone(), v)),
                            Op::Delete(i) => dels.push(pool[i].clone()),
                        }
                    }
                    for (e, v) in &ups {
                        model.insert(e.clone(), *v);
                    }
                    for e in &dels {
                        model.remove(e);
                    }
                    m.apply(ups, dels);
                }
                Step::Insert(i, v) => {
                    let old = model.insert(pool[i].clone(), v);
                    prop_assert_eq!(m.insert(pool[i].clone(), v), old);
                }
                Step::Remove(i) => {
                    let old = model.remove(&pool[i]);
                    prop_assert_eq!(m.remove(&pool[i]), old);
                }
            }
            check(&m, &model, &pool, &queries)?;
        }
        // Everything removed one by one: nothing matches any more.
        for e in &pool {
            m.remove(e);
            model.remove(e);
        }
        check(&m, &model, &pool, &queries)?;
        prop_assert!(m.is_empty());
    }

    #[test]
    fn lookups_never_panic(s in ".{0,300}", b in prop::collection::vec(any::<u8>(), 0..100)) {
        let m = Matcher::build([
            (Entry::parse(Kind::Domain, "example.com").unwrap(), 1),
            (Entry::parse(Kind::Domain, "[a.example.com]").unwrap(), 2),
            (Entry::parse(Kind::Url, "http://a.com/x*").unwrap(), 3),
            (Entry::parse(Kind::Url, "http://a.com/x").unwrap(), 4),
            (Entry::parse(Kind::Sha1, &"ab".repeat(20)).unwrap(), 5),
        ]);
        let lossy = String::from_utf8_lossy(&b).into_owned();
        for q in [s.as_str(), lossy.as_str()] {
            let _ = m.lookup_domain(q);
            let _ = m.lookup_url(q);
            let _ = m.lookup_url_canonical(q);
            let _ = m.lookup_hash_hex(q);
            // The answer on arbitrary text still follows the model's rules.
            let want: Model = m.iter().map(|(e, v)| (e.clone(), *v)).collect();
            prop_assert_eq!(m.lookup_domain(q).map(|h| h.entry), ref_domain(&want, q));
            prop_assert_eq!(m.lookup_url_canonical(q).map(|h| h.entry), ref_url(&want, q));
            prop_assert_eq!(m.lookup_hash_hex(q).map(|h| h.entry), ref_hash(&want, q));
        }
    }
}
