# Sourced by the test and quickstart commands: installs and starts what a fresh machine lacks.
# Slow installs are cached outside the repository (WASMCONNECT_CACHE, default ~/.cache/wasmconnect).
set -euo pipefail

WASMCONNECT_CACHE="${WASMCONNECT_CACHE:-${HOME:-/root}/.cache/wasmconnect}"
TANSU_VERSION=0.6.0
export WASMCONNECT_TANSU="${WASMCONNECT_TANSU:-$WASMCONNECT_CACHE/tansu-$TANSU_VERSION/bin/tansu}"
export WASMCONNECT_TEST_DATABASE_URL="${WASMCONNECT_TEST_DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/postgres}"
export WASMCONNECT_TEST_MYSQL_URL="${WASMCONNECT_TEST_MYSQL_URL:-mysql://wasmconnect:wasmconnect@127.0.0.1:3306/wasmconnect}"

say() { printf '==> %s\n' "$*" >&2; }

ensure_wasm_target() {
  if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    say "installing the wasm32-wasip2 target"
    rustup target add wasm32-wasip2
  fi
}

# cmake: librdkafka is built with it (rdkafka's cmake-build), the one way its build links the
# static libcurl that OAUTHBEARER/OIDC needs. Debian's package, a few seconds.
ensure_cmake() {
  if ! command -v cmake >/dev/null 2>&1; then
    say "installing cmake (builds librdkafka)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake >/dev/null
  fi
}

# iproute2: the cluster test cuts one worker off the broker by running it in a network namespace
# of its own (`ip netns`). Debian's package, a few seconds.
ensure_iproute2() {
  if ! command -v ip >/dev/null 2>&1; then
    say "installing iproute2 (network namespaces for the cluster tests)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 >/dev/null
  fi
}

# tansu: a Kafka-compatible broker (crates.io). ~12 minutes to build once on 2 cores, then cached.
ensure_tansu() {
  if [ ! -x "$WASMCONNECT_TANSU" ]; then
    say "building the test broker tansu $TANSU_VERSION into $WASMCONNECT_CACHE (once, ~12 min)"
    cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore,libsql \
      --root "$WASMCONNECT_CACHE/tansu-$TANSU_VERSION"
  fi
}

# PostgreSQL: started if installed and stopped, installed with apt where missing; the postgres
# user gets the password the tests use.
ensure_postgres() {
  if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    ensure_logical_wal
    return
  fi
  if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    say "installing PostgreSQL"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  if ! pg_lsclusters -h | grep -q .; then
    version=$(ls /usr/lib/postgresql | sort -n | tail -1)
    pg_createcluster "$version" main >/dev/null
  fi
  say "starting PostgreSQL"
  pg_clusters start
  su postgres -c "psql -qc \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null
  ensure_logical_wal
}

# Starts or restarts ($1) every PostgreSQL cluster and waits until the server accepts
# connections.
pg_clusters() {
  pg_lsclusters -h | while read -r version cluster _; do
    pg_ctlcluster "$version" "$cluster" "$1" || [ "$1" = start ]
  done
  for _ in $(seq 1 100); do
    pg_isready -q -h 127.0.0.1 -p 5432 && break
    sleep 0.1
  done
  pg_isready -h 127.0.0.1 -p 5432
}

# Change data capture (source-postgres-cdc) decodes the write-ahead log: wal_level = logical,
# which takes a restart, once. The test user is a superuser, so it may create slots.
ensure_logical_wal() {
  if [ "$(su postgres -c "psql -tAc 'SHOW wal_level'")" = logical ]; then
    return
  fi
  say "restarting PostgreSQL with wal_level = logical"
  su postgres -c "psql -qc 'ALTER SYSTEM SET wal_level = logical' \
    -c 'ALTER SYSTEM SET max_replication_slots = 20' \
    -c \"ALTER SYSTEM SET max_slot_wal_keep_size = '4GB'\"" >/dev/null
  pg_clusters restart
}

# MariaDB: installed with apt where missing, started if stopped; a database and user for the
# tests (WASMCONNECT_TEST_MYSQL_URL).
ensure_mariadb() {
  if mariadb-admin -h 127.0.0.1 -u wasmconnect -pwasmconnect ping >/dev/null 2>&1; then
    return
  fi
  if [ ! -x /usr/sbin/mariadbd ]; then
    say "installing MariaDB"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mariadb-server >/dev/null
  fi
  if ! mariadb-admin ping >/dev/null 2>&1; then
    say "starting MariaDB"
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
    (service mariadb start >/dev/null 2>&1) || (mysqld_safe --user=mysql >/dev/null 2>&1 &)
    for _ in $(seq 1 100); do
      mariadb-admin ping >/dev/null 2>&1 && break
      sleep 0.1
    done
  fi
  mariadb -u root -e "CREATE DATABASE IF NOT EXISTS wasmconnect;
    CREATE USER IF NOT EXISTS 'wasmconnect'@'127.0.0.1' IDENTIFIED BY 'wasmconnect';
    CREATE USER IF NOT EXISTS 'wasmconnect'@'localhost' IDENTIFIED BY 'wasmconnect';
    GRANT ALL ON wasmconnect.* TO 'wasmconnect'@'127.0.0.1';
    GRANT ALL ON wasmconnect.* TO 'wasmconnect'@'localhost';"
}

# TLS for the test databases. A CA of the test command's own (made once with openssl, in
# $WASMCONNECT_CACHE/db-tls), a server certificate for 127.0.0.1 and localhost that PostgreSQL
# and MariaDB serve, and a client certificate for the role `wasmconnect_cert`, whom PostgreSQL
# lets in by that certificate alone (pg_hba: hostssl ... cert); MariaDB's `wasmconnect_tls`
# may connect over TLS only. The tests find the files through WASMCONNECT_TEST_DB_TLS.
ensure_database_tls() {
  local dir="$WASMCONNECT_CACHE/db-tls"
  if [ ! -f "$dir/client.ext" ]; then
    say "making the test databases' TLS certificates in $dir"
    mkdir -p "$dir"
    (
      cd "$dir"
      openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=wasmconnect test database CA" \
        -keyout ca.key -out ca.pem 2>/dev/null
      openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr 2>/dev/null
      printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >server.ext
      openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
        -extfile server.ext -out server.pem 2>/dev/null
      openssl req -newkey rsa:2048 -nodes -subj "/CN=wasmconnect_cert" -keyout client.key -out client.csr 2>/dev/null
      printf 'extendedKeyUsage=clientAuth\n' >client.ext
      openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
        -extfile client.ext -out client.pem 2>/dev/null
      chmod 600 client.key
    )
  fi
  export WASMCONNECT_TEST_DB_TLS="$dir"

  local pg=/var/lib/postgresql/wasmconnect-tls
  if ! cmp -s "$dir/server.pem" "$pg/server.pem" 2>/dev/null; then
    install -d -o postgres -g postgres -m 700 "$pg"
    install -o postgres -g postgres -m 600 "$dir/server.pem" "$dir/server.key" "$dir/ca.pem" "$pg/"
  fi
  su postgres -c "psql -q -c \"ALTER SYSTEM SET ssl = on\" \
    -c \"ALTER SYSTEM SET ssl_cert_file = '$pg/server.pem'\" \
    -c \"ALTER SYSTEM SET ssl_key_file = '$pg/server.key'\" \
    -c \"ALTER SYSTEM SET ssl_ca_file = '$pg/ca.pem'\"" >/dev/null
  local hba
  hba=$(su postgres -c "psql -tAc 'SHOW hba_file'")
  if ! grep -q wasmconnect_cert "$hba"; then
    sed -i '1i hostssl all wasmconnect_cert 127.0.0.1/32 cert' "$hba"
  fi
  su postgres -c "psql -q -c 'SELECT pg_reload_conf()' \
    -c \"DO \\\$\\\$ BEGIN CREATE ROLE wasmconnect_cert LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END \\\$\\\$\"" >/dev/null

  local my=/etc/mysql/wasmconnect-tls
  local cnf=/etc/mysql/mariadb.conf.d/99-wasmconnect-tls.cnf
  local renewed=no
  if [ ! -f "$cnf" ] || ! cmp -s "$dir/server.pem" "$my/server.pem"; then
    install -d -o mysql -g mysql -m 750 "$my"
    install -o mysql -g mysql -m 600 "$dir/server.pem" "$dir/server.key" "$dir/ca.pem" "$my/"
    printf '[mariadbd]\nssl_cert = %s/server.pem\nssl_key = %s/server.key\nssl_ca = %s/ca.pem\n' \
      "$my" "$my" "$my" >"$cnf"
    renewed=yes
  fi
  if [ "$(mariadb -u root -N -e "SELECT @@have_ssl")" != "YES" ]; then
    say "restarting MariaDB with TLS"
    mariadb-admin -u root shutdown
    ensure_mariadb
  elif [ "$renewed" = yes ]; then
    mariadb -u root -e "FLUSH SSL"
  fi
  # A user MariaDB lets in over TLS only.
  mariadb -u root -e "CREATE USER IF NOT EXISTS 'wasmconnect_tls'@'127.0.0.1' IDENTIFIED BY 'wasmconnect' REQUIRE SSL;
    GRANT ALL ON wasmconnect.* TO 'wasmconnect_tls'@'127.0.0.1';"
}

# promtool and prometheus (Debian's package): the metrics test lints /metrics with promtool;
# the operator kit test runs the alert rules' unit tests and a Prometheus server scraping a run.
ensure_promtool() {
  if ! command -v promtool >/dev/null 2>&1; then
    say "installing promtool (prometheus)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
  fi
}

# systemd-analyze checks the shipped unit (runtime/ops/wasmconnect.service) offline.
ensure_systemd_analyze() {
  if ! command -v systemd-analyze >/dev/null 2>&1; then
    say "installing systemd-analyze (systemd)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null
  fi
}

ensure_cargo_fuzz() {
  if ! cargo fuzz --version >/dev/null 2>&1; then
    say "installing cargo-fuzz (crates.io)"
    cargo install cargo-fuzz --version 0.13.2 --locked
  fi
}

# Runs every fuzz target of runtime/fuzz for $1 seconds (libFuzzer, no sanitizer: the stable
# toolchain). The instrumented build (the pure core only, about a minute the first time) and the
# corpus of inputs found so far are cached in $WASMCONNECT_CACHE/fuzz; a crash fails the run
# and leaves its input in runtime/fuzz/artifacts.
fuzz_all() {
  local seconds=$1 target out cache="$WASMCONNECT_CACHE/fuzz"
  out=$(mktemp)
  for target in config interpolation positions watermark source_watermark pgoutput; do
    say "fuzzing $target for ${seconds}s"
    mkdir -p "$cache/corpus/$target"
    local seeds=()
    case $target in config | interpolation) seeds=(../../tests/cases/config) ;; esac
    if ! (cd runtime/fuzz && cargo fuzz run -s none --target-dir "$cache/target" "$target" \
      "$cache/corpus/$target" "${seeds[@]}" -- -max_total_time="$seconds" >"$out" 2>&1); then
      tail -40 "$out"
      rm -f "$out"
      return 1
    fi
    grep -E '^Done [0-9]+ runs' "$out" | sed "s/^/$target: /" >&2 || true
  done
  rm -f "$out"
}

# A command of a pinned PyPI package, in a virtualenv of its own outside the repository,
# installed on first use; sets REPLY to the command's path.
pip_command() {
  local package=$1 version=$2 command=$3 extras=${4:-}
  local venv="$WASMCONNECT_CACHE/$package-$version"
  if [ ! -x "$venv/bin/$command" ]; then
    say "installing $package$extras $version into $venv"
    command -v python3 >/dev/null || apt-get install -y python3
    python3 -m venv "$venv" || { apt-get install -y python3-venv && python3 -m venv "$venv"; }
    "$venv/bin/pip" install --quiet "$package$extras==$version"
  fi
  REPLY="$venv/bin/$command"
}

# componentize-py: builds the Python plugin that shows the WIT contract is not Rust's alone.
COMPONENTIZE_PY_VERSION=0.25.1
ensure_componentize_py() {
  pip_command componentize-py "$COMPONENTIZE_PY_VERSION" componentize-py
  export WASMCONNECT_COMPONENTIZE_PY="$REPLY"
}

# kafka-connect-py's kc: a third-party Kafka Connect REST client, driving connectors created
# in Kafka Connect's config shape.
KAFKA_CONNECT_PY_VERSION=1.0.0
ensure_kafka_connect_py() {
  pip_command kafka-connect-py "$KAFKA_CONNECT_PY_VERSION" kc
  export WASMCONNECT_KC="$REPLY"
}

# confluent-kafka with its Schema Registry serializers: Confluent's own client, writing the
# Avro, JSON Schema and Protobuf records the format tests read (grpcio-tools' protoc compiles
# the test's .proto for it). Its check is an import: the venv's python exists before the
# packages are installed.
CONFLUENT_KAFKA_VERSION=2.16.1
GRPCIO_TOOLS_VERSION=1.76.0
ensure_confluent_kafka() {
  local venv="$WASMCONNECT_CACHE/confluent-kafka-$CONFLUENT_KAFKA_VERSION"
  if ! "$venv/bin/python" -c "import fastavro, jsonschema, grpc_tools, confluent_kafka.schema_registry.protobuf" 2>/dev/null; then
    rm -rf "$venv"
    pip_command confluent-kafka "$CONFLUENT_KAFKA_VERSION" python "[avro,json,protobuf,schemaregistry]"
    "$venv/bin/pip" install --quiet "grpcio-tools==$GRPCIO_TOOLS_VERSION"
  fi
  export WASMCONNECT_CONFLUENT_PYTHON="$venv/bin/python"
}

# schemathesis's st: fuzzes the admin API against its OpenAPI description.
SCHEMATHESIS_VERSION=4.32.5
ensure_schemathesis() {
  pip_command schemathesis "$SCHEMATHESIS_VERSION" st
  export WASMCONNECT_SCHEMATHESIS="$REPLY"
}

# The Python sink (tests/fixtures/sink-python), rebuilt when its source or the WIT changed.
build_python_plugin() {
  ensure_componentize_py
  local out=target/wasm32-wasip2/plugin/sink_python.wasm
  local dir=tests/fixtures/sink-python
  if [ ! -f "$out" ] || [ -n "$(find "$dir/app.py" wit -newer "$out" -print -quit)" ]; then
    say "building the Python plugin with componentize-py"
    mkdir -p "$(dirname "$out")"
    (cd "$dir" && "$WASMCONNECT_COMPONENTIZE_PY" -d ../../../wit -w sink-plugin componentize app \
      -o "../../../$out")
  fi
}

# What `wasmconnect plugin new` crates depend on (the SDK, wit-bindgen, serde), built once into
# target/scaffold, where the kit test builds its scaffolded crates: the test then compiles
# only the crates themselves, instead of two minutes of compiling on both cores while the
# timing-sensitive tests run beside it.
warm_scaffold_builds() {
  say "building what scaffolded plugin crates depend on"
  local dir
  dir=$(mktemp -d)
  ./target/debug/wasmconnect plugin new warm-up --kind sink --dir "$dir" >/dev/null
  (cd "$dir/warm-up" && export CARGO_TARGET_DIR="$OLDPWD/target/scaffold" \
    && cargo test --no-run --quiet && cargo build --quiet --release --target wasm32-wasip2)
  rm -rf "$dir"
}

build_plugins() {
  say "building plugins (wasm32-wasip2)"
  cargo build --profile plugin --target wasm32-wasip2 \
    -p sink-sql -p sink-http -p source-http -p source-sql -p source-datagen \
    -p transform-filter -p transform-fields -p transform-route -p transform-flatten \
    -p source-postgres-cdc -p transform-unwrap -p transform-cast -p transform-timestamp \
    -p transform-extract -p transform-key -p transform-headers \
    -p sink-misbehave -p source-misbehave -p sink-probe -p sink-other-contract -p transform-identity \
    -p transform-misbehave -p transform-impure
}
