#!/usr/bin/env bash
# Propagation benchmark: N long-polling devices on loopback, one write, write-to-receipt latency.
#   scripts/bench-propagation.sh [N] [ROUNDS]     (defaults: 1000, 5)
#   REPHUB_BIN=/path/to/rephub PROPAGATION_BIN=/path/to/propagation scripts/bench-propagation.sh  (no build)
#   PROPAGATION_DB=postgres://… scripts/bench-propagation.sh   (two replicas on that empty PostgreSQL
#                                   database: devices on one, the write through the other)
set -euo pipefail
[ -z "${REPHUB_BIN:-}" ] || REPHUB_BIN=$(realpath "$REPHUB_BIN")   # set: use this binary, build nothing
[ -z "${PROPAGATION_BIN:-}" ] || PROPAGATION_BIN=$(realpath "$PROPAGATION_BIN")
cd "$(dirname "$0")/.."
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ -z "${REPHUB_BIN:-}" ]; then
    cargo build --release -q -p rephub
    export REPHUB_BIN=$PWD/target/release/rephub
fi
# PROPAGATION_BIN: a built examples/propagation (it starts $REPHUB_BIN); otherwise built here.
if [ -z "${PROPAGATION_BIN:-}" ]; then
    cargo build --release -q -p rephub-hub --example propagation
    PROPAGATION_BIN=target/release/examples/propagation
fi
exec "$PROPAGATION_BIN" "${1:-1000}" "${2:-5}"
