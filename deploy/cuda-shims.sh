#!/usr/bin/env bash
# Generates the link-time stand-ins for the CUDA libraries that a `cuda` build of pixdex links
# against, so that the binary has no CUDA library in its NEEDED list: it starts on any Linux
# machine and loads the driver and the CUDA libraries with dlopen on first use.
#
#   deploy/cuda-shims.sh OUT_DIR CUDARC_SRC [CUDA_LIB_DIR]
#   deploy/cuda-shims.sh --modules      # the cudarc modules (= cudarc features) it covers
#
# Why: candle-core 0.11 turns on cudarc's `dynamic-linking` (and cudarc's build script refuses
# `dynamic-loading` next to it), so cudarc emits `-lcuda -lnvrtc -lcurand -lcublas -lcublasLt` and
# candle-kernels `-lcudart`. No wheel ships libcuda (it comes with the driver), and a hand-written
# symbol list for a stub goes stale (issue 15: five `cu*` symbols were missing at the final link).
# So, for each library, OUT_DIR/lib<name>.a defines EVERY function that cudarc's bindings declare
# for it (the `fn name(` lines of cudarc's `src/<module>/sys/mod.rs`, all CUDA versions), plus every
# function the real library exports when CUDA_LIB_DIR holds it. The linker finds these archives
# for `-l<name>` (cudarc's own search paths hold no plain lib<name>.so) and links them statically.
#
# Each function is a jump through a table. The first call of any function of a library dlopens
# its soname (libcuda.so.1, libcublas.so.13, …: found through LD_LIBRARY_PATH / ldconfig, exactly
# as the dynamic loader would), fills the table with dlsym, and jumps on. No signature is needed:
# the jump keeps every argument register and the stack as the caller left them. If the library or
# a symbol is missing, the function returns the library's "not initialised" status instead (one
# line on stderr names the missing library); pixio checks for the driver before it gets there.
#
# cudart is not shimmed: the wheel's libcudart_static.a is copied as libcudart.a. Static cudart
# itself dlopens libcuda.so.1 when first used, which is what NVIDIA ships it for.
#
# Needs: bash, grep -P, nm, readelf, cc, ar (binutils + a C compiler). x86-64 Linux only.
set -euo pipefail

# cudarc feature/module -> the library it links. Keep in step with the `shim` calls at the end;
# deploy/check-cuda-link.sh fails when the cuda build turns on a cudarc library not listed here.
if [ "${1:-}" = --modules ]; then
  printf '%s\n' "driver cuda" "cublas cublas" "cublaslt cublasLt" "curand curand" "nvrtc nvrtc" "runtime cudart"
  exit 0
fi
if [ $# -lt 2 ]; then
  echo "usage: $0 OUT_DIR CUDARC_SRC [CUDA_LIB_DIR]" >&2
  exit 2
fi
out="$1"
cudarc="$2"
libdir="${3:-}"
[ -f "$cudarc/src/driver/sys/mod.rs" ] || { echo "cuda-shims: no cudarc sources at $cudarc" >&2; exit 1; }
[ "$(uname -m)" = x86_64 ] || { echo "cuda-shims: the trampolines are x86-64 assembly" >&2; exit 1; }
mkdir -p "$out"

# Function names declared by cudarc's bindings of one module (any CUDA version).
declared() { grep -hoP '^\s+fn \K[A-Za-z_][A-Za-z0-9_]*(?=\()' "$cudarc/src/$1/sys/mod.rs"; }
# Functions exported by a real library (version suffixes such as @@libcublas.so.13 dropped).
exported() { nm -D --defined-only "$1" | awk '$2 == "T" || $2 == "W" { sub(/@.*/, "", $3); print $3 }'; }

# shim NAME SONAME CUDARC_MODULE FAIL_STATUS HAS_STRING_FUNCTIONS
shim() {
  local name="$1" soname="$2" module="$3" status="$4" strings="$5"
  local real="" syms
  if [ -n "$libdir" ]; then
    real="$(ls "$libdir/lib$name.so."* 2>/dev/null | head -n1 || true)"
    if [ -n "$real" ]; then
      soname="$(readelf -d "$real" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')"
    fi
  fi
  syms="$({ declared "$module"; [ -z "$real" ] || exported "$real"; } | grep -P '^[A-Za-z_][A-Za-z0-9_]*$' | sort -u)"
  local n
  n="$(printf '%s\n' "$syms" | wc -l)"
  local tag="pixdex_shim_$name"
  local work="$out/$name.build"
  rm -rf "$work"
  mkdir -p "$work"

  # The C half: the table, the names, dlopen/dlsym once (pthread_once), and the stand-ins used
  # when the library or a symbol is absent. `*Get{Error,Status}{String,Name}` return a string
  # (they are the only pointer-returning functions in these libraries), the rest a status code.
  {
    echo '#include <dlfcn.h>'
    echo '#include <pthread.h>'
    echo '#include <stdio.h>'
    echo "#define N $n"
    echo "#define STRINGS $strings"
    echo "__attribute__((visibility(\"hidden\"))) void *${tag}_ptrs[N];"
    echo 'static const char *const names[N] = {'
    printf '  "%s",\n' $syms
    echo '};'
    echo "static int missing_status(void) { return $status; }"
    echo "static const char *missing_string(void) { return \"$soname could not be loaded\"; }"
    echo 'static int returns_string(const char *s) {'
    echo '  static const char *const tails[] = {"GetErrorString", "GetErrorName", "GetStatusString", "GetStatusName"};'
    echo '  size_t n = 0; while (s[n]) n++;'
    echo '  for (int t = 0; t < 4; t++) {'
    echo '    size_t m = 0; while (tails[t][m]) m++;'
    echo '    if (n >= m) { size_t i = 0; while (i < m && s[n - m + i] == tails[t][i]) i++; if (i == m) return 1; }'
    echo '  }'
    echo '  return 0;'
    echo '}'
    echo 'static pthread_once_t once = PTHREAD_ONCE_INIT;'
    echo 'static void load(void) {'
    echo "  void *lib = dlopen(\"$soname\", RTLD_NOW | RTLD_LOCAL);"
    echo "  if (!lib) fprintf(stderr, \"pixdex: cannot load $soname (%s); put the CUDA libraries on LD_LIBRARY_PATH (deploy/README.md)\\n\", dlerror());"
    echo '  for (int i = 0; i < N; i++) {'
    echo '    void *f = lib ? dlsym(lib, names[i]) : NULL;'
    echo '    if (!f) f = STRINGS && returns_string(names[i]) ? (void *)missing_string : (void *)missing_status;'
    echo "    __atomic_store_n(&${tag}_ptrs[i], f, __ATOMIC_RELEASE);"
    echo '  }'
    echo '}'
    echo "__attribute__((visibility(\"hidden\"))) void ${tag}_resolve(void) { pthread_once(&once, load); }"
  } > "$work/table.c"

  # The assembly half: one jump per function; the first call goes through the slow path, which
  # saves every argument register (integer, vector, and %al for variadic calls), resolves the
  # table, restores them and jumps to the real function, so the callee sees the original call.
  {
    echo '  .text'
    echo "  .hidden ${tag}_ptrs"
    echo "  .hidden ${tag}_resolve"
    echo '  .p2align 4'
    echo "${tag}_slow:"
    echo '  pushq %rbp'
    echo '  movq %rsp, %rbp'
    for r in rdi rsi rdx rcx r8 r9 rax r11; do echo "  pushq %$r"; done
    echo '  subq $128, %rsp'
    for i in 0 1 2 3 4 5 6 7; do echo "  movdqu %xmm$i, $((i * 16))(%rsp)"; done
    echo "  call ${tag}_resolve"
    for i in 0 1 2 3 4 5 6 7; do echo "  movdqu $((i * 16))(%rsp), %xmm$i"; done
    echo '  addq $128, %rsp'
    for r in r11 rax r9 r8 rcx rdx rsi rdi; do echo "  popq %$r"; done
    echo '  popq %rbp'
    echo "  leaq ${tag}_ptrs(%rip), %r10"
    echo '  movq (%r10,%r11,8), %r11'
    echo '  jmp *%r11'
    local i=0
    for s in $syms; do
      echo "  .globl $s"
      echo "  .type $s, @function"
      echo '  .p2align 4'
      echo "$s:"
      echo "  movq ${tag}_ptrs+$((i * 8))(%rip), %r11"
      echo '  testq %r11, %r11'
      echo '  jz 1f'
      echo '  jmp *%r11'
      echo "1: movl \$$i, %r11d"
      echo "  jmp ${tag}_slow"
      echo "  .size $s, .-$s"
      i=$((i + 1))
    done
    echo '  .section .note.GNU-stack,"",@progbits'
  } > "$work/jumps.S"

  cc -O2 -fPIC -c "$work/table.c" -o "$work/table.o"
  cc -fPIC -c "$work/jumps.S" -o "$work/jumps.o"
  rm -f "$out/lib$name.a"
  ar rcs "$out/lib$name.a" "$work/table.o" "$work/jumps.o"
  printf '%s\n' "$syms" > "$out/lib$name.symbols"
  # The sonames a build must find at run time, for pixio's check before a device opens
  # (deploy/build-cuda.sh passes them as PIXDEX_CUDA_RUNTIME_LIBS; the driver is checked apart).
  [ "$name" = cuda ] || echo "$soname" >> "$out/runtime-libs"
  echo "cuda-shims: lib$name.a -> $soname ($n functions${real:+, incl. the exports of $(basename "$real")})"
}

# The status each library's functions return when it cannot be loaded:
# CUDA_ERROR_STUB_LIBRARY (34), CUBLAS_STATUS_NOT_INITIALIZED (1),
# CURAND_STATUS_INITIALIZATION_FAILED (203), NVRTC_ERROR_INTERNAL_ERROR (11). The last argument
# is 0 for the driver: its error strings come back through out-parameters (cuGetErrorString
# returns a CUresult), so none of its functions takes the string stand-in.
rm -f "$out/runtime-libs"
shim cuda libcuda.so.1 driver 34 0
if [ -n "$libdir" ]; then
  # Without the wheels (CI's check) only the driver shim is made: the others need the real
  # libraries for their sonames.
  shim cublas libcublas.so.13 cublas 1 1
  shim cublasLt libcublasLt.so.13 cublaslt 1 1
  shim curand libcurand.so.10 curand 203 1
  shim nvrtc libnvrtc.so.13 nvrtc 11 1
  cp "$libdir/libcudart_static.a" "$out/libcudart.a"
  echo "cuda-shims: libcudart.a = $(basename "$libdir")/libcudart_static.a (static cudart)"
fi
