/* tokenizer_internal.h — shared by the tokenizer*.c files only: the loaded tokenizer, the
 * per-call scratch, and what each file lends the others (tk__ prefix). tokenizer.c is the
 * API and loads, calling each component's parser; tokenizer_json.c holds the JSON readers
 * those parsers share; tokenizer_encode.c runs the pipeline; tokenizer_bpe.c merges;
 * tokenizer_normalize.c, tokenizer_pretok.c and tokenizer_pattern.c transform and match
 * text; tokenizer_decode.c decodes and streams; tokenizer_util.c holds the small pieces. */
#ifndef OSPREY_TOKENIZER_INTERNAL_H
#define OSPREY_TOKENIZER_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <cjson/cJSON.h>
#include <pcre2.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/base/arena.h"
#include "engine/base/buf.h"
#include "engine/tokenizer/tokenizer.h"

#define TK_MAX_ID (1 << 24)       /* ids at or above this are refused at load */
#define TK_MAX_STEPS 64           /* normalizers, pre-tokenizers, decoders, processors each */

/* A list of strings stored back to back in one buffer: pre-tokens, decoder tokens. */
struct tk_pieces {
    struct buf buf;
    struct tk_piece {
        size_t off, len;  /* bytes into buf.p */
        bool at0;         /* starts at offset 0 of the original text (Metaspace "first") */
    } *v;
    int n, cap;
};

/* A Split/Replace pattern: a literal string, or a compiled regex. */
struct tk_pattern {
    pcre2_code *re;       /* NULL for a literal */
    char *lit;            /* malloc'd literal (re == NULL) */
    size_t lit_len;
};

enum tk_norm_kind {
    TN_NFC, TN_NFD, TN_NFKC, TN_NFKD, TN_LOWERCASE, TN_STRIP, TN_STRIP_ACCENTS,
    TN_REPLACE, TN_PREPEND, TN_BYTE_LEVEL,
};

struct tk_norm {
    enum tk_norm_kind kind;
    bool left, right;         /* Strip */
    struct tk_pattern pat;    /* Replace */
    char *content;            /* Replace content / Prepend string, malloc'd */
    size_t content_len;
};

enum tk_split_behavior { TS_REMOVED, TS_ISOLATED, TS_MERGED_PREV, TS_MERGED_NEXT, TS_CONTIGUOUS };
enum tk_prepend { TK_PREPEND_ALWAYS, TK_PREPEND_FIRST, TK_PREPEND_NEVER };

enum tk_pretok_kind {
    TP_SPLIT, TP_BYTE_LEVEL, TP_METASPACE, TP_DIGITS, TP_WHITESPACE, TP_WHITESPACE_SPLIT,
    TP_PUNCTUATION,
};

struct tk_pretok {
    enum tk_pretok_kind kind;
    struct tk_pattern pat;            /* Split; ByteLevel (use_regex) and Whitespace regexes */
    enum tk_split_behavior behavior;  /* Split, Punctuation */
    bool invert;                      /* Split */
    bool add_prefix_space;            /* ByteLevel */
    bool use_regex;                   /* ByteLevel */
    char rep[5];                      /* Metaspace replacement, UTF-8, NUL-terminated */
    int rep_len;
    enum tk_prepend prepend;          /* Metaspace */
    bool split;                       /* Metaspace */
    bool individual_digits;           /* Digits */
};

enum tk_dec_kind { TD_BYTE_LEVEL, TD_METASPACE, TD_REPLACE, TD_BYTE_FALLBACK, TD_FUSE, TD_STRIP };

struct tk_dec {
    enum tk_dec_kind kind;
    struct tk_pattern pat;    /* Replace */
    char *content;            /* Replace content, malloc'd */
    size_t content_len;
    char rep[5];              /* Metaspace replacement; Strip content (one character) */
    int rep_len;
    enum tk_prepend prepend;  /* Metaspace */
    int start, stop;          /* Strip: characters to strip at each end */
};

/* One post-processing step: the ids come out as items in order, where an item is either
 * the sequence so far (seq) or fixed ids (a special token's ids). */
struct tk_post {
    int n_items;
    struct { bool seq; int32_t *ids; int n_ids; } *items;
};

/* An entry of tokenizer.json added_tokens. */
struct tk_added {
    const char *content;      /* in t->strings */
    size_t len;
    int32_t id;
    bool special, lstrip, rstrip, single_word, normalized;
    char *norm;               /* content as the normalizer leaves it (normalized tokens), malloc'd */
    size_t norm_len;
};

/* Open-addressing string → id map over token strings stored elsewhere. */
struct tk_strmap {
    int32_t *slot;            /* [mask + 1] id, or -1 for empty */
    uint32_t mask;
};

/* Open-addressing (left id, right id) → (rank, merged id) map. */
struct tk_mergemap {
    uint64_t *key;            /* [mask + 1] ((a + 1) << 32 | (b + 1)), 0 for empty */
    uint32_t *rank, *merged;  /* [mask + 1] */
    uint32_t mask;
};

/* Added-token matcher: a byte trie of the tokens' texts. Node 0 is the root; children
 * are linked lists of siblings, except the root's, which are indexed by byte. */
struct tk_matcher {
    struct tk_trie_node {
        int32_t child, sibling;   /* node indices, -1 for none */
        int32_t added;            /* index into tokenizer.added of the token ending here, or -1 */
        uint8_t byte;
    } *node;
    int n, cap;               /* nodes */
    int32_t root[256];        /* child of the root for each first byte, or -1 */
    int n_tokens;
};

struct tokenizer {
    struct arena strings;     /* every vocabulary and added-token string, NUL-terminated; never moves */
    int vocab_size;           /* max id + 1 over the model vocabulary and added tokens */

    /* model vocabulary (BPE) */
    const char **tok;         /* [vocab_size] token string of each model id; NULL for holes */
    uint32_t *tok_len;        /* [vocab_size] bytes */
    struct tk_strmap vocab;   /* model token string → id */
    struct tk_mergemap merges;
    int32_t unk_id;           /* -1 when the model has no unk_token */
    bool byte_fallback, fuse_unk, ignore_merges;
    char *cont_prefix, *end_suffix;   /* continuing_subword_prefix / end_of_word_suffix or NULL */
    int32_t byte_id[256];     /* byte fallback: id of "<0xXX>", -1 if absent */

    /* added tokens */
    struct tk_added *added;
    int n_added;
    int32_t *added_of;        /* [vocab_size] index into added, or -1 */
    uint8_t *special;         /* [vocab_size] 1 for special tokens (decode's skip_special) */
    struct tk_matcher raw_match, norm_match;   /* normalized == false / true tokens */

    /* pipeline */
    struct tk_norm norm[TK_MAX_STEPS];
    int n_norm;
    struct tk_pretok pretok[TK_MAX_STEPS];
    int n_pretok;
    struct tk_dec dec[TK_MAX_STEPS];
    int n_dec;
    bool has_decoder;         /* false: tokens are joined with spaces */
    bool stream_safe;         /* every decoder step is local enough for detok's short window */
    bool dec_byte_fallback;   /* a ByteFallback step: detok holds runs of byte tokens */
    bool dec_regex;           /* a Replace step with a regex: decoding needs match data */
    struct tk_post post[TK_MAX_STEPS];
    int n_post;

    /* byte-level alphabet (GPT-2 bytes_to_unicode) */
    char byte_char[256][3];   /* UTF-8 of the character standing for each byte */
    uint8_t byte_char_len[256];
    int16_t char_byte[324];   /* inverse: code point (< 324) → byte, or -1 */

    /* tokenizer_config.json */
    char *bos_token, *eos_token, *chat_template;   /* malloc'd or NULL */
    const char *chat_template_file;  /* static: where chat_template came from, or NULL */
    int32_t bos_id, eos_id;
};

/* Ranges of a piece of text, each a pattern match or not (Pattern::find_matches). */
struct tk_spans {
    struct tk_span { size_t start, end; bool match; } *v;   /* byte offsets */
    int n, cap;
};

/* Text and added-token segments of the input: id >= 0 for an added token. */
struct tk_segs {
    struct tk_seg { size_t a, b; int32_t id; } *v;
    int n, cap;
};

/* BPE's work arrays for one word: symbols as a linked list, and the merge heap. */
struct tk_bpe_work {
    struct tk_sym { int32_t id, prev, next; } *sym;   /* id -1 once merged away; list links */
    int n, cap;
    struct tk_merge_entry *heap;
    int heap_n, heap_cap;
    struct buf chr;                   /* a character with its subword prefix / suffix */
};

/* Everything one tokenizer_encode call allocates, so concurrent calls share nothing. */
struct tk_scratch {
    pcre2_match_data *md;
    struct buf norm, tmp;                     /* normalizer output, and a spare */
    struct tk_pieces pieces, pieces_tmp;      /* pre-tokenizer output, and a spare */
    struct tk_spans spans;
    struct tk_segs raw_segs, norm_segs;
    struct tk_bpe_work bpe;
    int32_t *ids;                             /* the output */
    int n_ids, cap_ids;
};

struct tk_match_iter {
    const struct tk_pattern *p;
    pcre2_match_data *md;
    const char *s;
    size_t len, pos;
    bool last_empty;          /* the previous match was empty and ended at pos */
};

/* tokenizer_util.c: string lists, UTF-8 */
void tk__pieces_clear(struct tk_pieces *p);
int tk__pieces_add(struct tk_pieces *p, const char *s, size_t n, bool at0);  /* copies s */
int tk__pieces_add_ref(struct tk_pieces *p, size_t off, size_t n, bool at0); /* already in buf */
void tk__pieces_free(struct tk_pieces *p);
int tk__utf8_decode(const char *s, size_t len, uint32_t *cp);   /* bytes of one valid char, or 0 */
int tk__utf8_encode(uint32_t cp, char out[4]);                  /* bytes written */
size_t tk__utf8_valid_prefix(const char *s, size_t len);         /* bytes before the first invalid one */
int tk__utf8_lossy(const char *s, size_t len, struct buf *out);  /* appends; U+FFFD per bad subpart */
bool tk__is_space(uint32_t cp);                                 /* Unicode White_Space */
bool tk__is_word(uint32_t cp);                                  /* regex \w */
bool tk__is_numeric(uint32_t cp);                               /* Nd, Nl, No */
bool tk__is_punct(uint32_t cp);                                 /* ASCII or Unicode punctuation */
uint64_t tk__hash(const void *s, size_t n);
/* Makes room for element n of the array *arr (elem bytes each), doubling *cap. */
int tk__grow(void **arr, int *cap, int n, size_t elem);
#define TK_GROW(arr, cap, n) tk__grow((void **)&(arr), &(cap), (n), sizeof *(arr))

/* tokenizer_pattern.c: Split / Replace patterns */
int tk__pattern_parse(struct tk_pattern *p, const cJSON *j, const char *where, const char *file, char *err);
int tk__regex_compile(pcre2_code **re, const char *src, size_t len, const char *where,
                      const char *file, char *err);
void tk__pattern_free(struct tk_pattern *p);
void tk__match_init(struct tk_match_iter *it, const struct tk_pattern *p, pcre2_match_data *md,
                    const char *s, size_t len);
/* The next match: 1 (and [*ms, *me)), 0 for none left, or a negative errno. */
int tk__match_next(struct tk_match_iter *it, size_t *ms, size_t *me);
/* Appends s to out with every match replaced by with. */
int tk__replace(const struct tk_pattern *p, pcre2_match_data *md, const char *s, size_t len,
                const char *with, size_t with_len, struct buf *out);

/* tokenizer_normalize.c */
int tk__norm_parse(struct tokenizer *t, const cJSON *j, const char *file, char *err);
/* out = the normalizers applied to s (tmp is scratch). */
int tk__normalize(const struct tokenizer *t, pcre2_match_data *md, const char *s, size_t len,
                  struct buf *out, struct buf *tmp);
void tk__norm_free(struct tk_norm *n);

/* tokenizer_pretok.c */
int tk__pretok_parse(struct tokenizer *t, const cJSON *j, const char *file, char *err);
/* sc->pieces = the pre-tokens of s; at0: s starts the original text. */
int tk__pretokenize(const struct tokenizer *t, struct tk_scratch *sc, const char *s, size_t len,
                    bool at0);
void tk__pretok_free(struct tk_pretok *p);
void tk__byte_level_init(struct tokenizer *t);
void tk__spans_free(struct tk_spans *sp);

/* tokenizer_bpe.c */
int tk__bpe_load(struct tokenizer *t, const cJSON *model, const char *file, char *err);
/* Appends the ids of one pre-token to *ids. 0 or -ENOMEM. */
int tk__bpe_encode(const struct tokenizer *t, struct tk_bpe_work *wk, const char *w, size_t len,
                   int32_t **ids, int *n, int *cap);
void tk__bpe_work_free(struct tk_bpe_work *w);
int32_t tk__strmap_get(const struct tk_strmap *m, const char *const *tok, const uint32_t *tok_len,
                       const char *s, size_t n);
void tk__strmap_free(struct tk_strmap *m);
void tk__mergemap_free(struct tk_mergemap *m);

/* tokenizer_encode.c */
/* The added-token matchers, once the normalizer is known. */
int tk__added_prepare(struct tokenizer *t, const char *file, char *err);
int tk__post_parse(struct tokenizer *t, const cJSON *j, const char *file, char *err);
int tk__post_override(struct tokenizer *t, bool add_bos, bool add_eos);
void tk__post_free(struct tk_post *p);
int tk__ids_push(int32_t **ids, int *n, int *cap, int32_t id);

/* tokenizer_decode.c */
int tk__dec_parse(struct tokenizer *t, const cJSON *j, const char *file, char *err);
void tk__dec_free(struct tk_dec *d);

/* tokenizer_json.c: JSON helpers for the component parsers; where names the field */
const char *tk__json_type(const cJSON *j, const char *where, const char *file, char *err);
int tk__json_bool(const cJSON *obj, const char *key, bool dflt, bool *out, const char *where,
                  const char *file, char *err);
int tk__json_char(const cJSON *obj, const char *key, const char *dflt, char rep[5], int *rep_len,
                  const char *where, const char *file, char *err);
/* A Sequence: parse on each element of the array obj[key], named where.key[i] in errors. */
int tk__json_each(struct tokenizer *t, const cJSON *obj, const char *key, const char *where,
                  const char *file, char *err,
                  int (*parse)(struct tokenizer *t, const cJSON *j, const char *where,
                               const char *file, char *err));

#endif
