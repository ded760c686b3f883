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
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace 2>&1 | tee "$log"
fuzz_all 10

# One closing line for the whole run: the sum over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;/) p += $i; if ($(i+1) ~ /^failed;/) f += $i } }
     END { printf "summary: %d passed, %d failed\n", p, f }' "$log"
