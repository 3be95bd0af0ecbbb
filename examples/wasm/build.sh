#!/usr/bin/env bash
# Builds the example WebAssembly functions from C with the Swift toolchain's clang and Debian's wasi-libc.
# The .wasm files are committed, so tests do not need this toolchain.
set -euo pipefail
cd "$(dirname "$0")"
need=()
for p in wasi-libc libclang-rt-14-dev-wasm32; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ "${#need[@]}" -gt 0 ]; then
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
builtins=$(ls /usr/lib/llvm-*/lib/clang/*/lib/wasi/libclang_rt.builtins-wasm32.a | head -1)
for src in *.c; do
  clang --target=wasm32-wasi --sysroot=/usr -O2 -I. "$src" -o "${src%.c}.wasm" -Wl,--strip-all -nodefaultlibs -lc "$builtins"
  echo "built ${src%.c}.wasm ($(stat -c %s "${src%.c}.wasm") bytes)"
done
