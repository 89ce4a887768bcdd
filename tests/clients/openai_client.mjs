// The official OpenAI client (npm 'openai') against a running flexinfer serve at $FLEXINFER_URL:
// models, chat and completions with and without streaming, concurrent streams, and errors as the
// client's typed exceptions. Exits non-zero on the first mismatch.
import assert from "node:assert/strict";
import OpenAI from "openai";

const client = new OpenAI({ baseURL: `${process.env.FLEXINFER_URL}/v1`, apiKey: process.env.FLEXINFER_API_KEY ?? "none", maxRetries: 0 });

async function collect(stream, pick) {
  let text = "";
  let finish = null;
  let chunks = 0;
  for await (const chunk of stream) {
    chunks += 1;
    if (chunk.choices.length === 0) continue;
    text += pick(chunk.choices[0]) ?? "";
    finish = chunk.choices[0].finish_reason ?? finish;
  }
  return { text, finish, chunks };
}

const models = await client.models.list();
assert.equal(models.data.length, 1);
const model = models.data[0].id;
console.log(`models: ${model}`);

const messages = [
  { role: "system", content: "You are brief." },
  { role: "user", content: "Name a colour." },
];
const chat = await client.chat.completions.create({ model, messages, max_tokens: 12, seed: 11 });
assert.equal(chat.object, "chat.completion");
assert.equal(chat.choices[0].message.role, "assistant");
assert.equal(typeof chat.choices[0].message.content, "string");
assert.ok(chat.usage.prompt_tokens > 0);
assert.equal(chat.usage.total_tokens, chat.usage.prompt_tokens + chat.usage.completion_tokens);
const chatStream = await client.chat.completions.create({ model, messages, max_tokens: 12, seed: 11, stream: true });
const streamedChat = await collect(chatStream, (choice) => choice.delta.content);
assert.equal(streamedChat.text, chat.choices[0].message.content);
assert.equal(streamedChat.finish, chat.choices[0].finish_reason);
console.log(`chat: ${JSON.stringify(chat.choices[0].message.content)} (${chat.choices[0].finish_reason}), streamed in ${streamedChat.chunks} chunks`);

const completion = await client.completions.create({ model, prompt: "Once upon a time", max_tokens: 10, temperature: 0 });
assert.equal(completion.object, "text_completion");
assert.equal(completion.choices[0].finish_reason, "length");
assert.equal(completion.usage.completion_tokens, 10);
const completionStream = await client.completions.create({
  model, prompt: "Once upon a time", max_tokens: 10, temperature: 0, stream: true, stream_options: { include_usage: true },
});
const streamedCompletion = await collect(completionStream, (choice) => choice.text);
assert.equal(streamedCompletion.text, completion.choices[0].text);
console.log(`completion: ${JSON.stringify(completion.choices[0].text)}, streamed in ${streamedCompletion.chunks} chunks`);

// Concurrent streams, each as it would be alone.
const prompts = ["one", "two", "three", "four", "five", "six"];
const alone = [];
for (const [i, prompt] of prompts.entries())
  alone.push((await client.completions.create({ model, prompt, max_tokens: 16, seed: i })).choices[0].text);
const together = await Promise.all(prompts.map(async (prompt, i) => {
  const stream = await client.completions.create({ model, prompt, max_tokens: 16, seed: i, stream: true });
  return (await collect(stream, (choice) => choice.text)).text;
}));
assert.deepEqual(together, alone);
console.log(`${prompts.length} concurrent streams: each as alone`);

// Errors arrive as the client's typed exceptions, with OpenAI's fields.
await assert.rejects(client.chat.completions.create({ model, messages, temperature: 5 }), (error) => {
  assert.ok(error instanceof OpenAI.BadRequestError, `${error}`);
  assert.equal(error.status, 400);
  assert.equal(error.param, "temperature");
  return true;
});
await assert.rejects(client.chat.completions.create({ model, messages: [] }), OpenAI.BadRequestError);
console.log("errors: BadRequestError with the parameter named");
console.log("openai client: all checks passed");
