#!/usr/bin/env bash
# Run every fuzz target of fuzz/ for N seconds each (default 20), starting from the committed seed
# corpora; exit non-zero if any target crashes. Usage: scripts/fuzz-smoke.sh [SECONDS]
#
# The toolchain is stable: RUSTC_BOOTSTRAP=1 lets cargo-fuzz use the nightly-only flags it needs
# (sanitizers). New inputs found during the run go to a temporary folder, not to fuzz/corpus/, so
# the committed seeds stay small; crashes are kept in fuzz/artifacts/<target>/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-20}"
case "$secs" in
    '' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac
export RUSTC_BOOTSTRAP=1

command -v cargo-fuzz >/dev/null 2>&1 || {
    echo "cargo-fuzz is not installed: cargo install --locked cargo-fuzz" >&2
    exit 2
}

cargo fuzz build
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

# One target per core at a time (each libFuzzer process is single-threaded): the run takes half
# as long on CI's 2 cores. Each target's output goes to its own log, printed when it has ended.
jobs=$(nproc 2>/dev/null || echo 2)
fuzz_one() {
    local target=$1
    mkdir -p "$scratch/$target" "fuzz/corpus/$target"
    if cargo fuzz run "$target" "$scratch/$target" "fuzz/corpus/$target" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$scratch/$target.log" 2>&1; then
        touch "$scratch/$target.ok"
    fi
}
targets=$(cargo fuzz list)
for target in $targets; do
    while [ "$(jobs -pr | wc -l)" -ge "$jobs" ]; do wait -n || true; done
    echo "=== fuzz $target for ${secs}s"
    fuzz_one "$target" &
done
wait

failed=()
for target in $targets; do
    if [ -f "$scratch/$target.ok" ]; then
        echo "--- $target"
        grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec|stat::new_units_added):' \
            "$scratch/$target.log" || true
    else
        tail -n 60 "$scratch/$target.log" >&2
        failed+=("$target")
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz-smoke: crashes in: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz-smoke: all targets ran ${secs}s without a crash"
