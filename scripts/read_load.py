#!/usr/bin/env python3
"""Closed-loop read load against a hub on loopback, with a command (an import) run in the middle.

Used by scripts/bench-read-during-import.sh. C client processes (not threads: no shared GIL) each
keep one HTTP/1.1 keep-alive connection and send the same GET with an API key, one request after
the other, recording (start, end, status) of every request on the system-wide monotonic clock.
Phases, back to back, with the same clients:

  warm-up   1 s, not counted
  before    --baseline seconds, nothing else running (the database as the hub started with it)
  import    from starting --import-cmd until it exits (bounded by --max-secs)
  after     --baseline seconds, nothing else running (the database after the import)

For each phase: reads/s = requests that completed inside the phase / phase length; latency p50,
p99 and max over the requests that STARTED inside the phase, however long they took (a read parked
behind the import counts with its whole wait, even if it ends after the import); non-200 answers;
and for the import phase the longest time with no read completing. Prints one JSON object.

Closed-loop clients hide stalls: a client stuck 7 s behind an import sends one request in those
7 s, so its wait is one sample among thousands (coordinated omission). So one more process, the
probe, sends the same GET open-loop: on a fixed schedule (--probe-rate a second, each on a new
connection, never waiting for earlier answers); a probe's latency is measured from the moment it was
due. Its p50, p99 and max per phase are the latency a reader arriving at a random moment sees.

Every loop is bounded: by the stop signal, by --max-secs and by a request count.
"""

import argparse
import asyncio
import http.client
import json
import multiprocessing as mp
import os
import resource
import subprocess
import sys
import time
from array import array
from urllib.parse import urlsplit

MAX_REQUESTS_PER_CLIENT = 20_000_000


def client(i, url, path, headers, stop, max_secs, out):
    u = urlsplit(url)
    assert u.hostname in ("127.0.0.1", "localhost", "::1"), "loopback only"
    deadline = time.monotonic() + max_secs

    def connect():
        return http.client.HTTPConnection(u.hostname, u.port, timeout=max_secs)

    conn = connect()
    recs = array("d")
    n = 0
    while not stop.is_set() and n < MAX_REQUESTS_PER_CLIENT:
        t0 = time.monotonic()
        if t0 > deadline:
            break
        try:
            conn.request("GET", path, headers=headers)
            r = conn.getresponse()
            r.read()
            status = r.status
        except (OSError, http.client.HTTPException):
            status = 0
            conn.close()
            conn = connect()
            time.sleep(0.01)  # a refused or reset connection: don't spin
        recs.extend((t0, time.monotonic(), float(status)))
        n += 1
    conn.close()
    with open(out, "wb") as f:
        recs.tofile(f)


def probe(url, path, key, rate, stop, max_secs, out):
    """Open loop: request k is due at t0 + k / rate, sent then on its own connection."""
    u = urlsplit(url)
    assert u.hostname in ("127.0.0.1", "localhost", "::1"), "loopback only"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    max_outstanding = max(16, min(hard, 65536) - 64)
    req = (f"GET {path} HTTP/1.1\r\nHost: {u.netloc}\r\nAuthorization: Bearer {key}\r\n"
           "Connection: close\r\n\r\n").encode()
    recs = array("d")

    async def one(due):
        status = 0
        try:
            r, w = await asyncio.open_connection(u.hostname, u.port)
            w.write(req)
            await w.drain()
            line = await r.readline()
            parts = line.split()
            status = int(parts[1]) if len(parts) > 1 else 0
            await r.read()  # until the hub closes (Connection: close)
            w.close()
        except (OSError, ValueError):
            pass
        recs.extend((due, time.monotonic(), float(status)))

    async def run():
        t0 = time.monotonic()
        deadline = t0 + max_secs
        tasks = set()
        k = 0
        while not stop.is_set() and k < rate * max_secs:
            due = t0 + k / rate
            now = time.monotonic()
            if due > deadline:
                break
            if due > now:
                await asyncio.sleep(due - now)
            if len(tasks) >= max_outstanding:
                recs.extend((due, due, -1.0))  # not sent: too many open; counted as an error
            else:
                t = asyncio.ensure_future(one(due))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
            k += 1
        if tasks:
            await asyncio.wait(tasks, timeout=max_secs)

    asyncio.run(run())
    with open(out, "wb") as f:
        recs.tofile(f)


def pct(sorted_vals, p):
    if not sorted_vals:
        return None
    i = round((len(sorted_vals) - 1) * p)
    return sorted_vals[min(i, len(sorted_vals) - 1)]


def phase_stats(recs, a, b):
    done = sum(1 for (_, e, _) in recs if a <= e < b)
    lat = sorted(e - s for (s, e, _) in recs if a <= s < b)
    errors = sum(1 for (s, _, st) in recs if a <= s < b and st != 200)
    ends = sorted(e for (_, e, _) in recs if a <= e < b)
    gap, prev = 0.0, a
    for e in ends + [b]:
        gap = max(gap, e - prev)
        prev = e
    ms = lambda v: None if v is None else round(v * 1000, 2)
    return {
        "secs": round(b - a, 3),
        "completed": done,
        "reads_per_s": round(done / (b - a), 1) if b > a else None,
        "started": len(lat),
        "p50_ms": ms(pct(lat, 0.50)),
        "p99_ms": ms(pct(lat, 0.99)),
        "max_ms": ms(lat[-1] if lat else None),
        "errors": errors,
        "longest_no_read_ms": ms(gap),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--path", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--baseline", type=float, default=10.0)
    ap.add_argument("--max-secs", type=float, default=900.0)
    ap.add_argument("--probe-rate", type=float, default=100.0)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("import_cmd", nargs=argparse.REMAINDER, help="-- command to run in the import phase")
    a = ap.parse_args()
    cmd = a.import_cmd[1:] if a.import_cmd[:1] == ["--"] else a.import_cmd
    if not cmd:
        sys.exit("no import command")
    headers = {"Authorization": f"Bearer {a.key}"}
    # Every client stops by itself at the latest after the whole run's bound.
    bound = a.max_secs + 2 * a.baseline + 30
    stop = mp.Event()
    outs = [os.path.join(a.workdir, f"reads-{i}.bin") for i in range(a.clients)]
    procs = [
        mp.Process(target=client, args=(i, a.url, a.path, headers, stop, bound, outs[i]))
        for i in range(a.clients)
    ]
    probe_out = os.path.join(a.workdir, "probe.bin")
    procs.append(mp.Process(target=probe, args=(a.url, a.path, a.key, a.probe_rate, stop, bound, probe_out)))
    for p in procs:
        p.start()
    time.sleep(1.0)  # warm-up: connections open, first answers
    t_b0 = time.monotonic()
    time.sleep(a.baseline)
    t_i0 = time.monotonic()
    imp = subprocess.run(cmd, capture_output=True, text=True, timeout=a.max_secs)
    t_i1 = time.monotonic()
    time.sleep(a.baseline)
    t_a1 = time.monotonic()
    stop.set()
    for p in procs:
        p.join(timeout=a.max_secs)
        if p.is_alive():
            p.terminate()
            p.join(5)
    def load(path):
        arr = array("d")
        with open(path, "rb") as f:
            arr.frombytes(f.read())
        return list(zip(arr[0::3], arr[1::3], arr[2::3]))

    recs = [r for o in outs for r in load(o)]
    probes = load(probe_out)
    print(json.dumps({
        "clients": a.clients,
        "import": {
            "wall_s": round(t_i1 - t_i0, 3),
            "exit": imp.returncode,
            "stdout": imp.stdout.strip()[-300:],
            "stderr": imp.stderr.strip()[-300:],
        },
        "before": phase_stats(recs, t_b0, t_i0),
        "during": phase_stats(recs, t_i0, t_i1),
        "after": phase_stats(recs, t_i1, t_a1),
        "probe_rate": a.probe_rate,
        # Every probe from 1 s before the import to 1 s after it: [due ms, latency ms, status],
        # times from the import's start, to see when in the import the slow ones were due.
        "probe_timeline": [
            [round((s - t_i0) * 1000, 1), round((e - s) * 1000, 2), int(st)]
            for (s, e, st) in sorted(probes)
            if t_i0 - 1 <= s < t_i1 + 1
        ],
        "probe": {
            "before": phase_stats(probes, t_b0, t_i0),
            "during": phase_stats(probes, t_i0, t_i1),
            "after": phase_stats(probes, t_i1, t_a1),
        },
    }))


if __name__ == "__main__":
    main()
