/* fixtures.c — scratch folders and file helpers for the model-folder suites, config parsing
 * for the model-family suites, and the grammar suites' tiny engine (see fixtures.h). */

#include "fixtures.h"

#include <check.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "engine/base/log.h"     /* log_level */
#include "engine/engine.h"       /* struct engine_output, engine_create */
#include "engine/grammar/grammar.h"   /* grammar_vocab_create */
#include "engine/tokenizer/tokenizer.h"
#include "engine/model/gen_model.h"
#include "engine/model/model.h"   /* model_config_parse */
#include "engine/model/safetensors.h"   /* st_write, st_tensor */
#include "engine/base/util.h"

int fixture_tmpdir(char *path)
{
    const char *base = getenv("OSPREY_TEST_TMP");

    snprintf(path, FIXTURE_PATH, "%s/osprey-model-XXXXXX", base && *base ? base : "/tmp");
    return mkdtemp(path) ? 0 : -errno;
}

static int unlink_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}

void fixture_rmtree(const char *path)
{
    nftw(path, unlink_cb, 16, FTW_DEPTH | FTW_PHYS);
}

int fixture_write(const char *dir, const char *name, const void *data, size_t len)
{
    char path[FIXTURE_PATH + 256];
    FILE *f;
    int rc = 0;

    if (dir)
        snprintf(path, sizeof path, "%s/%s", dir, name);
    else
        snprintf(path, sizeof path, "%s", name);
    if (!(f = fopen(path, "wb")))
        return -errno;
    if (fwrite(data, 1, len, f) != len)
        rc = -EIO;
    if (fclose(f) != 0)
        rc = -EIO;
    return rc;
}

int fixture_gen(const char *dir, const char *preset, uint64_t seed)
{
    struct gen_model_opts o = { .config = preset, .out_dir = dir, .seed = seed };
    char err[ERR_LEN] = "";
    int rc = gen_model_write(&o, NULL, err);

    if (rc)
        fprintf(stderr, "fixture_gen %s: %s\n", preset, err);
    return rc;
}

uint64_t fixture_hash(const char *dir, const char *name)
{
    char path[FIXTURE_PATH + 256], *buf;
    size_t len;
    uint64_t h;

    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (read_file(path, &buf, &len, NULL))
        return 0;
    h = XXH64(buf, len, 0);
    free(buf);
    return h;
}

int fixture_config_parse(struct model_config *c, const char *json, char *err)
{
    return model_config_parse(c, json, strlen(json), NULL, 0, FIXTURE_CONFIG_PATH, err);
}

void fixture_config_ok(struct model_config *c, const char *json)
{
    char err[ERR_LEN] = "";

    ck_assert_msg(fixture_config_parse(c, json, err) == 0, "parse failed: %s", err);
}

void fixture_quiet(void)
{
    log_level = LL_WARN;
}

void fixture_loud(void)
{
    log_level = LL_INFO;
}

void fixture_out_init(struct fixture_out *o)
{
    memset(o, 0, sizeof *o);
    pthread_mutex_init(&o->m, NULL);
    pthread_cond_init(&o->c, NULL);
}

void fixture_out_cb(void *user, const struct engine_output *eo)
{
    struct fixture_out *c = user;

    pthread_mutex_lock(&c->m);
    if (eo->text_len && c->len + eo->text_len < sizeof c->text) {
        memcpy(c->text + c->len, eo->text, eo->text_len);
        c->len += eo->text_len;
        c->text[c->len] = '\0';
    }
    if (eo->finished) {
        c->done = true;
        c->why = eo->finish_reason;
        snprintf(c->error, sizeof c->error, "%s", eo->error ? eo->error : "");
        pthread_cond_signal(&c->c);
    }
    pthread_mutex_unlock(&c->m);
}

void fixture_out_wait(struct fixture_out *o)
{
    pthread_mutex_lock(&o->m);
    while (!o->done)
        pthread_cond_wait(&o->c, &o->m);
    pthread_mutex_unlock(&o->m);
    pthread_mutex_destroy(&o->m);
    pthread_cond_destroy(&o->c);
}

void fixture_grammar_init(char *model_dir, struct tokenizer **tok, struct grammar_vocab **vocab)
{
    char err[ERR_LEN] = "";

    ck_assert_int_eq(fixture_tmpdir(model_dir), 0);
    ck_assert_int_eq(fixture_gen(model_dir, "tiny", 11), 0);
    ck_assert_msg(tokenizer_load(tok, model_dir, err) == 0, "%s", err);
    ck_assert_msg(grammar_vocab_create(vocab, *tok, err) == 0, "%s", err);
}

void fixture_grammar_fini(char *model_dir, struct engine *eng, struct tokenizer *tok,
                          struct grammar_vocab *vocab)
{
    engine_destroy(eng);
    grammar_vocab_destroy(vocab);
    tokenizer_destroy(tok);
    fixture_rmtree(model_dir);
}

struct engine *fixture_engine_start(const char *model_dir, const struct tokenizer *tok,
                                    size_t kv_cache_bytes)
{
    struct engine_options o;
    struct engine *e = NULL;
    char err[ERR_LEN] = "";

    engine_options_init(&o);
    o.model_dir = model_dir;
    o.backend = "cpu";
    o.tokenizer = tok;
    o.num_threads = 2;
    o.kv_cache_bytes = kv_cache_bytes;
    o.max_num_seqs = 32;
    o.max_num_batched_tokens = 512;
    o.max_model_len = 1024;
    o.seed = 5;
    ck_assert_msg(engine_create(&e, &o, err) == 0, "engine_create: %s", err);
    ck_assert_msg(engine_start(e, err) == 0, "engine_start: %s", err);
    return e;
}

/* Every tensor of set as a write descriptor pointing at its mapped data; room for one more. */
struct st_write_tensor *fixture_write_list(const struct st_set *set)
{
    int n = st_num_tensors(set);
    struct st_write_tensor *w = calloc((size_t)n + 1, sizeof *w);

    ck_assert_ptr_nonnull(w);
    for (int i = 0; i < n; i++) {
        const struct tensor_ref *t = st_tensor(set, i);

        w[i] = (struct st_write_tensor){ .name = t->name, .dtype = t->dtype, .ndim = t->ndim,
                                         .data = t->data };
        memcpy(w[i].shape, t->shape, sizeof t->shape);
    }
    return w;
}

/* Replaces dir/model.safetensors by the n tensors of w, then closes set (w points into it). */
void fixture_replace_weights(const char *dir, struct st_set *set, struct st_write_tensor *w, int n)
{
    char err[ERR_LEN] = "", tmp[FIXTURE_PATH + 64], path[FIXTURE_PATH + 64];

    snprintf(tmp, sizeof tmp, "%s/rewrite.tmp", dir);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    ck_assert_msg(st_write(tmp, w, n, err) == 0, "%s", err);
    st_close(set);
    free(w);
    ck_assert_int_eq(rename(tmp, path), 0);
}
