#!/usr/bin/env bash
# End-to-end benchmark of sse-edge against nginx and HAProxy; writes
# BENCHMARKS.md. One command, from the repository root:
#
#   bash benches/e2e/run.sh            # full run (~13 min on 2 cores)
#   bash benches/e2e/run.sh --quick    # small sizes, 2 rounds, no micro-benches or profiles (~3 min)
#
# Options: --quick, --no-install (skip apt-get), --no-micro (skip the
# criterion micro-benches), --no-profile (skip profile.sh), --only LIST
# (comma-separated scenarios: stream_paced,stream_burst,json_c1,json_c32,
# prompt,idle,upload,heartbeat,tls_handshake,tls_stream,failover_c1,failover_c32),
# --rounds N. Quick and partial
# runs (--quick, --only, --rounds) skip the micro-benches and profiles,
# leave BENCHMARKS.md alone and report in
# benches/e2e/out/e2e.md, unless --write is given.
#
# What it does: installs nginx, HAProxy, openssl and valgrind from Debian
# packages when missing; builds sse-edge (release) and the harness
# (benches/e2e, its own cargo workspace, with the hyper-floor relay); makes a self-signed ECDSA P-256
# certificate; runs `e2e-bench run`, which pins every proxy to CPU 0 and
# itself plus the mock upstream to CPU 1; then the criterion micro-benches
# and the profiles (full runs only). Each section of BENCHMARKS.md between
# `<!-- NAME:begin -->` and `<!-- NAME:end -->` markers is rewritten; the
# hand-written text around them is kept.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
E2E=$ROOT/benches/e2e
OUT=$E2E/out
CMD="bash benches/e2e/run.sh${*:+ $*}"

QUICK=0 INSTALL=1 MICRO=1 PROFILE=1 WRITE=1
RUN_ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1; MICRO=0; PROFILE=0; WRITE=0; RUN_ARGS+=(--quick) ;;
    --write) FORCE_WRITE=1 ;;
    --no-install) INSTALL=0 ;;
    --no-micro) MICRO=0 ;;
    --no-profile) PROFILE=0 ;;
    --only) RUN_ARGS+=(--only "$2"); WRITE=0; MICRO=0; PROFILE=0; shift ;;
    --rounds) RUN_ARGS+=(--rounds "$2"); WRITE=0; MICRO=0; PROFILE=0; shift ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
[ "${FORCE_WRITE:-0}" = 1 ] && WRITE=1

if [ "$(nproc)" -lt 2 ]; then
  echo "run.sh: needs 2 CPUs (one for the proxy, one for load + upstream)" >&2
  exit 1
fi

if [ "$INSTALL" = 1 ]; then
  missing=()
  for pair in nginx:nginx haproxy:haproxy openssl:openssl valgrind:valgrind strace:strace taskset:util-linux; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "== apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi

# Each idle stream costs a proxy 2 descriptors: take the hard limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
echo "== open-file limit: $(ulimit -n)"

echo "== build sse-edge (release)"
(cd "$ROOT" && cargo build --release --bin sse-edge)
# A snapshot of the binary: every measurement and profile of this run uses
# the same one, even if target/release/sse-edge is rebuilt meanwhile.
mkdir -p "$OUT/bin"
cp "$ROOT/target/release/sse-edge" "$OUT/bin/sse-edge.tmp" && mv "$OUT/bin/sse-edge.tmp" "$OUT/bin/sse-edge"
SSE_EDGE=$OUT/bin/sse-edge
if [ "$PROFILE" = 1 ]; then
  # massif (profile.sh) sees only the system allocator's heap: a build
  # without jemalloc for it, then the default build again (both stay cached).
  echo "== build sse-edge with the system allocator (for massif)"
  (cd "$ROOT" && cargo build --release --bin sse-edge --no-default-features)
  cp "$ROOT/target/release/sse-edge" "$OUT/bin/sse-edge-system.tmp" && mv "$OUT/bin/sse-edge-system.tmp" "$OUT/bin/sse-edge-system"
  (cd "$ROOT" && cargo build --release --bin sse-edge)
fi
echo "== build the harness (benches/e2e)"
cargo build --release --locked --manifest-path "$E2E/Cargo.toml"
BENCH=$E2E/target/release/e2e-bench
# The thinnest relay on hyper's own halves, the yardstick of the CPU rows
# (BENCHMARKS.md, "The hyper floor"); snapshotted like sse-edge.
cp "$E2E/target/release/hyper-floor" "$OUT/bin/hyper-floor.tmp" && mv "$OUT/bin/hyper-floor.tmp" "$OUT/bin/hyper-floor"

mkdir -p "$OUT/tls"
if [ ! -s "$OUT/tls/cert.pem" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$OUT/tls/key.pem" -out "$OUT/tls/cert.pem" -days 365 \
    -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null
fi

echo "== end-to-end run"
rm -rf "$OUT/work"
"$BENCH" run \
  --sse-edge "$SSE_EDGE" --hyper-floor "$OUT/bin/hyper-floor" \
  --work "$OUT/work" --out "$OUT/e2e.md" \
  --cert "$OUT/tls/cert.pem" --key "$OUT/tls/key.pem" \
  --proxy-cpu 0 --load-cpu 1 \
  --command "$CMD" "${RUN_ARGS[@]}"
if [ "$WRITE" = 1 ]; then
  "$BENCH" splice --file "$ROOT/BENCHMARKS.md" --block e2e --from "$OUT/e2e.md"
else
  echo "== partial or quick run: BENCHMARKS.md left alone (--write to update it); report in benches/e2e/out/e2e.md"
fi

if [ "$MICRO" = 1 ]; then
  echo "== criterion micro-benches"
  {
    echo "Recorded by \`$CMD\` on $(date -u '+%Y-%m-%d %H:%M UTC'); each bench run as"
    echo "\`cargo bench --bench NAME -- --warm-up-time 1 --measurement-time 3\` (criterion's [low estimate high])."
    for b in timer scanner usage ending resume upstream; do
      [ -f "$ROOT/benches/$b.rs" ] || continue
      (cd "$ROOT" && cargo bench --bench "$b" -- --warm-up-time 1 --measurement-time 3) \
        >"$OUT/micro-$b.txt" 2>&1 || echo "(cargo bench --bench $b failed; see benches/e2e/out/micro-$b.txt)" >>"$OUT/micro-$b.txt"
      echo
      echo "\`cargo bench --bench $b -- --warm-up-time 1 --measurement-time 3\`:"
      echo
      echo '```text'
      # Names, time and throughput lines; progress, outliers and the change
      # against an earlier run on this machine dropped.
      awk '/^[[:space:]]+change:/ { skip = 2; next }
           skip > 0 { skip--; next }
           /time:|thrpt:/ { print; next }
           /^(Benchmarking|Found|Gnuplot|WARNING|Warning|error|warning)/ { next }
           /^[A-Za-z_][^|,`]*$/ { print }' "$OUT/micro-$b.txt" | sed 's/[[:space:]]*$//'
      echo '```'
    done
  } >"$OUT/micro.md"
  "$BENCH" splice --file "$ROOT/BENCHMARKS.md" --block micro --from "$OUT/micro.md"
fi

if [ "$PROFILE" = 1 ]; then
  echo "== profiles"
  SSE_EDGE="$SSE_EDGE" SSE_EDGE_SYSTEM="$OUT/bin/sse-edge-system" bash "$E2E/profile.sh" --no-build && \
    "$BENCH" splice --file "$ROOT/BENCHMARKS.md" --block profile --from "$OUT/profile.md"
fi

if [ "$WRITE" = 1 ]; then
  echo "== BENCHMARKS.md updated"
else
  echo "== done; BENCHMARKS.md unchanged"
fi
