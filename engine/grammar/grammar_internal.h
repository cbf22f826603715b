/* grammar_internal.h — shared by the engine/grammar files only: the compiled grammar (rules
 * whose alternatives are runs of elements ending in GR_END), the vocabulary trie, the stack
 * sets of the automaton and the mask cache. gr__ functions cross files; nothing else. */
#ifndef OSPREY_GRAMMAR_INTERNAL_H
#define OSPREY_GRAMMAR_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/grammar/grammar.h"

#define GR_MAX_STACK 2048         /* frames in one stack: deeper nesting is refused (-E2BIG) */
#define GR_MAX_STACKS 1024        /* stacks alive at once: more ambiguity is refused (-E2BIG) */
#define GR_MAX_REPEAT 4096        /* bound of {m,n} */
#define GR_MASK_FRAMES 4          /* top frames that key a cached mask */
#define GR_MAX_MASKS 4096         /* cached masks per grammar; past this, masks are not kept */
#define GR_MASK_BYTES (32u << 20) /* ... nor past this many bytes of them */

enum gr_kind { GR_END, GR_BYTE, GR_SET, GR_RULE };

struct gr_elem {
    uint8_t kind;      /* enum gr_kind */
    int32_t arg;       /* GR_BYTE: the byte; GR_SET: index into sets; GR_RULE: rule id */
};

struct gr_rule {
    char *name;        /* malloc'd */
    int32_t *alts;     /* [num_alts] element index where each alternative starts */
    int num_alts, cap_alts;
    bool defined;      /* has a definition (a referenced name may still lack one) */
};

/* A cached mask for one stack top (its GR_MASK_FRAMES top positions). Tokens the walk
 * settled inside those frames are in bits/ids; tokens that pop out of them with bytes left
 * are `uncertain` and checked against the whole stack each time. */
struct gr_mask {
    uint32_t *bits;        /* [words], or NULL when ids is used (few tokens) */
    int32_t *ids;          /* [num_ids] accepted tokens when sparse */
    int num_ids;
    int32_t *uncertain;    /* [num_uncertain] */
    int num_uncertain;
};

/* A range repetition compiled as a chain of count rules (gbnf.c repeat_chain). */
struct gr_rep {
    int32_t unit;          /* rule id of one unit */
    int32_t min, max;      /* units; max < 0: unbounded */
};

/* A return frame inside a repetition's chain: the unit on top of it is the one that makes
 * `done` units once it ends. */
struct gr_rep_mark {
    int32_t el;            /* the element (a U_(k+1) reference) */
    int32_t rep;           /* index into reps */
    int32_t done;
};

struct gr_mask_slot {
    uint64_t hash;
    int32_t key[GR_MASK_FRAMES + 1];   /* frame count (negative: the whole stack), positions */
    struct gr_mask *mask;              /* NULL: empty slot */
};

struct grammar {
    atomic_int refs;
    struct gr_elem *el;
    int num_el, cap_el;
    struct gr_rule *rules;
    int num_rules, cap_rules;
    uint32_t (*sets)[8];   /* 256-bit byte sets */
    int num_sets, cap_sets;
    int root;
    const struct grammar_vocab *vocab;   /* borrowed */

    pthread_mutex_t lock;                /* the mask cache below */
    struct gr_mask_slot *slots;          /* [cap_slots] open addressing */
    int num_masks, cap_slots;
    size_t mask_bytes;                   /* held by the cached masks */
    struct gr_walk *walk;                /* scratch of the trie walk, under lock */

    struct gr_rep *reps;                 /* [num_reps] range repetitions */
    int num_reps, cap_reps;
    struct gr_rep_mark *marks;           /* [num_marks] */
    int num_marks, cap_marks;
    int32_t *mark_of;                    /* [num_el] index into marks or -1; NULL: no marks */
    struct gr_units *units;              /* repeat.c's state per unit rule, under lock; NULL until used */
    int32_t *el_rule;                    /* [num_el] rule of each element (repeat.c), or NULL */
    bool plain_masks;                    /* tests: every mask by the trie walk (no repeat.c) */
    atomic_long repeat_masks;            /* masks repeat.c made (tests, figures) */
};

/* The vocabulary: token bytes, and a trie in preorder whose subtrees hold contiguous runs
 * of `order` (tokens sorted by bytes). */
struct gv_node {
    int32_t end;           /* node index past this node's subtree */
    int32_t tok_lo, own_hi, tok_hi;   /* order[tok_lo, own_hi): tokens ending here;
                                         order[own_hi, tok_hi): deeper in the subtree */
    uint8_t byte;          /* the edge from the parent */
};

struct grammar_vocab {
    int vocab_size;
    int words;             /* (vocab_size + 31) / 32 */
    uint32_t *off;         /* [vocab_size + 1] into bytes */
    char *bytes;
    bool *usable;          /* [vocab_size] */
    struct gv_node *node;  /* [num_nodes], node 0 the root */
    int num_nodes;
    int32_t *order;        /* [num_usable] */
    int num_usable;
    int max_len;           /* bytes of the longest token */
    /* repeat.c's unit tables, shared by every grammar of this vocabulary (a table depends
     * only on the unit's rules and the vocabulary): the one mutable part, under its lock. */
    pthread_mutex_t runs_lock;
    struct gr_shared_runs *runs;
};

/* A set of stacks (positions, bottom first); an empty stack is recorded as `accept`. */
struct gr_stacks {
    int n, cap_n;
    int32_t *off;          /* [n + 1] */
    int32_t *pos;
    int len, cap;
    bool accept;
    bool overflow;         /* a bound of the automaton was hit */
};

struct gr_scratch {
    int32_t *buf;
    int len, cap;
};

/* ---- building (grammar_build.c) ---- */
/* Grows array *p of *cap elements of size bytes to hold need. Returns 0 or -ENOMEM. */
int gr__grow(void **p, int *cap, int need, size_t size);
struct grammar *gr__new(void);
void gr__free(struct grammar *g);
/* The rule named `name` (created undefined when new), or a fresh anonymous rule when
 * name is NULL. Returns its id or -ENOMEM. */
int gr__rule(struct grammar *g, const char *name);
/* The rule named `name`, or -1. */
int gr__find_rule(const struct grammar *g, const char *name);
/* Appends one alternative of rule made of elems[n] (GR_END added). */
int gr__add_alt(struct grammar *g, int rule, const struct gr_elem *elems, int n);
int gr__add_set(struct grammar *g, const uint32_t set[8]);
/* Records a range repetition of rule `unit`; returns its index or -ENOMEM. */
int gr__add_rep(struct grammar *g, int unit, int min, int max);
/* Marks element el as the return frame after which `done` units of rep are complete. */
int gr__rep_mark(struct grammar *g, int el, int rep, int done);
/* A rule matching one valid UTF-8 character of 2 to 4 bytes (shared, made once). */
int gr__utf8_multibyte_rule(struct grammar *g);
/* Checks the finished grammar: every referenced rule defined, no left recursion; sets root.
 * Returns 0 or -EINVAL with err naming the rule. */
int gr__finish(struct grammar *g, const char *root, char *err);

/* ---- GBNF (gbnf.c) ---- */
int gr__parse_gbnf(struct grammar *g, const char *src, size_t len, char *err);

struct gr_str;

/* ---- front ends, each producing GBNF text (malloc'd) ---- */
int gr__json_schema_to_gbnf(const char *src, size_t len, char **out, char *err);
int gr__json_object_gbnf(char **out, char *err);
/* The rules shared by JSON front ends (ws, json-value, json-string, json-int, …). */
const char *gr__json_common(void);
/* Regex src[len] as one GBNF expression appended to out; json: inside a JSON string (the
 * regex matches the decoded value, the grammar the escaped text). */
int gr__regex_expr(struct gr_str *out, const char *src, size_t len, bool json, char *err);
int gr__regex_to_gbnf(const char *src, size_t len, char **out, char *err);
int gr__choice_to_gbnf(const char *src, size_t len, char **out, char *err);

/* Appending to a growing string, for the front ends. */
struct gr_str {
    char *p;
    size_t len, cap;
    bool oom;
};
void gr__puts(struct gr_str *s, const char *t);
void gr__putn(struct gr_str *s, const char *t, size_t n);
void gr__printf(struct gr_str *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* s[0..n) as a GBNF string literal, quotes included. */
void gr__put_literal(struct gr_str *s, const char *t, size_t n);

/* ---- the automaton (matcher.c) ---- */
void gr__stacks_clear(struct gr_stacks *s);
void gr__stacks_free(struct gr_stacks *s);
int gr__stacks_copy(struct gr_stacks *dst, const struct gr_stacks *src);
/* Adds stack s[len] after expanding it until each top is a byte or a set. */
int gr__push_expanded(const struct grammar *g, struct gr_stacks *out, struct gr_scratch *sc,
                      const int32_t *s, int len);
/* out = stacks of in after byte b. Returns 0 or -ENOMEM; out->overflow on bounds. */
int gr__advance(const struct grammar *g, const struct gr_stacks *in, uint8_t b,
                struct gr_stacks *out, struct gr_scratch *sc);
/* Adds stack s[len] (top a byte or set) to out unless it is there already. */
int gr__stacks_add(struct gr_stacks *out, const int32_t *s, int len);
/* Whether bytes[n] can follow stack s[len] (whole-stack check). */
bool gr__accepts_from(const struct grammar *g, const int32_t *s, int len, const char *bytes,
                      size_t n, struct gr_stacks *a, struct gr_stacks *b, struct gr_scratch *sc);

/* Whether the matcher's state hit a bound of the automaton. */
bool gr__matcher_overflowed(const struct grammar_matcher *m);

/* ---- masks (mask.c) ---- */
/* The walk's automaton states: each distinct stack set met in a walk is interned once and
 * its transitions by byte are memoized, so that the walk over a trie of a million nodes
 * costs a table lookup per node once the few states of, say, a JSON string are known. */
#define GR_WALK_MAX_STATES (1 << 14)   /* 16 MiB of transitions at most */
#define GR_DEAD (-1)                  /* no stack left and nothing accepted */
#define GR_UNKNOWN (-2)

struct gr_walk {
    struct gr_stacks *state;   /* [num_states] interned stack sets */
    uint64_t *hash;            /* [num_states] */
    int32_t *trans;            /* [cap_states * 256] next state by byte, or GR_DEAD/GR_UNKNOWN */
    int num_states, cap_states;
    int32_t *table;            /* [table_cap] open addressing over state hashes, -1 empty */
    int table_cap;
    struct gr_stacks tmp;
    struct gr_scratch sc;
    int32_t *acc, *unc;        /* accepted and uncertain tokens of the walk */
    int num_acc, cap_acc, num_unc, cap_unc;
    bool whole;                /* the frames are the whole stack: leaving them is a reject */
    bool failed;
};

uint64_t gr__stacks_hash(const struct gr_stacks *t);
bool gr__stacks_equal(const struct gr_stacks *a, const struct gr_stacks *b);
/* Forgets the walk's states (its memory is kept). */
void gr__walk_reset(struct gr_walk *w);
/* The id of the state holding set t (a copy is kept), or -1 when out of memory or states. */
int gr__walk_intern(struct gr_walk *w, const struct gr_stacks *t);
/* The state after byte b from state sid (memoized), or GR_DEAD; w->failed on errors. */
int gr__walk_next(const struct grammar *g, struct gr_walk *w, int sid, uint8_t b);
/* The grammar's walk scratch (made on first use), under g->lock; NULL without memory. */
struct gr_walk *gr__walk_get(struct grammar *g);
/* After a walk: a rare wide one does not keep its scratch. */
void gr__walk_trim(struct gr_walk *w);

/* The cached mask for stack s[len] (computed on first use). NULL when out of memory. When
 * *owned is set the caller frees it (the cache was full). */
struct gr_mask *gr__mask_for(struct grammar *g, const int32_t *s, int len, bool *owned);
void gr__mask_free(struct gr_mask *m);
void gr__mask_cache_free(struct grammar *g);

/* ---- masks inside range repetitions (repeat.c) ---- */
/* ORs into mask the tokens that may follow those stacks of cur that sit inside a range
 * repetition with a usable unit table, and sets covered[i] for each of them; the others
 * are left to gr__mask_for. q, a, b, sc are the caller's scratch. Returns 0 or -ENOMEM. */
int gr__repeat_fill(struct grammar *g, const struct gr_stacks *cur, uint8_t *covered,
                    uint32_t *mask, struct gr_stacks *q, struct gr_stacks *a, struct gr_stacks *b,
                    struct gr_scratch *sc);
void gr__repeat_free(struct grammar *g);
/* The shared tables of v (grammar_vocab_destroy). */
void gr__repeat_vocab_free(struct grammar_vocab *v);

#endif
