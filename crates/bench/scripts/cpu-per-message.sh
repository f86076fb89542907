#!/usr/bin/env bash
# CPU time per relayed message, split into the relay's and the load
# generator's user and system time: starts a fresh SQLite relay with the
# benchmark flags, warms it with 3,000 messages, then measures one
# `bench relay` closed-loop run (relay from /proc/<pid>/stat, generator
# from the shell's `time`, which includes its 100 registrations).
#
# usage: crates/bench/scripts/cpu-per-message.sh BIN MESSAGES CONCURRENCY
#   e.g. cpu-per-message.sh target/release/obscura 30000 64
set -euo pipefail

BIN=$1
MESSAGES=$2
CONCURRENCY=$3
PORT=3475
DIR=$(mktemp -d /tmp/obscura-cpu.XXXXXX)
# shellcheck source=bench-flags.sh
. "$(dirname "$0")/bench-flags.sh"

"$BIN" relay --listen "127.0.0.1:$PORT" --mgmt-listen "127.0.0.1:$((PORT + 1))" \
  --data-dir "$DIR/data" "${BENCH_FLAGS[@]}" >"$DIR/relay.log" 2>&1 &
relay=$!
trap 'kill "$relay" 2>/dev/null || true; wait "$relay" 2>/dev/null || true; rm -rf "$DIR"' EXIT
for _ in $(seq 1 300); do
  curl -sf "http://127.0.0.1:$((PORT + 1))/readyz" >/dev/null && break
  sleep 0.1
done
url="http://127.0.0.1:$PORT"
"$BIN" bench relay --url "$url" --users 100 --messages 3000 --concurrency "$CONCURRENCY" >/dev/null 2>&1

read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$relay/stat")
TIMEFORMAT="%U %S"
{ time "$BIN" bench relay --url "$url" --users 100 --messages "$MESSAGES" \
  --concurrency "$CONCURRENCY" >"$DIR/out.txt" 2>&1; } 2>"$DIR/time.txt"
read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$relay/stat")
read -r gu gs <"$DIR/time.txt"
rate=$(grep -E '^sent' "$DIR/out.txt" | grep -oE '[0-9]+ msg/s' || echo "? msg/s")
verdict=$(grep -oE 'exactly once +[a-z]+' "$DIR/out.txt" | sed -E 's/ +/ /g' || echo "exactly once ?")
awk -v n="$MESSAGES" -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v tck="$(getconf CLK_TCK)" \
  -v gu="$gu" -v gs="$gs" -v r="$rate" -v v="$verdict" 'BEGIN {
    printf "%s | %s | relay user %.0f sys %.0f µs/msg | generator user %.0f sys %.0f µs/msg\n",
      r, v, u * 1e6 / tck / n, s * 1e6 / tck / n, gu * 1e6 / n, gs * 1e6 / n
  }'
