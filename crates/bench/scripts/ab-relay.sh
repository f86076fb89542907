#!/usr/bin/env bash
# Compares relay builds on the same machine in the same hour: for each run,
# for each binary, starts a fresh relay, optionally warms it up, runs
# `obscura bench relay`, stops it, and prints one line. Runs interleave the
# binaries, so a machine that gets busier or quieter affects all of them.
#
# usage: crates/bench/scripts/ab-relay.sh sqlite|postgres RUNS "BENCH ARGS" BIN...
#   e.g. ab-relay.sh sqlite 3 "--users 100 --messages 20000 --concurrency 64" \
#          /tmp/obscura-before target/release/obscura
# env:   WARMUP       bench args of a run made first on each fresh relay and not
#                     reported (a new relay opens its PostgreSQL connections and
#                     prepares its statements on demand), e.g.
#                     WARMUP="--users 100 --messages 3000 --rate 3000"
#        DATABASE_URL (postgres; default postgres://postgres@127.0.0.1:5432/test)
#        REDIS_URL    (postgres; default redis://127.0.0.1:6379)
# Each line: msg/s accepted, send→201 p99, send→receive percentiles, the
# exactly-once verdict, the relay's CPU time during the measured run, and
# for postgres the transactions committed and the CPU time PostgreSQL's
# processes and Redis used during it.
set -euo pipefail

BACKEND=$1
RUNS=$2
ARGS=$3
shift 3
DB=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
REDIS=${REDIS_URL:-redis://127.0.0.1:6379}
PORT=3470
DIR=$(mktemp -d /tmp/obscura-ab.XXXXXX)
# shellcheck source=bench-flags.sh
. "$(dirname "$0")/bench-flags.sh"

pg() { psql "$DB" -tAc "$1"; }
cpu_ticks() { # utime + stime of the given processes, in clock ticks
  for p in "$@"; do awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null; done |
    awk '{s += $1} END {print s + 0}'
}
ms() { echo $(($1 * 1000 / $(getconf CLK_TCK))); }

relay=""
schema=""
stop_relay() {
  # Its exit status does not matter here (and must not trip `set -e`).
  [ -n "$relay" ] && { kill "$relay" 2>/dev/null && wait "$relay" 2>/dev/null || true; }
  relay=""
  # A failed drop (e.g. the killed relay's connections still closing) must
  # not end the whole comparison: the schema is only clutter.
  [ -n "$schema" ] && { pg "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true; }
  schema=""
  return 0
}
trap 'stop_relay; rm -rf "$DIR"' EXIT

for r in $(seq 1 "$RUNS"); do
  for bin in "$@"; do
    rm -rf "$DIR/data"
    backend_flags=()
    if [ "$BACKEND" = postgres ]; then
      schema=ab_$(date +%s%N | tail -c 10)
      backend_flags=(--database-url "$DB" --database-schema "$schema"
        --redis-url "$REDIS" --redis-key-prefix "$schema")
    fi
    "$bin" relay --listen "127.0.0.1:$PORT" --mgmt-listen "127.0.0.1:$((PORT + 1))" \
      --data-dir "$DIR/data" "${BENCH_FLAGS[@]}" "${backend_flags[@]}" >"$DIR/relay.log" 2>&1 &
    relay=$!
    for _ in $(seq 1 300); do
      curl -sf "http://127.0.0.1:$((PORT + 1))/readyz" >/dev/null && break
      sleep 0.1
    done
    url="http://127.0.0.1:$PORT"
    # shellcheck disable=SC2086 # ARGS and WARMUP are word lists
    [ -n "${WARMUP:-}" ] && "$bin" bench relay --url "$url" $WARMUP >/dev/null 2>&1
    extra=""
    r0=$(cpu_ticks "$relay")
    if [ "$BACKEND" = postgres ]; then
      x0=$(pg "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
      # shellcheck disable=SC2046 # one pid per word
      c0=$(cpu_ticks $(pgrep -x postgres))
      d0=$(cpu_ticks "$(pgrep -x redis-server | head -n1)")
    fi
    # shellcheck disable=SC2086
    out=$("$bin" bench relay --url "$url" $ARGS 2>&1) || true
    extra=" | relay CPU $(ms $(($(cpu_ticks "$relay") - r0))) ms"
    if [ "$BACKEND" = postgres ]; then
      x1=$(pg "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
      # shellcheck disable=SC2046
      c1=$(cpu_ticks $(pgrep -x postgres))
      d1=$(cpu_ticks "$(pgrep -x redis-server | head -n1)")
      extra+=" | transactions $((x1 - x0)) | postgres CPU $(ms $((c1 - c0))) ms | redis CPU $(ms $((d1 - d0))) ms"
    fi
    stop_relay
    sent=$(grep -E '^sent' <<<"$out" | grep -oE '[0-9]+ msg/s' || echo "? msg/s")
    p99_201=$(grep 'send → 201' <<<"$out" | grep -oE 'p99 [0-9.]+' || echo "p99 ?")
    receive=$(grep 'send → receive' <<<"$out" | sed -E 's/ +/ /g; s/^send → receive //' || echo "?")
    verdict=$(grep -oE 'exactly once +[a-z]+' <<<"$out" | sed -E 's/ +/ /g' || echo "exactly once ?")
    echo "$(basename "$bin") run $r: $sent | send→201 $p99_201 | send→receive $receive | $verdict$extra"
  done
done
