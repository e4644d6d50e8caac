//! The IP entries of one filter set by network, for CrowdSec's live mode (`GET /v1/decisions?ip=`):
//! which entries contain an address or a range, in one hash probe per prefix length that some
//! entry has (a few: /32, /24, some shorter), instead of a scan of the whole filter set (1 ms per
//! 100,000 entries). Built the first time a profile is asked, then kept up to date with the filter
//! set, so profiles no bouncer asks that way cost no memory (≈ 40 bytes an IP entry otherwise).

use std::collections::HashMap;

use ipnet::IpNet;
use rephub_model::Entry;

/// Made only by [`IpIndex::build`] (no `Default`: its `lengths` must have a slot per length).
#[derive(Debug)]
pub(crate) struct IpIndex {
    ids: HashMap<IpNet, i64>,
    /// Entries per prefix length: IPv4 in 0..=32, IPv6 in 33..=161 (length + 33).
    lengths: Vec<u32>,
}

fn net(entry: &Entry) -> Option<IpNet> {
    match entry {
        Entry::Ipv4(n) => Some(IpNet::V4(n.trunc())),
        Entry::Ipv6(n) => Some(IpNet::V6(n.trunc())),
        _ => None,
    }
}

fn slot(n: &IpNet) -> usize {
    match n {
        IpNet::V4(n) => usize::from(n.prefix_len()),
        IpNet::V6(n) => 33 + usize::from(n.prefix_len()),
    }
}

impl IpIndex {
    pub(crate) fn build<'a>(entries: impl Iterator<Item = (i64, &'a Entry)>) -> IpIndex {
        let mut index = IpIndex {
            ids: HashMap::new(),
            lengths: vec![0; 33 + 129],
        };
        for (id, e) in entries {
            index.insert(id, e);
        }
        index
    }

    pub(crate) fn insert(&mut self, id: i64, entry: &Entry) {
        if let Some(n) = net(entry) {
            if self.ids.insert(n, id).is_none() {
                self.lengths[slot(&n)] += 1;
            }
        }
    }

    pub(crate) fn remove(&mut self, entry: &Entry) {
        if let Some(n) = net(entry) {
            if self.ids.remove(&n).is_some() {
                self.lengths[slot(&n)] -= 1;
            }
        }
    }

    /// The entries that contain `target` (an address is a /32 or /128), widest first.
    pub(crate) fn containing(&self, target: IpNet) -> Vec<(i64, Entry)> {
        (0..=target.prefix_len())
            .filter_map(|len| {
                let wider = match target {
                    IpNet::V4(n) => IpNet::V4(ipnet::Ipv4Net::new(n.addr(), len).ok()?.trunc()),
                    IpNet::V6(n) => IpNet::V6(ipnet::Ipv6Net::new(n.addr(), len).ok()?.trunc()),
                };
                if self.lengths[slot(&wider)] == 0 {
                    return None;
                }
                let id = *self.ids.get(&wider)?;
                Some((
                    id,
                    match wider {
                        IpNet::V4(n) => Entry::Ipv4(n),
                        IpNet::V6(n) => Entry::Ipv6(n),
                    },
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rephub_model::Kind;

    fn e(kind: Kind, s: &str) -> Entry {
        Entry::parse(kind, s).unwrap()
    }

    #[test]
    fn finds_every_containing_network_and_forgets_removed_ones() {
        let entries = [
            (1, e(Kind::Ipv4, "10.0.0.0/8")),
            (2, e(Kind::Ipv4, "10.1.0.0/16")),
            (3, e(Kind::Ipv4, "10.1.2.3")),
            (4, e(Kind::Ipv6, "2001:db8::/32")),
            (5, e(Kind::Domain, "example.com")),
            (6, e(Kind::Ipv4, "0.0.0.0/0")),
        ];
        let mut ix = IpIndex::build(entries.iter().map(|(id, e)| (*id, e)));
        let q = |ix: &IpIndex, s: &str| {
            let t: IpNet = s
                .parse()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
                .unwrap();
            ix.containing(t)
                .into_iter()
                .map(|(id, _)| id)
                .collect::<Vec<_>>()
        };
        assert_eq!(q(&ix, "10.1.2.3"), vec![6, 1, 2, 3]);
        assert_eq!(q(&ix, "10.1.9.9"), vec![6, 1, 2]);
        assert_eq!(q(&ix, "10.1.0.0/16"), vec![6, 1, 2]);
        assert_eq!(q(&ix, "10.0.0.0/7"), vec![6]);
        assert_eq!(q(&ix, "2001:db8::1"), vec![4]);
        assert_eq!(q(&ix, "2001:db9::1"), Vec::<i64>::new());
        // The entries come back as they were put in (the filter sets keep no values: live-mode
        // answers take them from here).
        let hits = ix.containing("10.1.2.3/32".parse().unwrap());
        let want: Vec<(i64, Entry)> = [5, 0, 1, 2].iter().map(|&i| entries[i].clone()).collect();
        assert_eq!(hits, want);
        let v6 = ix.containing("2001:db8::1/128".parse().unwrap());
        assert_eq!(v6, vec![entries[3].clone()]);
        ix.remove(&entries[1].1);
        ix.remove(&entries[5].1);
        ix.remove(&entries[4].1); // not an IP entry: nothing happens
        assert_eq!(q(&ix, "10.1.2.3"), vec![1, 3]);
        ix.insert(7, &e(Kind::Ipv4, "10.1.2.0/24"));
        assert_eq!(q(&ix, "10.1.2.3"), vec![1, 7, 3]);
    }
}
