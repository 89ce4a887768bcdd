#!/usr/bin/env bash
# One run on a GPU machine: the GPU test suite, then the GPU benchmarks of issue 4 (7b preset in
# F16, Q4_0 and Q4_K, fully resident: decode tok/s against the measured VRAM bandwidth, prefill
# of a 512-token prompt in tok/s and TFLOP/s), ending with one table.
#
#   tools/device-check.sh [BUILD_DIR]       (default build-gpu, made by tools/build-gpu.sh)
#
# Needs only the two binaries (flexinfer statically links liburing and the CUDA runtime; cuBLAS
# is opened at run time). Models are generated with make-model into $MODELS (default
# /tmp/flexinfer-models, ~21 GB). Results: $OUT (or /tmp/device-check) gets the test log, one
# bench JSON per model and table.md. FLEXINFER_SHARED_DATA may point at a copy of
# ../shared/data so the golden tests run too. CHECK_TYPES limits the models (default
# "f16 q4_0 q4_k"); GPU_MEM the budget (default 40G). TIERS=1 (the default) adds the three-tier runs,
# planned with the profile probe measures here: 7b F16 with --gpu-mem 4G (the rest in pinned host
# memory, the last layers decoded on the CPU where that is faster; with a trace, and an Nsight
# Systems capture when nsys is installed) and 13b F16 with --gpu-mem 4G --host-mem 8G (the rest
# from disk, cold; the 13b file is another 26 GB). MOE=1 (the default) adds the mixture-of-experts
# runs of issue 13 on the qwen3-30b-a3b shape in Q4_K_M (18 GB, skewed router; Qwen3's vocabulary
# from FLEXINFER_SHARED_DATA when given, replacing the 13b file on disk): --gpu-mem 4G --host-mem 16G
# cold (attention on the GPU, the experts on the CPU, the rest of the 4G a cache of experts in VRAM)
# and --gpu-mem GPU_MEM (every expert in VRAM).
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-gpu}
flexinfer=$build/tools/flexinfer
out=${OUT:-/tmp/device-check}
models=${MODELS:-/tmp/flexinfer-models}
types=${CHECK_TYPES:-f16 q4_0 q4_k}
gpu_mem=${GPU_MEM:-40G}
tiers=${TIERS:-1}
moe=${MOE:-1}
mkdir -p "$out" "$models"
start=$(date +%s)
stamp() { echo "[device-check +$(( $(date +%s) - start ))s] $*"; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
"$flexinfer" devices | tee -a "$out/gpu.txt"

stamp "GPU tests"
"$build/tests/test_block_decode" --gtest_brief=1 >"$out/test_block_decode.txt" 2>&1
decode_status=$?
"$build/tests/test_gpu" --gtest_brief=1 >"$out/test_gpu.txt" 2>&1
gpu_status=$?
tail -n 30 "$out/test_gpu.txt"
gpu_summary=$(grep -E "^\[  (PASSED|FAILED|SKIPPED)" "$out/test_gpu.txt" | tr '\n' ' ')

for type in $types; do
  model=$models/7b-$type.gguf
  if [ ! -s "$model" ]; then
    stamp "make-model 7b $type"
    "$flexinfer" make-model --preset 7b --type "$type" --byte-vocab -o "$model" >/dev/null || { echo "make-model $type failed"; continue; }
  fi
  stamp "bench 7b $type"
  "$flexinfer" bench -m "$model" --gpu-mem "$gpu_mem" -p 512 -n 64 --json "$out/bench-7b-$type.json" \
    | tee "$out/bench-7b-$type.txt"
done

if [ "$tiers" = 1 ]; then
  stamp "probe (the disk's bandwidth for the limit)"
  "$flexinfer" probe --quick --file "$models/7b-f16.gguf" | tail -n 3
  if [ -s "$models/7b-f16.gguf" ]; then
    stamp "bench 7b f16, --gpu-mem 4G"
    "$flexinfer" bench -m "$models/7b-f16.gguf" --gpu-mem 4G -p 512 -n 32 --json "$out/bench-7b-f16-gpu4G.json" \
      --trace "$out/trace-7b-f16-gpu4G.json" | tee "$out/bench-7b-f16-gpu4G.txt"
    if command -v nsys >/dev/null; then
      stamp "nsys: 7b f16, --gpu-mem 4G, 8 tokens"
      nsys profile -t cuda,nvtx,osrt -o "$out/nsys-7b-f16-gpu4G" --force-overwrite true \
        "$flexinfer" generate -m "$models/7b-f16.gguf" --gpu-mem 4G -p "Once" -n 8 >/dev/null 2>&1 ||
        echo "nsys capture failed"
    fi
  fi
  [ -s "$models/13b-f16.gguf" ] || { stamp "make-model 13b f16"; "$flexinfer" make-model --preset 13b --type f16 --byte-vocab -o "$models/13b-f16.gguf" >/dev/null; }
  stamp "bench 13b f16, --gpu-mem 4G --host-mem 8G, cold"
  "$flexinfer" bench -m "$models/13b-f16.gguf" --gpu-mem 4G --host-mem 8G --cold -p 64 -n 8 \
    --json "$out/bench-13b-f16-gpu4G-host8G.json" | tee "$out/bench-13b-f16-gpu4G-host8G.txt"
fi

if [ "$moe" = 1 ]; then
  rm -f "$models/13b-f16.gguf"  # 64 GB of disk: the 7b files and this one
  moe_model=$models/qwen3-30b-a3b-q4_k_m.gguf
  vocab_args=(--byte-vocab)
  qwen3_vocab=${FLEXINFER_SHARED_DATA:-/nonexistent}/vocab/ggml-vocab-qwen3.gguf
  [ -f "$qwen3_vocab" ] && vocab_args=(--vocab "$qwen3_vocab")
  [ -s "$moe_model" ] || { stamp "make-model qwen3-30b-a3b q4_k_m"; "$flexinfer" make-model --preset qwen3-30b-a3b --type q4_k_m \
    "${vocab_args[@]}" --router-skew 3 -o "$moe_model" >/dev/null; }
  stamp "bench qwen3-30b-a3b q4_k_m, --gpu-mem 4G --host-mem 16G, cold (experts on the CPU and cached in VRAM)"
  "$flexinfer" bench -m "$moe_model" --gpu-mem 4G --host-mem 16G --cold -p 64 -n 32 \
    --json "$out/bench-moe-gpu4G-host16G.json" | tee "$out/bench-moe-gpu4G-host16G.txt"
  stamp "bench qwen3-30b-a3b q4_k_m, --gpu-mem $gpu_mem (every expert in VRAM)"
  "$flexinfer" bench -m "$moe_model" --gpu-mem "$gpu_mem" -p 512 -n 64 --json "$out/bench-moe-gpu.json" \
    | tee "$out/bench-moe-gpu.txt"
fi

stamp "table"
{
  echo "GPU: $(head -n 1 "$out/gpu.txt")"
  echo
  echo "test_block_decode exit $decode_status; test_gpu exit $gpu_status: $gpu_summary"
  echo
  echo "| run | decode tok/s | VRAM GB/s achieved | measured VRAM read GB/s | CPU layers | achieved/limit (bound) | prefill tok/s | prefill TFLOP/s | host planned / peak RSS GB |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
  for name in $(for type in $types; do echo "7b-$type"; done) 7b-f16-gpu4G 13b-f16-gpu4G-host8G moe-gpu4G-host16G moe-gpu; do
    json=$out/bench-$name.json
    [ -s "$json" ] || continue
    python3 - "$json" "$name" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"| {sys.argv[2]} | {r['decode_tok_s']:.2f} | {r['achieved_GBps']['gpu']:.0f} | {r['vram_read_GBps']:.0f} | "
      f"{r['cpu_layers']} | {100 * r['achieved_over_limit']:.1f}% ({r['bound']}) | {r['prefill_tok_s']:.0f} | "
      f"{r['prefill_tflop_s']:.1f} | {r['host_used_bytes'] / 1e9:.1f} / {r['peak_rss_bytes'] / 1e9:.1f} |")
PY
  done
} | tee "$out/table.md"
stamp "done"
[ "$decode_status" -eq 0 ] && [ "$gpu_status" -eq 0 ]
