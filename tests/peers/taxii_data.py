#!/usr/bin/env python3
"""Generate a TAXII 2.1 test fixture for medallion 3.0 (MemoryBackend).

    python3 taxii_data.py --out DIR --count N [--mix] [--port P] [--session-timeout S]
                          [--backend memory|fast]

Writes into DIR:
  data.json      medallion MemoryBackend data file: API root "api1", one collection
                 (COLLECTION_ID, can_read and can_write true) holding the STIX 2.1 objects,
                 with a manifest entry per object version whose date_added values are
                 distinct and strictly increasing (1 ms apart, from 2024-01-01T00:00:00Z).
  medallion.json medallion configuration (user "user", password "pass", max_page_size 100).
                 --backend memory (default): medallion's own MemoryBackend; run
                     medallion --host 127.0.0.1 --port P DIR/medallion.json
                 It is quadratic in the collection size: keep it to a few thousand objects.
                 --backend fast: medallion_fast.FastMemoryBackend (same answers, linear); run
                     python3 tests/peers/medallion_fast.py --host 127.0.0.1 --port P DIR/medallion.json
  expected.json  what a correct consumer ends up with (see README.md in this directory).
  later.json     a TAXII envelope to POST after a first sync (a revocation of the first
                 bulk indicator and one new indicator); expected.json "after_later" says
                 what must change.

Without --mix: N indicators "[ipv4-addr:value = '10.a.b.c']", distinct, deterministic.
With --mix: the same N plus the edge cases listed in EDGE CASES below.

The bulk indicators are stamped from one stix2-built template (building 100,000 objects
through stix2 costs ~0.55 ms each because of pattern validation); every edge case object
is built by stix2 itself, except the deliberately invalid one, which stix2 refuses.
"""

import argparse
import datetime as dt
import json
import os
import random
import sys
import time
import uuid

import stix2

API_ROOT = "api1"
COLLECTION_ID = "5b7c9e4a-1f2d-4e3b-8a6c-0d9e8f7a6b5c"
USER, PASSWORD = "user", "pass"
BASE_TIME = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
STIX_TIME = "2024-01-01T00:00:00.000Z"
FAR_FUTURE = "2099-12-31T23:59:59Z"
MEDIA_STIX21 = "application/stix+json;version=2.1"


def medallion_ts(t):
    # the format medallion itself writes for date_added (microseconds, Z)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def unix(ts):
    return int(dt.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc).timestamp())


class Ids:
    """Deterministic UUIDv4-shaped identifiers."""

    def __init__(self, seed):
        self.rng = random.Random(seed)

    def __call__(self, stype):
        return "%s--%s" % (stype, uuid.UUID(int=self.rng.getrandbits(128), version=4))


def bulk_value(i):
    n = i + 1  # 10.0.0.1, 10.0.0.2, ... (distinct up to 16,777,215)
    return "10.%d.%d.%d" % ((n >> 16) & 255, (n >> 8) & 255, n & 255)


def stix_dict(obj):
    return json.loads(obj.serialize())


def entry(value, kind, stix_id, severity=None, confidence=None, ttl=None):
    return {
        "value": value,
        "kind": kind,
        "tags": {
            "STIX - ID": stix_id,
            "STIX - Severity": severity,
            "STIX - Confidence": confidence,
            "Reputation Entries TTL": ttl,
        },
    }


def indicator(ids, pattern, **kw):
    kw.setdefault("created", STIX_TIME)
    kw.setdefault("modified", kw["created"])
    kw.setdefault("valid_from", STIX_TIME)
    kw.setdefault("pattern_type", "stix")
    return stix2.v21.Indicator(id=ids("indicator"), pattern=pattern, **kw)


def edge_cases(ids):
    """EDGE CASES: returns (objects in file order, expected entries, skipped, rejected,
    non-indicators, absent values). Revocation versions come last (see main)."""
    objs, entries, skipped, rejected, others = [], [], [], [], []
    absent = {"revoked": [], "expired": []}

    def take(pattern, value, kind, **kw):
        tags = kw.pop("tags", {})
        ind = indicator(ids, pattern, **kw)
        objs.append(stix_dict(ind))
        entries.append(entry(value, kind, ind.id, **tags))
        return ind

    def skip(pattern, reason, **kw):
        ind = indicator(ids, pattern, **kw)
        objs.append(stix_dict(ind))
        skipped.append({"id": ind.id, "pattern": pattern, "reason": reason})

    take("[ipv6-addr:value = '2001:db8::66']", "2001:db8::66", "ipv6")
    take("[ipv6-addr:value = '2001:db8:abcd::/48']", "2001:db8:abcd::/48", "ipv6")
    take("[ipv4-addr:value = '198.51.100.0/24']", "198.51.100.0/24", "ipv4")
    # host bits set: the SMS rule clears them
    take("[ipv4-addr:value = '192.168.66.127/24']", "192.168.66.0/24", "ipv4")
    take("[domain-name:value = 'evil.example']", "evil.example", "domain")
    take("[url:value = 'http://bad.example/path/x']", "http://bad.example/path/x", "url")
    sha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    take("[file:hashes.'SHA-256' = '%s']" % sha256, sha256, "sha256")
    sha1 = "da39a3ee5e6b4b0d3255bfef95601890afd80709"
    take("[file:hashes.'SHA-1' = '%s']" % sha1, sha1, "sha1")
    take("[ipv4-addr:value = '192.0.2.10']", "192.0.2.10", "ipv4",
         valid_until=FAR_FUTURE, tags={"ttl": unix(FAR_FUTURE)})
    take("[domain-name:value = 'labelled.example']", "labelled.example", "domain",
         labels=["severity-high", "confidence-80"], tags={"severity": "High", "confidence": 80})
    take("[url:value = 'http://confident.example/c']", "http://confident.example/c", "url",
         confidence=70, tags={"confidence": 70})

    # expired: valid_until in the past -> never present (not added, or swept at once)
    exp = indicator(ids, "[ipv4-addr:value = '192.0.2.20']",
                    valid_from="2019-01-01T00:00:00Z", valid_until="2020-01-01T00:00:00Z")
    objs.append(stix_dict(exp))
    absent["expired"].append("192.0.2.20")

    # revoked: version 1 here, version 2 (revoked: true, newer modified) at the end of the file
    rev1 = indicator(ids, "[ipv4-addr:value = '203.0.113.66']")
    objs.append(stix_dict(rev1))
    absent["revoked"].append("203.0.113.66")
    rev2 = rev1.new_version(modified="2024-06-01T00:00:00.000Z", revoked=True)

    skip("[file:hashes.MD5 = 'd41d8cd98f00b204e9800998ecf8427e']", "MD5 hash: not distributed")
    skip("[ipv4-addr:value = '1.1.1.1'] AND [domain-name:value = 'x.example']",
         "compound pattern")
    skip("[ipv4-addr:value = '192.0.2.30' OR ipv4-addr:value = '192.0.2.31']",
         "two comparisons")
    skip("alert ip 192.0.2.99 any -> any any (msg:\"rephub test\"; sid:1000001;)",
         "pattern_type snort", pattern_type="snort")

    # rejected: stix2 refuses the first (bad syntax), so it is written as a raw dict;
    # the second is a valid pattern with an impossible address
    bad = stix_dict(indicator(ids, "[ipv4-addr:value = '192.0.2.200']"))
    bad["pattern"] = "[ipv4-addr:value = '192.0.2.200'"
    objs.append(bad)
    rejected.append({"id": bad["id"], "pattern": bad["pattern"], "reason": "pattern syntax"})
    badv = indicator(ids, "[ipv4-addr:value = '999.1.2.3']")
    objs.append(stix_dict(badv))
    rejected.append({"id": badv.id, "pattern": badv.pattern, "reason": "invalid IPv4 address"})

    ident = stix2.v21.Identity(id=ids("identity"), created=STIX_TIME, modified=STIX_TIME,
                               name="rephub test feed", identity_class="organization")
    mal = stix2.v21.Malware(id=ids("malware"), created=STIX_TIME, modified=STIX_TIME,
                            name="rephub test malware", is_family=False)
    rel = stix2.v21.Relationship(id=ids("relationship"), created=STIX_TIME, modified=STIX_TIME,
                                 relationship_type="indicates",
                                 source_ref=entries[0]["tags"]["STIX - ID"], target_ref=mal.id)
    for o in (ident, mal, rel):
        objs.append(stix_dict(o))
        others.append({"id": o.id, "type": o.type})
    return objs, [stix_dict(rev2)], entries, skipped, rejected, others, absent


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output directory (created)")
    ap.add_argument("--count", type=int, required=True, help="number of bulk IPv4 indicators")
    ap.add_argument("--mix", action="store_true", help="add the edge-case objects")
    ap.add_argument("--port", type=int, default=5000,
                    help="port written into the discovery document's URLs (default 5000)")
    ap.add_argument("--session-timeout", type=int, default=600,
                    help="seconds a 'next' token lives (medallion's own default is 30)")
    ap.add_argument("--backend", choices=("memory", "fast"), default="memory",
                    help="memory: medallion's MemoryBackend (quadratic, small N only); "
                         "fast: medallion_fast.FastMemoryBackend (see medallion_fast.py)")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    if not 0 <= a.count <= 16_000_000:
        sys.exit("--count must be between 0 and 16,000,000")
    t0 = time.monotonic()
    os.makedirs(a.out, exist_ok=True)
    out = os.path.abspath(a.out)
    ids = Ids(a.seed)
    base = "http://127.0.0.1:%d" % a.port

    head, tail, entries, skipped, rejected, others = [], [], [], [], [], []
    absent = {"revoked": [], "expired": []}
    if a.mix:
        head, tail, entries, skipped, rejected, others, absent = edge_cases(ids)

    template = stix_dict(indicator(ids, "[ipv4-addr:value = '10.0.0.1']",
                                   name="rephub bulk", indicator_types=["malicious-activity"]))
    bulk = []
    for i in range(a.count):
        o = dict(template)
        o["id"] = ids("indicator")
        v = bulk_value(i)
        o["pattern"] = "[ipv4-addr:value = '%s']" % v
        bulk.append(o)
        entries.append(entry(v, "ipv4", o["id"]))
    objects = head + bulk + tail

    manifest = []
    ms = dt.timedelta(milliseconds=1)
    for n, o in enumerate(objects):
        manifest.append({
            "id": o["id"],
            "date_added": medallion_ts(BASE_TIME + n * ms),
            "version": o["modified"],
            "media_type": MEDIA_STIX21,
        })

    data = {
        "/discovery": {
            "title": "rephub test TAXII server",
            "description": "generated by tests/peers/taxii_data.py",
            "default": "%s/%s/" % (base, API_ROOT),
            "api_roots": ["%s/%s/" % (base, API_ROOT)],
        },
        API_ROOT: {
            "information": {
                "title": "rephub test API root",
                "versions": ["application/taxii+json;version=2.1"],
                "max_content_length": 10485760,
            },
            "status": [],
            "collections": [{
                "id": COLLECTION_ID,
                "title": "rephub indicators",
                "description": "%d bulk indicators%s" % (a.count, " + edge cases" if a.mix else ""),
                "can_read": True,
                "can_write": True,
                "media_types": [MEDIA_STIX21],
                "objects": objects,
                "manifest": manifest,
            }],
        },
    }
    data_file = os.path.join(out, "data.json")
    with open(data_file, "w") as f:
        json.dump(data, f, separators=(",", ":"))
    conf = {
        "backend": {
            "module": ("medallion.backends.memory_backend" if a.backend == "memory"
                       else "medallion_fast"),
            "module_class": "MemoryBackend" if a.backend == "memory" else "FastMemoryBackend",
            "filename": data_file,
            "session_timeout": a.session_timeout,
        },
        "users": {USER: PASSWORD},
        "taxii": {"max_page_size": 100},
    }
    with open(os.path.join(out, "medallion.json"), "w") as f:
        json.dump(conf, f, indent=2)

    # later.json: POST after a first sync (date_added becomes the POST time)
    first = bulk[0] if bulk else None
    later_objs, after = [], {"added": [], "removed": []}
    if first is not None:
        revoked = dict(first, modified="2024-07-01T00:00:00.000Z", revoked=True)
        later_objs.append(revoked)
        after["removed"].append(bulk_value(0))
    new = stix_dict(indicator(ids, "[domain-name:value = 'later.example']",
                              created="2024-07-01T00:00:00.000Z"))
    later_objs.append(new)
    after["added"].append(entry("later.example", "domain", new["id"]))
    with open(os.path.join(out, "later.json"), "w") as f:
        json.dump({"objects": later_objs}, f, indent=1)

    expected = {
        "count": a.count,
        "mix": a.mix,
        "discovery_url": base + "/taxii2/",
        "api_root_url": "%s/%s/" % (base, API_ROOT),
        "collection_id": COLLECTION_ID,
        "objects_url": "%s/%s/collections/%s/objects/" % (base, API_ROOT, COLLECTION_ID),
        "user": USER,
        "password": PASSWORD,
        "objects_in_file": len(objects),
        # what GET objects/ returns in total with the default match[version]=last
        "objects_served": len(objects) - len(tail),
        "indicators_served": len(objects) - len(tail) - len(others),
        "first_date_added": manifest[0]["date_added"] if manifest else None,
        "last_date_added": manifest[-1]["date_added"] if manifest else None,
        "entries": entries,
        "entry_count": len(entries),
        "absent": absent,
        "skipped": {"count": len(skipped), "objects": skipped},
        "rejected": {"count": len(rejected), "objects": rejected},
        "non_indicators": {"count": len(others), "objects": others},
        "after_later": after,
    }
    with open(os.path.join(out, "expected.json"), "w") as f:
        if len(entries) <= 1000:
            json.dump(expected, f, indent=1)
        else:
            json.dump(expected, f, separators=(",", ":"))
    print("wrote %d objects (%d entries expected) to %s in %.2f s"
          % (len(objects), len(entries), out, time.monotonic() - t0), file=sys.stderr)
    if a.backend == "memory" and len(objects) > 3000:
        print("warning: medallion's MemoryBackend needs minutes to hours for the first page "
              "of %d objects; use --backend fast" % len(objects), file=sys.stderr)


if __name__ == "__main__":
    main()
