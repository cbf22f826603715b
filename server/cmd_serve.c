/* cmd_serve.c — `osprey serve`, the daemon: load the configuration (config/config.h), the
 * tokenizer and chat template, create and start the engine, listen, tell systemd READY=1
 * once /health would say 200, then sit in the main thread waiting for a signal while
 * sending WATCHDOG=1 heartbeats as long as the engine is healthy.
 * SIGTERM/SIGINT: STOPPING=1, new requests get 503, running ones have shutdown-grace
 * seconds to finish; past it the engine aborts them (non-streamed answers: 503; streams: a
 * last chunk with finish_reason "abort", then [DONE]); exit 0. A dead engine fails what is
 * in flight (500/503) and exits 1 so that systemd restarts the daemon.
 * The model loads in a thread of its own while the main thread already waits for signals:
 * SIGTERM/SIGINT during the load end the process at once (one log line, then the signal's
 * default action: status 143/130, a clean stop to systemd), whatever the load is blocked
 * on. SIGHUP, SIGUSR1, SIGUSR2 and SIGALRM, whose default action would kill the daemon with
 * no drain and no word, are logged and ignored at any time: nothing is reloaded. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
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
#include "engine/grammar/grammar.h"
#include "server/api.h"
#include "server/auth.h"
#include "server/commands.h"
#include "server/engine_opts.h"
#include "server/http.h"
#include "server/metrics.h"

extern char **environ;

#define HTTP_THREADS 4

/* Every signal the main thread takes with sigtimedwait; no other thread ever sees them. */
static const int serve_signals[] = { SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2, SIGALRM };

static void serve_sigset(sigset_t *set)
{
    sigemptyset(set);
    for (size_t i = 0; i < ARRAY_LEN(serve_signals); i++)
        sigaddset(set, serve_signals[i]);
}

static bool stops(int sig)
{
    return sig == SIGTERM || sig == SIGINT;
}

/* A signal whose default action would kill us at once and that asks for nothing we do:
 * one line, and serving goes on. */
static void log_ignored(int sig)
{
    if (sig == SIGHUP)
        LOG(LL_WARN, "serve", "SIGHUP: nothing is reloaded (the configuration is read at start only: "
            "restart the daemon to apply a new one); serving goes on");
    else
        LOG(LL_WARN, "serve", "%s ignored: osprey takes no action on it; serving goes on",
            sig == SIGUSR1 ? "SIGUSR1" : sig == SIGUSR2 ? "SIGUSR2" : sig == SIGALRM ? "SIGALRM" : "signal");
}

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
    a->max_response_bytes = c->max_response_bytes;
    a->log_prompts = c->log_prompts;
    a->cfg = (struct oai_config){
        .served_model = c->served_model_name,
        .max_model_len = engine_max_model_len(e),
        .max_cache_tokens = engine_max_request_tokens(e),
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
    ho->max_connections_per_client = c->max_connections_per_client;
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
        char msg[ERR_LEN + 4200];

        /* The file and field: tokenizer_config.json's chat_template, or the .jinja file. */
        snprintf(msg, sizeof msg, "%s/%s: %s%s", c->model, file ? file : "tokenizer_config.json",
                 file && !strcmp(file, "chat_template.jinja") ? "" : "chat_template: ", err);
        memcpy(err, msg, ERR_LEN - 1);
        err[ERR_LEN - 1] = '\0';
    }
    return rc;
}

/* What the loading thread builds: the tokenizer, the chat template and the started engine. */
struct load {
    const struct osprey_config *c;
    struct tokenizer *tok;
    struct chat_template *tpl;
    struct engine *e;
    int rc;                          /* 0, or the error in what + err */
    const char *what;                /* static: "engine: " when the engine failed, else "" */
    char err[ERR_LEN];
    atomic_bool done;
};

static void *load_main(void *arg)
{
    struct load *l = arg;
    struct engine_options eo;
    const char *delay = getenv("OSPREY_FAULT_LOAD_MS");

    /* Test-only: a load that takes this long (a slow disk), to be interrupted by a signal. */
    if (delay) {
        LOG(LL_WARN, "serve", "test fault point armed: the load waits %s ms first", delay);
        usleep((useconds_t)strtol(delay, NULL, 10) * 1000);
    }
    if ((l->rc = load_text_side(l->c, &l->tok, &l->tpl, l->err)) == 0) {
        engine_opts_from_config(&eo, l->c, l->tok);
        if ((l->rc = engine_create(&l->e, &eo, l->err)) == 0)
            l->rc = engine_start(l->e, l->err);
        l->what = l->rc ? "engine: " : "";
    }
    atomic_store(&l->done, true);
    return NULL;
}

/* Loads the model (load_main) in a thread while this one waits for signals. SIGTERM/SIGINT
 * end the process at once, by the signal's own default action after one log line: the
 * loading thread may be blocked in a read or a device call that nothing else would end. */
static int load_model(struct load *l)
{
    pthread_t t;
    sigset_t set;
    int rc;

    serve_sigset(&set);
    if ((rc = pthread_create(&t, NULL, load_main, l)) != 0) {
        errf(l->err, "cannot start the loading thread: %s", strerror(rc));
        return -rc;
    }
    while (!atomic_load(&l->done)) {
        struct timespec ts = { 0, 20 * 1000 * 1000 };
        int sig = sigtimedwait(&set, NULL, &ts);

        if (sig > 0 && stops(sig)) {
            LOG(LL_WARN, "serve", "%s while loading %s: exiting before it is served",
                sig == SIGTERM ? "SIGTERM" : "SIGINT", l->c->model);
            signal(sig, SIG_DFL);
            pthread_sigmask(SIG_UNBLOCK, &set, NULL);
            raise(sig);
            _exit(128 + sig);        /* not reached: the default action ends the process */
        }
        if (sig > 0)
            log_ignored(sig);
    }
    pthread_join(t, NULL);
    return l->rc;
}

/* Waits for a signal while the engine is healthy: READY=1 once it is ready (what /health
 * checks), then WATCHDOG=1 heartbeats while the engine thread keeps turning. A step that
 * hangs (a stuck GPU) stops them as surely as a failed one: each period the engine is
 * pinged, and no answer within half the watchdog interval means no heartbeat, so systemd
 * restarts the daemon. A long step that makes progress is not a hung one: the runner bumps
 * a counter per layer (engine_stats.progress), and a counter that moved counts as an
 * answer, so an 8 s CPU prefill keeps the heartbeats of a 4 s watchdog going. Returns the
 * signal, or 0 when the engine died. */
static int wait_for_signal(struct engine *e)
{
    uint64_t watchdog_us = 0, progress = 0;
    bool watchdog = sd_watchdog_enabled(0, &watchdog_us) > 0 && watchdog_us > 0, ready = false;
    bool stalled = false;
    double period_s = watchdog ? MIN(1.0, watchdog_us / 2e6) : 1.0;
    double stall_s = MAX(watchdog_us / 2e6, 2 * period_s);
    double moved_s = now_s();        /* when progress last moved */
    sigset_t set;

    serve_sigset(&set);
    for (;;) {
        /* Poll quickly until ready, then at the heartbeat period. */
        double wait_s = ready ? period_s : 0.01;
        struct timespec ts = { (time_t)wait_s, (long)((wait_s - (time_t)wait_s) * 1e9) };
        struct engine_stats st;
        int sig = sigtimedwait(&set, NULL, &ts);

        if (sig > 0 && stops(sig))
            return sig;
        if (sig > 0)
            log_ignored(sig);
        engine_get_stats(e, &st);
        if (!st.healthy)
            return 0;            /* no more heartbeats: systemd restarts us if we hang */
        if (st.progress != progress) {
            progress = st.progress;
            moved_s = now_s();
        }
        if (!ready && st.ready) {
            ready = true;
            sd_notify(0, "READY=1\nSTATUS=serving");
            LOG(LL_INFO, "serve", "ready");
        }
        if (watchdog && ready) {
            double silent_s = now_s() - MAX(st.alive_s, moved_s);

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
    struct load l = { .c = &c, .what = "" };
    struct tokenizer *tok = NULL;
    struct grammar_vocab *gvocab = NULL;
    struct grammar_cache *grammars = NULL;
    struct chat_template *tpl = NULL;
    struct engine *e = NULL;
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
     * serve_signals (sigtimedwait); a closed socket never kills us with SIGPIPE. */
    serve_sigset(&set);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    metrics_init(&m);

    LOG(LL_INFO, "serve", "loading %s", c.model);
    sd_notify(0, "STATUS=loading the model");
    rc = load_model(&l);
    tok = l.tok;
    tpl = l.tpl;
    e = l.e;
    if (rc) {
        LOG(LL_ERR, "serve", "%s%s", l.what, l.err);
        goto out;
    }
    /* The tokenizer's vocabulary as bytes, once, for grammar-constrained requests. */
    if (tok && (grammar_vocab_create(&gvocab, tok, err) ||
                (rc = grammar_cache_create(&grammars, gvocab, c.grammar_cache_size)))) {
        LOG(LL_ERR, "serve", "%s", err[0] ? err : "out of memory for the grammar cache");
        goto out;
    }
    api_from(&a, &c, e, tok, tpl, &m);
    if (api_served_names(&a, c.served_model_name, err)) {
        LOG(LL_ERR, "serve", "%s", err);
        goto out;
    }
    LOG(LL_INFO, "serve", "tool-call parser %s (--tool-call-parser %s), scheduling policy %s",
        tool_parser_name(a.cfg.tool_parser), c.tool_call_parser, c.scheduling_policy);
    a.grammars = grammars;
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
    grammar_cache_destroy(grammars);   /* after the engine: its requests held grammars */
    grammar_vocab_destroy(gvocab);
    chat_template_destroy(tpl);
    tokenizer_destroy(tok);
    api_served_names_fini(&a);
    metrics_fini(&m);
    config_fini(&c);
    if (status == 0)
        LOG(LL_INFO, "serve", "stopped");
    return status;
}
