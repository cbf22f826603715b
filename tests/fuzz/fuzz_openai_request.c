/* fuzz_openai_request.c — request bodies through the OpenAI parser (server/openai_parse.c)
 * with the daemon's default limits (config_init) and a Llama 3.1 8B model: the first byte's
 * low 2 bits pick the route (/v1/completions, /v1/chat/completions, /tokenize, /detokenize),
 * its high 6 bits a prompt length for the chat context check; the rest is the body. Checked
 * beyond "no crash": an accepted request keeps every promise of openai.h within the limits
 * (n, max_tokens, sampling ranges, stop strings, token ids, messages, a grammar's source), every string it hands
 * on is valid UTF-8, openai_fit_context leaves room in the context, and every refusal
 * renders as an OpenAI error object in valid UTF-8 that parses back with its message. */
#include "tests/fuzz/fuzz.h"

#include <math.h>

#include "config/config.h"
#include "server/openai_parse.h"
#include "server/openai_render.h"

/* Llama 3.1 8B (config.json, generation_config.json): what api_from() takes from the model. */
#define MODEL_NAME    "llama-3.1-8b-instruct"
#define MODEL_LEN     131072
#define MODEL_VOCAB   128256

static struct oai_config cfg;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct osprey_config c;

    fuzz_quiet();
    config_init(&c);
    /* As server/cmd_serve.c's api_from() builds it from the configuration and the model. */
    cfg = (struct oai_config){
        .served_model = MODEL_NAME, .max_model_len = c.max_model_len ? c.max_model_len : MODEL_LEN,
        .vocab_size = MODEL_VOCAB, .max_prompt_tokens = c.max_prompt_tokens,
        .max_tokens_limit = c.max_tokens_limit, .max_n = c.max_n,
        .max_stop_strings = c.max_stop_strings, .max_stop_length = c.max_stop_length,
        .max_logprobs = MIN(c.max_logprobs, SAMPLE_MAX_LOGPROBS),
        .default_temperature = 0.6f, .default_top_p = 0.9f, .default_top_k = 0,
        /* Llama 3.1's template implies its parser: tool_choice auto, required and named are
         * parsed (the latter two compose a grammar of calls from the tools' schemas) */
        .tool_parser = TOOL_PARSER_LLAMA3_JSON,
    };
    config_fini(&c);
    return 0;
}

#define CHECK(x) FUZZ_CHECK(x, "route %d", (int)r->kind)

static bool str_ok(const char *s)
{
    return s && fuzz_utf8_valid(s, strlen(s));
}

/* Every key and string value under v is valid UTF-8 (what a chat template will read). */
static bool json_utf8(const cJSON *v)
{
    for (; v; v = v->next) {
        if ((v->string && !str_ok(v->string)) || (cJSON_IsString(v) && !str_ok(v->valuestring)) ||
            !json_utf8(v->child))
            return false;
    }
    return true;
}

static bool ids_ok(const int32_t *ids, int n)
{
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= cfg.vocab_size)
            return false;
    return n == 0 || ids != NULL;
}

static void check_sampling(const struct oai_request *r)
{
    const struct gen_params *p = &r->params;
    long long cap = cfg.max_tokens_limit > 0 ? cfg.max_tokens_limit : 1000000000LL;

    CHECK(r->n >= 1 && r->n <= cfg.max_n);
    CHECK(!r->max_tokens_set || (p->max_tokens >= 1 && p->max_tokens <= cap));
    CHECK(p->min_tokens >= 0 && (!r->max_tokens_set || p->min_tokens <= p->max_tokens));
    CHECK(p->temperature >= 0 && p->temperature <= 2);
    CHECK(p->top_p > 0 && p->top_p <= 1);
    CHECK(p->min_p >= 0 && p->min_p <= 1);
    CHECK(fabsf(p->presence_penalty) <= 2 && fabsf(p->frequency_penalty) <= 2);
    CHECK(p->repetition_penalty > 0 && p->repetition_penalty <= 2);
    CHECK(ids_ok(p->allowed_token_ids, p->num_allowed_token_ids) && ids_ok(p->logit_bias_ids, p->num_logit_bias));
    for (int i = 0; i < p->num_logit_bias; i++)
        CHECK(fabsf(p->logit_bias[i]) <= 100);
    CHECK(p->top_k >= 0);
    CHECK(p->num_stop >= 0 && p->num_stop <= cfg.max_stop_strings);
    for (int i = 0; i < p->num_stop; i++) {
        size_t n = p->stop[i] ? strlen(p->stop[i]) : 0;

        CHECK(n >= 1 && n <= (size_t)cfg.max_stop_length);
        CHECK(fuzz_utf8_valid(p->stop[i], n));
    }
    CHECK(ids_ok(p->stop_token_ids, p->num_stop_token_ids));
    CHECK(!r->include_usage || r->stream);
    CHECK(!r->user || str_ok(r->user));
}

/* openai_fit_context for a prompt of num tokens: refused with 400, or a max_tokens that fits
 * the context, the limit and min_tokens. */
static void check_fit(const struct oai_request *r, int num)
{
    struct oai_error e;
    int max_tokens = -1;

    if (openai_fit_context(r, num, &cfg, &max_tokens, &e) != 0) {
        CHECK(e.status == 400 && e.message[0]);
        return;
    }
    CHECK(num >= 1 && max_tokens >= 1 && (long long)num + max_tokens <= cfg.max_model_len);
    CHECK(cfg.max_tokens_limit <= 0 || max_tokens <= cfg.max_tokens_limit);
    CHECK(max_tokens >= r->params.min_tokens);
    CHECK(!r->max_tokens_set || max_tokens == r->params.max_tokens);
}

static void check_accepted(const struct oai_request *r, int chat_prompt)
{
    CHECK(cJSON_IsObject(r->root));
    CHECK(!r->model || !strcmp(r->model, cfg.served_model));
    CHECK(r->num_prompts >= 0 && (r->num_prompts == 0 || r->prompts));
    for (int i = 0; i < r->num_prompts; i++) {
        const struct oai_prompt *q = &r->prompts[i];

        if (q->text)
            CHECK(q->text_len == strlen(q->text) && fuzz_utf8_valid(q->text, q->text_len));
        else
            CHECK(ids_ok(q->ids, q->num_ids) && (q->num_ids >= 1 || r->kind == OAI_DETOKENIZE));
    }
    if (r->messages) {
        const cJSON *m;

        CHECK(cJSON_IsArray(r->messages) && r->messages->child);
        cJSON_ArrayForEach(m, r->messages) {
            const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
            const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");

            CHECK(cJSON_IsObject(m) && cJSON_IsString(role) && role->valuestring[0]);
            CHECK(!content || cJSON_IsString(content) || cJSON_IsNull(content));
        }
        CHECK(json_utf8(r->messages->child));
    }
    CHECK(!r->template_kwargs || cJSON_IsObject(r->template_kwargs));
    /* a grammar's source is whole text; tool_choice required or named always has one */
    CHECK(!r->has_grammar || (r->grammar_src && strlen(r->grammar_src) == r->grammar_len &&
                              r->grammar_param));
    CHECK(r->kind != OAI_CHAT || (r->tool_choice != OAI_TOOLS_REQUIRED && r->tool_choice != OAI_TOOLS_NAMED) ||
          (r->has_grammar && r->grammar_kind == GRAMMAR_GBNF && r->tools));
    switch (r->kind) {
    case OAI_COMPLETION:
        check_sampling(r);
        CHECK(r->num_prompts >= 1 && (long long)r->num_prompts * r->n <= cfg.max_n);
        CHECK(r->logprobs ? r->top_logprobs >= 0 && r->top_logprobs <= MIN(SAMPLE_MAX_LOGPROBS, cfg.max_logprobs) &&
                            r->params.logprobs == r->top_logprobs && !r->echo
                          : r->params.logprobs == -1);
        for (int i = 0; i < r->num_prompts; i++)
            check_fit(r, r->prompts[i].text ? (int)MIN(r->prompts[i].text_len + 1, (size_t)INT32_MAX)
                                            : r->prompts[i].num_ids);
        break;
    case OAI_CHAT:
        check_sampling(r);
        CHECK(r->num_prompts == 0 && r->messages && r->n <= cfg.max_n);
        CHECK(r->top_logprobs >= 0 && r->top_logprobs <= MIN(SAMPLE_MAX_LOGPROBS, cfg.max_logprobs));
        CHECK(r->params.logprobs == (r->logprobs ? r->top_logprobs : -1));
        /* tools, when kept, are an array; a tool_choice other than none needs them */
        CHECK((!r->tools || cJSON_IsArray(r->tools)) && (r->tool_choice == OAI_TOOLS_NONE || r->tools));
        CHECK(r->tool_choice != OAI_TOOLS_NAMED || (r->tool_name && str_ok(r->tool_name)));
        CHECK(!r->continue_final_message || !r->add_generation_prompt);
        CHECK(!r->chat_echo || str_ok(r->chat_echo));
        check_fit(r, chat_prompt);
        break;
    case OAI_TOKENIZE:
        CHECK(r->messages ? r->num_prompts == 0 : r->num_prompts == 1 && r->prompts[0].text);
        break;
    case OAI_DETOKENIZE:
        CHECK(r->num_prompts == 1 && !r->prompts[0].text);
        break;
    }
}

/* A refusal: a client error (or out of memory), and an error object that parses back. */
static void check_refused(const struct oai_request *r, const struct oai_error *e)
{
    cJSON *o, *m;
    size_t len;
    char *json;

    CHECK(e->status == 400 || e->status == 404 || (e->status == 500 && !strcmp(e->code, "internal_error")));
    CHECK(e->message[0] && strlen(e->message) < sizeof e->message && e->type);
    CHECK(fuzz_utf8_valid(e->message, strlen(e->message)) && fuzz_utf8_valid(e->param, strlen(e->param)));
    json = openai_render_error(e, &len);
    CHECK(json && strlen(json) == len);
    CHECK(fuzz_utf8_valid(json, len));
    o = cJSON_ParseWithLength(json, len);
    m = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(o, "error"), "message");
    CHECK(cJSON_IsString(m) && !strcmp(m->valuestring, e->message));
    cJSON_Delete(o);
    free(json);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int (*const parse[])(struct oai_request *, const char *, size_t, const struct oai_config *,
                                struct oai_error *) = {
        openai_parse_completion, openai_parse_chat, openai_parse_tokenize, openai_parse_detokenize,
    };
    struct oai_request req, *r = &req;
    struct oai_error e;
    const char *body;
    int chat_prompt;

    if (size < 1)
        return 0;
    /* 0 to 132300 tokens in steps of 2100: past the context at the top. */
    chat_prompt = (data[0] >> 2) * 2100;
    body = (const char *)data + 1;
    openai_request_init(r);
    memset(&e, 0, sizeof e);
    if (parse[data[0] & 3](r, body, size - 1, &cfg, &e) == 0)
        check_accepted(r, chat_prompt);
    else
        check_refused(r, &e);
    openai_request_fini(r);
    return 0;
}
