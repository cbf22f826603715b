/* test_serve_api.c — the real daemon (build/osprey serve, CPU backend, tiny generated model)
 * over HTTP: every endpoint and generation parameter, streamed and not. Each test starts its
 * own daemon on an ephemeral port and ends with a clean SIGTERM stop (exit 0).
 * Independent checks: streamed == non-streamed, token-id prompts == text prompts, top_k=1 /
 * min_p=1 / tiny top_p == greedy, seeds reproducible, stop strings cut at the first
 * occurrence of the greedy text, usage == /tokenize's count. */
#include <check.h>
#include <ctype.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/util.h"   /* ARRAY_LEN */
#include "tests/integration/it_util.h"

static struct daemon d;

static void up(const char *const *extra)
{
    it_up(&d, extra);
}

static void down(void)
{
    it_down(&d);
}

/* POSTs and expects 200 with a JSON answer. */
static cJSON *ok_post(const char *path, const char *body)
{
    int status;
    cJSON *j = it_post(&d, path, body, &status);

    ck_assert_msg(status == 200 && j, "%s %s: status %d", path, body, status);
    return j;
}

/* The text of a completion of prompt (JSON), n tokens with EOS ignored (so the length is
 * known), with the extra fields (",\"seed\":7"…). */
static char *completion(const char *prompt_json, int n, const char *extra)
{
    char body[1024];
    cJSON *j;
    char *t;

    snprintf(body, sizeof body, "{\"prompt\":%s,\"max_tokens\":%d,\"ignore_eos\":true%s}",
             prompt_json, n, extra);
    j = ok_post("/v1/completions", body);
    t = strdup(it_choice_text(j, 0));
    cJSON_Delete(j);
    return t;
}

static char *greedy(const char *prompt_json, int n)
{
    return completion(prompt_json, n, ",\"temperature\":0");
}

static int tokenize_count(const char *body)
{
    cJSON *j = ok_post("/tokenize", body);
    int n = cJSON_GetObjectItemCaseSensitive(j, "count")->valueint;

    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "tokens")), n);
    cJSON_Delete(j);
    return n;
}

START_TEST(health_models_and_the_served_model)
{
    int status;
    cJSON *j, *m;

    up(NULL);
    j = it_post(&d, "/health", NULL, &status);
    ck_assert_int_eq(status, 200);
    cJSON_Delete(j);
    j = it_post(&d, "/v1/models", NULL, &status);
    ck_assert_int_eq(status, 200);
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(j, "object")->valuestring, "list");
    m = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "data"), 0);
    ck_assert_ptr_nonnull(m);
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(m, "id")->valuestring, "tiny");
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(m, "object")->valuestring, "model");
    ck_assert_int_eq(cJSON_GetObjectItemCaseSensitive(m, "max_model_len")->valueint, 2048);
    cJSON_Delete(j);
    down();
}
END_TEST

/* `osprey generate` offline (the same engine without HTTP): its stdout. */
static char *offline(const char *args)
{
    const char *backend = getenv("OSPREY_TEST_BACKEND") ? getenv("OSPREY_TEST_BACKEND") : "cpu";
    char cmd[2048], *out;

    snprintf(cmd, sizeof cmd, "'%s' generate --model '%s' --backend %s --threads 1 %s 2>/dev/null",
             daemon_bin(), daemon_model_dir(), backend, args);
    ck_assert_msg(it_run(cmd, &out) == 0, "%s: %s", cmd, out);
    return out;
}

START_TEST(daemon_output_equals_osprey_generate_offline)
{
    char *off, *on;

    up(NULL);
    off = offline("--prompt 'Offline check' --max-tokens 24 --ignore-eos");
    on = greedy("\"Offline check\"", 24);
    ck_assert_str_eq(on, off);
    free(off);
    free(on);
    /* Token-id prompts too. */
    off = offline("--prompt-ids '[5, 77, 300, 41]' --max-tokens 24 --ignore-eos");
    on = greedy("[5, 77, 300, 41]", 24);
    ck_assert_str_eq(on, off);
    free(off);
    free(on);
    /* A seeded sample too: one random stream whatever the path. The request leaves top_p to
     * the model's generation_config.json (0.9 for gen-model's models, as in vLLM); the
     * offline run takes it as a flag. */
    off = offline("--prompt 'Offline check' --max-tokens 24 --ignore-eos --temperature 1 --seed 99 --top-p 0.9");
    on = completion("\"Offline check\"", 24, ",\"temperature\":1,\"seed\":99");
    ck_assert_str_eq(on, off);
    free(off);
    free(on);
    down();
}
END_TEST

START_TEST(completion_has_openais_shape_and_usage)
{
    cJSON *j;
    int prompt_tokens;

    up(NULL);
    prompt_tokens = tokenize_count("{\"prompt\":\"The quick brown fox\"}");
    j = ok_post("/v1/completions", "{\"model\":\"tiny\",\"prompt\":\"The quick brown fox\",\"max_tokens\":7,\"ignore_eos\":true}");
    ck_assert(!strncmp(cJSON_GetObjectItemCaseSensitive(j, "id")->valuestring, "cmpl-", 5));
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(j, "object")->valuestring, "text_completion");
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(j, "model")->valuestring, "tiny");
    ck_assert(cJSON_GetObjectItemCaseSensitive(j, "created")->valuedouble > 1.6e9);
    ck_assert_ptr_nonnull(it_choice_text(j, 0));
    ck_assert_str_eq(it_choice_finish(j, 0), "length");
    ck_assert_int_eq(it_usage(j, "prompt_tokens"), prompt_tokens);
    ck_assert_int_eq(it_usage(j, "completion_tokens"), 7);
    ck_assert_int_eq(it_usage(j, "total_tokens"), prompt_tokens + 7);
    ck_assert(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "usage"), "prompt_tokens_details"),
        "cached_tokens")));
    cJSON_Delete(j);
    down();
}
END_TEST

START_TEST(chat_completion_goes_through_the_chat_template)
{
    const char *msgs = "[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\",\"content\":"
                       "[{\"type\":\"text\",\"text\":\"Hello\"},{\"type\":\"text\",\"text\":\"there\"}]}]";
    char body[1024];
    cJSON *j, *msg;
    int prompt_tokens;

    up(NULL);
    snprintf(body, sizeof body, "{\"messages\":%s}", msgs);
    prompt_tokens = tokenize_count(body);
    snprintf(body, sizeof body, "{\"messages\":%s,\"max_completion_tokens\":5,\"ignore_eos\":true}", msgs);
    j = ok_post("/v1/chat/completions", body);
    ck_assert(!strncmp(cJSON_GetObjectItemCaseSensitive(j, "id")->valuestring, "chatcmpl-", 9));
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(j, "object")->valuestring, "chat.completion");
    msg = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "choices"), 0), "message");
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(msg, "role")->valuestring, "assistant");
    ck_assert(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(msg, "content")));
    ck_assert_int_eq(it_usage(j, "prompt_tokens"), prompt_tokens);
    ck_assert_int_eq(it_usage(j, "completion_tokens"), 5);
    cJSON_Delete(j);
    /* The template's own text: the rendered prompt is longer than the words alone. */
    ck_assert_int_gt(prompt_tokens, tokenize_count("{\"prompt\":\"Be brief. Hello there\"}"));
    down();
}
END_TEST

START_TEST(streamed_greedy_text_equals_the_non_streamed_text)
{
    struct it_stream s;
    cJSON *j;
    char *want;

    up(NULL);
    want = greedy("\"Once upon a time\"", 20);
    ck_assert_int_eq(it_stream(&d, "/v1/completions", "{\"prompt\":\"Once upon a time\",\"max_tokens\":20,"
                               "\"temperature\":0,\"ignore_eos\":true,\"stream\":true}", &s), 0);
    ck_assert(s.clean && s.done);
    ck_assert_str_eq(s.text[0], want);
    ck_assert_str_eq(s.finish[0], "length");
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(s.events, 0), "object")->valuestring,
                     "text_completion");
    it_stream_fini(&s);

    /* Chat too: the stream's deltas join into the message. */
    j = ok_post("/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],"
                                        "\"max_tokens\":12,\"temperature\":0,\"ignore_eos\":true}");
    ck_assert_int_eq(it_stream(&d, "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],"
                               "\"max_tokens\":12,\"temperature\":0,\"ignore_eos\":true,\"stream\":true}", &s), 0);
    ck_assert(s.clean && s.done);
    ck_assert_str_eq(s.text[0], it_choice_text(j, 0));
    ck_assert_str_eq(s.finish[0], "length");
    free(want);
    cJSON_Delete(j);
    it_stream_fini(&s);
    down();
}
END_TEST

START_TEST(chat_stream_opens_with_the_role_and_ends_with_usage)
{
    struct it_stream s;
    const cJSON *first, *last, *delta, *ev;
    int n;

    up(NULL);
    ck_assert_int_eq(it_stream(&d, "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],"
                               "\"max_tokens\":6,\"ignore_eos\":true,\"stream\":true,"
                               "\"stream_options\":{\"include_usage\":true}}", &s), 0);
    ck_assert(s.clean && s.done);
    n = cJSON_GetArraySize(s.events);
    ck_assert_int_ge(n, 3);
    first = cJSON_GetArrayItem(s.events, 0);
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(first, "object")->valuestring, "chat.completion.chunk");
    delta = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(first, "choices"), 0), "delta");
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(delta, "role")->valuestring, "assistant");
    last = cJSON_GetArrayItem(s.events, n - 1);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(last, "choices")), 0);
    ck_assert_int_eq(it_usage(last, "completion_tokens"), 6);
    /* Every other chunk carries "usage": null; all share one id. */
    cJSON_ArrayForEach(ev, s.events) {
        ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(ev, "id")->valuestring,
                         cJSON_GetObjectItemCaseSensitive(first, "id")->valuestring);
        if (ev != last)
            ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(ev, "usage")));
    }
    ck_assert_str_eq(s.finish[0], "length");
    it_stream_fini(&s);
    down();
}
END_TEST

START_TEST(token_id_prompts_answer_like_their_text)
{
    cJSON *t;
    char *ids, *a, *b;

    up(NULL);
    t = ok_post("/tokenize", "{\"prompt\":\"Hello world\"}");
    ids = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(t, "tokens"));
    a = greedy("\"Hello world\"", 10);
    b = greedy(ids, 10);
    ck_assert_str_eq(a, b);
    free(a);
    free(b);
    free(ids);
    cJSON_Delete(t);
    down();
}
END_TEST

START_TEST(prompt_lists_and_n_index_choices_like_openai)
{
    cJSON *j, *choices;
    char *a, *b;

    up(NULL);
    a = greedy("\"alpha\"", 8);
    b = greedy("\"beta\"", 8);
    j = ok_post("/v1/completions", "{\"prompt\":[\"alpha\",\"beta\"],\"n\":2,\"max_tokens\":8,\"temperature\":0,\"ignore_eos\":true}");
    choices = cJSON_GetObjectItemCaseSensitive(j, "choices");
    ck_assert_int_eq(cJSON_GetArraySize(choices), 4);
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(choices, i), "index")->valueint, i);
        ck_assert_str_eq(it_choice_text(j, i), i < 2 ? a : b);      /* prompt i / n */
    }
    ck_assert_int_eq(it_usage(j, "completion_tokens"), 32);
    ck_assert_int_eq(it_usage(j, "prompt_tokens"),
                     tokenize_count("{\"prompt\":\"alpha\"}") + tokenize_count("{\"prompt\":\"beta\"}"));
    free(a);
    free(b);
    cJSON_Delete(j);
    down();
}
END_TEST

START_TEST(a_stream_with_n_choices_delivers_each_to_the_end)
{
    struct it_stream s;
    char *a;

    up(NULL);
    a = greedy("\"gamma\"", 10);
    ck_assert_int_eq(it_stream(&d, "/v1/completions", "{\"prompt\":\"gamma\",\"n\":3,\"max_tokens\":10,"
                               "\"temperature\":0,\"ignore_eos\":true,\"stream\":true}", &s), 0);
    ck_assert(s.clean && s.done);
    for (int i = 0; i < 3; i++) {
        ck_assert_str_eq(s.text[i], a);
        ck_assert_str_eq(s.finish[i], "length");
    }
    ck_assert_ptr_null(s.text[3]);
    free(a);
    it_stream_fini(&s);
    down();
}
END_TEST

static char *sampled(const char *extra)
{
    char fields[256];

    snprintf(fields, sizeof fields, ",\"temperature\":1%s", extra);
    return completion("\"Seeds\"", 16, fields);
}

START_TEST(seeds_reproduce_and_choice_i_uses_seed_plus_i)
{
    char *a, *b, *c, *e;
    cJSON *j;

    up(NULL);
    a = sampled(",\"seed\":7");
    b = sampled(",\"seed\":7");
    c = sampled(",\"seed\":8");
    ck_assert_str_eq(a, b);
    ck_assert_str_ne(a, c);           /* 16 tokens from 512 at temperature 1: a tie is ~impossible */
    j = ok_post("/v1/completions", "{\"prompt\":\"Seeds\",\"max_tokens\":16,\"temperature\":1,"
                                   "\"ignore_eos\":true,\"seed\":7,\"n\":2}");
    ck_assert_str_eq(it_choice_text(j, 0), a);
    ck_assert_str_eq(it_choice_text(j, 1), c);
    e = sampled(",\"seed\":7,\"stream\":false");
    ck_assert_str_eq(e, a);
    free(a);
    free(b);
    free(c);
    free(e);
    cJSON_Delete(j);
    down();
}
END_TEST

START_TEST(truncating_samplers_at_their_limit_equal_greedy)
{
    char *g = NULL, *s;

    up(NULL);
    g = greedy("\"Seeds\"", 16);
    s = sampled(",\"seed\":3,\"top_k\":1");
    ck_assert_str_eq(s, g);
    free(s);
    s = sampled(",\"seed\":3,\"min_p\":1");
    ck_assert_str_eq(s, g);
    free(s);
    s = sampled(",\"seed\":3,\"top_p\":0.000001");
    ck_assert_str_eq(s, g);
    free(s);
    /* The penalties are accepted (their effect is the sampler's own tests' business). */
    s = sampled(",\"seed\":3,\"presence_penalty\":1.5,\"frequency_penalty\":-0.5,\"repetition_penalty\":1.3,"
                "\"min_tokens\":4,\"user\":\"u\",\"skip_special_tokens\":false");
    free(s);
    free(g);
    down();
}
END_TEST

/* The first occurrence of a 2-character stop string taken from the middle of the greedy
 * text: the answer must end right before it, streamed or not. */
START_TEST(stop_strings_cut_exactly_before_the_first_occurrence)
{
    char *g, stop[16], body[512], *esc;
    size_t at, len, cut;
    cJSON *j, *sj;
    struct it_stream s;

    up(NULL);
    g = greedy("\"Stop here\"", 24);
    len = strlen(g);
    ck_assert_int_gt(len, 6);
    at = len / 2;
    while (at > 0 && ((unsigned char)g[at] & 0xC0) == 0x80)
        at--;                                         /* a character boundary */
    cut = at + 1;
    while (cut < len && ((unsigned char)g[cut] & 0xC0) == 0x80)
        cut++;
    cut++;
    while (cut < len && ((unsigned char)g[cut] & 0xC0) == 0x80)
        cut++;
    ck_assert_uint_lt(cut - at, sizeof stop);
    memcpy(stop, g + at, cut - at);
    stop[cut - at] = '\0';
    at = (size_t)(strstr(g, stop) - g);               /* where generation must stop */
    sj = cJSON_CreateString(stop);
    esc = cJSON_PrintUnformatted(sj);
    snprintf(body, sizeof body, "{\"prompt\":\"Stop here\",\"max_tokens\":24,\"temperature\":0,"
                                "\"ignore_eos\":true,\"stop\":[\"zzzzqqq\",%s]}", esc);
    j = ok_post("/v1/completions", body);
    ck_assert_uint_eq(strlen(it_choice_text(j, 0)), at);
    ck_assert(!strncmp(it_choice_text(j, 0), g, at));
    ck_assert_str_eq(it_choice_finish(j, 0), "stop");
    cJSON_Delete(j);
    snprintf(body, sizeof body, "{\"prompt\":\"Stop here\",\"max_tokens\":24,\"temperature\":0,"
                                "\"ignore_eos\":true,\"stop\":%s,\"stream\":true}", esc);
    ck_assert_int_eq(it_stream(&d, "/v1/completions", body, &s), 0);
    /* The stream only appends: its joined text ending before the stop string means no
     * piece of it was ever shown. */
    ck_assert_uint_eq(strlen(s.text[0] ? s.text[0] : ""), at);
    ck_assert(!strncmp(s.text[0] ? s.text[0] : "", g, at));
    ck_assert_str_eq(s.finish[0], "stop");
    it_stream_fini(&s);
    free(esc);
    cJSON_Delete(sj);
    free(g);
    down();
}
END_TEST

START_TEST(completion_logprobs_have_openais_shape)
{
    cJSON *j, *lp, *tokens, *lps, *tops, *offs;
    const cJSON *c = NULL;
    double prev = -1;
    int i = 0;

    up(NULL);
    j = ok_post("/v1/completions", "{\"prompt\":\"Log\",\"max_tokens\":6,\"temperature\":0,\"ignore_eos\":true,\"logprobs\":2}");
    lp = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "choices"), 0), "logprobs");
    tokens = cJSON_GetObjectItemCaseSensitive(lp, "tokens");
    lps = cJSON_GetObjectItemCaseSensitive(lp, "token_logprobs");
    tops = cJSON_GetObjectItemCaseSensitive(lp, "top_logprobs");
    offs = cJSON_GetObjectItemCaseSensitive(lp, "text_offset");
    ck_assert_int_eq(cJSON_GetArraySize(tokens), 6);
    ck_assert_int_eq(cJSON_GetArraySize(lps), 6);
    ck_assert_int_eq(cJSON_GetArraySize(tops), 6);
    ck_assert_int_eq(cJSON_GetArraySize(offs), 6);
    cJSON_ArrayForEach(c, tops) {
        const cJSON *tok = cJSON_GetArrayItem(tokens, i), *entry;
        double chosen = cJSON_GetArrayItem(lps, i)->valuedouble, best = -INFINITY;

        ck_assert(chosen <= 0);
        ck_assert(cJSON_IsObject(c));
        ck_assert_int_ge(cJSON_GetArraySize(c), 1);
        ck_assert_int_le(cJSON_GetArraySize(c), 3);   /* the top 2 and the chosen one */
        ck_assert_ptr_nonnull(cJSON_GetObjectItemCaseSensitive(c, tok->valuestring));
        cJSON_ArrayForEach(entry, c)
            best = fmax(best, entry->valuedouble);
        ck_assert(fabs(best - chosen) < 1e-4);        /* greedy takes the most likely token */
        ck_assert(cJSON_GetArrayItem(offs, i)->valuedouble >= prev);
        prev = cJSON_GetArrayItem(offs, i)->valuedouble;
        i++;
    }
    cJSON_Delete(j);
    down();
}
END_TEST

/* A completion's logprobs, streamed or not: the tokens and text_offsets in order (every
 * chunk's joined), and the text. */
struct offsets {
    int n;
    int off[256];
    char tok[256][64];
    char text[4096];
};

static void add_logprobs(struct offsets *o, const cJSON *choice)
{
    const cJSON *lp = cJSON_GetObjectItemCaseSensitive(choice, "logprobs");
    const cJSON *toks = cJSON_GetObjectItemCaseSensitive(lp, "tokens");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(lp, "text_offset");
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(choice, "text");

    ck_assert(cJSON_IsString(text));
    ck_assert(strlen(o->text) + strlen(text->valuestring) < sizeof o->text);
    strcat(o->text, text->valuestring);
    if (cJSON_IsNull(lp))
        return;
    ck_assert_int_eq(cJSON_GetArraySize(toks), cJSON_GetArraySize(offs));
    for (int i = 0; i < cJSON_GetArraySize(toks); i++) {
        ck_assert_int_lt(o->n, 256);
        o->off[o->n] = cJSON_GetArrayItem(offs, i)->valueint;
        snprintf(o->tok[o->n], sizeof o->tok[0], "%s", cJSON_GetArrayItem(toks, i)->valuestring);
        o->n++;
    }
}

static void completion_offsets(const char *body, bool stream, struct offsets *o)
{
    char full[1024];

    memset(o, 0, sizeof *o);
    snprintf(full, sizeof full, "%.*s,\"stream\":%s}", (int)strlen(body) - 1, body, stream ? "true" : "false");
    if (stream) {
        struct it_stream s;
        const cJSON *ev;

        ck_assert_int_eq(it_stream(&d, "/v1/completions", full, &s), 0);
        ck_assert(s.done);
        cJSON_ArrayForEach(ev, s.events)
            add_logprobs(o, cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(ev, "choices"), 0));
        it_stream_fini(&s);
    } else {
        cJSON *j = ok_post("/v1/completions", full);

        add_logprobs(o, cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "choices"), 0));
        cJSON_Delete(j);
    }
}

/* text_offset: bytes into "text" where each token's text starts. A skipped special token
 * has no text (it points where the next text goes), a token holding part of a character
 * (shown with U+FFFD) points at that character; every other token's text is at its offset.
 * Never past the end, never backwards, and the same streamed and not. Seed 3 samples two
 * special tokens and five partial ones among 24. */
START_TEST(completion_text_offsets_point_into_the_text_streamed_or_not)
{
    static const char base[] = "{\"prompt\":\"Hi\",\"max_tokens\":24,\"ignore_eos\":true,\"logprobs\":1,\"seed\":3}";
    struct offsets *whole = calloc(1, sizeof *whole), *streamed = calloc(1, sizeof *streamed);
    char body[512], stop[3] = "";
    int specials = 0, partials = 0;

    up(NULL);
    for (int run = 0; run < 2; run++) {
        if (run == 0) {
            snprintf(body, sizeof body, "%s", base);
        } else {
            /* Again with a stop string from the middle of that text: the token that ends
             * it and those inside it are clamped to the cut. */
            size_t at = strlen(whole->text) / 2;

            while (whole->text[at] && (!isalpha((unsigned char)whole->text[at]) ||
                                       !isalpha((unsigned char)whole->text[at + 1])))
                at++;
            ck_assert_msg(whole->text[at], "no two letters in \"%s\"", whole->text);
            memcpy(stop, whole->text + at, 2);
            snprintf(body, sizeof body, "%.*s,\"stop\":\"%s\"}", (int)strlen(base) - 1, base, stop);
        }
        completion_offsets(body, false, whole);
        completion_offsets(body, true, streamed);
        ck_assert_str_eq(streamed->text, whole->text);
        ck_assert_int_eq(streamed->n, whole->n);
        ck_assert_int_eq(whole->n, run == 0 ? 24 : whole->n);
        for (int i = 0; i < whole->n; i++) {
            const char *t = whole->tok[i];
            bool special = !strncmp(t, "<|", 2) && strstr(t, "|>");
            bool partial = strstr(t, "\xef\xbf\xbd") != NULL;

            ck_assert_str_eq(streamed->tok[i], t);
            ck_assert_msg(streamed->off[i] == whole->off[i], "run %d token %d: streamed %d, whole %d",
                          run, i, streamed->off[i], whole->off[i]);
            ck_assert_int_le(whole->off[i], (int)strlen(whole->text));
            ck_assert(i == 0 || whole->off[i] >= whole->off[i - 1]);
            if (run == 0) {
                specials += special;
                partials += partial;
                if (!special && !partial)
                    ck_assert_msg(!strncmp(whole->text + whole->off[i], t, strlen(t)),
                                  "token %d \"%s\" is not at %d of \"%s\"", i, t, whole->off[i], whole->text);
            }
        }
        if (run == 1)
            ck_assert_ptr_null(strstr(whole->text, stop));
    }
    ck_assert_int_ge(specials, 1);
    ck_assert_int_ge(partials, 1);
    free(whole);
    free(streamed);
    down();
}
END_TEST

/* What "token" must say for raw "bytes": the bytes as UTF-8, each byte that does not begin
 * a whole character (RFC 3629) replaced by U+FFFD. Written here from the RFC, apart from
 * the daemon's renderer. */
static void lossy_utf8(const unsigned char *b, size_t n, char *out)
{
    size_t o = 0;

    for (size_t i = 0; i < n;) {
        size_t len = b[i] < 0x80 ? 1 : b[i] >= 0xc2 && b[i] <= 0xdf ? 2 : b[i] >= 0xe0 && b[i] <= 0xef ? 3
                   : b[i] >= 0xf0 && b[i] <= 0xf4 ? 4 : 0;
        bool whole = len > 0 && i + len <= n;

        for (size_t k = 1; whole && k < len; k++)
            whole = (b[i + k] & 0xc0) == 0x80;
        if (whole && len == 3)   /* no overlong forms, no surrogates */
            whole = !(b[i] == 0xe0 && b[i + 1] < 0xa0) && !(b[i] == 0xed && b[i + 1] > 0x9f);
        if (whole && len == 4)
            whole = !(b[i] == 0xf0 && b[i + 1] < 0x90) && !(b[i] == 0xf4 && b[i + 1] > 0x8f);
        if (!whole) {
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
            continue;
        }
        memcpy(out + o, b + i, len);
        o += len;
        i += len;
    }
    out[o] = '\0';
}

/* One logprob entry: "bytes" are the token's raw bytes, "token" their text as JSON can
 * carry it. Returns whether the token is a part of a character (its bytes not UTF-8). */
static bool check_entry(const cJSON *e)
{
    const cJSON *tok = cJSON_GetObjectItemCaseSensitive(e, "token"), *b;
    const cJSON *bytes = cJSON_GetObjectItemCaseSensitive(e, "bytes");
    unsigned char raw[256];
    char want[3 * 256 + 1];
    size_t n = 0;
    bool partial;

    ck_assert(cJSON_IsString(tok) && cJSON_IsArray(bytes));
    ck_assert(cJSON_GetObjectItemCaseSensitive(e, "logprob")->valuedouble <= 0);
    cJSON_ArrayForEach(b, bytes) {
        ck_assert(n < sizeof raw && b->valueint >= 0 && b->valueint <= 255);
        raw[n++] = (unsigned char)b->valueint;
    }
    ck_assert_uint_gt(n, 0);
    lossy_utf8(raw, n, want);
    ck_assert_str_eq(tok->valuestring, want);
    partial = strlen(want) != n || memcmp(want, raw, n);
    return partial;
}

/* Seeded, so that the tokens are known to be whole (seed 1) and to hold single bytes of
 * characters (seed 2): a partial token's "bytes" are its raw byte(s), its "token" U+FFFD. */
START_TEST(chat_logprobs_have_openais_shape)
{
    static const struct { const char *seed; bool partial; } runs[] = { { "1", false }, { "2", true } };

    up(NULL);
    for (size_t r = 0; r < ARRAY_LEN(runs); r++) {
        char body[512];
        cJSON *j, *content;
        const cJSON *e;
        int partial = 0;

        snprintf(body, sizeof body, "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"max_tokens\":5,"
                 "\"ignore_eos\":true,\"logprobs\":true,\"top_logprobs\":3,\"seed\":%s}", runs[r].seed);
        j = ok_post("/v1/chat/completions", body);
        content = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(
            cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "choices"), 0), "logprobs"), "content");
        ck_assert_int_eq(cJSON_GetArraySize(content), 5);
        cJSON_ArrayForEach(e, content) {
            const cJSON *top = cJSON_GetObjectItemCaseSensitive(e, "top_logprobs"), *t;
            double prev = 0;

            partial += check_entry(e);
            ck_assert_int_eq(cJSON_GetArraySize(top), 3);
            cJSON_ArrayForEach(t, top) {
                double lp = cJSON_GetObjectItemCaseSensitive(t, "logprob")->valuedouble;

                check_entry(t);
                ck_assert(!cJSON_GetObjectItemCaseSensitive(t, "top_logprobs"));
                ck_assert(lp <= prev + 1e-6);            /* descending */
                prev = lp;
            }
        }
        /* The seeds do what they were picked for, so both kinds are checked every run. */
        ck_assert_msg((partial > 0) == runs[r].partial, "seed %s: %d partial tokens", runs[r].seed, partial);
        cJSON_Delete(j);
    }
    down();
}
END_TEST

START_TEST(echo_puts_the_prompt_first)
{
    cJSON *j;
    struct it_stream s;
    char *g;

    up(NULL);
    g = greedy("\"Echo me\"", 5);
    j = ok_post("/v1/completions", "{\"prompt\":\"Echo me\",\"max_tokens\":5,\"temperature\":0,\"ignore_eos\":true,\"echo\":true}");
    ck_assert(!strncmp(it_choice_text(j, 0), "Echo me", 7));
    ck_assert_str_eq(it_choice_text(j, 0) + 7, g);
    cJSON_Delete(j);
    ck_assert_int_eq(it_stream(&d, "/v1/completions", "{\"prompt\":\"Echo me\",\"max_tokens\":5,\"temperature\":0,"
                               "\"ignore_eos\":true,\"echo\":true,\"stream\":true}", &s), 0);
    ck_assert(!strncmp(s.text[0], "Echo me", 7));
    ck_assert_str_eq(s.text[0] + 7, g);
    it_stream_fini(&s);
    free(g);
    down();
}
END_TEST

START_TEST(stop_token_ids_and_max_tokens_end_with_their_reasons)
{
    cJSON *j;
    char body[8192];
    int n;

    up(NULL);
    /* Every id a stop id: the first token ends the completion with "stop". */
    n = snprintf(body, sizeof body, "{\"prompt\":\"x\",\"max_tokens\":10,\"stop_token_ids\":[");
    for (int i = 0; i < 512; i++)
        n += snprintf(body + n, sizeof body - (size_t)n, i ? ",%d" : "%d", i);
    snprintf(body + n, sizeof body - (size_t)n, "]}");
    j = ok_post("/v1/completions", body);
    ck_assert_str_eq(it_choice_finish(j, 0), "stop");
    ck_assert_int_le(it_usage(j, "completion_tokens"), 1);
    cJSON_Delete(j);
    j = ok_post("/v1/completions", "{\"prompt\":\"x\",\"max_tokens\":3,\"ignore_eos\":true}");
    ck_assert_str_eq(it_choice_finish(j, 0), "length");
    ck_assert_int_eq(it_usage(j, "completion_tokens"), 3);
    cJSON_Delete(j);
    down();
}
END_TEST

START_TEST(tokenize_and_detokenize_round_trip)
{
    cJSON *t, *dt;
    char *ids, body[4096];

    up(NULL);
    t = ok_post("/tokenize", "{\"prompt\":\"Round trip, ok?\",\"add_special_tokens\":false}");
    ck_assert_int_eq(cJSON_GetObjectItemCaseSensitive(t, "max_model_len")->valueint, 2048);
    ids = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(t, "tokens"));
    snprintf(body, sizeof body, "{\"tokens\":%s}", ids);
    dt = ok_post("/detokenize", body);
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(dt, "prompt")->valuestring, "Round trip, ok?");
    /* With special tokens: one more (BOS), as the tokenizer config says. */
    ck_assert_int_eq(tokenize_count("{\"prompt\":\"Round trip, ok?\"}"),
                     cJSON_GetObjectItemCaseSensitive(t, "count")->valueint + 1);
    free(ids);
    cJSON_Delete(t);
    cJSON_Delete(dt);
    down();
}
END_TEST

START_TEST(metrics_count_tokens_requests_and_latencies)
{
    cJSON *j;

    up(NULL);
    j = ok_post("/v1/completions", "{\"prompt\":\"count me\",\"max_tokens\":4,\"ignore_eos\":true}");
    cJSON_Delete(j);
    ck_assert(it_metric(&d, "osprey_generation_tokens_total") >= 4);
    ck_assert(it_metric(&d, "osprey_prompt_tokens_total") >= 2);
    ck_assert(it_metric(&d, "osprey_requests_finished_total{finish_reason=\"length\"}") == 1);
    ck_assert(it_metric(&d, "osprey_http_requests_total{status=\"200\"}") >= 2);   /* /health, then us */
    ck_assert(it_metric(&d, "osprey_e2e_request_latency_seconds_count") == 1);
    ck_assert(it_metric(&d, "osprey_time_to_first_token_seconds_count") == 1);
    ck_assert(it_metric(&d, "osprey_time_per_output_token_seconds_count") == 1);
    ck_assert(it_metric(&d, "osprey_engine_healthy") == 1);
    ck_assert(it_metric(&d, "osprey_requests_running") == 0);
    down();
}
END_TEST

Suite *serve_api_suite(void)
{
    Suite *s = suite_create("serve_api");
    TCase *tc = tcase_create("api");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, health_models_and_the_served_model);
    tcase_add_test(tc, completion_has_openais_shape_and_usage);
    tcase_add_test(tc, chat_completion_goes_through_the_chat_template);
    tcase_add_test(tc, streamed_greedy_text_equals_the_non_streamed_text);
    tcase_add_test(tc, daemon_output_equals_osprey_generate_offline);
    tcase_add_test(tc, chat_stream_opens_with_the_role_and_ends_with_usage);
    tcase_add_test(tc, token_id_prompts_answer_like_their_text);
    tcase_add_test(tc, prompt_lists_and_n_index_choices_like_openai);
    tcase_add_test(tc, a_stream_with_n_choices_delivers_each_to_the_end);
    tcase_add_test(tc, seeds_reproduce_and_choice_i_uses_seed_plus_i);
    tcase_add_test(tc, truncating_samplers_at_their_limit_equal_greedy);
    tcase_add_test(tc, stop_strings_cut_exactly_before_the_first_occurrence);
    tcase_add_test(tc, completion_logprobs_have_openais_shape);
    tcase_add_test(tc, completion_text_offsets_point_into_the_text_streamed_or_not);
    tcase_add_test(tc, chat_logprobs_have_openais_shape);
    tcase_add_test(tc, echo_puts_the_prompt_first);
    tcase_add_test(tc, stop_token_ids_and_max_tokens_end_with_their_reasons);
    tcase_add_test(tc, tokenize_and_detokenize_round_trip);
    tcase_add_test(tc, metrics_count_tokens_requests_and_latencies);
    suite_add_tcase(s, tc);
    return s;
}
