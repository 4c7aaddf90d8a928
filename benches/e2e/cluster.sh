#!/usr/bin/env bash
# Cluster mode's costs (issue 17), measured on loopback with a real
# redis-server:
#
#   local         resumable streams read whole on one relay, no [cluster]
#   local_cluster the same with [cluster] (Redis up, nobody resumes elsewhere)
#   resume_same   each stream cut after 10 events and resumed on the relay
#                 that produces it (no [cluster]): the single-replica figure
#   resume_other  the same, resumed on another replica of a cluster
#
# Per scenario: relay CPU per event (user + system, all threads of every
# relay process involved, from /proc/PID/task/*/schedstat), reconnect
# latency (reconnect sent -> first event, from the load generator), and
# Redis commands per stream and per event (INFO commandstats). Rounds are
# interleaved (round 1 of every scenario, then round 2, ...) and each
# measurement starts fresh relay processes, pinned to CPU 0 with one worker;
# the load generator, the upstream and Redis share CPU 1.
#
# Usage: bash benches/e2e/cluster.sh [--rounds N] [--streams N] [--events N]
# Prints a Markdown table; raw rows go to benches/e2e/out/cluster.tsv.
set -euo pipefail
cd "$(dirname "$0")/../.."

rounds=5 streams=320 events=200 clients=32
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --streams) streams=$2; shift 2 ;;
    --events) events=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

if ! command -v redis-server >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
cargo build --release --quiet --bin sse-edge
cargo build --release --quiet --manifest-path benches/e2e/Cargo.toml
bin=$PWD/target/release/sse-edge
e2e=$PWD/benches/e2e/target/release/e2e-bench
out=$PWD/benches/e2e/out
mkdir -p "$out"
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
redis_port=$(free_port)
up_port=$(free_port)
taskset -c 1 redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no >"$work/redis.log" 2>&1 &
pids+=($!)
taskset -c 1 "$e2e" upstream --listen "127.0.0.1:$up_port" >"$work/upstream.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.05; done

cpu_ns() { # all threads of a process, on-CPU nanoseconds
  local t=0 v
  for f in /proc/"$1"/task/*/schedstat; do
    read -r v _ <"$f" || continue
    t=$((t + v))
  done
  echo "$t"
}

redis_calls() { # every command Redis ran so far
  redis-cli -p "$redis_port" info commandstats |
    awk -F'[=,:]' '/^cmdstat_/ { n += $3 } END { print n + 0 }'
}

# relay NAME [args...]: starts one; sets RELAY_PID and RELAY_ADDR.
relay() {
  local name=$1; shift
  local port admin
  port=$(free_port); admin=$(free_port)
  taskset -c 0 "$bin" --listen "127.0.0.1:$port" --admin "127.0.0.1:$admin" --workers 1 \
    --upstream "http://127.0.0.1:$up_port" --resume-window 60s --resume-memory 1GiB \
    --log-level warn "$@" >"$work/$name.log" 2>&1 &
  RELAY_PID=$!
  RELAY_ADDR=127.0.0.1:$port
  for _ in $(seq 200); do
    curl -fs "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1 && return 0
    sleep 0.02
  done
  echo "relay $name did not start:" >&2; cat "$work/$name.log" >&2; exit 1
}

load() { taskset -c 1 "$e2e" load --cpu 1 --clients "$clients" "$@" 2>>"$work/load.err"; }

printf 'round\tscenario\tevents\tstreams\tcpu_ns\tredis_calls\treconnect_p50_us\treconnect_p99_us\n' >"$out/cluster.tsv"
cluster=(--cluster-url "redis://127.0.0.1:$redis_port/0")
for round in $(seq "$rounds"); do
  for scenario in local local_cluster resume_same resume_other; do
    procs=()
    case $scenario in
      local) relay a; procs=("$RELAY_PID"); a=$RELAY_ADDR; b=$a ;;
      local_cluster) relay a "${cluster[@]}"; procs=("$RELAY_PID"); a=$RELAY_ADDR; b=$a ;;
      resume_same) relay a; procs=("$RELAY_PID"); a=$RELAY_ADDR; b=$a ;;
      resume_other)
        relay a "${cluster[@]}"; procs=("$RELAY_PID"); a=$RELAY_ADDR
        relay b "${cluster[@]}"; procs+=("$RELAY_PID"); b=$RELAY_ADDR ;;
    esac
    case $scenario in
      local*) workload=(--workload stream --addr "$a") ;;
      *) workload=(--workload resume --addr "$a" --resume-addr "$b" --cut-after 10) ;;
    esac
    # Warm-up, then the measurement.
    load "${workload[@]}" --streams 32 --events 50 --interval-us 1000 >/dev/null
    before=0; for p in "${procs[@]}"; do before=$((before + $(cpu_ns "$p"))); done
    calls_before=$(redis_calls)
    line=$(load "${workload[@]}" --streams "$streams" --events "$events" --interval-us 1000)
    after=0; for p in "${procs[@]}"; do after=$((after + $(cpu_ns "$p"))); done
    calls=$(( $(redis_calls) - calls_before - 1 )) # minus the INFO itself
    for p in "${procs[@]}"; do kill "$p"; wait "$p" 2>/dev/null || true; done
    got_events=$(sed -n 's/.* events \([0-9]*\) in .*/\1/p' <<<"$line")
    got_streams=$(sed -n 's/^streams \([0-9]*\) failed.*/\1/p' <<<"$line")
    failed=$(sed -n 's/.* failed \([0-9]*\) .*/\1/p' <<<"$line")
    if [ "${failed:-1}" != 0 ]; then
      echo "round $round $scenario: failures: $line" >&2; tail -3 "$work/load.err" >&2; exit 1
    fi
    p50=$(sed -n 's/.*reconnect p50 \([0-9.]*\) us.*/\1/p' <<<"$line")
    p99=$(sed -n 's/.*reconnect p50 [0-9.]* us p99 \([0-9.]*\) us$/\1/p' <<<"$line")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$scenario" "$got_events" "$got_streams" \
      "$((after - before))" "$calls" "${p50:--}" "${p99:--}" >>"$out/cluster.tsv"
    echo "round $round $scenario: $line" >&2
  done
done

python3 - "$out/cluster.tsv" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
by = {}
for r in rows:
    by.setdefault(r["scenario"], []).append(r)
def per_event(r): return int(r["cpu_ns"]) / int(r["events"]) / 1000
base = {}
for s in ("local", "resume_same"):
    base[s] = statistics.median(per_event(r) for r in by[s])
print("| scenario | relay CPU per event (µs, median) | vs | ratio | reconnect p50 / p99 (µs, median) | Redis commands per stream | per event |")
print("|---|---|---|---|---|---|---|")
for s, ref in (("local", "local"), ("local_cluster", "local"), ("resume_same", "resume_same"), ("resume_other", "resume_same")):
    rs = by[s]
    cpu = statistics.median(per_event(r) for r in rs)
    # Ratios per round (interleaved), then their median.
    ratio = statistics.median(per_event(r) / per_event(q) for r, q in zip(rs, by[ref]))
    rec = "-" if rs[0]["reconnect_p50_us"] == "-" else "%.0f / %.0f" % (
        statistics.median(float(r["reconnect_p50_us"]) for r in rs),
        statistics.median(float(r["reconnect_p99_us"]) for r in rs))
    calls = statistics.median(int(r["redis_calls"]) for r in rs)
    streams = int(rs[0]["streams"]); events = statistics.median(int(r["events"]) for r in rs)
    print(f"| {s} | {cpu:.2f} | {ref} | {ratio:.2f} | {rec} | {calls / streams:.1f} | {calls / events:.3f} |")
EOF
