/* config.h — every option of `osprey serve` in one struct, filled from (in increasing
 * precedence) built-in defaults, a JSON file (--config), OSPREY_* environment variables and
 * command-line flags. Each option is described once, in the table of config/options.c; the
 * parsers of all three sources, the checks, --help and the README's Markdown table all come
 * from that table. Limits are configuration, with errors that name the source and option. */
#ifndef OSPREY_CONFIG_H
#define OSPREY_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Field names are the JSON keys; the flag is the key with '-' for '_' (--max-num-seqs), the
 * environment variable OSPREY_ + the key in upper case (OSPREY_MAX_NUM_SEQS). Strings are
 * malloc'd and owned by the config (NULL = unset) unless said otherwise; enums point to
 * static strings. */
struct osprey_config {
    /* model and listener */
    char *model;                   /* Hugging Face model folder; required */
    char *served_model_name;       /* the "model" clients name; config_load sets the folder's basename */
    char *host;                    /* address to listen on */
    int port;                      /* TCP port; 0 = any free port */
    const char *backend;           /* static: "auto" (cuda when a GPU is present), "cpu", "cuda" */
    char *config;                  /* the JSON file these options came from, or NULL */

    /* engine */
    size_t kv_cache_memory;        /* bytes for the KV cache; 0 = derive (GPU fraction / CPU default) */
    double gpu_memory_utilization; /* fraction of GPU memory osprey may use, (0, 1] */
    int block_size;                /* tokens per KV block: 1, 8, 16, 32, 64 or 128 */
    int max_num_seqs;              /* requests in one step */
    int max_num_batched_tokens;    /* tokens in one step (the scheduler's budget) */
    int max_model_len;             /* tokens of context; 0 = the model's max_position_embeddings */
    bool enable_prefix_caching;
    int *cuda_graph_sizes;         /* [num_cuda_graph_sizes] decode batch sizes to capture, ascending, unique */
    int num_cuda_graph_sizes;
    int *piecewise_graph_sizes;    /* [num_piecewise_graph_sizes] token counts of the piecewise
                                    * graphs of mixed and prefill steps; none = eager */
    int num_piecewise_graph_sizes;
    bool enforce_eager;            /* no CUDA graphs */
    bool fused_rope_cache;         /* RoPE fused with the KV-cache write (CUDA) */
    int tensor_parallel_size;      /* ranks the model is sharded over (engine/runner_tp.h) */
    int threads;                   /* cpu backend worker threads; 0 = all cores */
    const char *kv_cache_dtype;    /* static: "auto", "bf16", "fp8" */
    bool calculate_kv_scales;      /* fp8 KV scales from the first prefill instead of the checkpoint's */
    const char *quantization;      /* static: "none", "fp8" (quantize float weights at load) */
    const char *load_format;       /* static: "auto", "safetensors", "dummy" (random weights) */
    uint64_t seed;                 /* sampling seed base for requests without one; 0 = random */

    /* limits */
    int max_waiting_requests;      /* waiting-queue bound; past it 503 + Retry-After */
    int max_connections;           /* concurrent HTTP connections */
    int max_connections_per_client;   /* of them from one client address; 0 = no cap */
    size_t max_body_bytes;         /* request body, bytes */
    size_t max_header_bytes;       /* request line and headers, bytes */
    int max_prompt_tokens;         /* 0 = the model length */
    int max_tokens_limit;          /* largest max_tokens a request may ask; 0 = the model length */
    int max_n;                     /* choices per request */
    int max_stop_strings;          /* stop strings per request */
    int max_stop_length;           /* bytes per stop string */
    int max_logprobs;              /* top_logprobs per token */
    const char *tool_call_parser;  /* static: "auto" (from the chat template), "none", "llama3_json", "hermes", "mistral" */
    const char *scheduling_policy; /* static: "fcfs", or "priority" (requests' priority orders the queue) */
    int grammar_cache_size;        /* compiled grammars kept for requests that repeat them */
    size_t stream_buffer_bytes;    /* output buffered per request before it waits for the client */
    size_t max_response_bytes;     /* a non-streamed answer's body, bytes */
    double request_timeout;        /* seconds to receive a whole request; 0 = none */
    double idle_timeout;           /* seconds a connection may sit idle; 0 = none */
    double shutdown_grace;         /* seconds SIGTERM lets running requests finish */

    /* security */
    char *api_key;                 /* secret: Bearer key clients must send, or NULL (no auth) */
    char *api_key_file;            /* file the key was read from (config_load), or NULL */
    bool metrics_require_key;      /* /metrics needs the key too when one is set */
    char **cors_origins;           /* [num_cors_origins] allowed origins; "*" = any; none = no CORS */
    int num_cors_origins;

    /* logging */
    const char *log_level;         /* static: "err", "warn", "info", "debug" */
    const char *log_format;        /* static: "text", "json" */
    bool log_prompts;              /* log prompts and outputs (needs log_level debug) */
};

/* Built-in defaults. Never fails: on out-of-memory the graph-size list is left empty. */
void config_init(struct osprey_config *c);
/* Frees strings and lists and leaves every pointer NULL; config_init makes it usable again. */
void config_fini(struct osprey_config *c);

/* A JSON file: one flat object whose keys are the options' JSON keys. Every key it names
 * overrides the current value; unknown keys, wrong types and bad values are errors naming
 * the path and key ("/etc/osprey.json: max_num_seqs: expected an integer, got a string").
 * Returns 0 or a negative errno; on error the config may be partly updated. */
int config_load_file(struct osprey_config *c, const char *path, char *err);
/* The same from memory (the fuzz entry): path only names the source in errors. */
int config_parse_json(struct osprey_config *c, const char *json, size_t len, const char *path,
                      char *err);

/* OSPREY_* variables of envp (NULL-terminated "NAME=value" strings, e.g. environ). Unknown
 * OSPREY_* names are logged as warnings, not errors (the test runner's OSPREY_TEST_LOG). */
int config_load_env(struct osprey_config *c, char **envp, char *err);

/* Everything `osprey serve` needs, in order: defaults must already be set (config_init);
 * the file named by --config (or OSPREY_CONFIG), then envp, then the flags, so flags win;
 * then --api-key-file is read into api_key, served_model_name defaults to the model folder's
 * basename, and config_validate runs. argv is what a subcommand receives: argv[0] is the
 * subcommand's name and is skipped. Flags take "--flag value" or "--flag=value"; a boolean
 * flag alone means true, --no-FLAG false. Returns 0, 1 after printing --help to stdout
 * (nothing else is done), or a negative errno with the message in err. */
int config_load(struct osprey_config *c, int argc, char **argv, char **envp, char *err);

/* Checks across options (a model is named, max_num_batched_tokens >= max_num_seqs, limits
 * within max_model_len when both are set, ...). 0 or -EINVAL with a message. */
int config_validate(const struct osprey_config *c, char *err);

/* One option by its key ("kv_cache_memory"), from text as a flag would give it: what the
 * offline commands (generate, bench) use for the engine options they share with serve, so
 * that a value parses the same whichever command reads it. src names the source in errors
 * ("--kv-cache-memory"). Returns 0, -ENOENT (no such key), -EINVAL or -ENOMEM (message in
 * err). */
int config_set(struct osprey_config *c, const char *key, const char *text, const char *src, char *err);
/* Whether key names a boolean option (a bare flag means true, --no-FLAG false). */
bool config_is_bool(const char *key);

/* `osprey serve --help`: usage and one line per option with its default. */
void config_print_help(FILE *f);
/* The --help lines of the options named by keys[0..n) (same layout as config_print_help). */
void config_print_options(FILE *f, const char *const *keys, int n);
/* The README's option table in Markdown: one row per option (flag, env, JSON key, type,
 * default, meaning). */
void config_print_markdown(FILE *f);
/* The effective configuration, one "key = value" line per option, the API key masked as
 * "****" plus its last 4 characters (only "****" for keys shorter than 12). */
void config_dump(const struct osprey_config *c, FILE *f);

#endif
