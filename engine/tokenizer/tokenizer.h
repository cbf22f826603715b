/* tokenizer.h — Hugging Face tokenizer.json (BPE) for encoding prompts and decoding tokens:
 * byte-level BPE with a Split regex (Llama 3, Qwen2/3, GPT-2; PCRE2 with UTF and UCP) and
 * SentencePiece-style BPE with byte fallback (Llama 2, Mistral), with their normalizers,
 * pre-tokenizers, decoders, post-processors and added tokens, giving what Hugging Face's
 * `tokenizers` gives. Anything else fails at load with an error naming the field. */
#ifndef OSPREY_TOKENIZER_H
#define OSPREY_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tokenizer;

/* Loads dir/tokenizer.json plus dir/tokenizer_config.json when present (bos/eos tokens,
 * add_bos_token/add_eos_token, chat_template; a chat_template.jinja beside them is read when
 * the config has none). Returns 0, or a negative errno with a message in err (ERR_LEN
 * bytes) naming the file, the field and the value. */
int tokenizer_load(struct tokenizer **out, const char *dir, char *err);

/* The same from memory (config_json may be NULL): the fuzzing entry point. Never reads
 * past len or config_len; the buffers need no terminating NUL. */
int tokenizer_load_json(struct tokenizer **out, const char *json, size_t len,
                        const char *config_json, size_t config_len, char *err);

void tokenizer_destroy(struct tokenizer *t);   /* NULL-safe */

/* Text → token ids (*ids malloc'd, *n of them; *ids may be NULL when *n is 0).
 * add_special: add what the post_processor adds (BOS etc.); when tokenizer_config.json sets
 * add_bos_token or add_eos_token, those decide instead, as transformers' Llama tokenizer
 * does. Added tokens (special or not) are matched in the text first, longest match.
 * Invalid UTF-8 in text is not an error: each maximal invalid subsequence becomes U+FFFD,
 * as Rust's String::from_utf8_lossy and Python's errors="replace" do.
 * Returns 0, or a negative errno with a message in err. */
int tokenizer_encode(const struct tokenizer *t, const char *text, size_t len, bool add_special,
                     int32_t **ids, int *n, char *err);

/* Token ids → text (*text malloc'd and NUL-terminated, *len bytes without the NUL): the
 * tokenizer.json decoder, as the `tokenizers` library decodes (transformers' optional
 * clean_up_tokenization_spaces pass is not applied). skip_special drops special tokens.
 * Ids with no token (negative, or holes and rows past the vocabulary) are skipped, as
 * `tokenizers` does. The text is always valid UTF-8. Returns 0, or a negative errno. */
int tokenizer_decode(const struct tokenizer *t, const int32_t *ids, int n, bool skip_special,
                     char **text, size_t *len, char *err);

/* One token's bytes as the decoder makes them, but raw: a token that holds part of a
 * character (a byte-level or byte-fallback piece) gives its bytes, not U+FFFD as
 * tokenizer_decode does (logprobs' "bytes", as OpenAI reports them). It decodes the token
 * as a text of its own, so a decoder that strips a text's leading space strips it here too
 * (tokenizer_piece_bytes, below, gives the token as it stands inside a text). *bytes
 * malloc'd, NUL-terminated, *len bytes. Returns 0 or a negative errno. */
int tokenizer_token_bytes(const struct tokenizer *t, int32_t id, char **bytes, size_t *len);

/* The bytes a token stands for in the middle of a text, before any UTF-8 repair: byte-level
 * tokens back to bytes, "<0xAB>" byte-fallback tokens as their byte, Metaspace's "▁" as a
 * space. For grammar-constrained decoding, which matches bytes. *bytes malloc'd (*len
 * bytes, NUL-terminated). Returns 0, -ENOENT for special tokens and holes, -ENOMEM. */
int tokenizer_piece_bytes(const struct tokenizer *t, int32_t id, char **bytes, size_t *len);

int tokenizer_vocab_size(const struct tokenizer *t);        /* max id + 1, added tokens included */
int32_t tokenizer_token_to_id(const struct tokenizer *t, const char *token);   /* -1 if none */
const char *tokenizer_id_to_token(const struct tokenizer *t, int32_t id);     /* NULL if none */
bool tokenizer_is_special(const struct tokenizer *t, int32_t id);
int32_t tokenizer_bos_id(const struct tokenizer *t);   /* from tokenizer_config bos_token, -1 if none */
int32_t tokenizer_eos_id(const struct tokenizer *t);   /* from tokenizer_config eos_token, -1 if none */
const char *tokenizer_bos_token(const struct tokenizer *t);  /* strings for chat templates, NULL if none */
const char *tokenizer_eos_token(const struct tokenizer *t);
/* tokenizer_config.json chat_template (a string, or the "default" entry of the list form),
 * else chat_template.jinja; NULL if none. */
const char *tokenizer_chat_template(const struct tokenizer *t);
/* The file it came from, "tokenizer_config.json" or "chat_template.jinja"; NULL if none. */
const char *tokenizer_chat_template_file(const struct tokenizer *t);

/* Incremental decoding for streaming: feed ids one at a time; each call appends to *delta
 * only complete UTF-8 text that can no longer change (never a broken sequence); the
 * concatenation of all deltas plus detok_flush equals tokenizer_decode of all ids.
 * It decodes a short window (the ids since the last emitted text, plus the ids of that
 * text as context), so a push costs a few tokens, not the whole sequence; for the rare
 * decoders whose output a window cannot reproduce (a regex Replace or a trailing Strip
 * after the tokens are joined) it decodes every id each time. Text is held back while it
 * ends in U+FFFD (an unfinished UTF-8 sequence) or in a run of byte-fallback tokens, which
 * the ByteFallback decoder only settles when the run ends.
 * Caller-allocated; one detok per stream, used by one thread at a time; the tokenizer
 * itself may be shared. */
struct detok {
    int32_t *ids;          /* [cap] the window: context ids, then ids not yet emitted */
    int n, cap;            /* ids in the window, allocated */
    int read;              /* ids[0..read) are context: their text was already emitted */
    char *prefix;          /* decode(ids[0..read)), malloc'd; NULL when read == 0 */
    size_t prefix_len;     /* bytes */
    bool skip_special;     /* as tokenizer_decode's */
};

void detok_init(struct detok *d, bool skip_special);
/* *delta malloc'd (NUL-terminated, *len bytes) or NULL with *len 0 when nothing new.
 * Returns 0, or a negative errno (-ENOMEM). */
int  detok_push(const struct tokenizer *t, struct detok *d, int32_t id, char **delta, size_t *len);
/* Emits whatever was held back and resets the window; d may be pushed to again. */
int  detok_flush(const struct tokenizer *t, struct detok *d, char **delta, size_t *len);
void detok_fini(struct detok *d);

#endif
