#!/usr/bin/env bash
# rephub against CrowdSec's Local API (LAPI), on this machine, in one run; prints one markdown table
# (rephub, CrowdSec, and how many times rephub is better):
#  1. bulk ingest of N IPv4 entries: `rephub import` of an SMS CSV file vs `cscli decisions import`
#     of the same values (addresses as scope Ip, CIDRs as scope Range), entries/s;
#  2. database bytes per entry after the import (rephub.db* vs crowdsec.db*, servers stopped);
#  3. server memory on that database: rephub serve with a profile selecting everything (RSS once
#     the profile selects them all and the hub is idle) vs the LAPI (RSS once it answers);
#  4. full stream of the N to a device: rephub's sync snapshot (GET /api/v1/sync?wait=0, device
#     token) vs the LAPI's GET /v1/decisions/stream?startup=true (bouncer key); then the same
#     CrowdSec request to rephub's bouncer API (the device token as bouncer key). Median of 3, plain;
#  5. write -> enforced in nftables (scripts/bench-enforcement.py latency SAMPLES): rephub agent vs
#     crowdsec-firewall-bouncer at update_frequency 1s, both fed by a rephub hub;
#  6. full nftables load of LOAD_N addresses (scripts/bench-enforcement.py load LOAD_N).
#
#   scripts/bench-vs-crowdsec.sh [N] [LOAD_N] [SAMPLES]      (defaults: 1000000, 100000, 30)
#
# REPHUB_BIN: the rephub binary (default target/release/rephub, built only when missing).
# CROWDSEC_DIR: where the crowdsec package is unpacked and kept between runs (default
#   ./bench-data/crowdsec): `apt-get download crowdsec` + `dpkg-deb -x`, so its post-install (which
#   needs the internet) never runs and no dpkg state changes. Needs python3-yaml for its config.
# SKIP_ENFORCEMENT=1: skip rows 5 and 6 (they need root, nftables, iproute2 and
#   crowdsec-firewall-bouncer, and create network namespaces of their own).
# Progress goes to standard error, the table to standard output. Only loopback traffic.
set -euo pipefail
n=${1:-1000000}
load_n=${2:-100000}
samples=${3:-30}
[ -z "${REPHUB_BIN:-}" ] || REPHUB_BIN=$(realpath "$REPHUB_BIN")   # set: use this binary, build nothing
[ -z "${CROWDSEC_DIR:-}" ] || CROWDSEC_DIR=$(realpath -m "$CROWDSEC_DIR")
cd "$(dirname "$0")/.."
if [ -n "${REPHUB_BIN:-}" ]; then bin=$REPHUB_BIN; else
    bin=$PWD/target/release/rephub
    [ -x "$bin" ] || cargo build --release -q -p rephub
fi
export REPHUB_BIN=$bin   # for bench-enforcement.py: use this binary, build nothing
csdir=${CROWDSEC_DIR:-$PWD/bench-data/crowdsec}
skip_enf=${SKIP_ENFORCEMENT:-0}
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
log() { echo "# $*" >&2; }
log "load average at start: $load_start"

if [ "$skip_enf" != 1 ]; then
    for tool in nft ip crowdsec-firewall-bouncer; do
        command -v "$tool" >/dev/null || { echo "rows 5-6 need $tool (or SKIP_ENFORCEMENT=1)" >&2; exit 1; }
    done
    [ "$(id -u)" = 0 ] || { echo "rows 5-6 need root (or SKIP_ENFORCEMENT=1)" >&2; exit 1; }
fi
python3 -c 'import yaml' 2>/dev/null || { echo "needs python3-yaml (to rewrite crowdsec's config)" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/bench-vs-crowdsec.XXXXXX")
hub=""
lapi=""
alive() { kill -0 "$1" 2>/dev/null && ! grep -qs '^State:[[:space:]]*Z' "/proc/$1/status"; }
# stop PID: SIGTERM, up to 30 s to exit, then SIGKILL.
stop() {
    [ -n "$1" ] || return 0
    kill "$1" 2>/dev/null || return 0
    for _ in $(seq 300); do alive "$1" || break; sleep 0.1; done
    kill -9 "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
stop_hub() { stop "$hub" || true; hub=""; }
stop_lapi() { stop "$lapi" || true; lapi=""; }
# Stops what this script started however it ends (nothing in the trap may fail under set -e).
trap 'stop_hub || true; stop_lapi || true; rm -rf "$work" || true' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
rss_mib() { awk '/^VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }
hwm_mib() { awk '/^VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }
db_bytes() { du -cb "$@" | tail -1 | cut -f1; }
# wait_for TRIES WHAT PID COMMAND...: run COMMAND every 0.1 s until it succeeds, at most TRIES times;
# fail early when process PID is gone.
wait_for() {
    local tries=$1 what=$2 pid=$3
    shift 3
    for _ in $(seq "$tries"); do
        "$@" && return 0
        alive "$pid" || { echo "$what: the process exited" >&2; return 1; }
        sleep 0.1
    done
    echo "$what: gave up after $((tries / 10)) s" >&2
    return 1
}
# stream3 OUT HEADER URL: GET URL three times (plain, no compression); prints the median time and the
# size of the answer: "SECONDS BYTES".
stream3() {
    local out=$1 hdr=$2 url=$3
    for _ in 1 2 3; do
        curl -sf --max-time 1800 -o "$out" -H "$hdr" -H 'Accept-Encoding: identity' \
            -w '%{time_total} %{size_download}\n' "$url"
    done | sort -n | sed -n 2p
}

# ---------------------------------------------------------------- the CrowdSec binaries
csbin=$csdir/usr/bin
if [ ! -x "$csbin/crowdsec" ] || [ ! -x "$csbin/cscli" ]; then
    log "unpacking the crowdsec package into $csdir (apt-get download + dpkg-deb -x, no post-install)"
    mkdir -p "$work/deb" "$csdir"
    (cd "$work/deb" && apt-get download crowdsec) >"$work/deb.log" 2>&1 ||
        { cat "$work/deb.log" >&2; echo "could not download crowdsec: set CROWDSEC_DIR to an unpacked package" >&2; exit 1; }
    dpkg-deb -x "$work"/deb/crowdsec_*.deb "$csdir"
fi
cs_version=$("$csbin/crowdsec" -version 2>&1 | sed -n 's/.*version: *//p' | head -1)

# ---------------------------------------------------------------- the data set
mkdir -p bench-data
csv=bench-data/ipv4-$n.csv    # 80% addresses, 20% CIDRs, 2-5 tags each
[ -s "$csv" ] || python3 scripts/gen_dataset.py --count "$n" --seed 1 --kind ipv4 --out "$csv"
# The same values for cscli (its per-line scope is overridden by --scope: one file per scope).
{ echo value; cut -d, -f1 "$csv" | grep -v /; } >"$work/cs-ip.csv" || true
{ echo value; cut -d, -f1 "$csv" | grep /; } >"$work/cs-range.csv" || true

# ---------------------------------------------------------------- rephub
log "rephub: import of $n entries"
rh=$work/rephub
mkdir -p "$rh"
sync
t0=$(now)
"$bin" --data-dir "$rh/data" import "$csv" >"$rh/import.out" 2>"$rh/import.err" || { cat "$rh/import.err" >&2; exit 1; }
rh_import_s=$(echo "$(now) $t0" | awk '{print $1 - $2}')
rh_accepted=$(grep -oE '[0-9]+ accepted' "$rh/import.err" | awk '{s += $1} END {print s + 0}')
[ "$rh_accepted" = "$n" ] || log "warning: rephub accepted $rh_accepted of $n"
rh_db=$(db_bytes "$rh/data"/rephub.db*)

key=$("$bin" --data-dir "$rh/data" keys add bench --role admin 2>/dev/null)
port=$(free_port)
url=http://127.0.0.1:$port
REPHUB_LOG=warn "$bin" --data-dir "$rh/data" serve --listen "127.0.0.1:$port" --tls-listen 127.0.0.1:0 \
    >"$rh/out" 2>"$rh/err" &
hub=$!
wait_for 3000 "rephub hub start" "$hub" curl -sf -o /dev/null "$url/healthz" || { cat "$rh/err" >&2; exit 1; }
H="Authorization: Bearer $key"
curl -sf -H "$H" -d '{"name": "everything", "action": "block"}' "$url/api/v1/filters" >/dev/null
curl -sf -H "$H" -d '{"name": "all", "filters": ["everything"]}' "$url/api/v1/profiles" >/dev/null
token=$(curl -sf -H "$H" -d '{"name": "bench", "profile": "all"}' "$url/api/v1/devices" | python3 -c 'import sys, json; print(json.load(sys.stdin)["token"])')
selected_all() {
    [ "$(curl -sf -H "$H" "$url/api/v1/profiles" | python3 -c 'import sys, json; print(json.load(sys.stdin)["profiles"][0]["selected"])')" -ge "$rh_accepted" ]
}
wait_for 9000 "rephub profile selection" "$hub" selected_all
sleep 2
rh_rss=$(rss_mib "$hub")
log "rephub: full streams"
r=$(stream3 "$rh/sync" "Authorization: Bearer $token" "$url/api/v1/sync?wait=0")
read -r rh_sync_s rh_sync_b <<<"$r"
rh_sync_n=$(($(wc -l <"$rh/sync") - 1))
r=$(stream3 "$rh/stream" "X-Api-Key: $token" "$url/v1/decisions/stream?startup=true")
read -r rh_cs_s rh_cs_b <<<"$r"
rh_cs_n=$(grep -o '"value":' "$rh/stream" | wc -l)
rh_hwm=$(hwm_mib "$hub")
stop_hub

# ---------------------------------------------------------------- CrowdSec LAPI
log "crowdsec $cs_version: LAPI setup"
cs=$work/crowdsec
mkdir -p "$cs/etc" "$cs/data" "$cs/hub" "$cs/log"
cp "$csdir"/etc/crowdsec/*.yaml "$cs/etc/"
lport=$(free_port)
lurl=http://127.0.0.1:$lport
python3 - "$csdir/etc/crowdsec/config.yaml" "$cs/config.yaml" "$cs" "$lport" "$csdir" <<'EOF'
import sys, yaml
src, dst, d, port, pkg = sys.argv[1:6]
c = yaml.safe_load(open(src))
c["common"].update(daemonize=False, log_media="file", log_dir=d + "/log", working_dir=d)
c["config_paths"].update(
    config_dir=d + "/etc/", data_dir=d + "/data/", simulation_path=d + "/etc/simulation.yaml",
    hub_dir=d + "/hub/", index_path=d + "/hub/.index.json", notification_dir=d + "/etc/notifications/",
    plugin_dir=pkg + "/usr/lib/crowdsec/plugins/")
c["crowdsec_service"].update(acquisition_path=d + "/etc/acquis.yaml", acquisition_dir=d + "/etc/acquis.d")
c["db_config"].update(db_path=d + "/data/crowdsec.db", use_wal=True)
c["api"]["client"]["credentials_path"] = d + "/etc/local_api_credentials.yaml"
server = c["api"]["server"]
server.pop("online_client", None)   # no Central API
server.update(listen_uri="127.0.0.1:" + port, profiles_path=d + "/etc/profiles.yaml",
              console_path=d + "/etc/console.yaml")
c["prometheus"]["enabled"] = False
yaml.safe_dump(c, open(dst, "w"), sort_keys=False)
EOF
cscli() { "$csbin/cscli" -c "$cs/config.yaml" "$@"; }
# A machine (cscli's own LAPI credentials: imports go through the LAPI) and a bouncer key.
cscli machines add bench -a -f "$cs/etc/local_api_credentials.yaml" >"$cs/setup.log" 2>&1 || { cat "$cs/setup.log" >&2; exit 1; }
bkey=$(python3 -c 'import secrets; print(secrets.token_hex(24))')
cscli bouncers add bench -k "$bkey" >>"$cs/setup.log" 2>&1 || { cat "$cs/setup.log" >&2; exit 1; }
lapi_answers() {
    [ "$(curl -s -o /dev/null -w '%{http_code}' -H "X-Api-Key: $bkey" "$lurl/v1/decisions?ip=192.0.2.1")" = 200 ]
}
start_lapi() {
    "$csbin/crowdsec" -c "$cs/config.yaml" -no-cs -no-capi >>"$cs/lapi.out" 2>&1 &
    lapi=$!
    wait_for 6000 "crowdsec LAPI start" "$lapi" lapi_answers || { tail -20 "$cs/lapi.out" "$cs"/log/* >&2; exit 1; }
}
start_lapi
log "crowdsec: cscli decisions import of $n decisions"
t0=$(now)
cscli decisions import -i "$work/cs-ip.csv" --scope Ip -t ban -d 87600h -R bench >"$cs/import.log" 2>&1 &&
cscli decisions import -i "$work/cs-range.csv" --scope Range -t ban -d 87600h -R bench >>"$cs/import.log" 2>&1 ||
    { cat "$cs/import.log" >&2; exit 1; }
cs_import_s=$(echo "$(now) $t0" | awk '{print $1 - $2}')
cs_imported=$(grep -oE '[0-9]+ decisions successfully imported' "$cs/import.log" | awk '{s += $1} END {print s + 0}')
[ "$cs_imported" = "$n" ] || log "warning: cscli imported $cs_imported of $n"
cs_import_rss=$(rss_mib "$lapi")
stop_lapi
cs_db=$(db_bytes "$cs/data"/crowdsec.db*)
start_lapi
sleep 2
cs_rss=$(rss_mib "$lapi")
log "crowdsec: full streams"
r=$(stream3 "$cs/stream" "X-Api-Key: $bkey" "$lurl/v1/decisions/stream?startup=true")
read -r cs_s cs_b <<<"$r"
cs_n=$(grep -o '"value":' "$cs/stream" | wc -l)
cs_hwm=$(hwm_mib "$lapi")
stop_lapi

# ---------------------------------------------------------------- enforcement (rows 5, 6)
lat_rh="skipped" lat_cs="skipped" lat_ratio="" load_rh="skipped" load_cs="skipped" load_ratio=""
enf_failed=0
if [ "$skip_enf" != 1 ]; then
    log "enforcement: scripts/bench-enforcement.py latency $samples"
    if python3 scripts/bench-enforcement.py latency "$samples" 2>&1 | tee "$work/latency.out" >&2; then
        cell() { awk -F'|' -v pat="$1" '$2 ~ pat {gsub(/[^0-9.]/, "", $3); gsub(/[^0-9.]/, "", $4); print $3, $4; exit}' "$work/latency.out"; }
        a50="" a90="" b50="" b90=""
        read -r a50 a90 < <(cell "rephub agent") || true
        read -r b50 b90 < <(cell "crowdsec-firewall-bouncer") || true
        lat_rh="p50 $a50 ms (p90 $a90 ms)"
        lat_cs="p50 $b50 ms (p90 $b90 ms)"
        lat_ratio=$(awk -v r="$a50" -v c="$b50" 'BEGIN {print c / (r > 0 ? r : 1)}')
    else
        lat_rh="failed" lat_cs="failed" enf_failed=1
    fi
    log "enforcement: scripts/bench-enforcement.py load $load_n"
    if python3 scripts/bench-enforcement.py load "$load_n" 2>&1 | tee "$work/load.out" >&2; then
        cell() { awk -F'|' -v pat="$1" '$2 ~ pat {print $3 "|" $4; exit}' "$work/load.out"; }
        at="" acpu="" bt="" bcpu=""
        IFS='|' read -r at acpu < <(cell "rephub agent") || true
        IFS='|' read -r bt bcpu < <(cell "crowdsec-firewall-bouncer") || true
        load_rh="$(echo $at) ($(echo $acpu) CPU s)"
        load_cs="$(echo $bt) ($(echo $bcpu) CPU s)"
        load_ratio=$(awk -v r="${at//[^0-9.]/}" -v c="${bt//[^0-9.]/}" 'BEGIN {print c / (r > 0 ? r : 0.05)}')
    else
        load_rh="failed" load_cs="failed" enf_failed=1
    fi
fi

# ---------------------------------------------------------------- the table
ratio() { [ -n "$1" ] && awk -v x="$1" 'BEGIN {printf(x >= 10 ? "**%.0f×**" : "**%.2g×**", x)}' || echo "–"; }
per_s() { awk -v n="$1" -v s="$2" 'BEGIN {printf "%.0f/s (%.2f s)", n / s, s}'; }
mb() { awk -v b="$1" 'BEGIN {printf "%.2f MB", b / 1e6}'; }
secs() { awk -v s="$1" 'BEGIN {printf(s < 1 ? "%.0f ms" : "%.2f s", s < 1 ? s * 1000 : s)}'; }
q() { awk -v a="$1" -v b="$2" 'BEGIN {print a / (b > 0 ? b : 1e-9)}'; }
echo
echo "rephub vs CrowdSec LAPI $cs_version on $(nproc) cores, N = $n IPv4 entries (80% addresses, 20% CIDRs)"
echo
echo "| # | measure | rephub | CrowdSec | rephub better by |"
echo "|---|---|---|---|---|"
echo "| 1 | bulk ingest of N (\`rephub import\` SMS CSV vs \`cscli decisions import\` CSV) | $(per_s "$n" "$rh_import_s") | $(per_s "$n" "$cs_import_s") | $(ratio "$(q "$cs_import_s" "$rh_import_s")") |"
echo "| 2 | database bytes per entry after the import | $(awk -v b="$rh_db" -v n="$n" 'BEGIN {printf "%.0f B", b / n}') | $(awk -v b="$cs_db" -v n="$n" 'BEGIN {printf "%.0f B", b / n}') | $(ratio "$(q "$cs_db" "$rh_db")") |"
echo "| 3 | server RSS on that database, ready and idle | $rh_rss MiB | $cs_rss MiB | $(ratio "$(q "$cs_rss" "$rh_rss")") |"
echo "| 4 | full stream of N to a device: time (rephub \`/api/v1/sync?wait=0\` vs LAPI \`/v1/decisions/stream?startup=true\`) | $(secs "$rh_sync_s") | $(secs "$cs_s") | $(ratio "$(q "$cs_s" "$rh_sync_s")") |"
echo "| 4 | full stream of N to a device: bytes | $(mb "$rh_sync_b") | $(mb "$cs_b") | $(ratio "$(q "$cs_b" "$rh_sync_b")") |"
echo "| 4b | the same CrowdSec request (\`/v1/decisions/stream?startup=true\`) to both | $(secs "$rh_cs_s"), $(mb "$rh_cs_b") | $(secs "$cs_s"), $(mb "$cs_b") | $(ratio "$(q "$cs_s" "$rh_cs_s")") |"
echo "| 5 | write → enforced in nftables, $samples samples (agent vs crowdsec-firewall-bouncer, update_frequency 1s) | $lat_rh | $lat_cs | $(ratio "$lat_ratio") |"
echo "| 6 | full nftables load of $load_n addresses (agent vs crowdsec-firewall-bouncer) | $load_rh | $load_cs | $(ratio "$load_ratio") |"
echo
echo "- rephub better by: CrowdSec / rephub for times, bytes and memory; rephub / CrowdSec for rates (> 1: rephub better)."
echo "- Entries in the answers: rephub sync $rh_sync_n, rephub bouncer API $rh_cs_n, LAPI $cs_n (of $n)."
echo "- Peak RSS: rephub hub $rh_hwm MiB, LAPI $cs_hwm MiB (after 3 full streams each); the LAPI that ran the import: $cs_import_rss MiB after it."
echo "- Stream times: median of 3, no compression. Import: rephub CLI on the database file, durable on return; cscli through a running LAPI (SQLite WAL), addresses with --scope Ip, CIDRs with --scope Range."
echo "- Rows 5-6 (scripts/bench-enforcement.py): both enforcers pull from a rephub hub (the bouncer through its CrowdSec-compatible API). At the bouncer's default update_frequency 10s the reference measured a median ≈ 4.1 s (0.6-8.5 s); not measured here."
echo "- Load average: $load_start at start, $(cut -d' ' -f1-3 /proc/loadavg) at end."
[ "$enf_failed" = 0 ] || { echo "an enforcement benchmark failed (its output is above, on standard error)" >&2; exit 1; }
