#!/usr/bin/env python3
"""Enforcement benchmarks, rephub agent and CrowdSec's firewall bouncer side by side, on one hub.

  latency [N [PRESENT]]  entry written through the hub API -> present in the agent's nftables set
                  (in a network namespace), and in the bouncer's set (in another), N samples each;
                  with PRESENT, that many entries are loaded first (the agent only).
  load COUNT [agent]  full load of COUNT IPv4 addresses into nftables: the agent (snapshot from
                  the sync API) and the bouncer (startup pull from the hub's bouncer API); with
                  `agent`, the agent only (the bouncer's load time grows with the square of COUNT).

Needs root, nftables, iproute2 and crowdsec-firewall-bouncer; builds rephub in release mode.
Everything runs in namespaces this script creates (removed at the end) and on their veth links.
"""
import json, os, random, shutil, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# REPHUB_BIN: use that binary and build nothing; otherwise target/release/rephub, built here.
BIN = os.path.abspath(os.environ.get("REPHUB_BIN") or os.path.join(ROOT, "target/release/rephub"))
HUB_IP = "10.240.0.1"


def sh(cmd, check=True, **kw):
    return subprocess.run(cmd, shell=True, check=check, capture_output=True, text=True, **kw)


class Lab:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="rephub-bench-")
        self.procs = []
        for ns, n in (("rhbA", 2), ("rhbB", 3)):
            sh(f"ip netns del {ns}", check=False)
            sh(f"ip link del v{ns}", check=False)
            sh(f"ip netns add {ns}")
            sh(f"ip link add v{ns} type veth peer name v{ns}i")
            sh(f"ip link set v{ns}i netns {ns}")
            sh(f"ip addr add 10.240.{n}.1/24 dev v{ns}; ip link set v{ns} up")
            sh(f"ip -n {ns} addr add 10.240.{n}.2/24 dev v{ns}i; ip -n {ns} link set v{ns}i up; ip -n {ns} link set lo up")
            # Probe addresses outside (the hub listens on all of them): blocking one stops TCP
            # connections from inside the namespace to it.
            for i in range(100, 251):
                sh(f"ip addr add 10.240.{n}.{i}/32 dev v{ns}")
        self.hub = None

    def start_hub(self):
        port = 18080
        p = subprocess.Popen([BIN, "serve", "--listen", f"0.0.0.0:{port}", "--tls-listen", "127.0.0.1:0",
                              "--data-dir", os.path.join(self.dir, "hub")],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                             env={**os.environ, "REPHUB_LOG": "warn"})
        self.procs.append(p)
        key = None
        for line in p.stdout:
            if line.strip().startswith("rh_"):
                key = line.strip()
            if line.startswith("rephub hub listening on http://"):
                break
        self.key = key
        self.base = {"A": f"http://10.240.2.1:{port}", "B": f"http://10.240.3.1:{port}",
                     "local": f"http://127.0.0.1:{port}"}

    def api(self, method, path, body=None):
        req = urllib.request.Request(self.base["local"] + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Authorization": f"Bearer {self.key}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=600) as r:
            return json.loads(r.read() or b"null")

    def setup(self):
        self.api("POST", "/api/v1/filters", {"name": "block High", "action": "block", "precedence": 1,
                                              "criteria": ["Trend Micro Severity=High"]})
        self.api("POST", "/api/v1/profiles", {"name": "perimeter", "filters": ["block High"]})
        self.agent_token = self.api("POST", "/api/v1/devices", {"name": "agent", "profile": "perimeter"})["token"]
        self.bouncer_key = self.api("POST", "/api/v1/devices", {"name": "bouncer", "profile": "perimeter"})["token"]

    def start_agent(self):
        log = open(os.path.join(self.dir, "agent.log"), "w")
        p = subprocess.Popen(["ip", "netns", "exec", "rhbA", BIN, "agent", "--hub", self.base["A"],
                              "--token", self.agent_token, "--state-dir", os.path.join(self.dir, "agent"),
                              "--log", "info"], stdout=subprocess.DEVNULL, stderr=log)
        self.procs.append(p)
        return p

    def start_bouncer(self, freq="1s"):
        cfg = os.path.join(self.dir, "bouncer.yaml")
        with open(cfg, "w") as f:
            f.write(f"""mode: nftables
pid_dir: {self.dir}
update_frequency: {freq}
daemonize: true
log_mode: stdout
log_level: info
api_url: {self.base['B']}/
api_key: {self.bouncer_key}
deny_action: DROP
supported_decisions_types:
  - ban
nftables:
  ipv4:
    enabled: true
    set-only: false
    table: crowdsec
    chain: crowdsec-chain
  ipv6:
    enabled: false
""")
        log = open(os.path.join(self.dir, "bouncer.log"), "w")
        p = subprocess.Popen(["ip", "netns", "exec", "rhbB", "crowdsec-firewall-bouncer", "-c", cfg],
                             stdout=log, stderr=log)
        self.procs.append(p)
        return p

    def probe(self, ns):
        """A process in the namespace that, given an address, connects to it over and over and
        prints the (system-wide monotonic) time of the first attempt that no longer gets through:
        enforcement measured with packets. (`nft get element` on a set of a million elements takes
        about a minute, so it cannot be the probe.)"""
        code = r'''
import socket, sys, time
for line in sys.stdin:
    addr = line.strip()
    t0 = time.monotonic()
    while True:
        start = time.monotonic()
        s = socket.socket()
        s.settimeout(0.05)
        try:
            s.connect((addr, 18080))
            blocked = False
        except socket.timeout:
            blocked = True
        except OSError:
            blocked = False
        finally:
            s.close()
        if blocked or start - t0 > 900:
            break
        time.sleep(0.002)
    print(start if blocked else -1, flush=True)
'''
        p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", code],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.procs.append(p)
        return p

    def blocked_at(self, probe, ip):
        """Start watching `ip`; returns a function that waits for the time it was blocked."""
        probe.stdin.write(ip + "\n")
        probe.stdin.flush()
        return lambda: float(probe.stdout.readline())

    def close(self):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        for ns in ("rhbA", "rhbB"):
            sh(f"ip netns del {ns}", check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def preload(lab, count):
    """COUNT random public IPv4 addresses, imported with the CLI while the hub runs; returns when the
    hub's filter set holds them all."""
    path = os.path.join(lab.dir, "list.csv")
    with open(path, "w") as f:
        seen = set()
        while len(seen) < count:
            a = random.getrandbits(32)
            if a >> 24 in (0, 10, 127) or a >> 28 >= 14:
                continue
            seen.add(a)
        for a in seen:
            f.write(f"{a >> 24}.{(a >> 16) & 255}.{(a >> 8) & 255}.{a & 255},Trend Micro Severity,High\n")
    t = time.monotonic()
    sh(f"{BIN} import --data-dir {lab.dir}/hub -q {path}")
    print(f"imported {count} entries into the hub in {time.monotonic() - t:.1f} s")
    t = time.monotonic()
    while lab.api("GET", "/api/v1/profiles")["profiles"][0]["selected"] < count:
        time.sleep(0.5)
    print(f"the hub's filter set selected them {time.monotonic() - t:.1f} s after the import")


def latency(lab, n, present=0):
    if n > 150:
        # Each sample blocks an address of its own, 10.240.N.100 to .249 (set up in Lab).
        sys.exit("latency: at most 150 samples per run (one probe address each)")
    if present:
        preload(lab, present)
    lab.start_agent()
    rows = {"rephub agent (long poll)": []}
    if not present:
        # The bouncer's full load grows with the square of the count: compared on an empty set.
        lab.start_bouncer("1s")
        rows["crowdsec-firewall-bouncer (update_frequency 1s)"] = []
    probes = {"rephub agent (long poll)": (lab.probe("rhbA"), 2),
              "crowdsec-firewall-bouncer (update_frequency 1s)": (lab.probe("rhbB"), 3)}
    # Wait until the enforcers run: one entry, blocked for both.
    first = {name: lab.blocked_at(p, f"10.240.{k}.250") for name, (p, k) in probes.items() if name in rows}
    for k in (2, 3):
        lab.api("POST", "/api/v1/entries", {"entries": [{"value": f"10.240.{k}.250", "tags": {"Trend Micro Severity": "High"}}]})
    for w in first.values():
        w()
    time.sleep(2)
    acked = []  # how long the write itself took (durable in the hub's database when answered)
    for i in range(n):
        pending = {name: lab.blocked_at(probes[name][0], f"10.240.{probes[name][1]}.{100 + i}") for name in rows}
        time.sleep(0.05)
        t0 = time.monotonic()
        lab.api("POST", "/api/v1/entries", {"entries": [
            {"value": f"10.240.{k}.{100 + i}", "tags": {"Trend Micro Severity": "High"}} for k in (2, 3)]})
        acked.append(time.monotonic() - t0)
        for name, wait in pending.items():
            t = wait()
            rows[name].append(t - t0 if t > 0 else float("inf"))
        time.sleep(random.uniform(0.1, 1.1))  # writes at random phases of the bouncer's poll
    print(f"write through the hub API -> element in the nftables set, {n} samples, {present} entries present")
    print("| enforcer | p50 | p90 | p99 | max |\n|---|---|---|---|---|")
    for name, xs in rows.items():
        print(f"| {name} | {pct(xs,50)*1000:.0f} ms | {pct(xs,90)*1000:.0f} ms | {pct(xs,99)*1000:.0f} ms | {max(xs)*1000:.0f} ms |")
    xs = acked
    print(f"| (of which: the write, until the hub acknowledged it) | {pct(xs,50)*1000:.0f} ms | {pct(xs,90)*1000:.0f} ms | {pct(xs,99)*1000:.0f} ms | {max(xs)*1000:.0f} ms |")
    # Per sample, enforced minus acknowledged: what follows the durable commit (the hub's answer to
    # the parked poll, the agent, nft). Negative when the packet was dropped before the POST's
    # answer arrived.
    xs = [t - a for t, a in zip(rows["rephub agent (long poll)"], acked)]
    print(f"| (rephub agent: enforced minus acknowledged, per sample) | {pct(xs,50)*1000:.0f} ms | {pct(xs,90)*1000:.0f} ms | {pct(xs,99)*1000:.0f} ms | {max(xs)*1000:.0f} ms |")


def load(lab, count, agent_only=False):
    preload(lab, count)
    for k in (2, 3):
        lab.api("POST", "/api/v1/entries", {"entries": [{"value": f"10.240.{k}.250", "tags": {"Trend Micro Severity": "High"}}]})
    print(f"full load of {count + 2} IPv4 addresses into nftables (time until traffic to the last one is blocked)")
    print("| enforcer | time to enforcement | CPU seconds (with children) |\n|---|---|---|")
    runs = [("rephub agent (sync snapshot, nft -f)", lab.start_agent, "rhbA", 2),
            ("crowdsec-firewall-bouncer (startup stream)", lambda: lab.start_bouncer("10s"), "rhbB", 3)]
    notes = []
    for name, start, ns, k in runs[:1] if agent_only else runs:
        probe = lab.probe(ns)
        t0 = time.monotonic()
        wait = lab.blocked_at(probe, f"10.240.{k}.250")
        p = start()
        t = wait()
        if ns == "rhbB":
            # The bouncer adds decisions in batches as it reads them: the probe address may come
            # early. Its load is done when it logs the count it added.
            log = os.path.join(lab.dir, "bouncer.log")
            while time.monotonic() - t0 < 900 and "decisions added" not in open(log).read():
                time.sleep(0.05)
            t = time.monotonic()
        dt = t - t0
        # utime, stime, and those of waited-for children (the agent's nft runs).
        fields = open(f"/proc/{p.pid}/stat").read().split(")")[1].split()
        cpu = sum(float(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")
        print(f"| {name} | {dt:.1f} s{'' if t > 0 else ' (gave up)'} | {cpu:.1f} |")
        if ns == "rhbA":
            # The agent's own account of the load (answer, parse, matcher, firewall).
            log = os.path.join(lab.dir, "agent.log")
            while time.monotonic() - t0 < 900 and "applied a snapshot" not in open(log).read():
                time.sleep(0.05)
            for line in open(log):
                if "a snapshot" in line:
                    notes.append("agent: " + line.split("INFO", 1)[-1].strip())
            # Its memory once the load is applied (`ip netns exec` execs the agent: same pid).
            status = dict(l.split(":", 1) for l in open(f"/proc/{p.pid}/status") if ":" in l)
            mib = lambda k: int(status[k].split()[0]) // 1024
            notes.append(f"agent memory after the load: {mib('VmRSS')} MiB resident, "
                         f"peak {mib('VmHWM')} MiB")
    for n in notes:
        print(f"- {n}")


def main():
    if not os.environ.get("REPHUB_BIN") and (not os.path.exists(BIN) or "--no-build" not in sys.argv):
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "rephub"], cwd=ROOT, check=True)
    args = [a for a in sys.argv[1:] if a != "--no-build"]
    mode = args[0] if args else "latency"
    lab = Lab()
    try:
        lab.start_hub()
        lab.setup()
        if mode == "latency":
            latency(lab, int(args[1]) if len(args) > 1 else 50, int(args[2]) if len(args) > 2 else 0)
        else:
            load(lab, int(args[1]) if len(args) > 1 else 100_000, "agent" in args[2:])
    finally:
        lab.close()


if __name__ == "__main__":
    main()
