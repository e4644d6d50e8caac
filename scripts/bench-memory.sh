#!/usr/bin/env bash
# Hub memory with two profiles ("all" selects every entry, "high only" the High ones) on a copy of
# DATABASE_FILE, and the time to restart with them.  scripts/bench-memory.sh DATABASE_FILE
set -euo pipefail
[ -z "${REPHUB_BIN:-}" ] || REPHUB_BIN=$(realpath "$REPHUB_BIN")   # set: use this binary, build nothing
cd "$(dirname "$0")/.."
if [ -n "${REPHUB_BIN:-}" ]; then bin=$REPHUB_BIN; else
    cargo build --release -q -p rephub
    bin=$PWD/target/release/rephub
fi
db=${1:?usage: $0 DATABASE_FILE}
work=$(mktemp -d)
hub=""
# Stops the hub however the script ends (under set -e a failing kill in the trap would skip the rm).
trap '[ -z "$hub" ] || kill "$hub" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p $work/data
cp "$db" $work/data/rephub.db
key=$($bin --data-dir $work/data keys add bench --role admin 2>/dev/null)
port=19777
start=$(date +%s.%N)
$bin --data-dir $work/data serve --listen 127.0.0.1:$port --tls-listen 127.0.0.1:0 > $work/out 2> $work/err &
hub=$!
url=http://127.0.0.1:$port
until curl -sf $url/healthz >/dev/null; do sleep 0.2; done
echo "ready after $(echo "$(date +%s.%N) - $start" | bc) s"
H="Authorization: Bearer $key"
curl -sf -H "$H" -d '{"name": "everything", "action": "block"}' $url/api/v1/filters >/dev/null
curl -sf -H "$H" -d '{"name": "high", "action": "block", "criteria": ["Trend Micro Severity=High"]}' $url/api/v1/filters >/dev/null
t0=$(date +%s.%N)
curl -sf -H "$H" -d '{"name": "all", "filters": ["everything"]}' $url/api/v1/profiles >/dev/null
t1=$(date +%s.%N)
curl -sf -H "$H" -d '{"name": "high only", "filters": ["high"]}' $url/api/v1/profiles >/dev/null
t2=$(date +%s.%N)
echo "profile \"all\" in $(echo "$t1 - $t0" | bc) s, \"high only\" in $(echo "$t2 - $t1" | bc) s"
echo "two profiles in $(echo "$t2 - $t0" | bc) s"
curl -sf -H "$H" $url/api/v1/profiles
echo
grep -E 'VmRSS|VmHWM' /proc/$hub/status
kill $hub; wait $hub 2>/dev/null || true
start=$(date +%s.%N)
$bin --data-dir $work/data serve --listen 127.0.0.1:$port --tls-listen 127.0.0.1:0 > $work/out2 2> $work/err2 &
hub=$!
until curl -sf $url/healthz >/dev/null; do sleep 0.2; done
echo "restart with two profiles: ready after $(echo "$(date +%s.%N) - $start" | bc) s"
grep -E 'VmRSS|VmHWM' /proc/$hub/status
kill $hub; wait $hub 2>/dev/null || true
