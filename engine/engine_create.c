/* engine_create.c — building an engine: open the model folder, check the context length,
 * group the layers' KV caches, pick the backend, size the KV cache from the memory given to
 * it, then the runner (weights, buffers, CUDA graphs) and the scheduler. The engine thread
 * starts later, in engine_start (engine.c). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/backend.h"
#include "engine/engine_internal.h"
#include "engine/kv_budget.h"
#include "engine/base/log.h"
#include "engine/runner.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/base/util.h"
#include "engine/weights.h"

void engine_options_init(struct engine_options *o)
{
    memset(o, 0, sizeof *o);
    o->block_size = 16;
    o->max_num_seqs = 256;
    o->max_num_batched_tokens = 8192;
    o->enable_prefix_caching = true;
    o->gpu_memory_utilization = 0.9f;
    o->fused_rope_cache = true;
    o->max_waiting = 1024;
}

int engine_create(struct engine **out, const struct engine_options *o, char *err)
{
    struct engine *e;
    struct runner_options ro;
    struct sched_config sc;
    struct backend_options bo;
    int group_window[KV_MAX_GROUPS], *layer_group = NULL, ng, rc;
    const char *backend = o->backend;
    const char *fault;

    *out = NULL;
    e = calloc(1, sizeof *e);
    if (!e) {
        errf(err, "out of memory");
        return -ENOMEM;
    }
    e->opt = *o;
    e->tok = o->tokenizer;
    pthread_mutex_init(&e->lock, NULL);
    e->rng = o->seed ? o->seed : (uint64_t)(now_s() * 1e9) ^ (uint64_t)(uintptr_t)e;
    fault = getenv("OSPREY_FAULT_STEP");
    if (fault) {
        e->fault_step = strtol(fault, NULL, 10);
        e->fault_sticky = getenv("OSPREY_FAULT_STICKY") != NULL;
        e->fault_hang_ms = getenv("OSPREY_FAULT_HANG_MS") ? strtol(getenv("OSPREY_FAULT_HANG_MS"), NULL, 10) : 0;
        LOG(LL_WARN, "engine", "test fault point armed: step %ld %s%s", e->fault_step,
            e->fault_hang_ms ? "hangs" : "fails", e->fault_sticky ? " with a device error" : "");
    }

    double t_open = now_s();
    rc = model_open(&e->model, o->model_dir, err);
    if (rc != 0)
        goto fail_model;
    LOG(LL_INFO, "engine", "opened %s in %.2f s", o->model_dir, now_s() - t_open);
    const struct model_config *cfg = &e->model.cfg;
    e->max_model_len = o->max_model_len > 0 ? o->max_model_len : cfg->max_position_embeddings;
    if (e->max_model_len > cfg->max_position_embeddings) {
        errf(err, "--max-model-len %d is beyond the model's max_position_embeddings %d",
             e->max_model_len, cfg->max_position_embeddings);
        rc = -EINVAL;
        goto fail;
    }
    for (int i = 0; i < cfg->num_eos_token_ids; i++)
        e->eos_ids[e->num_eos++] = cfg->eos_token_ids[i];
    if (e->num_eos == 0 && e->tok && tokenizer_eos_id(e->tok) >= 0)
        e->eos_ids[e->num_eos++] = tokenizer_eos_id(e->tok);

    layer_group = calloc(cfg->num_layers, sizeof *layer_group);
    if (!layer_group) {
        rc = -ENOMEM;
        goto fail;
    }
    ng = model_kv_groups(cfg, group_window, layer_group, KV_MAX_GROUPS);
    if (ng < 0) {
        errf(err, "%s: more than %d kinds of attention layer", o->model_dir, KV_MAX_GROUPS);
        rc = -EINVAL;
        goto fail;
    }

    if (!backend || !strcmp(backend, "auto"))
        backend = backend_cuda_available() ? "cuda" : "cpu";
    /* Graphs only for decode batches the scheduler can build: at most max_num_seqs. */
    e->graph_sizes = calloc(o->num_graph_sizes + 1, sizeof *e->graph_sizes);
    if (!e->graph_sizes) {
        rc = -ENOMEM;
        goto fail;
    }
    for (int i = 0; i < o->num_graph_sizes; i++)
        if (o->graph_sizes[i] >= 1 && o->graph_sizes[i] <= o->max_num_seqs)
            e->graph_sizes[e->num_graph_sizes++] = o->graph_sizes[i];

    memset(&ro, 0, sizeof ro);
    ro.block_size = o->block_size;
    ro.max_num_batched_tokens = o->max_num_batched_tokens;
    ro.max_num_seqs = o->max_num_seqs;
    ro.max_model_len = e->max_model_len;
    ro.enforce_eager = o->enforce_eager;
    ro.graph_sizes = e->graph_sizes;
    ro.num_graph_sizes = e->num_graph_sizes;
    ro.fused_rope_cache = o->fused_rope_cache;
    memset(&bo, 0, sizeof bo);
    bo.num_threads = o->num_threads;
    if ((rc = runner_backend_options(cfg, &ro, &bo)) != 0) {
        errf(err, "%s: unsupported model shape", o->model_dir);
        goto fail;
    }
    rc = backend_create(&e->be, backend, &bo, err);
    if (rc != 0)
        goto fail;
    ro.num_blocks = kv_budget_blocks(cfg, o, e->be, backend, e->max_model_len, bo.max_tokens,
                                     bo.max_reqs, err);
    if (ro.num_blocks <= 0) {
        rc = -ENOMEM;
        goto fail;
    }
    size_t free0 = 0, free1 = 0, total = 0;
    e->be->ops->mem_info(e->be, &free0, &total);
    rc = runner_create(&e->runner, e->be, &e->model, &ro, err);
    if (rc != 0)
        goto fail;
    if (!strcmp(backend, "cuda") && e->be->ops->mem_info(e->be, &free1, &total) == 0) {
        /* what the runner took beyond its weights and KV cache: activations, cuBLAS
         * workspace, staging, graphs */
        double gib = 1073741824.0, took = (double)(free0 - free1);
        double w = (double)weights_bytes(cfg, dtype_size(e->be->ops->act_dtype));
        double kv = (double)runner_kv_block_bytes(cfg, e->be, o->block_size) * ro.num_blocks;
        LOG(LL_INFO, "engine", "GPU memory: weights %.2f GiB, KV cache %.2f GiB, everything else "
            "%.2f GiB; %.2f of %.2f GiB free", w / gib, kv / gib, (took - w - kv) / gib,
            free1 / gib, total / gib);
    }

    memset(&sc, 0, sizeof sc);
    sc.block_size = o->block_size;
    sc.num_blocks = ro.num_blocks;
    sc.max_num_seqs = o->max_num_seqs;
    sc.max_num_batched_tokens = o->max_num_batched_tokens;
    sc.max_model_len = e->max_model_len;
    sc.enable_prefix_caching = o->enable_prefix_caching;
    sc.num_kv_groups = ng;
    memcpy(sc.group_window, group_window, sizeof group_window);
    sc.eos_ids = e->eos_ids;
    sc.num_eos_ids = e->num_eos;
    sc.batch_capacity_tokens = bo.max_tokens;
    sc.batch_capacity_reqs = bo.max_reqs;
    rc = sched_create(&e->sched, &sc, err);
    if (rc != 0)
        goto fail;

    e->rows = calloc(bo.max_reqs, sizeof *e->rows);
    e->results = calloc(bo.max_reqs, sizeof *e->results);
    e->sampled = calloc(bo.max_reqs, sizeof *e->sampled);
    /* grammar masks cover the model's ids and the tokenizer's (which may have more) */
    e->mask_words = (MAX(e->model.cfg.vocab_size, e->tok ? tokenizer_vocab_size(e->tok) : 0) + 31) / 32;
    e->masks = calloc((size_t)bo.max_reqs * e->mask_words, sizeof *e->masks);
    if (!e->rows || !e->results || !e->sampled || !e->masks) {
        errf(err, "out of memory");
        rc = -ENOMEM;
        goto fail;
    }
    free(layer_group);
    e->stats.healthy = true;
    e->next_id = 1;
    LOG(LL_INFO, "engine", "%s on %s: %d KV blocks of %d tokens (%lld tokens), max_model_len %d, "
        "%d KV-cache group%s", o->model_dir, backend, sc.num_blocks, o->block_size,
        (long long)sc.num_blocks * o->block_size, e->max_model_len, ng, ng == 1 ? "" : "s");
    *out = e;
    return 0;
fail:
    free(layer_group);
    sched_destroy(e->sched);
    runner_destroy(e->runner);
    backend_destroy(e->be);
    model_close(&e->model);
fail_model:
    pthread_mutex_destroy(&e->lock);
    free(e->graph_sizes);
    free(e->rows);
    free(e->results);
    free(e->sampled);
    free(e->masks);
    free(e);
    return rc;
}
