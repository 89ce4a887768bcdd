#!/usr/bin/env bash
# Real HTTP clients against flexinfer serve on loopback (ctest runs it):
#   run.sh FLEXINFER curl     curl: every endpoint, streaming, errors, concurrent requests
#   run.sh FLEXINFER openai   the official OpenAI client for node (npm ci in tests/clients first)
# Exit 77 (ctest: skipped) when the client is not installed, saying why.
set -euo pipefail
flexinfer=$1
client=$2
here=$(cd "$(dirname "$0")" && pwd)

case $client in
  curl) command -v curl >/dev/null || { echo "curl is not installed; client test skipped"; exit 77; } ;;
  openai)
    command -v node >/dev/null || { echo "node is not installed; client test skipped"; exit 77; }
    [ -d "$here/node_modules/openai" ] || { echo "tests/clients/node_modules is missing (npm ci --prefix tests/clients); client test skipped"; exit 77; }
    ;;
  *) echo "usage: run.sh FLEXINFER curl|openai" >&2; exit 2 ;;
esac

work=$(mktemp -d)
server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

"$flexinfer" make-model --preset tiny-llama3 --type q8_0 --byte-vocab -o "$work/model.gguf" >/dev/null
"$flexinfer" serve -m "$work/model.gguf" -c 512 --parallel 4 --port 0 2>"$work/serve.log" &
server=$!
url=""
for _ in $(seq 1 300); do
  url=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$work/serve.log" | head -1 || true)
  [ -n "$url" ] && break
  kill -0 "$server" 2>/dev/null || { cat "$work/serve.log"; echo "the server did not start"; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { cat "$work/serve.log"; echo "the server did not report its address"; exit 1; }
echo "server: $url"

if [ "$client" = openai ]; then
  FLEXINFER_URL=$url node "$here/openai_client.mjs"
  exit
fi

fail() { echo "curl: $*"; exit 1; }
# expect STATUS BODY-PATTERN curl-arguments...
expect() {
  local status=$1 pattern=$2
  shift 2
  local out
  out=$(curl -sS -o "$work/body" -w '%{http_code}' "$@") || fail "curl $* failed"
  [ "$out" = "$status" ] || fail "$* -> HTTP $out, expected $status: $(head -c 300 "$work/body")"
  grep -q -- "$pattern" "$work/body" || fail "$* -> body lacks '$pattern': $(head -c 300 "$work/body")"
}
json=(-H 'Content-Type: application/json')

expect 200 '"status":"ok"' "$url/health"
expect 200 '"object":"list"' "$url/v1/models"
expect 200 '"object":"chat.completion"' "${json[@]}" "$url/v1/chat/completions" \
  -d '{"messages":[{"role":"user","content":"Hello"}],"max_tokens":8,"seed":1}'
expect 200 '"object":"text_completion"' "${json[@]}" "$url/v1/completions" -d '{"prompt":"Hello","max_tokens":8}'
expect 200 'data: \[DONE\]' -N "${json[@]}" "$url/v1/chat/completions" \
  -d '{"messages":[{"role":"user","content":"Hello"}],"max_tokens":8,"stream":true}'
grep -q '"delta":{"role":"assistant","content":""}' "$work/body" || fail "the chat stream does not start with the role"
expect 200 '"usage"' -N "${json[@]}" "$url/v1/completions" \
  -d '{"prompt":"Hello","max_tokens":8,"stream":true,"stream_options":{"include_usage":true}}'
expect 400 '"invalid_request_error"' "${json[@]}" "$url/v1/chat/completions" -d '{"messages": ['
expect 400 '"param":"max_tokens"' "${json[@]}" "$url/v1/completions" -d '{"prompt":"a","max_tokens":"many"}'
expect 404 '"error"' "$url/v1/nothing"
head -c 5000000 /dev/zero | tr '\0' ' ' >"$work/huge"
expect 413 '"error"' "${json[@]}" "$url/v1/completions" --data-binary "@$work/huge"

# Eight at once (four decode together, four wait): every one answered.
clients=()
for i in $(seq 1 8); do
  curl -sS -N "${json[@]}" "$url/v1/completions" -d "{\"prompt\":\"client $i\",\"max_tokens\":12,\"stream\":true}" \
    >"$work/concurrent.$i" &
  clients+=($!)
done
for pid in "${clients[@]}"; do wait "$pid" || fail "a concurrent client failed"; done
for i in $(seq 1 8); do
  grep -q 'data: \[DONE\]' "$work/concurrent.$i" || fail "concurrent client $i got no complete stream"
done
echo "curl: all checks passed"
