#!/usr/bin/env bash
# Load test of the gateway demo with the metadata layer on vs. off, on loopback only: builds both
# examples in release, then runs the full matrix (1 KB / 32 KB / 1 MB bodies, streaming or not,
# 1 / 16 / 128 in flight; about five minutes) and prints the table and the target check.
#   benches/load.sh              the full matrix
#   benches/load.sh --quick      a few cases, under a minute
# Other options go to the load generator (benches/load.sh --help lists them; --proxy forwards through
# a second gateway, as a deployment would).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --example gateway --example load
exec target/release/examples/load "$@"
