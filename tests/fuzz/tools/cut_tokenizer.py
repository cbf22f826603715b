#!/usr/bin/env python3
"""cut_tokenizer.py SRC_DIR NAME KEEP — a small copy of a real Hugging Face tokenizer for the
fuzz harnesses: the first KEEP ids of the BPE vocabulary plus every single-character token
below U+0250 (SentencePiece puts those last), renumbered 0.. in their order, the merges among
them (in their order), and the added tokens renumbered to follow (at most 32 of them). Writes
tests/fuzz/data/<NAME>/tokenizer.json and tokenizer_config.json (chat_template dropped).
Everything else (normalizer, pre-tokenizer regex, decoder, post-processor) is kept as is."""
import json, os, sys

src, name, keep = sys.argv[1], sys.argv[2], int(sys.argv[3])
tok = json.load(open(os.path.join(src, 'tokenizer.json'), encoding='utf-8'))
cfg = json.load(open(os.path.join(src, 'tokenizer_config.json'), encoding='utf-8'))
model = tok['model']
kept = sorted((i, t) for t, i in model['vocab'].items()
              if i < keep or (len(t) == 1 and (ord(t) < 0x250 or t == '\u2581')))
renum = {i: n for n, (i, _) in enumerate(kept)}
vocab = {t: renum[i] for i, t in kept}
merges = []
for m in model['merges']:
    a, b = m.split(' ', 1) if isinstance(m, str) else m
    if a in vocab and b in vocab and a + b in vocab:
        merges.append(m)
model['vocab'], model['merges'] = vocab, merges

added, extra = [], 0
for t in tok['added_tokens']:
    if t['id'] in renum:
        added.append(dict(t, id=renum[t['id']]))
    elif extra < 32:
        renum[t['id']] = len(vocab) + extra
        extra += 1
        added.append(dict(t, id=renum[t['id']]))
for st in ((tok.get('post_processor') or {}).get('special_tokens') or {}).values():
    st['ids'] = [renum[i] for i in st['ids']]
tok['added_tokens'] = added
cfg.pop('chat_template', None)
dec = cfg.get('added_tokens_decoder', {})
cfg['added_tokens_decoder'] = {str(renum.get(int(i), int(i))): v for i, v in dec.items()
                               if int(i) in renum}
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'data', name)
os.makedirs(out, exist_ok=True)
json.dump(tok, open(os.path.join(out, 'tokenizer.json'), 'w', encoding='utf-8'), ensure_ascii=False)
json.dump(cfg, open(os.path.join(out, 'tokenizer_config.json'), 'w', encoding='utf-8'),
          ensure_ascii=False, indent=1)
print(name, len(vocab), 'vocab', len(merges), 'merges', len(added), 'added')
