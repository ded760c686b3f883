#!/usr/bin/env bash
# The test command (README): installs what is missing, then runs every check and test.
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/scripts/services.sh

ensure_wasm_target
ensure_tansu
ensure_postgres
build_plugins

say "formatting and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

say "building the daemon"
cargo build -p wasmconnect

say "tests"
cargo test --workspace
