#!/usr/bin/env bash
# Holds TOTAL idle gateway WebSockets at once on ONE machine, spread over
# NODES relay processes sharing PostgreSQL and Redis (a cluster as in
# docs/deploy.md), with one load-generator process per node.
#
# Why several processes: a process holds at most RLIMIT_NOFILE descriptors,
# and both ends of a loopback socket need one (the relay's and the
# generator's). Where the hard limit cannot be raised past TOTAL (20,000 in
# the sandbox this was measured in), TOTAL sockets need TOTAL/limit nodes.
#
# usage: crates/bench/scripts/connections-cluster.sh [TOTAL] [NODES]
#   TOTAL  sockets in all (default 50000)      NODES  relay processes (default 3)
# env:   OBSCURA (binary; default target/release/obscura), DATABASE_URL,
#        REDIS_URL, HOLD_SECS (default 60), OUT (directory for logs and JSON)
# Exit status 0 iff every generator kept all its sockets open and the nodes'
# live-socket gauges summed to TOTAL at some moment.
set -euo pipefail

TOTAL=${1:-50000}
NODES=${2:-3}
BIN=${OBSCURA:-target/release/obscura}
DB=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
REDIS=${REDIS_URL:-redis://127.0.0.1:6379}
HOLD=${HOLD_SECS:-60}
OUT=${OUT:-$(mktemp -d /tmp/obscura-connections.XXXXXX)}
RUN=conn_$(date +%s)
PER=$(((TOTAL + NODES - 1) / NODES))
SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
# shellcheck source=bench-flags.sh
. "$(dirname "$0")/bench-flags.sh"

mkdir -p "$OUT"
echo "limit: $(ulimit -Hn) descriptors per process; $NODES nodes × $PER sockets; output in $OUT"
if [ "$PER" -ge "$(ulimit -Hn)" ]; then
  echo "each node would need more than $(ulimit -Hn) descriptors: use more nodes" >&2
  exit 2
fi

nodes=()
gens=()
cleanup() {
  kill "${gens[@]}" "${nodes[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  psql "$DB" -qc "DROP SCHEMA IF EXISTS $RUN CASCADE" >/dev/null 2>&1 || true
  redis-cli -u "$REDIS" --scan --pattern "$RUN:*" 2>/dev/null | xargs -r redis-cli -u "$REDIS" del >/dev/null 2>&1 || true
}
trap cleanup EXIT

port() { echo $((3600 + 10 * $1)); }

for i in $(seq 1 "$NODES"); do
  "$BIN" relay --listen "127.0.0.1:$(port "$i")" --mgmt-listen "127.0.0.1:$(($(port "$i") + 1))" \
    --data-dir "$OUT/node$i" --database-url "$DB" --database-schema "$RUN" \
    --redis-url "$REDIS" --redis-key-prefix "$RUN" --jwt-secret "$SECRET" \
    "${BENCH_FLAGS[@]}" >"$OUT/node$i.log" 2>&1 &
  nodes+=($!)
done
for i in $(seq 1 "$NODES"); do
  ready=0
  for _ in $(seq 1 300); do
    curl -sf "http://127.0.0.1:$(($(port "$i") + 1))/readyz" >/dev/null && ready=1 && break
    sleep 0.1
  done
  [ "$ready" -eq 1 ] || { echo "node $i is not ready; see $OUT/node$i.log" >&2; exit 1; }
done

# Each generator registers its users through its node, opens one socket
# per user, holds them all for HOLD seconds and reports what stayed open.
for i in $(seq 1 "$NODES"); do
  "$BIN" bench connections --url "http://127.0.0.1:$(port "$i")" -n "$PER" \
    --server-pid "${nodes[$((i - 1))]}" --hold-secs "$HOLD" --register-concurrency 8 \
    --json "$OUT/generator$i.json" >"$OUT/generator$i.txt" 2>&1 &
  gens+=($!)
done

# Meanwhile, the sum of the nodes' live-socket gauges (the relay's own view).
peak=0
while kill -0 "${gens[@]}" 2>/dev/null; do
  sum=0
  for i in $(seq 1 "$NODES"); do
    n=$(curl -sf "http://127.0.0.1:$(($(port "$i") + 1))/metrics" |
      awk '$1 == "obscura_relay_websockets" { print int($2) }')
    sum=$((sum + ${n:-0}))
  done
  [ "$sum" -gt "$peak" ] && peak=$sum && echo "$(date +%T) live sockets on all nodes: $sum"
  sleep 2
done

failed=0
for i in $(seq 1 "$NODES"); do
  wait "${gens[$((i - 1))]}" || failed=1
  echo "--- node $i"
  grep -E "still open|server RSS|server per connection|server marginal" "$OUT/generator$i.txt" || failed=1
  open=$(grep -oE '"still_open": *[0-9]+' "$OUT/generator$i.json" | grep -oE '[0-9]+$' || echo 0)
  [ "$open" -eq "$PER" ] || { echo "node $i: only $open of $PER sockets still open" >&2; failed=1; }
done
echo "peak live sockets across $NODES nodes: $peak (target $((PER * NODES)))"
[ "$failed" -eq 0 ] && [ "$peak" -ge "$((PER * NODES))" ]
