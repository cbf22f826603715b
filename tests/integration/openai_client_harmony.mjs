// openai_client_harmony.mjs — the official `openai` npm client against osprey serving a
// gpt-oss model (test_serve_harmony.c starts it): chat answers read from harmony as
// `reasoning` (and `reasoning_content`), content and tool calls, plain and streamed (the
// client's own stream helper reassembles the call), a manual tool loop back through the
// harmony template, and the Responses API's reasoning item, plain and streamed, and taken
// back in a tool loop. The model is random: a regex (vLLM's structured_outputs, sent
// through the client as an extra body field) makes it write harmony. Prints each check;
// exits non-zero on the first failure. Usage: node openai_client_harmony.mjs BASE_URL BIAS_JSON
// (BIAS_JSON: the logit bias test_serve_harmony.c wrote, which makes the regex's markers
// the markers' own tokens: only they are harmony's structure).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import OpenAI from "openai";

const [base, biasPath] = process.argv.slice(2);
if (!base || !biasPath) {
  console.error("usage: node openai_client_harmony.mjs BASE_URL BIAS_JSON");
  process.exit(2);
}
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: "unused", maxRetries: 0, timeout: 60000 });
let checks = 0;
const ok = (what) => { checks++; console.log(`ok ${checks} - ${what}`); };
const model = (await client.models.list()).data[0].id;

// The harmony text as a regex: '|', '.', '{' and '}' each in a class of its own.
const regex = (text) => text.replace(/[|.{}]/g, (c) => `[${c}]`);
const ANSWER = "<|channel|>analysis<|message|>Greet.<|end|><|start|>assistant<|channel|>final<|message|>Hello!";
const CALL = "<|channel|>analysis<|message|>Need weather.<|end|><|start|>assistant<|channel|>commentary " +
  'to=functions.get_weather <|constrain|>json<|message|>{"city": "Paris"}<|call|>';
const tools = [{
  type: "function",
  function: { name: "get_weather", description: "Weather now",
              parameters: { type: "object", properties: { city: { type: "string" } } } },
}];
const ask = (text, extra = {}) => ({
  model, messages: [{ role: "user", content: "Hi" }], temperature: 0, max_tokens: 120,
  structured_outputs: { regex: regex(text) },
  logit_bias: JSON.parse(readFileSync(biasPath, "utf8")), ...extra,
});

// chat: reasoning and content
const plain = await client.chat.completions.create(ask(ANSWER));
assert.equal(plain.choices[0].message.reasoning, "Greet.");
assert.equal(plain.choices[0].message.reasoning_content, "Greet.");
assert.equal(plain.choices[0].message.content, "Hello!");
assert.equal(plain.choices[0].finish_reason, "stop");
ok("chat.completions.create(): the analysis as reasoning, the final channel as content");

let reasoning = "", content = "", finish = null;
for await (const chunk of await client.chat.completions.create(ask(ANSWER, { stream: true }))) {
  const c = chunk.choices[0];
  if (!c) continue;
  reasoning += c.delta.reasoning ?? "";
  content += c.delta.content ?? "";
  finish = c.finish_reason ?? finish;
}
assert.equal(reasoning, "Greet.");
assert.equal(content, "Hello!");
assert.equal(finish, "stop");
ok("chat.completions.create({stream: true}): reasoning deltas, then content deltas");

// chat: a call
const called = await client.chat.completions.create(ask(CALL, { tools }));
const call = called.choices[0].message.tool_calls?.[0];
assert.equal(called.choices[0].finish_reason, "tool_calls");
assert.equal(called.choices[0].message.reasoning, "Need weather.");
assert.equal(call.type, "function");
assert.equal(call.function.name, "get_weather");
assert.deepEqual(JSON.parse(call.function.arguments), { city: "Paris" });
ok("chat.completions.create() with tools: the commentary call as tool_calls, finish_reason tool_calls");

// the tool loop: the assistant message as the client got it (content null, its reasoning)
// and the tool's answer go back through the harmony template
const loop = await client.chat.completions.create(ask(ANSWER, { tools, messages: [
  { role: "user", content: "Hi" }, called.choices[0].message,
  { role: "tool", tool_call_id: call.id, content: "21 C" }] }));
assert.equal(loop.choices[0].message.content, "Hello!");
assert.ok(loop.usage.prompt_tokens > called.usage.prompt_tokens + 10, "the call and its answer are in the prompt");
ok("a manual tool loop: the call (content null, reasoning) and the tool's answer render, the model answers");

const runner = client.chat.completions.stream(ask(CALL, { tools }));
const whole = await runner.finalChatCompletion();
const scall = whole.choices[0].message.tool_calls?.[0];
assert.equal(whole.choices[0].finish_reason, "tool_calls");
assert.equal(scall.function.name, "get_weather");
assert.equal(scall.function.arguments, call.function.arguments);
ok("chat.completions.stream(): the client's own reassembly of the streamed call equals the plain one");

// Responses: a reasoning item (if the random model wrote an analysis) before the message,
// and the stream's deltas add up to the final object's items
const resp = await client.responses.create({ model, input: "Hi", max_output_tokens: 24, temperature: 0,
                                             reasoning: { effort: "low" } });
for (const item of resp.output)
  assert.ok(["reasoning", "message", "function_call"].includes(item.type), `output item ${item.type}`);
assert.equal(typeof resp.output_text, "string");
ok(`responses.create() with reasoning.effort: ${resp.output.map((i) => i.type).join(", ")}`);

let text = "", thought = "", done = null;
for await (const ev of await client.responses.create({ model, input: "Hi", max_output_tokens: 24, temperature: 0,
                                                      stream: true })) {
  if (ev.type === "response.output_text.delta") text += ev.delta;
  if (ev.type === "response.reasoning_text.delta") thought += ev.delta;
  if (ev.type === "response.completed" || ev.type === "response.incomplete") done = ev.response;
}
assert.ok(done, "the stream ends with the response");
const rs = done.output.find((i) => i.type === "reasoning");
assert.equal(rs ? rs.content[0].text : "", thought);
assert.equal(done.output_text ?? done.output.filter((i) => i.type === "message")
  .map((i) => i.content.map((p) => p.text).join("")).join(""), text);
ok("responses.create({stream: true}): the reasoning and text deltas add up to the final items");

// a Responses tool loop: the previous output (its reasoning item and call) sent back with
// the call's output renders through the harmony template
const base_in = [{ role: "user", content: "Weather in Paris?" }];
const rtools = [{ type: "function", name: "get_weather", description: "Weather now",
                  parameters: { type: "object", properties: { city: { type: "string" } } } }];
const first = await client.responses.create({ model, input: base_in, tools: rtools, max_output_tokens: 4 });
const looped = await client.responses.create({ model, tools: rtools, max_output_tokens: 4, input: [...base_in,
  { type: "reasoning", id: "rs_1", summary: [], content: [{ type: "reasoning_text", text: "Need weather." }] },
  { type: "function_call", call_id: "call_1", name: "get_weather", arguments: '{"city":"Paris"}' },
  { type: "function_call_output", call_id: "call_1", output: "21 C" }] });
assert.ok(looped.usage.input_tokens > first.usage.input_tokens + 10, "the turn and its output are in the prompt");
ok("responses.create() with a reasoning item, a function_call and its output sent back");

console.log(`${checks} checks passed`);
