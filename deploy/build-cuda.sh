#!/usr/bin/env bash
# Build the `pixdex` binary with the CUDA backend (candle `cuda` feature) on a machine without a
# system CUDA toolkit, from NVIDIA's pip wheels (see ../shared/notes/crates.md §7).
#
#   deploy/build-cuda.sh [COMPUTE_CAP] [CUDA_MINOR]
#
# COMPUTE_CAP: the GPU's compute capability without the dot (90 = H100/H200, 89 = L4/4090, 80 = A100).
# CUDA_MINOR:  the CUDA version the target machine's *driver* supports (nvidia-smi shows it), e.g.
#              13.0. PTX built by a newer nvcc than the driver cannot be loaded, so pin it.
# The binary lands in target/release/pixdex; at run time it needs libcuda.so.1 (the driver) and
# the cuBLAS/cuRAND/cudart libraries on LD_LIBRARY_PATH (printed at the end).
# Not part of CI: it takes about 20 minutes of compiling on 2 cores.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cap="${1:-90}"
cuda="${2:-13.0}"
venv="${PIXDEX_CUDA_VENV:-$PWD/target/cuda-venv}"

python3 -m venv "$venv"
"$venv/bin/pip" install -q \
  "nvidia-cuda-nvcc==$cuda.*" "nvidia-nvvm==$cuda.*" "nvidia-cuda-runtime==$cuda.*" "nvidia-cuda-crt==$cuda.*" \
  "nvidia-cuda-nvrtc==$cuda.*" nvidia-cuda-cccl nvidia-curand nvidia-cublas
root="$("$venv/bin/python" -c 'import nvidia, os; print(os.path.join(nvidia.__path__[0], "cu13"))')"

# The wheels ship only versioned sonames; the linker wants the plain names.
for lib in cublas cublasLt curand nvrtc cudart; do
  so="$(ls "$root/lib/lib$lib.so."* 2>/dev/null | head -n1 || true)"
  [ -n "$so" ] && ln -sf "$(basename "$so")" "$root/lib/lib$lib.so"
done
# libcuda comes with the driver, not the wheels: link against a stub when building on a GPU-less box.
if ! ldconfig -p | grep -q 'libcuda.so.1'; then
  mkdir -p "$root/lib/stubs"
  syms="cuInit cuDriverGetVersion cuDeviceGet cuDeviceGetCount cuDeviceGetAttribute cuDeviceGetName \
cuDeviceTotalMem_v2 cuDevicePrimaryCtxRetain cuDevicePrimaryCtxRelease cuCtxSetCurrent cuCtxGetCurrent \
cuCtxSynchronize cuMemAlloc_v2 cuMemFree_v2 cuMemcpyHtoD_v2 cuMemcpyDtoH_v2 cuMemcpyDtoD_v2 cuMemsetD8_v2 \
cuMemAllocAsync cuMemFreeAsync cuMemcpyHtoDAsync_v2 cuMemcpyDtoHAsync_v2 cuMemcpyDtoDAsync_v2 cuMemsetD8Async \
cuModuleLoadData cuModuleUnload cuModuleGetFunction cuLaunchKernel cuStreamCreate cuStreamDestroy_v2 \
cuStreamSynchronize cuStreamWaitEvent cuEventCreate cuEventDestroy_v2 cuEventRecord cuEventSynchronize \
cuGetErrorString cuGetErrorName cuFuncSetAttribute cuFuncGetAttribute cuPointerGetAttribute cuGetProcAddress_v2"
  { for s in $syms; do echo "void $s(void){}"; done; } > "$root/lib/stubs/cuda_stub.c"
  cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$root/lib/stubs/libcuda.so" "$root/lib/stubs/cuda_stub.c"
fi

export CUDA_HOME="$root" CUDA_PATH="$root" PATH="$root/bin:$PATH" CUDA_COMPUTE_CAP="$cap"
export LIBRARY_PATH="$root/lib:$root/lib/stubs:${LIBRARY_PATH:-}"
cargo build --release -p pixdex-cli --features cuda
echo "built target/release/pixdex (CUDA $cuda, sm_$cap)"
echo "run with: LD_LIBRARY_PATH=$root/lib target/release/pixdex embed --device cuda IMAGE…"
