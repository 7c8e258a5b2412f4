#!/usr/bin/env bash
# Fuzzes the body codec for a fixed time: fuzz/run.sh [SECONDS] (default 60).
# New inputs go to fuzz/corpus/codec, crashes to fuzz/artifacts/codec; fuzz/seeds/codec is read only.
set -euo pipefail
seconds="${1:-60}"
cd "$(dirname "$0")/.."
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz
fi
mkdir -p fuzz/corpus/codec
exec cargo +nightly fuzz run codec fuzz/corpus/codec fuzz/seeds/codec -- -max_total_time="$seconds"
