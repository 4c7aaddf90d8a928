#!/usr/bin/env bash
# sse-edge's user-space instructions for one of the harness's load modes,
# under callgrind (instruction counts do not move with other load on the
# machine, so builds can be compared on a shared machine). From the
# repository root, after building the harness:
#
#   bash benches/e2e/callgrind.sh BIN OUT -- LOAD-ARGS...
#   bash benches/e2e/callgrind.sh target/release/sse-edge /tmp/cg-json.out -- --workload json --clients 1 --secs 4
#   bash benches/e2e/callgrind.sh target/release/sse-edge /tmp/cg-prompt.out -- --workload prompt --clients 1 --secs 4 --kb 200
#   bash benches/e2e/callgrind.sh target/release/sse-edge /tmp/cg-paced.out -- --workload stream --clients 8 --streams 16 --events 300
#
# Starts the mock upstream and BIN (sse-edge, one worker, under
# `valgrind --tool=callgrind --instr-atstart=no`), warms up with the same
# load for 1 s (JSON and prompt) or 8 streams, switches instrumentation on
# for the measured load only (`e2e-bench load --addr ... LOAD-ARGS`), then
# prints the load's output and the whole process's instructions.
# `callgrind_annotate OUT` reads the profile. Ports 19500-19503 and 19591.
set -euo pipefail
[ $# -ge 3 ] && [ "$3" = "--" ] || { sed -n '2,17p' "$0"; exit 2; }
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BENCH=$ROOT/benches/e2e/target/release/e2e-bench
BIN=$1 OUT=$2
shift 3
UP=127.0.0.1:19500 EDGE=127.0.0.1:19501 ADMIN=127.0.0.1:19591
"$BENCH" upstream --listen $UP --flaky 127.0.0.1:19502 --switchable 127.0.0.1:19503 &
UP_PID=$!
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT" \
  "$BIN" --listen $EDGE --admin $ADMIN --upstream http://$UP --heartbeat 15s \
  --log-access-log false --workers 1 --drain-timeout 1s 2>/tmp/callgrind-sse-edge.err &
EDGE_PID=$!
trap 'kill $UP_PID 2>/dev/null || true; kill $EDGE_PID 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  (exec 3<>/dev/tcp/127.0.0.1/19501) 2>/dev/null && break
  sleep 0.1
done
case " $* " in
  *" stream "*) "$BENCH" load --addr $EDGE --workload stream --clients 8 --streams 8 --events 30 --interval-us 0 >/dev/null ;;
  *) "$BENCH" load --addr $EDGE "$@" --secs 1 >/dev/null ;;
esac
callgrind_control -i on $EDGE_PID >/dev/null
"$BENCH" load --addr $EDGE "$@"
callgrind_control -i off $EDGE_PID >/dev/null
kill -INT $EDGE_PID
wait $EDGE_PID || true
callgrind_annotate "$OUT" 2>/dev/null | grep 'PROGRAM TOTALS'
