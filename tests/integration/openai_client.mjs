// openai_client.mjs — the official `openai` npm client against a running osprey daemon:
// models, completions and chat (plain and streamed, with usage), n choices, logprobs, and the
// client's typed errors (404, 400 with its param, 401). Prints each check; exits non-zero on
// the first failure. Usage: node openai_client.mjs BASE_URL MODEL API_KEY
import assert from "node:assert/strict";
import OpenAI from "openai";

const [base, model, key] = process.argv.slice(2);
if (!base || !model || !key) {
  console.error("usage: node openai_client.mjs BASE_URL MODEL API_KEY");
  process.exit(2);
}
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: key, maxRetries: 0, timeout: 60000 });
let checks = 0;
const ok = (what) => { checks++; console.log(`ok ${checks} - ${what}`); };

// models
const models = await client.models.list();
assert.ok(models.data.some((m) => m.id === model), "the served model is listed");
ok(`models.list() lists ${model}`);

// completions, plain and streamed: greedy text identical
const prompt = "The official client says";
const plain = await client.completions.create({ model, prompt, max_tokens: 12, temperature: 0, ignore_eos: true });
assert.equal(plain.object, "text_completion");
assert.ok(plain.id.startsWith("cmpl-"));
assert.equal(plain.choices.length, 1);
assert.equal(plain.choices[0].finish_reason, "length");
assert.equal(plain.usage.completion_tokens, 12);
assert.equal(plain.usage.total_tokens, plain.usage.prompt_tokens + 12);
ok("completions.create() answers with text, finish_reason and usage");

let streamed = "";
let finish = null;
const cstream = await client.completions.create({ model, prompt, max_tokens: 12, temperature: 0, ignore_eos: true, stream: true });
for await (const chunk of cstream) {
  assert.equal(chunk.object, "text_completion");
  streamed += chunk.choices[0]?.text ?? "";
  finish = chunk.choices[0]?.finish_reason ?? finish;
}
assert.equal(streamed, plain.choices[0].text);
assert.equal(finish, "length");
ok("a streamed completion joins into the same text");

// chat, plain and streamed with usage
const messages = [{ role: "system", content: "You are terse." }, { role: "user", content: "Say something." }];
const chat = await client.chat.completions.create({ model, messages, max_tokens: 10, temperature: 0, ignore_eos: true });
assert.equal(chat.object, "chat.completion");
assert.equal(chat.choices[0].message.role, "assistant");
assert.equal(typeof chat.choices[0].message.content, "string");
assert.equal(chat.usage.completion_tokens, 10);
ok("chat.completions.create() answers with an assistant message");

let content = "";
let role = null;
let usage = null;
const sstream = await client.chat.completions.create({
  model, messages, max_tokens: 10, temperature: 0, ignore_eos: true, stream: true,
  stream_options: { include_usage: true },
});
for await (const chunk of sstream) {
  assert.equal(chunk.object, "chat.completion.chunk");
  if (chunk.usage) usage = chunk.usage;
  for (const c of chunk.choices) {
    role = role ?? c.delta.role ?? null;
    content += c.delta.content ?? "";
  }
}
assert.equal(role, "assistant");
assert.equal(content, chat.choices[0].message.content);
assert.equal(usage?.completion_tokens, 10);
ok("a streamed chat opens with the role, joins into the same message and ends with usage");

// n choices and logprobs
const many = await client.chat.completions.create({
  model, messages, max_tokens: 4, n: 3, seed: 11, ignore_eos: true, logprobs: true, top_logprobs: 2,
});
assert.deepEqual(many.choices.map((c) => c.index), [0, 1, 2]);
for (const c of many.choices) {
  assert.equal(c.logprobs.content.length, 4);
  for (const t of c.logprobs.content) {
    assert.ok(t.logprob <= 0);
    assert.equal(t.top_logprobs.length, 2);
    // bytes are the token's raw bytes; token their text, U+FFFD where a byte is part of a
    // character the token does not hold whole.
    const text = Buffer.from(t.bytes).toString("utf8");
    if (text.includes("\ufffd")) assert.ok(t.token.includes("\ufffd"));
    else assert.equal(t.token, text);
  }
}
ok("n = 3 choices come indexed, each with logprobs in the client's shape");

// structured outputs: the client's response_format json_schema, parsed by the client's helper
const person = {
  type: "object",
  properties: { name: { type: "string", maxLength: 6 }, age: { type: "integer", minimum: 0, maximum: 99 } },
  required: ["name", "age"], additionalProperties: false,
};
for (const seed of [1, 2, 3]) {
  const structured = await client.chat.completions.parse({
    model, messages, max_tokens: 120, seed,
    response_format: { type: "json_schema", json_schema: { name: "person", strict: true, schema: person } },
  });
  const c = structured.choices[0];
  assert.equal(c.finish_reason, "stop");
  assert.equal(typeof c.message.parsed.name, "string");
  assert.ok(Number.isInteger(c.message.parsed.age) && c.message.parsed.age >= 0 && c.message.parsed.age <= 99);
  assert.deepEqual(Object.keys(c.message.parsed).sort(), ["age", "name"]);
}
ok("response_format json_schema: the client parses every answer into the schema's shape");
await assert.rejects(
  client.chat.completions.create({
    model, messages,
    response_format: { type: "json_schema", json_schema: { name: "x", schema: { type: "object", minProperties: 1 } } },
  }),
  (e) => e instanceof OpenAI.BadRequestError && e.param === "response_format.json_schema.schema" &&
         /minProperties/.test(e.message));
ok("a schema keyword osprey cannot honour is a BadRequestError naming it");

// errors, typed by the client
await assert.rejects(
  client.completions.create({ model: "no-such-model", prompt: "x" }),
  (e) => e instanceof OpenAI.NotFoundError && e.status === 404 && e.code === "model_not_found");
ok("an unknown model is a NotFoundError (404, model_not_found)");
await assert.rejects(
  client.chat.completions.create({ model, messages, temperature: 5 }),
  (e) => e instanceof OpenAI.BadRequestError && e.status === 400 && e.param === "temperature");
ok("temperature 5 is a BadRequestError (400) naming the param");
await assert.rejects(
  client.completions.create({ model, prompt: "x", max_tokens: "many" }),
  (e) => e instanceof OpenAI.BadRequestError && e.code === "invalid_type" && e.param === "max_tokens");
ok("a string max_tokens is a BadRequestError (invalid_type)");
const stranger = new OpenAI({ baseURL: `${base}/v1`, apiKey: "wrong-key", maxRetries: 0 });
await assert.rejects(stranger.models.list(), (e) => e instanceof OpenAI.AuthenticationError && e.status === 401);
ok("a wrong API key is an AuthenticationError (401)");

console.log(`all ${checks} checks passed`);
