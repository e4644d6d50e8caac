#!/usr/bin/env bash
# TAXII 2.1 source at scale: N indicators (100,000 by default) in a medallion collection, polled
# by a hub. Prints where the time goes: medallion alone (a plain Python client paging through the
# same collection), then the hub's full poll (its own `last_duration_ms`).
#
#   scripts/bench-taxii.sh [N] [fast|memory]
#
# `fast` (default) is tests/peers/medallion_fast.py: medallion's own HTTP layer with a linear-time
# memory backend. Stock medallion (`memory`) is quadratic in the collection size on every request:
# see tests/peers/README.md for its figures (no answer within 15 minutes at 100,000).
set -euo pipefail
[ -z "${REPHUB_BIN:-}" ] || REPHUB_BIN=$(realpath "$REPHUB_BIN")   # set: use this binary, build nothing
cd "$(dirname "$0")/.."
n=${1:-100000}
backend=${2:-fast}
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
hub_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() { kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"; }
pids=()
trap cleanup EXIT

if [ -n "${REPHUB_BIN:-}" ]; then bin=$REPHUB_BIN; else
    cargo build --release -q -p rephub
    bin=$PWD/target/release/rephub
fi
t0=$(date +%s.%N)
python3 tests/peers/taxii_data.py --out "$work/taxii" --count "$n" --port "$port" --backend "$backend" >/dev/null
echo "generated $n indicators in $(python3 -c "print(round($(date +%s.%N)-$t0,1))") s"
if [ "$backend" = fast ]; then
    python3 tests/peers/medallion_fast.py --host 127.0.0.1 --port "$port" "$work/taxii/medallion.json" >/dev/null 2>&1 &
else
    python3 -m medallion.scripts.run --host 127.0.0.1 --port "$port" "$work/taxii/medallion.json" >/dev/null 2>&1 &
fi
pids+=($!)
for _ in $(seq 200); do (echo >/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.1; done
url=$(python3 -c "import json;print(json.load(open('$work/taxii/expected.json'))['objects_url'])")
discovery=$(python3 -c "import json;print(json.load(open('$work/taxii/expected.json'))['discovery_url'])")
collection=$(python3 -c "import json;print(json.load(open('$work/taxii/expected.json'))['collection_id'])")

echo "== medallion alone (tests/peers/taxii_page.py, pages of 100)"
python3 tests/peers/taxii_page.py --objects-url "$url" --limit 100 --quiet --expect "$n"

echo "== rephub: full poll of the collection"
cat >"$work/hub.toml" <<EOF
data_dir = "$work/hub"
listen = "127.0.0.1:$hub_port"
tls = false
log = "warn"

[[sources]]
kind = "taxii"
name = "bench"
url = "$discovery"
collection = "$collection"
username = "user"
password = "pass"
page_size = 100
interval_secs = 3600
EOF
t0=$(date +%s.%N)
"$bin" serve --config "$work/hub.toml" >"$work/hub.log" 2>&1 &
pids+=($!)
key=""
for _ in $(seq 100); do
    key=$(grep -o 'rh_[0-9a-f]\{64\}' "$work/hub.log" | head -1 || true)
    [ -n "$key" ] && break
    sleep 0.1
done
for _ in $(seq 6000); do
    state=$(curl -s -H "Authorization: Bearer $key" "http://127.0.0.1:$hub_port/api/v1/sources/bench" || true)
    if echo "$state" | grep -q '"runs":[1-9]'; then break; fi
    sleep 0.1
done
echo "$state" | python3 -c '
import json, sys
v = json.load(sys.stdin)
s = v["state"]
print("status:", v["status"], "| run:", s["last_duration_ms"], "ms | counts:", s["last"])
'
echo "wall time from starting the hub: $(python3 -c "print(round($(date +%s.%N)-$t0,1))") s"
