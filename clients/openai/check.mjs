// The official openai npm package, unmodified, against `arcane proxy`: a whole answer, the same
// answer streamed, and a refused node arriving as an error, not as an answer.
// ARCANE_PROXY_URL and ARCANE_REFUSING_PROXY_URL are base URLs ending in /v1.
import assert from "node:assert/strict";
import OpenAI from "openai";

const messages = [{ role: "user", content: "Hello there" }];

const client = new OpenAI({ baseURL: process.env.ARCANE_PROXY_URL, apiKey: "local", maxRetries: 0 });
// Greedy (temperature 0), so that the streamed answer can be compared with the whole one.
const whole = await client.chat.completions.create({ model: "", messages, max_tokens: 24, temperature: 0 });
const text = whole.choices[0].message.content;
assert.ok(whole.usage.completion_tokens > 0);
assert.equal(whole.arcane_verification.receipt.outcome, "answered");

const stream = await client.chat.completions.create({
  model: "",
  messages,
  max_tokens: 24,
  temperature: 0,
  stream: true,
});
const pieces = [];
for await (const chunk of stream) {
  if (chunk.choices.length > 0) pieces.push(chunk.choices[0].delta.content ?? "");
}
assert.ok(pieces.length >= 2, JSON.stringify(pieces));
assert.equal(pieces.join(""), text);

// Every sampling field the client sends reaches the node, which checks its range.
const sampled = await client.chat.completions.create({
  model: "",
  messages,
  max_tokens: 8,
  temperature: 0.7,
  top_p: 0.5,
  frequency_penalty: 0.5,
  presence_penalty: -0.5,
  stop: "END",
});
assert.ok(["stop", "length"].includes(sampled.choices[0].finish_reason));
await assert.rejects(
  client.chat.completions.create({ model: "", messages, max_tokens: 8, presence_penalty: 3 }),
  (e) => e.status === 400 && e.param === "presence_penalty",
);
await assert.rejects(
  client.chat.completions.create({ model: "", messages, max_tokens: 8, seed: 7 }),
  (e) => e.status === 400 && e.code === "unsupported_parameter" && e.param === "seed",
);

const refusing = new OpenAI({ baseURL: process.env.ARCANE_REFUSING_PROXY_URL, apiKey: "local", maxRetries: 0 });
for (const streamed of [false, true]) {
  await assert.rejects(
    async () => {
      const answer = await refusing.chat.completions.create({ model: "", messages, max_tokens: 24, stream: streamed });
      if (streamed) for await (const _ of answer) { /* drain */ }
    },
    (error) => error instanceof OpenAI.APIError && error.status === 502 && error.code === "checkpoint",
  );
}
console.log("npm openai: ok");
