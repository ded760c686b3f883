#!/usr/bin/env bash
# The test command (README): installs what is missing, then runs every check and test.
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/scripts/services.sh

ensure_wasm_target
ensure_cmake
ensure_iproute2
ensure_tansu
ensure_postgres
ensure_mariadb
ensure_database_tls
ensure_promtool
ensure_systemd_analyze
ensure_cargo_fuzz
build_plugins
build_python_plugin
ensure_kafka_connect_py
ensure_confluent_kafka
ensure_schemathesis

say "formatting and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

say "building the daemon"
cargo build -p wasmconnect
warm_scaffold_builds

say "tests"
# Built once, so that the lanes below only run tests. Every lane selects the whole workspace,
# as this build does: cargo unifies features over the packages selected, so a lane run with
# `-p` would build its own copy of the runtime and the test crate first.
cargo test --workspace --no-run
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
# Three lanes, one test at a time each: the tests that load the broker and the database for
# minutes (`heavy::`: the cluster's, several workers each, and the kill tests of the `heavy`
# modules), the exactly-once kill storm (`storm`: mostly its restart delays, the machine
# idle), and every other test. In one run on two threads the heavy ones could not run two at
# once (`common::heavy`: they starved the broker), so one thread waited on the other's heavy
# test for minutes: 17 min for the integration tests, against the longest lane's ~9.5.
cargo test --workspace --test it -- --test-threads=1 heavy:: >"$logs/heavy" 2>&1 &
heavy=$!
cargo test --workspace --test it -- --test-threads=1 ::storm:: >"$logs/storm" 2>&1 &
storm=$!
failed=0
cargo test --workspace -- --test-threads=1 --skip heavy:: --skip ::storm:: 2>&1 |
  tee "$logs/rest" || failed=1
wait "$heavy" || failed=1
wait "$storm" || failed=1
say "the heavy tests and the kill storm (run beside the above)"
cat "$logs/heavy" "$logs/storm"
if [ "$failed" = 0 ]; then
  fuzz_all 10
fi

# One closing line for the whole run: the sum over every test binary and lane.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;/) p += $i; if ($(i+1) ~ /^failed;/) f += $i } }
     END { printf "summary: %d passed, %d failed\n", p, f }' "$logs"/*
[ "$failed" = 0 ]
