/* engine_create.c — building an engine: open the model folder, check the context length,
 * group the layers' KV caches, pick the backend, size the KV cache from the memory given to
 * it, then the runner (weights, buffers, CUDA graphs) and the scheduler. The engine thread
 * starts later, in engine_start (engine.c). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>   /* sysconf: the CPUs for the mask threads */

#include "engine/backend.h"
#include "engine/cpu/threadpool.h"
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

/* --kv-cache-dtype into the runner's element type: DT_F32 stands for "auto". */
static int kv_dtype_parse(const char *s, enum dtype *out, char *err)
{
    if (!s || !strcmp(s, "auto"))
        *out = DT_F32;
    else if (!strcmp(s, "bf16"))
        *out = DT_BF16;
    else if (!strcmp(s, "fp8") || !strcmp(s, "fp8_e4m3"))
        *out = DT_F8_E4M3;
    else {
        errf(err, "--kv-cache-dtype %.32s: expected auto, bf16 or fp8", s);
        return -EINVAL;
    }
    return 0;
}

/* The cache's element type as /metrics and the start-up log name it. */
static const char *kv_cache_dtype_name(enum dtype t)
{
    return t == DT_F8_E4M3 ? "fp8_e4m3" : t == DT_BF16 ? "bf16" : t == DT_F16 ? "f16" : "f32";
}

/* Bytes of one KV block in one layer, K and V. */
static size_t layer_block_bytes(const struct engine *e, enum dtype kv_dtype,
                                const struct engine_options *o)
{
    return runner_kv_block_bytes(&e->model.cfg, e->be, kv_dtype, o->block_size) /
           e->model.cfg.num_layers;
}

/* Tokens the cache holds: a full-attention group's pool (the smallest, if several), else the
 * largest window group's. */
static int64_t cache_tokens(const struct model_config *c, const int *group_blocks, int block_size)
{
    int64_t full = INT64_MAX, win = 0;

    for (int g = 0; g < c->num_kv_groups; g++) {
        int64_t t = (int64_t)group_blocks[g] * block_size;

        if (c->kv_group_window[g] == 0)
            full = MIN(full, t);
        else
            win = MAX(win, t);
    }
    return full != INT64_MAX ? full : win;
}

/* "group 0 (full, 20 layers): 4096 blocks, group 1 (window 1024, 100 layers): 512 blocks" */
static const char *groups_line(char *buf, size_t size, const struct model_config *c,
                               const int *group_blocks)
{
    size_t n = 0;

    buf[0] = 0;
    for (int g = 0; g < c->num_kv_groups && n < size; g++) {
        int layers = 0;

        for (int l = 0; l < c->num_layers; l++)
            layers += c->layer_kv_group[l] == g;
        if (c->kv_group_window[g])
            n += snprintf(buf + n, size - n, "%sgroup %d (window %d, %d layer%s): %d blocks",
                          g ? ", " : "", g, c->kv_group_window[g], layers, layers == 1 ? "" : "s",
                          group_blocks[g]);
        else
            n += snprintf(buf + n, size - n, "%sgroup %d (full, %d layer%s): %d blocks",
                          g ? ", " : "", g, layers, layers == 1 ? "" : "s", group_blocks[g]);
    }
    return buf;
}

/* FP8 options that cannot run, refused in one line. FP8 weights run on both backends (the
 * cpu as W8A16, the reference; cuda through cuBLASLt's scaled FP8 GEMMs or its W8A16
 * kernel), and both measure K and V for --calculate-kv-scales (the absmax op). A MoE
 * layer's experts stay as stored under --quantization fp8, and a quantized MoE checkpoint is
 * refused at load (engine/model/quant.c), so no fp8 expert reaches either backend. */
static int check_fp8_options(const struct engine_options *o, enum dtype kv, char *err)
{
    if (o->calculate_kv_scales && kv != DT_F8_E4M3) {
        errf(err, "--calculate-kv-scales derives the fp8 cache's scales: it needs "
             "--kv-cache-dtype fp8");
        return -EINVAL;
    }
    if (o->quantization && strcmp(o->quantization, "fp8")) {
        errf(err, "--quantization %.32s: expected fp8 (or none)", o->quantization);
        return -EINVAL;
    }
    return 0;
}

int engine_create(struct engine **out, const struct engine_options *o, char *err)
{
    struct engine *e;
    struct runner_options ro;
    struct sched_config sc;
    char groups[512];
    struct backend_options bo;
    int rc;
    const char *backend = o->backend;
    const char *fault;
    enum dtype kv_dtype;

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
    rc = o->dummy_weights ? model_open_dummy(&e->model, o->model_dir, 0,
                                               o->quantization != NULL, err)
                          : model_open(&e->model, o->model_dir, err);
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

    if (!backend || !strcmp(backend, "auto"))
        backend = backend_cuda_available() ? "cuda" : "cpu";
    if ((rc = kv_dtype_parse(o->kv_cache_dtype, &kv_dtype, err)) ||
        (rc = check_fp8_options(o, kv_dtype, err)))
        goto fail;
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
    ro.piece_sizes = o->piece_sizes;   /* the runner drops those above max_num_batched_tokens */
    ro.num_piece_sizes = o->num_piece_sizes;
    ro.fused_rope_cache = o->fused_rope_cache;
    ro.kv_cache_dtype = kv_dtype;
    ro.quantize_fp8 = o->quantization != NULL;
    ro.calculate_kv_scales = o->calculate_kv_scales;
    ro.tensor_parallel_size = o->tensor_parallel_size;
    ro.backend_threads = o->num_threads;
    memset(&bo, 0, sizeof bo);
    bo.num_threads = o->num_threads;
    /* grammar masks cover the model's ids and the tokenizer's (which may have more); the
     * engine writes them straight into the backend's mask rows, of this width */
    e->mask_words = (MAX(cfg->vocab_size, e->tok ? tokenizer_vocab_size(e->tok) : 0) + 31) / 32;
    bo.mask_words = e->mask_words;
    if ((rc = runner_backend_options(cfg, &ro, &bo)) != 0) {
        errf(err, "%s: unsupported model shape", o->model_dir);
        goto fail;
    }
    rc = backend_create(&e->be, backend, &bo, err);
    if (rc != 0)
        goto fail;
    if (o->patch_backend)
        o->patch_backend(e->be);
    if ((rc = kv_budget_blocks(cfg, o, e->be, backend, kv_dtype, &bo, ro.group_num_blocks, err)))
        goto fail;
    ro.num_blocks = ro.group_num_blocks[0];
    size_t free0 = 0, free1 = 0, total = 0;
    e->be->ops->mem_info(e->be, &free0, &total);
    rc = runner_create(&e->runner, e->be, &e->model, &ro, err);
    if (rc != 0)
        goto fail;
    runner_watch_progress(e->runner, &e->progress);   /* the watchdog's sign of life in a step */
    /* under tensor parallelism runner_tp.c logs each rank's device instead */
    if (!strcmp(backend, "cuda") && o->tensor_parallel_size <= 1 &&
        e->be->ops->mem_info(e->be, &free1, &total) == 0) {
        /* what the runner took beyond its weights and KV cache: activations, cuBLAS
         * workspace, staging, graphs */
        double gib = 1073741824.0, took = (double)(free0 - free1);
        double w = (double)weights_bytes(cfg, dtype_size(e->be->ops->act_dtype),
                                         model_fp8_weights(cfg) || o->quantization);
        double kv = (double)kv_budget_bytes(cfg, ro.group_num_blocks, layer_block_bytes(e, kv_dtype, o));
        LOG(LL_INFO, "engine", "GPU memory: weights %.2f GiB, KV cache %.2f GiB, everything else "
            "%.2f GiB; %.2f of %.2f GiB free", w / gib, kv / gib, (took - w - kv) / gib,
            free1 / gib, total / gib);
    }

    memset(&sc, 0, sizeof sc);
    sc.block_size = o->block_size;
    sc.num_blocks = ro.num_blocks;
    memcpy(sc.group_num_blocks, ro.group_num_blocks, sizeof sc.group_num_blocks);
    sc.max_num_seqs = o->max_num_seqs;
    sc.max_num_batched_tokens = o->max_num_batched_tokens;
    sc.max_model_len = e->max_model_len;
    sc.enable_prefix_caching = o->enable_prefix_caching;
    sc.num_kv_groups = cfg->num_kv_groups;
    for (int g = 0; g < cfg->num_kv_groups; g++)
        sc.group_window[g] = cfg->kv_group_window[g];
    sc.eos_ids = e->eos_ids;
    sc.num_eos_ids = e->num_eos;
    sc.batch_capacity_tokens = bo.max_tokens;
    sc.batch_capacity_reqs = bo.max_reqs;
    rc = sched_create(&e->sched, &sc, err);
    if (rc != 0)
        goto fail;
    e->max_request_tokens = kv_budget_max_request_tokens(sc.group_num_blocks, sc.block_size,
                                                         cfg->num_kv_groups, cfg->kv_group_window,
                                                         sc.max_num_batched_tokens, e->max_model_len);
    if (e->max_request_tokens < e->max_model_len)
        LOG(LL_WARN, "engine", "the KV cache (blocks of %d tokens: %s) holds %d tokens for one "
            "request, less than max_model_len %d: longer requests are refused (raise "
            "--kv-cache-memory or lower --max-model-len)", sc.block_size,
            groups_line(groups, sizeof groups, cfg, sc.group_num_blocks),
            e->max_request_tokens, e->max_model_len);

    e->rows = calloc(bo.max_reqs, sizeof *e->rows);
    e->results = calloc(bo.max_reqs, sizeof *e->results);
    e->sampled = calloc(bo.max_reqs, sizeof *e->sampled);
    e->masks = runner_mask_rows(e->runner);
    e->ids_mask = calloc((size_t)e->mask_words, sizeof *e->ids_mask);
    if (!e->rows || !e->results || !e->sampled || !e->masks || !e->ids_mask) {
        errf(err, "out of memory");
        rc = -ENOMEM;
        goto fail;
    }
    /* A cold mask is a walk of the vocabulary trie (up to milliseconds at 128k ids), and a
     * step's rows are independent (each grammar locks its own cache): spread them over
     * threads, which are idle while the engine thread prepares a step. */
    int mt = o->grammar_threads > 0 ? o->grammar_threads
             : MIN(8, o->num_threads > 0 ? o->num_threads : (int)MAX(1L, sysconf(_SC_NPROCESSORS_ONLN)));
    if ((rc = threadpool_create(&e->mask_pool, mt))) {
        errf(err, "grammar mask threads: %s", strerror(-rc));
        goto fail;
    }
    e->stats.healthy = true;
    e->stats.kv_cache_dtype = kv_cache_dtype_name(runner_kv_dtype(e->be, kv_dtype));
    e->stats.kv_cache_tokens = cache_tokens(cfg, sc.group_num_blocks, o->block_size);
    e->stats.num_ranks = runner_num_ranks(e->runner);
    for (int i = 0; i < e->stats.num_ranks && i < ENGINE_MAX_RANKS; i++) {
        struct runner_rank_info ri;

        runner_rank_info(e->runner, i, &ri);
        e->stats.rank_device[i] = ri.device;
        e->stats.rank_kv_cache_bytes[i] = ri.kv_cache_bytes;
    }
    e->next_id = 1;
    LOG(LL_INFO, "engine", "%s on %s: KV blocks of %d tokens, %s (%lld tokens, KV cache %s, "
        "%.2f GiB), one request holds up to %d tokens, max_model_len %d, weights %s%s%s",
        o->model_dir, backend, o->block_size,
        groups_line(groups, sizeof groups, cfg, sc.group_num_blocks),
        (long long)e->stats.kv_cache_tokens, e->stats.kv_cache_dtype,
        kv_budget_bytes(cfg, sc.group_num_blocks, layer_block_bytes(e, kv_dtype, o)) / 1073741824.0,
        e->max_request_tokens, e->max_model_len,
        dtype_name(cfg->dtype), model_fp8_weights(cfg) ? " quantized fp8"
                                : o->quantization ? " quantized to fp8 at load" : "",
        !model_fp8_weights(cfg) && !o->quantization ? ""
        : !strcmp(backend, "cpu") ? " (W8A16)" : " (FP8 GEMMs: cuBLASLt, activations per token)");
    *out = e;
    return 0;
fail:
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
    free(e->ids_mask);
    threadpool_destroy(e->mask_pool);
    free(e);
    return rc;
}
