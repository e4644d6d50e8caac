#!/usr/bin/env bash
# Bulk propagation: a device long-polls a running hub; the CLI imports an SMS file of N entries into
# the hub's database (another process); how long from the import's commit until the device has
# applied every entry (its cursor reaches the import's last sequence number)?
#   scripts/bench-bulk-propagation.sh FILE.csv       (e.g. a file from scripts/gen_dataset.py)
set -euo pipefail
[ -z "${REPHUB_BIN:-}" ] || REPHUB_BIN=$(realpath "$REPHUB_BIN")   # set: use this binary, build nothing
cd "$(dirname "$0")/.."
file=${1:?usage: $0 FILE.csv}
if [ -n "${REPHUB_BIN:-}" ]; then bin=$REPHUB_BIN; else
    cargo build --release -q -p rephub
    bin=$PWD/target/release/rephub
fi
work=$(mktemp -d)
hub=""
# Stops the hub however the script ends (under set -e a failing kill in the trap would skip the rm).
trap '[ -z "$hub" ] || kill "$hub" 2>/dev/null || true; rm -rf "$work"' EXIT
port=$((19300 + $$ % 200))
"$bin" --data-dir "$work" serve --listen "127.0.0.1:$port" --tls-listen 127.0.0.1:0 >"$work/out" 2>"$work/err" &
hub=$!
url="http://127.0.0.1:$port"
until curl -sf "$url/healthz" >/dev/null; do sleep 0.1; done
key=$(grep -oE 'rh_[0-9a-f]{64}' "$work/out")
H="Authorization: Bearer $key"
curl -sf -H "$H" -d '{"name": "everything", "action": "block"}' "$url/api/v1/filters" >/dev/null
curl -sf -H "$H" -d '{"name": "all", "filters": ["everything"]}' "$url/api/v1/profiles" >/dev/null
token=$(curl -sf -H "$H" -d '{"name": "dev", "profile": "all"}' "$url/api/v1/devices" | python3 -c 'import sys, json; print(json.load(sys.stdin)["token"])')
cursor=$(curl -sf -H "Authorization: Bearer $token" "$url/api/v1/sync?wait=0" | head -1 | python3 -c 'import sys, json; print(json.load(sys.stdin)["cursor"])')
"$bin" --data-dir "$work" -q import "$file"
committed=$(date +%s.%N)
target=$("$bin" --data-dir "$work" stats | awk '/^cursor/ {print $2}')
applied=0
while [ "$cursor" -lt "$target" ]; do
    curl -sf -o "$work/answer" -H "Authorization: Bearer $token" "$url/api/v1/sync?cursor=$cursor&wait=60"
    head=$(sed -n 1p "$work/answer")
    cursor=$(echo "$head" | python3 -c 'import sys, json; print(json.load(sys.stdin)["cursor"])')
    applied=$((applied + $(($(wc -l < "$work/answer") - 1))))
done
done_at=$(date +%s.%N)
echo "imported $(basename "$file"): device at cursor $cursor with $applied operations, $(echo "$done_at - $committed" | bc) s after the import's commit"
