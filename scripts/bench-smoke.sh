#!/usr/bin/env bash
# Smoke run of every benchmark command of BENCHMARKS.md at a tiny size, with debug builds: does each
# still run to its end and print its table? It never looks at a timing (a debug build on a busy CI
# machine says nothing about speed). Run by .ci/run after the test suite, whose build it reuses.
#
#   scripts/bench-smoke.sh            (needs what .ci/run installs: wrk, bind9, crowdsec bouncers, medallion, PyYAML;
#                                      bench-vs-crowdsec.sh downloads the crowdsec package with apt-get)
#
# Each command gets at most LIMIT seconds (default 300); every failure is printed with the end of
# the command's output, and the script exits 1 if any failed. ONLY=REGEX runs the matching names only. Benchmarks stop what they start (hubs,
# servers, namespaces) on their own, failing or not; this script checks that too: a benchmark that
# leaves a `rephub serve` or a network namespace behind fails.
set -uo pipefail
cd "$(dirname "$0")/.."
limit=${LIMIT:-300}
cargo build -q --locked --workspace --bins --examples --benches || exit 1
export REPHUB_BIN=$PWD/target/debug/rephub
export PROPAGATION_BIN=$PWD/target/debug/examples/propagation
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=()

# check NAME PATTERN CMD...: run CMD, and it must exit 0, print PATTERN (an extended regular
# expression) and leave no process or namespace of its own behind.
check() {
    local name=$1 pattern=$2 out="$work/out" before after
    shift 2
    [ -z "${ONLY:-}" ] || [[ $name =~ $ONLY ]] || return 0
    before=$(pgrep -c -f "$REPHUB_BIN( |$)" || true)
    local t0=$SECONDS
    if timeout -k 10 "$limit" "$@" >"$out" 2>&1 </dev/null && grep -Eq -- "$pattern" "$out"; then
        status=ok
    else
        status=FAILED
    fi
    sleep 0.5
    after=$(pgrep -c -f "$REPHUB_BIN( |$)" || true)
    if [ "$after" -gt "$before" ]; then
        status="FAILED (left $((after - before)) rephub process(es) running)"
        pkill -f "$REPHUB_BIN( |$)" || true
    fi
    if ip netns list 2>/dev/null | grep -q '^rhb'; then
        status="FAILED (left a network namespace)"
    fi
    echo "bench smoke: $name: $status ($((SECONDS - t0)) s)"
    if [ "$status" != ok ]; then
        failed+=("$name")
        tail -30 "$out" | sed 's/^/    /'
    fi
}

# Criterion benchmarks without --bench run each measurement once (criterion's test mode); built
# with the test suite's profile and features (--workspace), so by then they mostly are.
export BENCH_N=2000
check "matcher" "Success" cargo test -q --locked --workspace --bench matcher
check "store lookup" "Success" cargo test -q --locked --workspace --bench lookup
check "store spool" "Success" cargo test -q --locked --workspace --bench spool
unset BENCH_N

# The scripts (they take REPHUB_BIN and PROPAGATION_BIN instead of building).
check "bench-import.sh" '^\| 2000 \|' scripts/bench-import.sh 2000 "$work/data"
check "bench-snapshot.sh" 'snapshot \(gzip\)' scripts/bench-snapshot.sh "$work/data/import-2000/rephub.db"
check "bench-memory.sh" 'restart with two profiles: ready' scripts/bench-memory.sh "$work/data/import-2000/rephub.db"
check "bench-restart.sh" 'round 3: ready after .* after 10 s idle' scripts/bench-restart.sh 2000 "$REPHUB_BIN"
check "bench-bulk-propagation.sh" 'after the import.s commit' scripts/bench-bulk-propagation.sh "$work/data/mixed-2000.csv"
check "bench-propagation.sh" '^\| 20 \| 1 \|' scripts/bench-propagation.sh 20 2
check "bench-propagation.sh (HTTP/2)" '^\| 20 \| 1 \|' env PROPAGATION_H2=8 scripts/bench-propagation.sh 20 2
# Two replicas on PostgreSQL (the test suite's throw-away cluster; a database of its own).
pg=$(bash scripts/pg-test-cluster.sh start)
psql "$pg" -qc "DROP DATABASE IF EXISTS bench_smoke_replicas WITH (FORCE)" -c "CREATE DATABASE bench_smoke_replicas" >/dev/null
check "bench-propagation.sh (replicas)" '^\| 20 \| 1 \|' env PROPAGATION_DB="${pg/dbname=postgres/dbname=bench_smoke_replicas}" \
    scripts/bench-propagation.sh 20 2
psql "$pg" -qc "DROP DATABASE IF EXISTS bench_smoke_replicas WITH (FORCE)" -c "CREATE DATABASE bench_smoke_replicas" >/dev/null
check "bench-propagation.sh (3 replicas)" '^\| 21 \| 1 \|' env PROPAGATION_DB="${pg/dbname=postgres/dbname=bench_smoke_replicas}" \
    PROPAGATION_REPLICAS=3 scripts/bench-propagation.sh 21 2
psql "$pg" -qc "DROP DATABASE IF EXISTS bench_smoke_replicas WITH (FORCE)" >/dev/null
check "bench-replicas.sh" 'PostgreSQL, two replicas \| 2 × 2 \|' scripts/bench-replicas.sh 1 4 1
check "bench-sms.sh" 'spaced adds: 20, latency' env SPACED=20 scripts/bench-sms.sh 2 4
check "bench-read-during-import.sh" '^\| .* \| 1 \|' env BENCH_DATA="$work/data" BASELINE_SECS=1 CLIENTS=1 PROBE_RATE=10 \
    scripts/bench-read-during-import.sh 2000 1
check "bench-taxii.sh" '^status: ' scripts/bench-taxii.sh 300 fast
check "bench-vs-crowdsec.sh" 'rephub better by' env SKIP_ENFORCEMENT=1 scripts/bench-vs-crowdsec.sh 1000
check "bench-enforcement.py latency" '^\| crowdsec-firewall-bouncer' python3 scripts/bench-enforcement.py latency 2
check "bench-enforcement.py load" '^\| crowdsec-firewall-bouncer' python3 scripts/bench-enforcement.py load 500
check "bench-nft-gc.py" '^\| gc-interval 1m \|' python3 scripts/bench-nft-gc.py 1000 5

# The harness-less benchmarks take their size as an argument.
# --workspace, not -p: the features are then those of the build above, so nothing is built again
# (with -p, cargo resolves one package's features and rebuilds the dependencies: minutes in CI).
cb=(cargo bench -q --locked --workspace --profile dev)
check "import_backends" 'median: SQLite .* PostgreSQL' "${cb[@]}" --bench import_backends -- "$work/data/mixed-2000.csv" 1
check "eve" 'round 5: .* lines/s' "${cb[@]}" --bench eve -- 2000
check "telemetry" 'round 5: .* with the spool' "${cb[@]}" --bench telemetry -- 2000
check "capture" 'median: .* ClientHellos/s' "${cb[@]}" --bench capture -- 2000
check "capture live" '^\| 500 \|' "${cb[@]}" --bench capture_live -- 1 500
check "sandbox analyzer" '^\| isolated fetch' "${cb[@]}" --bench analyzer -- 8
check "source_sync" 'an empty delta' "${cb[@]}" --bench source_sync -- 300
check "target_sync" 'a run with nothing to send' "${cb[@]}" --bench target_sync -- 300
check "connection_sync" '\|---' "${cb[@]}" --bench connection_sync -- 300 1
check "sharing" 'forwarded to rsyslog' "${cb[@]}" --bench sharing -- 2000
check "sharing memory" 'RSS' "${cb[@]}" --bench sharing -- memory 10
check "taxii_server" 'taxii2-client' "${cb[@]}" --bench taxii_server -- 300
check "misp_feed" 'one event of' "${cb[@]}" --bench misp_feed -- 300
check "rpz_transfer" 'transfers: whole 1, incremental' "${cb[@]}" --bench rpz_transfer -- 100
check "crowdsec_live" '^\| 2000 \| 2000 \|' "${cb[@]}" --bench crowdsec_live -- 2000
check "console" '/ui/users ' "${cb[@]}" --bench console -- 2000

if [ "${#failed[@]}" -gt 0 ]; then
    echo "bench smoke: ${#failed[@]} failed: ${failed[*]}"
    exit 1
fi
echo "bench smoke: every benchmark ran"
