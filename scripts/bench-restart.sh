#!/usr/bin/env bash
# A hub with one profile (one filter, no criteria) of N IPv4 entries: restart until ready and its
# resident memory at ready and after 10 s idle, three rounds, alternating the binaries given.
#
#   scripts/bench-restart.sh N BINARY [BINARY ...]      (e.g. 1000000 /tmp/rephub-old /tmp/rephub-new)
set -euo pipefail
n=${1:?usage: $0 N BINARY [BINARY ...]}
shift
[ $# -gt 0 ] || { echo "usage: $0 N BINARY [BINARY ...]" >&2; exit 2; }
bins=()
for b in "$@"; do bins+=("$(realpath "$b")"); done
cd "$(dirname "$0")/.."
mkdir -p bench-data
csv=bench-data/ipv4-$n.csv
[ -s $csv ] || python3 scripts/gen_dataset.py --count "$n" --seed 1 --kind ipv4 --out $csv
d=$(mktemp -d)
hub=""
# Stops the hub however the script ends.
trap '[ -z "$hub" ] || kill "$hub" 2>/dev/null || true; rm -rf "$d"' EXIT
${bins[0]} --data-dir $d -q import $csv
key=$(${bins[0]} --data-dir $d keys add bench --role admin 2>/dev/null)
url=http://127.0.0.1:19778
# Until the hub answers (it does once its profiles are built), at most about two minutes.
ready() {
    for _ in $(seq 2400); do curl -sf $url/healthz >/dev/null && return 0; sleep 0.05; done
    echo "the hub was not ready after two minutes" >&2
    return 1
}
${bins[0]} --data-dir $d serve --listen 127.0.0.1:19778 --tls-listen 127.0.0.1:0 >/dev/null 2>&1 & hub=$!
ready
curl -sf -H "Authorization: Bearer $key" -d '{"name": "everything", "action": "block"}' $url/api/v1/filters >/dev/null
curl -sf -H "Authorization: Bearer $key" -d '{"name": "all", "filters": ["everything"]}' $url/api/v1/profiles >/dev/null
kill $hub; wait $hub 2>/dev/null || true; hub=""
for round in 1 2 3; do for b in "${bins[@]}"; do
  s=$(date +%s.%N)
  $b --data-dir $d serve --listen 127.0.0.1:19778 --tls-listen 127.0.0.1:0 >/dev/null 2>&1 & hub=$!
  ready
  r=$(echo "$(date +%s.%N) - $s" | bc); at=$(grep VmRSS /proc/$hub/status | tr -s ' ' | cut -d' ' -f2); sleep 10
  echo "$b round $round: ready after $r s, VmRSS at ready $at kB, after 10 s idle $(grep VmRSS /proc/$hub/status | tr -s ' ' | cut -d' ' -f2) kB"
  kill $hub; wait $hub 2>/dev/null || true; hub=""
done; done
