// Server throughput: for each client count, that many concurrent streaming /v1/completions requests
// of a fixed length (end of generation ignored: every client gets exactly --tokens tokens), timed
// from the first request to the last byte. Prints one JSON object: per run the aggregate and
// per-client tokens per second and the ratio to one client. Node 18+, no packages.
//   node tools/bench_serve.mjs URL --clients 1,2,4,8 --tokens 32
const [url, ...rest] = process.argv.slice(2);
const option = (name, fallback) => {
  const i = rest.indexOf(name);
  return i >= 0 ? rest[i + 1] : fallback;
};
const clientCounts = option("--clients", "1,2,4,8").split(",").map(Number);
const tokens = Number(option("--tokens", "32"));

async function stream(index) {
  const start = performance.now();
  const response = await fetch(`${url}/v1/completions`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({
      prompt: `Client ${index} asks for a story about the sea, the wind and the stars.`,
      max_tokens: tokens, seed: index, stream: true, ignore_eos: true, stream_options: { include_usage: true },
    }),
  });
  if (response.status !== 200) throw new Error(`HTTP ${response.status}: ${await response.text()}`);
  let first = null, buffer = "", usage = null;
  const decoder = new TextDecoder();
  for await (const bytes of response.body) {
    buffer += decoder.decode(bytes, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end).replace(/^data: /, "");
      buffer = buffer.slice(end + 2);
      if (event === "[DONE]") continue;
      const chunk = JSON.parse(event);
      if (chunk.usage) usage = chunk.usage;
      else if (first === null && chunk.choices[0].text) first = performance.now();
    }
  }
  const done = performance.now();
  return { start, first: first ?? done, done, generated: usage ? usage.completion_tokens : 0 };
}

const health = async () => (await fetch(`${url}/health`)).json();
const runs = [];
for (const clients of clientCounts) {
  const before = await health();
  const begin = performance.now();
  const results = await Promise.all(Array.from({ length: clients }, (_, i) => stream(i)));
  const seconds = (performance.now() - begin) / 1000;
  const after = await health();
  const generated = results.reduce((sum, r) => sum + r.generated, 0);
  const perClient = results.map((r) => (r.generated - 1) / ((r.done - r.first) / 1000));
  runs.push({
    clients,
    tokens_per_client: tokens,
    generated_tokens: generated,
    seconds,
    forward_passes: after.steps - before.steps,
    tokens_evaluated: after.tokens_evaluated - before.tokens_evaluated,
    aggregate_tok_s: generated / seconds,
    per_client_decode_tok_s: perClient.reduce((a, b) => a + b, 0) / clients,
    mean_first_token_s: results.reduce((sum, r) => sum + (r.first - r.start), 0) / clients / 1000,
  });
  console.error(`${clients} clients: ${generated} tokens in ${seconds.toFixed(1)} s, ${(generated / seconds).toFixed(2)} tok/s`);
}
const one = runs.find((r) => r.clients === 1);
for (const run of runs) run.ratio_to_one_client = one ? run.aggregate_tok_s / one.aggregate_tok_s : null;
console.log(JSON.stringify(runs, null, 2));
