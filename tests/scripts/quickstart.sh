#!/usr/bin/env bash
# The main job (README): builds the plugins and the daemon, makes sure a broker is there (a
# local tansu on 127.0.0.1:9092 unless KAFKA_BOOTSTRAP_SERVERS is set), then runs
# `wasmconnect run connectors.yaml`: datagen orders -> Kafka -> SQLite file data/demo.db (or
# the database DATABASE_URL names; the sink creates its table).
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/scripts/services.sh

ensure_wasm_target
ensure_cmake
mkdir -p data
if [ -z "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
  ensure_tansu
  data="$WASMCONNECT_CACHE/quickstart-broker"
  mkdir -p "$data"
  if ! (exec 3<>/dev/tcp/127.0.0.1/9092) 2>/dev/null; then
    say "starting a local broker on 127.0.0.1:9092 (data in $data)"
    (cd "$data" && exec "$WASMCONNECT_TANSU" broker --storage-engine sqlite://tansu.db \
      --listener-url tcp://127.0.0.1:9092 --advertised-listener-url tcp://127.0.0.1:9092 \
      >broker.log 2>&1) &
    trap 'kill %1 2>/dev/null || true' EXIT
    for _ in $(seq 1 100); do
      (exec 3<>/dev/tcp/127.0.0.1/9092) 2>/dev/null && break
      sleep 0.1
    done
  fi
  "$WASMCONNECT_TANSU" topic create orders --partitions 1 --broker tcp://127.0.0.1:9092 >/dev/null 2>&1 || true
fi
build_plugins
cargo build --release -p wasmconnect
./target/release/wasmconnect run connectors.yaml
