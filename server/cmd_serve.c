/* cmd_serve.c — `osprey serve`, the daemon: load the configuration (config/config.h), the
 * tokenizer and chat template, create and start the engine, listen, tell systemd READY=1
 * once /health would say 200, then sit in the main thread waiting for a signal while
 * sending WATCHDOG=1 heartbeats as long as the engine is healthy.
 * SIGTERM/SIGINT: STOPPING=1, new requests get 503, running ones have shutdown-grace
 * seconds to finish; past it the engine aborts them (non-streamed answers: 503; streams: a
 * last chunk with finish_reason "abort", then [DONE]); exit 0. A dead engine fails what is
 * in flight (500/503) and exits 1 so that systemd restarts the daemon. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "engine/chat_template/chat_template.h"
#include "engine/engine.h"
#include "engine/base/log.h"
#include "engine/model/model.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/base/util.h"
#include "server/api.h"
#include "server/auth.h"
#include "server/commands.h"
#include "server/http.h"
#include "server/metrics.h"

extern char **environ;

#define HTTP_THREADS 4

/* The effective configuration, one log line per option (config_dump masks the key). */
static void log_config(const struct osprey_config *c)
{
    char *text = NULL, *save = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);

    if (!f)
        return;
    config_dump(c, f);
    fclose(f);
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
        LOG(LL_INFO, "config", "%s", line);
    free(text);
}

static void engine_options_from(struct engine_options *eo, const struct osprey_config *c,
                                const struct tokenizer *tok)
{
    engine_options_init(eo);
    eo->model_dir = c->model;
    eo->backend = c->backend;
    eo->tokenizer = tok;
    eo->num_threads = c->threads;
    eo->kv_cache_bytes = c->kv_cache_memory;
    eo->gpu_memory_utilization = (float)c->gpu_memory_utilization;
    eo->block_size = c->block_size;
    eo->max_num_seqs = c->max_num_seqs;
    eo->max_num_batched_tokens = c->max_num_batched_tokens;
    eo->max_model_len = c->max_model_len;
    eo->enable_prefix_caching = c->enable_prefix_caching;
    eo->enforce_eager = c->enforce_eager;
    eo->graph_sizes = c->cuda_graph_sizes;
    eo->num_graph_sizes = c->num_cuda_graph_sizes;
    eo->fused_rope_cache = c->fused_rope_cache;
    eo->kv_cache_dtype = c->kv_cache_dtype;
    eo->calculate_kv_scales = c->calculate_kv_scales;
    eo->quantization = c->quantization && strcmp(c->quantization, "none") ? c->quantization : NULL;
    eo->max_waiting = c->max_waiting_requests;
    eo->seed = c->seed;
}

static void api_from(struct api *a, const struct osprey_config *c, struct engine *e,
                     const struct tokenizer *tok, const struct chat_template *tpl, struct metrics *m)
{
    const struct model_config *mc = engine_model_config(e);

    memset(a, 0, sizeof *a);
    a->engine = e;
    a->tok = tok;
    a->tpl = tpl;
    a->metrics = m;
    a->model_dir = c->model;
    a->started = (int64_t)time(NULL);
    a->stream_buffer_bytes = c->stream_buffer_bytes;
    a->log_prompts = c->log_prompts;
    a->cfg = (struct oai_config){
        .served_model = c->served_model_name,
        .max_model_len = engine_max_model_len(e),
        .vocab_size = mc->vocab_size,
        .max_prompt_tokens = c->max_prompt_tokens,
        .max_tokens_limit = c->max_tokens_limit,
        .max_n = c->max_n,
        .max_stop_strings = c->max_stop_strings,
        .max_stop_length = c->max_stop_length,
        .max_logprobs = MIN(c->max_logprobs, SAMPLE_MAX_LOGPROBS),
        .default_temperature = mc->gen_temperature,
        .default_top_p = mc->gen_top_p,
        .default_top_k = mc->gen_top_k,
        .priority_scheduling = c->scheduling_policy && !strcmp(c->scheduling_policy, "priority"),
    };
    /* --tool-call-parser auto: the syntax the model's chat template writes calls in. */
    if (!c->tool_call_parser || !strcmp(c->tool_call_parser, "auto"))
        a->cfg.tool_parser = tool_parser_for_template(tokenizer_chat_template(tok));
    else if (tool_parser_from_name(c->tool_call_parser, &a->cfg.tool_parser))
        a->cfg.tool_parser = TOOL_PARSER_NONE;   /* cannot happen: the option is an enum */
}

static void http_options_from(struct http_options *ho, const struct osprey_config *c, struct api *a,
                              struct metrics *m)
{
    memset(ho, 0, sizeof *ho);
    ho->host = c->host;
    ho->port = c->port;
    ho->num_threads = HTTP_THREADS;
    ho->max_connections = c->max_connections;
    ho->max_body_bytes = c->max_body_bytes;
    ho->max_header_bytes = c->max_header_bytes;
    ho->request_timeout_s = c->request_timeout;
    ho->idle_timeout_s = (int)ceil(c->idle_timeout);
    ho->api_key = c->api_key;
    ho->metrics_require_key = c->metrics_require_key;
    ho->cors_origins = c->cors_origins;
    ho->num_cors_origins = c->num_cors_origins;
    ho->routes = api_routes(&ho->num_routes);
    ho->app = a;
    ho->metrics = m;
}

/* Loads the tokenizer and the chat template; a template that does not render the sample
 * conversation is an error here, not at the first request. */
static int load_text_side(const struct osprey_config *c, struct tokenizer **tok,
                          struct chat_template **tpl, char *err)
{
    const char *src;
    int rc;

    if ((rc = tokenizer_load(tok, c->model, err)))
        return rc;
    if (!(src = tokenizer_chat_template(*tok))) {
        LOG(LL_WARN, "serve", "%s has no chat template: /v1/chat/completions will answer 400", c->model);
        return 0;
    }
    if ((rc = chat_template_create(tpl, src, tokenizer_bos_token(*tok), tokenizer_eos_token(*tok), err))) {
        const char *file = tokenizer_chat_template_file(*tok);
        char msg[ERR_LEN];

        /* The file and field: tokenizer_config.json's chat_template, or the .jinja file. */
        snprintf(msg, sizeof msg, "%s/%s: %s%s", c->model, file ? file : "tokenizer_config.json",
                 file && !strcmp(file, "chat_template.jinja") ? "" : "chat_template: ", err);
        memcpy(err, msg, ERR_LEN);
    }
    return rc;
}

/* Waits for a signal while the engine is healthy: READY=1 once it is ready (what /health
 * checks), then WATCHDOG=1 heartbeats while the engine thread keeps turning. A step that
 * hangs (a stuck GPU) stops them as surely as a failed one: each period the engine is
 * pinged, and no answer within half the watchdog interval means no heartbeat, so systemd
 * restarts the daemon. Returns the signal, or 0 when the engine died. */
static int wait_for_signal(struct engine *e)
{
    uint64_t watchdog_us = 0;
    bool watchdog = sd_watchdog_enabled(0, &watchdog_us) > 0 && watchdog_us > 0, ready = false;
    bool stalled = false;
    double period_s = watchdog ? MIN(1.0, watchdog_us / 2e6) : 1.0;
    double stall_s = MAX(watchdog_us / 2e6, 2 * period_s);
    sigset_t set;

    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    for (;;) {
        /* Poll quickly until ready, then at the heartbeat period. */
        double wait_s = ready ? period_s : 0.01;
        struct timespec ts = { (time_t)wait_s, (long)((wait_s - (time_t)wait_s) * 1e9) };
        struct engine_stats st;
        int sig = sigtimedwait(&set, NULL, &ts);

        if (sig > 0)
            return sig;
        engine_get_stats(e, &st);
        if (!st.healthy)
            return 0;            /* no more heartbeats: systemd restarts us if we hang */
        if (!ready && st.ready) {
            ready = true;
            sd_notify(0, "READY=1\nSTATUS=serving");
            LOG(LL_INFO, "serve", "ready");
        }
        if (watchdog && ready) {
            double silent_s = now_s() - st.alive_s;

            if (silent_s < stall_s)
                sd_notify(0, "WATCHDOG=1");
            if (silent_s >= stall_s && !stalled)
                LOG(LL_ERR, "serve", "the engine thread has not turned for %.1f s: no heartbeats "
                    "until it does", silent_s);
            else if (silent_s < stall_s && stalled)
                LOG(LL_WARN, "serve", "the engine thread turns again: heartbeats resume");
            stalled = silent_s >= stall_s;
            engine_ping(e);      /* answered by the next period unless a step hangs */
        }
    }
}

/* Lets finished responses reach their clients: waits for the HTTP side to have no request
 * open, at most max_s. */
static void flush_responses(struct http_server *srv, double max_s)
{
    double end = now_s() + max_s;

    while (http_server_active(srv) > 0 && now_s() < end)
        usleep(10000);
}

int cmd_serve(int argc, char **argv)
{
    struct osprey_config c;
    struct tokenizer *tok = NULL;
    struct chat_template *tpl = NULL;
    struct engine *e = NULL;
    struct engine_options eo;
    struct metrics m;
    struct api a = { 0 };
    struct http_options ho;
    struct http_server *srv = NULL;
    char err[ERR_LEN] = "", key[32];
    sigset_t set;
    int rc, sig, status = 1;

    config_init(&c);
    rc = config_load(&c, argc, argv, environ, err);
    if (rc == 1) {
        config_fini(&c);
        return 0;                /* --help */
    }
    if (rc < 0) {
        fprintf(stderr, "osprey serve: %s\n", err);
        config_fini(&c);
        return 2;
    }
    log_level = log_level_parse(c.log_level);
    log_format = !strcmp(c.log_format, "json") ? LOG_FMT_JSON : LOG_FMT_TEXT;
    if (c.log_prompts && log_level < LL_DEBUG)
        LOG(LL_WARN, "serve", "log-prompts has no effect below log-level debug");

    /* Every thread started from here on inherits the mask: only the main thread takes
     * SIGTERM/SIGINT (sigtimedwait); a closed socket never kills us with SIGPIPE. */
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    metrics_init(&m);

    LOG(LL_INFO, "serve", "loading %s", c.model);
    if (load_text_side(&c, &tok, &tpl, err)) {
        LOG(LL_ERR, "serve", "%s", err);
        goto out;
    }
    engine_options_from(&eo, &c, tok);
    if (engine_create(&e, &eo, err) || engine_start(e, err)) {
        LOG(LL_ERR, "serve", "engine: %s", err);
        goto out;
    }
    api_from(&a, &c, e, tok, tpl, &m);
    if (api_served_names(&a, c.served_model_name, err)) {
        LOG(LL_ERR, "serve", "%s", err);
        goto out;
    }
    LOG(LL_INFO, "serve", "tool-call parser %s (--tool-call-parser %s), scheduling policy %s",
        tool_parser_name(a.cfg.tool_parser), c.tool_call_parser, c.scheduling_policy);
    http_options_from(&ho, &c, &a, &m);
    if (http_server_start(&srv, &ho, err)) {
        LOG(LL_ERR, "serve", "%s", err);
        goto out;
    }
    log_config(&c);
    auth_mask(c.api_key, key, sizeof key);
    LOG(LL_INFO, "serve", "model '%s' (%s), max_model_len %d, api key %s", a.cfg.served_model,
        c.model, a.cfg.max_model_len, key);
    LOG(LL_INFO, "serve", "listening on http://%s%s%s:%d", strchr(c.host, ':') ? "[" : "", c.host,
        strchr(c.host, ':') ? "]" : "", http_server_port(srv));

    sig = wait_for_signal(e);
    http_server_drain(srv);
    if (sig) {
        LOG(LL_INFO, "serve", "%s: draining (up to %.0fs for running requests)",
            sig == SIGTERM ? "SIGTERM" : "SIGINT", c.shutdown_grace);
        sd_notify(0, "STOPPING=1\nSTATUS=draining");
        engine_shutdown(e, c.shutdown_grace);
        flush_responses(srv, 5);
        status = 0;
    } else {
        LOG(LL_ERR, "serve", "the engine failed: failing what is in flight and exiting");
        sd_notify(0, "STATUS=engine failed");
        engine_shutdown(e, 0);
        flush_responses(srv, 2);
        status = 1;
    }
out:
    http_server_stop(srv);
    engine_destroy(e);
    chat_template_destroy(tpl);
    tokenizer_destroy(tok);
    api_served_names_fini(&a);
    metrics_fini(&m);
    config_fini(&c);
    if (status == 0)
        LOG(LL_INFO, "serve", "stopped");
    return status;
}
