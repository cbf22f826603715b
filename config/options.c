/* options.c — the table of every `osprey serve` option (key, type, field, default, range,
 * help) and the typed parsers that turn a flag's text into a field of struct osprey_config.
 * The JSON file, the environment and the flags (config.c) all end in options_set(), so a
 * value means the same and fails with the same words whichever source gives it. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/options.h"
#include "engine/base/size.h"  /* size_parse, size_format: the one size parser */
#include "engine/base/util.h"  /* errf, ARRAY_LEN, MIN */

#define F(field) offsetof(struct osprey_config, field)
#define KiB 1024.0
#define MiB (1024.0 * KiB)
#define GiB (1024.0 * MiB)
#define TOKENS_MAX 16777216  /* 16M tokens: above any model's context */

const struct config_option options_table[] = {
    /* model and listener */
    { "model", OPT_STRING, F(model), .def = "", .arg = "PATH", .section = "Model and listener",
      .help = "Hugging Face model folder (config.json, *.safetensors, tokenizer.json); required" },
    { "served_model_name", OPT_STRING, F(served_model_name), .def = "", .arg = "NAME",
      .help = "model name clients send and /v1/models lists (default: the folder's basename)" },
    { "host", OPT_STRING, F(host), .def = "127.0.0.1", .arg = "ADDR",
      .help = "address to listen on (0.0.0.0 or :: for every interface)" },
    { "port", OPT_INT, F(port), .def = "8000", .arg = "N", .min = 0, .max = 65535,
      .help = "TCP port to listen on; 0 = any free port (logged)" },
    { "backend", OPT_ENUM, F(backend), .def = "auto", .choices = { "auto", "cpu", "cuda" },
      .help = "compute backend; auto = cuda when a GPU is present, else cpu" },
    { "config", OPT_STRING, F(config), .def = "", .arg = "FILE", .flags = OPT_NO_JSON,
      .help = "JSON file of options (keys in snake_case); env and flags override it" },

    /* engine */
    { "kv_cache_memory", OPT_SIZE, F(kv_cache_memory), .def = "0", .arg = "SIZE", .min = 0,
      .max = 1024.0 * 1024 * GiB, .section = "Engine",
      .help = "KV-cache bytes; 0 = derive (cuda: from --gpu-memory-utilization, cpu: 1GiB)" },
    { "gpu_memory_utilization", OPT_FLOAT, F(gpu_memory_utilization), .def = "0.9", .arg = "F",
      .min = 0, .max = 1, .flags = OPT_MIN_OPEN,
      .help = "fraction of GPU memory for weights, activations and KV cache" },
    { "block_size", OPT_INT, F(block_size), .def = "16", .arg = "N", .min = 1, .max = 128,
      .allowed = { 1, 8, 16, 32, 64, 128 }, .help = "tokens per KV-cache block: 1, 8, 16, 32, 64 or 128" },
    { "max_num_seqs", OPT_INT, F(max_num_seqs), .def = "256", .arg = "N", .min = 1, .max = 65536,
      .help = "most requests in one engine step" },
    { "max_num_batched_tokens", OPT_INT, F(max_num_batched_tokens), .def = "8192", .arg = "N",
      .min = 1, .max = TOKENS_MAX, .help = "most tokens in one engine step (prefill chunks + decodes)" },
    { "max_model_len", OPT_INT, F(max_model_len), .def = "0", .arg = "N", .min = 0,
      .max = TOKENS_MAX, .help = "context length in tokens; 0 = the model's max_position_embeddings" },
    { "enable_prefix_caching", OPT_BOOL, F(enable_prefix_caching), .def = "true",
      .help = "reuse the KV blocks of a prompt prefix seen before" },
    { "cuda_graph_sizes", OPT_INT_LIST, F(cuda_graph_sizes), F(num_cuda_graph_sizes),
      .def = "1,2,4,8,16,24,32,48,64,96,128,160,192,224,256,320,384,448,512", .arg = "LIST",
      .min = 1, .max = 65536, .help = "decode batch sizes captured as CUDA graphs (capped at --max-num-seqs)" },
    { "piecewise_graph_sizes", OPT_INT_LIST, F(piecewise_graph_sizes),
      /* on the H200: equal to eager steps bit for bit (tests/gpu/test_pieces.c), +7.7%
       * output tokens/s on steps mixing 512-token chunks with decodes, the same on
       * nano-vllm's workload; 136 graphs of a 1B model capture in 0.04 s */
      F(num_piecewise_graph_sizes), .def = "16,32,64,128,256,512,1024,2048", .arg = "LIST",
      .min = 1, .max = 16777215, .help = "token counts of mixed and prefill steps captured as "
      "piecewise CUDA graphs, all but attention (capped at --max-num-batched-tokens; \"\" = none)" },
    { "enforce_eager", OPT_BOOL, F(enforce_eager), .def = "false",
      .help = "never use CUDA graphs (slower decode, quicker start)" },
    { "fused_rope_cache", OPT_BOOL, F(fused_rope_cache), .def = "true",
      .help = "fuse RoPE with the KV-cache write (cuda)" },
    { "tensor_parallel_size", OPT_INT, F(tensor_parallel_size), .def = "1", .arg = "N", .min = 1,
      .max = 64, .help = "shard the model over N ranks (cpu: N worker threads; must divide the "
      "attention heads, the intermediate size, and the KV heads or be a multiple of them)" },
    { "threads", OPT_INT, F(threads), .def = "0", .arg = "N", .min = 0, .max = 4096,
      .help = "cpu backend worker threads; 0 = all cores" },
    { "kv_cache_dtype", OPT_ENUM, F(kv_cache_dtype), .def = "auto",
      .choices = { "auto", "bf16", "fp8" },
      .help = "KV-cache elements: auto (cpu f32, cuda bf16), bf16, fp8 (e4m3, per-layer scales)" },
    { "calculate_kv_scales", OPT_BOOL, F(calculate_kv_scales), .def = "false",
      .help = "fp8 KV cache: scales from the first prefill (max|K|/200, max|V|/100), not the checkpoint" },
    { "quantization", OPT_ENUM, F(quantization), .def = "none", .choices = { "none", "fp8" },
      .help = "fp8: quantize float linear weights at load (per-channel scales)" },
    { "load_format", OPT_ENUM, F(load_format), .def = "auto",
      .choices = { "auto", "safetensors", "dummy" },
      .help = "auto / safetensors: the folder's weights; dummy: random weights from config.json "
      "alone (benchmarks of shapes without a download)" },
    { "seed", OPT_U64, F(seed), .def = "0", .arg = "N", .min = 0, .max = 18446744073709551615.0,
      .help = "sampling seed base for requests that give none; 0 = random" },

    /* limits */
    { "max_waiting_requests", OPT_INT, F(max_waiting_requests), .def = "1024", .arg = "N",
      .min = 1, .max = 1048576, .section = "Limits",
      .help = "requests waiting for the engine; past it 503 with Retry-After" },
    { "max_connections", OPT_INT, F(max_connections), .def = "512", .arg = "N", .min = 1,
      .max = 1048576, .help = "concurrent HTTP connections" },
    { "max_connections_per_client", OPT_INT, F(max_connections_per_client), .def = "256", .arg = "N",
      .min = 0, .max = 1048576,
      .help = "connections from one client address; more are closed at once; 0 = no cap (behind a "
              "proxy, every connection comes from the proxy)" },
    { "max_body_bytes", OPT_SIZE, F(max_body_bytes), .def = "1MiB", .arg = "SIZE", .min = KiB,
      .max = GiB, .help = "largest request body; larger is 413" },
    { "max_header_bytes", OPT_SIZE, F(max_header_bytes), .def = "32KiB", .arg = "SIZE", .min = KiB,
      .max = MiB, .help = "largest request line and headers together; larger is 431" },
    { "max_prompt_tokens", OPT_INT, F(max_prompt_tokens), .def = "0", .arg = "N", .min = 0,
      .max = TOKENS_MAX, .help = "longest prompt in tokens; 0 = the model length" },
    { "max_tokens_limit", OPT_INT, F(max_tokens_limit), .def = "0", .arg = "N", .min = 0,
      .max = TOKENS_MAX, .help = "largest max_tokens a request may ask; 0 = the model length" },
    { "max_n", OPT_INT, F(max_n), .def = "16", .arg = "N", .min = 1, .max = 1024,
      .help = "most choices (n) per request" },
    { "max_stop_strings", OPT_INT, F(max_stop_strings), .def = "8", .arg = "N", .min = 0,
      .max = 1024, .help = "most stop strings per request" },
    { "max_stop_length", OPT_INT, F(max_stop_length), .def = "256", .arg = "N", .min = 1,
      .max = 65536, .help = "longest stop string, in bytes" },
    { "max_logprobs", OPT_INT, F(max_logprobs), .def = "20", .arg = "N", .min = 0, .max = 1024,
      .help = "most top_logprobs per token" },
    { "tool_call_parser", OPT_ENUM, F(tool_call_parser), .def = "auto",
      .choices = { "auto", "none", "llama3_json", "hermes", "mistral", "openai" },
      .help = "how tool calls are read from outputs (tool_choice auto); auto = from the chat template" },
    { "scheduling_policy", OPT_ENUM, F(scheduling_policy), .def = "fcfs", .choices = { "fcfs", "priority" },
      .help = "fcfs, or priority: requests' \"priority\" field orders the queue (lower first)" },
    { "grammar_cache_size", OPT_INT, F(grammar_cache_size), .def = "32", .arg = "N", .min = 1,
      .max = 4096, .help = "compiled grammars (schemas, regexes, …) kept for requests that repeat them" },
    { "stream_buffer_bytes", OPT_SIZE, F(stream_buffer_bytes), .def = "1MiB", .arg = "SIZE",
      .min = 4 * KiB, .max = GiB, .help = "output held per request for a slow client before it is cut off" },
    { "max_response_bytes", OPT_SIZE, F(max_response_bytes), .def = "32MiB", .arg = "SIZE",
      .min = KiB, .max = GiB, .help = "largest non-streamed answer; asking for more is 400 (stream it instead)" },
    { "request_timeout", OPT_SECONDS, F(request_timeout), .def = "30", .arg = "SECONDS", .min = 0,
      .max = 86400, .help = "time a client has to send a whole request; 0 = none" },
    { "idle_timeout", OPT_SECONDS, F(idle_timeout), .def = "60", .arg = "SECONDS", .min = 0,
      .max = 86400, .help = "idle keep-alive connections are closed after this; 0 = never" },
    { "shutdown_grace", OPT_SECONDS, F(shutdown_grace), .def = "30", .arg = "SECONDS", .min = 0,
      .max = 3600, .help = "on SIGTERM, time running requests get to finish" },

    /* security */
    { "api_key", OPT_STRING, F(api_key), .def = "", .arg = "KEY", .flags = OPT_SECRET,
      .section = "Security", .help = "clients must send \"Authorization: Bearer KEY\"; unset = no auth" },
    { "api_key_file", OPT_STRING, F(api_key_file), .def = "", .arg = "PATH",
      .help = "read the API key from this file (trailing newline dropped), e.g. a systemd credential" },
    { "metrics_require_key", OPT_BOOL, F(metrics_require_key), .def = "true",
      .help = "/metrics needs the API key too when one is set" },
    { "cors_origins", OPT_STR_LIST, F(cors_origins), F(num_cors_origins), .def = "", .arg = "LIST",
      .help = "origins allowed by CORS, comma-separated, or *; empty = no CORS headers" },

    /* logging */
    { "log_level", OPT_ENUM, F(log_level), .def = "info", .section = "Logging",
      .choices = { "err", "warn", "info", "debug" }, .help = "least important lines logged" },
    { "log_format", OPT_ENUM, F(log_format), .def = "text", .choices = { "text", "json" },
      .help = "log lines as text or one JSON object each" },
    { "log_prompts", OPT_BOOL, F(log_prompts), .def = "false",
      .help = "log prompts and outputs (needs --log-level debug; never otherwise)" },
};
const int options_count = (int)ARRAY_LEN(options_table);

/* ---- names ---- */

const struct config_option *options_find(const char *key)
{
    for (int i = 0; i < options_count; i++)
        if (!strcmp(options_table[i].key, key))
            return &options_table[i];
    return NULL;
}

/* Levenshtein distance of two short strings (each cut at OPTIONS_KEY_MAX bytes). */
static int edit_distance(const char *a, const char *b)
{
    int row[OPTIONS_KEY_MAX + 1];
    size_t na = strnlen(a, OPTIONS_KEY_MAX), nb = strnlen(b, OPTIONS_KEY_MAX);

    for (size_t j = 0; j <= nb; j++)
        row[j] = (int)j;
    for (size_t i = 1; i <= na; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= nb; j++) {
            int up = row[j];
            int best = diag + (a[i - 1] != b[j - 1]);
            best = MIN(best, up + 1);
            best = MIN(best, row[j - 1] + 1);
            row[j] = best;
            diag = up;
        }
    }
    return row[nb];
}

const struct config_option *options_suggest(const char *key)
{
    const struct config_option *best = NULL;
    int best_d = 1 << 30;
    /* Two edits catch a typo or a swapped pair; long names get a third. */
    int limit = strlen(key) >= 12 ? 3 : 2;

    for (int i = 0; i < options_count; i++) {
        int d = edit_distance(key, options_table[i].key);
        if (d < best_d) {
            best_d = d;
            best = &options_table[i];
        }
    }
    return best_d <= limit ? best : NULL;
}

void options_flag_name(const struct config_option *o, char *buf)
{
    size_t i;

    memcpy(buf, "--", 2);
    for (i = 0; o->key[i] && i < OPTIONS_KEY_MAX; i++)
        buf[2 + i] = o->key[i] == '_' ? '-' : o->key[i];
    buf[2 + i] = '\0';
}

void options_env_name(const struct config_option *o, char *buf)
{
    size_t i;

    memcpy(buf, "OSPREY_", 7);
    for (i = 0; o->key[i] && i < OPTIONS_KEY_MAX; i++)
        buf[7 + i] = (char)toupper((unsigned char)o->key[i]);
    buf[7 + i] = '\0';
}

const char *options_quote(const char *text, char *buf, size_t n)
{
    size_t len = strnlen(text, 41), j = 0;

    buf[j++] = '"';
    for (size_t i = 0; i < len && i < 40 && j + 5 < n; i++) {
        unsigned char ch = (unsigned char)text[i];
        buf[j++] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
    }
    if (len > 40 && j + 5 < n) {
        memcpy(buf + j, "...", 3);
        j += 3;
    }
    buf[j++] = '"';
    buf[j] = '\0';
    return buf;
}

/* ---- scalar parsers: 0, -EINVAL (not that kind of value) or -ERANGE (too big to hold) ---- */

static int parse_ll(const char *s, long long *out)
{
    char *end;

    if (!(isdigit((unsigned char)s[0]) || (s[0] == '-' && isdigit((unsigned char)s[1]))))
        return -EINVAL;
    errno = 0;
    *out = strtoll(s, &end, 10);
    if (*end)
        return -EINVAL;
    return errno == ERANGE ? -ERANGE : 0;
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;

    if (!isdigit((unsigned char)s[0]))
        return -EINVAL;
    errno = 0;
    *out = strtoull(s, &end, 10);
    if (*end)
        return -EINVAL;
    return errno == ERANGE ? -ERANGE : 0;
}

/* The shortest "%g" text that reads back as v: "0.9" rather than "0.90000000000000002", and
 * "0.123456789" rather than plain %g's "0.123457" (another value). */
static void format_double(double v, char *buf, size_t n)
{
    for (int digits = 6; digits <= 17; digits++) {
        snprintf(buf, n, "%.*g", digits, v);
        if (strtod(buf, NULL) == v)
            return;
    }
}

static int parse_double(const char *s, double *out, char **end)
{
    if (!(isdigit((unsigned char)s[0]) || s[0] == '.' || s[0] == '-' || s[0] == '+'))
        return -EINVAL;
    errno = 0;
    *out = strtod(s, end);
    if (*end == s || !isfinite(*out) || errno == ERANGE)
        return -EINVAL;
    return 0;
}

static int parse_seconds(const char *s, double *out)
{
    char *end;
    double scale;

    if (parse_double(s, out, &end) != 0)
        return -EINVAL;
    if (!strcmp(end, "") || !strcmp(end, "s"))
        scale = 1;
    else if (!strcmp(end, "ms"))
        scale = 1e-3;
    else if (!strcmp(end, "m"))
        scale = 60;
    else if (!strcmp(end, "h"))
        scale = 3600;
    else
        return -EINVAL;
    *out *= scale;
    return 0;
}

int options_parse_bool(const char *text, bool *out)
{
    static const char *const yes[] = { "true", "1", "yes", "on" }, *const no[] = { "false", "0", "no", "off" };

    for (size_t i = 0; i < ARRAY_LEN(yes); i++) {
        if (!strcasecmp(text, yes[i])) {
            *out = true;
            return 0;
        }
        if (!strcasecmp(text, no[i])) {
            *out = false;
            return 0;
        }
    }
    return -EINVAL;
}

/* Strings reach logs and headers: bounded, and no control bytes. */
static int check_string(const char *s, const char *src, char *err)
{
    char q[64];
    size_t len = strnlen(s, OPTIONS_STR_MAX + 1);

    if (len > OPTIONS_STR_MAX) {
        errf(err, "%s: longer than %d bytes", src, OPTIONS_STR_MAX);
        return -EINVAL;
    }
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
            errf(err, "%s: %s contains a control character", src, options_quote(s, q, sizeof q));
            return -EINVAL;
        }
    return 0;
}

/* ---- typed setters ---- */

static bool out_of_range(const struct config_option *o, double v)
{
    return (o->flags & OPT_MIN_OPEN ? v <= o->min : v < o->min) || v > o->max;
}

/* One integer of an OPT_INT or an OPT_INT_LIST element, checked against the range and the
 * allowed set. */
static int parse_int_checked(const struct config_option *o, const char *s, int *out, const char *src,
                             char *err)
{
    char q[64];
    long long v;
    int rc = parse_ll(s, &v);

    if (rc == -EINVAL) {
        errf(err, "%s: %s is not an integer", src, options_quote(s, q, sizeof q));
        return rc;
    }
    if (rc == -ERANGE || out_of_range(o, (double)v)) {
        if (rc == -ERANGE)
            errf(err, "%s: %s is out of range [%.0f, %.0f]", src, options_quote(s, q, sizeof q), o->min, o->max);
        else
            errf(err, "%s: %lld is out of range [%.0f, %.0f]", src, v, o->min, o->max);
        return -EINVAL;
    }
    if (o->allowed[0]) {
        bool ok = false;
        char list[96] = "";
        for (size_t i = 0; i < ARRAY_LEN(o->allowed) && o->allowed[i]; i++) {
            ok |= o->allowed[i] == v;
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%d", i ? ", " : "", o->allowed[i]);
        }
        if (!ok) {
            errf(err, "%s: %lld is not one of %s", src, v, list);
            return -EINVAL;
        }
    }
    *out = (int)v;
    return 0;
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* A comma list: elements trimmed of spaces, empty ones skipped. Ints come back sorted and
 * unique; strings in the order given. */
static int parse_list(const struct config_option *o, struct osprey_config *c, const char *text,
                      const char *src, char *err)
{
    void **field = (void **)((char *)c + o->off);
    int *count = (int *)((char *)c + o->count_off);
    bool ints = o->type == OPT_INT_LIST;
    size_t cap = ints ? sizeof(int) : sizeof(char *);
    char *items = calloc(OPTIONS_LIST_MAX, cap), *elem = malloc(OPTIONS_STR_MAX + 1);
    int n = 0, rc = -ENOMEM;

    if (!items || !elem)
        goto fail;
    for (const char *p = text; *p;) {
        const char *start, *stop;
        size_t len;

        while (*p == ' ')
            p++;
        start = p;
        while (*p && *p != ',')
            p++;
        for (stop = p; stop > start && stop[-1] == ' '; stop--)
            ;
        if (*p == ',')
            p++;
        len = (size_t)(stop - start);
        if (len == 0)
            continue;
        rc = -EINVAL;
        if (n == OPTIONS_LIST_MAX) {
            errf(err, "%s: more than %d values", src, OPTIONS_LIST_MAX);
            goto fail;
        }
        if (len > OPTIONS_STR_MAX) {
            errf(err, "%s: a value longer than %d bytes", src, OPTIONS_STR_MAX);
            goto fail;
        }
        memcpy(elem, start, len);
        elem[len] = '\0';
        if (ints) {
            if (parse_int_checked(o, elem, (int *)items + n, src, err) != 0)
                goto fail;
        } else {
            if (check_string(elem, src, err) != 0)
                goto fail;
            rc = -ENOMEM;
            if (!(((char **)items)[n] = strdup(elem)))
                goto fail;
        }
        n++;
    }
    if (ints && n > 1) {
        int *v = (int *)items, u = 1;
        qsort(v, (size_t)n, sizeof *v, cmp_int);
        for (int i = 1; i < n; i++)
            if (v[i] != v[u - 1])
                v[u++] = v[i];
        n = u;
    }
    options_free(o, c);
    if (n == 0) {
        free(items);
        items = NULL;
    } else {
        char *fit = realloc(items, (size_t)n * cap);  /* give back the unused tail */
        items = fit ? fit : items;
    }
    *field = items;
    *count = n;
    free(elem);
    return 0;
fail:
    if (!ints && items)
        for (int i = 0; i < n; i++)
            free(((char **)items)[i]);
    free(items);
    free(elem);
    if (rc == -ENOMEM)
        errf(err, "%s: out of memory", src);
    return rc;
}

int options_set(const struct config_option *o, struct osprey_config *c, const char *text,
                const char *src, char *err)
{
    void *field = (char *)c + o->off;
    char q[64], lo[32], hi[32];
    int rc;

    switch (o->type) {
    case OPT_INT:
        return parse_int_checked(o, text, (int *)field, src, err);
    case OPT_U64:
        rc = parse_u64(text, (uint64_t *)field);
        if (rc == -EINVAL)
            errf(err, "%s: %s is not a non-negative integer", src, options_quote(text, q, sizeof q));
        else if (rc == -ERANGE)
            errf(err, "%s: %s is out of range [0, %" PRIu64 "]", src, options_quote(text, q, sizeof q),
                 UINT64_MAX);
        return rc ? -EINVAL : 0;
    case OPT_SIZE: {
        size_t v;
        rc = size_parse(text, &v);
        if (rc == -EINVAL) {
            errf(err, "%s: %s is not a size (bytes, or a number with K, KB, KiB, M, MB, MiB, G, GB, GiB, "
                 "T, TB or TiB)", src, options_quote(text, q, sizeof q));
            return rc;
        }
        if (rc == -ERANGE || out_of_range(o, (double)v)) {
            size_format((size_t)o->min, lo, sizeof lo);
            size_format((size_t)o->max, hi, sizeof hi);
            errf(err, "%s: %s is out of range [%s, %s]", src, options_quote(text, q, sizeof q), lo, hi);
            return -EINVAL;
        }
        *(size_t *)field = v;
        return 0;
    }
    case OPT_FLOAT:
    case OPT_SECONDS: {
        double v;
        char *end = NULL;
        rc = o->type == OPT_FLOAT ? parse_double(text, &v, &end) : parse_seconds(text, &v);
        if (rc == 0 && o->type == OPT_FLOAT && *end)
            rc = -EINVAL;
        if (rc != 0) {
            errf(err, o->type == OPT_FLOAT ? "%s: %s is not a number"
                 : "%s: %s is not a duration (seconds, or a number with ms, s, m or h)",
                 src, options_quote(text, q, sizeof q));
            return -EINVAL;
        }
        if (out_of_range(o, v)) {
            errf(err, "%s: %g is out of range %c%g, %g]%s", src, v, o->flags & OPT_MIN_OPEN ? '(' : '[',
                 o->min, o->max, o->type == OPT_SECONDS ? " seconds" : "");
            return -EINVAL;
        }
        *(double *)field = v;
        return 0;
    }
    case OPT_BOOL:
        if (options_parse_bool(text, (bool *)field) != 0) {
            errf(err, "%s: %s is not a boolean (true/false, yes/no, on/off, 1/0)", src,
                 options_quote(text, q, sizeof q));
            return -EINVAL;
        }
        return 0;
    case OPT_STRING: {
        char *copy = NULL;
        if ((rc = check_string(text, src, err)) != 0)
            return rc;
        if (*text && !(copy = strdup(text))) {
            errf(err, "%s: out of memory", src);
            return -ENOMEM;
        }
        free(*(char **)field);
        *(char **)field = copy;
        return 0;
    }
    case OPT_ENUM: {
        char list[96] = "";
        for (size_t i = 0; i < ARRAY_LEN(o->choices) && o->choices[i]; i++) {
            if (!strcmp(text, o->choices[i])) {
                *(const char **)field = o->choices[i];
                return 0;
            }
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", o->choices[i]);
        }
        errf(err, "%s: %s is not one of %s", src, options_quote(text, q, sizeof q), list);
        return -EINVAL;
    }
    case OPT_INT_LIST:
    case OPT_STR_LIST:
        return parse_list(o, c, text, src, err);
    }
    return -EINVAL;
}

void options_free(const struct config_option *o, struct osprey_config *c)
{
    void *field = (char *)c + o->off;

    if (o->type == OPT_STRING) {
        free(*(char **)field);
        *(char **)field = NULL;
    } else if (o->type == OPT_INT_LIST || o->type == OPT_STR_LIST) {
        int *count = (int *)((char *)c + o->count_off);
        if (o->type == OPT_STR_LIST && *(char ***)field)
            for (int i = 0; i < *count; i++)
                free((*(char ***)field)[i]);
        free(*(void **)field);
        *(void **)field = NULL;
        *count = 0;
    }
}

/* ---- formatting ---- */

void options_format(const struct config_option *o, const struct osprey_config *c, char *buf, size_t n)
{
    const void *field = (const char *)c + o->off;
    size_t used = 0;

    buf[0] = '\0';
    switch (o->type) {
    case OPT_INT:     snprintf(buf, n, "%d", *(const int *)field); break;
    case OPT_U64:     snprintf(buf, n, "%" PRIu64, *(const uint64_t *)field); break;
    case OPT_SIZE:    size_format(*(const size_t *)field, buf, n); break;
    case OPT_FLOAT:
    case OPT_SECONDS: format_double(*(const double *)field, buf, n); break;
    case OPT_BOOL:    snprintf(buf, n, "%s", *(const bool *)field ? "true" : "false"); break;
    case OPT_ENUM:    snprintf(buf, n, "%s", *(const char *const *)field ? *(const char *const *)field : ""); break;
    case OPT_STRING: {
        const char *s = *(const char *const *)field;
        if (!s)
            break;
        if (o->flags & OPT_SECRET) {
            /* Only the last 4 characters, and only of a key long enough that 4 give little
             * away: 16, as server/auth.c's auth_mask. */
            size_t len = strlen(s);
            snprintf(buf, n, "****%s", len >= 16 ? s + len - 4 : "");
        } else {
            snprintf(buf, n, "%s", s);
        }
        break;
    }
    case OPT_INT_LIST:
    case OPT_STR_LIST: {
        int count = *(const int *)((const char *)c + o->count_off);
        for (int i = 0; i < count && used + 1 < n; i++) {
            int w = o->type == OPT_INT_LIST
                ? snprintf(buf + used, n - used, "%s%d", i ? "," : "", (*(int *const *)field)[i])
                : snprintf(buf + used, n - used, "%s%s", i ? "," : "", (*(char **const *)field)[i]);
            used += (size_t)MAX(w, 0);
        }
        break;
    }
    }
}

void options_describe_type(const struct config_option *o, char *buf, size_t n)
{
    char lo[32], hi[32];
    size_t used;

    switch (o->type) {
    case OPT_INT:
        if (!o->allowed[0]) {
            snprintf(buf, n, "integer %.0f..%.0f", o->min, o->max);
            break;
        }
        used = (size_t)snprintf(buf, n, "one of");
        for (size_t i = 0; i < ARRAY_LEN(o->allowed) && o->allowed[i] && used < n; i++)
            used += (size_t)snprintf(buf + used, n - used, "%s %d", i ? "," : "", o->allowed[i]);
        break;
    case OPT_U64:      snprintf(buf, n, "integer >= 0"); break;
    case OPT_SIZE:
        size_format((size_t)o->min, lo, sizeof lo);
        size_format((size_t)o->max, hi, sizeof hi);
        snprintf(buf, n, "size %s..%s", lo, hi);
        break;
    case OPT_FLOAT:
        snprintf(buf, n, "number in %c%g, %g]", o->flags & OPT_MIN_OPEN ? '(' : '[', o->min, o->max);
        break;
    case OPT_SECONDS:  snprintf(buf, n, "seconds %g..%g", o->min, o->max); break;
    case OPT_BOOL:     snprintf(buf, n, "boolean"); break;
    case OPT_STRING:   snprintf(buf, n, "%s", o->arg && (!strcmp(o->arg, "PATH") || !strcmp(o->arg, "FILE")) ? "path" : "string"); break;
    case OPT_ENUM:
        used = (size_t)snprintf(buf, n, "one of");
        for (size_t i = 0; i < ARRAY_LEN(o->choices) && o->choices[i] && used < n; i++)
            used += (size_t)snprintf(buf + used, n - used, "%s %s", i ? "," : "", o->choices[i]);
        break;
    case OPT_INT_LIST: snprintf(buf, n, "list of integers %.0f..%.0f", o->min, o->max); break;
    case OPT_STR_LIST: snprintf(buf, n, "list of strings"); break;
    }
}
