#!/usr/bin/env bash
# CPU speed of flexinfer beside llama.cpp on the same file, threads and machine, in one run:
# decode tok/s with achieved GB/s against the measured memory read bandwidth, and prefill tok/s of a
# 128-token prompt. Runs of the two engines alternate, so machine noise hits both alike.
#
# usage: tools/bench-cpu.sh [--llama-bench PATH] [--model FILE] [--threads N] [--rounds N] [--out DIR]
#   --llama-bench  llama.cpp's llama-bench, built by you outside this repository (omit to measure
#                  flexinfer alone)
#   --model        GGUF to measure (default: a 7b-preset Q4_0 file made with make-model, 3.8 GB)
# Writes DIR/summary.json and prints a markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
llama_bench="" model="" threads=2 rounds=3 out=build/bench-cpu prompt=128 decode=32
while [ $# -gt 0 ]; do
  case "$1" in
    --llama-bench) llama_bench="$2"; shift 2 ;;
    --model) model="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "bench-cpu: unknown option '$1'" >&2; exit 2 ;;
  esac
done
mkdir -p "$out"
tools/build.sh >/dev/null
flexinfer=build/tools/flexinfer

if [ -z "$model" ]; then
  model="$out/7b-q4_0.gguf"
  vocab_args=(--byte-vocab)
  [ -f ../shared/data/vocab/ggml-vocab-llama-spm.gguf ] && vocab_args=(--vocab ../shared/data/vocab/ggml-vocab-llama-spm.gguf)
  [ -f "$model" ] || "$flexinfer" make-model --preset 7b --type q4_0 "${vocab_args[@]}" -o "$model"
fi

echo "measuring memory read bandwidth ($threads threads)..." >&2
build/tools/bench_kernels --benchmark_filter="memory_read/$threads/" --benchmark_min_time=2 \
  --benchmark_format=json >"$out/memory.json" 2>/dev/null
bandwidth=$(python3 -c "import json,sys; b=json.load(open(sys.argv[1]))['benchmarks'][0]; print(b['bytes_per_second']/1e9)" "$out/memory.json")

for round in $(seq 1 "$rounds"); do
  echo "round $round/$rounds: flexinfer" >&2
  "$flexinfer" bench -m "$model" --gpu-mem none -t "$threads" -p "$prompt" -n "$decode" --mem-bw "$bandwidth" \
    --json "$out/flexinfer-$round.json" >/dev/null
  if [ -n "$llama_bench" ]; then
    echo "round $round/$rounds: llama.cpp" >&2
    "$llama_bench" -m "$model" -t "$threads" -p "$prompt" -n "$decode" -r 1 -o json >"$out/llama-$round.json" 2>/dev/null
  fi
done

python3 - "$out" "$rounds" "$bandwidth" "$model" "$threads" <<'PY'
import json, os, statistics, sys
out, rounds, bandwidth, model, threads = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
ours = [json.load(open(f"{out}/flexinfer-{r}.json")) for r in range(1, rounds + 1)]
bytes_per_token = ours[0]["bytes_per_token"]["host"]
rows = {"flexinfer": {"decode": [o["decode_tok_s"] for o in ours], "prefill": [o["prefill_tok_s"] for o in ours]}}
if os.path.exists(f"{out}/llama-1.json"):
    llama = {"decode": [], "prefill": []}
    for r in range(1, rounds + 1):
        for test in json.load(open(f"{out}/llama-{r}.json")):
            llama["decode" if test["n_gen"] > 0 else "prefill"].append(test["avg_ts"])
    rows["llama.cpp"] = llama
limit = bandwidth * 1e9 / bytes_per_token
summary = {"model": model, "threads": int(threads), "host_read_GBps": bandwidth, "bytes_per_token": bytes_per_token,
           "limit_tok_s": limit, "engines": {}}
print(f"model {os.path.basename(model)}, {threads} threads, {bytes_per_token/1e9:.2f} GB read per token, "
      f"memory read {bandwidth:.1f} GB/s -> limit {limit:.2f} tok/s; median of {rounds} alternating rounds\n")
print("| engine | decode tok/s | achieved GB/s | achieved/limit | prefill tok/s (128-token prompt) |")
print("|---|---:|---:|---:|---:|")
for name, r in rows.items():
    decode, prefill = statistics.median(r["decode"]), statistics.median(r["prefill"])
    summary["engines"][name] = {"decode_tok_s": decode, "prefill_tok_s": prefill, "decode_runs": r["decode"],
                                "prefill_runs": r["prefill"], "achieved_over_limit": decode / limit}
    print(f"| {name} | {decode:.2f} | {decode * bytes_per_token / 1e9:.2f} | {100 * decode / limit:.0f}% | {prefill:.2f} |")
if "llama.cpp" in summary["engines"]:
    e = summary["engines"]
    print(f"\nflexinfer / llama.cpp: decode {e['flexinfer']['decode_tok_s'] / e['llama.cpp']['decode_tok_s']:.2f}x, "
          f"prefill {e['flexinfer']['prefill_tok_s'] / e['llama.cpp']['prefill_tok_s']:.2f}x")
json.dump(summary, open(f"{out}/summary.json", "w"), indent=2)
PY
