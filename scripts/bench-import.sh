#!/usr/bin/env bash
# Import benchmark: generate N mixed entries (3-5 tags each) as an SMS CSV file, import them through
# the CLI into a new database (durable when the command returns), then report entries/s, database
# size per entry and peak memory. Then time a point lookup and a containment search through the CLI.
#
#   scripts/bench-import.sh [N] [WORKDIR]      (defaults: 1000000, ./bench-data)
set -euo pipefail
n=${1:-1000000}
work=${2:-bench-data}
[ -z "${REPHUB_BIN:-}" ] || REPHUB_BIN=$(realpath "$REPHUB_BIN")   # set: use this binary, build nothing
cd "$(dirname "$0")/.."
mkdir -p "$work"
if [ -n "${REPHUB_BIN:-}" ]; then bin=$REPHUB_BIN; else
    cargo build --release -q -p rephub
    bin=$PWD/target/release/rephub
fi
csv="$work/mixed-$n.csv"
[ -s "$csv" ] || python3 scripts/gen_dataset.py --count "$n" --seed 1 --out "$csv"
db="$work/import-$n"
rm -rf "$db"
sync
log=$(mktemp)
/usr/bin/time -v "$bin" --data-dir "$db" import "$csv" 2>"$log" || { cat "$log"; exit 1; }
secs=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,t,":"); s=0; for(i=1;i<=n;i++) s=s*60+t[i]; print s}' "$log")
rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$log")
bytes=$(du -cb "$db"/rephub.db* | tail -1 | cut -f1)
grep accepted "$log"
printf '| entries | wall s | entries/s | DB bytes/entry | peak RSS MiB |\n|---|---|---|---|---|\n'
awk -v n="$n" -v s="$secs" -v b="$bytes" -v r="$rss" 'BEGIN { printf "| %d | %.2f | %.0f | %.0f | %.0f |\n", n, s, n/s, b/n, r/1024 }'
rm -f "$log"
if command -v sqlite3 >/dev/null; then
    cut -d, -f1 "$csv" >"$work/values-$n.txt"
    LC_ALL=C sort "$work/values-$n.txt" >"$work/values-$n-sorted.txt"
    # In both journal modes: rephub's first import into an empty database uses the rollback
    # journal (each page written once), later ones the WAL.
    for mode in wal delete; do
    for order in file sorted; do
        values="$work/values-$n.txt"
        [ "$order" = file ] || values="$work/values-$n-sorted.txt"
        ref="$work/reference-$n.db"
        rm -f "$ref" "$ref-wal" "$ref-shm" "$ref-journal"
        sync
        sqlite3 "$ref" 'PRAGMA page_size = 16384' "PRAGMA journal_mode = $mode" \
            'CREATE TABLE v (value TEXT NOT NULL)' 'CREATE UNIQUE INDEX v_value ON v (value)' >/dev/null
        start=$(date +%s.%N)
        sqlite3 -cmd 'PRAGMA synchronous = FULL' -cmd '.mode tabs' "$ref" ".import $values v"
        end=$(date +%s.%N)
        awk -v a="$start" -v b="$end" -v n="$n" -v o="$order" -v m="$mode" \
            'BEGIN { printf "reference: sqlite3 .import of the %d values in %s order, journal %s: %.2f s (%.0f entries/s)\n", n, o, m, b-a, n/(b-a) }'
    done
    done
    rm -f "$work/reference-$n.db"* "$work/values-$n.txt" "$work/values-$n-sorted.txt"
else
    echo "reference: skipped (sqlite3 is not installed)"
fi
# One lookup and one search through the whole CLI (process start and database open included).
probe=$(sed -n '1000p' "$csv" | cut -d, -f1)
for cmd in "query $probe" "search --ip 49.0.0.0/16 --limit 0 -f plain"; do
    start=$(date +%s.%N)
    "$bin" --data-dir "$db" -q $cmd >/dev/null || true
    end=$(date +%s.%N)
    awk -v a="$start" -v b="$end" -v c="$cmd" 'BEGIN { printf "rephub %s: %.1f ms (whole process)\n", c, (b-a)*1000 }'
done
