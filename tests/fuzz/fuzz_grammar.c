/* fuzz_grammar.c — the grammar compilers (GBNF, JSON Schema, regex, choice list) and the
 * automaton, over the gen-tiny tokenizer's vocabulary (tests/fuzz/data/gen-tiny). The first
 * byte picks the front end; the bytes up to the next NUL are its source, the bytes after it
 * are fed to the matcher. Checked, from grammar.h's promises:
 *   - compile gives 0, or -EINVAL / -ENOMEM with a message;
 *   - a refused byte run leaves the state as it was (accepting or not, same mask);
 *   - at a few points, every token of the mask is taken by a fresh matcher replaying the
 *     bytes so far, and a sample of tokens outside it is refused (mask == brute force). */
#include <errno.h>

#include "tests/fuzz/fuzz.h"

#include "engine/grammar/grammar.h"
#include "engine/tokenizer/tokenizer.h"

static struct tokenizer *tok;
static struct grammar_vocab *vocab;
static char *bytes[1024];
static size_t lens[1024];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char err[ERR_LEN];
    size_t len, clen;
    char *json = fuzz_read("tests/fuzz/data/gen-tiny/tokenizer.json", &len);
    char *config = fuzz_read("tests/fuzz/data/gen-tiny/tokenizer_config.json", &clen);

    fuzz_quiet();
    if (tokenizer_load_json(&tok, json, len, config, clen, err) || grammar_vocab_create(&vocab, tok, err)) {
        fprintf(stderr, "fuzz_grammar: %s\n", err);
        abort();
    }
    free(json);
    free(config);
    for (int i = 0; i < grammar_vocab_size(vocab) && i < 1024; i++)
        if (tokenizer_is_special(tok, i) || tokenizer_piece_bytes(tok, i, &bytes[i], &lens[i]))
            bytes[i] = NULL;
    return 0;
}

/* Whether a fresh matcher takes hist[hlen] then token t's bytes. */
static bool replay_takes(struct grammar *g, const char *hist, size_t hlen, int t)
{
    struct grammar_matcher *m;
    bool ok;

    FUZZ_CHECK(grammar_matcher_create(&m, g) == 0, "matcher");
    ok = grammar_matcher_accept_bytes(m, hist, hlen) == 0 &&
         grammar_matcher_accept_bytes(m, bytes[t], lens[t]) == 0;
    grammar_matcher_destroy(m);
    return ok;
}

static void check_mask(struct grammar *g, struct grammar_matcher *m, const char *hist, size_t hlen, uint32_t *mask)
{
    int rc = grammar_matcher_fill_mask(m, mask), n = grammar_vocab_size(vocab), checked = 0;

    if (rc == -E2BIG || rc == -ENOMEM)
        return;
    FUZZ_CHECK(rc == 0, "fill_mask %d", rc);
    for (int t = 0; t < n && t < 1024 && checked < 48; t++) {
        bool in = mask[t >> 5] >> (t & 31) & 1;
        if (!bytes[t]) {
            FUZZ_CHECK(!in, "special token %d in a mask", t);
            continue;
        }
        if (!in && (t % 7))
            continue;                       /* a sample of the refused ones */
        checked++;
        FUZZ_CHECK(replay_takes(g, hist, hlen, t) == in, "token %d: mask %d, replay %d after %zu bytes",
                   t, in, !in, hlen);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const enum grammar_kind kinds[] = { GRAMMAR_GBNF, GRAMMAR_JSON_SCHEMA, GRAMMAR_REGEX,
                                                GRAMMAR_CHOICE, GRAMMAR_JSON_OBJECT };
    const char *src, *feed;
    size_t slen, flen;
    struct grammar *g = NULL;
    struct grammar_matcher *m;
    char err[ERR_LEN] = "";
    uint32_t mask[(1024 + 31) / 32 + 64];
    int rc;

    if (size < 1)
        return 0;
    fuzz_split(data + 1, size - 1, &src, &slen, &feed, &flen);
    rc = grammar_compile(&g, kinds[data[0] % 5], src, slen, vocab, err);
    FUZZ_CHECK(rc == 0 || ((rc == -EINVAL || rc == -ENOMEM) && err[0]), "compile %d '%s'", rc, err);
    if (rc)
        return 0;
    FUZZ_CHECK(grammar_mask_words(g) <= (int)(sizeof mask / sizeof mask[0]), "mask words");
    FUZZ_CHECK(grammar_matcher_create(&m, g) == 0, "matcher");
    check_mask(g, m, feed ? feed : "", 0, mask);
    for (size_t i = 0; feed && i < flen && i < 256; i++) {
        bool acc = grammar_matcher_is_accepting(m);
        rc = grammar_matcher_accept_bytes(m, feed + i, 1);
        if (rc) {
            FUZZ_CHECK(rc == -EINVAL || rc == -E2BIG, "accept %d", rc);
            FUZZ_CHECK(grammar_matcher_is_accepting(m) == acc, "a refused byte changed the state");
            break;
        }
        if (i % 16 == 15)
            check_mask(g, m, feed, i + 1, mask);
    }
    grammar_matcher_destroy(m);
    grammar_unref(g);
    return 0;
}
