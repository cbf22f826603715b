/* kv_budget.h — sizing the paged KV cache (see kv_budget.c). */
#ifndef OSPREY_KV_BUDGET_H
#define OSPREY_KV_BUDGET_H

#include "engine/backend.h"
#include "engine/engine.h"
#include "engine/model/model.h"

/* KV blocks for the cache: --kv-cache-memory when given; else on cuda what
 * gpu_memory_utilization of the device leaves after weights, activations and a reserve for
 * cuBLAS, attention scratch and graphs; on cpu 1 GiB at most, or what max_num_seqs requests
 * of max_model_len tokens need when that is less. bo is what runner_backend_options gave the
 * backend: the step's capacities (max_tokens, max_reqs) and the blocks a request can hold
 * (max_blocks_per_req), computed there once. A block costs its bytes in kv_dtype
 * (runner_kv_block_bytes: one byte per element for fp8, so the same memory holds more
 * blocks). Returns the count, or 0 with a message. */
int kv_budget_blocks(const struct model_config *c, const struct engine_options *o,
                     struct backend *be, const char *backend, enum dtype kv_dtype,
                     const struct backend_options *bo, char *err);

/* The most tokens (prompt + max_tokens) one request can hold in num_blocks blocks: what
 * the scheduler's admission needs of it (scheduler/kv_cache.h: kv_cache_max_blocks, with the
 * groups' windows), at most max_model_len. A request above it can never run, however empty
 * the cache; the engine refuses it at submit. */
int kv_budget_max_request_tokens(int num_blocks, int block_size, int num_groups,
                                 const int *group_window, int max_num_batched_tokens,
                                 int max_model_len);

#endif
