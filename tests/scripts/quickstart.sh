#!/usr/bin/env bash
# The main job (README): builds the plugins and the daemon, makes sure a broker is there (a
# local tansu on 127.0.0.1:9092 unless KAFKA_BOOTSTRAP_SERVERS is set), then runs
# `wasmconnect run connectors.yaml`: datagen orders -> Kafka -> SQLite file data/demo.db (or
# the database DATABASE_URL names; the sink creates its table).
#
# WASMCONNECT_BIN runs that daemon binary instead, building nothing (the plugins must be
# built); QUICKSTART_BROKER_PORT moves the local broker off 9092.
#
# Ctrl-C reaches the daemon alone: the broker it started runs in its own session, so the
# daemon drains and commits against a live broker, and the broker is stopped after it.
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/scripts/services.sh

if [ -z "${WASMCONNECT_BIN:-}" ]; then
  ensure_wasm_target
  ensure_cmake
fi
mkdir -p data
if [ -z "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
  ensure_tansu
  port="${QUICKSTART_BROKER_PORT:-9092}"
  export KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:$port"
  data="$WASMCONNECT_CACHE/quickstart-broker"
  [ "$port" = 9092 ] || data="$data-$port"
  mkdir -p "$data"
  if ! (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null; then
    say "starting a local broker on 127.0.0.1:$port (data in $data)"
    # setsid: out of the terminal's process group, so Ctrl-C does not stop it under the
    # daemon's drain; the EXIT trap stops it once the daemon has exited.
    (cd "$data" && exec setsid "$WASMCONNECT_TANSU" broker --storage-engine sqlite://tansu.db \
      --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" \
      >broker.log 2>&1 </dev/null) &
    broker=$!
    trap 'kill "$broker" 2>/dev/null && wait "$broker" 2>/dev/null; true' EXIT
    for _ in $(seq 1 100); do
      (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break
      sleep 0.1
    done
  fi
  "$WASMCONNECT_TANSU" topic create orders --partitions 1 --broker "tcp://127.0.0.1:$port" \
    >/dev/null 2>&1 || true
fi
if [ -z "${WASMCONNECT_BIN:-}" ]; then
  build_plugins
  # The daemon in the dev profile (its plugin compiler optimized, Cargo.toml): it builds in a
  # fraction of the release build's time, and is the very build the test command uses. The
  # release build (`cargo build --release`) is the one to deploy.
  cargo build -p wasmconnect
  WASMCONNECT_BIN=./target/debug/wasmconnect
fi
# Not exec: the script outlives the daemon to stop the broker after it.
"$WASMCONNECT_BIN" run connectors.yaml
