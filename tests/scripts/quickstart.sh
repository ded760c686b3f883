#!/usr/bin/env bash
# The main job (README): builds the plugins and the daemon, then runs
# `wasmconnect run connectors.yaml`: datagen orders -> Kafka -> SQLite file data/demo.db (or
# the database DATABASE_URL names; the sink creates its table). The broker is the daemon's
# embedded one (in memory) unless KAFKA_BOOTSTRAP_SERVERS names one.
#
# WASMCONNECT_BIN runs that daemon binary instead, building nothing (the plugins must be
# built).
#
# Ctrl-C reaches the daemon, which drains against its embedded broker and stops it last.
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/scripts/services.sh

if [ -z "${WASMCONNECT_BIN:-}" ]; then
  ensure_wasm_target
  ensure_cmake
fi
mkdir -p data
if [ -z "${WASMCONNECT_BIN:-}" ]; then
  say "building the plugins connectors.yaml runs (wasm32-wasip2)"
  cargo build --profile plugin --target wasm32-wasip2 \
    -p source-datagen -p transform-filter -p sink-sql
  # The daemon in the dev profile (its plugin compiler optimized, Cargo.toml): it builds in a
  # fraction of the release build's time, and is the very build the test command uses. The
  # release build (`cargo build --release`) is the one to deploy.
  cargo build -p wasmconnect
  WASMCONNECT_BIN=./target/debug/wasmconnect
fi
exec "$WASMCONNECT_BIN" run connectors.yaml
