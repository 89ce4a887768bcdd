#!/usr/bin/env bash
# A long streaming run: decodes 2,000 tokens from a model that must stream under its --host-mem
# budget, printing resident memory every 100 tokens, and fails if it grows by more than 2 MiB
# after the first report. Then the AddressSanitizer build (tools/run-sanitizers.sh makes it; this
# script builds it when missing) runs a streaming generation to the end and one interrupted with
# Ctrl-C, so LeakSanitizer checks both ways out for leaks.
#
# usage: tools/soak.sh [TOKENS]   (default 2000); writes build/soak/rss.tsv
set -euo pipefail
cd "$(dirname "$0")/.."
tokens=${1:-2000}
out=build/soak
mkdir -p "$out"
tools/build.sh >/dev/null
flexinfer=build/tools/flexinfer
model=$out/tiny-q4_0.gguf
[ -f "$model" ] || "$flexinfer" make-model --preset tiny --type q4_0 --byte-vocab -o "$model" >/dev/null
ctx=$((tokens + 64))
minimum=$("$flexinfer" plan -m "$model" --ctx "$ctx" --json "$out/plan.json" >/dev/null &&
          python3 -c "import json; print(json.load(open('$out/plan.json'))['host']['minimum_bytes'])")

echo "soak: $tokens tokens, --host-mem $minimum (the minimum: everything streams)" >&2
"$flexinfer" generate -m "$model" -n "$tokens" --ctx "$ctx" --host-mem "$minimum" --temp 0.8 --seed 1 \
  --ignore-eos --stats-every 100 >/dev/null 2>"$out/generate.err"
grep -E "^flexinfer: [0-9]+ tokens" "$out/generate.err" |
  python3 -c "
import re, sys
units = {'B': 1, 'KiB': 1 << 10, 'MiB': 1 << 20, 'GiB': 1 << 30}
rows = []
for line in sys.stdin:
    m = re.match(r'flexinfer: (\d+) tokens, ([\d.]+) tok/s, resident ([\d.]+) (\w+)', line)
    rows.append((int(m.group(1)), float(m.group(2)), float(m.group(3)) * units[m.group(4)]))
with open('$out/rss.tsv', 'w') as f:
    f.write('tokens\ttok_s\trss_bytes\n')
    for r in rows:
        f.write(f'{r[0]}\t{r[1]}\t{int(r[2])}\n')
first, last = rows[0], rows[-1]
growth = last[2] - first[2]
print(f'soak: resident {first[2] / 2**20:.1f} MiB at token {first[0]}, {last[2] / 2**20:.1f} MiB at token {last[0]} '
      f'(growth {growth / 2**20:+.2f} MiB); {last[1]:.0f} tok/s at the end', file=sys.stderr)
sys.exit(1 if growth > 2 * 2**20 else 0)
"

if [ ! -x build-asan/tools/flexinfer ]; then
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFLEXINFER_SANITIZE=address \
    -DFLEXINFER_CUDA=OFF >/dev/null
  cmake --build build-asan --parallel "$(nproc)" --target flexinfer >/dev/null
fi
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
echo "soak: LeakSanitizer, a streaming generation to the end" >&2
build-asan/tools/flexinfer generate -m "$model" -n 300 --ctx 512 --host-mem "$minimum" --seed 1 --ignore-eos >/dev/null 2>"$out/asan.err" ||
  { cat "$out/asan.err" >&2; exit 1; }
echo "soak: LeakSanitizer, a streaming generation stopped with Ctrl-C" >&2
build-asan/tools/flexinfer generate -m "$model" -n "$tokens" --ctx "$ctx" --host-mem "$minimum" --seed 1 --ignore-eos \
  >/dev/null 2>"$out/asan-interrupted.err" &
pid=$!
sleep 3
kill -INT "$pid"
status=0
wait "$pid" || status=$?
if [ "$status" -ne 130 ]; then
  cat "$out/asan-interrupted.err" >&2
  echo "soak: the interrupted run exited $status, expected 130" >&2
  exit 1
fi
echo "soak: no leaks, memory flat" >&2
