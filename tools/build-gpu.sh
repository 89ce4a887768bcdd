#!/usr/bin/env bash
# Builds the binaries a GPU machine runs (tools/device-check.sh) in build-gpu/, for one CUDA
# architecture (default 90: H100/H200). Run it here, then carry build-gpu/tools/flexinfer and
# build-gpu/tests/test_gpu to the GPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
architecture=${1:-90}
# libstdc++ statically: the GPU machine's may be older than this one's.
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="$architecture" \
  -DCMAKE_EXE_LINKER_FLAGS="-static-libstdc++ -static-libgcc" -DFLEXINFER_SERVER=OFF >/dev/null
cmake --build build-gpu --parallel "$(nproc)" --target flexinfer test_gpu test_block_decode
ls -l build-gpu/tools/flexinfer build-gpu/tests/test_gpu build-gpu/tests/test_block_decode
