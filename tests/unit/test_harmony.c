/* test_harmony.c — gpt-oss's harmony output read back (server/harmony.c) on outputs written
 * by hand from OpenAI's harmony format description (analysis, final, commentary calls to
 * functions.NAME with <|constrain|>json, <|call|> and <|return|>): whole, and streamed in
 * every split into two pieces, byte by byte and in random pieces, which must all give
 * what the whole output gives. Malformed and truncated outputs come back as text. Also the
 * request side: the "openai" parser's name, its template detection, the 400 for what a
 * grammar cannot write in harmony, reasoning_effort into the harmony template, and a
 * client's tool loop (content null, vLLM's reasoning field) through it. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/buf.h"
#include "engine/base/util.h"
#include "engine/chat_template/chat_template.h"
#include "server/chat_prompt.h"
#include "server/harmony.h"
#include "server/openai_parse.h"
#include "server/tool_parser.h"

/* What a reader gave: everything its deltas said, joined. */
struct got {
    struct buf reasoning, content;
    char calls[8][2][128];   /* name, arguments */
    int num_calls;
};

static void got_fini(struct got *g)
{
    buf_fini(&g->reasoning);
    buf_fini(&g->content);
    memset(g, 0, sizeof *g);
}

static void take(struct got *g, const struct harmony_delta *d)
{
    ck_assert_int_eq(buf_put(&g->reasoning, d->reasoning, d->reasoning_len), 0);
    ck_assert_int_eq(buf_put(&g->content, d->content, d->content_len), 0);
    ck_assert_int_eq(d->first_call, g->num_calls);
    for (int i = 0; i < d->num_calls; i++) {
        ck_assert_int_lt(g->num_calls, 8);
        ck_assert_int_eq(strncmp(d->calls[i].id, "chatcmpl-tool-", 14), 0);
        snprintf(g->calls[g->num_calls][0], 128, "%s", d->calls[i].name);
        snprintf(g->calls[g->num_calls][1], 128, "%s", d->calls[i].arguments);
        g->num_calls++;
    }
}

/* Reads text in pieces: cuts[0..n) are the offsets where a new piece starts. */
static void read_cut(const char *text, const size_t *cuts, int n, bool calls, int max_calls, struct got *g)
{
    struct harmony_stream hs;
    struct harmony_delta d;
    size_t len = strlen(text), at = 0;

    memset(g, 0, sizeof *g);
    harmony_stream_init(&hs, calls, max_calls);
    for (int i = 0; i <= n; i++) {
        size_t end = i < n ? cuts[i] : len;

        ck_assert_int_eq(harmony_stream_feed(&hs, text + at, end - at, false, &d), 0);
        take(g, &d);
        at = end;
    }
    ck_assert_int_eq(harmony_stream_feed(&hs, NULL, 0, true, &d), 0);
    take(g, &d);
    harmony_stream_fini(&hs);
}

static void same(const struct got *a, const struct got *b, const char *text, const char *how)
{
    ck_assert_msg(a->reasoning.len == b->reasoning.len &&
                  !memcmp(a->reasoning.p, b->reasoning.p, a->reasoning.len), "%s: reasoning of %s", how, text);
    ck_assert_msg(a->content.len == b->content.len &&
                  !memcmp(a->content.p, b->content.p, a->content.len), "%s: content of %s", how, text);
    ck_assert_msg(a->num_calls == b->num_calls, "%s: calls of %s", how, text);
    for (int i = 0; i < a->num_calls; i++)
        ck_assert_msg(!strcmp(a->calls[i][0], b->calls[i][0]) && !strcmp(a->calls[i][1], b->calls[i][1]),
                      "%s: call %d of %s", how, i, text);
}

/* Reads text whole (one feed, finished), then checks that every way of streaming it gives
 * the same: each split into two, one byte at a time, and random pieces. */
static void read_all(const char *text, bool calls, int max_calls, struct got *whole)
{
    struct harmony_stream hs;
    struct harmony_delta d;
    size_t len = strlen(text), cuts[64];
    struct got g;

    memset(whole, 0, sizeof *whole);
    harmony_stream_init(&hs, calls, max_calls);
    ck_assert_int_eq(harmony_stream_feed(&hs, text, len, true, &d), 0);
    take(whole, &d);
    harmony_stream_fini(&hs);
    for (size_t cut = 0; cut <= len; cut++) {
        read_cut(text, &cut, 1, calls, max_calls, &g);
        same(whole, &g, text, "split in two");
        got_fini(&g);
    }
    for (size_t start = 0; start < len; start += 64) {
        int n = 0;

        for (size_t i = start + 1; i < len && n < 64; i++)
            cuts[n++] = i;
        /* bytes one at a time over this window (the rest whole) */
        read_cut(text, cuts, n, calls, max_calls, &g);
        same(whole, &g, text, "byte by byte");
        got_fini(&g);
    }
    srand(7);
    for (int round = 0; round < 50; round++) {
        int n = 0;

        for (size_t at = 0; n < 64;) {
            at += 1 + (size_t)rand() % 9;
            if (at >= len)
                break;
            cuts[n++] = at;
        }
        read_cut(text, cuts, n, calls, max_calls, &g);
        same(whole, &g, text, "random pieces");
        got_fini(&g);
    }
}

static void is(const struct got *g, const char *reasoning, const char *content, int num_calls)
{
    ck_assert_str_eq(g->reasoning.p ? g->reasoning.p : "", reasoning);
    ck_assert_str_eq(g->content.p ? g->content.p : "", content);
    ck_assert_int_eq(g->num_calls, num_calls);
}

#define ANALYSIS "<|channel|>analysis<|message|>"
#define NEXT "<|end|><|start|>assistant"

START_TEST(analysis_and_final_become_reasoning_and_content)
{
    struct got g;

    /* only reasoning: the output stopped (max_tokens) during the analysis */
    read_all(ANALYSIS "The user says hi. I should gr", true, 0, &g);
    is(&g, "The user says hi. I should gr", "", 0);
    got_fini(&g);
    read_all(ANALYSIS "The user says hi.<|end|>", true, 0, &g);
    is(&g, "The user says hi.", "", 0);
    got_fini(&g);
    /* analysis, then the answer, ended by <|return|> (the stop token's text, kept) */
    read_all(ANALYSIS "User greets; reply briefly." NEXT "<|channel|>final<|message|>Hello! How can I help?<|return|>",
             true, 0, &g);
    is(&g, "User greets; reply briefly.", "Hello! How can I help?", 0);
    got_fini(&g);
    /* markers' characters inside text are text: '<', '<|', "<|en" */
    read_all(ANALYSIS "a < b and c<|en d" NEXT "<|channel|>final<|message|>x <| y <|start", true, 0, &g);
    is(&g, "a < b and c<|en d", "x <| y <|start", 0);
    got_fini(&g);
    /* two analysis messages, then a commentary preamble and the final: one line each */
    read_all(ANALYSIS "one" NEXT "<|channel|>analysis<|message|>two" NEXT "<|channel|>commentary<|message|>pre"
             NEXT "<|channel|>final<|message|>answer<|return|>after the end",
             true, 0, &g);
    is(&g, "one\ntwo", "pre\nanswer", 0);
    got_fini(&g);
}
END_TEST

START_TEST(calls_to_functions_become_tool_calls)
{
    struct got g;

    read_all(ANALYSIS "Need the weather." NEXT "<|channel|>commentary to=functions.get_weather "
             "<|constrain|>json<|message|>{\"city\": \"Paris\", \"days\": [1, 2]}<|call|>", true, 0, &g);
    is(&g, "Need the weather.", "", 1);
    ck_assert_str_eq(g.calls[0][0], "get_weather");
    ck_assert_str_eq(g.calls[0][1], "{\"city\":\"Paris\",\"days\":[1,2]}");
    got_fini(&g);
    /* the recipient before the channel, "json" without <|constrain|>, no analysis, and
     * the call's <|call|> eaten (a stop token the text lacks) */
    read_all(" to=functions.lookup<|channel|>commentary json<|message|> {\"q\": \"x\"} ", true, 0, &g);
    is(&g, "", "", 1);
    ck_assert_str_eq(g.calls[0][0], "lookup");
    ck_assert_str_eq(g.calls[0][1], "{\"q\":\"x\"}");
    got_fini(&g);
    /* several calls, with reasoning between them */
    read_all(ANALYSIS "Two cities." NEXT "<|channel|>commentary to=functions.get_weather <|constrain|>json"
             "<|message|>{\"city\":\"Paris\"}<|call|><|start|>assistant<|channel|>analysis<|message|>And Rome."
             NEXT " to=functions.get_weather<|channel|>commentary <|constrain|>json<|message|>{\"city\":\"Rome\"}<|call|>",
             true, 0, &g);
    is(&g, "Two cities.\nAnd Rome.", "", 2);
    ck_assert_str_eq(g.calls[0][1], "{\"city\":\"Paris\"}");
    ck_assert_str_eq(g.calls[1][1], "{\"city\":\"Rome\"}");
    got_fini(&g);
    /* parallel_tool_calls false: the first call only */
    read_all("<|channel|>commentary to=functions.a<|message|>{}<|call|><|start|>assistant<|channel|>commentary "
             "to=functions.b<|message|>{}<|call|>", true, 1, &g);
    is(&g, "", "", 1);
    ck_assert_str_eq(g.calls[0][0], "a");
    got_fini(&g);
}
END_TEST

START_TEST(what_is_not_a_call_stays_text)
{
    struct got g;

    /* arguments that are not one JSON object: the body, as written, is content */
    read_all(ANALYSIS "x" NEXT "<|channel|>commentary to=functions.f <|constrain|>json<|message|>{\"a\": 1<|call|>",
             true, 0, &g);
    is(&g, "x", "{\"a\": 1", 0);
    got_fini(&g);
    read_all("<|channel|>commentary to=functions.f<|message|>[1, 2]<|call|>", true, 0, &g);
    is(&g, "", "[1, 2]", 0);
    got_fini(&g);
    /* truncated mid-arguments (max_tokens) */
    read_all("<|channel|>commentary to=functions.f<|message|>{\"a\": ", true, 0, &g);
    is(&g, "", "{\"a\": ", 0);
    got_fini(&g);
    /* tools off (tool_choice none): a call the model writes anyway is content */
    read_all("<|channel|>commentary to=functions.f<|message|>{\"a\":1}<|call|>", false, 0, &g);
    is(&g, "", "{\"a\":1}", 0);
    got_fini(&g);
    /* a built-in tool (browser, python) is the model's own work: reasoning */
    read_all("<|channel|>analysis to=browser.search<|message|>{\"query\":\"q\"}<|call|>", true, 0, &g);
    is(&g, "{\"query\":\"q\"}", "", 0);
    got_fini(&g);
}
END_TEST

START_TEST(malformed_and_plain_outputs_are_content_not_a_crash)
{
    struct got g;
    char long_header[600];

    read_all("Hello, plain text without any channel.", true, 0, &g);
    is(&g, "", "Hello, plain text without any channel.", 0);
    got_fini(&g);
    read_all("", true, 0, &g);
    is(&g, "", "", 0);
    got_fini(&g);
    read_all("<", true, 0, &g);
    is(&g, "", "<", 0);
    got_fini(&g);
    /* a header cut short (the output ended inside it) */
    read_all("<|channel|>fin", true, 0, &g);
    is(&g, "", "<|channel|>fin", 0);
    got_fini(&g);
    read_all(ANALYSIS "r" NEXT "<|channel|>fi", true, 0, &g);
    is(&g, "r", "<|start|>assistant<|channel|>fi", 0);
    got_fini(&g);
    /* a header that ends a message before it has one */
    read_all("<|channel|>final<|end|>text", true, 0, &g);
    is(&g, "", "<|channel|>final<|end|>text", 0);
    got_fini(&g);
    /* after a message, text that is no <|start|> */
    read_all(ANALYSIS "r<|end|>then plain", true, 0, &g);
    is(&g, "r", "then plain", 0);
    got_fini(&g);
    /* a header that never reaches <|message|> within its bound */
    snprintf(long_header, sizeof long_header, "<|channel|>final%0*d<|message|>x", 400, 0);
    read_all(long_header, true, 0, &g);
    is(&g, "", long_header, 0);
    got_fini(&g);
    /* the stop tokens' text (kept with the special tokens) where a message could start,
     * and <|endoftext|> (also a stop token of gpt-oss) ending a body */
    read_all("<|return|>", true, 0, &g);
    is(&g, "", "", 0);
    got_fini(&g);
    read_all(ANALYSIS "r<|end|><|call|>", true, 0, &g);
    is(&g, "r", "", 0);
    got_fini(&g);
    read_all(ANALYSIS "r" NEXT "<|channel|>final<|message|>ok<|endoftext|>", true, 0, &g);
    is(&g, "r", "ok", 0);
    got_fini(&g);
    read_all("<|endoftext|>", true, 0, &g);
    is(&g, "", "", 0);
    got_fini(&g);
    read_all("<|ret", true, 0, &g);   /* cut short, it is text */
    is(&g, "", "<|ret", 0);
    got_fini(&g);
    /* a body cut by <|start|> without <|end|>, and an empty message */
    read_all(ANALYSIS "a<|start|>assistant<|channel|>final<|message|><|end|>", true, 0, &g);
    is(&g, "a", "", 0);
    got_fini(&g);
}
END_TEST

/* ---- read by ids: an output given as tokens, each a piece of text, special or not ---- */

struct tk {
    const char *text;
    bool special;
};

#define SP(s) { s, true }
#define TX(s) { s, false }


static const int32_t marker_ids[HARMONY_NUM_MARKERS] = { 0, 1, 2, 3, 4, 5, 6, 7 };

/* Reads the tokens' text by ids, in pieces cut at cuts[0..n) (bytes); each piece comes
 * with the tokens whose text starts in it (or before), as the engine delivers them. */
static int read_ids_cut(const struct tk *t, const size_t *cuts, int n, struct got *g)
{
    struct harmony_stream hs;
    struct harmony_delta d;
    struct buf text;
    int32_t ids[64];
    size_t offsets[64], at = 0;
    int num = 0, fed = 0, reasoning_tokens;

    buf_init(&text);
    for (; t[num].text; num++) {
        ck_assert_int_lt(num, 64);
        ids[num] = num + 1000;   /* an ordinary token: its index past the markers' */
        for (int m = 0; m < HARMONY_NUM_MARKERS && t[num].special; m++)
            if (!strcmp(t[num].text, harmony_markers[m]))
                ids[num] = m;     /* a special token: harmony_markers[m]'s id, m */
        offsets[num] = text.len;
        ck_assert_int_eq(buf_put(&text, t[num].text, strlen(t[num].text)), 0);
    }
    memset(g, 0, sizeof *g);
    harmony_stream_init(&hs, true, 0);
    harmony_stream_use_ids(&hs, marker_ids);
    for (int i = 0; i <= n; i++) {
        size_t end = i < n ? cuts[i] : text.len;
        int k = fed;

        while (k < num && (offsets[k] < end || i == n))
            k++;
        ck_assert_int_eq(harmony_stream_tokens(&hs, ids + fed, offsets + fed, k - fed), 0);
        fed = k;
        ck_assert_int_eq(harmony_stream_feed(&hs, text.p + at, end - at, false, &d), 0);
        take(g, &d);
        at = end;
    }
    ck_assert_int_eq(harmony_stream_feed(&hs, NULL, 0, true, &d), 0);
    take(g, &d);
    reasoning_tokens = hs.reasoning_tokens;
    harmony_stream_fini(&hs);
    buf_fini(&text);
    return reasoning_tokens;
}

/* Reads the tokens whole, then in every split in two: the same parts and token count. */
static int read_ids(const struct tk *t, struct got *whole)
{
    size_t len = 0;
    int count = read_ids_cut(t, NULL, 0, whole);

    for (int i = 0; t[i].text; i++)
        len += strlen(t[i].text);
    for (size_t cut = 0; cut <= len; cut++) {
        struct got g;

        ck_assert_int_eq(read_ids_cut(t, &cut, 1, &g), count);
        same(whole, &g, "(tokens)", "split in two, by ids");
        got_fini(&g);
    }
    return count;
}

START_TEST(markers_spelled_by_ordinary_tokens_are_text)
{
    /* the answer quotes the format: its markers' characters come from ordinary tokens */
    static const struct tk quoted[] = {
        SP("<|channel|>"), TX("analysis"), SP("<|message|>"), TX("Explain"), TX(" the"), TX(" format"),
        SP("<|end|>"), SP("<|start|>"), TX("assistant"), SP("<|channel|>"), TX("final"), SP("<|message|>"),
        TX("Write "), TX("<|"), TX("channel"), TX("|>"), TX("final"), TX("<|message|>"), TX(" then "),
        TX("<|end|>"), TX(" or <|return|>."), SP("<|return|>"), { NULL, false },
    };
    /* an ordinary spelling in the reasoning, and a whole output that only looks like harmony */
    static const struct tk in_analysis[] = {
        SP("<|channel|>"), TX("analysis"), SP("<|message|>"), TX("a "), TX("<|end|>"), TX(" b"),
        SP("<|end|>"), SP("<|start|>"), TX("assistant"), SP("<|channel|>"), TX("final"), SP("<|message|>"),
        TX("ok"), SP("<|return|>"), { NULL, false },
    };
    static const struct tk fake[] = {
        TX("<|channel|>"), TX("analysis"), TX("<|message|>"), TX("hi"), TX("<|end|>"), { NULL, false },
    };
    struct got g;

    ck_assert_int_eq(read_ids(quoted, &g), 3);
    is(&g, "Explain the format", "Write <|channel|>final<|message|> then <|end|> or <|return|>.", 0);
    got_fini(&g);
    ck_assert_int_eq(read_ids(in_analysis, &g), 3);
    is(&g, "a <|end|> b", "ok", 0);
    got_fini(&g);
    ck_assert_int_eq(read_ids(fake, &g), 0);
    is(&g, "", "<|channel|>analysis<|message|>hi<|end|>", 0);
    got_fini(&g);
    /* the same text without ids: every spelling is a marker (as before) */
    read_all("<|channel|>analysis<|message|>hi<|end|>", true, 0, &g);
    is(&g, "hi", "", 0);
    got_fini(&g);
}
END_TEST

START_TEST(calls_and_reasoning_counted_by_ids)
{
    /* two analysis messages (2 + 1 tokens), a call (its tokens are no reasoning), then the
     * call's end: a built-in tool's message is reasoning too (1 token) */
    static const struct tk t[] = {
        SP("<|channel|>"), TX("analysis"), SP("<|message|>"), TX("need"), TX(" weather"), SP("<|end|>"),
        SP("<|start|>"), TX("assistant"), SP("<|channel|>"), TX("analysis"), SP("<|message|>"), TX("call it"),
        SP("<|end|>"), SP("<|start|>"), TX("assistant"), SP("<|channel|>"), TX("commentary to=browser.search"),
        SP("<|message|>"), TX("{}"), SP("<|call|>"), { NULL, false },
    };
    static const struct tk call[] = {
        SP("<|channel|>"), TX("commentary to=functions.get"), SP("<|constrain|>"), TX("json"),
        SP("<|message|>"), TX("{\"a\":"), TX("\"<|call|>\"}"), SP("<|call|>"), { NULL, false },
    };
    struct got g;

    ck_assert_int_eq(read_ids(t, &g), 4);
    is(&g, "need weather\ncall it\n{}", "", 0);
    got_fini(&g);
    /* a call's arguments may hold a marker's spelling in a string */
    ck_assert_int_eq(read_ids(call, &g), 0);
    is(&g, "", "", 1);
    ck_assert_str_eq(g.calls[0][0], "get");
    ck_assert_str_eq(g.calls[0][1], "{\"a\":\"<|call|>\"}");
    got_fini(&g);
}
END_TEST

START_TEST(the_openai_parser_is_named_and_found_in_the_harmony_template)
{
    enum tool_parser_kind k = TOOL_PARSER_NONE;
    char *src = NULL, err[ERR_LEN];
    size_t len;

    ck_assert_int_eq(tool_parser_from_name("openai", &k), 0);
    ck_assert_int_eq(k, TOOL_PARSER_OPENAI);
    ck_assert_str_eq(tool_parser_name(k), "openai");
    ck_assert(tool_parser_needs_special_tokens(k));
    ck_assert_int_eq(read_file("tests/data/chat_template/templates/gpt_oss.jinja", &src, &len, err), 0);
    ck_assert_int_eq(tool_parser_for_template(src), TOOL_PARSER_OPENAI);
    free(src);
}
END_TEST

static struct oai_config config = {
    .served_model = "tiny", .max_model_len = 4096, .vocab_size = 512, .max_n = 4,
    .max_stop_strings = 4, .max_stop_length = 16, .max_logprobs = 20,
    .default_temperature = -1, .default_top_p = -1, .tool_parser = TOOL_PARSER_OPENAI,
};

#define TOOL "{\"type\":\"function\",\"function\":{\"name\":\"f\",\"description\":\"d\",\"parameters\":{\"type\":\"object\"}%s}}"

/* A chat body's parse: its status (0 when accepted) and, when refused, the param named. */
static int chat(const char *body, char *param, struct oai_request *keep)
{
    struct oai_request r;
    struct oai_error e = { 0 };
    int rc;

    openai_request_init(&r);
    rc = openai_parse_chat(&r, body, strlen(body), &config, &e);
    if (param)
        snprintf(param, 64, "%s", rc ? e.param : "");
    if (rc)
        ck_assert_msg(strstr(e.message, "harmony"), "%s", e.message);   /* each refusal says why */
    if (keep)
        *keep = r;
    else
        openai_request_fini(&r);
    return rc ? e.status : 0;
}

START_TEST(what_a_grammar_cannot_write_in_harmony_is_refused)
{
    char body[1024], param[64];
    struct oai_request r;

    /* auto: accepted; the special tokens are kept for the reader, tools or not */
    snprintf(body, sizeof body, "{\"messages\":[{\"role\":\"user\",\"content\":\"w\"}],\"tools\":[" TOOL "]}", "");
    ck_assert_int_eq(chat(body, param, &r), 0);
    ck_assert(!r.params.skip_special_tokens);
    ck_assert(!openai_tools_active(&r));
    openai_request_fini(&r);
    ck_assert_int_eq(chat("{\"messages\":[{\"role\":\"user\",\"content\":\"w\"}]}", param, &r), 0);
    ck_assert(!r.params.skip_special_tokens);
    openai_request_fini(&r);
    /* a stream's logprobs would belong to no chunk */
    ck_assert_int_eq(chat("{\"messages\":[{\"role\":\"user\",\"content\":\"w\"}],\"stream\":true,"
                          "\"logprobs\":true}", param, NULL), 400);
    ck_assert_str_eq(param, "logprobs");
    ck_assert_int_eq(chat("{\"messages\":[{\"role\":\"user\",\"content\":\"w\"}],\"logprobs\":true}",
                          param, NULL), 0);
    /* required, named and strict tools need a grammar of harmony's special tokens */
    snprintf(body, sizeof body, "{\"messages\":[{\"role\":\"user\",\"content\":\"w\"}],\"tools\":[" TOOL "],"
             "\"tool_choice\":\"required\"}", "");
    ck_assert_int_eq(chat(body, param, NULL), 400);
    ck_assert_str_eq(param, "tool_choice");
    snprintf(body, sizeof body, "{\"messages\":[{\"role\":\"user\",\"content\":\"w\"}],\"tools\":[" TOOL "],"
             "\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"f\"}}}", "");
    ck_assert_int_eq(chat(body, param, NULL), 400);
    ck_assert_str_eq(param, "tool_choice");
    snprintf(body, sizeof body, "{\"messages\":[{\"role\":\"user\",\"content\":\"w\"}],\"tools\":[" TOOL "]}",
             ",\"strict\":true");
    ck_assert_int_eq(chat(body, param, NULL), 400);
    ck_assert_str_eq(param, "tools");
}
END_TEST

/* The prompt gpt-oss's template renders for a chat body (config's parser), or NULL with
 * *status set when the body is refused. */
static char *prompt_of(const char *body, int *status, char *param)
{
    struct chat_template *t = NULL;
    struct oai_request r;
    struct oai_error e = { 0 };
    char *src, *text = NULL, err[ERR_LEN];
    size_t len;

    openai_request_init(&r);
    *status = openai_parse_chat(&r, body, strlen(body), &config, &e) ? e.status : 0;
    snprintf(param, 64, "%s", e.param);
    if (!*status) {
        ck_assert_int_eq(read_file("tests/data/chat_template/templates/gpt_oss.jinja", &src, &len, err), 0);
        ck_assert_int_eq(chat_template_create(&t, src, "<|startoftext|>", "<|return|>", err), 0);
        ck_assert_msg(chat_prompt_render(t, &r, &text, &len, err) == 0, "%s", err);
        chat_template_destroy(t);
        free(src);
    }
    openai_request_fini(&r);
    return text;
}

START_TEST(reasoning_effort_reaches_the_harmony_template)
{
    char *p, param[64];
    int status;

    p = prompt_of("{\"messages\":[{\"role\":\"user\",\"content\":\"w\"}]}", &status, param);
    ck_assert_ptr_nonnull(strstr(p, "Reasoning: medium"));   /* the template's default */
    free(p);
    p = prompt_of("{\"messages\":[{\"role\":\"user\",\"content\":\"w\"}],\"reasoning_effort\":\"high\"}",
                  &status, param);
    ck_assert_ptr_nonnull(strstr(p, "Reasoning: high"));
    free(p);
    /* the request's field wins over chat_template_kwargs, as vLLM's fields do */
    p = prompt_of("{\"messages\":[{\"role\":\"user\",\"content\":\"w\"}],\"reasoning_effort\":\"low\","
                  "\"chat_template_kwargs\":{\"reasoning_effort\":\"high\"}}", &status, param);
    ck_assert_ptr_nonnull(strstr(p, "Reasoning: low"));
    free(p);
    ck_assert_ptr_null(prompt_of("{\"messages\":[{\"role\":\"user\",\"content\":\"w\"}],"
                                 "\"reasoning_effort\":\"max\"}", &status, param));
    ck_assert_int_eq(status, 400);
    ck_assert_str_eq(param, "reasoning_effort");
    /* a model without harmony has no such setting */
    config.tool_parser = TOOL_PARSER_HERMES;
    ck_assert_ptr_null(prompt_of("{\"messages\":[{\"role\":\"user\",\"content\":\"w\"}],"
                                 "\"reasoning_effort\":\"low\"}", &status, param));
    config.tool_parser = TOOL_PARSER_OPENAI;
    ck_assert_int_eq(status, 400);
    ck_assert_str_eq(param, "reasoning_effort");
}
END_TEST

/* A client's tool loop with gpt-oss, as vLLM takes it: the assistant's call sent back with
 * content null and its reasoning (vLLM's field), then the tool's answer. */
START_TEST(a_tool_loop_renders_through_the_harmony_template)
{
    static const char want[] =
        "<|start|>user<|message|>Weather in Paris?<|end|>"
        "<|start|>assistant<|channel|>analysis<|message|>Need weather.<|end|>"
        "<|start|>assistant to=functions.f<|channel|>commentary json<|message|>{\"city\": \"Paris\"}<|call|>"
        "<|start|>functions.f to=assistant<|channel|>commentary<|message|>\"21 C\"<|end|>"
        "<|start|>assistant";
    static const char *const field[] = { "reasoning", "reasoning_content" };
    char body[2048], *p, param[64];
    int status;

    for (int k = 0; k < 2; k++) {
        snprintf(body, sizeof body, "{\"messages\":[{\"role\":\"user\",\"content\":\"Weather in Paris?\"},"
                 "{\"role\":\"assistant\",\"content\":null,\"%s\":\"Need weather.\",\"tool_calls\":"
                 "[{\"id\":\"chatcmpl-tool-1\",\"type\":\"function\",\"function\":{\"name\":\"f\","
                 "\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}}]},"
                 "{\"role\":\"tool\",\"tool_call_id\":\"chatcmpl-tool-1\",\"content\":\"21 C\"}],"
                 "\"tools\":[" TOOL "]}", field[k], "");
        p = prompt_of(body, &status, param);
        ck_assert_msg(p, "%s: refused: %d %s", field[k], status, param);
        ck_assert_msg(strlen(p) > strlen(want) && !strcmp(p + strlen(p) - strlen(want), want),
                      "%s: the prompt ends\n%s", field[k], p);
        free(p);
    }
}
END_TEST

Suite *harmony_suite(void)
{
    Suite *s = suite_create("harmony");
    TCase *tc = tcase_create("harmony");

    tcase_add_test(tc, analysis_and_final_become_reasoning_and_content);
    tcase_add_test(tc, calls_to_functions_become_tool_calls);
    tcase_add_test(tc, what_is_not_a_call_stays_text);
    tcase_add_test(tc, malformed_and_plain_outputs_are_content_not_a_crash);
    tcase_add_test(tc, markers_spelled_by_ordinary_tokens_are_text);
    tcase_add_test(tc, calls_and_reasoning_counted_by_ids);
    tcase_add_test(tc, the_openai_parser_is_named_and_found_in_the_harmony_template);
    tcase_add_test(tc, what_a_grammar_cannot_write_in_harmony_is_refused);
    tcase_add_test(tc, reasoning_effort_reaches_the_harmony_template);
    tcase_add_test(tc, a_tool_loop_renders_through_the_harmony_template);
    suite_add_tcase(s, tc);
    return s;
}
