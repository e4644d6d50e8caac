#!/usr/bin/env python3
"""Enforcement benchmarks, rephub agent and CrowdSec's firewall bouncer side by side, on one hub.

  latency [N]     entry written through the hub API -> present in the agent's nftables set (in a
                  network namespace), and in the bouncer's set (in another), N samples each.
  load COUNT [agent]  full load of COUNT IPv4 addresses into nftables: the agent (snapshot from
                  the sync API) and the bouncer (startup pull from the hub's bouncer API); with
                  `agent`, the agent only (the bouncer's load time grows with the square of COUNT).

Needs root, nftables, iproute2 and crowdsec-firewall-bouncer; builds rephub in release mode.
Everything runs in namespaces this script creates (removed at the end) and on their veth links.
"""
import json, os, random, shutil, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target/release/rephub")
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

    def present(self, ns, table, s, ip):
        return subprocess.run(["ip", "netns", "exec", ns, "nft", "get", "element", *table.split(), s,
                               "{ " + ip + " }"], capture_output=True).returncode == 0

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


def latency(lab, n):
    lab.start_agent()
    lab.start_bouncer("1s")
    time.sleep(3)
    rows = {"rephub agent (long poll)": [], "crowdsec-firewall-bouncer (update_frequency 1s)": []}
    for i in range(n):
        ip = f"10.250.{i // 250}.{i % 250 + 1}"
        t0 = time.monotonic()
        lab.api("POST", "/api/v1/entries", {"entries": [{"value": ip, "tags": {"Trend Micro Severity": "High"}}]})
        pending = {"rephub agent (long poll)": ("rhbA", "inet rephub", "block4"),
                   "crowdsec-firewall-bouncer (update_frequency 1s)": ("rhbB", "ip crowdsec", "crowdsec-blacklists")}
        deadline = t0 + 30
        while pending and time.monotonic() < deadline:
            for name, (ns, table, s) in list(pending.items()):
                if lab.present(ns, table, s, ip):
                    rows[name].append(time.monotonic() - t0)
                    del pending[name]
            time.sleep(0.002)
        for name in pending:
            rows[name].append(float("inf"))
        time.sleep(random.uniform(0.2, 1.2))  # writes at random phases of the bouncer's poll
    print(f"write through the hub API -> element in the nftables set, {n} samples")
    print("| enforcer | p50 | p90 | p99 | max |\n|---|---|---|---|---|")
    for name, xs in rows.items():
        print(f"| {name} | {pct(xs,50)*1000:.0f} ms | {pct(xs,90)*1000:.0f} ms | {pct(xs,99)*1000:.0f} ms | {max(xs)*1000:.0f} ms |")


def load(lab, count, agent_only=False):
    # Addresses imported with the CLI into the hub's database while the hub runs.
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
    time.sleep(2)
    probe = "10.250.250.250"
    lab.api("POST", "/api/v1/entries", {"entries": [{"value": probe, "tags": {"Trend Micro Severity": "High"}}]})
    print(f"full load of {count + 1} IPv4 addresses into nftables")
    print("| enforcer | time to the last element | CPU seconds |\n|---|---|---|")
    runs = [("rephub agent (sync snapshot, nft -f)", lab.start_agent, "rhbA", "inet rephub", "block4"),
            ("crowdsec-firewall-bouncer (startup stream)", lambda: lab.start_bouncer("10s"), "rhbB", "ip crowdsec", "crowdsec-blacklists")]
    for name, start, ns, table, s in runs[:1] if agent_only else runs:
        t0 = time.monotonic()
        c0 = os.times()
        p = start()
        ok = False
        while time.monotonic() - t0 < 900:
            if lab.present(ns, table, s, probe):
                ok = True
                break
            time.sleep(0.05)
        dt = time.monotonic() - t0
        # utime, stime, and those of waited-for children (the agent's nft runs).
        fields = open(f"/proc/{p.pid}/stat").read().split(")")[1].split()
        cpu = sum(float(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")
        print(f"| {name} | {dt:.1f} s{'' if ok else ' (gave up)'} | {cpu:.1f} |")


def main():
    if not os.path.exists(BIN) or "--no-build" not in sys.argv:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "rephub"], cwd=ROOT, check=True)
    args = [a for a in sys.argv[1:] if a != "--no-build"]
    mode = args[0] if args else "latency"
    lab = Lab()
    try:
        lab.start_hub()
        lab.setup()
        if mode == "latency":
            latency(lab, int(args[1]) if len(args) > 1 else 50)
        else:
            load(lab, int(args[1]) if len(args) > 1 else 100_000, "agent" in args[2:])
    finally:
        lab.close()


if __name__ == "__main__":
    main()
