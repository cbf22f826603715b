// ai_sdk_client.mjs — the Vercel AI SDK (`ai` + `@ai-sdk/openai`, unmodified) against a
// running osprey daemon, through both of its OpenAI language models: `openai(model)`, which
// speaks the Responses API (/v1/responses), and `openai.chat(model)` (/v1/chat/completions).
// Covered: generateObject and streamObject with a zod schema (text.format / response_format
// json_schema, strict), generateText with Output.object, streamText's text deltas, tool calls
// with toolChoice required and a named tool (the grammar holds the random-weight model to a
// call), streamed and not (same seed, or greedy where the SDK sends no seed, gives the same
// arguments), a two-step tool loop whose results go back as function_call_output items /
// tool messages, and errors as the SDK's APICallError. Every output is checked with zod's own
// parse, which shares nothing with osprey's grammar engine. A fetch wrapper (the provider's
// documented `fetch` option) records each request as sent, unchanged, so the script also
// checks which endpoint and which fields the SDK used. Prints each check; exits non-zero on
// the first failure. Usage: node ai_sdk_client.mjs BASE_URL MODEL API_KEY
import assert from "node:assert/strict";
import { createOpenAI } from "@ai-sdk/openai";
import { APICallError, generateObject, generateText, Output, stepCountIs, streamObject, streamText,
         tool } from "ai";
import { z } from "zod";

const [base, model, key] = process.argv.slice(2);
if (!base || !model || !key) {
  console.error("usage: node ai_sdk_client.mjs BASE_URL MODEL API_KEY");
  process.exit(2);
}
globalThis.AI_SDK_LOG_WARNINGS = false;   // the calls' warnings are asserted below, not printed
let checks = 0;
const ok = (what) => { checks++; console.log(`ok ${checks} - ${what}`); };

const sent = [];   // { path, body } of every request, as the SDK sent it
const recording = async (url, init) => {
  sent.push({ path: new URL(url).pathname, body: init?.body ? JSON.parse(init.body) : null });
  return fetch(url, init);
};
const provider = createOpenAI({ baseURL: `${base}/v1`, apiKey: key, fetch: recording });
const responses = provider(model);        // the SDK's default: the Responses API
const chat = provider.chat(model);
const last = () => sent.at(-1);
const common = { maxRetries: 0 };

// a schema with most of what zod writes: bounded strings, an enum, integer and number
// ranges, a boolean, a nullable, a nested object, a bounded array, a union (anyOf) and a
// uuid (format and pattern together). Random-weight models rarely close a string, so every
// string is bounded; the uuid's pattern bounds itself.
const Item = z.object({
  title: z.string().max(10),
  kind: z.enum(["book", "film", "song"]),
  year: z.number().int().min(1900).max(2030),
  score: z.number().min(0).max(10),
  done: z.boolean(),
  note: z.string().max(6).nullable(),
  author: z.object({ first: z.string().max(6), last: z.string().max(6) }),
  tags: z.array(z.string().max(5)).min(1).max(3),
  extra: z.union([z.object({ pages: z.number().int().min(1).max(999) }),
                  z.object({ minutes: z.number().int().min(1).max(300) })]),
  id: z.uuid(),
});
const prompt = "Describe an item.";

// generateObject through the Responses API: text.format json_schema, strict
for (let i = 0; i < 2; i++) {
  const r = await generateObject({ ...common, model: responses, schema: Item, prompt, maxOutputTokens: 1000 });
  assert.equal(last().path, "/v1/responses");
  assert.equal(last().body.text.format.type, "json_schema");
  assert.equal(last().body.text.format.strict, true);
  assert.equal(last().body.text.format.schema.properties.id.format, "uuid");
  assert.ok(last().body.text.format.schema.properties.id.pattern);
  assert.equal(r.finishReason, "stop");
  assert.deepEqual(r.warnings, []);
  assert.deepEqual(r.object, Item.parse(r.object));
}
// the Responses API has no seed: the SDK leaves it out and says so
const seeded = await generateObject({ ...common, model: responses, schema: Item, prompt, seed: 1, maxOutputTokens: 1000 });
assert.equal(last().body.seed, undefined);
assert.ok(seeded.warnings.some((w) => w.feature === "seed"), JSON.stringify(seeded.warnings));
ok("generateObject (Responses API, text.format json_schema): objects pass zod, uuid pattern included");

// generateObject through chat completions: response_format json_schema, with the seed
const chatObjects = [];
for (const seed of [1, 2]) {
  const r = await generateObject({ ...common, model: chat, schema: Item, prompt, seed, maxOutputTokens: 1000 });
  assert.equal(last().path, "/v1/chat/completions");
  assert.equal(last().body.response_format.type, "json_schema");
  assert.equal(last().body.response_format.json_schema.strict, true);
  assert.equal(last().body.seed, seed);
  assert.equal(r.finishReason, "stop");
  assert.deepEqual(r.warnings, []);
  assert.deepEqual(r.object, Item.parse(r.object));
  chatObjects.push(r.object);
}
const again = await generateObject({ ...common, model: chat, schema: Item, prompt, seed: 1, maxOutputTokens: 1000 });
assert.deepEqual(again.object, chatObjects[0]);
ok("generateObject (chat, response_format json_schema): objects pass zod; the same seed, the same object");

// streamObject: partial objects as the JSON grows, then the whole one
for (const [name, m, extra] of [["Responses API", responses, {}], ["chat", chat, { seed: 1 }]]) {
  const s = streamObject({ ...common, model: m, schema: Item, prompt, maxOutputTokens: 1000, ...extra });
  let partials = 0;
  for await (const p of s.partialObjectStream) {
    assert.equal(typeof p, "object");
    partials++;
  }
  const obj = await s.object;
  assert.equal(last().body.stream, true);
  assert.ok(partials >= 1, `${name}: no partial object`);   // how many: timing, as for text
  assert.deepEqual(obj, Item.parse(obj));
  if (m === chat)
    assert.deepEqual(obj, chatObjects[0]);   // streamed and not: the same seed, the same object
}
ok("streamObject (both APIs): partial objects, then one that passes zod (chat: equal to the unstreamed one)");

// generateText with Output.object, the SDK's newer way to structured output
const Reading = z.object({ label: z.string().max(8), value: z.number().int().min(-50).max(50),
                           unit: z.enum(["C", "F"]) });
for (const m of [responses, chat]) {
  const r = await generateText({ ...common, model: m, output: Output.object({ schema: Reading }),
                                 prompt: "A reading.", maxOutputTokens: 300 });
  assert.deepEqual(r.output, Reading.parse(JSON.parse(r.text)));
}
ok("generateText with Output.object (both APIs): output passes zod");

// streamText: text deltas that join into the greedy generateText's text
for (const [name, m, path] of [["Responses API", responses, "/v1/responses"], ["chat", chat, "/v1/chat/completions"]]) {
  const plain = await generateText({ ...common, model: m, prompt: "Say something.", maxOutputTokens: 12, temperature: 0 });
  const s = streamText({ ...common, model: m, prompt: "Say something.", maxOutputTokens: 12, temperature: 0 });
  const deltas = [];
  for await (const d of s.textStream)
    deltas.push(d);
  assert.equal(last().path, path);
  assert.equal(last().body.stream, true);
  // tokens made while the connection was busy go out as one delta: how many is timing
  assert.ok(deltas.length >= 1, `${name}: no delta`);
  assert.equal(deltas.join(""), plain.text);
  assert.equal(await s.finishReason, "length");
  assert.equal((await s.usage).outputTokens, 12);
  assert.equal(plain.usage.outputTokens, 12);
}
ok("streamText (both APIs): text deltas join into generateText's text, finish 'length', usage 12");

// tools: the grammar holds the model to a call whose input passes the tool's zod schema
const Weather = z.object({ city: z.string().max(10), days: z.number().int().min(1).max(14),
                           units: z.enum(["metric", "imperial"]), hourly: z.boolean().optional() });
const Clock = z.object({ zone: z.enum(["UTC", "CET", "PST"]) });
const tools = { get_weather: tool({ description: "The weather", inputSchema: Weather }),
                get_time: tool({ description: "The time", inputSchema: Clock }) };
const one = { openai: { parallelToolCalls: false } };

async function streamedCalls(opts) {
  const s = streamText(opts);
  const inputs = {};
  for await (const p of s.fullStream) {
    if (p.type === "tool-input-start") inputs[p.id] = "";
    if (p.type === "tool-input-delta") inputs[p.id] += p.delta;
    if (p.type === "error") throw p.error;
  }
  const calls = await s.toolCalls;
  for (const c of calls)   // the deltas join into the call's input
    assert.deepEqual(JSON.parse(inputs[c.toolCallId]), c.input);
  return { calls, finish: await s.finishReason };
}

// Responses API: toolChoice required; the SDK sends no seed there, so greedy makes it repeatable
{
  const opts = { ...common, model: responses, tools, toolChoice: "required", prompt: "Weather in Oslo?",
                 temperature: 0, maxOutputTokens: 400, providerOptions: one };
  const r = await generateText(opts);
  const body = last().body;
  assert.equal(last().path, "/v1/responses");
  assert.equal(body.tool_choice, "required");
  assert.equal(body.parallel_tool_calls, false);
  assert.equal(body.tools[0].type, "function");
  assert.equal(r.finishReason, "tool-calls");
  assert.equal(r.toolCalls.length, 1);
  const c = r.toolCalls[0];
  assert.ok(c.toolName in tools);
  assert.deepEqual(c.input, (c.toolName === "get_weather" ? Weather : Clock).parse(c.input));
  const st = await streamedCalls(opts);
  assert.equal(st.finish, "tool-calls");
  assert.equal(st.calls.length, 1);
  assert.equal(st.calls[0].toolName, c.toolName);
  assert.deepEqual(st.calls[0].input, c.input);
}
ok("tools, Responses API, toolChoice required: one call whose input passes zod; streamed, the same call");

// chat: a named tool, several seeds; streamed with the same seed gives the same arguments
for (const seed of [3, 4, 5]) {
  const opts = { ...common, model: chat, tools, toolChoice: { type: "tool", toolName: "get_weather" },
                 prompt: "Weather in Oslo?", seed, maxOutputTokens: 400, providerOptions: one };
  const r = await generateText(opts);
  assert.equal(last().path, "/v1/chat/completions");
  assert.deepEqual(last().body.tool_choice, { type: "function", function: { name: "get_weather" } });
  assert.equal(r.finishReason, "tool-calls");
  assert.equal(r.toolCalls.length, 1);
  assert.equal(r.toolCalls[0].toolName, "get_weather");
  assert.deepEqual(r.toolCalls[0].input, Weather.parse(r.toolCalls[0].input));
  const st = await streamedCalls(opts);
  assert.equal(st.calls.length, 1);
  assert.deepEqual(st.calls[0].input, r.toolCalls[0].input);
}
ok("tools, chat, a named tool: the call's input passes zod; streamed with the same seed, the same input");

// a two-step loop: the SDK runs the tool and sends its result back, then the model answers
for (const [m, path] of [[responses, "/v1/responses"], [chat, "/v1/chat/completions"]]) {
  const before = sent.length;
  const runTools = { get_time: tool({ description: "The time", inputSchema: Clock,
                                      execute: async ({ zone }) => ({ zone, time: "12:00" }) }) };
  const r = await generateText({ ...common, model: m, tools: runTools, toolChoice: "required",
    prompt: "What time is it?", temperature: 0, maxOutputTokens: 200, providerOptions: one,
    stopWhen: stepCountIs(2), prepareStep: ({ stepNumber }) => (stepNumber > 0 ? { toolChoice: "none" } : {}) });
  assert.equal(sent.length - before, 2);
  assert.equal(r.steps.length, 2);
  assert.equal(r.steps[0].finishReason, "tool-calls");
  const result = r.steps[0].toolResults[0];
  assert.deepEqual(result.output, { zone: Clock.parse(result.input).zone, time: "12:00" });
  const second = sent.at(-1);
  assert.equal(second.path, path);
  const text = JSON.stringify(second.body);
  assert.ok(text.includes(result.toolCallId), "the second request carries the call's id");
  if (m === responses) {
    const types = second.body.input.map((it) => it.type ?? it.role);
    assert.ok(types.includes("function_call") && types.includes("function_call_output"), types.join());
  } else {
    assert.ok(second.body.messages.some((msg) => msg.role === "tool" && msg.tool_call_id === result.toolCallId));
  }
  assert.equal(typeof r.text, "string");
}
ok("a two-step tool loop (both APIs): the result goes back as function_call_output / a tool message");

// errors: what osprey refuses reaches the SDK as an APICallError with osprey's message
await assert.rejects(
  generateObject({ ...common, model: chat, prompt, schema: z.object({ mail: z.email().max(20) }) }),
  (e) => APICallError.isInstance(e) && e.statusCode === 400 &&
         /minLength\/maxLength together with pattern or format is not supported/.test(e.message));
ok("a schema osprey cannot honour (zod email with max) is an APICallError 400 naming why");
const stranger = createOpenAI({ baseURL: `${base}/v1`, apiKey: "wrong-key" });
await assert.rejects(generateText({ ...common, model: stranger(model), prompt: "x" }),
                     (e) => APICallError.isInstance(e) && e.statusCode === 401);
ok("a wrong API key is an APICallError 401");

console.log(`all ${checks} checks passed`);
