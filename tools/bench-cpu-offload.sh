#!/usr/bin/env bash
# Models larger than their memory budget on the CPU path, beside llama.cpp under the same budget:
# for each model and budget, flexinfer (--host-mem, cold, streaming with direct I/O) and llama.cpp
# (its default mmap mode, cold) each run inside a memory cgroup of that size. Disk bandwidth drifts
# on shared machines, so flexinfer measures it on the model file just before and after each run and
# reports achieved/limit against their mean; rounds alternate between the engines.
#
# usage: tools/bench-cpu-offload.sh [--llama-bench [LABEL=]PATH]... [--llama-rounds N] [--budgets "1G 2G 3G"]
#                                   [--models "q4_0 q4_k_m"] [--threads N] [--tokens N] [--rounds N]
#                                   [--timeout S] [--out DIR] [--docs] [--report-only]
#   --llama-bench  llama.cpp's llama-bench, built by you outside this repository (omit: flexinfer only);
#                  repeat with labels to compare builds, e.g. default=... no-repack=...
#   --llama-rounds run llama.cpp in the first N rounds only (default: every round)
#   --models       7b-preset files to make with make-model (and keep in DIR) and measure
#   --docs         also write docs/bench-cpu-offload.{json,md,png}
#   --report-only  skip the runs: table and plot from the results already in DIR
# Needs root for the memory cgroups (cgroup v1 memory controller or cgroup v2); without it the runs
# happen unconfined and the table says so. The plot needs gnuplot.
set -euo pipefail
cd "$(dirname "$0")/.."
llama_benches=() llama_rounds=0 budgets="1G 2G 3G" models="q4_0 q4_k_m" threads=2 tokens=16 rounds=2 timeout=300
out=build/bench-cpu-offload docs=0 report_only=0
while [ $# -gt 0 ]; do
  case "$1" in
    --llama-bench) llama_benches+=("$2"); shift 2 ;;
    --llama-rounds) llama_rounds="$2"; shift 2 ;;
    --budgets) budgets="$2"; shift 2 ;;
    --models) models="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --tokens) tokens="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --timeout) timeout="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --docs) docs=1; shift ;;
    --report-only) report_only=1; shift ;;
    *) echo "bench-cpu-offload: unknown option '$1'" >&2; exit 2 ;;
  esac
done
mkdir -p "$out"
if [ "$report_only" = 0 ]; then
tools/build.sh >/dev/null
flexinfer=$PWD/build/tools/flexinfer

vocab_args=(--byte-vocab)
[ -f ../shared/data/vocab/ggml-vocab-llama-spm.gguf ] && vocab_args=(--vocab ../shared/data/vocab/ggml-vocab-llama-spm.gguf)
for m in $models; do
  [ -f "$out/7b-$m.gguf" ] || "$flexinfer" make-model --preset 7b --type "$m" "${vocab_args[@]}" -o "$out/7b-$m.gguf" >&2
done

# The queue depth and request size the reader uses, and the memory bandwidth for the limit.
first_model="$out/7b-${models%% *}.gguf"
echo "probing the disk, memory and CPU..." >&2
"$flexinfer" probe -m "$first_model" -t "$threads" >"$out/probe.txt"
mem_bw=$(python3 -c "import json,os; print(json.load(open(os.path.expanduser(os.environ.get('XDG_CACHE_HOME','~/.cache')+'/flexinfer/profile.json')))['host_read_GBps'])")

source tools/bench-budget.sh

for round in $(seq 1 "$rounds"); do
  for m in $models; do
    model="$out/7b-$m.gguf"
    for budget in $budgets; do
      bytes=$(bytes_of "$budget")
      tag="$m-$budget-$round"
      echo "round $round: flexinfer $m --host-mem $budget" >&2
      evict "$model"
      confined "$bytes" "$out/flexinfer-$tag.cgroup-peak" \
        "$flexinfer" bench -m "$model" --gpu-mem none --host-mem "$budget" --cold --measure-disk -p 16 -n "$tokens" -t "$threads" \
        --ctx $((16 + tokens)) --mem-bw "$mem_bw" --json "$out/flexinfer-$tag.json" >"$out/flexinfer-$tag.txt" 2>&1 ||
        echo "flexinfer failed: see $out/flexinfer-$tag.txt" >&2
      for entry in "${llama_benches[@]}"; do
        label=llama.cpp path=$entry
        case "$entry" in *=*) label=${entry%%=*} path=${entry#*=} ;; esac
        [ "$llama_rounds" -gt 0 ] && [ "$round" -gt "$llama_rounds" ] && continue
        echo "round $round: $label $m in $budget" >&2
        evict "$model"
        start=$(date +%s.%N)
        status=0
        confined "$bytes" "$out/$label-$tag.cgroup-peak" timeout "$timeout" \
          "$path" -m "$model" -p 0 -n "$tokens" -t "$threads" -r 1 --no-warmup -o json \
          >"$out/$label-$tag.json" 2>"$out/$label-$tag.err" || status=$?
        echo "{\"status\": $status, \"seconds\": $(python3 -c "import time,sys; print(time.time()-float(sys.argv[1]))" "$start")}" \
          >"$out/$label-$tag.status"
      done
    done
  done
done
fi

labels=""
for entry in "${llama_benches[@]}"; do case "$entry" in *=*) labels+="${entry%%=*} " ;; *) labels+="llama.cpp " ;; esac; done
python3 - "$out" "$rounds" "$threads" "$tokens" "$docs" "$models" "$budgets" "$timeout" "$labels" <<'PY'
import json, os, statistics, sys
out, rounds, threads, tokens, docs = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5] == "1"
models, budgets, timeout, labels = sys.argv[6].split(), sys.argv[7].split(), int(sys.argv[8]), sys.argv[9].split()
rows = []
for m in models:
    for b in budgets:
        ours = [json.load(open(f"{out}/flexinfer-{m}-{b}-{r}.json")) for r in range(1, rounds + 1)
                if os.path.exists(f"{out}/flexinfer-{m}-{b}-{r}.json")]
        if not ours:
            continue
        row = {"model": f"7b-{m}", "budget": b, "flexinfer_decode_tok_s": statistics.median(o["decode_tok_s"] for o in ours),
               "flexinfer_runs": [o["decode_tok_s"] for o in ours],
               "flexinfer_prefill_tok_s": statistics.median(o["prefill_tok_s"] for o in ours),
               "disk_limit_tok_s": statistics.median(o["limit_tok_s"] for o in ours),
               "achieved_over_limit": statistics.median(o["achieved_over_limit"] for o in ours),
               "disk_GBps": statistics.median(o["disk_read_GBps"] for o in ours),
               "disk_bytes_per_token": ours[0]["bytes_per_token"]["disk"],
               "peak_rss_bytes": max(o["peak_rss_bytes"] for o in ours),
               "flexinfer_cgroup_peak_bytes": max(int(open(f"{out}/flexinfer-{m}-{b}-{r}.cgroup-peak").read() or 0)
                                                  for r in range(1, rounds + 1)
                                                  if os.path.exists(f"{out}/flexinfer-{m}-{b}-{r}.cgroup-peak"))}
        for label in labels:
            runs, statuses = [], []
            for r in range(1, rounds + 1):
                path = f"{out}/{label}-{m}-{b}-{r}"
                if not os.path.exists(path + ".status"):
                    continue
                statuses.append(json.load(open(path + ".status")))
                try:
                    runs.append(json.load(open(path + ".json"))[0]["avg_ts"])
                except (ValueError, IndexError, KeyError):
                    runs.append(0.0)  # killed, timed out or out of memory: no token measured
            if runs:
                row.setdefault("llama", {})[label] = {"decode_tok_s": statistics.median(runs), "runs": runs, "status": statuses}
        rows.append(row)
# The runs were confined when the cgroup recorded a peak for them.
cgroup = all(row["flexinfer_cgroup_peak_bytes"] > 0 for row in rows)
summary = {"threads": int(threads), "decode_tokens": tokens, "rounds": rounds, "cgroup": cgroup, "rows": rows}
def status_text(entry):
    codes = {s["status"] for s in entry["status"]}
    if 137 in codes:
        return "killed (out of memory)"
    if 124 in codes:
        return f"no token in {timeout} s"
    return "failed"
lines = [f"7b preset, {threads} threads, {tokens} decoded tokens (flexinfer after a 16-token prompt), cold page cache; "
         f"median of the rounds. {'Each engine ran inside a memory cgroup of the budget.' if cgroup else 'No cgroup (not root).'} "
         "The disk limit is flexinfer's streamed bytes per token over the O_DIRECT bandwidth measured on the same reads just "
         "before and after each run.", ""]
header = "| model | budget | flexinfer tok/s | disk limit tok/s | achieved/limit | peak RSS |"
rule = "|---|---|---:|---:|---:|---:|"
for label in labels:
    header += f" {label} tok/s | flexinfer/{label} |"
    rule += "---:|---:|"
lines += [header, rule]
for row in rows:
    line = (f"| {row['model']} | {row['budget']} | {row['flexinfer_decode_tok_s']:.3f} | {row['disk_limit_tok_s']:.3f} | "
            f"{100 * row['achieved_over_limit']:.0f}% | {row['peak_rss_bytes'] / 2**30:.2f} GiB |")
    for label in labels:
        entry = row.get("llama", {}).get(label)
        if entry is None:
            line += " not run | |"
        elif entry["decode_tok_s"] == 0:
            line += f" {status_text(entry)} | ∞ |"
        else:
            line += f" {entry['decode_tok_s']:.3f} | {row['flexinfer_decode_tok_s'] / entry['decode_tok_s']:.1f}x |"
    lines.append(line)
table = "\n".join(lines)
print(table)
json.dump(summary, open(f"{out}/summary.json", "w"), indent=2)
open(f"{out}/table.md", "w").write(table + "\n")
with open(f"{out}/plot.dat", "w") as f:
    for m in models:
        f.write(f"# 7b-{m}: budget GiB, flexinfer, disk limit, {' '.join(labels)}\n")
        for row in rows:
            if row["model"] == f"7b-{m}":
                gib = float(row["budget"][:-1]) / (1024 if row["budget"].endswith("M") else 1)
                llama = " ".join(str(row.get("llama", {}).get(l, {}).get("decode_tok_s", "NaN")) for l in labels)
                f.write(f"{gib} {row['flexinfer_decode_tok_s']} {row['disk_limit_tok_s']} {llama}\n")
        f.write("\n\n")
if docs:
    json.dump(summary, open("docs/bench-cpu-offload.json", "w"), indent=2)
    open("docs/bench-cpu-offload.md", "w").write(table + "\n")
PY

if command -v gnuplot >/dev/null; then
  png="$out/bench-cpu-offload.png"
  index=0 plots=""
  for m in $models; do
    plots+="'$out/plot.dat' index $index using 1:2 with linespoints lw 2 title 'flexinfer 7b-$m', "
    plots+="'$out/plot.dat' index $index using 1:3 with lines dashtype 2 lw 1 title 'disk limit 7b-$m', "
    column=4
    for label in $labels; do
      plots+="'$out/plot.dat' index $index using 1:$column with linespoints title '$label (mmap) 7b-$m; 0 = killed or no token', "
      column=$((column + 1))
    done
    index=$((index + 1))
  done
  terminal="png size 900,560"
  gnuplot -e "set terminal pngcairo" 2>/dev/null && terminal="pngcairo size 900,560 font ',10'"
  gnuplot <<GP
set terminal $terminal noenhanced
set output '$png'
set title 'Decode speed of a 7b model under a host memory budget (cold, $threads threads)'
set xlabel 'host memory budget (GiB)'
set ylabel 'tokens/s'
set key top left
set grid
set yrange [0:*]
plot ${plots%, }
GP
  [ "$docs" = 1 ] && cp "$png" docs/bench-cpu-offload.png
  echo "plot: $png" >&2
fi
