#!/usr/bin/env bash
# Checks that the crate builds with the oldest Rust it claims (`rust-version` in Cargo.toml): the
# library alone, each optional feature alone, and everything (tests, examples, benches) with all
# features. Installs that toolchain when missing. Not a CI step: CI builds on the current stable.
#
#   scripts/msrv.sh
set -euo pipefail
cd "$(dirname "$0")/.."
msrv=$(sed -n 's/^rust-version *= *"\(.*\)"/\1/p' Cargo.toml)
rustup toolchain list | grep -q "^$msrv" || rustup toolchain install "$msrv" --profile minimal
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/msrv}"
cargo "+$msrv" check --no-default-features
for feature in axum reqwest opentelemetry; do
    cargo "+$msrv" check --features "$feature"
done
cargo "+$msrv" check --all-features --all-targets
echo "msrv: builds with Rust $msrv"
