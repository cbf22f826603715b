#!/usr/bin/env python3
"""Expected chat-template renders for osprey's tests, from transformers itself.

usage: python3 scripts/oracle/chat_template_expected.py CASES.json OUT.json [--jinja2]

For each case of CASES.json ({name, template_file, messages, add_generation_prompt, extra,
and for a bare .jinja template optional bos_token / eos_token}) it renders the template the
way transformers' apply_chat_template(tokenize=False) does and writes {name: text}, or
{name: {"error": message}} when transformers raises, to OUT.json.

template_file is a tokenizer_config.json (its chat_template: a string, or the "default" of
a list of {name, template}) or a .jinja file. For a tokenizer_config.json in a folder that
also holds tokenizer.json, the tokenizer is loaded (AutoTokenizer, offline) and its own
apply_chat_template renders; otherwise transformers' renderer, render_jinja_template, runs
with the special tokens the config or the case names. Paths are relative to the repo root.

--jinja2 is for development on a machine without transformers: it rebuilds transformers'
Jinja environment with jinja2 alone. Its output is NOT the oracle; never commit it as
tests/data/chat_template/expected.json.
"""
import json
import os
import sys


def special_tokens(cfg):
    out = {}
    for key in ("bos_token", "eos_token"):
        tok = cfg.get(key)
        if isinstance(tok, dict):
            tok = tok.get("content")
        if isinstance(tok, str):
            out[key] = tok
    return out


def load_case_template(case):
    """(template source, special tokens, tokenizer folder or None)."""
    path = case["template_file"]
    if path.endswith(".json"):
        with open(path, encoding="utf-8") as f:
            cfg = json.load(f)
        tpl = cfg.get("chat_template")
        if isinstance(tpl, list):
            tpl = next(t["template"] for t in tpl if t.get("name") == "default")
        folder = os.path.dirname(path)
        has_tok = os.path.exists(os.path.join(folder, "tokenizer.json"))
        return tpl, special_tokens(cfg), folder if has_tok else None
    with open(path, encoding="utf-8") as f:
        tpl = f.read()
    return tpl, {k: case[k] for k in ("bos_token", "eos_token") if case.get(k) is not None}, None


def jinja2_renderer():
    """transformers' environment, rebuilt from jinja2 (development only)."""
    from datetime import datetime

    import jinja2
    from jinja2.ext import Extension
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Generation(Extension):
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

        def _render(self, caller):
            return caller()

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[Generation, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)

    def render(source, messages, add_generation_prompt, kwargs):
        kwargs = dict(kwargs)
        tools = kwargs.pop("tools", None)
        documents = kwargs.pop("documents", None)
        return env.from_string(source).render(messages=messages, tools=tools, documents=documents,
                                              add_generation_prompt=add_generation_prompt, **kwargs)

    return render, "jinja2 %s (development stand-in, not the oracle)" % jinja2.__version__


def transformers_renderer():
    import transformers
    from transformers.utils.chat_template_utils import render_jinja_template

    tokenizers = {}

    def render(source, messages, add_generation_prompt, kwargs, folder=None):
        if folder:
            if folder not in tokenizers:
                from transformers import AutoTokenizer
                try:
                    tokenizers[folder] = AutoTokenizer.from_pretrained(folder, local_files_only=True)
                except Exception as e:  # no usable tokenizer here: render the template alone
                    print("  (%s: AutoTokenizer failed: %s; using render_jinja_template)" % (folder, e))
                    tokenizers[folder] = None
            tok = tokenizers[folder]
            if tok is not None:
                return tok.apply_chat_template(messages, tokenize=False, chat_template=source,
                                               add_generation_prompt=add_generation_prompt, **kwargs)
        rendered, _ = render_jinja_template(conversations=[messages], chat_template=source,
                                            add_generation_prompt=add_generation_prompt, **kwargs)
        return rendered[0]

    return render, "transformers %s" % transformers.__version__


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if len(args) != 2:
        sys.exit(__doc__)
    with open(args[0], encoding="utf-8") as f:
        cases = json.load(f)
    if "--jinja2" in sys.argv:
        render, who = jinja2_renderer()
    else:
        render, who = transformers_renderer()
    out = {"__oracle__": who}
    errors = 0
    for case in cases:
        source, tokens, folder = load_case_template(case)
        kwargs = {**tokens, **case.get("extra", {})}
        try:
            if folder and "--jinja2" not in sys.argv:
                text = render(source, case["messages"], case["add_generation_prompt"], kwargs, folder)
            else:
                text = render(source, case["messages"], case["add_generation_prompt"], kwargs)
            out[case["name"]] = text
        except Exception as e:  # the case expects this error
            out[case["name"]] = {"error": str(e)}
            errors += 1
    with open(args[1], "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print("%s: %d cases (%d rendered, %d expected errors) -> %s"
          % (who, len(cases), len(cases) - errors, errors, args[1]))


if __name__ == "__main__":
    main()
