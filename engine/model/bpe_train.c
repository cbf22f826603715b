/* bpe_train.c — byte-level BPE training for gen-model's tokenizer. The text below is split
 * with Llama 3's pre-tokenizer regex (PCRE2), every pre-token becomes a word of byte ids,
 * and the most frequent adjacent pair is merged until the vocabulary is full or no pair
 * repeats. Past that, merges of random existing tokens (from the seed) fill the rest. */
#include "engine/model/bpe_train.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <errno.h>
#include <pcre2.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "engine/base/rng.h"
#include "engine/base/util.h"

const char bpe_llama3_pattern[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* Written for osprey: plain English with the usual punctuation, digits and line breaks. */
static const char corpus[] =
    "The river was low that summer, and the ospreys came back to the dead pine on the far\n"
    "bank. Every morning at six the older bird left the nest, circled twice over the water,\n"
    "and hung in the wind before it dropped. Most of the time it came up with nothing. When\n"
    "it did catch a fish, it turned the fish head first, the way a careful person carries\n"
    "a long board through a narrow door, and flew home low over the reeds.\n\n"
    "My grandmother kept a notebook of these flights. She wrote the date, the time, the\n"
    "weather and the number of dives, and she drew a small fish in the margin for every\n"
    "catch. In 1987 she counted 412 dives and 131 fish; in 1988 there were fewer dives and\n"
    "more fish, which she said meant the birds had learned the river. I asked her once why\n"
    "she did it. \"Because nobody else is going to,\" she said, \"and because the numbers\n"
    "tell you things that your eyes forget.\"\n\n"
    "Questions people ask about the birds:\n"
    "- How far do they fly? Some of them go more than 4,000 kilometres each autumn.\n"
    "- What do they eat? Almost only fish, between 150 and 300 grams each.\n"
    "- Do they come back to the same nest? Very often, yes, and they repair it first.\n"
    "- Can you help them? Keep the water clean, and leave the old trees standing.\n\n"
    "The workshop behind the house had a long table, two windows and a stove that smoked\n"
    "when the wind came from the north. My uncle built boats there. He started each one\n"
    "with a drawing on brown paper, full size, pinned to the wall, and he would stand in\n"
    "front of it for a whole afternoon before he cut any wood. \"Measure twice,\" he liked\n"
    "to say, \"and then measure again, because the wood will not forgive you.\" He was\n"
    "wrong about many things, but he was right about that.\n\n"
    "Recipe for the bread we baked on Sundays: mix 500 g of flour, 10 g of salt, 7 g of\n"
    "yeast and 350 ml of warm water. Knead it for ten minutes, until it feels smooth and\n"
    "springs back when you press it. Let it rise for an hour in a warm place, shape it,\n"
    "let it rise again, then bake it at 220 degrees for 35 minutes. It's done when the\n"
    "bottom sounds hollow. Don't cut it while it's hot; we always did, and we always\n"
    "regretted it a little, and then we did it again the next week.\n\n"
    "A short letter, found in the notebook:\n"
    "Dear Anna,\n"
    "Thank you for the photographs. The one of the two birds over the bridge is the best\n"
    "I have seen. We've had rain for three days, so the river is high again and the water\n"
    "is brown. I'll write more when the weather changes. Please tell your brother that\n"
    "the boat is finished, and that it doesn't leak, whatever he says.\n"
    "With love,\n"
    "Margaret\n\n"
    "Some notes on learning a new skill. First, start small: a single knot, a single\n"
    "loaf, a single sentence. Second, repeat it until it becomes boring, and then repeat\n"
    "it a few more times. Third, write down what went wrong, because you will not\n"
    "remember it next time. Fourth, ask someone who knows more than you, and listen to\n"
    "the answer even when it is not the answer you wanted. Fifth, rest. The hands keep\n"
    "learning while you sleep, or at least it often seems that way.\n\n"
    "The town had one school, two shops, a post office and a station where the train\n"
    "stopped twice a day, at 7:15 and at 18:40. In winter the children walked to school\n"
    "in the dark and came home in the dark, and in summer they hardly slept at all. The\n"
    "teacher, Mr. Holm, had taught there for thirty-one years. He read to the class every\n"
    "Friday: stories about ships, mountains, storms and people who were lost and then\n"
    "found. Nobody in the class ever missed a Friday if they could help it.\n\n"
    "What is a good day? Ask ten people and you will get ten answers. For some it is a\n"
    "day when nothing goes wrong; for others it is a day when something new happens. My\n"
    "grandmother said a good day was one in which you learned something, helped someone,\n"
    "and saw at least one bird you could name. By that measure, most of her days were\n"
    "good ones, and she would have said the same about yours, if you asked her kindly.\n\n"
    "At night the house was quiet except for the clock in the hall and the sound of the\n"
    "river. You could hear the water over the stones all the way from the bedroom, low\n"
    "and steady, the same sound every night of the year. When I think of that place now,\n"
    "that is what I remember first: not the boats, not the bread, not even the birds,\n"
    "but the river, going on and on in the dark, as if it had somewhere to be.\n";

_Static_assert(sizeof corpus < (1 << 14), "pair table in train_on_text sized for the corpus");

/* GPT-2's byte-to-unicode table: printable Latin-1 bytes keep their code point, the other
 * 68 bytes map to 256, 257, ... in byte order. Token id order lists the printable ones
 * first, as Llama 3's vocabulary does. */
static bool byte_is_printable(int c)
{
    return (c >= 33 && c <= 126) || (c >= 161 && c <= 172) || (c >= 174 && c <= 255);
}

static void byte_ids(int *id_of_byte, int *byte_of_id)
{
    int n = 0;

    for (int pass = 0; pass < 2; pass++)
        for (int c = 0; c < 256; c++)
            if (byte_is_printable(c) == (pass == 0)) {
                byte_of_id[n] = c;
                id_of_byte[c] = n++;
            }
}

/* The code point of byte c in that table, in closed form: the 68 others are 0..32,
 * 127..160 and 173. */
static int byte_codepoint(int c)
{
    if (byte_is_printable(c))
        return c;
    return c <= 32 ? 256 + c : c <= 160 ? 289 + (c - 127) : 323;
}

void bpe_train_token_text(const struct bpe_train *b, int id, char *out)
{
    const struct bpe_token *t = &b->tokens[id];

    for (int i = 0; i < t->len; i++) {
        int c = byte_codepoint(t->bytes[i]);

        if (c < 0x80) {
            *out++ = (char)c;
        } else {
            *out++ = (char)(0xc0 | c >> 6);
            *out++ = (char)(0x80 | (c & 0x3f));
        }
    }
    *out = '\0';
}

/* ---- a set of token strings, for "does this token exist already" ---- */

struct token_set {
    int *slots;                /* [cap] token id + 1, 0 = empty */
    int cap;                   /* power of two */
};

static uint64_t bytes_hash(const uint8_t *p, int len)
{
    return XXH3_64bits(p, (size_t)len);
}

/* The slot of (p, len), or the empty slot where it belongs. */
static int set_slot(const struct token_set *s, const struct bpe_token *tok, const uint8_t *p,
                    int len)
{
    int i = (int)(bytes_hash(p, len) & (uint64_t)(s->cap - 1));

    for (;;) {
        int id = s->slots[i] - 1;

        if (id < 0 || (tok[id].len == len && !memcmp(tok[id].bytes, p, (size_t)len)))
            return i;
        i = (i + 1) & (s->cap - 1);
    }
}

/* Adds a token made of a then b, recording the merge. Returns 0, 1 when the result exists
 * already (nothing added), or -ENOMEM. */
static int add_merge(struct bpe_train *b, struct token_set *set, int a, int c)
{
    struct bpe_token *ta = &b->tokens[a], *tc = &b->tokens[c];
    int len = ta->len + tc->len, slot;
    uint8_t *p = malloc((size_t)len);

    if (!p)
        return -ENOMEM;
    memcpy(p, ta->bytes, (size_t)ta->len);
    memcpy(p + ta->len, tc->bytes, (size_t)tc->len);
    slot = set_slot(set, b->tokens, p, len);
    if (set->slots[slot]) {
        free(p);
        return 1;
    }
    b->tokens[b->num_tokens] = (struct bpe_token){ p, len };
    set->slots[slot] = ++b->num_tokens;
    b->merges[b->num_merges][0] = a;
    b->merges[b->num_merges][1] = c;
    b->num_merges++;
    return 0;
}

/* ---- training on the text ---- */

struct word {
    int *ids;                  /* [len] token ids */
    int len;
    int count;                 /* occurrences in the text */
};

static int cmp_str(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

/* Splits the corpus into pre-tokens and collects the distinct ones with their counts. */
static int pretokenize(struct word **out, int *nout, const int *id_of_byte, char *err)
{
    int errcode, n = 0, nw = 0, rc = -ENOMEM;
    PCRE2_SIZE erroff, at = 0, len = sizeof corpus - 1;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)bpe_llama3_pattern, PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_UCP, &errcode, &erroff, NULL);
    pcre2_match_data *md = re ? pcre2_match_data_create_from_pattern(re, NULL) : NULL;
    char **pieces = malloc(sizeof *pieces * len);
    struct word *words = NULL;

    if (!re || !md || !pieces) {
        errf(err, "bpe: pre-tokenizer setup failed");
        goto out;
    }
    while (at < len && pcre2_match(re, (PCRE2_SPTR)corpus, len, at, 0, md, NULL) >= 0) {
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);

        if (ov[1] == ov[0])
            break;
        if (!(pieces[n] = strndup(corpus + ov[0], ov[1] - ov[0])))
            goto out;
        n++;
        at = ov[1];
    }
    qsort(pieces, (size_t)n, sizeof *pieces, cmp_str);
    if (!(words = calloc((size_t)n + 1, sizeof *words)))
        goto out;
    for (int i = 0; i < n; i++) {
        int l = (int)strlen(pieces[i]);

        if (nw && !strcmp(pieces[i], pieces[i - 1])) {
            words[nw - 1].count++;
            continue;
        }
        if (!(words[nw].ids = malloc(sizeof(int) * (size_t)l)))
            goto out;
        for (int k = 0; k < l; k++)
            words[nw].ids[k] = id_of_byte[(uint8_t)pieces[i][k]];
        words[nw].len = l;
        words[nw++].count = 1;
    }
    rc = 0;
out:
    for (int i = 0; i < n; i++)
        free(pieces[i]);
    free(pieces);
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    if (rc == -ENOMEM)
        errf(err, "bpe: out of memory");
    *out = words;
    *nout = nw;
    return rc;
}

/* Pair counts of one round: open addressing over (left << 32 | right). */
struct pair_count {
    uint64_t *keys;            /* [cap], UINT64_MAX = empty */
    int *counts;               /* [cap] */
    int cap;
};

static void count_pairs(struct pair_count *pc, const struct word *w, int nw)
{
    memset(pc->keys, 0xff, sizeof *pc->keys * (size_t)pc->cap);
    for (int i = 0; i < nw; i++)
        for (int k = 0; k + 1 < w[i].len; k++) {
            uint64_t key = (uint64_t)w[i].ids[k] << 32 | (uint32_t)w[i].ids[k + 1];
            int s = (int)(XXH3_64bits(&key, sizeof key) & (uint64_t)(pc->cap - 1));

            while (pc->keys[s] != UINT64_MAX && pc->keys[s] != key)
                s = (s + 1) & (pc->cap - 1);
            if (pc->keys[s] == UINT64_MAX) {
                pc->keys[s] = key;
                pc->counts[s] = 0;
            }
            pc->counts[s] += w[i].count;
        }
}

static void apply_merge(struct word *w, int nw, int a, int c, int id)
{
    for (int i = 0; i < nw; i++) {
        int o = 0;

        for (int k = 0; k < w[i].len; k++)
            if (k + 1 < w[i].len && w[i].ids[k] == a && w[i].ids[k + 1] == c) {
                w[i].ids[o++] = id;
                k++;
            } else {
                w[i].ids[o++] = w[i].ids[k];
            }
        w[i].len = o;
    }
}

/* Merges the most frequent pair (ties: lowest ids) until target tokens or no pair repeats.
 * A pair whose result already exists is barred, so every merge makes a new token. */
static int train_on_text(struct bpe_train *b, struct token_set *set, int target,
                         const int *id_of_byte, char *err)
{
    struct word *w = NULL;
    struct pair_count pc = { 0 };
    uint64_t *barred = NULL;
    int nw = 0, nbarred = 0, rc;

    if ((rc = pretokenize(&w, &nw, id_of_byte, err)))
        goto out;
    pc.cap = 1 << 15;   /* > 2x the pairs of the text */
    pc.keys = malloc(sizeof *pc.keys * (size_t)pc.cap);
    pc.counts = malloc(sizeof *pc.counts * (size_t)pc.cap);
    barred = malloc(sizeof *barred * sizeof corpus);
    rc = -ENOMEM;
    if (!pc.keys || !pc.counts || !barred)
        goto out;
    while (b->num_tokens < target) {
        uint64_t best = UINT64_MAX;
        int best_count = 1;

        count_pairs(&pc, w, nw);
        for (int s = 0; s < pc.cap; s++) {
            bool is_barred = false;

            if (pc.keys[s] == UINT64_MAX || pc.counts[s] < best_count ||
                (pc.counts[s] == best_count && pc.keys[s] > best))
                continue;
            for (int k = 0; k < nbarred && !is_barred; k++)
                is_barred = barred[k] == pc.keys[s];
            if (!is_barred) {
                best = pc.keys[s];
                best_count = pc.counts[s];
            }
        }
        if (best == UINT64_MAX)
            break;
        rc = add_merge(b, set, (int)(best >> 32), (int)(uint32_t)best);
        if (rc < 0)
            goto out;
        if (rc == 1)
            barred[nbarred++] = best;
        else
            apply_merge(w, nw, (int)(best >> 32), (int)(uint32_t)best, b->num_tokens - 1);
    }
    b->num_trained = b->num_merges;
    rc = 0;
out:
    if (rc == -ENOMEM)
        errf(err, "bpe: out of memory");
    for (int i = 0; i < nw; i++)
        free(w[i].ids);
    free(w);
    free(pc.keys);
    free(pc.counts);
    free(barred);
    return rc;
}

/* Fills the vocabulary with merges of a random token and a random short one (a byte or a
 * merge learned from the text), so tokens grow a few bytes at a time up to the cap. */
static int extend_random(struct bpe_train *b, struct token_set *set, int target, uint64_t seed)
{
    uint64_t rng = seed ^ 0x6f73707265792d62ull;   /* "osprey-b" */
    int rc = 0;

    while (b->num_tokens < target) {
        int base = BPE_NUM_BYTES + b->num_trained;
        int a = (int)rng_below(&rng, (uint64_t)b->num_tokens);
        int c = (int)rng_below(&rng, (uint64_t)base);

        if (rng_next(&rng) & 1) {   /* the short part on either side */
            int t = a;
            a = c;
            c = t;
        }
        if (b->tokens[a].len + b->tokens[c].len > BPE_MAX_TOKEN_BYTES)
            continue;
        if ((rc = add_merge(b, set, a, c)) < 0)
            return rc;
    }
    return 0;
}

int bpe_train_init(struct bpe_train *b, int num_tokens, uint64_t seed, char *err)
{
    int id_of_byte[256], byte_of_id[256], rc;
    struct token_set set = { 0 };

    memset(b, 0, sizeof *b);
    if (num_tokens < BPE_NUM_BYTES) {
        errf(err, "bpe: %d tokens asked for, a byte-level vocabulary has at least %d",
             num_tokens, BPE_NUM_BYTES);
        return -EINVAL;
    }
    byte_ids(id_of_byte, byte_of_id);
    set.cap = 16;
    while (set.cap < 2 * num_tokens)
        set.cap *= 2;
    b->tokens = calloc((size_t)num_tokens, sizeof *b->tokens);
    b->merges = calloc((size_t)(num_tokens - BPE_NUM_BYTES) + 1, sizeof *b->merges);
    set.slots = calloc((size_t)set.cap, sizeof *set.slots);
    if (!b->tokens || !b->merges || !set.slots) {
        errf(err, "bpe: out of memory for %d tokens", num_tokens);
        rc = -ENOMEM;
        goto out;
    }
    for (int i = 0; i < BPE_NUM_BYTES; i++) {
        uint8_t *p = malloc(1);

        if (!p) {
            errf(err, "bpe: out of memory");
            rc = -ENOMEM;
            goto out;
        }
        p[0] = (uint8_t)byte_of_id[i];
        b->tokens[i] = (struct bpe_token){ p, 1 };
        set.slots[set_slot(&set, b->tokens, p, 1)] = ++b->num_tokens;
    }
    if ((rc = train_on_text(b, &set, num_tokens, id_of_byte, err)))
        goto out;
    if ((rc = extend_random(b, &set, num_tokens, seed)))
        errf(err, "bpe: out of memory");
out:
    free(set.slots);
    return rc;
}

void bpe_train_fini(struct bpe_train *b)
{
    for (int i = 0; i < b->num_tokens; i++)
        free(b->tokens[i].bytes);
    free(b->tokens);
    free(b->merges);
    memset(b, 0, sizeof *b);
}
