# Shell functions shared by scripts/test, scripts/services.sh, scripts/install-deps
# and the scripts/bench-* scripts. Source it; it runs nothing by itself.
#
#   use_work_dir             $work: a temporary directory, and $pids: processes, both
#                            cleaned up on exit (stopped processes are resumed first)
#   free_port                prints a loopback port nothing listens on
#   wait_for_port NAME PORT LOG   waits until PORT accepts connections, else prints
#                            LOG and exits
#   missing_packages test|bench   prints the Debian packages this machine lacks for
#                            the tests (or the benchmarks), one per line
#   need_commands CMD...     exits with a hint when a command is missing
#   release_bin              prints the path of the release build of `button`
#   bench_bin                the binary a benchmark runs: $BUTTON_BIN (another build, to
#                            compare in one session), else a fresh release build
#   cpu_seconds PID          CPU time (user + system, every thread) PID has used so far
#   cpu_since PID SECONDS    CPU time PID has used since cpu_seconds said SECONDS
#   timed_wrk ARGS...        runs wrk; prints its output and a last line "wrk-cpu SECONDS"
#   us_per_request WRK_OUT SECONDS   CPU microseconds per request of that wrk run
#   cpu_field OUT N          field N of the line starting "cpu" in OUT

# Where builds and the Tansu broker are kept between runs, outside the repository.
button_cache="${BUTTON_CACHE_DIR:-$HOME/.cache/button}"

use_work_dir() {
  work="$(mktemp -d)"
  pids=()
  trap lib_cleanup EXIT
}

lib_cleanup() {
  local pid
  for pid in "${pids[@]}"; do
    # A process frozen with SIGSTOP only handles SIGTERM once it runs again.
    kill -CONT "$pid" 2>/dev/null || true
    kill "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  rm -rf "$work"
}

# A random port outside Linux's ephemeral range (32768-60999 by default), so that
# no outgoing connection is using it, and on which nothing listens now.
free_port() {
  local port _
  for _ in $(seq 200); do
    port=$((20000 + RANDOM % 12000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return 0
    fi
  done
  echo "error: found no free loopback port" >&2
  return 1
}

wait_for_port() { # name port logfile
  local _
  for _ in $(seq 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "error: $1 did not start on port $2; its log:" >&2
  cat "$3" >&2
  exit 1
}

# Prints the newest PostgreSQL server binaries directory; nothing if there is none.
postgres_bin_dir() {
  local dir
  dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
  if [[ -n "$dir" && -x "$dir/initdb" ]]; then echo "$dir"; fi
}

# Debian packages missing for `test` (what scripts/test needs, given the services
# it will start itself) or `bench` (the benchmarks' tools on top).
missing_packages() { # test|bench
  local need=()
  command -v cc >/dev/null || need+=(build-essential)
  command -v make >/dev/null || need+=(make)
  command -v pkg-config >/dev/null || need+=(pkg-config)
  # rdkafka and the PostgreSQL client build against OpenSSL.
  pkg-config --exists openssl 2>/dev/null || need+=(libssl-dev)
  command -v npm >/dev/null || need+=(nodejs npm)
  command -v chromium >/dev/null || need+=(chromium)
  command -v chromedriver >/dev/null || need+=(chromium-driver)
  # scripts/write-env (tested by tests/infra.rs) reads Terraform's JSON with jq;
  # the Aiven provider's schema comes from PyPI through pip.
  command -v jq >/dev/null || need+=(jq)
  python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
  if [[ -z "${BUTTON_TEST_POSTGRES:-}" || $1 == bench ]]; then
    [[ -n "$(postgres_bin_dir)" ]] || need+=(postgresql)
    command -v openssl >/dev/null || need+=(openssl)
  fi
  if [[ -z "${BUTTON_TEST_CLICKHOUSE:-}" || $1 == bench ]]; then
    command -v clickhouse-server >/dev/null || need+=(clickhouse-server)
    # Rewrites ClickHouse's configuration for a private server.
    command -v python3 >/dev/null || need+=(python3)
  fi
  if [[ $1 == bench ]]; then
    command -v wrk >/dev/null || need+=(wrk)
    command -v curl >/dev/null || need+=(curl)
    command -v psql >/dev/null || need+=(postgresql-client)
    command -v python3 >/dev/null || need+=(python3)
    # scripts/bench-kafka-cycle reads the broker's traffic.
    command -v tshark >/dev/null || need+=(tshark)
  fi
  [[ ${#need[@]} -eq 0 ]] || printf '%s\n' "${need[@]}" | sort -u
}

# The Aiven Terraform provider's schema, for checking infra/ (tests/infra.rs): the
# Pulumi Aiven package generated from the pinned provider version (PyPI
# pulumi-aiven 6.58.0 = terraform-provider-aiven 4.60.0), unpacked once into the
# cache. Exports BUTTON_AIVEN_SCHEMA.
fetch_aiven_schema() {
  local dir="$button_cache/pulumi-aiven-6.58.0"
  if [[ ! -f "$dir/pulumi_aiven/pulumi-plugin.json" ]]; then
    echo "==> fetching the Aiven provider schema (PyPI pulumi-aiven 6.58.0) into $dir"
    rm -rf "$dir.tmp"
    python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
      --dest "$dir.tmp" pulumi-aiven==6.58.0
    local wheel="$dir.tmp/pulumi_aiven-6.58.0-py3-none-any.whl"
    echo "d695a085639a1b9a71ef9dac7d4ced71b0e2c0e7369443f00ae91bf44a79d20c  $wheel" | sha256sum -c --quiet
    python3 -m zipfile -e "$wheel" "$dir.tmp"
    rm -f "$wheel"
    rm -rf "$dir"
    mv "$dir.tmp" "$dir"
  fi
  export BUTTON_AIVEN_SCHEMA="$dir/pulumi_aiven"
}

need_commands() { # command...
  local c
  for c in "$@"; do
    command -v "$c" >/dev/null || {
      echo "error: $c is not installed (sudo scripts/install-deps --bench installs it)" >&2
      exit 1
    }
  done
}

release_bin() {
  local target="${CARGO_TARGET_DIR:-target}"
  [[ "$target" == /* ]] || target="$PWD/$target"
  echo "$target/release/button"
}

ch_query() { # ClickHouse URL, SQL -> ClickHouse's answer; fails with ClickHouse's error
  curl -sS --fail-with-body "$1" --data-binary "$2"
}

presses_in() { # the summary line of `button generate` -> the presses it generated
  sed -n 's/.*events (\([0-9]*\) presses).*/\1/p' <<<"$1"
}

cpu_seconds() { # pid
  awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"
}

cpu_since() { # pid, what cpu_seconds said before
  awk -v before="$2" '{print $1 - before}' <<<"$(cpu_seconds "$1")"
}

cpu_field() { # output, field number
  awk -v n="$2" '$1 == "cpu" {print $(n)}' <<<"$1"
}

timed_wrk() { # wrk args...
  local TIMEFORMAT='wrk-cpu %U %S' out
  out="$( { time wrk "$@" 2>&1; } 2>&1 )"
  echo "$out" | awk '$1 == "wrk-cpu" {print "wrk-cpu", $2 + $3; next} {print}'
}

us_per_request() { # wrk output, CPU seconds -> microseconds of CPU per request
  local n
  n="$(echo "$1" | awk '/requests in/ {print $1}')"
  python3 -c "import sys; print(f'{float(sys.argv[2]) * 1e6 / int(sys.argv[1]):.1f}')" "$n" "$2"
}

bench_bin() {
  if [[ -n "${BUTTON_BIN:-}" ]]; then
    echo "$BUTTON_BIN"
  else
    cargo build --release --locked --quiet >&2
    release_bin
  fi
}
