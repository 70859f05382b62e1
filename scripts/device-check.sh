#!/usr/bin/env bash
# GPU check and benchmark, for a machine with an NVIDIA GPU and no Node, no Vulkan loader and no
# network (the lent H200: driver 580, CUDA 13 libraries and torch cu130 in its Python). Everything it
# needs travels in .devpack/carry (scripts/device-pack.sh, run beforehand where npm works). It:
#   1. unpacks Node 24, onnxruntime-node and the bundled benchmark into $WORK (default /tmp/anomaly-gpu),
#      and the Vulkan loader (libvulkan1 .deb) into $WORK/vk, without touching /;
#   2. puts the Vulkan loader and NVIDIA's CUDA/cuDNN wheel libraries (from python3's site-packages)
#      on LD_LIBRARY_PATH, and NVIDIA's Vulkan ICD in VK_DRIVER_FILES when none is registered;
#   3. runs bench/gpu.ts: training steps and inference on each ONNX Runtime execution provider
#      (cpu, webgpu, cuda: those that initialise; the reason for any other), plus PyTorch on CUDA as
#      the peer, and prints one table (also $OUT/table.md, $OUT/bench.json, $OUT/device-check.log).
# One run takes 1-3 minutes (bounded at about 5.5 by timeouts). Usage: bash scripts/device-check.sh [--steps N]
set -uo pipefail
cd "$(dirname "$0")/.."
STEPS=20
while [ $# -gt 0 ]; do
  case "$1" in
    --steps) STEPS=$2; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
T0=$(date +%s)
CARRY=${DEVPACK:-.devpack/carry}
WORK=${WORK:-/tmp/anomaly-gpu}
RESULTS=${OUT:-$WORK/out}
mkdir -p "$WORK" "$RESULTS"
LOG=$RESULTS/device-check.log
exec > >(tee "$LOG") 2>&1
step() { echo "== [$(($(date +%s) - T0)) s] $*"; }

[ -f "$CARRY/node.xz" ] || { echo "error: $CARRY/node.xz missing: run scripts/device-pack.sh and carry .devpack/carry"; exit 1; }
step "unpacking $CARRY ($(cat "$CARRY/PACKED" 2>/dev/null))"
python3 - "$CARRY" "$WORK" <<'EOF' || exit 1
import lzma, os, shutil, sys, tarfile
carry, work = sys.argv[1], sys.argv[2]
def unxz(name, dst):
    with lzma.open(os.path.join(carry, name)) as src, open(dst, "wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)
unxz("node.xz", os.path.join(work, "node")); os.chmod(os.path.join(work, "node"), 0o755)
unxz("bench-gpu.mjs.xz", os.path.join(work, "bench-gpu.mjs"))
with tarfile.open(os.path.join(carry, "ort.tar.xz")) as t:
    t.extractall(work)
native = os.path.join(work, "node_modules/onnxruntime-node/bin/napi-v6/linux/x64")
if os.path.exists(os.path.join(carry, "cuda.tar.xz")):
    with tarfile.open(os.path.join(carry, "cuda.tar.xz")) as t:
        t.extractall(native)
print("unpacked:", sorted(os.listdir(native)))
EOF
cp "$CARRY/torch_gpu_reference.py" "$WORK/"

step "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -4
"$WORK/node" --version
nproc

# Vulkan loader (+ GL dispatch libraries) for Dawn (WebGPU), unpacked privately, not into /.
for deb in "$CARRY"/*.deb; do
  [ -f "$deb" ] && { dpkg-deb -x "$deb" "$WORK/vk" 2>/dev/null || dpkg -x "$deb" "$WORK/vk"; }
done
VKSO=$(find "$WORK/vk" -name 'libvulkan.so.1' 2>/dev/null | head -1)
if [ -n "$VKSO" ]; then
  VKLIB=$(dirname "$VKSO")
  export LD_LIBRARY_PATH="$VKLIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  echo "vulkan loader: $VKLIB ($(ls "$CARRY"/*.deb | xargs -n1 basename | tr '\n' ' '))"
elif ldconfig -p 2>/dev/null | grep -q libvulkan.so.1; then
  echo "vulkan loader: the system's"
else
  echo "vulkan loader: not carried and not installed (WebGPU will not initialise)"
fi
if ! ls /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json >/dev/null 2>&1; then
  for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json; do
    [ -f "$icd" ] && { export VK_DRIVER_FILES=$icd; echo "vulkan ICD: $icd"; break; }
  done
fi

# CUDA 13 / cuDNN 9 from the Python environment's nvidia-* wheels (for the CUDA provider, if carried).
NV=$(python3 - <<'EOF'
import glob, os, site, sys
dirs = []
for r in list(site.getsitepackages()) + [site.getusersitepackages()]:
    for d in sorted(glob.glob(os.path.join(r, "nvidia", "*", "lib")) + glob.glob(os.path.join(r, "nvidia", "cu13", "lib"))):
        if d not in dirs and glob.glob(os.path.join(d, "lib*.so*")):
            dirs.append(d)
print(":".join(dirs))
EOF
)
[ -n "$NV" ] && export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$NV"
echo "nvidia wheel libraries: ${NV:-none}"
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.is_available() and torch.cuda.get_device_name(0))' 2>&1 | tail -1

step "benchmark: ONNX Runtime providers (cpu, webgpu, cuda) and PyTorch CUDA"
cd "$WORK"
timeout 300 ./node bench-gpu.mjs --providers cpu,webgpu,cuda --steps "$STEPS" --cpu-steps 3 \
  --threads "$(nproc)" --torch-script torch_gpu_reference.py --torch-device cuda \
  --json "$RESULTS/bench.json" >"$RESULTS/table.md"
RC=$?
echo
cat "$RESULTS/table.md"
echo
[ $RC -eq 0 ] || echo "benchmark exited with $RC (124: timed out)"
step "done (rc $RC)"
exit $RC
