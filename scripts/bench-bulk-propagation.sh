#!/usr/bin/env bash
# Bulk propagation: a device long-polls a running hub; the CLI imports an SMS file of N entries into
# the hub's database (another process); how long from the import's commit until the device has
# applied every entry (its cursor reaches the import's last sequence number)?
#   scripts/bench-bulk-propagation.sh FILE.csv [parked|after]   (FILE e.g. from scripts/gen_dataset.py)
#   parked (default)  the device long-polls from before the import, as a device in service does;
#   after             the device starts polling only after the import's commit.
set -euo pipefail
[ -z "${REPHUB_BIN:-}" ] || REPHUB_BIN=$(realpath "$REPHUB_BIN")   # set: use this binary, build nothing
cd "$(dirname "$0")/.."
file=${1:?usage: $0 FILE.csv [parked|after]}
mode=${2:-parked}
case $mode in parked|after) ;; *) echo "mode: parked or after, not $mode" >&2; exit 2 ;; esac
if [ -n "${REPHUB_BIN:-}" ]; then bin=$REPHUB_BIN; else
    cargo build --release -q -p rephub
    bin=$PWD/target/release/rephub
fi
work=$(mktemp -d)
hub=""
device=""
# Stops the device and the hub however the script ends, and waits for the hub to exit (under set -e
# a failing kill in the trap would skip the rm).
trap '[ -z "$device" ] || kill "$device" 2>/dev/null || true; [ -z "$hub" ] || { kill "$hub" 2>/dev/null; wait "$hub"; } || true; rm -rf "$work"' EXIT
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
# The device: one process long-polling in a loop (a shell loop starting curl and python per answer
# would measure its own start-up, tens of ms an answer). It prints its cursor, the operations it
# read, the answers, and the wall-clock time it reached TARGET (read from the file TARGET_FILE,
# which appears after the import).
cat >"$work/device.py" <<'PY'
import json, os, sys, time, urllib.request
url, token, cursor, target_file = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
applied = answers = 0
target = None
deadline = time.monotonic() + 600   # bounded: a device that never gets there fails the run
while time.monotonic() < deadline:
    if target is None and os.path.exists(target_file):
        target = int(open(target_file).read() or 0) or None
    if target is not None and cursor >= target:
        break
    req = urllib.request.Request(f"{url}/api/v1/sync?cursor={cursor}&wait=5",
                                 headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req) as r:
        lines = r.read().split(b"\n")
    head = json.loads(lines[0])
    if head["cursor"] != cursor:
        answers += 1
    cursor = head["cursor"]
    applied += sum(1 for l in lines[1:] if l)
else:
    sys.exit(f"gave up at cursor {cursor} (target {target})")
print(cursor, applied, answers, f"{time.time():.6f}")
PY
if [ "$mode" = parked ]; then
    python3 "$work/device.py" "$url" "$token" "$cursor" "$work/target" >"$work/device" &
    device=$!
    sleep 1   # parked in its long poll
fi
"$bin" --data-dir "$work" -q import "$file"
committed=$(date +%s.%N)
"$bin" --data-dir "$work" stats | awk '/^cursor/ {print $2}' >"$work/target.tmp"
mv "$work/target.tmp" "$work/target"
if [ -n "$device" ]; then wait "$device"; else
    python3 "$work/device.py" "$url" "$token" "$cursor" "$work/target" >"$work/device"
fi
read -r cursor applied answers done_at <"$work/device"
echo "imported $(basename "$file"), device $mode: at cursor $cursor with $applied operations in $answers answers, $(echo "$done_at - $committed" | bc) s after the import's commit"
