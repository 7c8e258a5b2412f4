#!/usr/bin/env bash
# Fuzzes for a fixed time: fuzz/run.sh [SECONDS] [TARGET...] (default 60 seconds, every target in
# turn, each for SECONDS). Targets: codec (the body codec against a reference), headers (the server
# layer around an echo service), sse (the response usage reader, whole vs. split).
# New inputs go to fuzz/corpus/TARGET, crashes to fuzz/artifacts/TARGET and each run's output to
# fuzz/artifacts/TARGET/last-run.log; fuzz/seeds/TARGET is read only.
# Exits non-zero when a target found a failure (the others still run).
set -euo pipefail
all=(codec headers sse)
seconds=60
if [[ "${1:-}" =~ ^[0-9]+$ ]]; then
    seconds="$1"
    shift
fi
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
    targets=("${all[@]}")
fi
cd "$(dirname "$0")/.."
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz
fi
failed=()
for target in "${targets[@]}"; do
    if [[ ! " ${all[*]} " =~ " ${target} " ]]; then
        echo "unknown target ${target}; known: ${all[*]}" >&2
        exit 2
    fi
    mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
    log="fuzz/artifacts/$target/last-run.log"
    echo "== $target for ${seconds}s"
    if cargo +nightly fuzz run "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 2>&1 | tee "$log"; then
        status=ok
    else
        status=FAILED
        failed+=("$target")
    fi
    runs=$(grep -oE 'Done [0-9]+ runs in [0-9]+ second' "$log" | tail -1 || true)
    echo "== $target: $status${runs:+ ($runs(s))}, corpus $(find "fuzz/corpus/$target" -type f | wc -l) inputs"
done
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "failures in: ${failed[*]} (see fuzz/artifacts/)" >&2
    exit 1
fi
