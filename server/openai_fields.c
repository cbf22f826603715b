/* openai_fields.c — vLLM's extra request fields beyond OpenAI's, each honoured or refused
 * with a 400 that names it (never ignored): logit_bias, allowed_token_ids, priority (with
 * --scheduling-policy), include_stop_str_in_output, chat's echo, continue_final_message and
 * documents; refused: the ones osprey has no machinery for yet (bad_words, which needs
 * multi-token matching,
 * prompt_logprobs, beam search, per-request chat templates, …). openai_parse.c calls in
 * once the OpenAI fields are read. */
#include "server/openai_parse.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* 1 when given (*out set), 0 when absent, or the error. */
static int get_bool(const cJSON *root, const char *key, bool *out, struct oai_error *e)
{
    const cJSON *v = openai__field(root, key);

    if (!v)
        return 0;
    if (!cJSON_IsBool(v))
        return openai_error(e, 400, "invalid_type", key,
                            "Invalid type for '%s': expected a boolean, but got %s instead.",
                            key, openai__json_type(v));
    *out = cJSON_IsTrue(v);
    return 1;
}

static int refuse(const char *key, const char *why, struct oai_error *e)
{
    return openai_error(e, 400, "unsupported_parameter", key,
                        "Unsupported parameter: '%s'%s%s is not supported by osprey.", key,
                        why[0] ? " " : "", why);
}

/* Fields osprey refuses unless absent or at the value that changes nothing. */
static int check_refused(const cJSON *root, enum oai_kind kind, struct oai_error *e)
{
    const cJSON *v;

    if ((v = openai__field(root, "bad_words")) && !(cJSON_IsArray(v) && !v->child))
        return refuse("bad_words", "(banned multi-token sequences)", e);
    if ((v = openai__field(root, "prompt_logprobs")))
        return refuse("prompt_logprobs", "(logprobs of the prompt's tokens)", e);
    if ((v = openai__field(root, "use_beam_search")) && !cJSON_IsFalse(v))
        return refuse("use_beam_search", "(beam search)", e);
    if ((v = openai__field(root, "length_penalty")) && !(cJSON_IsNumber(v) && v->valuedouble == 1))
        return refuse("length_penalty", "(beam search)", e);
    if ((v = openai__field(root, "truncate_prompt_tokens")))
        return refuse("truncate_prompt_tokens", "(prompt truncation)", e);
    if ((v = openai__field(root, "return_tokens_as_token_ids")) && !cJSON_IsFalse(v))
        return refuse("return_tokens_as_token_ids", "true", e);
    if ((v = openai__field(root, "spaces_between_special_tokens")) && !cJSON_IsTrue(v))
        return refuse("spaces_between_special_tokens", "false", e);
    if ((v = openai__field(root, "cache_salt")))
        return refuse("cache_salt", "(per-tenant prefix caches)", e);
    if (kind == OAI_CHAT && (v = openai__field(root, "chat_template")))
        return refuse("chat_template", "(a per-request chat template)", e);
    if ((v = openai__field(root, "prompt_embeds")))
        return refuse("prompt_embeds", "(embeddings as the prompt)", e);
    if ((v = openai__field(root, "return_token_ids")) && !cJSON_IsFalse(v))
        return refuse("return_token_ids", "true", e);
    if ((v = openai__field(openai__field(root, "stream_options"), "continuous_usage_stats")) && !cJSON_IsFalse(v))
        return openai_error(e, 400, "unsupported_parameter", "stream_options.continuous_usage_stats",
                            "Unsupported parameter: 'stream_options.continuous_usage_stats' is not "
                            "supported by osprey (include_usage is).");
    if (kind == OAI_CHAT) {
        static const char *const chat_only[] = { "prediction", "audio",
                                                 "web_search_options", "verbosity" };

        for (size_t i = 0; i < sizeof chat_only / sizeof *chat_only; i++)
            if (openai__field(root, chat_only[i]))
                return refuse(chat_only[i], "", e);
        if ((v = openai__field(root, "modalities")) &&
            !(cJSON_IsArray(v) && cJSON_GetArraySize(v) == 1 && cJSON_IsString(v->child) &&
              !strcmp(v->child->valuestring, "text")))
            return refuse("modalities", "other than [\"text\"]", e);
    }
    return 0;
}

/* logit_bias: {"token id": bias in [-100, 100]}, OpenAI's shape (keys are strings). */
static int parse_logit_bias(struct oai_request *r, const struct oai_config *c, struct oai_error *e)
{
    const cJSON *lb = openai__field(r->root, "logit_bias"), *b;
    struct gen_params *p = &r->params;
    int n = 0;

    if (!lb)
        return 0;
    if (!cJSON_IsObject(lb))
        return openai_error(e, 400, "invalid_type", "logit_bias",
                            "Invalid type for 'logit_bias': expected an object of token ids to biases, "
                            "but got %s instead.", openai__json_type(lb));
    cJSON_ArrayForEach(b, lb)
        n++;
    if (!n)
        return 0;
    p->logit_bias_ids = arena_calloc(&r->arena, (size_t)n, sizeof *p->logit_bias_ids);
    p->logit_bias = arena_calloc(&r->arena, (size_t)n, sizeof *p->logit_bias);
    if (!p->logit_bias_ids || !p->logit_bias)
        return openai_error(e, 500, "internal_error", NULL, "out of memory");
    n = 0;
    cJSON_ArrayForEach(b, lb) {
        char *end = NULL;
        long id = strtol(b->string, &end, 10);

        if (!b->string[0] || *end || b->string[0] == '+' || b->string[0] == ' ' || id < 0 || id >= c->vocab_size)
            return openai_error(e, 400, "invalid_value", "logit_bias",
                                "Invalid 'logit_bias': key '%.32s' is not a token id in [0, %d).",
                                b->string, c->vocab_size);
        if (!cJSON_IsNumber(b) || !isfinite(b->valuedouble) || b->valuedouble < -100 || b->valuedouble > 100)
            return openai_error(e, 400, "invalid_value", "logit_bias",
                                "Invalid 'logit_bias[\"%ld\"]': expected a number in [-100, 100].", id);
        p->logit_bias_ids[n] = (int32_t)id;
        p->logit_bias[n++] = (float)b->valuedouble;
    }
    p->num_logit_bias = n;
    return 0;
}

/* allowed_token_ids: a non-empty list of ids in the vocabulary (vLLM's whitelist). */
static int parse_allowed(struct oai_request *r, const struct oai_config *c, struct oai_error *e)
{
    const cJSON *a = openai__field(r->root, "allowed_token_ids"), *v;
    struct gen_params *p = &r->params;
    int n = 0;

    if (!a)
        return 0;
    if (!cJSON_IsArray(a) || !a->child)
        return openai_error(e, 400, cJSON_IsArray(a) ? "invalid_value" : "invalid_type", "allowed_token_ids",
                            "Invalid 'allowed_token_ids': expected a non-empty array of token ids, but got %s.",
                            cJSON_IsArray(a) ? "an empty array" : openai__json_type(a));
    if (!(p->allowed_token_ids = arena_calloc(&r->arena, (size_t)cJSON_GetArraySize(a), sizeof *p->allowed_token_ids)))
        return openai_error(e, 500, "internal_error", NULL, "out of memory");
    cJSON_ArrayForEach(v, a) {
        if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 0 ||
            v->valuedouble >= c->vocab_size)
            return openai_error(e, 400, "invalid_value", "allowed_token_ids",
                                "Invalid 'allowed_token_ids[%d]': expected a token id in [0, %d).", n,
                                c->vocab_size);
        p->allowed_token_ids[n++] = (int32_t)v->valuedouble;
    }
    p->num_allowed_token_ids = n;
    return 0;
}

/* Chat's reasoning_effort reaches a harmony template (gpt-oss's "Reasoning: low|medium|high"
 * line), as vLLM passes it; other models have no such setting to honour. */
static int parse_reasoning_effort(struct oai_request *r, const struct oai_config *c, struct oai_error *e)
{
    const cJSON *v = openai__field(r->root, "reasoning_effort");

    if (!v || r->kind != OAI_CHAT)
        return 0;
    if (c->tool_parser != TOOL_PARSER_OPENAI)
        return openai_error(e, 400, "unsupported_parameter", "reasoning_effort",
                            "Unsupported parameter: 'reasoning_effort' is not supported by osprey for "
                            "this model: only a harmony chat template (gpt-oss) takes a reasoning effort.");
    if (!cJSON_IsString(v) || (strcmp(v->valuestring, "low") && strcmp(v->valuestring, "medium") &&
                               strcmp(v->valuestring, "high")))
        return openai_error(e, 400, "invalid_value", "reasoning_effort",
                            "Invalid 'reasoning_effort': expected 'low', 'medium' or 'high'.");
    r->reasoning_effort = v;
    return 0;
}

int openai_parse_fields(struct oai_request *r, const struct oai_config *c, struct oai_error *e)
{
    const cJSON *v;
    int rc;

    if ((rc = check_refused(r->root, r->kind, e)) || (rc = parse_logit_bias(r, c, e)) ||
        (rc = parse_allowed(r, c, e)) || (rc = parse_reasoning_effort(r, c, e)) ||
        (rc = get_bool(r->root, "include_stop_str_in_output", &r->params.include_stop_str_in_output, e)) < 0)
        return rc;
    if ((v = openai__field(r->root, "priority"))) {
        if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble != floor(v->valuedouble))
            return openai_error(e, 400, "invalid_type", "priority",
                                "Invalid type for 'priority': expected an integer, but got %s instead.",
                                openai__json_type(v));
        if (fabs(v->valuedouble) > 1e9)
            return openai_error(e, 400, "invalid_value", "priority",
                                "Invalid 'priority': expected a value between -1000000000 and "
                                "1000000000, but got %.17g instead.", v->valuedouble);
        /* vLLM's rule: under fcfs, asking for an order is an error, not a no-op. */
        if (!c->priority_scheduling && v->valuedouble != 0)
            return openai_error(e, 400, "invalid_value", "priority",
                                "Invalid 'priority': %.0f asks for priority scheduling; start osprey "
                                "with --scheduling-policy priority.", v->valuedouble);
        r->params.priority = (int)v->valuedouble;
    }
    return 0;
}

int openai_parse_chat_fields(struct oai_request *r, struct oai_error *e)
{
    const cJSON *docs = openai__field(r->root, "documents"), *d, *last, *role, *content;
    bool echo = false;
    int rc;

    if ((rc = get_bool(r->root, "echo", &echo, e)) < 0 ||
        (rc = get_bool(r->root, "continue_final_message", &r->continue_final_message, e)) < 0)
        return rc;
    if (r->continue_final_message && r->add_generation_prompt)
        return openai_error(e, 400, "invalid_value", "continue_final_message",
                            "Invalid 'continue_final_message': it cannot be true together with "
                            "'add_generation_prompt' (set add_generation_prompt false).");
    if (docs && !cJSON_IsArray(docs))
        return openai_error(e, 400, "invalid_type", "documents",
                            "Invalid type for 'documents': expected an array of objects, but got %s "
                            "instead.", openai__json_type(docs));
    cJSON_ArrayForEach(d, docs)
        if (!cJSON_IsObject(d))
            return openai_error(e, 400, "invalid_type", "documents",
                                "Invalid type for 'documents[]': expected an object, but got %s "
                                "instead.", openai__json_type(d));
    /* vLLM's chat echo: the reply repeats the last message when it is the assistant's (the
     * role of the reply) and has content. */
    last = cJSON_GetArrayItem(r->messages, cJSON_GetArraySize(r->messages) - 1);
    role = cJSON_GetObjectItemCaseSensitive(last, "role");
    content = cJSON_GetObjectItemCaseSensitive(last, "content");
    r->echo = echo;
    if (echo && cJSON_IsString(role) && !strcmp(role->valuestring, "assistant") &&
        cJSON_IsString(content) && content->valuestring[0])
        r->chat_echo = content->valuestring;
    return 0;
}

bool openai_model_served(const struct oai_config *c, const char *name)
{
    if (!name)
        return false;
    for (int i = 0; i < c->num_served_names; i++)
        if (!strcmp(c->served_names[i], name))
            return true;
    return c->served_model && !strcmp(c->served_model, name);
}
