#!/usr/bin/env bash
# Server throughput under a memory budget: flexinfer serve with --parallel 8 on a 7B-shaped Q4_0
# file at --host-mem 2G (most weights streamed from disk for every forward pass), then 1, 2, 4 and 8
# concurrent streaming clients (tools/bench_serve.mjs). Every active request advances in the same
# pass, so the bytes read per pass serve all of them: the aggregate grows with the clients.
#   tools/bench-serve.sh [MODEL.gguf]     (default: makes /tmp/flexinfer-bench/7b-q4_0.gguf)
# Environment: HOST_MEM (2G), CTX (128 per slot), TOKENS (32 per client), CLIENTS (1,2,4,8),
# OUT (docs/bench-serve-7b-q4_0.json).
set -euo pipefail
cd "$(dirname "$0")/.."
flexinfer=build/tools/flexinfer
[ -x "$flexinfer" ] || tools/build.sh
model=${1:-/tmp/flexinfer-bench/7b-q4_0.gguf}
host_mem=${HOST_MEM:-2G}
ctx=${CTX:-128}
tokens=${TOKENS:-32}
clients=${CLIENTS:-1,2,4,8}
out=${OUT:-docs/bench-serve-7b-q4_0.json}
if [ ! -f "$model" ]; then
  mkdir -p "$(dirname "$model")"
  "$flexinfer" make-model --preset 7b --type q4_0 -o "$model"
fi
parallel=$(echo "$clients" | tr ',' '\n' | sort -n | tail -1)
log=$(mktemp)
"$flexinfer" serve -m "$model" --host-mem "$host_mem" -c "$ctx" --parallel "$parallel" --port 0 2>"$log" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -f "$log"' EXIT
url=""
for _ in $(seq 1 600); do
  url=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$log" | head -1 || true)
  [ -n "$url" ] && break
  kill -0 "$server" 2>/dev/null || { cat "$log"; exit 1; }
  sleep 0.2
done
[ -n "$url" ] || { cat "$log"; echo "bench-serve: the server did not start"; exit 1; }
runs=$(node tools/bench_serve.mjs "$url" --clients "$clients" --tokens "$tokens")
kill $server 2>/dev/null; wait $server 2>/dev/null || true
# The disk's direct-read bandwidth on the model's own file: the limit of a pass that streams.
probe=$(mktemp)
"$flexinfer" probe --quick --file "$model" -o "$probe" >/dev/null 2>&1
disk_GBps=$(node -e "console.log(JSON.parse(require('fs').readFileSync('$probe', 'utf8')).disk_read_GBps)")
rm -f "$probe"
placement=$(grep -v "^flexinfer: cmpl-" "$log" | sed 's/^flexinfer: //')
RUNS=$runs PLACEMENT=$placement MODEL=$model HOST_MEM=$host_mem CTX=$ctx DISK_GBPS=$disk_GBps \
CPU=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') CORES=$(nproc) node -e '
const e = process.env;
// Bytes each forward pass reads from disk, from the placement line ("... 2.17 GiB streamed per token").
const units = { B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3 };
const streamed = e.PLACEMENT.match(/([0-9.]+) (GiB|MiB|KiB|B) streamed per token/);
const passBytes = streamed ? Number(streamed[1]) * units[streamed[2]] : 0;
const diskGBps = Number(e.DISK_GBPS);
const runs = JSON.parse(e.RUNS);
for (const run of runs) {
  run.disk_bytes_per_pass = passBytes;
  run.disk_GBps_achieved = run.forward_passes * passBytes / run.seconds / 1e9;
  // Every pass reads passBytes; at best a pass takes passBytes / disk bandwidth and yields one token
  // per client (prompt passes included in the run, so the ratio is below 1 by their share).
  run.limit_tok_s = diskGBps > 0 && passBytes > 0 ? run.clients * diskGBps * 1e9 / passBytes : null;
  run.achieved_over_limit = run.limit_tok_s ? run.aggregate_tok_s / run.limit_tok_s : null;
}
const result = {
  benchmark: "flexinfer serve, concurrent streaming /v1/completions clients",
  machine: { cpu: e.CPU, cores: Number(e.CORES) },
  model: e.MODEL, host_mem: e.HOST_MEM, context_per_slot: Number(e.CTX),
  server_placement: e.PLACEMENT.split("\n"),
  disk_read_GBps_probed: diskGBps,
  runs,
};
console.log(JSON.stringify(result, null, 2));
' >"$out"
echo "bench-serve: wrote $out"
node -e 'for (const r of require("./'"$out"'").runs) console.log(`${r.clients} clients: aggregate ${r.aggregate_tok_s.toFixed(2)} tok/s (${r.ratio_to_one_client.toFixed(2)}x one), per client ${r.per_client_decode_tok_s.toFixed(2)} tok/s, first token ${r.mean_first_token_s.toFixed(1)} s, ${r.forward_passes} passes, disk ${r.disk_GBps_achieved.toFixed(2)} GB/s, ${(100 * (r.achieved_over_limit ?? 0)).toFixed(0)}% of the limit`)'
