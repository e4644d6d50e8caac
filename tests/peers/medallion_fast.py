#!/usr/bin/env python3
"""medallion 3.0 with a linear-time memory backend, for large collections.

medallion's own MemoryBackend is quadratic in the collection size on every objects request
(filters/basic_filter.py: sort_and_paginate parses timestamps for every manifest x object
pair; filter_by_spec_version compares every object with every other) and deep-copies the
whole collection twice per request (get_collection). With 4,000 objects the first page
takes ~66 s; 100,000 objects cannot be served.

FastMemoryBackend keeps medallion's HTTP layer (Flask views, Basic auth, Accept checks, error
bodies) and its data-file format, and answers GET objects/ with the same envelope, order,
filters (match[type], match[id], match[version], match[spec_version], added_after), limit,
X-TAXII-Date-Added-First/Last headers and `next` sessions (one token per query, consumed page
by page, 400 when the filter parameters change, 500 when `limit` is missing, expiry counted
from the first request) -- in O(N) for the first page and O(limit) for each `next` page.

Run it like medallion (it sets the backend module itself):
    python3 medallion_fast.py --host 127.0.0.1 --port P DIR/medallion.json
(`taxii_data.py --backend fast` writes a config that names this module.)
"""

import copy
import os
import sys

from medallion.backends.memory_backend import MemoryBackend
from medallion.common import (create_resource, datetime_to_float, determine_spec_version,
                              get_timestamp, string_to_datetime)
from medallion.exceptions import ProcessingError


class FastMemoryBackend(MemoryBackend):

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._times = {}

    # -- helpers --
    def _dt(self, s):
        t = self._times.get(s)
        if t is None:
            t = self._times[s] = string_to_datetime(s)
        return t

    def _version(self, obj):
        # as medallion's find_att: version, then modified, created, _date_added
        for k in ("version", "modified", "created", "_date_added"):
            if k in obj:
                return self._dt(obj[k])
        raise KeyError("no version attribute")

    def _collection(self, api_root, collection_id):
        if api_root not in self.data:
            return None
        for c in self._get(api_root).get("collections", []):
            if c.get("id") == collection_id:
                return c
        return None

    # -- metadata without deep-copying the objects --
    def get_collections(self, api_root):
        if api_root not in self.data:
            return None
        cols = [{k: copy.deepcopy(v) for k, v in c.items()
                 if k not in ("manifest", "responses", "objects")}
                for c in self._get(api_root).get("collections", [])]
        return create_resource("collections", cols)

    def get_collection(self, api_root, collection_id):
        c = self._collection(api_root, collection_id)
        if c is None:
            return None
        return {k: copy.deepcopy(v) for k, v in c.items()
                if k not in ("manifest", "responses", "objects")}

    # -- objects --
    def _filter(self, objs, args):
        if args.get("match[type]"):
            types = args["match[type]"].split(",")
            objs = [o for o in objs if o.get("type") in types
                    or o.get("id", "").split("--")[0] in types]
        if args.get("match[id]"):
            ids = args["match[id]"].split(",")
            objs = [o for o in objs if o.get("id") in ids]
        return objs

    def get_objects(self, api_root, collection_id, filter_args, allowed_filters, limit):
        if "next" in filter_args:
            c = self._collection(api_root, collection_id)
            if c is None:
                return create_resource("objects", [], False, None), {}
            objs, more, headers, n = self.get_next(filter_args, allowed_filters,
                                                   c.get("manifest", []), limit)
            return create_resource("objects", objs, more, n), headers
        c = self._collection(api_root, collection_id)
        if c is None:
            return create_resource("objects", [], False, None), {}
        manifest = c.get("manifest", [])
        objs = self._filter(c.get("objects", []), filter_args)

        # date_added of each (id, version)
        added = {}
        for m in manifest:
            added.setdefault((m["id"], self._version(m)), m["date_added"])

        aa = filter_args.get("added_after")
        if aa:
            t = string_to_datetime(aa)
            objs = [o for o in objs
                    if (o["id"], self._version(o)) in added
                    and self._dt(added[(o["id"], self._version(o))]) > t]

        # spec_version (allowed for objects/)
        sv = filter_args.get("match[spec_version]")
        if sv:
            svs = sv.split(",")
            objs = [o for o in objs if determine_spec_version(o) in svs]
        else:
            best = {}
            for o in objs:
                s = determine_spec_version(o)
                if s > best.get(o["id"], ""):
                    best[o["id"]] = s
            objs = [o for o in objs if determine_spec_version(o) == best[o["id"]]]

        # match[version] (default last)
        wanted = (filter_args.get("match[version]") or "last").split(",")
        if "all" not in wanted:
            dates = {string_to_datetime(x) for x in wanted if x not in ("first", "last")}
            keep = {}
            byid = {}
            for o in objs:
                byid.setdefault(o["id"], []).append(o)
            for i, group in byid.items():
                for o in group:
                    if self._version(o) in dates:
                        keep.setdefault((i, self._version(o)), o)
                if "first" in wanted:
                    o = min(group, key=self._version)
                    keep.setdefault((i, self._version(o)), o)
                if "last" in wanted:
                    o = max(group, key=self._version)
                    keep.setdefault((i, self._version(o)), o)
            objs = list(keep.values())

        # order by the manifest's date_added (medallion sorts the manifest in place)
        manifest.sort(key=lambda x: x["date_added"])
        first = {}
        for o in objs:
            first.setdefault((o["id"], self._version(o)), o)
        ordered, dates_added = [], []
        for m in manifest:
            o = first.get((m["id"], self._version(m)))
            if o is not None:
                ordered.append(dict(o) if "_date_added" in o else o)
                dates_added.append(m["date_added"])
        if not ordered:
            return create_resource("objects", [], False, None), {}
        headers = {"X-TAXII-Date-Added-First": dates_added[0]}
        more, n = False, None
        if limit and limit < len(objs):
            page, rest = ordered[:limit], ordered[limit:]
            if len(ordered) >= limit:  # as medallion: set when the page is full
                headers["X-TAXII-Date-Added-Last"] = dates_added[limit - 1]
            if rest:
                more = True
                n = self.set_next(rest, filter_args)
                self.next[n]["dates"] = dates_added[limit:]
                self.next[n]["pos"] = 0
        else:
            page = ordered
            headers["X-TAXII-Date-Added-Last"] = dates_added[-1]
        for o in page:
            o.pop("_date_added", None)
        return create_resource("objects", page, more, n), headers

    def get_next(self, filter_args, allowed, manifest, lim):
        n = filter_args["next"]
        s = self.next.get(n)
        if s is None or "dates" not in s:
            if s is not None:  # a session made by the inherited code paths
                return super().get_next(filter_args, allowed, manifest, lim)
            raise ProcessingError("The server did not understand the request or filter "
                                  "parameters: 'next' not valid", 400)
        for arg in filter_args:
            vals = filter_args[arg].split(",")
            vals.sort()
            filter_args[arg] = vals
        del filter_args["next"]
        del filter_args["limit"]  # as medallion: KeyError (500) when limit is missing
        if filter_args != s["args"]:
            raise ProcessingError("The server did not understand the request or filter "
                                  "parameters: params changed over subsequent transaction", 400)
        pos = s["pos"]
        page = s["objects"][pos:pos + lim]
        dates = s["dates"][pos:pos + lim]
        s["pos"] = pos + len(page)
        more = s["pos"] < len(s["objects"])
        headers = {}
        if page:
            headers = {"X-TAXII-Date-Added-First": dates[0],
                       "X-TAXII-Date-Added-Last": dates[-1]}
        for o in page:
            o.pop("_date_added", None)
        if not more:
            self.next.pop(n, None)
            return page, False, headers, None
        return page, True, headers, n

    def _pop_expired_sessions(self):
        boundary = datetime_to_float(get_timestamp())
        for k in [k for k, r in list(self.next.items())
                  if boundary - r["request_time"] > self.timeout]:
            self.next.pop(k, None)


def main():
    # make "module": "medallion_fast" importable when run as a script
    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.insert(0, here)
    from medallion.scripts.run import main as medallion_main
    medallion_main()


if __name__ == "__main__":
    main()
