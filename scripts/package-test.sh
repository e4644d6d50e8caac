#!/usr/bin/env bash
# The Debian package as an operator gets it (run as root by .ci/run): built, installed with dpkg,
# its units checked by systemd-analyze, the hub started exactly as rephub.service starts it (its
# ExecStart, as its user; systemd itself is not PID 1 here), the packaged CLI and `promtool check
# metrics` against it, and the package purged again.
set -euo pipefail
cd "$(dirname "$0")/.."

deb="$(scripts/package-deb.sh | tail -1)"
# From a clean machine's state, even when an earlier run was interrupted.
dpkg --purge rephub >/dev/null 2>&1 || true
echo "=== installing $deb"
dpkg -i "$deb"
trap 'dpkg --purge rephub >/dev/null 2>&1 || true' EXIT

fail() { echo "package test: $*" >&2; exit 1; }

for f in /usr/bin/rephub /lib/systemd/system/rephub.service /lib/systemd/system/rephub-agent.service \
    /etc/rephub/hub.toml /etc/rephub/agent.toml /usr/share/bash-completion/completions/rephub \
    /usr/share/zsh/vendor-completions/_rephub /usr/share/doc/rephub/docs/suricata.md; do
    [ -e "$f" ] || fail "$f is not installed"
done
ls /usr/share/man/man1/rephub.1* /usr/share/man/man1/rephub-filters.1* >/dev/null \
    || fail "manual pages are not installed"
getent passwd rephub >/dev/null || fail "the rephub user was not created"
[ "$(stat -c %U /var/lib/rephub)" = rephub ] || fail "/var/lib/rephub is not rephub's"
[ "$(stat -c %a /etc/rephub/agent.toml)" = 600 ] || fail "agent.toml is readable by others"
if command -v systemd-analyze >/dev/null; then
    systemd-analyze verify /lib/systemd/system/rephub.service /lib/systemd/system/rephub-agent.service
fi

# An admin key made on the packaged database by its user (the first start prints one only once,
# and a second run of this script finds the database there).
key="$(runuser -u rephub -- rephub --data-dir /var/lib/rephub keys add "ci-$$" --role admin \
    | grep -o 'rh_[A-Za-z0-9_-]*' | head -1)"
[ -n "$key" ] || fail "no admin key"

# The unit's own command line and user; only the listener moved to a free port.
exec_start="$(sed -n 's/^ExecStart=//p' /lib/systemd/system/rephub.service)"
user="$(sed -n 's/^User=//p' /lib/systemd/system/rephub.service)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
log="$(mktemp)"
# shellcheck disable=SC2086 # the unit's ExecStart is split into words, as systemd does
runuser -u "$user" -- env REPHUB_LISTEN="127.0.0.1:$port" $exec_start >"$log" 2>&1 &
hub=$!
trap 'kill $hub 2>/dev/null || true; dpkg --purge rephub >/dev/null 2>&1 || true' EXIT
for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
    kill -0 $hub 2>/dev/null || { cat "$log"; fail "the hub exited"; }
    sleep 0.2
done
curl -sf "http://127.0.0.1:$port/healthz" >/dev/null || { cat "$log"; fail "the hub did not start"; }

rephub --hub "http://127.0.0.1:$port" --key "$key" filters add "block High $$" --action block \
    --criterion "Trend Micro Severity=High" >/dev/null
rephub --hub "http://127.0.0.1:$port" --key "$key" filters list | grep -q "block High $$" \
    || fail "the packaged CLI does not see the filter it made"
rephub --hub "http://127.0.0.1:$port" --key "$key" status
curl -sf "http://127.0.0.1:$port/metrics" | promtool check metrics \
    || fail "promtool check metrics refused /metrics"
if grep -q $'\e\[' "$log"; then
    fail "colour codes in the hub's log file"
fi
kill $hub
wait $hub 2>/dev/null || true
dpkg --purge rephub
[ ! -e /var/lib/rephub ] || fail "purging left /var/lib/rephub"
trap - EXIT
echo "package test: ok"
