#!/usr/bin/env bash
# Profiles behind the misses in BENCHMARKS.md: system calls per event
# (strace, every proxy), perf (user vs kernel, sse-edge's hot symbols),
# callgrind (sse-edge's instructions by function) and massif (sse-edge's
# heap per idle stream). Writes benches/e2e/out/profile.md; run.sh splices
# it into BENCHMARKS.md. Standalone, from the repository root:
#
#   bash benches/e2e/profile.sh && benches/e2e/target/release/e2e-bench splice \
#     --file BENCHMARKS.md --block profile --from benches/e2e/out/profile.md
#
# --no-build skips the builds (run.sh has just done them; it also passes
# SSE_EDGE and SSE_EDGE_SYSTEM, its snapshots of the binaries). ~1-2 minutes.
#
# massif sees only the system allocator's heap, so its run uses a build
# without jemalloc (`--no-default-features`); the other profiles run the
# default build.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
E2E=$ROOT/benches/e2e
OUT=$E2E/out
if [ "${1:-}" != "--no-build" ]; then
  mkdir -p "$OUT/bin"
  (cd "$ROOT" && cargo build --release --bin sse-edge --no-default-features)
  cp "$ROOT/target/release/sse-edge" "$OUT/bin/sse-edge-system"
  # The default build last, so target/release/sse-edge is the one shipped.
  (cd "$ROOT" && cargo build --release --bin sse-edge)
  cargo build --release --locked --manifest-path "$E2E/Cargo.toml"
fi
for tool in strace valgrind; do
  command -v "$tool" >/dev/null 2>&1 || { export DEBIAN_FRONTEND=noninteractive; apt-get install -y -qq "$tool" >/dev/null || true; }
done
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
mkdir -p "$OUT"
rm -rf "$OUT/profile-work"
"$E2E/target/release/e2e-bench" profile \
  --sse-edge "${SSE_EDGE:-$ROOT/target/release/sse-edge}" \
  --sse-edge-system "${SSE_EDGE_SYSTEM:-$OUT/bin/sse-edge-system}" \
  --work "$OUT/profile-work" --out "$OUT/profile.md" \
  --proxy-cpu 0 --load-cpu 1 --command "bash benches/e2e/profile.sh"
