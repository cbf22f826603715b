/* test_config.c — `osprey serve`'s configuration: the documented defaults, each source alone
 * (JSON file, OSPREY_* environment, flags), their precedence, every value type with good and
 * bad input (exact messages for a few), unknown names, --help, the example config, the
 * masked API key, and --help / Markdown against the option list written out from the brief. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "engine/base/log.h"
#include "engine/base/util.h"
#include "engine/engine.h"        /* struct engine_options */
#include "server/cli.h"           /* cli_parse: the offline commands' flags */
#include "server/engine_opts.h"   /* engine_opts_from_config */

static char err[ERR_LEN];
static char *no_env[] = { NULL };

#define ARGV(...) ((char *[]){ "serve", __VA_ARGS__, NULL })

/* config_init + config_load with argv (NULL-terminated, argv[0] = "serve"). */
static int load(struct osprey_config *c, char **env, char **argv)
{
    int argc = 0;

    while (argv[argc])
        argc++;
    config_init(c);
    err[0] = '\0';
    return config_load(c, argc, argv, env, err);
}

/* The error of a config_load that must fail; the config is freed. */
static const char *load_err(char **env, char **argv)
{
    struct osprey_config c;
    int rc = load(&c, env, argv);

    config_fini(&c);
    ck_assert_msg(rc < 0, "expected an error, got %d", rc);
    return err;
}

/* One flag on top of --model; the config must be freed by the caller. */
static int set_flag(struct osprey_config *c, const char *flag, const char *value)
{
    return load(c, no_env, ARGV("--model", "/m", (char *)flag, (char *)value));
}

static int parse_json(struct osprey_config *c, const char *json)
{
    err[0] = '\0';
    return config_parse_json(c, json, strlen(json), "/etc/osprey.json", err);
}

/* A temporary file holding text; the path is malloc'd. */
static char *temp_file(const char *text)
{
    char *path = strdup("/tmp/osprey-test-config-XXXXXX");
    int fd = mkstemp(path);
    size_t n = strlen(text);

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, n), (ssize_t)n);
    close(fd);
    return path;
}

static void remove_temp(char *path)
{
    unlink(path);
    free(path);
}

/* Everything a printer writes, as one malloc'd string. */
static char *capture(void (*print)(FILE *))
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    print(f);
    fclose(f);
    return buf;
}

static const struct osprey_config *dumped_config;
static void dump_it(FILE *f) { config_dump(dumped_config, f); }

static int count_lines_starting(const char *text, const char *prefix)
{
    int n = 0;
    size_t pl = strlen(prefix);

    for (const char *line = text; line && *line;) {
        n += !strncmp(line, prefix, pl);
        line = strchr(line, '\n');
        line = line ? line + 1 : NULL;
    }
    return n;
}

/* Every flag named in the task brief, written out by hand (not taken from options.c). */
static const char *const brief_flags[] = {
    "--model", "--served-model-name", "--host", "--port", "--backend", "--config",
    "--kv-cache-memory", "--gpu-memory-utilization", "--block-size", "--max-num-seqs",
    "--max-num-batched-tokens", "--max-model-len", "--enable-prefix-caching", "--cuda-graph-sizes",
    "--piecewise-graph-sizes", "--enforce-eager", "--fused-rope-cache", "--tensor-parallel-size", "--threads", "--kv-cache-dtype",
    "--calculate-kv-scales", "--quantization", "--load-format", "--seed",
    "--max-waiting-requests", "--max-connections", "--max-connections-per-client", "--max-body-bytes",
    "--max-header-bytes",
    "--max-prompt-tokens",
    "--max-tokens-limit", "--max-n", "--max-stop-strings", "--max-stop-length", "--max-logprobs",
    "--tool-call-parser", "--scheduling-policy", "--grammar-cache-size",
    "--stream-buffer-bytes", "--max-response-bytes", "--request-timeout", "--idle-timeout",
    "--shutdown-grace",
    "--api-key", "--api-key-file", "--metrics-require-key", "--cors-origins",
    "--log-level", "--log-format", "--log-prompts",
};
#define NUM_BRIEF_FLAGS ((int)(sizeof brief_flags / sizeof brief_flags[0]))

/* ---- defaults ---- */

START_TEST(defaults_are_the_documented_values)
{
    static const int graphs[] = { 1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 160, 192, 224, 256, 320, 384,
                                  448, 512 };
    struct osprey_config c;

    config_init(&c);
    ck_assert_ptr_null(c.model);
    ck_assert_ptr_null(c.served_model_name);
    ck_assert_str_eq(c.host, "127.0.0.1");
    ck_assert_int_eq(c.port, 8000);
    ck_assert_str_eq(c.backend, "auto");
    ck_assert_uint_eq(c.kv_cache_memory, 0);
    ck_assert_double_eq(c.gpu_memory_utilization, 0.9);
    ck_assert_int_eq(c.block_size, 16);
    ck_assert_int_eq(c.max_num_seqs, 256);
    ck_assert_int_eq(c.max_num_batched_tokens, 8192);
    ck_assert_int_eq(c.max_model_len, 0);
    ck_assert(c.enable_prefix_caching);
    ck_assert_int_eq(c.num_cuda_graph_sizes, 19);
    for (int i = 0; i < 19; i++)
        ck_assert_int_eq(c.cuda_graph_sizes[i], graphs[i]);
    ck_assert(!c.enforce_eager);
    ck_assert(c.fused_rope_cache);
    ck_assert_int_eq(c.threads, 0);
    ck_assert_uint_eq(c.seed, 0);
    ck_assert_int_eq(c.max_waiting_requests, 1024);
    ck_assert_int_eq(c.max_connections, 512);
    ck_assert_int_eq(c.max_connections_per_client, 256);
    ck_assert_uint_eq(c.max_body_bytes, 1048576);
    ck_assert_uint_eq(c.max_header_bytes, 32768);
    ck_assert_int_eq(c.max_prompt_tokens, 0);
    ck_assert_int_eq(c.max_tokens_limit, 0);
    ck_assert_int_eq(c.max_n, 16);
    ck_assert_int_eq(c.max_stop_strings, 8);
    ck_assert_int_eq(c.max_stop_length, 256);
    ck_assert_int_eq(c.max_logprobs, 20);
    ck_assert_uint_eq(c.stream_buffer_bytes, 1048576);
    ck_assert_uint_eq(c.max_response_bytes, 32 * 1048576);
    ck_assert_double_eq(c.request_timeout, 30);
    ck_assert_double_eq(c.idle_timeout, 60);
    ck_assert_double_eq(c.shutdown_grace, 30);
    ck_assert_ptr_null(c.api_key);
    ck_assert_ptr_null(c.api_key_file);
    ck_assert(c.metrics_require_key);
    ck_assert_int_eq(c.num_cors_origins, 0);
    ck_assert_str_eq(c.log_level, "info");
    ck_assert_str_eq(c.log_format, "text");
    ck_assert(!c.log_prompts);
    config_fini(&c);
}
END_TEST

START_TEST(defaults_validate_once_a_model_is_named)
{
    struct osprey_config c;

    config_init(&c);
    ck_assert_int_eq(config_validate(&c, err), -EINVAL);
    ck_assert_str_eq(err, "--model is required: the Hugging Face model folder to serve");
    config_fini(&c);
    ck_assert_int_eq(load(&c, no_env, ARGV("--model", "/srv/models/x")), 0);
    config_fini(&c);
}
END_TEST

/* ---- each source alone ---- */

START_TEST(json_alone_sets_every_kind_of_value)
{
    struct osprey_config c;

    config_init(&c);
    ck_assert_int_eq(parse_json(&c, "{\"model\": \"/srv/m\", \"port\": 9001, \"kv_cache_memory\": \"2GiB\","
                                    " \"max_body_bytes\": 4096, \"gpu_memory_utilization\": 0.5,"
                                    " \"request_timeout\": \"250ms\", \"idle_timeout\": 5,"
                                    " \"enforce_eager\": true, \"backend\": \"cpu\","
                                    " \"cuda_graph_sizes\": [8, 2, 4, 2],"
                                    " \"cors_origins\": [\"https://a.example\", \"https://b.example\"],"
                                    " \"seed\": 1234}"), 0);
    ck_assert_str_eq(c.model, "/srv/m");
    ck_assert_int_eq(c.port, 9001);
    ck_assert_uint_eq(c.kv_cache_memory, 2147483648u);
    ck_assert_uint_eq(c.max_body_bytes, 4096);
    ck_assert_double_eq(c.gpu_memory_utilization, 0.5);
    ck_assert_double_eq_tol(c.request_timeout, 0.25, 1e-12);
    ck_assert_double_eq(c.idle_timeout, 5);
    ck_assert(c.enforce_eager);
    ck_assert_str_eq(c.backend, "cpu");
    ck_assert_int_eq(c.num_cuda_graph_sizes, 3);
    ck_assert_int_eq(c.cuda_graph_sizes[0], 2);
    ck_assert_int_eq(c.cuda_graph_sizes[1], 4);
    ck_assert_int_eq(c.cuda_graph_sizes[2], 8);
    ck_assert_int_eq(c.num_cors_origins, 2);
    ck_assert_str_eq(c.cors_origins[1], "https://b.example");
    ck_assert_uint_eq(c.seed, 1234);
    ck_assert_int_eq(c.max_num_seqs, 256);  /* untouched */
    config_fini(&c);
}
END_TEST

START_TEST(env_alone_sets_options_and_ignores_other_variables)
{
    char *env[] = { "PATH=/usr/bin", "OSPREY_PORT=9002", "OSPREY_KV_CACHE_MEMORY=1.5G",
                    "OSPREY_ENABLE_PREFIX_CACHING=no", "OSPREY_CORS_ORIGINS=https://a.example, https://b.example",
                    "OSPREY_API_KEY=sk-env-key-0000", "OSPREY_LOG_LEVEL=debug", "HOME=/root", NULL };
    struct osprey_config c;

    config_init(&c);
    ck_assert_int_eq(config_load_env(&c, env, err), 0);
    ck_assert_int_eq(c.port, 9002);
    ck_assert_uint_eq(c.kv_cache_memory, 1610612736u);  /* 1.5 * 2^30 */
    ck_assert(!c.enable_prefix_caching);
    ck_assert_int_eq(c.num_cors_origins, 2);
    ck_assert_str_eq(c.cors_origins[0], "https://a.example");
    ck_assert_str_eq(c.cors_origins[1], "https://b.example");
    ck_assert_str_eq(c.api_key, "sk-env-key-0000");
    ck_assert_str_eq(c.log_level, "debug");
    config_fini(&c);
}
END_TEST

START_TEST(unknown_env_variables_are_ignored_not_fatal)
{
    char *env[] = { "OSPREY_NOT_AN_OPTION=1", "OSPREY_port=1", "OSPREY_=1", "OSPREY_PROT=80", NULL };
    struct osprey_config c;
    int saved = log_level;

    log_level = LL_ERR;  /* the warnings are expected */
    config_init(&c);
    ck_assert_int_eq(config_load_env(&c, env, err), 0);
    ck_assert_int_eq(c.port, 8000);
    config_fini(&c);
    log_level = saved;
}
END_TEST

START_TEST(flags_alone_take_both_spellings)
{
    struct osprey_config c;

    ck_assert_int_eq(load(&c, no_env, ARGV("--model", "/srv/m", "--port=9003", "--max-num-seqs", "64",
                                           "--host=0.0.0.0", "--backend", "cuda", "--threads=4",
                                           "--log-format", "json")), 0);
    ck_assert_str_eq(c.model, "/srv/m");
    ck_assert_int_eq(c.port, 9003);
    ck_assert_int_eq(c.max_num_seqs, 64);
    ck_assert_str_eq(c.host, "0.0.0.0");
    ck_assert_str_eq(c.backend, "cuda");
    ck_assert_int_eq(c.threads, 4);
    ck_assert_str_eq(c.log_format, "json");
    config_fini(&c);
}
END_TEST

/* ---- precedence ---- */

START_TEST(flags_beat_env_beat_file_beat_defaults)
{
    char *path = temp_file("{\"model\": \"/from/file\", \"port\": 1111, \"max_num_seqs\": 11,"
                           " \"block_size\": 32}");
    char env_config[300], *env[] = { env_config, "OSPREY_PORT=2222", "OSPREY_MAX_NUM_SEQS=22", NULL };
    struct osprey_config c;

    snprintf(env_config, sizeof env_config, "OSPREY_CONFIG=%s", path);
    ck_assert_int_eq(load(&c, env, ARGV("--port", "3333")), 0);
    ck_assert_int_eq(c.port, 3333);          /* flag */
    ck_assert_int_eq(c.max_num_seqs, 22);    /* env over file */
    ck_assert_int_eq(c.block_size, 32);      /* file over default */
    ck_assert_int_eq(c.max_n, 16);           /* default */
    ck_assert_str_eq(c.model, "/from/file");
    ck_assert_str_eq(c.config, path);
    config_fini(&c);
    remove_temp(path);
}
END_TEST

START_TEST(config_flag_beats_osprey_config)
{
    char *a = temp_file("{\"model\": \"/a\"}"), *b = temp_file("{\"model\": \"/b\"}");
    char env_config[300], *env[] = { env_config, NULL };
    struct osprey_config c;

    snprintf(env_config, sizeof env_config, "OSPREY_CONFIG=%s", a);
    ck_assert_int_eq(load(&c, env, ARGV("--config", b)), 0);
    ck_assert_str_eq(c.model, "/b");
    ck_assert_str_eq(c.config, b);
    config_fini(&c);
    remove_temp(a);
    remove_temp(b);
}
END_TEST

START_TEST(missing_config_file_is_an_error_naming_it)
{
    ck_assert_str_eq(load_err(no_env, ARGV("--config", "/nonexistent/osprey.json")),
                     "/nonexistent/osprey.json: No such file or directory");
}
END_TEST

/* ---- integers ---- */

START_TEST(integers_accept_their_range_and_nothing_else)
{
    struct osprey_config c;

    ck_assert_int_eq(set_flag(&c, "--port", "0"), 0);
    ck_assert_int_eq(c.port, 0);
    config_fini(&c);
    ck_assert_int_eq(set_flag(&c, "--port", "65535"), 0);
    ck_assert_int_eq(c.port, 65535);
    config_fini(&c);

    ck_assert_str_eq(load_err(no_env, ARGV("--port", "80a")), "--port: \"80a\" is not an integer");
    ck_assert_str_eq(load_err(no_env, ARGV("--port=70000")), "--port: 70000 is out of range [0, 65535]");
    ck_assert_str_eq(load_err(no_env, ARGV("--port", "-1")), "--port: -1 is out of range [0, 65535]");
    ck_assert_str_eq(load_err(no_env, ARGV("--port", "99999999999999999999")),
                     "--port: \"99999999999999999999\" is out of range [0, 65535]");
    ck_assert_str_eq(load_err(no_env, ARGV("--port", " 80")), "--port: \" 80\" is not an integer");
    ck_assert_str_eq(load_err(no_env, ARGV("--port=")), "--port: \"\" is not an integer");
    ck_assert_str_eq(load_err(no_env, ARGV("--max-num-seqs", "0")), "--max-num-seqs: 0 is out of range [1, 65536]");
}
END_TEST

START_TEST(block_size_must_be_one_of_the_kernel_sizes)
{
    char *env[] = { "OSPREY_BLOCK_SIZE=15", NULL };
    struct osprey_config c;

    ck_assert_str_eq(load_err(env, ARGV("--model", "/m")), "OSPREY_BLOCK_SIZE: 15 is not one of 1, 8, 16, 32, 64, 128");
    ck_assert_int_eq(set_flag(&c, "--block-size", "128"), 0);
    ck_assert_int_eq(c.block_size, 128);
    config_fini(&c);
    ck_assert_int_ne(set_flag(&c, "--block-size", "256"), 0);
    config_fini(&c);
}
END_TEST

START_TEST(seed_takes_the_whole_uint64_range)
{
    struct osprey_config c;

    ck_assert_int_eq(set_flag(&c, "--seed", "18446744073709551615"), 0);
    ck_assert_uint_eq(c.seed, UINT64_MAX);
    config_fini(&c);
    ck_assert_str_eq(load_err(no_env, ARGV("--seed", "18446744073709551616")),
                     "--seed: \"18446744073709551616\" is out of range [0, 18446744073709551615]");
    ck_assert_str_eq(load_err(no_env, ARGV("--seed", "-1")), "--seed: \"-1\" is not a non-negative integer");
}
END_TEST

/* ---- sizes ---- */

START_TEST(sizes_read_decimal_and_binary_units_as_spelled)
{
    static const struct { const char *text; size_t bytes; } cases[] = {
        { "0", 0 }, { "1048576", 1048576 }, { "512MiB", 536870912 }, { "2GiB", 2147483648u },
        { "1.5G", 1610612736 }, { "1K", 1024 }, { "1KB", 1000 }, { "1KiB", 1024 }, { "1k", 1024 },
        { "3MB", 3000000 }, { "3M", 3145728 }, { "2GB", 2000000000 }, { "1T", 1099511627776u },
        { "1TB", 1000000000000u }, { "1TiB", 1099511627776u }, { "2 GiB", 2147483648u },
        { "0.5gib", 536870912 }, { "100B", 100 }, { "1.000001M", 1048577 },
    };
    struct osprey_config c;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ck_assert_msg(set_flag(&c, "--kv-cache-memory", cases[i].text) == 0, "%s: %s", cases[i].text, err);
        ck_assert_msg(c.kv_cache_memory == cases[i].bytes, "%s gave %zu", cases[i].text, c.kv_cache_memory);
        config_fini(&c);
    }
}
END_TEST

START_TEST(bad_sizes_are_errors)
{
    static const char *const bad[] = { "12XB", "-1", "1.5", "", "G", "1.2345678G", "1e3", "0x10",
                                       "99999999999999999999", "17179869184GiB", "1..5G", "1.G" };
    struct osprey_config c;

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_msg(set_flag(&c, "--kv-cache-memory", bad[i]) == -EINVAL, "%s accepted", bad[i]);
        config_fini(&c);
    }
    ck_assert_str_eq(load_err(no_env, ARGV("--max-body-bytes", "12XB")),
                     "--max-body-bytes: \"12XB\" is not a size (bytes, or a number with K, KB, KiB, M, MB, "
                     "MiB, G, GB, GiB, T, TB or TiB)");
    ck_assert_str_eq(load_err(no_env, ARGV("--max-body-bytes", "2GiB")),
                     "--max-body-bytes: \"2GiB\" is out of range [1KiB, 1GiB]");
}
END_TEST

/* ---- the offline commands read engine options as serve does ---- */

static void no_usage(FILE *f)
{
    (void)f;
}

/* cli_parse as `osprey <cmd>` runs it (no options of the command's own), into c. */
static int offline_parse(const char *cmd, struct osprey_config *c, char **argv)
{
    int argc = 0;

    while (argv[argc])
        argc++;
    config_init(c);
    return cli_parse(cmd, argc, argv, NULL, 0, c, no_usage);
}

START_TEST(every_command_reads_a_size_as_serve_does)
{
    static const char *const sizes[] = { "8G", "8GB", "8GiB", "1.5G", "512M", "512MB", "3K", "100", "2 TiB" };
    static const char *const cmds[] = { "bench", "generate" };

    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        struct osprey_config serve, offline;
        struct engine_options a, b;

        ck_assert_msg(set_flag(&serve, "--kv-cache-memory", sizes[i]) == 0, "%s: %s", sizes[i], err);
        engine_opts_from_config(&a, &serve, NULL);
        for (size_t k = 0; k < sizeof cmds / sizeof cmds[0]; k++) {
            ck_assert_int_eq(offline_parse(cmds[k], &offline, (char *[]){ (char *)cmds[k], "--model", "/m",
                                           "--kv-cache-memory", (char *)sizes[i], NULL }), 0);
            engine_opts_from_config(&b, &offline, NULL);
            ck_assert_msg(b.kv_cache_bytes == a.kv_cache_bytes, "osprey %s --kv-cache-memory %s: %zu bytes, "
                          "serve: %zu", cmds[k], sizes[i], b.kv_cache_bytes, a.kv_cache_bytes);
            config_fini(&offline);
        }
        config_fini(&serve);
    }
    /* The example of the issue: 8 GiB to both, never 8×10⁹ bytes. */
    {
        struct osprey_config c;

        ck_assert_int_eq(offline_parse("bench", &c, (char *[]){ "bench", "--kv-cache-memory", "8G", NULL }), 0);
        ck_assert_uint_eq(c.kv_cache_memory, 8ull << 30);
        config_fini(&c);
    }
}
END_TEST

START_TEST(every_command_fills_the_engine_options_the_same_way)
{
    char *flags[] = { "--model", "/models/m", "--backend", "cpu", "--kv-cache-memory", "48MiB",
                      "--gpu-memory-utilization", "0.5", "--block-size", "32", "--max-num-seqs", "8",
                      "--max-num-batched-tokens", "512", "--max-model-len", "1024", "--no-enable-prefix-caching",
                      "--cuda-graph-sizes", "4,1,2", "--enforce-eager", "--fused-rope-cache=false",
                      "--threads", "3" };
    enum { N = sizeof flags / sizeof flags[0] };
    char *serve_argv[N + 2] = { "serve" }, *bench_argv[N + 2] = { "bench" };
    struct osprey_config serve, bench, plain;
    struct engine_options a, b, d;

    memcpy(serve_argv + 1, flags, sizeof flags);
    memcpy(bench_argv + 1, flags, sizeof flags);
    ck_assert_msg(load(&serve, no_env, serve_argv) == 0, "%s", err);
    ck_assert_int_eq(offline_parse("bench", &bench, bench_argv), 0);
    engine_opts_from_config(&a, &serve, NULL);
    engine_opts_from_config(&b, &bench, NULL);
    ck_assert_str_eq(b.model_dir, "/models/m");
    ck_assert_str_eq(a.model_dir, b.model_dir);
    ck_assert_str_eq(a.backend, b.backend);
    ck_assert_uint_eq(b.kv_cache_bytes, 48u << 20);
    ck_assert_uint_eq(a.kv_cache_bytes, b.kv_cache_bytes);
    ck_assert(a.gpu_memory_utilization == 0.5f && b.gpu_memory_utilization == 0.5f);
    ck_assert_int_eq(b.block_size, 32);
    ck_assert_int_eq(b.max_num_seqs, 8);
    ck_assert_int_eq(b.max_num_batched_tokens, 512);
    ck_assert_int_eq(b.max_model_len, 1024);
    ck_assert(!a.enable_prefix_caching && !b.enable_prefix_caching);
    ck_assert(a.enforce_eager && b.enforce_eager);
    ck_assert(!a.fused_rope_cache && !b.fused_rope_cache);
    ck_assert_int_eq(b.num_threads, 3);
    ck_assert_int_eq(b.num_graph_sizes, 3);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(a.graph_sizes[i], b.graph_sizes[i]);
    ck_assert_int_eq(b.graph_sizes[2], 4);
    ck_assert_int_eq(a.block_size, b.block_size);
    ck_assert_int_eq(a.max_num_seqs, b.max_num_seqs);
    ck_assert_int_eq(a.max_num_batched_tokens, b.max_num_batched_tokens);
    ck_assert_int_eq(a.max_model_len, b.max_model_len);
    ck_assert_int_eq(a.num_threads, b.num_threads);
    /* Unset, the CUDA-graph sizes are the one default list (config/options.c) everywhere. */
    ck_assert_int_eq(offline_parse("generate", &plain, (char *[]){ "generate", "--model", "/m", NULL }), 0);
    engine_opts_from_config(&d, &plain, NULL);
    ck_assert_int_eq(d.num_graph_sizes, 19);
    ck_assert_int_eq(d.graph_sizes[0], 1);
    ck_assert_int_eq(d.graph_sizes[18], 512);
    ck_assert(d.enable_prefix_caching && !d.enforce_eager && d.fused_rope_cache);
    config_fini(&plain);
    config_fini(&serve);
    config_fini(&bench);
}
END_TEST

START_TEST(offline_commands_refuse_what_they_do_not_take)
{
    struct osprey_config c;

    /* serve's listener and limits mean nothing offline: refused, not ignored. */
    ck_assert_int_eq(offline_parse("bench", &c, (char *[]){ "bench", "--host", "0.0.0.0", NULL }), 2);
    config_fini(&c);
    ck_assert_int_eq(offline_parse("bench", &c, (char *[]){ "bench", "--max-connections", "3", NULL }), 2);
    config_fini(&c);
    ck_assert_int_eq(offline_parse("generate", &c, (char *[]){ "generate", "--block_size", "16", NULL }), 2);
    config_fini(&c);
    ck_assert_int_eq(offline_parse("bench", &c, (char *[]){ "bench", "--block-size", "15", NULL }), 2);
    config_fini(&c);
    ck_assert_int_eq(offline_parse("bench", &c, (char *[]){ "bench", "--no-threads", NULL }), 2);
    config_fini(&c);
    ck_assert_int_eq(offline_parse("bench", &c, (char *[]){ "bench", "--no-enforce-eager=1", NULL }), 2);
    config_fini(&c);
    ck_assert_int_eq(offline_parse("bench", &c, (char *[]){ "bench", "--enforce-eager", "false", NULL }), 0);
    ck_assert(!c.enforce_eager);
    config_fini(&c);
}
END_TEST

/* ---- floats and durations ---- */

START_TEST(fractions_exclude_zero_and_reject_non_numbers)
{
    static const char *const bad[] = { "abc", "nan", "inf", "0.5x", "", " 0.5", "1e999" };
    struct osprey_config c;

    ck_assert_int_eq(set_flag(&c, "--gpu-memory-utilization", "1"), 0);
    ck_assert_double_eq(c.gpu_memory_utilization, 1.0);
    config_fini(&c);
    ck_assert_int_eq(set_flag(&c, "--gpu-memory-utilization", "0.05"), 0);
    ck_assert_double_eq(c.gpu_memory_utilization, 0.05);
    config_fini(&c);
    ck_assert_str_eq(load_err(no_env, ARGV("--gpu-memory-utilization", "0")),
                     "--gpu-memory-utilization: 0 is out of range (0, 1]");
    ck_assert_str_eq(load_err(no_env, ARGV("--gpu-memory-utilization", "1.01")),
                     "--gpu-memory-utilization: 1.01 is out of range (0, 1]");
    ck_assert_str_eq(load_err(no_env, ARGV("--gpu-memory-utilization", "abc")),
                     "--gpu-memory-utilization: \"abc\" is not a number");
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_msg(set_flag(&c, "--gpu-memory-utilization", bad[i]) == -EINVAL, "%s accepted", bad[i]);
        config_fini(&c);
    }
}
END_TEST

START_TEST(durations_take_seconds_or_a_unit)
{
    static const struct { const char *text; double s; } cases[] = {
        { "30", 30 }, { "0", 0 }, { "0.5", 0.5 }, { "250ms", 0.25 }, { "2m", 120 }, { "1.5h", 5400 },
        { "45s", 45 },
    };
    struct osprey_config c;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ck_assert_msg(set_flag(&c, "--request-timeout", cases[i].text) == 0, "%s: %s", cases[i].text, err);
        ck_assert_double_eq_tol(c.request_timeout, cases[i].s, 1e-9);
        config_fini(&c);
    }
    ck_assert_str_eq(load_err(no_env, ARGV("--idle-timeout", "10x")),
                     "--idle-timeout: \"10x\" is not a duration (seconds, or a number with ms, s, m or h)");
    ck_assert_str_eq(load_err(no_env, ARGV("--shutdown-grace", "2h")),
                     "--shutdown-grace: 7200 is out of range [0, 3600] seconds");
    ck_assert_str_eq(load_err(no_env, ARGV("--shutdown-grace", "-1")),
                     "--shutdown-grace: -1 is out of range [0, 3600] seconds");
}
END_TEST

/* ---- booleans ---- */

START_TEST(booleans_take_words_a_bare_flag_and_no_prefix)
{
    static const struct { const char *word; bool v; } words[] = {
        { "true", true }, { "false", false }, { "1", true }, { "0", false }, { "yes", true },
        { "no", false }, { "on", true }, { "off", false }, { "TRUE", true }, { "No", false },
    };
    struct osprey_config c;

    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        char flag[64];
        snprintf(flag, sizeof flag, "--enforce-eager=%s", words[i].word);
        ck_assert_int_eq(load(&c, no_env, ARGV("--model", "/m", flag)), 0);
        ck_assert_msg(c.enforce_eager == words[i].v, "%s", words[i].word);
        config_fini(&c);
    }
    /* Bare: true, and the next flag is left alone. */
    ck_assert_int_eq(load(&c, no_env, ARGV("--enforce-eager", "--port", "9", "--model", "/m")), 0);
    ck_assert(c.enforce_eager);
    ck_assert_int_eq(c.port, 9);
    config_fini(&c);
    /* A boolean word after it is its value. */
    ck_assert_int_eq(load(&c, no_env, ARGV("--enable-prefix-caching", "false", "--model", "/m")), 0);
    ck_assert(!c.enable_prefix_caching);
    config_fini(&c);
    ck_assert_int_eq(load(&c, no_env, ARGV("--no-metrics-require-key", "--model", "/m")), 0);
    ck_assert(!c.metrics_require_key);
    config_fini(&c);

    ck_assert_str_eq(load_err(no_env, ARGV("--enforce-eager=maybe")),
                     "--enforce-eager: \"maybe\" is not a boolean (true/false, yes/no, on/off, 1/0)");
    ck_assert_str_eq(load_err(no_env, ARGV("--no-enforce-eager=yes")), "--no-enforce-eager takes no value");
    ck_assert_str_eq(load_err(no_env, ARGV("--no-port")), "unknown flag \"--no-port\" (see --help)");
    /* A stray word after a bare boolean is not swallowed. */
    ck_assert_str_eq(load_err(no_env, ARGV("--enforce-eager", "maybe")),
                     "unexpected argument \"maybe\" (see --help)");
}
END_TEST

/* ---- strings and enums ---- */

START_TEST(strings_are_bounded_and_empty_means_unset)
{
    struct osprey_config c;
    char *huge = malloc(5000), flag[5100];

    ck_assert_int_eq(set_flag(&c, "--served-model-name", "my-model"), 0);
    ck_assert_str_eq(c.served_model_name, "my-model");
    config_fini(&c);
    ck_assert_int_eq(set_flag(&c, "--api-key", ""), 0);
    ck_assert_ptr_null(c.api_key);
    config_fini(&c);
    ck_assert_str_eq(load_err(no_env, ARGV("--host", "a\nb")), "--host: \"a?b\" contains a control character");
    memset(huge, 'x', 4999);
    huge[4999] = '\0';
    snprintf(flag, sizeof flag, "--api-key=%s", huge);
    ck_assert_str_eq(load_err(no_env, ARGV(flag)), "--api-key: longer than 4096 bytes");
    free(huge);
}
END_TEST

START_TEST(enums_name_their_choices)
{
    struct osprey_config c;

    ck_assert_int_eq(set_flag(&c, "--log-level", "warn"), 0);
    ck_assert_str_eq(c.log_level, "warn");
    config_fini(&c);
    ck_assert_str_eq(load_err(no_env, ARGV("--backend", "gpu")), "--backend: \"gpu\" is not one of auto, cpu, cuda");
    ck_assert_str_eq(load_err(no_env, ARGV("--log-format", "JSON")), "--log-format: \"JSON\" is not one of text, json");
}
END_TEST

/* ---- lists ---- */

START_TEST(graph_sizes_come_back_sorted_and_unique)
{
    struct osprey_config c;
    char many[2048] = "";

    ck_assert_int_eq(set_flag(&c, "--cuda-graph-sizes", " 16 , 2,,8,2 "), 0);
    ck_assert_int_eq(c.num_cuda_graph_sizes, 3);
    ck_assert_int_eq(c.cuda_graph_sizes[0], 2);
    ck_assert_int_eq(c.cuda_graph_sizes[1], 8);
    ck_assert_int_eq(c.cuda_graph_sizes[2], 16);
    config_fini(&c);
    ck_assert_int_eq(set_flag(&c, "--cuda-graph-sizes", ""), 0);
    ck_assert_int_eq(c.num_cuda_graph_sizes, 0);
    ck_assert_ptr_null(c.cuda_graph_sizes);
    config_fini(&c);

    ck_assert_str_eq(load_err(no_env, ARGV("--cuda-graph-sizes", "1,4x")), "--cuda-graph-sizes: \"4x\" is not an integer");
    ck_assert_str_eq(load_err(no_env, ARGV("--cuda-graph-sizes", "0,1")), "--cuda-graph-sizes: 0 is out of range [1, 65536]");
    for (int i = 1; i <= 257; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many), "%d,", i);
    ck_assert_str_eq(load_err(no_env, ARGV("--cuda-graph-sizes", many)), "--cuda-graph-sizes: more than 256 values");
}
END_TEST

START_TEST(cors_star_must_stand_alone)
{
    struct osprey_config c;

    ck_assert_int_eq(set_flag(&c, "--cors-origins", "*"), 0);
    ck_assert_int_eq(c.num_cors_origins, 1);
    ck_assert_str_eq(c.cors_origins[0], "*");
    config_fini(&c);
    ck_assert_str_eq(load_err(no_env, ARGV("--model", "/m", "--cors-origins", "*,https://a.example")),
                     "--cors-origins: \"*\" allows every origin and must be alone");
}
END_TEST

/* ---- JSON kinds and shape ---- */

START_TEST(json_wrong_kinds_name_file_key_and_kinds)
{
    struct osprey_config c;

    config_init(&c);
    ck_assert_int_eq(parse_json(&c, "{\"max_num_seqs\": \"64\"}"), -EINVAL);
    ck_assert_str_eq(err, "/etc/osprey.json: max_num_seqs: expected an integer, got a string");
    ck_assert_int_eq(parse_json(&c, "{\"max_num_seqs\": 1.5}"), -EINVAL);
    ck_assert_str_eq(err, "/etc/osprey.json: max_num_seqs: 1.5 is not an integer");
    ck_assert_int_eq(parse_json(&c, "{\"port\": 1e300}"), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "is out of range [0, 65535]"));
    ck_assert_int_eq(parse_json(&c, "{\"enforce_eager\": \"yes\"}"), -EINVAL);
    ck_assert_str_eq(err, "/etc/osprey.json: enforce_eager: expected true or false, got a string");
    ck_assert_int_eq(parse_json(&c, "{\"host\": null}"), -EINVAL);
    ck_assert_str_eq(err, "/etc/osprey.json: host: expected a string, got null");
    ck_assert_int_eq(parse_json(&c, "{\"block_size\": {\"a\": 1}}"), -EINVAL);
    ck_assert_str_eq(err, "/etc/osprey.json: block_size: expected an integer, got an object");
    ck_assert_int_eq(parse_json(&c, "{\"cuda_graph_sizes\": [1, \"2\"]}"), -EINVAL);
    ck_assert_str_eq(err, "/etc/osprey.json: cuda_graph_sizes: expected an array of integers (or a string "
                          "\"1,2,4\"), got an array holding a string");
    ck_assert_int_eq(parse_json(&c, "{\"cors_origins\": [\"a,b\"]}"), -EINVAL);
    ck_assert_str_eq(err, "/etc/osprey.json: cors_origins: \"a,b\" contains a comma");
    ck_assert_int_eq(parse_json(&c, "{\"max_body_bytes\": \"2GiB\"}"), -EINVAL);
    ck_assert_str_eq(err, "/etc/osprey.json: max_body_bytes: \"2GiB\" is out of range [1KiB, 1GiB]");
    /* Lists may also be a string, as the flag would spell them. */
    ck_assert_int_eq(parse_json(&c, "{\"cuda_graph_sizes\": \"4,1\"}"), 0);
    ck_assert_int_eq(c.num_cuda_graph_sizes, 2);
    ck_assert_int_eq(c.cuda_graph_sizes[0], 1);
    config_fini(&c);
}
END_TEST

START_TEST(json_unknown_duplicate_and_malformed_are_errors)
{
    struct osprey_config c;

    config_init(&c);
    ck_assert_int_eq(parse_json(&c, "{\"max_num_seq\": 4}"), -EINVAL);
    ck_assert_str_eq(err, "/etc/osprey.json: unknown key \"max_num_seq\" (did you mean \"max_num_seqs\"?)");
    ck_assert_int_eq(parse_json(&c, "{\"completely_different\": 4}"), -EINVAL);
    ck_assert_str_eq(err, "/etc/osprey.json: unknown key \"completely_different\"");
    ck_assert_int_eq(parse_json(&c, "{\"config\": \"/x.json\"}"), -EINVAL);
    ck_assert_str_eq(err, "/etc/osprey.json: config: not allowed in a config file (give it as a flag)");
    ck_assert_int_eq(parse_json(&c, "{\"port\": 1, \"port\": 2}"), -EINVAL);
    ck_assert_str_eq(err, "/etc/osprey.json: port: given twice");
    ck_assert_int_eq(parse_json(&c, "[1, 2]"), -EINVAL);
    ck_assert_str_eq(err, "/etc/osprey.json: expected a JSON object of options, got an array");
    ck_assert_int_eq(parse_json(&c, "{\n  \"port\": 1,\n  \"host\": ,\n}"), -EINVAL);
    ck_assert_str_eq(err, "/etc/osprey.json: not valid JSON (line 3, column 11)");
    ck_assert_int_eq(parse_json(&c, ""), -EINVAL);
    ck_assert_int_eq(parse_json(&c, "{}"), 0);
    config_fini(&c);
}
END_TEST

/* ---- flags ---- */

START_TEST(unknown_flags_and_missing_values_are_errors)
{
    ck_assert_str_eq(load_err(no_env, ARGV("--max-num-seq", "4")),
                     "unknown flag \"--max-num-seq\" (did you mean --max-num-seqs?)");
    ck_assert_str_eq(load_err(no_env, ARGV("--max_num_seqs=4")),
                     "unknown flag \"--max_num_seqs\" (did you mean --max-num-seqs?)");
    ck_assert_str_eq(load_err(no_env, ARGV("--zzzzzzzz")), "unknown flag \"--zzzzzzzz\" (see --help)");
    ck_assert_str_eq(load_err(no_env, ARGV("-p", "80")), "unknown flag \"-p\" (see --help)");
    ck_assert_str_eq(load_err(no_env, ARGV("/srv/model")), "unexpected argument \"/srv/model\" (see --help)");
    ck_assert_str_eq(load_err(no_env, ARGV("--model", "/m", "--port")), "--port: needs a value");
    ck_assert_str_eq(load_err(no_env, ARGV("--port", "--host", "x")), "--port: needs a value");
    ck_assert_str_eq(load_err(no_env, ARGV("--")), "unknown flag \"--\" (see --help)");
}
END_TEST

START_TEST(help_prints_and_returns_one_even_among_bad_flags)
{
    struct osprey_config c;
    int saved = dup(1), null = open("/dev/null", O_WRONLY);

    fflush(stdout);
    dup2(null, 1);
    ck_assert_int_eq(load(&c, no_env, ARGV("--help")), 1);
    config_fini(&c);
    ck_assert_int_eq(load(&c, no_env, ARGV("--bogus", "-h")), 1);
    config_fini(&c);
    fflush(stdout);
    dup2(saved, 1);
    close(null);
    close(saved);
}
END_TEST

/* ---- help and Markdown ---- */

START_TEST(help_and_markdown_list_every_option_of_the_brief)
{
    char *help = capture(config_print_help), *md = capture(config_print_markdown);
    int help_rows = count_lines_starting(help, "  --"), md_rows = count_lines_starting(md, "| `--");

    ck_assert_int_eq(help_rows, md_rows);
    ck_assert_int_eq(help_rows, NUM_BRIEF_FLAGS);
    for (int i = 0; i < NUM_BRIEF_FLAGS; i++) {
        char row[80], env[80];
        snprintf(row, sizeof row, "\n  %s ", brief_flags[i]);
        ck_assert_msg(strstr(help, row), "%s missing from --help", brief_flags[i]);
        snprintf(row, sizeof row, "| `%s", brief_flags[i]);
        ck_assert_msg(strstr(md, row), "%s missing from the Markdown table", brief_flags[i]);
        /* OSPREY_ + upper snake of the flag. */
        snprintf(env, sizeof env, "`OSPREY_");
        for (const char *p = brief_flags[i] + 2; *p; p++) {
            char ch = *p == '-' ? '_' : (char)(*p - 'a' + 'A');
            strncat(env, &ch, 1);
        }
        ck_assert_msg(strstr(md, env), "%s missing from the Markdown table", env);
    }
    ck_assert_ptr_nonnull(strstr(help, "usage: osprey serve"));
    ck_assert_ptr_nonnull(strstr(md, "`--backend auto\\|cpu\\|cuda`"));
    free(help);
    free(md);
}
END_TEST

/* ---- the example config ---- */

START_TEST(example_config_loads_and_names_every_file_option)
{
    struct osprey_config c;
    char *text = NULL;
    size_t len;

    ck_assert_int_eq(load(&c, no_env, ARGV("--config", "config/osprey.example.json")), 0);
    ck_assert_str_eq(c.model, "/srv/models/Llama-3.1-8B-Instruct");
    ck_assert_int_eq(c.port, 8000);
    ck_assert_double_eq(c.shutdown_grace, 30);
    config_fini(&c);

    /* Every option a file may hold, except the key itself (it comes as a credential). */
    ck_assert_int_eq(read_file("config/osprey.example.json", &text, &len, err), 0);
    for (int i = 0; i < NUM_BRIEF_FLAGS; i++) {
        char key[80] = { '"' };
        if (!strcmp(brief_flags[i], "--config") || !strncmp(brief_flags[i], "--api-key", 9))
            continue;
        for (const char *p = brief_flags[i] + 2; *p; p++)
            key[strlen(key)] = *p == '-' ? '_' : *p;
        strcat(key, "\":");
        ck_assert_msg(strstr(text, key), "%s missing from the example", key);
    }
    free(text);
}
END_TEST

/* ---- secrets, the key file, derived values ---- */

START_TEST(dump_masks_the_api_key)
{
    struct osprey_config c;
    char *out;

    ck_assert_int_eq(load(&c, no_env, ARGV("--model", "/m", "--api-key", "sk-test-0123456789abcdef")), 0);
    dumped_config = &c;
    out = capture(dump_it);
    ck_assert_ptr_nonnull(strstr(out, "api_key = ****cdef\n"));
    ck_assert_ptr_null(strstr(out, "0123456789"));
    ck_assert_ptr_nonnull(strstr(out, "max_num_seqs = 256\n"));
    ck_assert_ptr_nonnull(strstr(out, "max_body_bytes = 1MiB\n"));
    free(out);
    config_fini(&c);

    /* A short key gives nothing away. */
    ck_assert_int_eq(load(&c, no_env, ARGV("--model", "/m", "--api-key", "abc123")), 0);
    out = capture(dump_it);
    ck_assert_ptr_nonnull(strstr(out, "api_key = ****\n"));
    ck_assert_ptr_null(strstr(out, "123"));
    free(out);
    config_fini(&c);
}
END_TEST

START_TEST(dump_reads_back_as_the_same_config)
{
    struct osprey_config a, b;
    char *first, *second, *argv[64] = { "serve" }, *line, *save = NULL;
    int argc = 1;

    ck_assert_int_eq(load(&a, no_env, ARGV("--model", "/m", "--kv-cache-memory", "1.5G", "--cors-origins",
                                           "https://a.example,https://b.example", "--idle-timeout", "250ms",
                                           "--seed", "42", "--no-enable-prefix-caching")), 0);
    dumped_config = &a;
    first = capture(dump_it);
    /* Each "key = value" line as --key=value. */
    char *copy = strdup(first);
    for (line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *eq = strstr(line, " = "), *flag;
        if (!eq || !strcmp(eq + 3, "(none)"))
            continue;
        *eq = '\0';
        ck_assert_int_ne(asprintf(&flag, "--%s=%s", line, eq + 3), -1);
        for (char *p = flag + 2; *p != '='; p++)
            *p = *p == '_' ? '-' : *p;
        argv[argc++] = flag;
    }
    argv[argc] = NULL;
    ck_assert_int_eq(load(&b, no_env, argv), 0);
    dumped_config = &b;
    second = capture(dump_it);
    ck_assert_str_eq(first, second);
    ck_assert_uint_eq(b.kv_cache_memory, 1610612736u);
    for (int i = 1; i < argc; i++)
        free(argv[i]);
    free(copy);
    free(first);
    free(second);
    config_fini(&a);
    config_fini(&b);
}
END_TEST

/* A fraction is dumped with the digits it needs to read back as itself (plain %g would
 * give 0.123457 and 1, other values), and no more (0.9, not 0.90000000000000002). */
START_TEST(fractions_are_dumped_with_the_digits_they_need)
{
    struct osprey_config c;
    char *out;

    ck_assert_int_eq(load(&c, no_env, ARGV("--model", "/m", "--gpu-memory-utilization", "0.123456789",
                                           "--idle-timeout", "1.0000001")), 0);
    dumped_config = &c;
    out = capture(dump_it);
    ck_assert_ptr_nonnull(strstr(out, "gpu_memory_utilization = 0.123456789\n"));
    ck_assert_ptr_nonnull(strstr(out, "idle_timeout = 1.0000001\n"));
    ck_assert_ptr_nonnull(strstr(out, "request_timeout = 30\n"));
    free(out);
    config_fini(&c);
    ck_assert_int_eq(load(&c, no_env, ARGV("--model", "/m")), 0);
    out = capture(dump_it);
    ck_assert_ptr_nonnull(strstr(out, "gpu_memory_utilization = 0.9\n"));
    free(out);
    config_fini(&c);
}
END_TEST

START_TEST(api_key_file_is_read_and_its_newline_dropped)
{
    char *path = temp_file("sk-from-file-0123456789\r\n"), *empty = temp_file("\n");
    struct osprey_config c;
    char msg[ERR_LEN];

    ck_assert_int_eq(load(&c, no_env, ARGV("--model", "/m", "--api-key-file", path)), 0);
    ck_assert_str_eq(c.api_key, "sk-from-file-0123456789");
    ck_assert_str_eq(c.api_key_file, path);
    config_fini(&c);

    ck_assert_str_eq(load_err(no_env, ARGV("--model", "/m", "--api-key", "k", "--api-key-file", path)),
                     "--api-key and --api-key-file are both set; keep one");
    snprintf(msg, sizeof msg, "--api-key-file: %s: is empty", empty);
    ck_assert_str_eq(load_err(no_env, ARGV("--model", "/m", "--api-key-file", empty)), msg);
    ck_assert_str_eq(load_err(no_env, ARGV("--model", "/m", "--api-key-file", "/nonexistent/key")),
                     "--api-key-file: /nonexistent/key: No such file or directory");
    remove_temp(path);
    remove_temp(empty);
}
END_TEST

START_TEST(served_model_name_defaults_to_the_folder_basename)
{
    struct osprey_config c;

    ck_assert_int_eq(load(&c, no_env, ARGV("--model", "/srv/models/Llama-3.1-8B//")), 0);
    ck_assert_str_eq(c.served_model_name, "Llama-3.1-8B");
    config_fini(&c);
    ck_assert_int_eq(load(&c, no_env, ARGV("--model", "tiny")), 0);
    ck_assert_str_eq(c.served_model_name, "tiny");
    config_fini(&c);
    ck_assert_int_eq(load(&c, no_env, ARGV("--model", "/srv/x", "--served-model-name", "prod")), 0);
    ck_assert_str_eq(c.served_model_name, "prod");
    config_fini(&c);
}
END_TEST

/* ---- checks across options ---- */

START_TEST(validate_catches_contradictions)
{
    ck_assert_str_eq(load_err(no_env, ARGV("--port", "1")), "--model is required: the Hugging Face model folder to serve");
    ck_assert_str_eq(load_err(no_env, ARGV("--model", "/m", "--max-num-seqs", "512", "--max-num-batched-tokens", "256")),
                     "--max-num-batched-tokens 256 is less than --max-num-seqs 512");
    ck_assert_str_eq(load_err(no_env, ARGV("--model", "/m", "--max-model-len", "4096", "--max-prompt-tokens", "8192")),
                     "--max-prompt-tokens 8192 is more than --max-model-len 4096");
    ck_assert_str_eq(load_err(no_env, ARGV("--model", "/m", "--max-model-len", "4096", "--max-tokens-limit", "4097")),
                     "--max-tokens-limit 4097 is more than --max-model-len 4096");
    ck_assert_str_eq(load_err(no_env, ARGV("--model", "/m", "--log-prompts")),
                     "--log-prompts needs --log-level debug (prompts are never logged otherwise)");
    ck_assert_str_eq(load_err(no_env, ARGV("--model", "/m", "--host", "")),
                     "--host is empty: give an address to listen on, such as 127.0.0.1");
}
END_TEST

/* ---- lifetime and hostile input ---- */

START_TEST(fini_frees_everything_and_clears_pointers)
{
    struct osprey_config c;

    ck_assert_int_eq(load(&c, no_env, ARGV("--model", "/m", "--api-key", "k", "--cors-origins", "a,b,c",
                                           "--served-model-name", "n", "--cuda-graph-sizes", "1,2")), 0);
    config_fini(&c);
    ck_assert_ptr_null(c.model);
    ck_assert_ptr_null(c.served_model_name);
    ck_assert_ptr_null(c.host);
    ck_assert_ptr_null(c.api_key);
    ck_assert_ptr_null(c.cors_origins);
    ck_assert_int_eq(c.num_cors_origins, 0);
    ck_assert_ptr_null(c.cuda_graph_sizes);
    ck_assert_int_eq(c.num_cuda_graph_sizes, 0);
    config_fini(&c);  /* twice is harmless */
}
END_TEST

/* Random splices of JSON fragments and flag words: every call returns, 0 or an error. */
START_TEST(random_input_never_crashes)
{
    static const char *const frags[] = {
        "{", "}", "[", "]", ",", ":", "\"port\"", "\"cuda_graph_sizes\"", "\"cors_origins\"", "\"kv_cache_memory\"",
        "1", "-1", "1e400", "0.5", "\"2GiB\"", "\"a,b\"", "true", "null", "\"\\u0000\"", "\"\\ud800\"", " ", "\n",
        "\"seed\"", "18446744073709551616", "\"max_num_seqs\"", "\"1.5G\"", "\xff", "\"",
    };
    static const char *const words[] = {
        "--port", "--port=", "--kv-cache-memory", "1.5G", "--cors-origins", ",,,", "--no-enforce-eager",
        "--enforce-eager", "yes", "-", "--", "--=", "--api-key-file", "/dev/null", "--cuda-graph-sizes",
        "1,2,99999", "--seed", "-0", "--block-size", "16", "--model", "/m", "x", "--max-body-bytes", "1.9999999G",
    };
    uint64_t state = 0x9E3779B97F4A7C15ull;
    struct osprey_config c;
    char json[512];
    int saved = log_level;

    log_level = LL_ERR;
    for (int iter = 0; iter < 3000; iter++) {
        size_t n = 0;
        char *argv[12] = { "serve" };
        int argc = 1;

        state = state * 6364136223846793005ull + 1442695040888963407ull;
        json[0] = '\0';
        for (int k = 0; k < 1 + (int)(state >> 60); k++) {
            state = state * 6364136223846793005ull + 1442695040888963407ull;
            const char *f = frags[(state >> 33) % (sizeof frags / sizeof frags[0])];
            if (n + strlen(f) + 1 < sizeof json) {
                strcat(json, f);
                n += strlen(f);
            }
        }
        config_init(&c);
        ck_assert_int_le(config_parse_json(&c, json, n, "fuzz", err), 0);
        config_fini(&c);

        for (int k = 0; k < 10; k++) {
            state = state * 6364136223846793005ull + 1442695040888963407ull;
            argv[argc++] = (char *)words[(state >> 33) % (sizeof words / sizeof words[0])];
        }
        argv[argc] = NULL;
        config_init(&c);
        ck_assert_int_le(config_load(&c, argc, argv, no_env, err), 0);
        config_fini(&c);
    }
    log_level = saved;
}
END_TEST

Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("config");

    tcase_add_test(tc, defaults_are_the_documented_values);
    tcase_add_test(tc, defaults_validate_once_a_model_is_named);
    tcase_add_test(tc, json_alone_sets_every_kind_of_value);
    tcase_add_test(tc, env_alone_sets_options_and_ignores_other_variables);
    tcase_add_test(tc, unknown_env_variables_are_ignored_not_fatal);
    tcase_add_test(tc, flags_alone_take_both_spellings);
    tcase_add_test(tc, flags_beat_env_beat_file_beat_defaults);
    tcase_add_test(tc, config_flag_beats_osprey_config);
    tcase_add_test(tc, missing_config_file_is_an_error_naming_it);
    tcase_add_test(tc, integers_accept_their_range_and_nothing_else);
    tcase_add_test(tc, block_size_must_be_one_of_the_kernel_sizes);
    tcase_add_test(tc, seed_takes_the_whole_uint64_range);
    tcase_add_test(tc, sizes_read_decimal_and_binary_units_as_spelled);
    tcase_add_test(tc, bad_sizes_are_errors);
    tcase_add_test(tc, every_command_reads_a_size_as_serve_does);
    tcase_add_test(tc, every_command_fills_the_engine_options_the_same_way);
    tcase_add_test(tc, offline_commands_refuse_what_they_do_not_take);
    tcase_add_test(tc, fractions_exclude_zero_and_reject_non_numbers);
    tcase_add_test(tc, durations_take_seconds_or_a_unit);
    tcase_add_test(tc, booleans_take_words_a_bare_flag_and_no_prefix);
    tcase_add_test(tc, strings_are_bounded_and_empty_means_unset);
    tcase_add_test(tc, enums_name_their_choices);
    tcase_add_test(tc, graph_sizes_come_back_sorted_and_unique);
    tcase_add_test(tc, cors_star_must_stand_alone);
    tcase_add_test(tc, json_wrong_kinds_name_file_key_and_kinds);
    tcase_add_test(tc, json_unknown_duplicate_and_malformed_are_errors);
    tcase_add_test(tc, unknown_flags_and_missing_values_are_errors);
    tcase_add_test(tc, help_prints_and_returns_one_even_among_bad_flags);
    tcase_add_test(tc, help_and_markdown_list_every_option_of_the_brief);
    tcase_add_test(tc, example_config_loads_and_names_every_file_option);
    tcase_add_test(tc, dump_masks_the_api_key);
    tcase_add_test(tc, dump_reads_back_as_the_same_config);
    tcase_add_test(tc, fractions_are_dumped_with_the_digits_they_need);
    tcase_add_test(tc, api_key_file_is_read_and_its_newline_dropped);
    tcase_add_test(tc, served_model_name_defaults_to_the_folder_basename);
    tcase_add_test(tc, validate_catches_contradictions);
    tcase_add_test(tc, fini_frees_everything_and_clears_pointers);
    tcase_add_test(tc, random_input_never_crashes);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);
    return s;
}
