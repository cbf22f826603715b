/* kv_budget.h — sizing the paged KV cache (see kv_budget.c). */
#ifndef OSPREY_KV_BUDGET_H
#define OSPREY_KV_BUDGET_H

#include "engine/backend.h"
#include "engine/engine.h"
#include "engine/model/model.h"

/* KV blocks of each group's pool (group_blocks[c->num_kv_groups]): the bytes are
 * --kv-cache-memory when given; else on cuda what gpu_memory_utilization of the device
 * leaves after weights, activations and a reserve for cuBLAS, attention scratch and graphs;
 * on cpu 1 GiB at most, or what max_num_seqs requests of max_model_len tokens need when that
 * is less. kv_budget_split divides them among the groups. bo is what runner_backend_options
 * gave the backend: the step's capacities (max_tokens, max_reqs). A block of one layer costs
 * its bytes in kv_dtype (runner_kv_block_bytes / num_layers: one byte per element for fp8,
 * so the same memory holds more blocks). Returns 0, or -ENOMEM with a message. */
int kv_budget_blocks(const struct model_config *c, const struct engine_options *o,
                     struct backend *be, const char *backend, enum dtype kv_dtype,
                     const struct backend_options *bo, int *group_blocks, char *err);

/* Splits `bytes` of KV cache among the groups' pools, a block of group g costing
 * layer_block_bytes times g's layers. Undivided, every layer would get bytes / (num_layers *
 * layer_block_bytes) blocks ("even"). A sliding-window group gets what max_num_seqs
 * requests can hold in it at once (kv_cache_max_blocks at max_model_len), at most even:
 * more could never be used; the full-attention groups share the rest equally, so they get
 * at least even. A model without a full group keeps even everywhere. Returns 0, or -ENOMEM
 * with a message when a group would get no block. */
int kv_budget_split(const struct model_config *c, size_t bytes, size_t layer_block_bytes,
                    int block_size, int max_num_seqs, int max_num_batched_tokens,
                    int max_model_len, int *group_blocks, char *err);

/* The most tokens (prompt + max_tokens) one request can hold in the groups' pools
 * (group_blocks[g] blocks each): what the scheduler's admission needs of it
 * (scheduler/kv_cache.h: kv_cache_max_blocks, with the groups' windows), at most
 * max_model_len. A request above it can never run, however empty the cache; the engine
 * refuses it at submit. */
int kv_budget_max_request_tokens(const int *group_blocks, int block_size, int num_groups,
                                 const int *group_window, int max_num_batched_tokens,
                                 int max_model_len);

/* KV bytes that blocks take: group g's blocks[g] times its layers times layer_block_bytes. */
size_t kv_budget_bytes(const struct model_config *c, const int *blocks, size_t layer_block_bytes);

#endif
