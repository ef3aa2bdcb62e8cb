#!/usr/bin/env bash
# The GPU check in one command, for a GPU machine with no Rust toolchain. From the repo root:
#
#   bash deploy/gpu-check.sh
#
# Needs, besides the repository (tests/fixtures/pixio is the parity reference):
# * target/cuda-dist/{pixdex,encoder_gpu}.xz, made by `deploy/build-cuda.sh 90 13.0` on any x86-64
#   Linux machine (carry the folder, about 16 MB; PIXDEX_CUDA_DIST=DIR to use another, which may
#   also hold the plain executables);
# * the NVIDIA driver (libcuda.so.1, nvidia-smi), supporting the CUDA version built for;
# * the CUDA 13 libraries cuBLAS, cuBLASLt, cuRAND and NVRTC: $PIXDEX_CUDA_LIBS, else the
#   nvidia/cu13/lib folder of python3's environment (the nvidia-cublas, nvidia-curand and
#   nvidia-cuda-nvrtc wheels; PyTorch built for CUDA 13 brings them), else /usr/local/cuda/lib64,
#   else whatever the dynamic loader finds.
#
# Steps (each under its own timeout, 8 minutes in all at most; expected about 2 on an H100, not
# yet run on a GPU):
# 1. nvidia-smi; 2. `pixdex --help` starts; 3. with the GPU hidden (CUDA_VISIBLE_DEVICES=""),
# `--device cuda` fails with one line; 4. `pixdex embed --device cuda` on a fixture model and image,
# compared with `--device cpu`; 5. encoder_gpu: bf16 parity with the transformers reference (the
# ignored test cuda_bf16_matches_reference), bf16 vs f32 cosine of random ViT-H/16 weights, and
# ViT-H/16 bf16 images/s and TFLOP/s at batch 32, 64 and 128 (GPU_CHECK_BATCHES to change).
# Exit status 0 when every step passed.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
dist="${PIXDEX_CUDA_DIST:-target/cuda-dist}"
failed=()
step() { echo; echo "=== $*"; }

# The binaries: target/cuda-dist/<bin>.xz as deploy/build-cuda.sh leaves them (unpacked here into
# a temporary folder), or plain executables in $PIXDEX_CUDA_DIST.
bindir="$dist"
if [ ! -x "$dist/pixdex" ] && [ -f "$dist/pixdex.xz" ]; then
  bindir="$(mktemp -d)"
  trap 'rm -rf "$bindir"' EXIT
  for bin in pixdex encoder_gpu; do
    if command -v xz > /dev/null; then
      xz -dc "$dist/$bin.xz" > "$bindir/$bin"
    else
      python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
        "$dist/$bin.xz" "$bindir/$bin"
    fi
    chmod +x "$bindir/$bin"
  done
  cat "$dist/BUILD" 2> /dev/null
fi
for bin in pixdex encoder_gpu; do
  if [ ! -x "$bindir/$bin" ]; then
    echo "gpu-check: no $dist/$bin(.xz): build it with deploy/build-cuda.sh and carry $dist" >&2
    exit 2
  fi
done
dist="$bindir"

step "1. nvidia-smi"
timeout 20 nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap,clocks.max.sm --format=csv ||
  failed+=("nvidia-smi")
timeout 20 nvidia-smi 2> /dev/null | sed -n '1,12p'

libs="${PIXDEX_CUDA_LIBS:-}"
if [ -z "$libs" ] && command -v python3 > /dev/null; then
  # The folders of python3's site-packages/nvidia/… that hold each library (cu13/lib for the CUDA
  # 13 wheels; one folder per library in older layouts).
  libs="$(python3 - 2> /dev/null << 'EOF' || true
import glob, os, sys
dirs = []
for lib in ("libcublas.so.13", "libcublasLt.so.13", "libcurand.so.10", "libnvrtc.so.13"):
    for p in sys.path:
        hits = sorted(glob.glob(os.path.join(p, "nvidia", "**", lib), recursive=True))
        if hits:
            if os.path.dirname(hits[0]) not in dirs:
                dirs.append(os.path.dirname(hits[0]))
            break
print(":".join(dirs))
EOF
)"
fi
if [ -z "$libs" ] && [ -e /usr/local/cuda/lib64/libcublas.so.13 ]; then libs=/usr/local/cuda/lib64; fi
if [ -n "$libs" ]; then export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"; fi
echo "CUDA libraries from: ${libs:-the default paths of the dynamic loader}"
for d in ${libs//:/ }; do ls "$d"/lib{cublas,cublasLt,curand,nvrtc}.so.* 2> /dev/null | sed 's/^/  /'; done

step "2. pixdex --help (the binary starts; it links no CUDA library)"
help="$(timeout 10 "$dist/pixdex" --help)" || failed+=("--help")
printf '%s\n' "$help" | head -n 3

step "3. --device cuda with the GPU hidden: one line, no panic"
out="$(CUDA_VISIBLE_DEVICES="" timeout 30 "$dist/pixdex" embed --device cuda --model tests/fixtures/pixio/models/a-hub \
  tests/fixtures/pixio/images/photo.jpg 2>&1)"
echo "$out"
if [ "$(printf '%s\n' "$out" | wc -l)" != 1 ] || printf '%s' "$out" | grep -q panicked; then failed+=("hidden-GPU message"); fi

step "4. pixdex embed --device cuda vs --device cpu (fixture model a-hub, photo.jpg)"
rm -f /tmp/gpu-check-embed-*.json
for d in cuda cpu; do
  timeout 60 "$dist/pixdex" embed --json --device "$d" --model tests/fixtures/pixio/models/a-hub \
    tests/fixtures/pixio/images/photo.jpg > "/tmp/gpu-check-embed-$d.json" || failed+=("embed --device $d")
done
head -c 160 /tmp/gpu-check-embed-cuda.json
echo
if command -v python3 > /dev/null && [ -s /tmp/gpu-check-embed-cuda.json ] && [ -s /tmp/gpu-check-embed-cpu.json ]; then
  python3 - << 'EOF' || failed+=("embed cuda vs cpu")
import json, math
g = [json.load(open(f"/tmp/gpu-check-embed-{d}.json"))["embeddings"][0]["global"] for d in ("cuda", "cpu")]
cos = sum(a * b for a, b in zip(*g)) / math.sqrt(sum(a * a for a in g[0]) * sum(b * b for b in g[1]))
print(f"cosine cuda (bf16) vs cpu (f32): {cos:.6f}")
raise SystemExit(0 if cos > 0.99 else 1)
EOF
fi

step "5. encoder_gpu: parity, bf16 vs f32, ViT-H/16 bf16 speed"
timeout 270 "$dist/encoder_gpu" --device cuda --batches "${GPU_CHECK_BATCHES:-32,64,128}" --iters 10 ||
  failed+=("encoder_gpu")

echo
if [ ${#failed[@]} -eq 0 ]; then
  echo "gpu-check: PASSED"
else
  echo "gpu-check: FAILED: ${failed[*]}"
  exit 1
fi
