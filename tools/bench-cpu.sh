#!/usr/bin/env bash
# CPU speed of flexinfer beside llama.cpp on the same files, threads and machine, in one run: for
# each weight type, decode tok/s with achieved GB/s against the measured memory read bandwidth, and
# prefill tok/s of a 128-token prompt. Runs of the two engines alternate, so machine noise hits both
# alike. Needs only what tools/install-deps.sh sets up.
#
# usage: tools/bench-cpu.sh [--llama-bench PATH] [--types LIST | --model FILE] [--threads N]
#                           [--rounds N] [--out DIR]
#   --llama-bench  llama.cpp's llama-bench, built by you outside this repository (omit to measure
#                  flexinfer alone)
#   --types        make-model types of 7b-preset files to make (once, in DIR) and measure
#                  (default: q4_0; the issue's set is q4_0,q4_k_m,q3_k_m,q2_k,iq4_xs)
#   --model        one GGUF to measure instead
# Writes DIR/summary.json and prints a markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
llama_bench="" model="" types="q4_0" threads=2 rounds=3 out=build/bench-cpu prompt=128 decode=32
while [ $# -gt 0 ]; do
  case "$1" in
    --llama-bench) llama_bench="$2"; shift 2 ;;
    --types) types="$2"; shift 2 ;;
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

models=()
if [ -n "$model" ]; then
  models=("$model")
else
  vocab_args=(--byte-vocab)
  [ -f ../shared/data/vocab/ggml-vocab-llama-spm.gguf ] && vocab_args=(--vocab ../shared/data/vocab/ggml-vocab-llama-spm.gguf)
  for type in ${types//,/ }; do
    file="$out/7b-$type.gguf"
    [ -f "$file" ] || "$flexinfer" make-model --preset 7b --type "$type" "${vocab_args[@]}" -o "$file" >&2
    models+=("$file")
  done
fi

echo "measuring memory read bandwidth ($threads threads)..." >&2
if [ -x build/tools/bench_kernels ]; then
  # probe's streaming read (the widest loads the CPU has) over 2 GiB, for longer than probe takes.
  build/tools/bench_kernels --benchmark_filter="memory_read/$threads/" --benchmark_min_time=2 \
    --benchmark_format=json >"$out/memory.json" 2>/dev/null
  bandwidth=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['benchmarks'][0]['bytes_per_second']/1e9)" "$out/memory.json")
else
  "$flexinfer" probe -t "$threads" --file "${models[0]}" -o "$out/profile.json" >/dev/null
  bandwidth=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['host_read_GBps'])" "$out/profile.json")
fi

for file in "${models[@]}"; do
  name=$(basename "$file" .gguf)
  for round in $(seq 1 "$rounds"); do
    echo "$name round $round/$rounds: flexinfer" >&2
    "$flexinfer" bench -m "$file" --gpu-mem none -t "$threads" -p "$prompt" -n "$decode" --mem-bw "$bandwidth" \
      --json "$out/$name.flexinfer-$round.json" >/dev/null
    if [ -n "$llama_bench" ]; then
      echo "$name round $round/$rounds: llama.cpp" >&2
      "$llama_bench" -m "$file" -t "$threads" -p "$prompt" -n "$decode" -r 1 -o json >"$out/$name.llama-$round.json" 2>/dev/null
    fi
  done
done

python3 - "$out" "$rounds" "$bandwidth" "$threads" "$llama_bench" "${models[@]}" <<'PY'
import json, os, statistics, sys
out, rounds, bandwidth, threads, llama_bench, models = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6:]
flags = open("/proc/cpuinfo").read().split("\nflags")[1].split("\n")[0].split()
cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
isa = " ".join(f for f in ["avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16"] if f in flags)
summary = {"cpu": cpu, "cpu_isa": isa, "threads": int(threads), "host_read_GBps": bandwidth, "rounds": rounds, "models": []}
first = json.load(open(f"{out}/{os.path.basename(models[0])[:-5]}.flexinfer-1.json"))
print(f"{cpu} ({isa}); flexinfer kernels: {first['kernels']}; {threads} threads; memory read {bandwidth:.1f} GB/s; "
      f"median of {rounds} alternating rounds; prefill = 128-token prompt\n")
print("| file | engine | decode tok/s | achieved GB/s | achieved/limit | prefill tok/s | flexinfer/llama.cpp decode | prefill |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
for model in models:
    name = os.path.basename(model)[:-5]
    ours = [json.load(open(f"{out}/{name}.flexinfer-{r}.json")) for r in range(1, rounds + 1)]
    bytes_per_token = ours[0]["bytes_per_token"]["host"]
    limit = bandwidth * 1e9 / bytes_per_token
    engines = {"flexinfer": {"decode": [o["decode_tok_s"] for o in ours], "prefill": [o["prefill_tok_s"] for o in ours]}}
    if llama_bench:
        llama = {"decode": [], "prefill": []}
        for r in range(1, rounds + 1):
            for test in json.load(open(f"{out}/{name}.llama-{r}.json")):
                llama["decode" if test["n_gen"] > 0 else "prefill"].append(test["avg_ts"])
        engines["llama.cpp"] = llama
    entry = {"model": model, "bytes_per_token": bytes_per_token, "limit_tok_s": limit, "engines": {}}
    for engine, runs in engines.items():
        decode, prefill = statistics.median(runs["decode"]), statistics.median(runs["prefill"])
        entry["engines"][engine] = {"decode_tok_s": decode, "prefill_tok_s": prefill, "decode_runs": runs["decode"],
                                    "prefill_runs": runs["prefill"], "achieved_GBps": decode * bytes_per_token / 1e9,
                                    "achieved_over_limit": decode / limit}
    e = entry["engines"]
    if "llama.cpp" in e:
        entry["ratio"] = {"decode": e["flexinfer"]["decode_tok_s"] / e["llama.cpp"]["decode_tok_s"],
                          "prefill": e["flexinfer"]["prefill_tok_s"] / e["llama.cpp"]["prefill_tok_s"]}
    for engine, r in e.items():
        ratio = f"{entry['ratio']['decode']:.2f}x | {entry['ratio']['prefill']:.2f}x" if engine == "flexinfer" and "ratio" in entry else " | "
        print(f"| {name} ({bytes_per_token / 1e9:.2f} GB/token) | {engine} | {r['decode_tok_s']:.2f} | {r['achieved_GBps']:.2f} | "
              f"{100 * r['achieved_over_limit']:.0f}% | {r['prefill_tok_s']:.2f} | {ratio} |")
    summary["models"].append(entry)
json.dump(summary, open(f"{out}/summary.json", "w"), indent=2)
PY
