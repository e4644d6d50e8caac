#!/usr/bin/env python3
"""Drive a Vision One API v3.0 server with the official SDK, pytmv1 0.11.0.

    python3 pytmv1_check.py --url http://127.0.0.1:PORT --token TOKEN [--count 450] [--keep] [-v]

Steps (stops with exit status 1 and a FAIL line at the first failure):
  1. check_connectivity() succeeds; with a wrong token it is an error result (401), no crash
  2. add_suspicious(): --count objects (ip v4 and v6, domain, url, fileSha1, fileSha256) with
     every risk level, both scan actions, daysToExpiration 1/30/365/-1, with and without
     a description, sent in batches of 100; every item answers 201
  3. list_suspicious() returns a first page with a nextLink; consume_suspicious() follows
     nextLink and returns each added object exactly once with its type, value, risk level,
     scan action, description, inExceptionList false and an expiry that matches the days
  4. delete_suspicious() on a tenth of them; they are gone, the rest are still there;
     deleting an absent object is an error result (404 item), no crash
  5. add_exception() for two listed objects and one unlisted value; list_exception() and
     consume_exception() return them; the two listed objects now show inExceptionList true;
     delete_exception() removes them and inExceptionList goes back to false
  6. add_suspicious() with one good and two invalid values: the 207 answer holds a 400 item,
     which the SDK turns into an error result (no crash); the good item is added anyway
  7. cleanup: every object this run added is deleted (unless --keep)

Values are canonical as a server stores them: lowercase domains and hex hashes, compressed
lowercase IPv6, URLs "http://host.example/path". Objects left over by an earlier run (same
values) are deleted first, so the check can be repeated against one server.
"""

import argparse
import datetime as dt
import hashlib
import ipaddress
import logging
import sys
import time

import pytmv1
from pytmv1 import (ObjectRequest, ObjectType, ResultCode, RiskLevel, ScanAction,
                    SuspiciousObjectRequest)

RISKS = [RiskLevel.HIGH, RiskLevel.MEDIUM, RiskLevel.LOW, RiskLevel.NO_RISK]
ACTIONS = [ScanAction.BLOCK, ScanAction.LOG]
DAYS = [30, 1, 365, -1]
KINDS = ["ipv4", "ipv6", "domain", "url", "fileSha1", "fileSha256"]
BATCH = 100


class Fail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def describe(res):
    """One line for an SDK result (Result or MultiResult)."""
    if res.result_code == ResultCode.SUCCESS:
        return "SUCCESS"

    def short(m):
        m = str(m) if m is not None else None
        return m if m is None or len(m) <= 200 else m[:200] + "..."
    errs = getattr(res, "errors", None)
    if errs is not None:
        return "ERROR %s" % [(e.status, e.code, short(e.message)) for e in errs]
    e = res.error
    return "ERROR %s" % ((e.status, e.code, short(e.message)),) if e else "ERROR (no detail)"


def value_for(kind, n):
    if kind == "ipv4":
        return "198.51.%d.%d" % (100 + n // 250, 1 + n % 250)
    if kind == "ipv6":
        return str(ipaddress.IPv6Address("2001:db8:5e7::") + n + 1)
    if kind == "domain":
        return "so-%d.rephub-check.example" % n
    if kind == "url":
        return "http://so-%d.rephub-check.example/path/%d" % (n, n)
    if kind == "fileSha1":
        return hashlib.sha1(b"rephub-check-%d" % n).hexdigest()
    return hashlib.sha256(b"rephub-check-%d" % n).hexdigest()


def otype(kind):
    return {"ipv4": ObjectType.IP, "ipv6": ObjectType.IP, "domain": ObjectType.DOMAIN,
            "url": ObjectType.URL, "fileSha1": ObjectType.FILE_SHA1,
            "fileSha256": ObjectType.FILE_SHA256}[kind]


def plan(count):
    """The objects to add: list of dicts (type, value, risk, action, days, description)."""
    objs = []
    for i in range(count):
        kind = KINDS[i % len(KINDS)]
        n = i // len(KINDS)
        objs.append({
            "type": otype(kind),
            "value": value_for(kind, n),
            "risk": RISKS[i % len(RISKS)],
            "action": ACTIONS[(i // 4) % len(ACTIONS)],
            "days": DAYS[(i // 3) % len(DAYS)],
            # every fifth without a description (the SDK then omits the key)
            "description": None if i % 5 == 4 else "rephub pytmv1 check %d (%s)" % (i, kind),
        })
    return objs


def parse_time(s):
    return dt.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)


def key(t, v):
    return (t.value if hasattr(t, "value") else str(t), v)


class Checker:
    def __init__(self, url, token, count, keep):
        self.url, self.token, self.count, self.keep = url, token, count, keep
        self.client = pytmv1.init("rephub-check", token, url, read_timeout=60)
        self.step = ""
        self.added = {}  # (type, value) -> plan dict, as currently expected on the server

    def say(self, msg):
        print("[%s] %s" % (self.step, msg), flush=True)

    # ---- helpers over the SDK ----
    def consume_all(self, what="suspicious"):
        items = []
        fn = self.client.object.consume_suspicious if what == "suspicious" \
            else self.client.object.consume_exception
        res = fn(items.append)
        check(res.result_code == ResultCode.SUCCESS,
              "consume_%s failed: %s" % (what, describe(res)))
        check(res.response.total_consumed == len(items),
              "consume_%s: total_consumed %d but %d items"
              % (what, res.response.total_consumed, len(items)))
        return items

    def ours(self, items, values):
        """Items whose (type, value) is one of ours; fails on a duplicate."""
        got = {}
        for it in items:
            k = key(it.type, it.value)
            if k in values:
                check(k not in got, "%s %s returned twice" % k)
                got[k] = it
        return got

    def delete(self, keys, expect_ok=True):
        reqs = [ObjectRequest(object_type=t, object_value=v) for t, v in keys]
        for i in range(0, len(reqs), BATCH):
            res = self.client.object.delete_suspicious(*reqs[i:i + BATCH])
            if expect_ok:
                check(res.result_code == ResultCode.SUCCESS,
                      "delete_suspicious failed: %s" % describe(res))
                st = [m.status for m in res.response.items]
                check(st == [204] * len(st), "delete_suspicious statuses %s, want 204" % st)

    # ---- steps ----
    def connectivity(self):
        self.step = "connectivity"
        res = self.client.system.check_connectivity()
        check(res.result_code == ResultCode.SUCCESS,
              "check_connectivity failed: %s" % describe(res))
        check(res.response.status == "available",
              "connectivity status %r, want 'available'" % res.response.status)
        bad = pytmv1.init("rephub-check-badtoken", self.token + "-wrong", self.url)
        res = bad.system.check_connectivity()
        check(res.result_code == ResultCode.ERROR,
              "check_connectivity with a wrong token succeeded")
        check(res.error is not None and res.error.status == 401,
              "wrong token: want an error with status 401, got %s" % describe(res))
        self.say("ok (wrong token -> %s)" % describe(res))

    def cleanup_leftovers(self, objs):
        self.step = "leftovers"
        wanted = {key(o["type"], o["value"]) for o in objs}
        wanted |= {key(t, v) for t, v in self.extra_values()}
        found = self.ours(self.consume_all(), wanted)
        if found:
            self.delete(list(found))
            self.say("deleted %d objects left over by an earlier run" % len(found))
        exc = self.ours(self.consume_all("exception"), wanted)
        if exc:
            res = self.client.object.delete_exception(
                *[ObjectRequest(object_type=t, object_value=v) for t, v in exc])
            check(res.result_code == ResultCode.SUCCESS,
                  "delete_exception of leftovers failed: %s" % describe(res))
            self.say("deleted %d exceptions left over by an earlier run" % len(exc))

    def extra_values(self):
        return [(ObjectType.FILE_SHA256, hashlib.sha256(b"rephub-check-exception").hexdigest()),
                (ObjectType.DOMAIN, "good.rephub-check.example")]

    def add(self, objs):
        self.step = "add"
        t0 = time.monotonic()
        for i in range(0, len(objs), BATCH):
            batch = objs[i:i + BATCH]
            reqs = [SuspiciousObjectRequest(object_type=o["type"], object_value=o["value"],
                                            description=o["description"], risk_level=o["risk"],
                                            scan_action=o["action"],
                                            days_to_expiration=o["days"]) for o in batch]
            res = self.client.object.add_suspicious(*reqs)
            check(res.result_code == ResultCode.SUCCESS,
                  "add_suspicious (items %d..%d) failed: %s" % (i, i + len(batch) - 1,
                                                                describe(res)))
            st = [m.status for m in res.response.items]
            check(st == [201] * len(batch), "add_suspicious statuses %s, want 201 each" % st)
            for o in batch:
                self.added[key(o["type"], o["value"])] = o
        self.added_at = dt.datetime.now(dt.timezone.utc)
        self.say("%d objects added in %.2f s" % (len(objs), time.monotonic() - t0))

    def verify_listing(self, exceptions=()):
        got = self.ours(self.consume_all(), set(self.added))
        missing = [k for k in self.added if k not in got]
        check(not missing, "%d added objects not listed, e.g. %s" % (len(missing), missing[:3]))
        for k, it in got.items():
            o = self.added[k]
            check(it.risk_level == o["risk"],
                  "%s %s: riskLevel %s, want %s" % (k + (it.risk_level.value, o["risk"].value)))
            check(it.scan_action == o["action"],
                  "%s %s: scanAction %s, want %s" % (k + (it.scan_action.value,
                                                        o["action"].value)))
            want_desc = o["description"]
            if want_desc is not None:
                check(it.description == want_desc,
                      "%s %s: description %r, want %r" % (k + (it.description, want_desc)))
            want_exc = k in exceptions
            check(it.in_exception_list is want_exc,
                  "%s %s: inExceptionList %s, want %s" % (k + (it.in_exception_list, want_exc)))
            check(isinstance(it.last_modified_date_time, str) and it.last_modified_date_time,
                  "%s %s: no lastModifiedDateTime" % k)
            if o["days"] > 0:
                try:
                    exp = parse_time(it.expired_date_time)
                except ValueError:
                    raise Fail("%s %s: expiredDateTime %r is not yyyy-MM-ddThh:mm:ssZ"
                               % (k + (it.expired_date_time,)))
                want = self.added_at + dt.timedelta(days=o["days"])
                check(abs((exp - want).total_seconds()) <= 86400 + 3600,
                      "%s %s: expiredDateTime %s, want about %s (daysToExpiration %d)"
                      % (k + (it.expired_date_time, want.strftime("%Y-%m-%dT%H:%M:%SZ"),
                              o["days"])))
        return got

    def listing(self):
        self.step = "list"
        res = self.client.object.list_suspicious()
        check(res.result_code == ResultCode.SUCCESS,
              "list_suspicious failed: %s" % describe(res))
        first = res.response
        check(first.next_link, "list_suspicious: no nextLink on the first page although "
              "%d objects were added (the default page must hold at most 200)" % len(self.added))
        check(0 < len(first.items) <= 200,
              "list_suspicious: first page has %d items" % len(first.items))
        t0 = time.monotonic()
        got = self.verify_listing()
        self.say("first page %d items + nextLink; consume_suspicious returned all %d, each "
                 "once, right fields (%.2f s)" % (len(first.items), len(got),
                                                 time.monotonic() - t0))

    def deletion(self):
        self.step = "delete"
        keys = list(self.added)[::10]
        self.delete(keys)
        for k in keys:
            del self.added[k]
        left = self.ours(self.consume_all(), set(keys))
        check(not left, "%d deleted objects still listed, e.g. %s" % (len(left), list(left)[:3]))
        self.verify_listing()
        # deleting an absent object: 207 with a 404 item -> error result
        res = self.client.object.delete_suspicious(
            ObjectRequest(object_type=ObjectType(keys[0][0]), object_value=keys[0][1]))
        check(res.result_code == ResultCode.ERROR,
              "deleting an absent object succeeded (want a 404 item)")
        check(any(e.status == 404 for e in res.errors),
              "deleting an absent object: want a 404 item, got %s" % describe(res))
        self.say("%d deleted and gone, %d still listed; absent -> %s"
                 % (len(keys), len(self.added), describe(res)))

    def exceptions(self):
        self.step = "exceptions"
        listed = [next(k for k in self.added if k[0] == "ip"),
                  next(k for k in self.added if k[0] == "domain")]
        extra = self.extra_values()[0]
        exc_keys = listed + [key(*extra)]
        reqs = [ObjectRequest(object_type=ObjectType(t), object_value=v,
                              description="rephub pytmv1 check exception")
                for t, v in exc_keys]
        res = self.client.object.add_exception(*reqs)
        check(res.result_code == ResultCode.SUCCESS, "add_exception failed: %s" % describe(res))
        st = [m.status for m in res.response.items]
        check(st == [201] * len(reqs), "add_exception statuses %s, want 201 each" % st)

        res = self.client.object.list_exception()
        check(res.result_code == ResultCode.SUCCESS, "list_exception failed: %s" % describe(res))
        check(isinstance(res.response.items, list), "list_exception: no items list")
        got = self.ours(self.consume_all("exception"), set(exc_keys))
        missing = [k for k in exc_keys if k not in got]
        check(not missing, "exceptions not listed: %s" % missing)
        for k, it in got.items():
            check(it.description == "rephub pytmv1 check exception",
                  "exception %s %s: description %r" % (k + (it.description,)))
            check(it.last_modified_date_time, "exception %s %s: no lastModifiedDateTime" % k)
        self.verify_listing(exceptions=set(listed))
        self.say("%d exceptions listed; %d suspicious objects show inExceptionList true"
                 % (len(exc_keys), len(listed)))

        res = self.client.object.delete_exception(
            *[ObjectRequest(object_type=ObjectType(t), object_value=v) for t, v in exc_keys])
        check(res.result_code == ResultCode.SUCCESS,
              "delete_exception failed: %s" % describe(res))
        left = self.ours(self.consume_all("exception"), set(exc_keys))
        check(not left, "exceptions still listed after delete_exception: %s" % list(left))
        self.verify_listing()
        self.say("delete_exception: gone, inExceptionList false again")

    def error_answer(self):
        self.step = "error"
        good = self.extra_values()[1]
        reqs = [
            SuspiciousObjectRequest(object_type=good[0], object_value=good[1],
                                    risk_level=RiskLevel.LOW, scan_action=ScanAction.LOG,
                                    days_to_expiration=30, description="rephub good item"),
            SuspiciousObjectRequest(object_type=ObjectType.IP, object_value="999.1.2.3",
                                    scan_action=ScanAction.BLOCK, days_to_expiration=30),
            SuspiciousObjectRequest(object_type=ObjectType.FILE_SHA1, object_value="abc123",
                                    scan_action=ScanAction.BLOCK, days_to_expiration=30),
        ]
        try:
            res = self.client.object.add_suspicious(*reqs)
        except Exception as e:  # the SDK must not raise
            raise Fail("add_suspicious with invalid values raised %s: %s"
                       % (type(e).__name__, e))
        check(res.result_code == ResultCode.ERROR,
              "add_suspicious with invalid values succeeded")
        check(res.response is None, "error result carries a response")
        st = [e.status for e in res.errors]
        check(len(st) == 3 and st[0] in (200, 201) and st[1] == 400 and st[2] == 400,
              "want item statuses [201, 400, 400], got %s" % describe(res))
        check(all(e.code for e in res.errors[1:]),
              "400 items without an error code: %s" % describe(res))
        got = self.ours(self.consume_all(), {key(*good)})
        check(key(*good) in got, "the valid item of the partly failed request was not added")
        check(got[key(*good)].risk_level == RiskLevel.LOW, "the valid item has the wrong risk")
        self.added[key(*good)] = {"type": good[0], "value": good[1], "risk": RiskLevel.LOW,
                                  "action": ScanAction.LOG, "days": 30,
                                  "description": "rephub good item"}
        self.say("207 with 400 items -> %s; the valid item was added" % describe(res))

    def cleanup(self):
        self.step = "cleanup"
        keys = list(self.added)
        self.delete(keys)
        left = self.ours(self.consume_all(), set(keys))
        check(not left, "%d objects still listed after cleanup" % len(left))
        self.added.clear()
        self.say("deleted the %d remaining objects" % len(keys))

    def run(self):
        t0 = time.monotonic()
        objs = plan(self.count)
        self.connectivity()
        self.cleanup_leftovers(objs)
        self.add(objs)
        self.listing()
        self.deletion()
        self.exceptions()
        self.error_answer()
        if not self.keep:
            self.cleanup()
        return time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True, help="server base URL (pytmv1 appends /v3.0)")
    ap.add_argument("--token", required=True)
    ap.add_argument("--count", type=int, default=450,
                    help="suspicious objects to add (default 450; at least 201)")
    ap.add_argument("--keep", action="store_true", help="do not delete the objects at the end")
    ap.add_argument("-v", "--verbose", action="store_true", help="pytmv1 request logging")
    a = ap.parse_args()
    if a.count < 201:
        sys.exit("--count must be at least 201 so that listing needs several pages")
    logging.basicConfig(level=logging.INFO if a.verbose else logging.CRITICAL,
                        format="%(levelname)s %(name)s %(message)s")
    c = Checker(a.url, a.token, a.count, a.keep)
    try:
        took = c.run()
    except Fail as e:
        print("FAIL [%s] %s" % (c.step, e), file=sys.stderr)
        sys.exit(1)
    except Exception as e:  # an SDK crash (e.g. an error answer without an error envelope)
        print("FAIL [%s] crashed: %s: %s" % (c.step, type(e).__name__, e), file=sys.stderr)
        sys.exit(1)
    print("OK pytmv1 %s against %s: connectivity, %d suspicious objects added/listed/deleted "
          "across pages, exceptions, error answers handled (%.1f s)"
          % (pytmv1.__version__, a.url, a.count, took))


if __name__ == "__main__":
    main()
