#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) in build-fuzz/ and runs each for a bounded
# time on seed corpora made from valid inputs: fuzz_gguf (model files through the reader, tensor
# checks, tokenizer and planner; dense and mixture-of-experts seeds), fuzz_tokenizer (encode/decode
# with the stories260K, GPT-2, Llama 3 and Qwen3 vocabularies from ../shared/data; skipped with a
# message when that is absent) and fuzz_jinja (chat templates parsed and rendered; seeds: the real
# templates in ../shared/data/templates) and fuzz_openai_request (the server's request bodies and
# reply text).
# A crash, leak or sanitizer report fails the script and leaves the input in build-fuzz/findings/.
#
# usage: tools/run-fuzz.sh [SECONDS_PER_TARGET]   (default 60)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
command -v clang++ >/dev/null || { echo "run-fuzz: clang++ is missing (tools/install-deps.sh installs it)" >&2; exit 1; }
tools/build.sh >/dev/null  # the regular build makes the seed models
cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
  -DCMAKE_CXX_COMPILER=clang++ -DFLEXINFER_FUZZ=ON -DFLEXINFER_TESTS=OFF -DFLEXINFER_CUDA=OFF >/dev/null
cmake --build build-fuzz --parallel "$(nproc)" --target fuzz_gguf fuzz_tokenizer fuzz_jinja fuzz_openai_request \
  >/dev/null

seeds=build-fuzz/seeds findings=build-fuzz/findings
rm -rf "$seeds" && mkdir -p "$seeds/gguf" "$seeds/tokenizer" "$seeds/jinja" "$seeds/openai" "$findings"
for type in f32 f16 q8_0; do
  build/tools/flexinfer make-model --preset micro --type "$type" --byte-vocab -o "$seeds/gguf/micro-$type.gguf" >/dev/null
done
# Mixtures of experts too (router, stacked experts, their counts), small enough for -max_len whole.
for type in q8_0 q4_k_m; do
  build/tools/flexinfer make-model --preset micro --arch qwen3moe --type "$type" --byte-vocab \
    -o "$seeds/gguf/micro-qwen3moe-$type.gguf" >/dev/null
done
printf 'Once upon a time, there was a little girl named Lily.' >"$seeds/tokenizer/story"
printf 'Hello world! <s> </s> <|endoftext|> 12345 \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80 \t\n  x' >"$seeds/tokenizer/mixed"
printf "<|im_start|>user\nI'LL don't 1234567 <think>x</think><|eot_id|>\r\n\n  \xe4\xbd\xa0\xe5\xa5\xbd\xc2\x85\xe1\xa0\x8e" >"$seeds/tokenizer/chat"
printf '\xff\xfe\x00\x80 broken \xe2\x82' >"$seeds/tokenizer/invalid-utf8"

status=0
run() {
  local target=$1 corpus=$2; shift 2
  local work="build-fuzz/corpus-$target"
  mkdir -p "$work"
  echo "fuzz: $target for ${seconds}s" >&2
  if build-fuzz/tests/fuzz/"$target" "$work" "$corpus" -max_total_time="$seconds" -max_len=131072 -rss_limit_mb=4096 \
      -artifact_prefix="$findings/$target-" -print_final_stats=1 "$@" >"build-fuzz/$target.log" 2>&1; then
    echo "fuzz: $target: $(grep -o 'stat::number_of_executed_units: *[0-9]*' "build-fuzz/$target.log" | grep -o '[0-9]*$') executions, no findings" >&2
  else
    echo "fuzz: $target FOUND A PROBLEM; input in $findings/, log build-fuzz/$target.log:" >&2
    grep -E "ERROR|SUMMARY|==[0-9]+==" "build-fuzz/$target.log" | head -20 >&2
    status=1
  fi
}
run fuzz_gguf "$seeds/gguf"
vocabs_present=true
for vocab in models/stories260K.gguf vocab/ggml-vocab-{gpt-2,llama3,qwen3}.gguf; do
  [ -f "../shared/data/$vocab" ] || vocabs_present=false
done
if $vocabs_present; then
  run fuzz_tokenizer "$seeds/tokenizer"
else
  echo "fuzz: fuzz_tokenizer skipped: ../shared/data (the vocabularies) is not present" >&2
fi
if compgen -G "../shared/data/templates/*.jinja" >/dev/null; then
  cp ../shared/data/templates/*.jinja "$seeds/jinja/"
  # Template syntax for the mutator to splice in.
  for token in '{{' '}}' '{%' '%}' '{#' '#}' '{{-' '-}}' '{%-' '-%}' '{%+' 'if ' 'elif ' 'else' 'endif' 'for ' ' in ' \
      'endfor' 'set ' 'endset' 'macro ' 'endmacro' 'call' 'endcall' 'filter ' 'endfilter' 'raw' 'endraw' 'with' \
      'endwith' 'break' 'continue' 'namespace(' 'loop.index' 'loop.last' 'caller()' ' is defined' ' is not none' \
      ' and ' ' or ' 'not ' '|tojson(indent=2)' '|trim' '|length' '|join' '|map(attribute=' '|selectattr(' \
      "|default('x')" 'messages' "message['content']" 'message.tool_calls' 'tools' 'raise_exception(' \
      "strftime_now('%d')" 'range(' '.split(' '.strip()' '.items()' ' ~ ' '**' '//' '[::-1]' '[1:]' 'none' 'true'; do
    printf '"%s"\n' "$(printf '%s' "$token" | sed 's/["\\]/\\&/g')"
  done >"$seeds/jinja.dict"
  run fuzz_jinja "$seeds/jinja" -dict="$seeds/jinja.dict"
else
  echo "fuzz: fuzz_jinja skipped: ../shared/data/templates (the seed templates) is not present" >&2
fi
printf '%s' '{"model":"m","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":[{"type":"text","text":"Hi \u00e9"}]}],"max_tokens":16,"temperature":0.7,"top_p":0.9,"seed":3,"stop":["\n\n","</s>"],"stream":true,"stream_options":{"include_usage":true}}' >"$seeds/openai/chat"
printf '%s' '{"prompt":"Once upon a time","max_tokens":8,"top_k":40,"min_p":0.05,"presence_penalty":0.5,"frequency_penalty":-0.5,"stop":"x","n":1,"logprobs":null,"echo":false,"ignore_eos":true}' >"$seeds/openai/completion"
printf '%s' '{"prompt":[[1,2,3]],"logit_bias":{},"tools":[],"response_format":{"type":"text"},"max_completion_tokens":4}' >"$seeds/openai/tokens"
run fuzz_openai_request "$seeds/openai"
exit $status
