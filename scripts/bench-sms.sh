#!/usr/bin/env bash
# SMS Web API benchmark against a release hub on loopback:
#  1. /repEntries/import of a 10,000-line SMS file (server time as curl sees it);
#  2. sustained /repEntries/add with wrk (each request a new IPv4 entry with one tag).
#  3. SPACED single adds (default 1,000), one every 20 ms on one kept-alive connection, each
#     answered before the next is sent: the latency of a write that finds the writer idle (what an
#     alert that must be enforced at once sees), p50 to max.
#   scripts/bench-sms.sh [SECONDS] [CONNECTIONS]     (defaults: 10, 64); needs wrk (apt-get install wrk)
# PRESENT=FILE imports FILE (an import file, with the CLI) before the hub starts: the adds then go
# into a database of that size.
set -euo pipefail
[ -z "${REPHUB_BIN:-}" ] || REPHUB_BIN=$(realpath "$REPHUB_BIN")   # set: use this binary, build nothing
cd "$(dirname "$0")/.."
secs=${1:-10}
conns=${2:-64}
if [ -n "${REPHUB_BIN:-}" ]; then bin=$REPHUB_BIN; else
    cargo build --release -q -p rephub
    bin=$PWD/target/release/rephub
fi
work=$(mktemp -d)
hub=""
# Stops the hub however the script ends (under set -e a failing kill in the trap would skip the rm).
trap '[ -z "$hub" ] || kill "$hub" 2>/dev/null || true; rm -rf "$work"' EXIT
port=$((19000 + $$ % 1000))
[ -z "${PRESENT:-}" ] || "$bin" --data-dir "$work/data" -q import "$PRESENT"
"$bin" --data-dir "$work/data" serve --listen "127.0.0.1:$port" --tls-listen 127.0.0.1:0 >"$work/out" 2>"$work/err" &
hub=$!
for _ in $(seq 50); do grep -q rh_ "$work/out" 2>/dev/null && break; sleep 0.1; done
key=$(grep -oE 'rh_[0-9a-f]{64}' "$work/out")
url="http://127.0.0.1:$port"

echo "## import of 10,000 lines"
for i in 1 2 3; do
    python3 scripts/gen_dataset.py --count 10000 --seed "$i" --kind ipv4 --out "$work/f$i.csv"
    curl -s -o /dev/null -w "import $i: %{time_total} s (HTTP %{http_code})\n" \
        -H "X-SMS-API-KEY: $key" -F type=ipv4 -F "file=@$work/f$i.csv" "$url/repEntries/import"
done

echo "## sustained add ($conns connections, ${secs}s)"
cat >"$work/add.lua" <<LUA
counter = 0
request = function()
    counter = counter + 1
    local n = counter * 7919 + math.random(0, 7918)
    local ip = string.format("100.%d.%d.%d", math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256)
    return wrk.format("GET", "/repEntries/add?ip=" .. ip .. "&TagData=Trend%20Micro%20Severity,High",
                      { ["X-SMS-API-KEY"] = "$key" })
end
done = function(summary, latency, requests)
    io.write(string.format("latency ms: p50 %.2f, p99 %.2f, p99.9 %.2f, max %.2f\n",
        latency:percentile(50) / 1000, latency:percentile(99) / 1000,
        latency:percentile(99.9) / 1000, latency.max / 1000))
end
LUA
wrk -t"$(( conns < 2 ? 1 : 2 ))" -c"$conns" -d"${secs}s" --latency -s "$work/add.lua" "$url" | sed -n '1,21p'

spaced=${SPACED:-1000}
echo "## $spaced spaced adds (one every 20 ms, one connection)"
python3 - "$port" "$key" "$spaced" <<'PY'
import http.client, sys, time
port, key, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
ms = []
for i in range(n):
    ip = "101.%d.%d.%d" % (i >> 16 & 255, i >> 8 & 255, i & 255)
    t = time.perf_counter()
    c.request("GET", "/repEntries/add?ip=%s&TagData=Trend%%20Micro%%20Severity,High" % ip,
              headers={"X-SMS-API-KEY": key})
    r = c.getresponse()
    r.read()
    ms.append((time.perf_counter() - t) * 1000)
    assert r.status == 200, r.status
    time.sleep(0.02)
ms.sort()
q = lambda p: ms[min(len(ms) - 1, int(p * len(ms)))]
print("spaced adds: %d, latency ms: p50 %.2f, p99 %.2f, p99.9 %.2f, max %.2f, over 25 ms: %d"
      % (n, q(0.5), q(0.99), q(0.999), ms[-1], sum(1 for m in ms if m > 25)))
PY
