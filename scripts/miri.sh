#!/usr/bin/env bash
# Runs the body codec's unit tests and its rule tests (tests/codec.rs) under Miri, which checks the
# crate's one `unsafe` block (the call into the AVX2 block loop, src/codec/avx2.rs) and everything it
# reaches for undefined behaviour.
#
# The target features are switched on at compile time, so Miri takes the AVX2 path and interprets its
# intrinsics; without them it would only see the portable loop. Needs a nightly toolchain with the
# `miri` and `rust-src` components (installed here when missing). Not a CI step: it takes minutes.
#
#   scripts/miri.sh            # codec unit tests, then tests/codec.rs
#   scripts/miri.sh FILTER     # only unit tests whose name contains FILTER
set -euo pipefail
cd "$(dirname "$0")/.."
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
rustup component add --toolchain nightly miri rust-src
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/miri}"
export RUSTFLAGS="-Ctarget-feature=+avx2,+popcnt,+pclmulqdq"
# proptest reads the clock and the environment.
export MIRIFLAGS="-Zmiri-disable-isolation"
time cargo +nightly miri test --lib "${1:-codec::}"
if [[ $# -eq 0 ]]; then
    # A million nesting levels take Miri too long; the unit tests cover depth with fewer.
    time cargo +nightly miri test --test codec -- --skip a_million_levels
fi
