// openai_client.mjs — the official `openai` npm client against a running osprey daemon:
// models (list and retrieve), completions and chat (plain and streamed, with usage), n
// choices, logprobs, tool calls (plain and streamed, and the tool messages that answer
// them), tool_choice required and named with strict zod tools (a manual tool loop), the
// Responses API (plain and streamed), structured outputs through the client's zod helpers
// (chat.completions.parse with zodResponseFormat, responses.parse with zodTextFormat), and
// the client's typed errors (404, 400 with its param, 401). The daemon reads tool calls with --tool-call-parser hermes. Prints each check; exits non-zero on
// the first failure. Usage: node openai_client.mjs BASE_URL MODEL API_KEY
import assert from "node:assert/strict";
import OpenAI from "openai";
import { zodFunction, zodResponseFormat, zodTextFormat } from "openai/helpers/zod";
import { z } from "zod";

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

// models.retrieve
const card = await client.models.retrieve(model);
assert.equal(card.id, model);
assert.equal(card.object, "model");
await assert.rejects(client.models.retrieve("no-such-model"), (e) => e instanceof OpenAI.NotFoundError);
ok("models.retrieve() finds the served model and 404s another");

// tools: the assistant opened a call and the model continues it (continue_final_message);
// chat echo returns the whole message, which the daemon's hermes parser reads back
const tools = [{ type: "function", function: { name: "get_weather", description: "Weather now",
  parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] } } }];
const callMessages = [
  { role: "user", content: "Weather in Paris?" },
  { role: "assistant", content: 'Let me check. <tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>' },
];
const extra = { add_generation_prompt: false, continue_final_message: true, echo: true };
const called = await client.chat.completions.create({ model, messages: callMessages, tools, max_tokens: 2, temperature: 0, ...extra });
const call = called.choices[0].message.tool_calls?.[0];
assert.equal(called.choices[0].finish_reason, "tool_calls");
assert.equal(called.choices[0].message.content, "Let me check. ");
assert.equal(call.type, "function");
assert.equal(call.function.name, "get_weather");
assert.deepEqual(JSON.parse(call.function.arguments), { city: "Paris" });
ok("a tool call comes back as message.tool_calls with finish_reason tool_calls");

const calls = {};
let callFinish = null;
let callContent = "";
const callStream = await client.chat.completions.create({ model, messages: callMessages, tools, max_tokens: 2, temperature: 0, stream: true, ...extra });
for await (const chunk of callStream) {
  const c = chunk.choices[0];
  if (!c) continue;
  callFinish = c.finish_reason ?? callFinish;
  callContent += c.delta.content ?? "";
  for (const t of c.delta.tool_calls ?? []) {
    calls[t.index] ??= { id: "", name: "", arguments: "" };
    calls[t.index].id += t.id ?? "";
    calls[t.index].name += t.function?.name ?? "";
    calls[t.index].arguments += t.function?.arguments ?? "";
  }
}
assert.equal(callFinish, "tool_calls");
assert.equal(callContent, "Let me check. ");
assert.equal(Object.keys(calls).length, 1);
assert.equal(calls[0].name, call.function.name);
assert.equal(calls[0].arguments, call.function.arguments);
ok("a streamed tool call joins into the same name and arguments");

// the answer to the call goes back as a tool message and renders
const followUp = await client.chat.completions.create({
  model, max_tokens: 3, tools,
  messages: [callMessages[0], { role: "assistant", content: null, tool_calls: [call] },
             { role: "tool", tool_call_id: call.id, content: "sunny" }],
});
assert.equal(followUp.choices[0].message.role, "assistant");
ok("assistant tool_calls and a tool message are accepted in the conversation");

// tool_choice required with strict zod tools: a manual tool loop. The grammar holds the random
// model to a call whose arguments the client's own zod parse accepts (parsed_arguments).
const Weather = z.object({ city: z.string().max(10), days: z.number().int().min(1).max(7),
                           units: z.enum(["metric", "imperial"]) });
const Clock = z.object({ zone: z.enum(["UTC", "CET"]), seconds: z.boolean() });
const zodTools = [zodFunction({ name: "get_weather", parameters: Weather }),
                  zodFunction({ name: "get_time", parameters: Clock })];
for (const seed of [1, 2, 3, 4]) {
  const loop = [{ role: "user", content: "Weather in Oslo, or the time?" }];
  const first = await client.chat.completions.parse({
    model, messages: loop, tools: zodTools, tool_choice: "required", parallel_tool_calls: false,
    temperature: 1, seed, max_tokens: 200 });
  const c = first.choices[0];
  assert.equal(c.finish_reason, "tool_calls");
  assert.equal(c.message.tool_calls.length, 1);
  const tc = c.message.tool_calls[0];
  assert.ok(["get_weather", "get_time"].includes(tc.function.name), tc.function.name);
  const schema = tc.function.name === "get_weather" ? Weather : Clock;
  assert.deepEqual(tc.function.parsed_arguments, schema.parse(JSON.parse(tc.function.arguments)));
  loop.push(c.message, { role: "tool", tool_call_id: tc.id, content: "done" });
  // the loop's next turn: the result goes back, the model may answer in text
  const next = await client.chat.completions.create({ model, messages: loop, tools: zodTools, tool_choice: "none",
                                                      max_tokens: 4, temperature: 0 });
  assert.equal(typeof next.choices[0].message.content, "string");
}
ok("tool_choice required with strict zod tools: every call's arguments pass the client's zod parse");
const named = await client.chat.completions.parse({
  model, messages, tools: zodTools, tool_choice: { type: "function", function: { name: "get_time" } },
  temperature: 1, seed: 9, max_tokens: 200 });
assert.equal(named.choices[0].message.tool_calls[0].function.name, "get_time");
Clock.parse(named.choices[0].message.tool_calls[0].function.parsed_arguments);
ok("a named tool_choice calls that function, with arguments that pass zod");

// the Responses API, plain and streamed
const resp = await client.responses.create({ model, instructions: "Be brief.", input: "Hello", max_output_tokens: 8, temperature: 0 });
assert.equal(resp.object, "response");
assert.ok(resp.id.startsWith("resp_"));
assert.ok(["completed", "incomplete"].includes(resp.status));
assert.equal(typeof resp.output_text, "string");
assert.equal(resp.usage.output_tokens, resp.usage.total_tokens - resp.usage.input_tokens);
const sameChat = await client.chat.completions.create({
  model, messages: [{ role: "system", content: "Be brief." }, { role: "user", content: "Hello" }], max_tokens: 8, temperature: 0 });
assert.equal(resp.output_text, sameChat.choices[0].message.content);
ok("responses.create() answers as the chat completion it stands for");

const types = [];
let deltas = "";
let final = null;
const rstream = await client.responses.create({ model, input: "Hello", instructions: "Be brief.", max_output_tokens: 8, temperature: 0, stream: true });
for await (const ev of rstream) {
  if (types.at(-1) !== ev.type || ev.type !== "response.output_text.delta") types.push(ev.type);
  if (ev.type === "response.output_text.delta") deltas += ev.delta;
  if (ev.type === "response.completed" || ev.type === "response.incomplete") final = ev.response;
}
assert.deepEqual(types, ["response.created", "response.in_progress", "response.output_item.added",
  "response.content_part.added", "response.output_text.delta", "response.output_text.done",
  "response.content_part.done", "response.output_item.done",
  resp.status === "completed" ? "response.completed" : "response.incomplete"]);
assert.equal(deltas, resp.output_text);
assert.equal(final.output[0].content[0].text, resp.output_text);
ok("a streamed response is the typed event sequence and joins into the same text");

await assert.rejects(
  client.responses.create({ model, input: "x", previous_response_id: "resp_123" }),
  (e) => e instanceof OpenAI.BadRequestError && e.param === "previous_response_id");
ok("previous_response_id is a BadRequestError (stateless)");
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

// zod through the client's helpers: chat.completions.parse with zodResponseFormat, and the
// Responses API's text.format with zodTextFormat; every answer passes zod's own parse
const Reading = z.object({ label: z.string().max(8), value: z.number().int().min(-50).max(50),
                           tags: z.array(z.enum(["a", "b", "c"])).max(3), ok: z.boolean(),
                           note: z.string().max(6).nullable() });
for (const seed of [11, 12, 13]) {
  const zc = await client.chat.completions.parse({
    model, messages, max_tokens: 300, temperature: 1, seed, response_format: zodResponseFormat(Reading, "reading") });
  assert.equal(zc.choices[0].finish_reason, "stop");
  assert.deepEqual(zc.choices[0].message.parsed, Reading.parse(JSON.parse(zc.choices[0].message.content)));
}
ok("chat.completions.parse with zodResponseFormat: every answer passes zod");
for (let i = 0; i < 2; i++) {
  const zr = await client.responses.parse({
    model, input: "A reading, please.", max_output_tokens: 300, temperature: 1,
    text: { format: zodTextFormat(Reading, "reading") } });
  assert.equal(zr.status, "completed");
  assert.deepEqual(zr.output_parsed, Reading.parse(JSON.parse(zr.output_text)));
}
ok("responses.parse with zodTextFormat: every answer passes zod");

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
