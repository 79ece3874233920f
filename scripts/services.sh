# Throwaway servers for the tests and benchmarks, on free loopback ports, with all
# their files under $work. Sourced after scripts/lib.sh, once `use_work_dir` has
# made $work and the `pids` array its EXIT trap stops.
#
#   build_tansu       builds the Tansu broker into the cache once (about 20 minutes)
#   start_tansu       starts a Tansu broker (in memory); exports BUTTON_TEST_KAFKA=127.0.0.1:PORT
#   start_postgres    exports BUTTON_TEST_POSTGRES=postgres://postgres@127.0.0.1:PORT/postgres
#                     (plain or TLS, clients choose) and BUTTON_TEST_POSTGRES_CA: the CA
#                     file that signed the server's certificate, issued for `localhost`
#   start_clickhouse  exports BUTTON_TEST_CLICKHOUSE=http://127.0.0.1:PORT (user `default`,
#                     no password), and BUTTON_TEST_CLICKHOUSE_USER/_PASSWORD: a second
#                     user with a password
#
# Each runs its server in the foreground of a background job (not daemonized), so
# the PID in `pids` is the server's own and the EXIT trap stops it. A missing
# program is an error that names scripts/install-deps; nothing here needs root.

tansu_bin="$button_cache/tansu/bin/tansu"

build_tansu() {
  [[ ! -x "$tansu_bin" ]] || return 0
  echo "==> building the Tansu test broker into $button_cache/tansu (once; about 20 minutes)"
  CARGO_TARGET_DIR="$button_cache/tansu-target" cargo install tansu --version 0.6.0 --locked \
    --features dynostore,libsql --root "$button_cache/tansu" --quiet
}

start_tansu() {
  if [[ ! -x "$tansu_bin" ]]; then
    echo "error: $tansu_bin is missing: run scripts/test once (it builds it)" >&2
    return 1
  fi
  local port
  port="$(free_port)"
  "$tansu_bin" broker --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" \
    --storage-engine memory://tansu/ >"$work/tansu-$port.log" 2>&1 &
  pids+=($!)
  wait_for_port "the Tansu broker" "$port" "$work/tansu-$port.log"
  export BUTTON_TEST_KAFKA="127.0.0.1:$port"
  echo "==> Kafka-protocol broker (Tansu) on $BUTTON_TEST_KAFKA"
}

services_missing() { # what
  echo "error: $1 is not installed: run scripts/install-deps (as root)" >&2
  return 1
}

start_postgres() {
  local bin
  bin="$(postgres_bin_dir)"
  [[ -n "$bin" ]] || services_missing "PostgreSQL (/usr/lib/postgresql/*/bin/initdb)" || return 1
  command -v openssl >/dev/null || services_missing openssl || return 1

  local dir="$work/pg" port
  port="$(free_port)"
  mkdir -p "$dir/data" "$dir/sock"
  # initdb and postgres refuse to run as root: run them as the `postgres` user
  # (created by Debian's package; otherwise create a system user for it).
  local as=()
  if [[ $(id -u) -eq 0 ]]; then
    if ! id postgres >/dev/null 2>&1; then
      useradd --system --no-create-home --shell /usr/sbin/nologin postgres
    fi
    chown -R postgres: "$dir"
    # mktemp -d makes $work 0700; the server user only needs to traverse it.
    chmod o+x "$work"
    # setpriv execs (no intermediate process), so `$!` is the server's PID.
    as=(setpriv --reuid=postgres --regid=postgres --init-groups --)
  fi

  "${as[@]}" "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 \
    --no-sync >"$dir/initdb.log" 2>&1 || {
    echo "error: initdb failed; its log:" >&2
    cat "$dir/initdb.log" >&2
    return 1
  }
  # TLS too (clients choose), with a throwaway CA, so the tests can check sslmode.
  services_pg_certs "$dir/tls" || {
    echo "error: cannot make the test certificates; openssl says:" >&2
    cat "$dir/tls/openssl.log" >&2
    return 1
  }
  [[ ${#as[@]} -eq 0 ]] || chown -R postgres: "$dir/tls"
  local tls=(-c ssl=on -c "ssl_cert_file=$dir/tls/server.crt" -c "ssl_key_file=$dir/tls/server.key")
  # Tests trade durability for speed; benchmarks set BUTTON_PG_DURABLE=1.
  local durability=(-c fsync=off -c synchronous_commit=off -c full_page_writes=off)
  [[ "${BUTTON_PG_DURABLE:-}" != 1 ]] || durability=()
  "${as[@]}" "$bin/postgres" -D "$dir/data" -p "$port" -c listen_addresses=127.0.0.1 \
    -k "$dir/sock" "${durability[@]}" \
    -c max_connections=200 "${tls[@]}" >"$dir/postgres.log" 2>&1 &
  pids+=($!)
  wait_for_port "PostgreSQL" "$port" "$dir/postgres.log"
  # The port opens before recovery ends; wait until it accepts queries.
  local ok=""
  for _ in $(seq 100); do
    if "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres; then ok=1; break; fi
    sleep 0.1
  done
  if [[ -z "$ok" ]]; then
    echo "error: PostgreSQL did not become ready on port $port; its log:" >&2
    cat "$dir/postgres.log" >&2
    return 1
  fi
  export BUTTON_TEST_POSTGRES="postgres://postgres@127.0.0.1:$port/postgres"
  export BUTTON_TEST_POSTGRES_CA="$dir/tls/ca.pem"
  echo "==> PostgreSQL ($("$bin/postgres" --version)) on 127.0.0.1:$port"
}

# A CA and a server certificate it signed, for `localhost` only (not 127.0.0.1, so
# that verify-ca and verify-full differ), under $1.
services_pg_certs() { # dir
  local d="$1"
  mkdir -p "$d"
  (
    cd "$d" &&
      openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3 \
        -subj "/CN=button test CA" -keyout ca.key -out ca.pem \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" &&
      openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -subj "/CN=localhost" -keyout server.key -out server.csr &&
      printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >ext.cnf &&
      openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3 \
        -extfile ext.cnf -out server.crt &&
      chmod 600 server.key
  ) >"$d/openssl.log" 2>&1
}

# Rewrites a copy of Debian's ClickHouse config for a private server under $1.
services_clickhouse_config() { # dir http_port tcp_port
  local dir="$1" http="$2" tcp="$3"
  python3 - "$dir" "$http" "$tcp" <<'EOF'
import re, sys
d, http, tcp = sys.argv[1:]
src = open("/etc/clickhouse-server/config.xml").read()
def tag(name, value, text):
    text, n = re.subn(r"<%s>[^<]*</%s>" % (name, name), "<%s>%s</%s>" % (name, value, name), text, count=1)
    if n == 0:  # absent from this version's file: add it
        text = text.replace("</yandex>", "    <%s>%s</%s>\n</yandex>" % (name, value, name), 1)
    return text
for name, value in [
    ("path", d + "/data/"),
    ("tmp_path", d + "/tmp/"),
    ("user_files_path", d + "/user_files/"),
    ("format_schema_path", d + "/format_schemas/"),
    ("log", d + "/log/clickhouse-server.log"),
    ("errorlog", d + "/log/clickhouse-server.err.log"),
    ("http_port", http),
    ("tcp_port", tcp),
]:
    src = tag(name, value, src)
# Ports and listeners we do not want: drop them (also inside comments, harmlessly).
for name in ["interserver_http_port", "https_port", "tcp_port_secure", "mysql_port",
             "postgresql_port", "grpc_port", "listen_host"]:
    src = re.sub(r"<%s>[^<]*</%s>" % (name, name), "", src)
src = src.replace("</yandex>", "    <listen_host>127.0.0.1</listen_host>\n</yandex>", 1)
src = src.replace("<users_config>users.xml</users_config>",
                  "<users_config>%s/users.xml</users_config>" % d)
open(d + "/config.xml", "w").write(src)
users = open("/etc/clickhouse-server/users.xml").read()
# A user with a password (characters that need escaping in URLs), for the auth tests,
# and one in read-only mode (readonly=1: may not change settings).
users = users.replace("<users>", """<users>
        <button_test>
            <password>te@st:pa/ss w%rd</password>
            <networks><ip>127.0.0.1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </button_test>
        <button_reader>
            <password></password>
            <networks><ip>127.0.0.1</ip></networks>
            <profile>readonly</profile>
            <quota>default</quota>
        </button_reader>""", 1)
open(d + "/users.xml", "w").write(users)
EOF
}

start_clickhouse() {
  command -v clickhouse-server >/dev/null || services_missing clickhouse-server || return 1
  command -v python3 >/dev/null || services_missing python3 || return 1
  local dir="$work/ch" http tcp
  http="$(free_port)"
  tcp="$(free_port)"
  while [[ "$tcp" == "$http" ]]; do tcp="$(free_port)"; done
  mkdir -p "$dir/data" "$dir/tmp" "$dir/user_files" "$dir/format_schemas" "$dir/log"
  services_clickhouse_config "$dir" "$http" "$tcp" || return 1
  # Runs as root (as Debian's 18.16 allows); everything it writes is under $dir.
  clickhouse-server --config-file="$dir/config.xml" >"$dir/log/stdout.log" 2>&1 &
  pids+=($!)
  local ok=""
  for _ in $(seq 300); do
    if [[ "$(services_http_get 127.0.0.1 "$http" /ping)" == "Ok." ]]; then ok=1; break; fi
    sleep 0.1
  done
  if [[ -z "$ok" ]]; then
    echo "error: ClickHouse did not start on port $http; its logs:" >&2
    cat "$dir/log/stdout.log" "$dir/log/clickhouse-server.err.log" >&2 2>/dev/null
    return 1
  fi
  export BUTTON_TEST_CLICKHOUSE="http://127.0.0.1:$http"
  export BUTTON_TEST_CLICKHOUSE_USER=button_test BUTTON_TEST_CLICKHOUSE_PASSWORD='te@st:pa/ss w%rd'
  export BUTTON_TEST_CLICKHOUSE_READER=button_reader
  echo "==> ClickHouse ($(services_http_get 127.0.0.1 "$http" "/?query=SELECT%20version()")) on 127.0.0.1:$http"
}

# GET http://HOST:PORT/PATH with bash alone; prints the body (empty on failure).
services_http_get() { # host port path
  local body
  body="$(exec 2>/dev/null 3<>"/dev/tcp/$1/$2" &&
    printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$3" "$1" >&3 &&
    timeout 2 cat <&3)" 2>/dev/null || return 0
  printf '%s' "${body#*$'\r\n\r\n'}" | tr -d '\r\n'
}
