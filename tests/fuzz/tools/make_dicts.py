#!/usr/bin/env python3
"""make_dicts.py — writes tests/fuzz/<name>.dict, the libFuzzer dictionaries: the names a
parser looks for (every identifier-like string literal of its sources: JSON keys, type
names, Jinja filters and tests) plus each input language's syntax. Run from the repository
root after a parser learns new names. cJSON is a system library and not instrumented, so
without these the fuzzer finds JSON keys only through the strcmp hooks."""
import glob, json, re

LIT = re.compile(r'"((?:[^"\\\n]|\\.)*)"')
WORD = re.compile(r'^[A-Za-z_][A-Za-z0-9_.]{1,40}$')

JSON = ['{', '}', '[', ']', ':', ',', '"', 'true', 'false', 'null', '-0', '1e308', '0.5',
        '9007199254740993', '-1', '\\u0000', '\\ud83d\\ude00', '\\"']
JINJA = ['{{', '}}', '{%', '%}', '{#', '#}', '{%-', '-%}', '{{-', '-}}', '|', '~', '**', '//',
         '==', '!=', '<=', '>=', '(', ')', '[', ']', '.', ',', ':', '::-1', "'", '"', '\n',
         'for', 'endfor', 'if', 'elif', 'else', 'endif', 'set', 'endset', 'macro', 'endmacro',
         'call', 'endcall', 'filter', 'endfilter', 'raw', 'endraw', 'generation', 'endgeneration',
         'in', 'not', 'and', 'or', 'is', 'loop', 'namespace', 'range', 'messages', 'message',
         'role', 'content', 'add_generation_prompt', 'bos_token', 'eos_token', 'tools',
         'raise_exception', 'strftime_now', 'none', 'None', 'True', 'False']


def literals(patterns):
    out = set()
    for pat in patterns:
        for f in sorted(glob.glob(pat)):
            for s in LIT.findall(open(f, encoding='utf-8').read()):
                if WORD.match(s):
                    out.add(s)
    return sorted(out)


def write(name, words, quote_json=False):
    seen, lines = set(), []
    for w in words:
        for v in ([w, '"%s"' % w] if quote_json else [w]):
            if v not in seen:
                seen.add(v)
                esc = ''.join('\\' + c if c in '\\"' else c if ' ' <= c <= '~' else
                              ''.join('\\x%02X' % b for b in c.encode()) for c in v)
                lines.append('"%s"' % esc)
    with open('tests/fuzz/%s.dict' % name, 'w') as f:
        f.write('# %s.dict: made by tests/fuzz/tools/make_dicts.py\n' % name)
        f.write('\n'.join(lines) + '\n')
    print('%-14s %4d entries' % (name, len(lines)))


write('safetensors', JSON + literals(['engine/model/safetensors.c', 'engine/base/util.c']), True)
write('model_config', JSON + literals(['engine/model/model.c', 'engine/model/model_families.c',
                                         'engine/model/model_gptoss.c', 'engine/model/quant.c',
                                         'engine/base/util.c']), True)
write('tokenizer', JSON + literals(['engine/tokenizer/*.c']), True)
write('jinja', JINJA + literals(['engine/chat_template/jinja*.c']))
added = set()
for f in sorted(glob.glob('tests/fuzz/data/*/tokenizer.json')):
    added.update(t['content'] for t in json.load(open(f, encoding='utf-8'))['added_tokens'])
write('tokenize', sorted(added) + ['\u2581', '\u0120', ' ', '  ', '\n', '\r\n', "'s", "'ll"])
write('chat_messages', JSON + ['role', 'content', 'system', 'user', 'assistant', 'tool', 'name',
                               'tool_calls', 'tool_call_id', 'function', 'arguments', 'type',
                               'text', 'image_url', 'reasoning_content', 'enable_thinking',
                               'documents', 'date_string', 'parameters', 'description',
                               'properties', 'required', 'thinking'], True)
write('openai_request', JSON + literals(['server/openai_parse.c']) +
      ['llama-3.1-8b-instruct', 'user', 'assistant', 'system', 'text', 'enable_thinking',
       '9007199254740992', '18446744073709551616', '-9223372036854775808', '131072', '128256'], True)
keys = literals(['config/options.c', 'config/config.c'])
opts = [k for k in keys if k.islower() and '_' in k or k in ('model', 'host', 'port', 'backend', 'seed', 'threads')]
write('config', JSON + keys + ['--' + k.replace('_', '-') for k in opts] + ['--no-' + k.replace('_', '-') for k in opts] +
      ['OSPREY_' + k.upper() + '=' for k in opts] + ['\n', '=', ',', 'KiB', 'MiB', 'GiB', 'TB', 'ms', 'h', '1.5',
      '65536', '16777216', '1e308', 'yes', 'off'], True)
write('http', ['Bearer ', 'bearer', 'BEARER', 'Basic ', ' ', '\t', '\x00', 'sk-test-key-0123', '\u00e9',
               '\U0001f600', '\n', '\r', '"', '\\', '\u2028'])
