# Sourced by the benchmark scripts: relay settings for benchmarks only —
# cheap password hashing and rate limits a single load generator does not
# trip (docs/performance.md, "Starting the servers"). Never in production.
# shellcheck disable=SC2034 # used by the scripts that source this file
BENCH_FLAGS=(--argon2-memory-kib 1024 --argon2-iterations 1
  --auth-rate-limit-per-sec 100000 --auth-rate-limit-burst 100000
  --ip-rate-limit-per-sec 100000 --ip-rate-limit-burst 100000
  --rate-limit-per-sec 1000000 --rate-limit-burst 1000000)
