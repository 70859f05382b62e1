#!/usr/bin/env bash
# Optional: puts ONNX Runtime's CUDA execution provider next to onnxruntime-node, so that
# `device: cuda` (or `auto` on a CUDA host) trains and scores on an NVIDIA GPU. Never required:
# without it everything runs on CPU (or WebGPU).
#
# onnxruntime-node's npm tarball has no CUDA provider (its install script fetches one from NuGet,
# which is often unreachable). PyPI's onnxruntime-gpu wheel of the SAME version carries
# libonnxruntime_providers_shared.so and libonnxruntime_providers_cuda.so (a CUDA 13 build for
# 1.30); this script downloads that wheel with pip, extracts the two libraries beside
# onnxruntime-node's libonnxruntime.so.1, checks versions and the CUDA libraries they need, and
# prints the LD_LIBRARY_PATH line to use.
#
# Usage: scripts/install-cuda-provider.sh [--wheel FILE | --wheel-dir DIR] [--cuda-libs DIR]
#                                         [--with-cuda-libs] [--ort-dir DIR] [--check]
#   --wheel FILE / --wheel-dir DIR  use an onnxruntime-gpu wheel already on disk (offline hosts)
#   --with-cuda-libs                also pip-install the CUDA 13 runtime wheels (cublas, cudnn, cufft,
#                                   curand, cuda-runtime, nvrtc, nvjitlink; ~2 GB) into --cuda-libs
#   --cuda-libs DIR                 where those go (default: $CACHE/cuda-libs)
#   --ort-dir DIR                   onnxruntime-node's native folder (default: found under node_modules)
#   --check                         install nothing: report what is there and what is missing
# Environment: PYTHON (default python3), ANOMALY_SPOTTER_CACHE (default ~/.cache/anomaly-spotter).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
CACHE=${ANOMALY_SPOTTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/anomaly-spotter}
WHEEL="" WHEEL_DIR="" CUDA_LIBS="" WITH_CUDA_LIBS=0 ORT_DIR="" CHECK_ONLY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --wheel) WHEEL=$2; shift 2 ;;
    --wheel-dir) WHEEL_DIR=$2; shift 2 ;;
    --cuda-libs) CUDA_LIBS=$2; shift 2 ;;
    --with-cuda-libs) WITH_CUDA_LIBS=1; shift ;;
    --ort-dir) ORT_DIR=$2; shift 2 ;;
    --check) CHECK_ONLY=1; shift ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
CUDA_LIBS=${CUDA_LIBS:-$CACHE/cuda-libs}
say() { printf '%s\n' "$*"; }
fail() { printf 'error: %s\n' "$*" >&2; exit 1; }

# 1. onnxruntime-node's native folder and version.
if [ -z "$ORT_DIR" ]; then
  ORT_DIR=$(ls -d node_modules/onnxruntime-node/bin/napi-v*/linux/x64 2>/dev/null | sort -V | tail -1 || true)
fi
[ -n "$ORT_DIR" ] && [ -f "$ORT_DIR/libonnxruntime.so.1" ] ||
  fail "onnxruntime-node's libonnxruntime.so.1 not found (run npm ci, or pass --ort-dir node_modules/onnxruntime-node/bin/napi-vN/linux/x64)"
ORT_DIR=$(cd "$ORT_DIR" && pwd)
PKG_JSON=$(cd "$ORT_DIR/../../../.." && pwd)/package.json
ORT_VERSION=$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$PKG_JSON" | head -1)
[ -n "$ORT_VERSION" ] || fail "cannot read onnxruntime-node's version from $PKG_JSON"
say "onnxruntime-node $ORT_VERSION: $ORT_DIR"

# 2. The onnxruntime-gpu wheel of the same version.
if [ "$CHECK_ONLY" = 0 ]; then
  if [ -z "$WHEEL" ]; then
    DIR=${WHEEL_DIR:-$CACHE/wheels}
    WHEEL=$(ls "$DIR"/onnxruntime_gpu-"$ORT_VERSION"-*.whl 2>/dev/null | head -1 || true)
    if [ -z "$WHEEL" ]; then
      [ -z "$WHEEL_DIR" ] || fail "no onnxruntime_gpu-$ORT_VERSION-*.whl in $WHEEL_DIR"
      mkdir -p "$DIR"
      say "downloading onnxruntime-gpu==$ORT_VERSION from PyPI (~250 MB) into $DIR"
      # Any CPython ABI will do: only the two provider libraries are used, and they do not depend on Python.
      "$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
        --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 \
        --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        -d "$DIR" "onnxruntime-gpu==$ORT_VERSION" ||
        fail "pip could not download onnxruntime-gpu==$ORT_VERSION (offline? download it elsewhere and pass --wheel FILE)"
      WHEEL=$(ls "$DIR"/onnxruntime_gpu-"$ORT_VERSION"-*.whl | head -1)
    fi
  fi
  [ -f "$WHEEL" ] || fail "wheel not found: $WHEEL"
  WHEEL_VERSION=$(basename "$WHEEL" | cut -d- -f2)
  [ "$WHEEL_VERSION" = "$ORT_VERSION" ] ||
    fail "$(basename "$WHEEL") is $WHEEL_VERSION but onnxruntime-node is $ORT_VERSION: the provider ABI must match exactly"
  TMP=$(mktemp -d)
  trap 'rm -rf "$TMP"' EXIT
  "$PYTHON" - "$WHEEL" "$TMP" <<'EOF'
import sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for name in ("libonnxruntime_providers_shared.so", "libonnxruntime_providers_cuda.so"):
        member = f"onnxruntime/capi/{name}"
        with z.open(member) as src, open(f"{out}/{name}", "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
EOF
  for f in libonnxruntime_providers_shared.so libonnxruntime_providers_cuda.so; do
    cp "$TMP/$f" "$ORT_DIR/$f.tmp" && mv "$ORT_DIR/$f.tmp" "$ORT_DIR/$f"
  done
  say "installed libonnxruntime_providers_shared.so and libonnxruntime_providers_cuda.so ($WHEEL_VERSION) into $ORT_DIR"

  # 3. Optionally the CUDA 13 runtime wheels (what onnxruntime-gpu's [cuda,cudnn] extras name).
  if [ "$WITH_CUDA_LIBS" = 1 ]; then
    say "installing the CUDA 13 libraries from PyPI into $CUDA_LIBS (large)"
    "$PYTHON" -m pip install --quiet --disable-pip-version-check --no-deps --target "$CUDA_LIBS" \
      'nvidia-cuda-runtime~=13.0' 'nvidia-cublas~=13.0' 'nvidia-cufft~=12.0' 'nvidia-curand~=10.0' \
      'nvidia-cuda-nvrtc~=13.0' 'nvidia-nvjitlink~=13.0' 'nvidia-cudnn-cu13~=9.0' ||
      fail "pip could not install the CUDA wheels"
  fi
fi

# 4. What the CUDA provider needs, and where it is found.
for f in libonnxruntime_providers_shared.so libonnxruntime_providers_cuda.so; do
  [ -f "$ORT_DIR/$f" ] || { say "MISSING: $ORT_DIR/$f (run this script without --check)"; MISSING_PROVIDER=1; }
done
[ -z "${MISSING_PROVIDER:-}" ] || exit 1

# NVIDIA's wheels keep their libraries in site-packages/nvidia/*/lib (CUDA 13: nvidia/cu13/lib).
LIB_DIRS=$("$PYTHON" - "$CUDA_LIBS" <<'EOF' || true
import glob, os, site, sys
roots = [sys.argv[1]] + list(site.getsitepackages()) + [site.getusersitepackages()]
dirs = []
for r in roots:
    for d in sorted(glob.glob(os.path.join(r, "nvidia", "*", "lib")) + glob.glob(os.path.join(r, "nvidia", "lib"))):
        if d not in dirs and glob.glob(os.path.join(d, "lib*.so*")):
            dirs.append(d)
print(":".join(dirs))
EOF
)
SEARCH="${LIB_DIRS}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
have_lib() {
  local lib=$1 d
  IFS=: read -ra ds <<<"$SEARCH"
  for d in "${ds[@]}"; do [ -n "$d" ] && [ -e "$d/$lib" ] && return 0; done
  ldconfig -p 2>/dev/null | grep -q "$lib" && return 0
  return 1
}
MISSING=()
# Linked (ldd) and opened at run time (cuDNN 9, cuFFT).
for lib in libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcurand.so.10 libcufft.so.12 libcudnn.so.9 libcuda.so.1; do
  have_lib "$lib" || MISSING+=("$lib")
done
if command -v nvidia-smi >/dev/null 2>&1; then
  DRIVER=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1)
  say "NVIDIA driver: ${DRIVER:-unknown} (the CUDA 13 provider needs >= 580)"
else
  say "NVIDIA driver: nvidia-smi not found (no GPU driver on this host?)"
fi
if [ ${#MISSING[@]} -gt 0 ]; then
  say "MISSING CUDA libraries: ${MISSING[*]}"
  for m in "${MISSING[@]}"; do
    case "$m" in
      libcuda.so.1) say "  libcuda.so.1 comes with the NVIDIA driver (>= 580 for CUDA 13): install the driver" ;;
      *) say "  $m: install CUDA 13 + cuDNN 9 (system packages), or rerun with --with-cuda-libs (PyPI nvidia-* wheels)" ;;
    esac
  done
else
  say "CUDA libraries: all found"
fi
if [ -n "$LIB_DIRS" ]; then
  say ""
  say "Before starting Node (training, workers, serve), put NVIDIA's wheel libraries on the loader path:"
  say "  export LD_LIBRARY_PATH=$LIB_DIRS\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
fi
if command -v ldd >/dev/null 2>&1; then
  NF=$(LD_LIBRARY_PATH="$SEARCH" ldd "$ORT_DIR/libonnxruntime_providers_cuda.so" 2>/dev/null | grep 'not found' || true)
  [ -z "$NF" ] || { say "ldd: libonnxruntime_providers_cuda.so cannot resolve:"; say "$NF"; }
fi
say ""
say "Check: ANOMALY_SPOTTER_DEVICE=cuda npm run train -- ... (or device: cuda); 'auto' picks CUDA when it initialises."
[ ${#MISSING[@]} -eq 0 ] || exit 3
