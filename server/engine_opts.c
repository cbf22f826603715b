/* engine_opts.c — struct osprey_config → struct engine_options, for every command (see
 * engine_opts.h). */
#include "server/engine_opts.h"

#include <string.h>

#include "config/config.h"
#include "engine/engine.h"

void engine_opts_from_config(struct engine_options *eo, const struct osprey_config *c,
                             const struct tokenizer *tok)
{
    engine_options_init(eo);
    eo->model_dir = c->model;
    eo->backend = c->backend;
    eo->tokenizer = tok;
    eo->num_threads = c->threads;
    eo->tensor_parallel_size = c->tensor_parallel_size;
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
    eo->piece_sizes = c->piecewise_graph_sizes;
    eo->num_piece_sizes = c->num_piecewise_graph_sizes;
    eo->fused_rope_cache = c->fused_rope_cache;
    eo->kv_cache_dtype = c->kv_cache_dtype;
    eo->calculate_kv_scales = c->calculate_kv_scales;
    eo->quantization = c->quantization && strcmp(c->quantization, "none") ? c->quantization : NULL;
    eo->dummy_weights = c->load_format && !strcmp(c->load_format, "dummy");
    eo->max_waiting = c->max_waiting_requests;
    eo->seed = c->seed;
}
