/* fixtures.h — helpers for the safetensors, model and gen_model suites: a scratch
 * folder under $OSPREY_TEST_TMP (else /tmp), removed again, small file utilities, the
 * config.json parsing the model-family suites share, and the tiny engine (with its output
 * collector) that the grammar suites drive. */
#ifndef OSPREY_TEST_FIXTURES_H
#define OSPREY_TEST_FIXTURES_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/base/finish_reason.h"   /* enum finish_reason */

#define FIXTURE_PATH 4096

/* Creates a fresh empty folder; path gets FIXTURE_PATH bytes. Returns 0 or -errno. */
int fixture_tmpdir(char *path);
/* Removes a folder and everything in it. */
void fixture_rmtree(const char *path);
/* Writes len bytes to dir/name (dir may be NULL: name is the path). Returns 0 or -errno. */
int fixture_write(const char *dir, const char *name, const void *data, size_t len);
/* Generates a preset model into dir with gen_model_write; returns its result. */
int fixture_gen(const char *dir, const char *preset, uint64_t seed);
/* XXH64 of a whole file; 0 when it cannot be read. */
uint64_t fixture_hash(const char *dir, const char *name);
/* Rewriting a folder's weights: every tensor of set as a write descriptor pointing at its
 * mapped data, with room for one more (freed by fixture_replace_weights); then
 * dir/model.safetensors replaced by the n tensors of w, set closed and w freed. */
struct st_set;
struct st_write_tensor;
struct st_write_tensor *fixture_write_list(const struct st_set *set);
void fixture_replace_weights(const char *dir, struct st_set *set, struct st_write_tensor *w, int n);

/* Config parsing for the model-family suites (gemma, moe, phi3): json parsed as the
 * config.json of a folder named "m" (FIXTURE_CONFIG_PATH, which errors name). */
#define FIXTURE_CONFIG_PATH "m/config.json"
struct model_config;
/* model_config_parse of the whole string; its result. */
int fixture_config_parse(struct model_config *c, const char *json, char *err);
/* Parses json and fails the test (with the error) when it is refused. */
void fixture_config_ok(struct model_config *c, const char *json);
/* Unchecked fixtures for cases that expect warnings: quiet (LL_WARN) before, loud (LL_INFO) after. */
void fixture_quiet(void);
void fixture_loud(void);

/* One engine request's output, gathered by fixture_out_cb (the request's cb, user = the
 * fixture_out) for the suites that drive the engine with grammars. */
struct fixture_out {
    pthread_mutex_t m;
    pthread_cond_t c;
    char text[8192];           /* the text so far, NUL-terminated; what does not fit is dropped */
    size_t len;                /* bytes */
    bool done;
    enum finish_reason why;
    char error[256];           /* FINISH_ERROR's reason, else "" */
};
struct engine_output;
/* Zeroes o and initializes its lock and condition. */
void fixture_out_init(struct fixture_out *o);
void fixture_out_cb(void *user, const struct engine_output *eo);
/* Waits until the request finished, then destroys o's lock and condition. */
void fixture_out_wait(struct fixture_out *o);

/* The grammar suites' engine: gen-model's "tiny" preset (seed 11) in a fresh scratch folder
 * (model_dir, FIXTURE_PATH bytes), its tokenizer and grammar vocabulary; the test fails
 * when any of them does. fixture_grammar_fini destroys them (eng, which may be NULL, first)
 * and removes the folder. */
struct tokenizer;
struct grammar_vocab;
struct engine;
void fixture_grammar_init(char *model_dir, struct tokenizer **tok, struct grammar_vocab **vocab);
void fixture_grammar_fini(char *model_dir, struct engine *eng, struct tokenizer *tok,
                          struct grammar_vocab *vocab);
/* A started CPU engine on model_dir (2 threads, 32 sequences, 512 batched tokens, context
 * 1024, seed 5) with a KV cache of kv_cache_bytes; the test fails when it cannot start. */
struct engine *fixture_engine_start(const char *model_dir, const struct tokenizer *tok,
                                    size_t kv_cache_bytes);

#endif
