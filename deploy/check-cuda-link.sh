#!/usr/bin/env bash
# CI's stand-in for the CUDA build (which compiles for ~20 minutes and needs nvcc): checks in
# seconds, with no CUDA anywhere, what made that build's final link fail in issue 15.
#
#   deploy/check-cuda-link.sh            # check the shims deploy/cuda-shims.sh generates
#   CUDA_STUB_DIR=DIR deploy/check-cuda-link.sh   # check another libcuda stub (.a or .so) instead
#
# 1. Asks cargo (resolution only, no compile) which cudarc the `cuda` build uses and how:
#    with `dynamic-loading` nothing is linked and nothing more is needed; with `dynamic-linking`
#    (what candle-core 0.11 forces) every cudarc library feature must have a shim.
# 2. Every function cudarc's driver bindings can call (the names its dynamic-loading branch
#    looks up, `load::<_F>("cu…")`) must be defined by the libcuda stub the build links.
# 3. Links a C program against the stub the way rustc does (-lcuda), checks that libcuda is not
#    in its NEEDED list (so the binary starts without a driver), runs it without a driver (a
#    status code and one line, no crash), and runs it against a fake libcuda.so.1 that checks
#    each argument of an 11-argument and a 6-argument call arrived intact through the jump.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
fail() {
  echo "check-cuda-link: FAIL: $*" >&2
  exit 1
}

# 1. The cuda build's cudarc, without compiling anything.
features="$(cargo tree --locked -q -p pixdex-cli --features cuda -e features -i cudarc --prefix none |
  sed -n 's/^cudarc feature "\([^"]*\)".*/\1/p' | sort -u)"
[ -n "$features" ] || fail "cudarc is not in the dependency graph of pixdex-cli --features cuda"
has() { printf '%s\n' "$features" | grep -qx "$1"; }
if has dynamic-loading && ! has dynamic-linking; then
  echo "check-cuda-link: cudarc uses dynamic-loading: it links no CUDA library, no shim is needed"
  exit 0
fi
has dynamic-linking || fail "cudarc features are neither dynamic-loading nor dynamic-linking: $(echo $features)"
covered="$(bash deploy/cuda-shims.sh --modules | cut -d' ' -f1)"
for lib in driver cublas cublaslt curand nvrtc runtime cudnn nccl cufft cusparse cusolver cusolvermg cupti cufile nvtx cutensor; do
  if has "$lib" && ! printf '%s\n' "$covered" | grep -qx "$lib"; then
    fail "the cuda build links cudarc's \`$lib\` library, for which deploy/cuda-shims.sh makes no shim"
  fi
done
cudarc="$(cargo metadata --locked --format-version 1 --features pixdex-cli/cuda |
  grep -o '"manifest_path":"[^"]*/cudarc-[0-9][^"/]*/Cargo.toml"' | head -n1 | sed 's/^"manifest_path":"//; s/"$//')"
[ -n "$cudarc" ] || fail "cargo metadata does not locate cudarc's sources"
cudarc="$(dirname "$cudarc")"
echo "check-cuda-link: $(basename "$cudarc") with dynamic-linking; libraries: $(printf '%s\n' "$features" | grep -xE 'driver|cublas|cublaslt|curand|nvrtc|runtime|cudnn|nccl' | tr '\n' ' ')"

grep -q 'deploy/cuda-shims\.sh' deploy/build-cuda.sh || fail "deploy/build-cuda.sh does not link through deploy/cuda-shims.sh"

# 2. The stub under test: the generated shims (driver only: the other shims need the wheels).
if [ -n "${CUDA_STUB_DIR:-}" ]; then
  stubs="$CUDA_STUB_DIR"
else
  stubs="$work/shims"
  bash deploy/cuda-shims.sh "$stubs" "$cudarc" > /dev/null
fi
stub="$(ls "$stubs/libcuda.a" "$stubs/libcuda.so" 2>/dev/null | head -n1 || true)"
[ -n "$stub" ] || fail "no libcuda.a or libcuda.so in $stubs"
case "$stub" in
  *.a) nm --defined-only "$stub" 2>/dev/null | awk '$2 == "T" { print $3 }' | sort -u > "$work/defined" ;;
  *) nm -D --defined-only "$stub" | awk '$2 == "T" { print $3 }' | sort -u > "$work/defined" ;;
esac
grep -oP 'load::<_F>\("\K[A-Za-z0-9_]+' "$cudarc/src/driver/sys/mod.rs" | sort -u > "$work/wanted"
[ "$(wc -l < "$work/wanted")" -gt 100 ] || fail "found only $(wc -l < "$work/wanted") driver functions in $cudarc: the bindings' layout changed"
comm -23 "$work/wanted" "$work/defined" > "$work/missing"
if [ -s "$work/missing" ]; then
  fail "$stub lacks $(wc -l < "$work/missing") of the $(wc -l < "$work/wanted") driver functions cudarc can call, e.g. $(head -n 8 "$work/missing" | tr '\n' ' ')"
fi
echo "check-cuda-link: $stub defines all $(wc -l < "$work/wanted") driver functions of cudarc's bindings"

# 3. Link, start without a driver, forward every argument to a (fake) driver.
cat > "$work/prog.c" <<'EOF'
#include <stdio.h>
typedef unsigned long long u64;
int cuInit(unsigned);
int cuDriverGetVersion(int *);
int cuLaunchKernel(void *, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, void *, void **, void **);
int cuMemcpyPeerAsync(u64, void *, u64, void *, size_t, void *);
int main(void) {
  int rc = cuInit(0);
  if (rc != 0) { printf("cuInit=%d\n", rc); return 10; }
  int v = 0;
  if (cuDriverGetVersion(&v) != 0 || v != 13000) { printf("version %d\n", v); return 11; }
  rc = cuLaunchKernel((void *)1, 2, 3, 4, 5, 6, 7, 8, (void *)9, (void **)10, (void **)11);
  if (rc != 0) { printf("cuLaunchKernel=%d\n", rc); return 12; }
  rc = cuMemcpyPeerAsync(21, (void *)22, 23, (void *)24, 25, (void *)26);
  if (rc != 0) { printf("cuMemcpyPeerAsync=%d\n", rc); return 13; }
  printf("forwarded\n");
  return 0;
}
EOF
cat > "$work/fake.c" <<'EOF'
#include <stddef.h>
typedef unsigned long long u64;
int cuInit(unsigned f) { return f == 0 ? 0 : 1; }
int cuDriverGetVersion(int *v) { *v = 13000; return 0; }
int cuLaunchKernel(void *f, unsigned a, unsigned b, unsigned c, unsigned d, unsigned e, unsigned g, unsigned h,
                   void *s, void **p, void **x) {
  return f == (void *)1 && a == 2 && b == 3 && c == 4 && d == 5 && e == 6 && g == 7 && h == 8 && s == (void *)9 &&
                 p == (void **)10 && x == (void **)11 ? 0 : 700;
}
int cuMemcpyPeerAsync(u64 d, void *dc, u64 s, void *sc, size_t n, void *st) {
  return d == 21 && dc == (void *)22 && s == 23 && sc == (void *)24 && n == 25 && st == (void *)26 ? 0 : 701;
}
EOF
cc -O2 -fPIE -pie -Wl,--as-needed "$work/prog.c" -L"$stubs" -lcuda -o "$work/prog" 2> "$work/link.err" ||
  fail "linking a program against $stub failed: $(head -n 3 "$work/link.err")"
if readelf -d "$work/prog" | grep NEEDED | grep -q 'libcuda\.so'; then
  fail "a program linked with -lcuda against $stub needs libcuda.so.1 to start (a driver-less machine cannot even print --help)"
fi
mkdir -p "$work/nodriver" "$work/fake"
set +e
LD_LIBRARY_PATH="$work/nodriver" "$work/prog" > "$work/out" 2> "$work/err"
rc=$?
set -e
if ! ldconfig -p 2>/dev/null | grep -q 'libcuda\.so\.1'; then
  # No driver here (CI): cuInit must come back with a status, and stderr hold one line.
  [ "$rc" = 10 ] && grep -q '^cuInit=34$' "$work/out" ||
    fail "without a driver the program exited $rc: $(cat "$work/out" "$work/err" | head -n 5)"
  [ "$(wc -l < "$work/err")" -le 1 ] || fail "without a driver stderr has more than one line: $(cat "$work/err")"
  echo "check-cuda-link: without a driver: cuInit returns 34 (CUDA_ERROR_STUB_LIBRARY); stderr: $(cat "$work/err")"
fi
cc -O2 -shared -fPIC -Wl,-soname,libcuda.so.1 "$work/fake.c" -o "$work/fake/libcuda.so.1"
LD_LIBRARY_PATH="$work/fake" "$work/prog" > "$work/out" 2>&1 ||
  fail "through the fake driver: $(cat "$work/out")"
echo "check-cuda-link: OK (every argument of cuLaunchKernel and cuMemcpyPeerAsync reached the fake driver)"
