#!/usr/bin/env python3
"""Page through a TAXII 2.1 collection with plain `requests` and time it (the baseline:
how fast the server itself can hand the objects out).

    python3 taxii_page.py --objects-url URL [--user U --password P] [--limit 100]
                          [--type indicator] [--added-after TS] [--expect N] [--quiet]

Follows `next` while `more` is true (falls back to added_after = X-TAXII-Date-Added-Last when
`more` is true without `next`). Prints one line per page unless --quiet, then a summary.
Exits 1 on an HTTP error, on an object id seen twice, or when --expect N does not match.
"""

import argparse
import sys
import time

import requests

ACCEPT = "application/taxii+json;version=2.1"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--objects-url", required=True,
                    help="http://HOST:PORT/<api-root>/collections/<id>/objects/")
    ap.add_argument("--user", default="user")
    ap.add_argument("--password", default="pass")
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--type", help="match[type] value, e.g. indicator")
    ap.add_argument("--added-after")
    ap.add_argument("--expect", type=int, help="number of objects that must come back")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args()

    s = requests.Session()
    s.auth = (a.user, a.password)
    s.headers["Accept"] = ACCEPT
    base = {"limit": str(a.limit)}
    if a.type:
        base["match[type]"] = a.type
    if a.added_after:
        base["added_after"] = a.added_after
    params = dict(base)
    seen = set()
    pages = 0
    slowest = 0.0
    first_page = None
    last_added = None
    t0 = time.monotonic()
    while True:
        t = time.monotonic()
        r = s.get(a.objects_url, params=params, timeout=3600)
        dt_page = time.monotonic() - t
        if r.status_code != 200:
            sys.exit("page %d: HTTP %d: %s" % (pages + 1, r.status_code, r.text[:300]))
        body = r.json()
        objs = body.get("objects", [])
        pages += 1
        slowest = max(slowest, dt_page)
        if first_page is None:
            first_page = dt_page
        for o in objs:
            key = (o["id"], o.get("modified"))
            if key in seen:
                sys.exit("object %s (version %s) returned twice" % key)
            seen.add(key)
        last_added = r.headers.get("X-TAXII-Date-Added-Last", last_added)
        if not a.quiet:
            print("page %d: %d objects in %.3f s, more=%s, first=%s last=%s"
                  % (pages, len(objs), dt_page, body.get("more"),
                     r.headers.get("X-TAXII-Date-Added-First"),
                     r.headers.get("X-TAXII-Date-Added-Last")))
        if not body.get("more"):
            break
        if body.get("next"):
            params = dict(base, next=body["next"])
        else:
            params = dict(base, added_after=last_added)
    total = time.monotonic() - t0
    print("%d objects in %d pages, %.2f s total; first page %.3f s, slowest page %.3f s, "
          "mean page %.3f s; last date_added %s"
          % (len(seen), pages, total, first_page, slowest, total / pages, last_added))
    if a.expect is not None and a.expect != len(seen):
        sys.exit("expected %d objects, got %d" % (a.expect, len(seen)))


if __name__ == "__main__":
    main()
