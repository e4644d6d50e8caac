#!/usr/bin/env bash
# Snapshot benchmark: a hub on a database of N entries (made with scripts/bench-import.sh), a profile
# selecting every entry, one device; time its full snapshot (plain and gzip) and report hub memory.
#   scripts/bench-snapshot.sh DATABASE_FILE
set -euo pipefail
[ -z "${REPHUB_BIN:-}" ] || REPHUB_BIN=$(realpath "$REPHUB_BIN")   # set: use this binary, build nothing
cd "$(dirname "$0")/.."
db=${1:?usage: $0 DATABASE_FILE (e.g. bench-data/import-1000000/rephub.db)}
if [ -n "${REPHUB_BIN:-}" ]; then bin=$REPHUB_BIN; else
    cargo build --release -q -p rephub
    bin=$PWD/target/release/rephub
fi
work=$(mktemp -d)
hub=""
# Stops the hub however the script ends (under set -e a failing kill in the trap would skip the rm).
trap '[ -z "$hub" ] || kill "$hub" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/data"
cp "$db" "$work/data/rephub.db"
key=$("$bin" --data-dir "$work/data" keys add bench --role admin 2>/dev/null)
port=$((19500 + $$ % 400))
start=$(date +%s.%N)
"$bin" --data-dir "$work/data" serve --listen "127.0.0.1:$port" --tls-listen 127.0.0.1:0 >"$work/out" 2>"$work/err" &
hub=$!
url="http://127.0.0.1:$port"
until curl -sf "$url/healthz" >/dev/null; do sleep 0.1; done
echo "hub ready after $(echo "$(date +%s.%N) - $start" | bc) s"
H="Authorization: Bearer $key"
curl -sf -H "$H" -d '{"name": "everything", "action": "block"}' "$url/api/v1/filters" >/dev/null
t0=$(date +%s.%N)
curl -sf -H "$H" -d '{"name": "all", "filters": ["everything"]}' "$url/api/v1/profiles" >/dev/null
echo "profile selecting everything created in $(echo "$(date +%s.%N) - $t0" | bc) s"
token=$(curl -sf -H "$H" -d '{"name": "dev", "profile": "all"}' "$url/api/v1/devices" | python3 -c 'import sys, json; print(json.load(sys.stdin)["token"])')
for enc in identity gzip; do
    curl -s -o "$work/snap" -H "Authorization: Bearer $token" -H "Accept-Encoding: $enc" \
        -w "snapshot ($enc): %{time_total} s, %{size_download} bytes\n" "$url/api/v1/sync?wait=0"
done
head -c 300 "$work/snap" | gzip -dc 2>/dev/null | head -2 || true
grep -E 'VmRSS|VmHWM' "/proc/$hub/status"
