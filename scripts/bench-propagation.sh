#!/usr/bin/env bash
# Propagation benchmark: N long-polling devices on loopback, one write, write-to-receipt latency.
#   scripts/bench-propagation.sh [N] [ROUNDS]     (defaults: 1000, 5)
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cargo build --release -q -p rephub
cargo build --release -q -p rephub-hub --example propagation
exec target/release/examples/propagation "${1:-1000}" "${2:-5}"
