/* grammar.h — grammar-constrained decoding: a context-free grammar over bytes (GBNF-like:
 * rules, sequences, alternatives, byte classes, repetition) compiled once, on an HTTP
 * thread, into an immutable struct grammar; a matcher per request that the engine thread
 * advances with every sampled token and asks for the mask of tokens that may come next.
 * Front ends: GBNF text, JSON Schema, any JSON object, a regular expression, a choice list.
 * The matcher is a pushdown automaton over bytes (a set of rule stacks, as llama.cpp's);
 * token masks come from a walk of the vocabulary trie, cached per grammar for each stack
 * top (the context-independent part, as XGrammar does), the rest checked token by token. */
#ifndef OSPREY_GRAMMAR_H
#define OSPREY_GRAMMAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tokenizer;
struct grammar;          /* compiled; immutable but for its mask cache (locked); refcounted */
struct grammar_vocab;    /* one tokenizer's token byte strings as a trie; immutable */
struct grammar_matcher;  /* one request's state; one thread at a time */

enum grammar_kind {
    GRAMMAR_GBNF,          /* llama.cpp's GBNF notation, root rule "root" */
    GRAMMAR_JSON_SCHEMA,   /* a JSON Schema document (JSON text) */
    GRAMMAR_JSON_OBJECT,   /* any JSON object; src is ignored */
    GRAMMAR_REGEX,         /* a regular expression matched against the whole output */
    GRAMMAR_CHOICE,        /* a JSON array of strings: the output is one of them */
};

/* Token byte strings of tok (special tokens and tokens without bytes are never allowed).
 * Returns 0 or a negative errno with a message in err (ERR_LEN bytes). */
int grammar_vocab_create(struct grammar_vocab **out, const struct tokenizer *tok, char *err);
/* The same from explicit byte strings (tests): tokens[i] of lens[i] bytes, NULL = unusable. */
int grammar_vocab_create_from(struct grammar_vocab **out, const char *const *tokens,
                              const size_t *lens, int num_tokens, char *err);
void grammar_vocab_destroy(struct grammar_vocab *v);   /* NULL-safe */
int grammar_vocab_size(const struct grammar_vocab *v);  /* ids covered by masks */

/* Compiles src (len bytes) of the given kind against v (borrowed: must outlive the
 * grammar). Returns 0, or -EINVAL with a message naming what was refused (a schema keyword,
 * a rule, a position), -ENOMEM. */
int grammar_compile(struct grammar **out, enum grammar_kind kind, const char *src, size_t len,
                    const struct grammar_vocab *v, char *err);
/* The GBNF text a front end produces (for tests and debugging): malloc'd, NUL-terminated. */
int grammar_to_gbnf(enum grammar_kind kind, const char *src, size_t len, char **gbnf, char *err);
struct grammar *grammar_ref(struct grammar *g);        /* thread-safe; returns g */
void grammar_unref(struct grammar *g);                 /* thread-safe; NULL-safe */

/* A matcher at the start of g (takes a reference). Returns 0 or -ENOMEM. */
int grammar_matcher_create(struct grammar_matcher **out, struct grammar *g);
void grammar_matcher_destroy(struct grammar_matcher *m);   /* NULL-safe */
/* Advances over bytes; all or nothing. Returns 0, -EINVAL when the grammar refuses them
 * (the state is unchanged), -E2BIG when the automaton grew past its bounds. */
int grammar_matcher_accept_bytes(struct grammar_matcher *m, const char *bytes, size_t n);
/* The same with a token's bytes; a token without bytes (special) is refused. */
int grammar_matcher_accept_token(struct grammar_matcher *m, int32_t id);
/* The bytes so far are a complete sentence: the output may end (EOS allowed) here. */
bool grammar_matcher_is_accepting(const struct grammar_matcher *m);
/* Complete and nothing may follow: the request is done. */
bool grammar_matcher_is_done(const struct grammar_matcher *m);
/* mask[(vocab + 31) / 32], every word written: bit i set when token i may come next (EOS
 * not included: the caller allows it when is_accepting). Returns 0, or -ENOMEM / -E2BIG
 * (the mask is then undefined). */
int grammar_matcher_fill_mask(struct grammar_matcher *m, uint32_t *mask);

/* Per-compile-source cache, shared by HTTP threads: one compiled grammar per (kind, src),
 * least recently used dropped past max_entries. */
struct grammar_cache;
int grammar_cache_create(struct grammar_cache **out, const struct grammar_vocab *v, int max_entries);
void grammar_cache_destroy(struct grammar_cache *c);   /* NULL-safe; grammars live on while referenced */
/* A new reference to the compiled grammar, compiling it when not cached. As grammar_compile. */
int grammar_cache_get(struct grammar_cache *c, enum grammar_kind kind, const char *src, size_t len,
                      struct grammar **out, char *err);

/* Words of a mask for g's vocabulary: (vocab + 31) / 32. */
int grammar_mask_words(const struct grammar *g);

/* Figures for tests and benchmarks: masks cached so far, rules and elements compiled. */
void grammar_stats(const struct grammar *g, int *num_masks, int *num_rules, int *num_elems);
/* The same for the tables of repetition masks that v's grammars share: how many, their
 * bytes. Thread-safe. */
void grammar_vocab_stats(const struct grammar_vocab *v, int *num_tables, size_t *bytes);

#endif
