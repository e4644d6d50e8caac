#!/usr/bin/env bash
# Sustained SMS adds (/repEntries/add, each request a new IPv4 entry with one tag, durable when
# answered) side by side in one run: one hub on SQLite, one hub on PostgreSQL, and two replicas on
# one PostgreSQL database (wrk against each replica with half the connections; their sums).
#   scripts/bench-replicas.sh [SECONDS] [CONNECTIONS] [ROUNDS]   (defaults: 10, 64, 3)
# Needs wrk and Debian's postgresql (a throw-away cluster is started here, fsync on, and removed).
# Everything runs on this machine: the hubs, PostgreSQL and wrk share its cores.
set -euo pipefail
command -v wrk >/dev/null || { echo "bench-replicas.sh needs wrk (apt-get install wrk)" >&2; exit 1; }
[ -z "${REPHUB_BIN:-}" ] || REPHUB_BIN=$(realpath "$REPHUB_BIN")   # set: use this binary, build nothing
cd "$(dirname "$0")/.."
secs=${1:-10}
conns=${2:-64}
rounds=${3:-3}
if [ -n "${REPHUB_BIN:-}" ]; then bin=$REPHUB_BIN; else
    cargo build --release -q -p rephub
    bin=$PWD/target/release/rephub
fi
work=$(mktemp -d)
# The cluster's directory outside $work: the server runs as `postgres` when this runs as root.
export REPHUB_PG_DIR=/tmp/rephub-bench-pg.$$
export REPHUB_PG_FSYNC=on
pids=()
stop_hubs() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    pids=()
}
# Stops what it started however the script ends.
trap 'stop_hubs; bash scripts/pg-test-cluster.sh stop >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
head -c 32 /dev/urandom >"$work/secret.key"
conninfo=$(bash scripts/pg-test-cluster.sh start)
base_port=$((21000 + $$ % 1000))
n=0

# serve NAME PORT [DB]: a hub in the background; waits until it answers.
serve() {
    local name=$1 port=$2 db=${3:-}
    REPHUB_LOG=warn REPHUB_SECRET_KEY_FILE="$work/secret.key" \
        "$bin" --data-dir "$work/$name" ${db:+--db "$db"} serve \
        --listen "127.0.0.1:$port" --tls-listen 127.0.0.1:0 >"$work/$name.out" 2>"$work/$name.err" &
    pids+=($!)
    for _ in $(seq 300); do
        curl -sf -o /dev/null "http://127.0.0.1:$port/readyz" && return 0
        sleep 0.1
    done
    echo "hub $name did not start: $(tail -3 "$work/$name.err")" >&2
    exit 1
}

cat >"$work/add.lua" <<'LUA'
-- Each request a new address: PREFIX.x.y.z (one wrk per replica, each its own PREFIX).
local prefix = os.getenv("PREFIX") or "100"
local key = os.getenv("KEY")
counter = 0
request = function()
    counter = counter + 1
    local n = counter * 7919 + math.random(0, 7918)
    local ip = string.format("%s.%d.%d.%d", prefix, math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256)
    return wrk.format("GET", "/repEntries/add?ip=" .. ip .. "&TagData=Trend%20Micro%20Severity,High",
                      { ["X-SMS-API-KEY"] = key })
end
LUA

# load PREFIX KEY CONNECTIONS URL OUT: wrk in the background, its report in OUT.
load() {
    PREFIX=$1 KEY=$2 wrk -t1 -c"$3" -d"${secs}s" --latency -s "$work/add.lua" "$4" >"$5" 2>&1
}
rate() { awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$1"; }
# The 99th percentile in ms (wrk prints us, ms or s).
p99() {
    awk '$1 == "99%" { v = $2; u = v; gsub(/[0-9.]/, "", u); gsub(/[a-z]/, "", v);
         if (u == "us") v /= 1000; if (u == "s") v *= 1000; printf "%.1f", v }' "$1"
}
errors() { awk '/Non-2xx|Socket errors/ {print}' "$1" | tr '\n' ' '; }

echo "| round | setup | connections | adds/s | p99 ms | errors |"
echo "|---|---|---|---|---|---|"
for round in $(seq "$rounds"); do
    # One hub on SQLite.
    n=$((n + 1)); port=$((base_port + n * 3))
    serve "sqlite$round" "$port"
    key=$(grep -oE 'rh_[0-9a-f]{64}' "$work/sqlite$round.out")
    load 100 "$key" "$conns" "http://127.0.0.1:$port" "$work/w1"
    echo "| $round | SQLite, one hub | $conns | $(rate "$work/w1") | $(p99 "$work/w1") | $(errors "$work/w1") |"
    stop_hubs

    # One hub on PostgreSQL.
    n=$((n + 1)); port=$((base_port + n * 3))
    db="$conninfo" && db=${db/dbname=postgres/dbname=one$round}
    psql -q "$conninfo" -c "CREATE DATABASE one$round"
    serve "pg$round" "$port" "$db"
    key=$(grep -oE 'rh_[0-9a-f]{64}' "$work/pg$round.out")
    load 100 "$key" "$conns" "http://127.0.0.1:$port" "$work/w1"
    echo "| $round | PostgreSQL, one hub | $conns | $(rate "$work/w1") | $(p99 "$work/w1") | $(errors "$work/w1") |"
    stop_hubs

    # Two replicas on one PostgreSQL database, half the connections each.
    n=$((n + 1)); port=$((base_port + n * 3))
    db="$conninfo" && db=${db/dbname=postgres/dbname=two$round}
    psql -q "$conninfo" -c "CREATE DATABASE two$round"
    serve "a$round" "$port" "$db"
    key=$(grep -oE 'rh_[0-9a-f]{64}' "$work/a$round.out")
    serve "b$round" "$((port + 1))" "$db"
    load 100 "$key" "$((conns / 2))" "http://127.0.0.1:$port" "$work/w1" &
    w1=$!
    load 101 "$key" "$((conns / 2))" "http://127.0.0.1:$((port + 1))" "$work/w2" &
    w2=$!
    wait "$w1" "$w2"
    sum=$(( $(rate "$work/w1") + $(rate "$work/w2") ))
    worst=$(printf '%s\n%s\n' "$(p99 "$work/w1")" "$(p99 "$work/w2")" | sort -g | tail -1)
    echo "| $round | PostgreSQL, two replicas | 2 × $((conns / 2)) | $sum | $worst | $(errors "$work/w1")$(errors "$work/w2") |"
    stop_hubs
done
