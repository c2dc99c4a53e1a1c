#!/usr/bin/env bash
# GPU device check (issue 23): teacher-infer on CPU and on onnxruntime's CUDA provider, soft labels
# compared, samples/s of both, `ratio N` last (bench/gpu/run.mjs). Self-contained for a machine
# with no Node, no npm and no network: everything comes from the working tree and .gpu-carry/
# (made by bench/gpu/prepare.sh; README "GPU" says what to carry in which call):
#   .gpu-carry/base/app.tar.xz   packages (onnxruntime-node of the provider's release, compiled core + teacher-infer, ...)
#   .gpu-carry/cuda/libonnxruntime_providers_cuda.so.xz
#   .gpu-carry/node/node.xz      only needed where no node >= 20 is on PATH
# What is unpacked goes to $DISTILLERY_GPU_WORK (default /tmp/distillery-gpu) and is reused by a
# later call on the same machine, so the carried parts may arrive in separate calls.
# CUDA libraries (CUDA 13 cudart/cuBLAS/cuRAND, cuDNN 9) are looked up in the usual CUDA folders
# and in Python's nvidia-* wheels (PyTorch's), and put on LD_LIBRARY_PATH.
#   bash bench/gpu/run.sh [run.mjs options: --samples N --batch B --threads T]
set -uo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
CARRY=$REPO/.gpu-carry
WORK=${DISTILLERY_GPU_WORK:-/tmp/distillery-gpu}
mkdir -p "$WORK"

# Unpacks an .xz file (xz if installed, else Python's lzma) to $2.
unxz_to() {
  if command -v xz >/dev/null; then xz -dc "$1" > "$2.tmp"
  else python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$1" "$2.tmp"; fi && mv "$2.tmp" "$2"
}
# Unpacks a .tar.xz into $2 (tar with xz, else Python's tarfile).
untar_xz() {
  if command -v xz >/dev/null; then tar -xJf "$1" -C "$2"
  else python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2], **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))' "$1" "$2"; fi
}

# 1. the packages
if [ -f "$CARRY/base/app.tar.xz" ] && { [ ! -f "$WORK/app.stamp" ] || ! cmp -s <(stat -c %s "$CARRY/base/app.tar.xz") "$WORK/app.stamp"; }; then
  rm -rf "$WORK/app" && untar_xz "$CARRY/base/app.tar.xz" "$WORK" && stat -c %s "$CARRY/base/app.tar.xz" > "$WORK/app.stamp"
fi
if [ ! -d "$WORK/app/node_modules" ]; then
  echo "no packages: carry .gpu-carry/base (made by bash bench/gpu/prepare.sh)"
  echo "ratio unavailable (no packages)"
  exit 3
fi
BIN=$(ls -d "$WORK"/app/node_modules/onnxruntime-node/bin/napi-v*/linux/x64)

# 2. the CUDA provider library (the CUDA half is reported unavailable without it)
if [ -f "$CARRY/cuda/libonnxruntime_providers_cuda.so.xz" ] && [ ! -f "$BIN/libonnxruntime_providers_cuda.so" ]; then
  unxz_to "$CARRY/cuda/libonnxruntime_providers_cuda.so.xz" "$BIN/libonnxruntime_providers_cuda.so"
fi
[ -f "$BIN/libonnxruntime_providers_cuda.so" ] || echo "note: no .gpu-carry/cuda/libonnxruntime_providers_cuda.so.xz carried; the CUDA half will report it missing"

# 3. CUDA libraries: the folders holding each soname the provider needs, first found wins.
SEARCH=(/usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib/x86_64-linux-gnu /usr/lib64)
if command -v python3 >/dev/null; then
  PYNV=$(python3 -c 'import nvidia, sys; print("\n".join(nvidia.__path__))' 2>/dev/null || true)
  for d in $PYNV; do SEARCH+=("$d"); done
fi
mkdir -p "$WORK/libs"
LIBDIRS=()
for so in libcuda.so.1 libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcurand.so.10 libcudnn.so.9 libcufft.so.12 libnvrtc.so.13; do
  found=$(find "${SEARCH[@]}" -maxdepth 4 -name "$so" 2>/dev/null | head -1)
  if [ -z "$found" ]; then echo "CUDA library $so: not found"; continue; fi
  echo "CUDA library $so: $found"
  LIBDIRS+=("$(dirname "$found")")
  # The provider asks for cuDNN by the unversioned name.
  [ "$so" = libcudnn.so.9 ] && ln -sf "$found" "$WORK/libs/libcudnn.so"
done
LD=$WORK/libs
for d in "${LIBDIRS[@]}"; do case ":$LD:" in *":$d:"*) ;; *) LD=$LD:$d ;; esac; done
export LD_LIBRARY_PATH=$LD${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader

# Whether the provider library loads with these CUDA libraries, before any Node runs (also without node).
if command -v python3 >/dev/null && [ -f "$BIN/libonnxruntime_providers_cuda.so" ]; then
  python3 -c 'import ctypes, sys
ctypes.CDLL(sys.argv[1], mode=ctypes.RTLD_GLOBAL)
ctypes.CDLL(sys.argv[2])
print("provider library loads with these CUDA libraries")' "$BIN/libonnxruntime_providers_shared.so" "$BIN/libonnxruntime_providers_cuda.so" 2>&1 | tail -1 | sed "s/^/provider library load test: /"
fi

# 4. node (last, so that a call without node still leaves the rest unpacked for the next call)
NODE=
if command -v node >/dev/null && [ "$(node -p 'process.versions.node.split(".")[0] >= 20' 2>/dev/null)" = true ]; then NODE=$(command -v node)
elif [ -x "$WORK/node" ]; then NODE=$WORK/node
elif [ -f "$CARRY/node/node.xz" ]; then unxz_to "$CARRY/node/node.xz" "$WORK/node" && chmod +x "$WORK/node" && NODE=$WORK/node
fi
if [ -z "$NODE" ]; then
  echo "no node >= 20 here and no .gpu-carry/node/node.xz: call again carrying .gpu-carry/node (README \"GPU\")"
  echo "ratio unavailable (no node)"
  exit 3
fi
echo "node: $NODE ($("$NODE" --version))"

# 5. the check itself, from beside the packages so that its imports resolve there
mkdir -p "$WORK/app/bench"
cp "$REPO/bench/gpu/run.mjs" "$WORK/app/bench/run.mjs"
"$NODE" "$WORK/app/bench/run.mjs" "$@"
rc=$?
# Soft labels that disagree: the CUDA provider may compute matrix products in TF32 (its use_tf32 option)
# which onnxruntime-node cannot set; say whether TF32 is the reason.
if [ $rc = 4 ] && [ -z "${NVIDIA_TF32_OVERRIDE:-}" ]; then
  echo "soft labels disagree; again with TF32 off (NVIDIA_TF32_OVERRIDE=0)"
  NVIDIA_TF32_OVERRIDE=0 "$NODE" "$WORK/app/bench/run.mjs" "$@"
  rc=$?
fi
exit $rc
