#!/usr/bin/env bash
# Builds the binaries a GPU machine runs (tools/device-check.sh) in build-gpu/, for one CUDA
# architecture (default 90: H100/H200). Run it here, then on the lent machine, in one call: the
# command `tools/device-check.sh` with a timeout of about 420 s (the script stops itself at 360 s,
# DEADLINE), carrying build-gpu/tools/flexinfer, build-gpu/tests/test_gpu and
# build-gpu/tests/test_block_decode; what comes back is in $OUT (device-check.log, table.md,
# results.tar.gz).
set -euo pipefail
cd "$(dirname "$0")/.."
architecture=${1:-90}
# libstdc++ statically and glibc 2.35 at most: the GPU machine's image may be older than this one.
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="$architecture" -DCMAKE_CUDA_FLAGS=-lineinfo \
  -DCMAKE_EXE_LINKER_FLAGS="" -DFLEXINFER_PORTABLE=ON -DFLEXINFER_SERVER=OFF >/dev/null
cmake --build build-gpu --parallel "$(nproc)" --target flexinfer test_gpu test_block_decode
binaries=(build-gpu/tools/flexinfer build-gpu/tests/test_gpu build-gpu/tests/test_block_decode)
ls -l "${binaries[@]}"
newest=$(objdump -T "${binaries[@]}" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -n 1)
echo "newest glibc symbol version needed: $newest"
if [ "$(printf '%s\nGLIBC_2.35\n' "$newest" | sort -V | tail -n 1)" != GLIBC_2.35 ]; then
  echo "build-gpu.sh: the binaries need $newest, newer than 2.35"
  exit 1
fi
