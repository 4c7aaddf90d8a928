#!/usr/bin/env bash
# Memory given back after load, by allocator: builds sse-edge three ways
# from the same source (glibc's malloc, the system allocator:
# `--no-default-features`; jemalloc, the default build, with
# `dirty_decay_ms:1000` from .cargo/config.toml; mimalloc:
# `--no-default-features --features mimalloc`), adds the jemalloc build run
# with jemalloc's own 10 s decay (`_RJEM_MALLOC_CONF`, a wrapper script),
# runs the four side by side in interleaved rounds (`e2e-bench run
# --variants`), and writes the comparison into BENCHMARKS.md between the
# `alloc` markers. From the repository root:
#
#   bash benches/e2e/alloc.sh                # 3 rounds (~25 min, builds aside)
#   bash benches/e2e/alloc.sh --rounds 1 --no-write
#
# Each round runs, for every build: 8,000 idle streams (RSS before, with
# all open, and 2 s, 5 s and 30 s after all closed), one 30 MiB JSON
# upload (RSS before, its peak, and the same times after the client
# closed), token streams and small JSON requests (CPU per event / request:
# the allocator is on the hot path).
#
# Options: --rounds N (default 3), --only LIST (scenarios; default
# idle,upload,stream_paced,stream_burst,json_c1,json_c32), --close-waits
# LIST (seconds; default 2,5,30), --builds LIST (default
# glibc,jemalloc,jemalloc-10s,mimalloc; the first is the baseline),
# --no-write (report only in benches/e2e/out/alloc.md), --no-build.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
E2E=$ROOT/benches/e2e
OUT=$E2E/out
BIN=$OUT/bin/alloc
CMD="bash benches/e2e/alloc.sh${*:+ $*}"

ROUNDS=3 ONLY=idle,upload,stream_paced,stream_burst,json_c1,json_c32 WAITS=2,5,30 WRITE=1 BUILD=1
BUILDS=glibc,jemalloc,jemalloc-10s,mimalloc
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift ;;
    --only) ONLY=$2; shift ;;
    --close-waits) WAITS=$2; shift ;;
    --builds) BUILDS=$2; shift ;;
    --no-write) WRITE=0 ;;
    --no-build) BUILD=0 ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "alloc.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

if [ "$(nproc)" -lt 2 ]; then
  echo "alloc.sh: needs 2 CPUs (one for the proxy, one for load + upstream)" >&2
  exit 1
fi
# 8,000 idle streams cost the proxy 16,000 descriptors: take the hard limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

mkdir -p "$BIN"
if [ "$BUILD" = 1 ]; then
  # One target directory: only sse-edge itself differs between the builds,
  # and cargo keeps each one's artifacts, so a rebuild is a copy. The
  # default build goes last, so target/release/sse-edge is the shipped one.
  build() {
    echo "== build sse-edge: $1 ($2)"
    # shellcheck disable=SC2086
    (cd "$ROOT" && cargo build --release --bin sse-edge $2)
    cp "$ROOT/target/release/sse-edge" "$BIN/sse-edge-$1.tmp" && mv "$BIN/sse-edge-$1.tmp" "$BIN/sse-edge-$1"
  }
  build glibc "--no-default-features"
  build mimalloc "--no-default-features --features mimalloc"
  build jemalloc ""
  echo "== build the harness (benches/e2e)"
  cargo build --release --locked --manifest-path "$E2E/Cargo.toml"
fi
BENCH=$E2E/target/release/e2e-bench
# The jemalloc build with jemalloc's own decay: the run-time setting wins
# over the built-in one. `exec` keeps the PID the harness measures.
cat >"$BIN/sse-edge-jemalloc-10s" <<EOF
#!/bin/sh
_RJEM_MALLOC_CONF=dirty_decay_ms:10000 exec "$BIN/sse-edge-jemalloc" "\$@"
EOF
chmod +x "$BIN/sse-edge-jemalloc-10s"

mkdir -p "$OUT/tls"
if [ ! -s "$OUT/tls/cert.pem" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$OUT/tls/key.pem" -out "$OUT/tls/cert.pem" -days 365 \
    -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null
fi

VARIANTS=
for b in ${BUILDS//,/ }; do
  [ -x "$BIN/sse-edge-$b" ] || { echo "alloc.sh: no build named $b" >&2; exit 2; }
  VARIANTS+="${VARIANTS:+,}$b=$BIN/sse-edge-$b"
done

echo "== allocator comparison"
rm -rf "$OUT/alloc-work"
"$BENCH" run \
  --variants "$VARIANTS" \
  --sse-edge "$BIN/sse-edge-jemalloc" \
  --only "$ONLY" --rounds "$ROUNDS" --close-waits "$WAITS" \
  --work "$OUT/alloc-work" --out "$OUT/alloc.md" \
  --cert "$OUT/tls/cert.pem" --key "$OUT/tls/key.pem" \
  --proxy-cpu 0 --load-cpu 1 --quiet-budget 600 \
  --command "$CMD"
if [ "$WRITE" = 1 ]; then
  "$BENCH" splice --file "$ROOT/BENCHMARKS.md" --block alloc --from "$OUT/alloc.md"
  echo "== BENCHMARKS.md updated (alloc block)"
else
  echo "== report in benches/e2e/out/alloc.md; BENCHMARKS.md unchanged"
fi
