#!/usr/bin/env python3
"""On a shared machine, how much CPU did others use while a benchmark ran?

Every second prints: time, CPU used in that second by processes that are not a benchmark's (not
rephub, python3, wrk, curl, the propagation client, shell tools): compilers, test binaries,
fuzzers of whoever else is on the machine, in % of one core, then the three largest by name.
Run it in the background for the session and read the seconds of each run:

    python3 scripts/foreign_cpu.py 7200 > foreign.log &     # stops by itself after 7200 s
"""
import os, sys, time
MINE = {"rephub", "python3", "wrk", "curl", "propagation", "bash", "sleep", "awk", "cat", "cut", "grep",
        "head", "tail", "sed", "cp", "rm", "sync", "du", "time", "realpath", "ps", "bc", "gzip", "mktemp", "seq", "date"}
tick = os.sysconf("SC_CLK_TCK")
def snap():
    out = {}
    for p in os.listdir("/proc"):
        if not p.isdigit(): continue
        try:
            s = open(f"/proc/{p}/stat").read()
        except OSError:
            continue
        comm = s[s.index("(") + 1:s.rindex(")")]
        f = s[s.rindex(")") + 2:].split()
        out[p] = (comm, int(f[11]) + int(f[12]))
    return out
secs = float(sys.argv[1]) if len(sys.argv) > 1 else 7200
end = time.time() + secs
prev = snap()
while time.time() < end:
    time.sleep(1)
    cur = snap()
    per = {}
    for p, (comm, t) in cur.items():
        d = t - prev.get(p, (comm, 0))[1] if p in prev else t  # new process: count all it used
        if d > 0 and comm not in MINE and not comm.startswith("tokio") and not comm.startswith("rephub"):
            per[comm] = per.get(comm, 0) + d
    prev = cur
    total = sum(per.values()) * 100 / tick
    top = sorted(per.items(), key=lambda x: -x[1])[:3]
    print(f"{time.strftime('%H:%M:%S')} {total:.0f} " + " ".join(f"{c}:{v*100//tick}" for c, v in top), flush=True)
