#!/usr/bin/env bash
# A mixture-of-experts model larger than its memory budget on the CPU path, beside llama.cpp under
# the same budget: the qwen3-30b-a3b shape in Q4_K_M (about 18 GB), made with make-model with a
# skewed router (some experts chosen more often, as trained routers do) and a uniform one. For each
# router and budget, flexinfer (--host-mem, cold: experts read on demand into its expert cache) and
# llama.cpp (its default mmap mode, cold) each run inside a memory cgroup of that size.
#
# usage: tools/bench-moe.sh [--llama-bench [LABEL=]PATH]... [--budgets "8G 4G"] [--skews "3 0"] [--threads N]
#                           [--tokens N] [--llama-tokens N] [--policies "frequency recency"]
#                           [--speculation "auto off"] [--timeout S] [--out DIR] [--keep] [--docs]
#   --llama-bench  llama.cpp's llama-bench, built by you outside this repository (omit: flexinfer only);
#                  repeat with labels to compare builds, e.g. llama.cpp=... llama.cpp-no-repack=...
#   --skews        make-model --router-skew values (0 = uniform routing)
#   --policies     expert cache policies to measure (the first is the headline)
#   --speculation  --expert-speculation settings to measure (auto, on, off; default "auto off"); "off" only
#                  with the headline policy
#   --keep         keep each model file after its runs (two files need about 36 GB)
#   --docs         also write docs/bench-moe.{json,md}
# Runs whose results are already in DIR are not repeated (delete DIR to start over): a second call
# with another --llama-bench adds that build's runs to the same table.
# Needs root for the memory cgroups (cgroup v1 memory controller or cgroup v2); without it the runs
# happen unconfined and the table says so.
set -euo pipefail
cd "$(dirname "$0")/.."
llama_benches=() budgets="8G 4G" skews="3 0" threads=2 tokens=64 llama_tokens=8 policies="frequency recency"
speculations="auto off"
timeout=900 out=build/bench-moe keep=0 docs=0
while [ $# -gt 0 ]; do
  case "$1" in
    --llama-bench) llama_benches+=("$2"); shift 2 ;;
    --budgets) budgets="$2"; shift 2 ;;
    --skews) skews="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --tokens) tokens="$2"; shift 2 ;;
    --llama-tokens) llama_tokens="$2"; shift 2 ;;
    --policies) policies="$2"; shift 2 ;;
    --speculation) speculations="$2"; shift 2 ;;
    --timeout) timeout="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --keep) keep=1; shift ;;
    --docs) docs=1; shift ;;
    *) echo "bench-moe: unknown option '$1'" >&2; exit 2 ;;
  esac
done
mkdir -p "$out"
tools/build.sh >/dev/null
flexinfer=$PWD/build/tools/flexinfer

source tools/bench-budget.sh

# Qwen3's vocabulary gives the real embedding and output head (151,936 rows).
vocab_args=(--byte-vocab)
[ -f ../shared/data/vocab/ggml-vocab-qwen3.gguf ] && vocab_args=(--vocab ../shared/data/vocab/ggml-vocab-qwen3.gguf)
for skew in $skews; do
  model="$out/30b-a3b-q4_k_m-skew$skew.gguf"
  [ -f "$model" ] || "$flexinfer" make-model --preset qwen3-30b-a3b --type q4_k_m "${vocab_args[@]}" --router-skew "$skew" -o "$model" >&2
  # The disk as the runs will see it (the probe reads the model file), where no expert reads are measured.
  [ -s "$out/probe-skew$skew.txt" ] || "$flexinfer" probe -m "$model" -t "$threads" >"$out/probe-skew$skew.txt"
  disk_bw=$(python3 -c "import json,os; p=json.load(open(os.path.expanduser(os.environ.get('XDG_CACHE_HOME','~/.cache')+'/flexinfer/profile.json'))); print(p['disk_read_GBps'])")
  for budget in $budgets; do
    bytes=$(bytes_of "$budget")
    for policy in $policies; do
      for speculation in $speculations; do
        [ "$speculation" = off ] && [ "$policy" != "${policies%% *}" ] && continue
        tag="skew$skew-$budget-$policy-speculation-$speculation"
        [ -s "$out/flexinfer-$tag.json" ] && continue
        echo "flexinfer skew $skew --host-mem $budget --expert-policy $policy --expert-speculation $speculation" >&2
        evict "$model"
        confined "$bytes" "$out/flexinfer-$tag.cgroup-peak" \
          "$flexinfer" bench -m "$model" --gpu-mem none --host-mem "$budget" --expert-policy "$policy" \
          --expert-speculation "$speculation" --cold -p 8 -n "$tokens" -t "$threads" --ctx $((8 + tokens)) \
          --measure-memory --disk-bw "$disk_bw" --measure-disk --json "$out/flexinfer-$tag.json" >"$out/flexinfer-$tag.txt" 2>&1 ||
          echo "flexinfer failed: see $out/flexinfer-$tag.txt" >&2
      done
    done
    for entry in "${llama_benches[@]}"; do
      label=llama.cpp path=$entry
      case "$entry" in *=*) label=${entry%%=*} path=${entry#*=} ;; esac
      tag="$label-skew$skew-$budget"
      [ -s "$out/$tag.status" ] && continue
      echo "$label skew $skew in $budget" >&2
      evict "$model"
      start=$(date +%s.%N)
      status=0
      confined "$bytes" "$out/$tag.cgroup-peak" timeout "$timeout" \
        "$path" -m "$model" -p 0 -n "$llama_tokens" -t "$threads" -r 1 --no-warmup -o json \
        >"$out/$tag.json" 2>"$out/$tag.err" || status=$?
      echo "{\"status\": $status, \"seconds\": $(python3 -c "import time,sys; print(time.time()-float(sys.argv[1]))" "$start")}" \
        >"$out/$tag.status"
    done
  done
  [ "$keep" = 1 ] || rm -f "$model"
done

labels=""
for entry in "${llama_benches[@]}"; do case "$entry" in *=*) labels+="${entry%%=*} " ;; *) labels+="llama.cpp " ;; esac; done
python3 - "$out" "$threads" "$tokens" "$llama_tokens" "$docs" "$skews" "$budgets" "$policies" "$labels" "$speculations" <<'PY'
import json, os, sys
out, threads, tokens, llama_tokens, docs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1"
skews, budgets, policies, labels = sys.argv[6].split(), sys.argv[7].split(), sys.argv[8].split(), sys.argv[9].split()
speculations = sys.argv[10].split()
rows = []
for skew in skews:
    for budget in budgets:
      for policy in policies:
        for speculation in speculations:
            tag = f"skew{skew}-{budget}-{policy}-speculation-{speculation}"
            path = f"{out}/flexinfer-{tag}.json"
            if not os.path.exists(path):
                continue
            r = json.load(open(path))
            cache = r.get("expert_cache") or {}
            peak_path = f"{out}/flexinfer-{tag}.cgroup-peak"
            row = {"router": "unskewed (0)" if float(skew) == 0 else f"skewed ({skew})", "skew": float(skew), "budget": budget,
                   "policy": policy, "speculation": speculation, "decode_tok_s": r["decode_tok_s"],
                   "prefill_tok_s": r["prefill_tok_s"], "decode_wait_seconds": r["decode_stall_seconds"],
                   "speculation_hit_rate": cache.get("speculation_hit_rate") if speculation != "off" else None,
                   "layers_not_read_ahead_per_token": cache.get("layers_not_read_ahead_per_token"),
                   "speculative_reads": cache.get("speculative_reads"),
                   "hit_rate_ram": cache.get("hit_rate_ram"), "expert_slots": cache.get("slots"),
                   "disk_bytes_per_token": r["bytes_per_token"]["disk"], "host_bytes_per_token": r["bytes_per_token"]["host"],
                   "limit_tok_s": r["limit_tok_s"], "achieved_over_limit": r["achieved_over_limit"],
                   "disk_read_GBps": r["disk_read_GBps"], "host_read_GBps": r["host_read_GBps"],
                   "host_read_GBps_before_after": r.get("host_read_GBps_before_after"),
                   "expert_read_GBps_before_after": r.get("expert_read_GBps_before_after"),
                   "expert_read_GBps_beside_busy_threads_before_after":
                       r.get("expert_read_GBps_beside_busy_threads_before_after"),
                   "limit_tok_s_disk_beside_busy_threads": r.get("limit_tok_s_disk_beside_busy_threads"),
                   "peak_rss_bytes": r["peak_rss_bytes"],
                   "cgroup_peak_bytes": int(open(peak_path).read() or 0) if os.path.exists(peak_path) else 0}
            for label in labels:
                llama = f"{out}/{label}-skew{skew}-{budget}"
                if not os.path.exists(llama + ".status"):
                    continue
                status = json.load(open(llama + ".status"))
                try:
                    tok_s = json.load(open(llama + ".json"))[0]["avg_ts"]
                except (ValueError, IndexError, KeyError):
                    tok_s = 0.0  # killed, timed out or out of memory: no token measured
                peak = f"{llama}.cgroup-peak"
                row.setdefault("llama", {})[label] = {"decode_tok_s": tok_s, "status": status["status"], "seconds": status["seconds"],
                                                      "cgroup_peak_bytes": int(open(peak).read() or 0) if os.path.exists(peak) else 0}
            rows.append(row)
cgroup = bool(rows) and all(row["cgroup_peak_bytes"] > 0 for row in rows)
lines = [f"qwen3-30b-a3b shape, Q4_K_M (make-model), {threads} threads, cold page cache; flexinfer decodes {tokens} tokens "
         f"after an 8-token prompt, llama.cpp (llama-bench, mmap) {llama_tokens}. "
         f"{'Each engine ran inside a memory cgroup of the budget.' if cgroup else 'No cgroup (not root).'} "
         "The limit counts the bytes a token really needed: the chosen experts that missed the cache, read at the "
         "rate measured for expert reads just before and after each run (random experts through the cache's own "
         "reader, as many queued as decode may have in flight: twice the experts a token chooses per layer; the probe's "
         "long sequential reads flatter this disk), "
         "and the weights computed from RAM at the memory read bandwidth measured likewise just before and after "
         "each run (this VM's moved by up to 2x within minutes). The last two columns: the expert reads' rate "
         "measured likewise with the run's threads kept busy at the lowest priority (a virtual machine's disk can "
         "read slower while its cores compute), and decode against the limit at that rate.", "",
         "Read ahead: the next layer's router applied to the current state predicts its experts, whose reads start "
         "while this layer computes (--expert-speculation; auto: decode measured with and without it as it runs, the "
         "faster kept, with the layers per token it ran without); the hit rate is the share of those reads then chosen.", "",
         "| router | budget | policy | read ahead (hit rate) | flexinfer tok/s | waited for reads s | experts found in RAM "
         "| disk MB/token | expert reads GB/s (before, after) | memory GB/s (before, after) | limit tok/s | achieved/limit "
         "| expert reads beside busy cores GB/s | achieved/limit at that rate |"
         + "".join(f" {label} tok/s | flexinfer/{label} |" for label in labels),
         "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + "---:|---:|" * len(labels)]
for row in rows:
    llama_text = ""
    for label in labels:
        llama = row.get("llama", {}).get(label)
        if llama is None:
            llama_text += " not run | |"
        elif llama["decode_tok_s"] == 0:
            llama_text += " " + ("killed (out of memory)" if llama["status"] == 137 else
                                 "no result in time" if llama["status"] == 124 else "failed") + " | |"
        else:
            llama_text += f" {llama['decode_tok_s']:.3f} | {row['decode_tok_s'] / llama['decode_tok_s']:.1f}x |"
    hit = f"{100 * row['hit_rate_ram']:.1f}%" if row["hit_rate_ram"] is not None else "all resident"
    ahead = row["speculation"]
    if row["speculation"] != "off" and row["speculation_hit_rate"] is not None:
        # The hit rate of no reads at all is no rate.
        rate = f"{100 * row['speculation_hit_rate']:.0f}%" if row["speculative_reads"] else "none read"
        skipped = row["layers_not_read_ahead_per_token"]
        ahead += f" ({rate}" + (f"; off on {skipped:.1f} layers/token" if skipped is not None and
                                 row["speculation"] == "auto" else "") + ")"
    rates = row["expert_read_GBps_before_after"]
    measured = f"{rates[0]:.2f}, {rates[1]:.2f}" if rates else f"{row['disk_read_GBps']:.2f} (probe)"
    memory = row["host_read_GBps_before_after"]
    memory = f"{memory[0]:.1f}, {memory[1]:.1f}" if memory else f"{row['host_read_GBps']:.1f} (probe)"
    busy = row["expert_read_GBps_beside_busy_threads_before_after"]
    busy_rates = f"{busy[0]:.2f}, {busy[1]:.2f}" if busy else "not measured"
    busy_limit = row["limit_tok_s_disk_beside_busy_threads"]
    busy_share = f"{100 * row['decode_tok_s'] / busy_limit:.0f}%" if busy_limit else ""
    lines.append(f"| {row['router']} | {row['budget']} | {row['policy']} | {ahead} | {row['decode_tok_s']:.3f} | "
                 f"{row['decode_wait_seconds']:.2f} | {hit} | "
                 f"{row['disk_bytes_per_token'] / 1e6:.0f} | {measured} | {memory} | {row['limit_tok_s']:.3f} | "
                 f"{100 * row['achieved_over_limit']:.0f}% | {busy_rates} | {busy_share} |{llama_text}")
table = "\n".join(lines)
print(table)
summary = {"threads": threads, "decode_tokens": tokens, "llama_decode_tokens": llama_tokens, "cgroup": cgroup, "rows": rows}
json.dump(summary, open(f"{out}/summary.json", "w"), indent=2)
open(f"{out}/table.md", "w").write(table + "\n")
if docs:
    json.dump(summary, open("docs/bench-moe.json", "w"), indent=2)
    open("docs/bench-moe.md", "w").write(table + "\n")
PY
