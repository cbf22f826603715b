/* test_openai_tools_grammar.c — tool_choice "required", a named function and strict tools
 * held to calls by a grammar (server/tool_grammar.c): the request side, the grammar of each
 * family on hand-written outputs, and a property test — a random-weight tiny model sampling
 * at temperature 1 under random tool schemas (tests/unit/schema_check.c) always writes
 * output that the family's parser reads as calls of the offered tools whose arguments
 * validate against their schemas (the validator shares nothing with the grammar code). */
#include <check.h>
#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/util.h"
#include "engine/engine.h"
#include "engine/grammar/grammar.h"
#include "engine/tokenizer/tokenizer.h"
#include "server/openai_parse.h"
#include "server/tool_grammar.h"
#include "server/tool_parser.h"
#include "tests/unit/fixtures.h"
#include "tests/unit/schema_check.h"

/* ---- the request side ---- */

static struct oai_config config = {
    .served_model = "tiny", .max_model_len = 4096, .vocab_size = 512, .max_n = 4,
    .max_stop_strings = 4, .max_stop_length = 16, .max_logprobs = 20,
    .default_temperature = -1, .default_top_p = -1, .tool_parser = TOOL_PARSER_HERMES,
};
static struct oai_request req;
static struct oai_error err;

static int chat(const char *body)
{
    openai_request_fini(&req);
    openai_request_init(&req);
    memset(&err, 0, sizeof err);
    return openai_parse_chat(&req, body, strlen(body), &config, &err);
}

static void refused(const char *body, const char *param, const char *words)
{
    ck_assert_msg(chat(body) < 0, "accepted: %s", body);
    ck_assert_int_eq(err.status, 400);
    ck_assert_str_eq(err.param, param);
    ck_assert_msg(strstr(err.message, words), "%s: '%s' lacks '%s'", body, err.message, words);
}

#define USER "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"
#define WEATHER "{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":{\"type\":\"object\"," \
                "\"properties\":{\"city\":{\"type\":\"string\",\"maxLength\":8}},\"required\":[\"city\"]," \
                "\"additionalProperties\":false}}}"
#define TIME "{\"type\":\"function\",\"function\":{\"name\":\"get_time\",\"strict\":true}}"

START_TEST(required_and_named_choices_are_held_by_a_grammar)
{
    ck_assert_msg(chat("{" USER ",\"tools\":[" WEATHER "," TIME "],\"tool_choice\":\"required\"}") == 0, "%s",
                  err.message);
    ck_assert_int_eq(req.tool_choice, OAI_TOOLS_REQUIRED);
    ck_assert(req.has_grammar);
    ck_assert_int_eq(req.grammar_kind, GRAMMAR_GBNF);
    ck_assert_str_eq(req.grammar_param, "tools");
    ck_assert(openai_tools_active(&req));
    ck_assert_ptr_nonnull(strstr(req.grammar_src, "\\\"get_weather\\\""));
    ck_assert_ptr_nonnull(strstr(req.grammar_src, "\\\"get_time\\\""));

    ck_assert_msg(chat("{" USER ",\"tools\":[" WEATHER "," TIME "],\"tool_choice\":{\"type\":\"function\","
                       "\"function\":{\"name\":\"get_time\"}}}") == 0, "%s", err.message);
    ck_assert_int_eq(req.tool_choice, OAI_TOOLS_NAMED);
    ck_assert_str_eq(req.tool_name, "get_time");
    ck_assert(req.has_grammar);
    ck_assert_ptr_null(strstr(req.grammar_src, "get_weather"));   /* only the named one */

    /* A strict tool under "auto": text or calls, held by a grammar too; not under "none". */
    ck_assert_msg(chat("{" USER ",\"tools\":[" WEATHER "," TIME "]}") == 0, "%s", err.message);
    ck_assert_int_eq(req.tool_choice, OAI_TOOLS_AUTO);
    ck_assert(req.has_grammar && req.grammar_kind == GRAMMAR_GBNF);
    ck_assert_ptr_nonnull(strstr(req.grammar_src, "root ::= content calls?"));
    ck_assert_int_eq(chat("{" USER ",\"tools\":[" WEATHER "]}"), 0);     /* none strict: parsed only */
    ck_assert(!req.has_grammar);
    ck_assert_int_eq(chat("{" USER ",\"tools\":[" TIME "],\"tool_choice\":\"none\"}"), 0);
    ck_assert(!req.has_grammar);
    refused("{" USER ",\"tools\":[" TIME "],\"response_format\":{\"type\":\"json_object\"}}", "tool_choice",
            "a strict tool already constrains");

    /* one constraint per request */
    refused("{" USER ",\"tools\":[" WEATHER "],\"tool_choice\":\"required\",\"response_format\":{\"type\":\"json_object\"}}",
            "tool_choice", "response_format");
    /* a schema the grammar cannot take names its tool */
    refused("{" USER ",\"tools\":[" WEATHER ",{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":"
            "{\"type\":\"object\",\"patternProperties\":{}}}}],\"tool_choice\":\"required\"}",
            "tools", "tools[1].function.parameters: json_schema: keyword 'patternProperties'");
    config.tool_parser = TOOL_PARSER_NONE;
    refused("{" USER ",\"tools\":[" WEATHER "],\"tool_choice\":\"required\"}", "tool_choice", "--tool-call-parser");
    config.tool_parser = TOOL_PARSER_HERMES;
    openai_request_fini(&req);
}
END_TEST

/* ---- each family's grammar on hand-written outputs ---- */

static struct grammar_vocab *byte_vocab(void)
{
    static char bytes[256];
    const char *toks[256];
    size_t lens[256];
    struct grammar_vocab *v = NULL;
    char e[ERR_LEN] = "";

    for (int i = 0; i < 256; i++) {
        bytes[i] = (char)i;
        toks[i] = &bytes[i];
        lens[i] = 1;
    }
    ck_assert_msg(grammar_vocab_create_from(&v, toks, lens, 256, e) == 0, "%s", e);
    return v;
}

/* Whether g takes all of text as a complete output. */
static bool takes(struct grammar *g, const char *text)
{
    struct grammar_matcher *m = NULL;
    bool ok;

    ck_assert_int_eq(grammar_matcher_create(&m, g), 0);
    ok = grammar_matcher_accept_bytes(m, text, strlen(text)) == 0 && grammar_matcher_is_accepting(m);
    grammar_matcher_destroy(m);
    return ok;
}

static struct grammar *tools_grammar(const struct grammar_vocab *v, enum tool_parser_kind k, const char *tools,
                                     const char *only, bool parallel, bool text)
{
    cJSON *t = cJSON_Parse(tools);
    char e[ERR_LEN] = "", *gbnf = NULL;
    struct grammar *g = NULL;

    ck_assert_ptr_nonnull(t);
    ck_assert_msg(tool_grammar_build(k, t, only, parallel, text, &gbnf, e) == 0, "%s", e);
    ck_assert_msg(grammar_compile(&g, GRAMMAR_GBNF, gbnf, strlen(gbnf), v, e) == 0, "%s\n%s", e, gbnf);
    free(gbnf);
    cJSON_Delete(t);
    return g;
}

START_TEST(each_familys_grammar_takes_its_calls_and_nothing_else)
{
    static const char TOOLS[] = "[" WEATHER "," TIME "]";
    struct grammar_vocab *v = byte_vocab();
    struct grammar *g;

    g = tools_grammar(v, TOOL_PARSER_HERMES, TOOLS, NULL, true, false);
    ck_assert(takes(g, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>"));
    ck_assert(takes(g, "<tool_call>\n{\"name\":\"get_time\",\"arguments\":{}}\n</tool_call>\n"
                       "<tool_call>\n{\"name\":\"get_weather\",\"arguments\":{\"city\":\"\"}}\n</tool_call>"));
    ck_assert(!takes(g, "Sure! <tool_call>\n{\"name\":\"get_time\",\"arguments\":{}}\n</tool_call>"));
    ck_assert(!takes(g, "<tool_call>\n{\"name\":\"get_date\",\"arguments\":{}}\n</tool_call>"));
    ck_assert(!takes(g, "<tool_call>\n{\"name\":\"get_weather\",\"arguments\":{}}\n</tool_call>"));   /* city required */
    ck_assert(!takes(g, "<tool_call>\n{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Reykjavik\"}}\n</tool_call>"));
    ck_assert(!takes(g, "<tool_call>\n{\"name\":\"get_time\",\"arguments\":{\"x\":1}}\n</tool_call>"));
    ck_assert(!takes(g, ""));
    grammar_unref(g);

    g = tools_grammar(v, TOOL_PARSER_HERMES, TOOLS, NULL, false, false);   /* parallel_tool_calls false */
    ck_assert(!takes(g, "<tool_call>\n{\"name\":\"get_time\",\"arguments\":{}}\n</tool_call>\n"
                        "<tool_call>\n{\"name\":\"get_time\",\"arguments\":{}}\n</tool_call>"));
    grammar_unref(g);

    g = tools_grammar(v, TOOL_PARSER_LLAMA3_JSON, TOOLS, "get_weather", true, false);
    ck_assert(takes(g, "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Lima\"}}"));
    ck_assert(!takes(g, "{\"name\": \"get_time\", \"parameters\": {}}"));             /* not the named one */
    ck_assert(!takes(g, "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Lima\"}}"));
    grammar_unref(g);

    g = tools_grammar(v, TOOL_PARSER_MISTRAL, TOOLS, NULL, true, false);
    ck_assert(takes(g, "[TOOL_CALLS][{\"name\": \"get_time\", \"arguments\": {}}, "
                       "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}]"));
    ck_assert(!takes(g, "[{\"name\": \"get_time\", \"arguments\": {}}]"));
    grammar_unref(g);

    /* tool_choice auto with strict tools: text that cannot start a call, then calls or not */
    g = tools_grammar(v, TOOL_PARSER_HERMES, TOOLS, NULL, true, true);
    ck_assert(takes(g, ""));
    ck_assert(takes(g, "Sunny, I think. <b>x</b> a<t<to<tool_cal>l <<tool_call"));
    ck_assert(takes(g, "Let me look. <tool<tool_call>\n{\"name\":\"get_time\",\"arguments\":{}}\n</tool_call>"));
    ck_assert(!takes(g, "See <tool_call> here"));                                    /* the marker as text */
    ck_assert(!takes(g, "Sure <tool_call>\n{\"name\":\"get_weather\",\"arguments\":{}}\n</tool_call>"));
    ck_assert(!takes(g, "<tool_call>\n{\"name\":\"get_time\",\"arguments\":{}}\n</tool_call> and more"));
    grammar_unref(g);
    g = tools_grammar(v, TOOL_PARSER_MISTRAL, TOOLS, NULL, true, true);
    ck_assert(takes(g, "A [TOOL] or [TOOL_CALL] [[TOOL_CALLS"));
    ck_assert(takes(g, "Ok.[TOOL_CALLS][{\"name\": \"get_time\", \"arguments\": {}}]"));
    ck_assert(!takes(g, "A [TOOL_CALLS] b"));
    grammar_unref(g);
    g = tools_grammar(v, TOOL_PARSER_LLAMA3_JSON, TOOLS, NULL, false, true);
    ck_assert(takes(g, "It is {probably} sunny."));
    ck_assert(takes(g, "{\"name\": \"get_time\", \"parameters\": {}}"));
    ck_assert(!takes(g, "{\"name\": \"get_time\", \"parameters\": {\"x\": 1}}"));
    ck_assert(!takes(g, " {\"name\": \"get_time\"}"));   /* blanks, then what the parser reads as a call */
    ck_assert(!takes(g, "<|python_tag|>{}"));
    grammar_unref(g);

    /* $refs inside a tool's parameters point into its own $defs once composed */
    g = tools_grammar(v, TOOL_PARSER_HERMES,
                      "[" TIME ",{\"type\":\"function\",\"function\":{\"name\":\"tree\",\"parameters\":{\"$ref\":\"#/$defs/node\","
                      "\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":{\"v\":{\"type\":\"integer\"},\"kids\":"
                      "{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/node\"},\"maxItems\":2}},\"required\":[\"v\"],"
                      "\"additionalProperties\":false}}}}}]", NULL, false, false);
    ck_assert(takes(g, "<tool_call>\n{\"name\":\"tree\",\"arguments\":{\"v\":1,\"kids\":[{\"v\":2},{\"v\":3,\"kids\":[]}]}}\n</tool_call>"));
    ck_assert(!takes(g, "<tool_call>\n{\"name\":\"tree\",\"arguments\":{\"v\":1,\"kids\":[{\"w\":2}]}}\n</tool_call>"));
    grammar_unref(g);
    grammar_vocab_destroy(v);
}
END_TEST

/* ---- text or calls (auto with strict tools): random walks through the grammar ---- */

static const cJSON *tool_schema_of(const cJSON *tools, const char *name)
{
    const cJSON *t;

    cJSON_ArrayForEach(t, tools) {
        const cJSON *fn = cJSON_GetObjectItem(t, "function");
        if (!strcmp(cJSON_GetObjectItem(fn, "name")->valuestring, name))
            return fn;
    }
    return NULL;
}

/* A vocabulary of every printable byte and newline, and fragments of the markers and calls,
 * so that random walks often come near a marker. */
static const char *const FRAGMENTS[] = {
    "<", "<t", "<to", "tool", "_call", "_cal", ">", "<tool_call>", "</tool_call>", "<tool_call>\n",
    "[TOOL", "_CALLS", "]", "[TOOL_CALLS]", "[TOOL_CALLS][", "{\"name\": \"", "get_time", "get_weather",
    "\", \"arguments\": {", "\", \"parameters\": {", "\"}", "}}", "\"city\": \"", "Oslo", "\"zone\": \"UTC\"",
    "\n</tool_call>", "<|python_tag|>", " {",
};

START_TEST(text_or_calls_is_never_read_as_a_bad_call)
{
    enum { NB = 96, NF = sizeof FRAGMENTS / sizeof *FRAGMENTS, WALKS = 400 };
    static const enum tool_parser_kind K[] = { TOOL_PARSER_HERMES, TOOL_PARSER_MISTRAL, TOOL_PARSER_LLAMA3_JSON };
    static const char *const MARK[] = { "<tool_call>", "[TOOL_CALLS]", NULL };
    static const char TOOLS[] = "[" WEATHER ",{\"type\":\"function\",\"function\":{\"name\":\"get_time\","
                                "\"strict\":true,\"parameters\":{\"type\":\"object\",\"properties\":{\"zone\":"
                                "{\"enum\":[\"UTC\",\"CET\"]}},\"required\":[\"zone\"],\"additionalProperties\":false}}}]";
    static char bytes[NB];
    const char *toks[NB + NF];
    size_t lens[NB + NF];
    struct grammar_vocab *v = NULL;
    cJSON *tools = cJSON_Parse(TOOLS);
    char e[ERR_LEN] = "";
    int with_calls = 0, with_text = 0;

    for (int i = 0; i < NB; i++) {
        bytes[i] = i < NB - 1 ? (char)(0x20 + i) : '\n';
        toks[i] = &bytes[i];
        lens[i] = 1;
    }
    for (int i = 0; i < NF; i++) {
        toks[NB + i] = FRAGMENTS[i];
        lens[NB + i] = strlen(FRAGMENTS[i]);
    }
    ck_assert_msg(grammar_vocab_create_from(&v, toks, lens, NB + NF, e) == 0, "%s", e);
    schema_check_seed(77);
    for (int w = 0; w < WALKS; w++) {
        enum tool_parser_kind k = K[w % 3];
        struct grammar *g = tools_grammar(v, k, TOOLS, NULL, w % 2 == 0, true);
        struct grammar_matcher *m = NULL;
        uint32_t mask[(NB + NF + 31) / 32];
        char out[2048];
        size_t len = 0;
        struct tool_parse tp;

        ck_assert_int_eq(grammar_matcher_create(&m, g), 0);
        for (int step = 0; step < 300 && !grammar_matcher_is_done(m); step++) {
            int allowed[NB + NF], na = 0, nf = 0, pick;

            if (grammar_matcher_is_accepting(m) && schema_check_rnd(12) == 0)
                break;
            ck_assert_int_eq(grammar_matcher_fill_mask(m, mask), 0);
            for (int t = 0; t < NB + NF; t++)
                if (mask[t >> 5] >> (t & 31) & 1) {
                    allowed[na++] = t;
                    nf += t >= NB;
                }
            if (!na)
                break;
            /* half the time a fragment, when any is allowed: walks that come near markers */
            if (nf && schema_check_rnd(2)) {
                int f = schema_check_rnd(nf);
                for (pick = 0; allowed[pick] < NB || f--; pick++)
                    ;
            } else {
                pick = schema_check_rnd(na);
            }
            if (len + lens[allowed[pick]] >= sizeof out)
                break;
            ck_assert_int_eq(grammar_matcher_accept_token(m, allowed[pick]), 0);
            memcpy(out + len, toks[allowed[pick]], lens[allowed[pick]]);
            len += lens[allowed[pick]];
        }
        out[len] = '\0';
        if (grammar_matcher_is_accepting(m)) {   /* a whole output: what the parser makes of it */
            ck_assert_int_eq(tool_parser_parse(k, out, len, 0, &tp), 0);
            if (MARK[w % 3])
                ck_assert_msg(tp.num_calls > 0 || !strstr(out, MARK[w % 3]), "%s: a marker read as text: '%s'",
                              tool_parser_name(k), out);
            else
                ck_assert_msg(tp.num_calls > 0 || out[0] != '{', "llama3: '%s'", out);
            for (int i = 0; i < tp.num_calls; i++) {
                const cJSON *fn = tool_schema_of(tools, tp.calls[i].name);
                cJSON *args = cJSON_Parse(tp.calls[i].arguments);

                ck_assert_msg(fn && args && schema_check_valid(cJSON_GetObjectItem(fn, "parameters"), args),
                              "%s: call %s(%s) in '%s'", tool_parser_name(k), tp.calls[i].name,
                              tp.calls[i].arguments, out);
                cJSON_Delete(args);
            }
            with_calls += tp.num_calls > 0;
            with_text += tp.num_calls == 0 && len > 0;
            tool_parse_fini(&tp);
        }
        grammar_matcher_destroy(m);
        grammar_unref(g);
    }
    /* the walks reached both sides: calls read back, and text */
    ck_assert_msg(with_calls >= WALKS / 20 && with_text >= WALKS / 20, "%d with calls, %d text", with_calls,
                  with_text);
    cJSON_Delete(tools);
    grammar_vocab_destroy(v);
}
END_TEST

/* ---- the property test: a random model under random tools ---- */

static char model_dir[FIXTURE_PATH];
static struct tokenizer *tok;
static struct grammar_vocab *vocab;
static struct engine *eng;

static void engine_setup(void)
{
    fixture_grammar_init(model_dir, &tok, &vocab);
    eng = fixture_engine_start(model_dir, tok, 16u << 20);
}

static void engine_teardown(void)
{
    fixture_grammar_fini(model_dir, eng, tok, vocab);
}

struct case_ {
    cJSON *tools;            /* the request's tools array */
    const char *only;        /* a named choice, or NULL */
    bool parallel;           /* several calls allowed (parallel_tool_calls true, required) */
    bool text;               /* tool_choice auto with strict tools: text or calls */
    enum tool_parser_kind k;
    struct fixture_out out;
};

/* 1 to 3 tools named t0, t1, …, each with a random object schema (some without
 * parameters at all). */
static cJSON *random_tools(void)
{
    cJSON *tools = cJSON_CreateArray();
    int n = 1 + schema_check_rnd(3);

    for (int i = 0; i < n; i++) {
        cJSON *t = cJSON_CreateObject(), *fn = cJSON_AddObjectToObject(t, "function"), *s;
        char name[16];

        snprintf(name, sizeof name, "t%d", i);
        cJSON_AddStringToObject(t, "type", "function");
        cJSON_AddStringToObject(fn, "name", name);
        if (schema_check_rnd(6)) {
            s = schema_check_gen(1);
            if (!cJSON_GetObjectItem(s, "properties")) {   /* parameters are an object */
                cJSON *o = cJSON_CreateObject(), *p = cJSON_CreateObject(), *r = cJSON_CreateArray();
                cJSON_AddStringToObject(o, "type", "object");
                cJSON_AddItemToObject(p, "v", s);
                cJSON_AddItemToObject(o, "properties", p);
                cJSON_AddItemToArray(r, cJSON_CreateString("v"));
                cJSON_AddItemToObject(o, "required", r);
                cJSON_AddBoolToObject(o, "additionalProperties", false);
                s = o;
            }
            cJSON_AddItemToObject(fn, "parameters", s);
        }
        cJSON_AddItemToArray(tools, t);
    }
    return tools;
}

static void case_submit(struct case_ *c, int i)
{
    static const int32_t prompt[] = { 5, 17, 99, 200, 31 };
    struct gen_params p;
    char e[ERR_LEN] = "", *gbnf = NULL;
    struct grammar *g = NULL;
    uint64_t id;

    fixture_out_init(&c->out);
    ck_assert_msg(tool_grammar_build(c->k, c->tools, c->only, c->parallel, c->text, &gbnf, e) == 0, "%s", e);
    ck_assert_msg(grammar_compile(&g, GRAMMAR_GBNF, gbnf, strlen(gbnf), vocab, e) == 0, "%s\n%s", e, gbnf);
    free(gbnf);
    gen_params_init(&p);
    p.max_tokens = 900;
    p.temperature = 1.0f;
    p.has_seed = true;
    p.seed = 300 + (uint64_t)i;
    p.grammar = g;
    struct engine_request_desc d = { .prompt = prompt, .num_prompt = 5, .params = &p, .cb = fixture_out_cb, .user = &c->out };
    ck_assert_msg(engine_submit(eng, &d, &id, e) == 0, "submit: %s", e);
    grammar_unref(g);
}

static const cJSON *tool_schema(const cJSON *tools, const char *name)
{
    const cJSON *t;

    cJSON_ArrayForEach(t, tools) {
        const cJSON *fn = cJSON_GetObjectItem(t, "function");
        if (!strcmp(cJSON_GetObjectItem(fn, "name")->valuestring, name))
            return fn;
    }
    return NULL;
}

/* Checks c's output; returns whether it ended with "stop" (a parallel case may instead run
 * into max_tokens: a random model need not choose EOS over another call). */
static bool case_check(struct case_ *c)
{
    struct tool_parse tp;
    char *tools_text;
    bool stop;

    fixture_out_wait(&c->out);
    tools_text = cJSON_PrintUnformatted(c->tools);
    stop = c->out.why == FINISH_STOP;
    ck_assert_msg(stop || (c->parallel && c->out.why == FINISH_LENGTH), "%s: finish %d after '%s'", tools_text,
                  c->out.why, c->out.text);
    ck_assert_int_eq(tool_parser_parse(c->k, c->out.text, c->out.len, 0, &tp), 0);
    ck_assert_msg(!stop || (tp.num_calls >= 1 && (c->parallel || tp.num_calls == 1) && tp.content_len == 0),
                  "%s (%s): %d calls, %zu bytes of content in '%s'", tools_text, tool_parser_name(c->k),
                  tp.num_calls, tp.content_len, c->out.text);
    for (int i = 0; i < tp.num_calls; i++) {
        const cJSON *fn = tool_schema(c->tools, tp.calls[i].name), *schema;
        cJSON *args = cJSON_Parse(tp.calls[i].arguments);

        ck_assert_msg(fn, "%s: a call of '%s', not among the tools", tools_text, tp.calls[i].name);
        ck_assert_msg(!c->only || !strcmp(c->only, tp.calls[i].name), "named %s, called %s", c->only,
                      tp.calls[i].name);
        schema = cJSON_GetObjectItem(fn, "parameters");
        ck_assert_ptr_nonnull(args);
        ck_assert_msg(schema ? schema_check_valid(schema, args) : !args->child,
                      "%s: arguments %s do not validate (output '%s')", tools_text, tp.calls[i].arguments,
                      c->out.text);
        cJSON_Delete(args);
    }
    tool_parse_fini(&tp);
    free(tools_text);
    cJSON_Delete(c->tools);
    return stop;
}

START_TEST(random_tools_at_temperature_one_always_give_calls_that_validate)
{
    enum { N = 150, BATCH = 30 };
    static const enum tool_parser_kind K[] = { TOOL_PARSER_HERMES, TOOL_PARSER_LLAMA3_JSON, TOOL_PARSER_MISTRAL };
    static struct case_ c[N];
    int parallel = 0, parallel_stops = 0;

    schema_check_seed(1212);
    for (int i = 0; i < N; i++) {
        c[i].tools = random_tools();
        c[i].k = K[i % 3];
        c[i].only = i % 4 == 3 ? "t0" : NULL;     /* a named function now and then */
        c[i].parallel = i % 5 == 1 && !c[i].only; /* several calls now and then */
    }
    for (int b = 0; b < N; b += BATCH) {
        for (int i = b; i < b + BATCH; i++)
            case_submit(&c[i], i);
        for (int i = b; i < b + BATCH; i++) {
            bool stop = case_check(&c[i]);
            parallel += c[i].parallel;
            parallel_stops += c[i].parallel && stop;
        }
    }
    /* most parallel outputs end (EOS is allowed after every call) and were checked whole */
    ck_assert_msg(parallel_stops * 2 >= parallel, "%d of %d parallel cases ended", parallel_stops, parallel);
}
END_TEST

Suite *openai_tools_grammar_suite(void)
{
    Suite *s = suite_create("openai_tools_grammar");
    TCase *tc = tcase_create("request"), *te = tcase_create("engine");

    tcase_add_test(tc, required_and_named_choices_are_held_by_a_grammar);
    tcase_add_test(tc, each_familys_grammar_takes_its_calls_and_nothing_else);
    tcase_add_test(tc, text_or_calls_is_never_read_as_a_bad_call);
    suite_add_tcase(s, tc);
    tcase_add_checked_fixture(te, engine_setup, engine_teardown);
    tcase_set_timeout(te, 300);
    tcase_add_test(te, random_tools_at_temperature_one_always_give_calls_that_validate);
    suite_add_tcase(s, te);
    return s;
}
