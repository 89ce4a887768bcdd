#!/usr/bin/env bash
# One run on a lent GPU machine, sized for the time a session has on it (15 minutes, the machine's
# start included): the GPU tests first, then benchmarks from the cheapest up. A stage starts only
# when the time left before DEADLINE (seconds from the start, default 360) covers its estimate, and
# each command is stopped at the deadline, so the run ends in time and whatever ran comes back.
#
#   OUT=<folder> tools/device-check.sh [BUILD_DIR]    (BUILD_DIR: default build-gpu, from tools/build-gpu.sh)
#
# Needs three binaries, carried from here: BUILD_DIR/tools/flexinfer, BUILD_DIR/tests/test_gpu and
# BUILD_DIR/tests/test_block_decode (liburing, libstdc++ and the CUDA runtime linked statically;
# cuBLAS is opened at run time). It writes three files in $OUT (default /tmp/device-check), the
# device tool's limit being 8: device-check.log (everything printed), table.md (one row per
# benchmark, added as each ends) and results.tar.gz (test logs, bench JSON, trace; refreshed after
# each stage). Models are generated into $MODELS (default /tmp/flexinfer-models).
#
# STAGES (default "tests probe 7b moe tiers"), in this order; a second run names the ones the first
# skipped (the log says which):
#   tests  test_block_decode and test_gpu (FLEXINFER_SHARED_DATA: a copy of ../shared/data, for
#          the golden tests; they skip without it); test_gpu's first failure again alone, under
#          compute-sanitizer where the machine allows it, else with CUDA_LAUNCH_BLOCKING=1
#   probe  this machine's disk, memory, PCIe and VRAM rates, for the planner and the limits below
#   7b     the 7b preset in each of CHECK_TYPES (default "f16 q4_k") in VRAM (--gpu-mem GPU_MEM,
#          default 40G): decode tok/s against the VRAM read rate, prefill of 512 tokens in tok/s
#          and TFLOP/s
#   moe    issue 13: the qwen3-30b-a3b shape in Q4_K_M (an 18 GB file, skewed router), --gpu-mem 4G
#          --host-mem 16G cold (attention on the GPU, experts on the CPU and cached in VRAM), then
#          every expert in VRAM
#   tiers  7b F16 with --gpu-mem 4G (the rest in pinned host memory, the last layers decoded on the
#          CPU where the planner finds that faster; with a trace), then 13b F16 with --gpu-mem 4G
#          --host-mem 8G cold (all three tiers; a 26 GB file)
set -uo pipefail
cd "$(dirname "$0")/.." || exit
build=${1:-build-gpu}
flexinfer=$build/tools/flexinfer
out=${OUT:-/tmp/device-check}
models=${MODELS:-/tmp/flexinfer-models}
details=$(mktemp -d /tmp/device-check-details.XXXXXX)
stages=" ${STAGES:-tests probe 7b moe tiers} "
types=${CHECK_TYPES:-f16 q4_k}
deadline=${DEADLINE:-360}
gpu_mem=${GPU_MEM:-40G}
mkdir -p "$out" "$models"
exec > >(tee -a "$out/device-check.log") 2>&1
log_writer=$!
start=$(date +%s)
left() { echo $((deadline - ($(date +%s) - start))); }
stamp() { echo "[device-check +$(($(date +%s) - start))s] $*"; }
# Stopped at the deadline (or after $cap seconds, when set, if sooner); SIGINT first, so that a
# bench still writes what it measured.
bounded() {
  local seconds
  seconds=$(left)
  ((seconds > 0)) || return 124
  if [[ -n ${cap:-} ]] && ((cap < seconds)); then seconds=$cap; fi
  timeout --signal=INT --kill-after=10 "$seconds" "$@"
}
# stage NAME ESTIMATE_SECONDS: whether NAME is asked for and fits the time left.
stage() {
  [[ $stages == *" $1 "* ]] || return 1
  if (($(left) < $2)); then
    stamp "skipped $1: $(left) s left, it needs about $2 s"
    return 1
  fi
  stamp "$1"
}
pack() { tar -czf "$out/results.tar.gz" -C "$details" . 2>/dev/null; }
table_row() {  # name: the row of details/bench-name.json
  python3 - "$details/bench-$1.json" "$1" >>"$out/table.md" <<'PY'
import json, sys
try:
    r = json.load(open(sys.argv[1]))
except (OSError, ValueError) as error:
    print(f"| {sys.argv[2]} | no result ({error}) |")
    sys.exit(0)
uses = r.get("expert_decode_uses_gpu", 0)
vram_hits = f"{r.get('expert_decode_hits_vram', 0)} of {uses}" if uses else ""
print(f"| {sys.argv[2]} | {r['decode_tok_s']:.2f} | {r['achieved_GBps']['gpu']:.0f} | {r['vram_read_GBps']:.0f} | "
      f"{r['cpu_layers']} | {100 * r['achieved_over_limit']:.1f}% ({r['bound']}) | {r['prefill_tok_s']:.0f} | "
      f"{r['prefill_tflop_s']:.1f} | {r['host_used_bytes'] / 1e9:.1f} / {r['peak_rss_bytes'] / 1e9:.1f} | {vram_hits} |")
PY
}
bench() {  # name, then bench's arguments
  local name=$1
  shift
  bounded "$flexinfer" bench --json "$details/bench-$name.json" "$@" | tee "$details/bench-$name.txt"
  table_row "$name"
  pack
}
model() {  # preset type file [make-model arguments]: made unless present
  [ -s "$3" ] && return 0
  stamp "make-model $1 $2"
  bounded "$flexinfer" make-model --preset "$1" --type "$2" -o "$3" "${@:4}" >/dev/null || { rm -f "$3"; return 1; }
}

# cuBLAS is opened at run time by name, then from this build machine's toolkit directory: where the
# lent machine keeps it elsewhere (another toolkit path, a Python wheel), the loader is told.
if ! ldconfig -p 2>/dev/null | grep -q 'libcublas\.so\.13'; then
  cublas=$(find /usr/local/cuda*/lib64 /usr/local/cuda*/targets/*/lib /usr/lib/x86_64-linux-gnu /opt /usr/local/lib \
    "$(python3 -c 'import sys; print(sys.prefix)' 2>/dev/null || echo /usr)" /root/.local \
    -name 'libcublas.so.13*' -print -quit 2>/dev/null)
  if [ -n "$cublas" ]; then
    export LD_LIBRARY_PATH=$(dirname "$cublas")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    stamp "cuBLAS from $(dirname "$cublas")"
  else
    stamp "libcublas.so.13 not found: GPU prefill products (over 8 tokens) will fail"
  fi
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$details/gpu.txt"
"$flexinfer" devices | tee -a "$details/gpu.txt"
{
  echo "GPU: $(head -n 1 "$details/gpu.txt")"
  echo
  echo "| run | decode tok/s | VRAM GB/s achieved | measured VRAM read GB/s | CPU layers | achieved/limit (bound) | prefill tok/s | prefill TFLOP/s | host planned / peak RSS GB | decode expert uses found in VRAM |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
} >"$out/table.md"

tests_status="not run"
if stage tests 150; then
  bounded "$build/tests/test_block_decode" --gtest_brief=1 >"$details/test_block_decode.txt" 2>&1
  decode_status=$?
  bounded "$build/tests/test_gpu" --gtest_brief=1 >"$details/test_gpu.txt" 2>&1
  gpu_status=$?
  # FI_REQUIRE_GPU skips rather than fails without a device: here that is a failure.
  if grep -q "GPU test skipped" "$details/test_gpu.txt"; then
    stamp "test_gpu found no CUDA device: $(grep -m 1 "GPU test skipped" "$details/test_gpu.txt")"
    gpu_status="skipped (no device)"
  fi
  tail -n 40 "$details/test_gpu.txt"
  # A kernel's bad access is reported at the next synchronisation, under another name, and its error
  # sticks: every later test then fails too. So the first failure alone runs again, each launch
  # waited for, under memcheck (which names the kernel and line), or without it where the machine
  # refuses the sanitizer (gVisor: "Device not supported", error 999); at most two minutes each.
  sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -n 1)
  if [[ $gpu_status != 0 && $gpu_status != skipped* ]]; then
    first_failed=$(grep -m 1 -oE '^\[  FAILED  \] [A-Za-z0-9_/]+\.[A-Za-z0-9_/.]+' "$details/test_gpu.txt" | awk '{print $NF}')
    stamp "test_gpu exit $gpu_status, first failure: ${first_failed:-none listed (a crash or the deadline)}; again alone, each launch waited for"
    if [[ -n $sanitizer ]]; then
      cap=120 CUDA_LAUNCH_BLOCKING=1 bounded "$sanitizer" --tool memcheck --print-limit 20 "$build/tests/test_gpu" \
        --gtest_brief=1 --gtest_filter="${first_failed:-*}" >"$details/test_gpu-memcheck.txt" 2>&1
      tail -n 40 "$details/test_gpu-memcheck.txt"
    fi
    if [[ -z $sanitizer ]] || grep -qE 'Device not supported|error 999|Target application terminated before first instrumented API call' \
      "$details/test_gpu-memcheck.txt"; then
      stamp "no usable compute-sanitizer here: the first failure alone with CUDA_LAUNCH_BLOCKING=1"
      cap=120 CUDA_LAUNCH_BLOCKING=1 bounded "$build/tests/test_gpu" --gtest_brief=1 --gtest_filter="${first_failed:-*}" \
        >"$details/test_gpu-blocking.txt" 2>&1
      tail -n 40 "$details/test_gpu-blocking.txt"
    fi
  fi
  tests_status="test_block_decode exit $decode_status; test_gpu exit $gpu_status: $(grep -E "^\[  (PASSED|FAILED|SKIPPED)" "$details/test_gpu.txt" | tr '\n' ' ')"
  echo "$tests_status"
  pack
fi

if stage probe 40; then
  bounded "$flexinfer" probe --quick | tee "$details/probe.txt" | tail -n 25
  pack
fi

if stage 7b $((60 * $(wc -w <<<"$types"))); then
  for type in $types; do
    model 7b "$type" "$models/7b-$type.gguf" --byte-vocab && bench "7b-$type" -m "$models/7b-$type.gguf" --gpu-mem "$gpu_mem" -p 512 -n 64
  done
fi

if stage moe 200; then
  moe_model=$models/qwen3-30b-a3b-q4_k_m.gguf
  vocab_args=(--byte-vocab)
  qwen3_vocab=${FLEXINFER_SHARED_DATA:-/nonexistent}/vocab/ggml-vocab-qwen3.gguf
  [ -f "$qwen3_vocab" ] && vocab_args=(--vocab "$qwen3_vocab")
  if model qwen3-30b-a3b q4_k_m "$moe_model" "${vocab_args[@]}" --router-skew 3; then
    bench moe-gpu4G-host16G -m "$moe_model" --gpu-mem 4G --host-mem 16G --cold -p 64 -n 32
    bench moe-gpu -m "$moe_model" --gpu-mem "$gpu_mem" -p 512 -n 64
  fi
  rm -f "$moe_model"  # the disk is 64 GB: room for the 13b file
fi

if stage tiers 200; then
  model 7b f16 "$models/7b-f16.gguf" --byte-vocab &&
    bench 7b-f16-gpu4G -m "$models/7b-f16.gguf" --gpu-mem 4G -p 512 -n 32 --trace "$details/trace-7b-f16-gpu4G.json"
  model 13b f16 "$models/13b-f16.gguf" --byte-vocab &&
    bench 13b-f16-gpu4G-host8G -m "$models/13b-f16.gguf" --gpu-mem 4G --host-mem 8G --cold -p 64 -n 8
fi

echo
cat "$out/table.md"
echo
echo "$tests_status"
pack
stamp "done"
exit_status=0
[[ $tests_status == *"test_block_decode exit 0; test_gpu exit 0"* ]] || exit_status=1
# The log's last lines reach the file before $OUT is collected.
exec >&- 2>&-
wait "$log_writer"
exit "$exit_status"
