/* api.c — the route table and the endpoints that answer at once: /v1/models (vLLM's shape,
 * with max_model_len), /health (200 only while the engine is ready, healthy and the daemon
 * not draining), /metrics (Prometheus text), /tokenize and /detokenize (vLLM's shapes).
 * Also prompt preparation, shared with the generation endpoints: chat template, then the
 * tokenizer, on the HTTP thread (STYLE.md: the engine never sees JSON or templates). */
#include "server/api.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/chat_template/chat_template.h"
#include "engine/engine.h"
#include "engine/tokenizer/tokenizer.h"
#include "server/chat_prompt.h"
#include "server/metrics.h"
#include "server/openai.h"          /* the generation routes */
#include "server/openai_render.h"   /* openai_json_string */
#include "server/responses.h"       /* the /v1/responses route */

static const char json_type[] = "application/json";

static void respond_oom(struct http_request *r)
{
    struct oai_error e;

    openai_error(&e, 500, "internal_error", NULL, "out of memory");
    http_respond_error(r, &e);
}

static void respond_json(struct http_request *r, int status, cJSON *o)
{
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;

    cJSON_Delete(o);
    if (!s)
        respond_oom(r);
    else
        http_respond(r, status, json_type, s, strlen(s));
}

int api_prepare_prompts(const struct api *a, struct oai_request *req, struct oai_error *e)
{
    char err[ERR_LEN] = "";

    if (req->messages) {
        char *text = NULL;
        size_t len = 0;

        if (!a->tpl)
            return openai_error(e, 400, "invalid_request", "messages",
                                "This model has no chat template: use /v1/completions.");
        if (chat_prompt_render(a->tpl, req, &text, &len, err))
            return openai_error(e, 400, "invalid_messages", "messages", "Chat template: %s", err);
        req->prompts = arena_calloc(&req->arena, 1, sizeof *req->prompts);
        if (req->prompts)
            req->prompts[0].text = arena_strndup(&req->arena, text, len);
        free(text);
        if (!req->prompts || !req->prompts[0].text)
            return openai_error(e, 500, "internal_error", NULL, "out of memory");
        req->prompts[0].text_len = len;
        req->num_prompts = 1;
    }
    for (int i = 0; i < req->num_prompts; i++) {
        struct oai_prompt *p = &req->prompts[i];
        int32_t *ids = NULL;
        int n = 0;

        if (!p->text)
            continue;
        if (tokenizer_encode(a->tok, p->text, p->text_len, req->add_special_tokens, &ids, &n, err))
            return openai_error(e, 500, "internal_error", NULL, "Tokenizer: %s", err);
        p->ids = arena_calloc(&req->arena, n ? (size_t)n : 1, sizeof *ids);
        if (p->ids && n)
            memcpy(p->ids, ids, (size_t)n * sizeof *ids);
        free(ids);
        if (!p->ids)
            return openai_error(e, 500, "internal_error", NULL, "out of memory");
        p->num_ids = n;
    }
    return 0;
}

int api_served_names(struct api *a, const char *list, char *err)
{
    char *save = NULL, *tok;

    a->num_served_names = 0;
    if (!(a->served_buf = strdup(list ? list : ""))) {
        errf(err, "out of memory");
        return -ENOMEM;
    }
    for (char *p = a->served_buf; (tok = strtok_r(p, ",", &save)); p = NULL) {
        char *end = tok + strlen(tok);

        while (*tok == ' ' || *tok == '\t')
            tok++;
        while (end > tok && (end[-1] == ' ' || end[-1] == '\t'))
            *--end = '\0';
        if (!*tok || a->num_served_names == API_MAX_SERVED_NAMES) {
            errf(err, "--served-model-name '%s': %s", list, *tok ? "more than 16 names" : "an empty name");
            return -EINVAL;
        }
        a->served_names[a->num_served_names++] = tok;
    }
    if (!a->num_served_names) {
        errf(err, "--served-model-name '%s': no name", list ? list : "");
        return -EINVAL;
    }
    a->cfg.served_model = a->served_names[0];
    a->cfg.served_names = a->served_names;
    a->cfg.num_served_names = a->num_served_names;
    return 0;
}

void api_served_names_fini(struct api *a)
{
    free(a->served_buf);
    a->served_buf = NULL;
    a->num_served_names = 0;
}

/* One model card, vLLM's shape (with max_model_len). */
static cJSON *model_card(const struct api *a, const char *name)
{
    cJSON *m = cJSON_CreateObject();

    if (!m || !cJSON_AddStringToObject(m, "id", name) || !cJSON_AddStringToObject(m, "object", "model") ||
        !cJSON_AddNumberToObject(m, "created", (double)a->started) ||
        !cJSON_AddStringToObject(m, "owned_by", "osprey") || !cJSON_AddStringToObject(m, "root", a->model_dir) ||
        !cJSON_AddNullToObject(m, "parent") || !cJSON_AddNumberToObject(m, "max_model_len", a->cfg.max_model_len)) {
        cJSON_Delete(m);
        return NULL;
    }
    return m;
}

static void models(struct http_request *r, void *app)
{
    const struct api *a = app;
    cJSON *o = cJSON_CreateObject(), *data = NULL, *m;
    bool ok = o && cJSON_AddStringToObject(o, "object", "list") && (data = cJSON_AddArrayToObject(o, "data"));

    for (int i = 0; ok && i < MAX(a->num_served_names, 1); i++) {
        m = model_card(a, a->num_served_names ? a->served_names[i] : a->cfg.served_model);
        if (!m || !cJSON_AddItemToArray(data, m)) {
            cJSON_Delete(m);
            ok = false;
        }
    }
    if (!ok) {
        cJSON_Delete(o);
        o = NULL;
    }
    respond_json(r, 200, o);
}

/* GET /v1/models/{id}: the card of a served name, else 404 as OpenAI answers. */
static void model_retrieve(struct http_request *r, void *app)
{
    const struct api *a = app;
    const char *id = http_request_path(r) + strlen("/v1/models/");
    struct oai_error e;

    if (!openai_model_served(&a->cfg, id)) {
        int shown = (int)MIN(strlen(id), 200);

        while (shown > 0 && ((unsigned char)id[shown] & 0xc0) == 0x80)
            shown--;
        openai_error(&e, 404, "model_not_found", "model", "The model '%.*s' does not exist.", shown, id);
        http_respond_error(r, &e);
        return;
    }
    respond_json(r, 200, model_card(a, id));
}

/* GET /version, as vLLM answers it. */
static void version(struct http_request *r, void *app)
{
    cJSON *o = cJSON_CreateObject();

    (void)app;
    if (o && !cJSON_AddStringToObject(o, "version", OSPREY_VERSION)) {
        cJSON_Delete(o);
        o = NULL;
    }
    respond_json(r, 200, o);
}

static void health(struct http_request *r, void *app)
{
    struct api *a = app;
    struct engine_stats st;
    bool ok;

    engine_get_stats(a->engine, &st);
    ok = st.ready && st.healthy;    /* a draining server never gets here: http answers 503 */
    if (ok) {
        http_respond(r, 200, json_type, strdup("{\"status\":\"ok\"}"), 15);
    } else {
        struct oai_error e;

        openai_error(&e, 503, !st.healthy ? "engine_dead" : "not_ready", NULL, "%s",
                     !st.healthy ? "The engine failed and cannot serve." :
                     "The engine is not ready yet.");
        http_respond_error(r, &e);
    }
}

static void metrics_route(struct http_request *r, void *app)
{
    struct api *a = app;
    struct engine_stats st;
    struct metrics_engine me;
    size_t len = 0;
    char *text;

    engine_get_stats(a->engine, &st);
    me = (struct metrics_engine){
        .num_running = st.num_running, .num_waiting = st.num_waiting,
        .kv_cache_usage = st.kv_cache_usage, .num_kv_groups = st.num_kv_groups,
        .prefix_queries = st.prefix_queries, .prefix_hits = st.prefix_hits,
        .prompt_tokens = st.prompt_tokens, .generation_tokens = st.generation_tokens,
        .preemptions = st.num_preemptions, .healthy = st.healthy,
        .kv_cache_dtype = st.kv_cache_dtype, .kv_cache_tokens = (uint64_t)st.kv_cache_tokens,
        .num_ranks = MIN(st.num_ranks, ENGINE_MAX_RANKS), .rank_device = st.rank_device,
        .rank_kv_cache_bytes = st.rank_kv_cache_bytes,
    };
    for (int g = 0; g < st.num_kv_groups && g < 4; g++) {
        me.kv_group_window[g] = st.kv_group_window[g];
        me.kv_group_blocks[g] = (uint64_t)st.kv_group_blocks[g];
        me.kv_group_usage[g] = st.kv_group_blocks[g]
            ? 1.0 - (double)st.kv_group_free_blocks[g] / st.kv_group_blocks[g] : 0;
    }
    if (!(text = metrics_render(a->metrics, &me, &len)))
        respond_oom(r);
    else
        http_respond(r, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
}

static void tokenize(struct http_request *r, void *app)
{
    const struct api *a = app;
    struct oai_request req;
    struct oai_error e;
    size_t len;
    const char *body = http_request_body(r, &len);
    cJSON *o, *ids;

    openai_request_init(&req);
    if (openai_parse_tokenize(&req, body, len, &a->cfg, &e) || api_prepare_prompts(a, &req, &e)) {
        http_respond_error(r, &e);
        openai_request_fini(&req);
        return;
    }
    o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "count", req.prompts[0].num_ids);
    cJSON_AddNumberToObject(o, "max_model_len", a->cfg.max_model_len);
    ids = cJSON_CreateIntArray(req.prompts[0].ids, req.prompts[0].num_ids);
    if (!cJSON_AddItemToObject(o, "tokens", ids)) {
        cJSON_Delete(ids);
        cJSON_Delete(o);
        o = NULL;
    }
    openai_request_fini(&req);
    respond_json(r, 200, o);
}

static void detokenize(struct http_request *r, void *app)
{
    const struct api *a = app;
    struct oai_request req;
    struct oai_error e;
    size_t len;
    const char *body = http_request_body(r, &len);
    char err[ERR_LEN], *text = NULL;
    cJSON *o = NULL;

    openai_request_init(&req);
    if (openai_parse_detokenize(&req, body, len, &a->cfg, &e)) {
        http_respond_error(r, &e);
    } else if (tokenizer_decode(a->tok, req.prompts[0].ids, req.prompts[0].num_ids, false, &text,
                                &len, err)) {
        openai_error(&e, 500, "internal_error", NULL, "Tokenizer: %s", err);
        http_respond_error(r, &e);
    } else {
        cJSON *t = openai_json_string(text, len);

        o = cJSON_CreateObject();
        if (!t || !cJSON_AddItemToObject(o, "prompt", t)) {
            cJSON_Delete(t);
            cJSON_Delete(o);
            o = NULL;
        }
        respond_json(r, 200, o);
    }
    free(text);
    openai_request_fini(&req);
}

static const struct http_route routes[] = {
    { "/v1/completions", "POST", HTTP_NEEDS_KEY, openai_completions },
    { "/v1/chat/completions", "POST", HTTP_NEEDS_KEY, openai_chat_completions },
    { "/v1/responses", "POST", HTTP_NEEDS_KEY, openai_responses },
    { "/v1/models", "GET", HTTP_NEEDS_KEY, models },
    { "/v1/models/*", "GET", HTTP_NEEDS_KEY, model_retrieve },
    { "/tokenize", "POST", HTTP_NEEDS_KEY, tokenize },
    { "/detokenize", "POST", HTTP_NEEDS_KEY, detokenize },
    { "/health", "GET", HTTP_PUBLIC, health },
    { "/ping", "GET", HTTP_PUBLIC, health },        /* vLLM's (SageMaker's) name for /health */
    { "/version", "GET", HTTP_PUBLIC, version },
    { "/metrics", "GET", HTTP_METRICS_ACCESS, metrics_route },
};

const struct http_route *api_routes(int *num_routes)
{
    *num_routes = (int)ARRAY_LEN(routes);
    return routes;
}
