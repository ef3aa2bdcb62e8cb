#!/usr/bin/env bash
# Build the `pixdex` binary with the CUDA backend (candle `cuda` feature) on a machine without a
# system CUDA toolkit and without a GPU, from NVIDIA's pip wheels (see ../shared/notes/crates.md §7),
# plus `encoder_gpu`, the GPU check that deploy/gpu-check.sh runs.
#
#   deploy/build-cuda.sh [COMPUTE_CAP] [CUDA_MINOR]
#
# COMPUTE_CAP: the GPU's compute capability without the dot (90 = H100/H200, 89 = L4/4090, 80 = A100).
#              90 makes candle's kernels sm_90a, which load on Hopper only.
# CUDA_MINOR:  the CUDA version the target machine's *driver* supports (nvidia-smi shows it), e.g.
#              13.0. PTX built by a newer nvcc than the driver cannot be loaded, so pin it.
#
# The binaries link no CUDA library (deploy/cuda-shims.sh says how): they start on any x86-64
# Linux machine, and load the driver (libcuda.so.1) and cuBLAS/cuBLASLt/cuRAND/NVRTC with dlopen
# when a CUDA device is first opened. cudart is linked statically. At run time LD_LIBRARY_PATH
# must reach the CUDA 13 libraries (printed at the end); `--device cpu` needs none of them.
#
# Respects CARGO_TARGET_DIR (default: target/). The wheels go to $PIXDEX_CUDA_VENV (default
# <target dir>/cuda-venv, about 1.2 GB). Stripped, xz-compressed copies of both binaries land in
# target/cuda-dist/ inside the repository (about 16 MB), for deploy/gpu-check.sh to carry.
# Not part of CI: a clean build compiles candle's CUDA kernels for about 20 minutes on 2 cores
# (CI runs deploy/check-cuda-link.sh instead, which checks the link shims in seconds).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo="$PWD"
cap="${1:-90}"
cuda="${2:-13.0}"
target="${CARGO_TARGET_DIR:-$repo/target}"
case "$target" in /*) ;; *) target="$repo/$target" ;; esac
export CARGO_TARGET_DIR="$target"
venv="${PIXDEX_CUDA_VENV:-$target/cuda-venv}"

[ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q \
  "nvidia-cuda-nvcc==$cuda.*" "nvidia-nvvm==$cuda.*" "nvidia-cuda-runtime==$cuda.*" "nvidia-cuda-crt==$cuda.*" \
  "nvidia-cuda-nvrtc==$cuda.*" nvidia-cuda-cccl nvidia-curand nvidia-cublas
root="$("$venv/bin/python" -c 'import nvidia, os; print(os.path.join(nvidia.__path__[0], "cu13"))')"

# Earlier versions of this script made lib<name>.so symlinks and a hand-made lib/stubs/libcuda.so.
# cudarc puts those folders on the linker's search path ahead of the shims, so they would win:
# remove them (the wheels' own files are all versioned, lib<name>.so.N).
for lib in cuda cublas cublasLt curand nvrtc cudart; do
  for f in "$root/lib/lib$lib.so" "$root/lib/stubs/lib$lib.so"; do
    if [ -L "$f" ] || [ "$f" = "$root/lib/stubs/libcuda.so" ]; then rm -f "$f"; fi
  done
done

# The link shims, generated from the cudarc sources this build compiles (Cargo.lock's version)
# and from the wheels' libraries: every function either declares is defined, by construction.
cudarc_manifest="$(cargo metadata --locked --format-version 1 --features pixdex-cli/cuda |
  grep -o '"manifest_path":"[^"]*/cudarc-[0-9][^"/]*/Cargo.toml"' | head -n1 | sed 's/^"manifest_path":"//; s/"$//')"
[ -n "$cudarc_manifest" ] || { echo "build-cuda: cudarc is not in the cuda build's dependency graph" >&2; exit 1; }
shims="$target/cuda-shims"
bash deploy/cuda-shims.sh "$shims" "$(dirname "$cudarc_manifest")" "$root/lib"

export CUDA_HOME="$root" CUDA_PATH="$root" PATH="$root/bin:$PATH" CUDA_COMPUTE_CAP="$cap"
# gcc and lld search LIBRARY_PATH after the -L folders the build scripts add; those hold no
# lib<name>.so (see above), so -lcuda, -lcublas, … -lcudart resolve to the shims.
export LIBRARY_PATH="$shims:${LIBRARY_PATH:-}"
# Compiled into pixio (option_env!): the libraries to look for before opening a device, so that a
# missing one is reported in one line (crates/pixio/src/device.rs).
PIXDEX_CUDA_RUNTIME_LIBS="$(tr '\n' ' ' < "$shims/runtime-libs")"
export PIXDEX_CUDA_RUNTIME_LIBS
start=$(date +%s)
cargo build --release --locked -p pixdex-cli -p pixdex-benches \
  --features pixdex-cli/cuda,pixdex-benches/cuda --bin pixdex --bin encoder_gpu
echo "build-cuda: cargo build took $(($(date +%s) - start)) s"

dist="$repo/target/cuda-dist"
rm -rf "$dist"
mkdir -p "$dist"
for bin in pixdex encoder_gpu; do
  # A CUDA library in NEEDED would mean a shim was bypassed: the binary would not start without it.
  if readelf -d "$target/release/$bin" | grep NEEDED | grep -Eq 'lib(cuda|cublas|cublasLt|curand|nvrtc|cudart)\.so'; then
    echo "build-cuda: $bin links a CUDA library dynamically:" >&2
    readelf -d "$target/release/$bin" | grep NEEDED >&2
    exit 1
  fi
  # Stripped (62 + 49 MB, a third of it candle's sm_90a kernels) and xz-compressed (about 10 + 6
  # MB): small enough to carry to a GPU machine; deploy/gpu-check.sh unpacks them.
  strip -o "$dist/$bin" "$target/release/$bin"
  xz -T0 -6 -f "$dist/$bin"
done
{
  echo "CUDA $cuda (nvcc $("$root/bin/nvcc" --version | sed -n 's/.*release \([0-9.]*\),.*/\1/p')), sm_$cap, $(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo '+changes'), built $(date -u +%FT%TZ)"
  (cd "$dist" && sha256sum ./*.xz)
} > "$dist/BUILD"
echo "built $target/release/pixdex and $target/release/encoder_gpu (CUDA $cuda, sm_$cap)"
ls -l "$target/release/pixdex" "$target/release/encoder_gpu" "$dist"/*
readelf -d "$target/release/pixdex" | grep NEEDED
echo "for deploy/gpu-check.sh: $dist (carry this folder)"
echo "run with: LD_LIBRARY_PATH=$root/lib $target/release/pixdex embed --device cuda IMAGE…"
