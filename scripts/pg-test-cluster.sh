#!/usr/bin/env bash
# A throw-away PostgreSQL cluster for the test suite (Debian's `postgresql` package, nothing else).
#
#   scripts/pg-test-cluster.sh start   # start it unless it runs; print its connection string
#   scripts/pg-test-cluster.sh stop    # stop it and remove its files
#   scripts/pg-test-cluster.sh halt    # stop the server, keep its files (fault tests; `start` again)
#
# The cluster lives in $REPHUB_PG_DIR (default /tmp/rephub-pg-test), listens on a Unix socket in
# that directory only (no TCP port), trusts local connections, and runs as the `postgres` user when
# started by root (initdb refuses root). The test suite starts it itself when
# REPHUB_TEST_POSTGRES is not set (crates/store/tests/pg/mod.rs); each test then makes a database of
# its own and drops it. Test binaries run in parallel: `start` holds a lock while it checks and
# starts, so one cluster serves them all. fsync is off (the tests kill processes, not machines)
# unless REPHUB_PG_FSYNC=on (benchmarks of durable writes). REPHUB_PG_OPTS adds server options (the
# TLS test: a TCP port on loopback, ssl=on and its certificate).
set -euo pipefail

dir=${REPHUB_PG_DIR:-/tmp/rephub-pg-test}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
    echo "PostgreSQL is not installed (apt-get install postgresql)" >&2
    exit 3
fi

as_owner() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

conninfo="host=$dir user=postgres dbname=postgres"

case "${1:-start}" in
start)
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres: "$dir"
    exec 9>"$dir.lock"
    flock 9
    if ! as_owner "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
        if [ ! -f "$dir/data/PG_VERSION" ]; then
            as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 \
                --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
                || { cat "$dir/initdb.log" >&2; exit 1; }
        fi
        as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start \
            -o "-c listen_addresses='' -c unix_socket_directories='$dir' -c fsync=${REPHUB_PG_FSYNC:-off} \
                -c max_connections=300 -c shared_buffers=128MB ${REPHUB_PG_OPTS:-}" >/dev/null 9>&- \
            || { tail -20 "$dir/server.log" >&2; exit 1; }
    fi
    echo "$conninfo"
    ;;
stop)
    if [ -d "$dir/data" ]; then
        as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir" "$dir.lock"
    ;;
halt)
    as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    ;;
*)
    echo "usage: $0 start|stop|halt" >&2
    exit 2
    ;;
esac
