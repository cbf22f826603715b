/* test_grammar_engine.c — grammar-constrained decoding end to end on the CPU backend: the
 * sampler's allowed mask, then a random-weight tiny model sampling at temperature 1 under
 * random JSON Schemas made here, random regexes and choice lists. Every output must parse
 * (cJSON) and validate against its schema with the validator below — written from the JSON
 * Schema rules, independent of the grammar code — regex outputs must match with PCRE2 and
 * choice outputs be in the list; every request ends with "stop". */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <check.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <pcre2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "engine/grammar/grammar.h"
#include "engine/sampler.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/base/util.h"
#include "tests/unit/fixtures.h"
#include "tests/unit/schema_check.h"

/* ---- the sampler's mask ---- */

START_TEST(the_sampler_never_picks_a_token_the_mask_leaves_out)
{
    float logits[70], scratch[140];
    uint32_t allowed[3] = { 0 };
    struct sample_row row = { .temperature = 1.0f, .top_p = 1.0f, .repetition_penalty = 1.0f,
                              .seed = 3, .num_logprobs = -1, .allowed = allowed };
    struct sample_result res;

    for (int i = 0; i < 70; i++)
        logits[i] = (float)(i % 7);
    allowed[0] = 1u << 3;                      /* token 3 ... */
    allowed[2] = 1u << 1;                      /* ... and token 65 */
    for (uint32_t c = 0; c < 200; c++) {
        row.counter = c;
        ck_assert_int_eq(sampler_sample_row(logits, 70, &row, &res, scratch), 0);
        ck_assert_msg(res.token == 3 || res.token == 65, "token %d", res.token);
    }
    row.temperature = 0.0f;                    /* greedy: the best allowed, 3 (logit 3 > 2) */
    ck_assert_int_eq(sampler_sample_row(logits, 70, &row, &res, scratch), 0);
    ck_assert_int_eq(res.token, 3);
}
END_TEST

/* ---- the engine ---- */

static char model_dir[FIXTURE_PATH];
static struct tokenizer *tok;
static struct grammar_vocab *vocab;
static struct engine *eng;

static void setup(void)
{
    fixture_grammar_init(model_dir, &tok, &vocab);
    eng = fixture_engine_start(model_dir, tok, 16u << 20);
}

static void teardown(void)
{
    fixture_grammar_fini(model_dir, eng, tok, vocab);
}

struct req {
    struct fixture_out out;
    struct grammar *g;
    char *src;           /* the schema, regex or choice list (malloc'd) */
    enum grammar_kind kind;
    int max_tokens;      /* 0: 900 with a grammar, 40 without */
};

static void req_submit(struct req *q, int i)
{
    static const int32_t prompt[] = { 5, 17, 99, 200, 31 };
    struct gen_params p;
    char err[ERR_LEN] = "";
    uint64_t id;

    fixture_out_init(&q->out);
    q->g = NULL;
    if ((int)q->kind >= 0)
        ck_assert_msg(grammar_compile(&q->g, q->kind, q->src, strlen(q->src), vocab, err) == 0, "%s: %s",
                      q->src, err);
    gen_params_init(&p);
    p.max_tokens = q->max_tokens ? q->max_tokens : q->g ? 900 : 40;
    p.temperature = 1.0f;
    p.has_seed = true;
    p.seed = 77 + (uint64_t)i;
    p.grammar = q->g;
    struct engine_request_desc d = { .prompt = prompt, .num_prompt = 5, .params = &p, .cb = fixture_out_cb, .user = &q->out };
    ck_assert_msg(engine_submit(eng, &d, &id, err) == 0, "submit: %s", err);
    grammar_unref(q->g);                 /* the engine holds its own reference */
}

static void req_wait(struct req *q)
{
    fixture_out_wait(&q->out);
}

static bool valid_text(const char *schema, const char *value)
{
    cJSON *s = cJSON_Parse(schema), *v = cJSON_Parse(value);
    bool ok;

    ck_assert(s && v);
    ok = schema_check_valid(s, v);
    cJSON_Delete(s);
    cJSON_Delete(v);
    return ok;
}

/* The validator the property test trusts, on cases whose answer the JSON Schema rules give. */
START_TEST(the_test_validator_takes_and_refuses_what_json_schema_says)
{
    const char *obj = "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\",\"minimum\":1,"
                      "\"maximum\":5},\"b\":{\"type\":\"string\",\"maxLength\":2}},\"required\":[\"a\"],"
                      "\"additionalProperties\":false}";

    ck_assert(valid_text(obj, "{\"a\":3,\"b\":\"\u00e9t\"}"));
    ck_assert(!valid_text(obj, "{\"b\":\"x\"}"));
    ck_assert(!valid_text(obj, "{\"a\":3,\"c\":1}"));
    ck_assert(!valid_text(obj, "{\"a\":6}"));
    ck_assert(!valid_text(obj, "{\"a\":2.5}"));
    ck_assert(!valid_text(obj, "{\"a\":1,\"b\":\"xyz\"}"));
    ck_assert(!valid_text("{\"type\":\"array\",\"prefixItems\":[{\"type\":\"null\"},{\"type\":\"boolean\"}]}", "[null, 1]"));
    ck_assert(!valid_text("{\"type\":\"string\",\"pattern\":\"^x[0-9a-f]*y$\"}", "\"xgy\""));
    ck_assert(!valid_text("{\"type\":\"string\",\"format\":\"uuid\"}", "\"123\""));
    ck_assert(!valid_text("{\"enum\":[\"red\",1]}", "\"blue\""));
    ck_assert(!valid_text("{\"anyOf\":[{\"type\":\"boolean\"},{\"type\":\"null\"}]}", "0"));
    ck_assert(!valid_text("{\"type\":\"number\",\"maximum\":-1}", "-0.5"));
}
END_TEST

START_TEST(random_schemas_at_temperature_one_always_give_valid_json)
{
    enum { N = 300, BATCH = 32 };
    static struct req q[N];
    int stops = 0;

    schema_check_seed(2026);
    for (int i = 0; i < N; i++) {
        cJSON *s = schema_check_gen(schema_check_rnd(3) == 0 ? 0 : 1);   /* mostly top-level objects */
        if (i % 2 == 0 && !cJSON_GetObjectItem(s, "properties")) {
            cJSON *o = cJSON_CreateObject(), *p = cJSON_CreateObject(), *r = cJSON_CreateArray();
            cJSON_AddStringToObject(o, "type", "object");
            cJSON_AddItemToObject(p, "v", s);
            cJSON_AddItemToObject(o, "properties", p);
            cJSON_AddItemToArray(r, cJSON_CreateString("v"));
            cJSON_AddItemToObject(o, "required", r);
            s = o;
        }
        q[i].kind = GRAMMAR_JSON_SCHEMA;
        q[i].src = cJSON_PrintUnformatted(s);
        cJSON_Delete(s);
    }
    for (int b = 0; b < N; b += BATCH) {
        for (int i = b; i < N && i < b + BATCH; i++)
            req_submit(&q[i], i);
        for (int i = b; i < N && i < b + BATCH; i++) {
            cJSON *schema, *v;
            req_wait(&q[i]);
            ck_assert_msg(q[i].out.why == FINISH_STOP, "schema %s: finish %d (%s) after '%s'",
                          q[i].src, q[i].out.why, q[i].out.error, q[i].out.text);
            v = cJSON_Parse(q[i].out.text);
            ck_assert_msg(v, "schema %s: output is not JSON: '%s'", q[i].src, q[i].out.text);
            schema = cJSON_Parse(q[i].src);
            ck_assert_msg(schema_check_valid(schema, v), "schema %s: output does not validate: '%s'", q[i].src, q[i].out.text);
            cJSON_Delete(schema);
            cJSON_Delete(v);
            free(q[i].src);
            stops++;
        }
    }
    ck_assert_int_eq(stops, N);
}
END_TEST

START_TEST(regex_outputs_match_with_pcre2_and_choices_are_in_the_list)
{
    static const char *const RX[] = {
        "[a-z]{2,6}@[a-z]{2,5}\\.(com|org)", "\\d{1,4}(\\.\\d{1,2})?", "(ab|cd)+x?", "[A-F0-9]{4}-[^\\n]{0,5}!",
        "(yes|no|mostly (yes|no))", "\\w{1,8}\\s\\w{1,8}",
    };
    static const char *const CH = "[\"alpha\",\"beta\",\"gamma delta\",\"\xc3\xa9\"]";
    enum { N = 60 };
    static struct req q[N];

    for (int i = 0; i < N; i++) {
        bool choice = i % 5 == 4;
        q[i].kind = choice ? GRAMMAR_CHOICE : GRAMMAR_REGEX;
        q[i].src = strdup(choice ? CH : RX[i % 6]);
        req_submit(&q[i], 1000 + i);
    }
    for (int i = 0; i < N; i++) {
        req_wait(&q[i]);
        ck_assert_msg(q[i].out.why == FINISH_STOP, "%s: finish %d after '%s'", q[i].src, q[i].out.why, q[i].out.text);
        if (q[i].kind == GRAMMAR_REGEX) {
            char anchored[128];
            snprintf(anchored, sizeof anchored, "^(?:%s)$", q[i].src);
            ck_assert_msg(schema_check_re_match(anchored, q[i].out.text, q[i].out.len), "%s: '%s'", q[i].src, q[i].out.text);
        } else {
            ck_assert_msg(!strcmp(q[i].out.text, "alpha") || !strcmp(q[i].out.text, "beta") ||
                          !strcmp(q[i].out.text, "gamma delta") || !strcmp(q[i].out.text, "\xc3\xa9"),
                          "choice: '%s'", q[i].out.text);
        }
        free(q[i].src);
    }
}
END_TEST

/* Seeded unconstrained requests: alone, then each among constrained ones (the grammar rows
 * of a step must not change another row's draw); the constrained ones end well. */
/* allowed_token_ids and a grammar on one request: the row's mask is their intersection
 * (the engine builds it for either backend), so a regex over [a-e] with only the tokens
 * spelled in 'a' and 'b' allowed writes only a and b. */
START_TEST(allowed_token_ids_and_a_grammar_intersect)
{
    static const int32_t prompt[] = { 5, 17, 99, 200, 31 };
    int32_t ids[512];
    int n = 0;

    for (int32_t id = 0; id < tokenizer_vocab_size(tok) && n < (int)ARRAY_LEN(ids); id++) {
        char *b = NULL;
        size_t len = 0;

        if (!tokenizer_is_special(tok, id) && tokenizer_token_bytes(tok, id, &b, &len) == 0 && len &&
            strspn(b, "ab") == len)
            ids[n++] = id;
        free(b);
    }
    ck_assert_int_gt(n, 1);
    for (int k = 0; k < 8; k++) {
        struct req q = { .kind = GRAMMAR_REGEX, .src = "[a-e]{12}" };
        struct gen_params p;
        char err[ERR_LEN] = "";
        uint64_t id;

        fixture_out_init(&q.out);
        ck_assert_msg(grammar_compile(&q.g, q.kind, q.src, strlen(q.src), vocab, err) == 0, "%s", err);
        gen_params_init(&p);
        p.max_tokens = 40;
        p.temperature = 1.0f;
        p.has_seed = true;
        p.seed = 900 + (uint64_t)k;
        p.grammar = q.g;
        p.allowed_token_ids = ids;
        p.num_allowed_token_ids = n;
        struct engine_request_desc d = { .prompt = prompt, .num_prompt = 5, .params = &p, .cb = fixture_out_cb, .user = &q.out };
        ck_assert_msg(engine_submit(eng, &d, &id, err) == 0, "submit: %s", err);
        grammar_unref(q.g);
        req_wait(&q);
        ck_assert_msg(q.out.why == FINISH_STOP, "finish %d (%s) after '%s'", q.out.why, q.out.error, q.out.text);
        ck_assert_msg(q.out.len == 12 && strspn(q.out.text, "ab") == 12, "'%s'", q.out.text);
    }
}
END_TEST

START_TEST(constrained_rows_do_not_disturb_unconstrained_ones_in_the_same_step)
{
    enum { P = 4, G = 12 };
    static struct req plain_alone[P], plain_mixed[P], q[G];

    for (int i = 0; i < P; i++) {
        plain_alone[i].kind = plain_mixed[i].kind = (enum grammar_kind)-1;
        req_submit(&plain_alone[i], 500 + i);
        req_wait(&plain_alone[i]);
    }
    for (int i = 0; i < G; i++) {
        q[i].kind = GRAMMAR_JSON_OBJECT;
        q[i].src = strdup("");
        req_submit(&q[i], 600 + i);
    }
    for (int i = 0; i < P; i++)
        req_submit(&plain_mixed[i], 500 + i);
    for (int i = 0; i < P; i++) {
        req_wait(&plain_mixed[i]);
        ck_assert_str_eq(plain_mixed[i].out.text, plain_alone[i].out.text);
        ck_assert_int_eq(plain_mixed[i].out.why, plain_alone[i].out.why);
    }
    for (int i = 0; i < G; i++) {
        req_wait(&q[i]);
        if (q[i].out.why == FINISH_STOP) {
            cJSON *v = cJSON_Parse(q[i].out.text);
            ck_assert_msg(cJSON_IsObject(v), "not an object: '%s'", q[i].out.text);
            cJSON_Delete(v);
        } else {
            ck_assert_int_eq(q[i].out.why, FINISH_LENGTH);   /* any object may run long */
            ck_assert_int_eq(q[i].out.text[0], '{');
        }
        free(q[i].src);
    }
}
END_TEST

/* A KV cache too small for the batch: requests are preempted and recomputed; their
 * matchers keep their state, so outputs still validate. */
START_TEST(preempted_constrained_requests_still_give_valid_json)
{
    enum { N = 32 };
    static struct req q[N];
    struct engine_stats st;

    engine_destroy(eng);
    /* 24 blocks: one request's max_tokens fits, 32 at once do not */
    eng = fixture_engine_start(model_dir, tok, 192u << 10);
    for (int i = 0; i < N; i++) {
        /* at most ~250 bytes however the whitespace falls: it ends within max_tokens */
        q[i].kind = GRAMMAR_JSON_SCHEMA;
        q[i].src = strdup("{\"type\":\"object\",\"properties\":{\"s\":{\"type\":\"string\",\"maxLength\":5},"
                          "\"n\":{\"type\":\"integer\",\"minimum\":-20,\"maximum\":999},\"e\":{\"enum\":[\"x\",true]}},"
                          "\"required\":[\"s\",\"n\"],\"additionalProperties\":false}");
        q[i].max_tokens = 300;
        req_submit(&q[i], 700 + i);
    }
    for (int i = 0; i < N; i++) {
        cJSON *schema, *v;
        req_wait(&q[i]);
        ck_assert_msg(q[i].out.why == FINISH_STOP, "schema %s: finish %d (%s)", q[i].src, q[i].out.why, q[i].out.error);
        v = cJSON_Parse(q[i].out.text);
        schema = cJSON_Parse(q[i].src);
        ck_assert_msg(v && schema_check_valid(schema, v), "schema %s: '%s'", q[i].src, q[i].out.text);
        cJSON_Delete(schema);
        cJSON_Delete(v);
        free(q[i].src);
    }
    engine_get_stats(eng, &st);
    ck_assert_msg(st.num_preemptions > 0, "the small cache should have forced preemption");
}
END_TEST

Suite *grammar_engine_suite(void)
{
    Suite *s = suite_create("grammar_engine");
    TCase *tc = tcase_create("sampler");
    TCase *te = tcase_create("engine");

    tcase_add_test(tc, the_sampler_never_picks_a_token_the_mask_leaves_out);
    tcase_add_test(tc, the_test_validator_takes_and_refuses_what_json_schema_says);
    suite_add_tcase(s, tc);
    tcase_set_timeout(te, 120);
    tcase_add_checked_fixture(te, setup, teardown);
    tcase_add_test(te, random_schemas_at_temperature_one_always_give_valid_json);
    tcase_add_test(te, regex_outputs_match_with_pcre2_and_choices_are_in_the_list);
    tcase_add_test(te, allowed_token_ids_and_a_grammar_intersect);
    tcase_add_test(te, constrained_rows_do_not_disturb_unconstrained_ones_in_the_same_step);
    tcase_add_test(te, preempted_constrained_requests_still_give_valid_json);
    suite_add_tcase(s, te);
    return s;
}
