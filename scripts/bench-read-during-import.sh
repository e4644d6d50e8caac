#!/usr/bin/env bash
# Reads during a large import: are API-key-checked reads served while the hub imports 1,000,000
# lines, and how fast?
#
#   scripts/bench-read-during-import.sh [N] [RUNS]       (defaults: 1000000, 2)
#   REPHUB_BIN=/path/to/rephub scripts/bench-read-during-import.sh    (that binary, no build)
#
# Environment: REPHUB_BIN (binary; otherwise target/release/rephub is built), LABEL (first column
# of the table; default the binary's path), CLIENTS (closed-loop read clients, default 4; 0: the
# probe only), BASELINE_SECS (default 10), PROBE_RATE (default 100), READ_PATH (default
# /api/v1/entries?value=<an address of the file>), BENCH_DATA (where the generated file and each
# run's result JSON are kept, default ./bench-data).
#
# Each run, on loopback only:
#  A. a hub on an empty data dir; POST /repEntries/import (multipart, X-SMS-API-KEY, type=ipv4) of
#     an N-line SMS file (scripts/gen_dataset.py --kind ipv4, 3-5 tags a line); curl's time = the
#     import alone. The hub is stopped.
#  B. a new hub on a new empty data dir; CLIENTS processes send GET READ_PATH with
#     `Authorization: Bearer <admin key>` back to back (scripts/read_load.py): BASELINE_SECS with
#     nothing else running, then the same import as in A, then BASELINE_SECS more. One more
#     process sends the same GET open-loop, PROBE_RATE (default 100) a second on a schedule, each
#     on a new connection: its latency, from when it was due, is what a reader arriving at any
#     moment sees (closed-loop clients stuck behind the import send nothing, hiding the stall).
# The hub gets max_body_mib = 512 (the file is ~176 MB for 1M lines; the default is 64) and
# request_timeout_secs = 900 from a config file. Prints one markdown row per run, then the table.
set -euo pipefail
[ -z "${REPHUB_BIN:-}" ] || REPHUB_BIN=$(realpath "$REPHUB_BIN")   # set: use this binary, build nothing
cd "$(dirname "$0")/.."
n=${1:-1000000}
runs=${2:-2}
clients=${CLIENTS:-4}
baseline=${BASELINE_SECS:-10}
data=${BENCH_DATA:-bench-data}
if [ -n "${REPHUB_BIN:-}" ]; then bin=$REPHUB_BIN; else
    cargo build --release -q -p rephub
    bin=$PWD/target/release/rephub
fi
label=${LABEL:-$bin}
command -v curl >/dev/null || { echo "needs curl" >&2; exit 1; }

mkdir -p "$data"
csv="$data/ipv4-$n.csv"
[ -s "$csv" ] || python3 scripts/gen_dataset.py --count "$n" --seed 7 --kind ipv4 --out "$csv"
# An address (not a CIDR: no '/' to escape) from the file: found after the import, not before.
probe=$(awk -F, 'NR >= 1000 && $1 !~ /\// {print $1; exit}' "$csv")
path=${READ_PATH:-/api/v1/entries?value=$probe}

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true   # the hub and the probe may hold many connections
work=$(mktemp -d)
hub=""
stop_hub() {
    [ -n "$hub" ] || return 0
    kill "$hub" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$hub" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$hub" 2>/dev/null || true
    wait "$hub" 2>/dev/null || true
    hub=""
}
trap 'stop_hub; rm -rf "$work"' EXIT
cat >"$work/hub.toml" <<EOF
tls = false
log = "warn"
max_body_mib = 512
request_timeout_secs = 900
EOF

# start_hub DIR: a hub on the empty data dir DIR; sets hub, url, key.
start_hub() {
    local dir=$1 port
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    mkdir -p "$dir"
    "$bin" --data-dir "$dir/data" serve --config "$work/hub.toml" --listen "127.0.0.1:$port" \
        >"$dir/out" 2>"$dir/err" &
    hub=$!
    url="http://127.0.0.1:$port"
    for _ in $(seq 300); do grep -q rh_ "$dir/out" 2>/dev/null && curl -sf -o /dev/null "$url/healthz" && break; sleep 0.1; done
    key=$(grep -oE 'rh_[0-9a-f]{64}' "$dir/out") || { echo "hub did not start:" >&2; cat "$dir/err" >&2; exit 1; }
}

# busy_pct: percent of CPU time (all cores) not idle during the next second.
busy_pct() {
    local a b
    a=($(head -1 /proc/stat)); sleep 1; b=($(head -1 /proc/stat))
    awk -v a="${a[*]}" -v b="${b[*]}" 'BEGIN { n = split(a, x, " "); split(b, y, " ");
        for (i = 2; i <= n; i++) { t += y[i] - x[i]; if (i == 5 || i == 6) idle += y[i] - x[i] }
        printf "%.0f", t ? 100 * (t - idle) / t : 0 }'
}

# import_cmd OUT: the import request (curl prints "HTTP-code seconds", the body goes to OUT) in cmd.
import_cmd() {
    cmd=(curl -sS --max-time 900 -o "$1" -w '%{http_code} %{time_total}' -H "X-SMS-API-KEY: $key"
         -F type=ipv4 -F "file=@$csv" "$url/repEntries/import")
}

rows=()
for run in $(seq "$runs"); do
    # How busy the machine is before the run (other work on the same cores skews everything):
    # the load average and the share of CPU time not idle over one second.
    load="$(cut -d' ' -f1 /proc/loadavg), $(busy_pct)%"
    # A. the import alone
    start_hub "$work/a$run"
    import_cmd "$work/a$run/import"
    alone=$("${cmd[@]}")
    echo "run $run, import alone: HTTP/time ${alone}; $(head -1 "$work/a$run/import")" >&2
    stop_hub
    rm -rf "$work/a$run"
    # B. reads before, during and after the same import
    start_hub "$work/b$run"
    import_cmd "$work/b$run/import"
    python3 scripts/read_load.py --url "$url" --path "$path" --key "$key" --clients "$clients" \
        --baseline "$baseline" --probe-rate "${PROBE_RATE:-100}" --workdir "$work/b$run" -- "${cmd[@]}" \
        >"$work/b$run/result.json"
    echo "run $run, import with reads: $(head -1 "$work/b$run/import")" >&2
    stop_hub
    row=$(python3 - "$work/b$run/result.json" "$label" "$run" "$load" "$alone" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
label, run, load, alone = sys.argv[2:6]
code, secs = alone.split()
b, d, a, i, p = r["before"], r["during"], r["after"], r["import"], r["probe"]
imp_code = i["stdout"].split()[0] if i["stdout"] else "?"
ok = code == "200" and imp_code == "200"
errors = sum(x["errors"] for x in (b, d, a, p["before"], p["during"], p["after"]))
print(f"| {label} | {run} | {load} | {float(secs):.2f} | {i['wall_s']:.2f} "
      f"| {b['reads_per_s']:,.0f} | **{d['reads_per_s']:,.0f}** | {a['reads_per_s']:,.0f} "
      f"| {p['during']['p50_ms']} | **{p['during']['p99_ms']}** | {p['during']['max_ms']} "
      f"| {p['before']['p99_ms']} | {d['p99_ms']} / {d['max_ms']} | {d['longest_no_read_ms']} | {errors}"
      f"{'' if ok else ' (import HTTP ' + code + '/' + imp_code + ')'} |")
PY
)
    echo "$row" >&2
    rows+=("$row")
    cp "$work/b$run/result.json" "$data/read-during-import-$(basename "$label")-$(date +%Y%m%d-%H%M%S)-$run.json" 2>/dev/null || true
    rm -rf "$work/b$run"
done

echo
echo "N = $n lines ($(basename "$csv")), $clients closed-loop read clients + an open-loop probe at ${PROBE_RATE:-100}/s, GET $path"
echo
echo "| binary | run | before the run: load (1 min), CPU busy | import alone s | import with reads s | reads/s, no import (before it) | reads/s during import | reads/s, no import (after it) | probe p50 ms during | probe p99 ms during | probe max ms during | probe p99 ms, no import | clients' p99 / max ms during | longest time without a completed read, ms | non-200 |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
