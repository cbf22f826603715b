/* runner.h — the model runner: owns the weights on the backend, the paged KV cache of every
 * layer, the activation buffers and (on backends that have them) the CUDA graphs of
 * decode steps and the piecewise graphs of mixed and prefill steps (runner_pieces.h). One call runs one engine step: stage the batch, run the model (replay a
 * graph or run forward() eagerly), sample, fetch the tokens; or two calls, launch and
 * finish, between which the caller makes the step's masks while the device works. */
#ifndef OSPREY_RUNNER_H
#define OSPREY_RUNNER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/backend.h"
#include "engine/comm.h"
#include "engine/model/model.h"
#include "engine/sampler.h"
#include "scheduler/batch.h"

struct runner;

struct runner_options {
    int block_size;              /* tokens per KV block */
    int num_blocks;              /* KV blocks of each layer (engine sizes it: kv_budget.c) */
    int max_num_batched_tokens;  /* token budget of a step */
    int max_num_seqs;            /* requests in a step */
    int max_model_len;           /* context length: prompt + output tokens */
    bool enforce_eager;          /* never capture graphs */
    const int *graph_sizes;      /* [num_graph_sizes] decode batch sizes to capture; borrowed */
    int num_graph_sizes;
    bool fused_rope_cache;       /* rope + cache_update in one op where the backend has it */
    bool quantize_fp8;           /* --quantization fp8: float linear weights to fp8 at load */
    bool calculate_kv_scales;    /* fp8 cache: scales from the first step's K and V (cpu) */
    enum dtype kv_cache_dtype;   /* DT_F32 = auto (the backend's act_dtype); cpu: also BF16,
                                  * F8_E4M3 (scales: the checkpoint's k_scale/v_scale, else 1) */
    int tensor_parallel_size;    /* 0 or 1 = none; N > 1: N ranks, each on its own backend
                                  * (of be's kind; cuda: devices 0..N-1, or tp_devices) and
                                  * worker thread, with the model sharded (engine/tp_shard.h) */
    int backend_threads;         /* num_threads of the ranks' cpu backends */
    struct comm *comm;           /* a rank of a group made by the caller (runner_tp.c, or a
                                  * test running NCCL with one rank); NULL = none */
    int group_num_blocks[KV_MAX_GROUPS];   /* instead of num_blocks, for the layers of group g
                                  * when > 0: each group's cache has its own block ids (last,
                                  * so that positional initializers stay valid) */
    const int *tp_devices;       /* [tensor_parallel_size] the cuda device of each rank; NULL =
                                  * 0..N-1 (NCCL). Ranks that share one device run over
                                  * comm_cuda_local, eagerly: for tests on one GPU, not a
                                  * flag. Borrowed for runner_create only. */
    const int *piece_sizes;      /* [num_piece_sizes] token counts of the piecewise graphs of
                                  * mixed and prefill steps (engine/runner_pieces.h); those
                                  * above max_num_batched_tokens are dropped; borrowed */
    int num_piece_sizes;
};

/* Fills the capacities a backend needs for this model and these options (max_tokens,
 * max_reqs, max_blocks_per_req, num_kv_groups, vocab_size); num_threads and device are left
 * as they were. Returns 0 or -EINVAL (too many KV groups). */
int runner_backend_options(const struct model_config *cfg, const struct runner_options *o,
                           struct backend_options *bo);

/* The element type the cache of kv_cache_dtype has on be (DT_F32 = auto: act_dtype). */
enum dtype runner_kv_dtype(const struct backend *be, enum dtype kv_cache_dtype);

/* Bytes one KV block takes over all layers, K and V, in the cache's dtype
 * (runner_kv_dtype); divided by num_layers, what a block of one layer costs (a block of
 * group g costs that times g's layers: kv_budget.c). */
size_t runner_kv_block_bytes(const struct model_config *cfg, const struct backend *be,
                             enum dtype kv_cache_dtype, int block_size);

/* Uploads the weights and allocates the KV cache and buffers on be (borrowed; it must
 * outlive the runner), then captures a graph per graph size when the backend has graphs and
 * enforce_eager is off. m must stay open while the runner lives (the cpu backend uses its
 * mapping in place). Returns 0, or a negative errno with a message. */
int runner_create(struct runner **out, struct backend *be, const struct model *m,
                  const struct runner_options *o, char *err);
void runner_destroy(struct runner *r);

/* Runs one step: stage → (graph replay for a decode-only batch padded to a captured size,
 * when the backend has graphs; else the piecewise graphs for a step of at most the largest
 * bucket's tokens, padded to its bucket) or eager forward → sample → fetch. b is padded in place
 * (batch_pad). rows: [b->num_sample], or NULL for greedy. results: [b->num_sample].
 * Returns 0, or a negative errno (-EIO: the device failed, the engine is dead).
 * runner_launch followed by runner_finish. */
int runner_execute(struct runner *r, struct step_batch *b, const struct sample_row *rows,
                   struct sample_result *results);

/* runner_execute in two halves, so that the caller makes the step's masks while the device
 * runs the forward. When a row has a mask (rows[i].allowed != NULL), launch stages the
 * batch and starts the forward alone (the graph of the forward for a decode batch, else
 * the piecewise graphs or forward() eagerly; asynchronous on cuda, done on return on cpu) and finish hands the
 * masks to the sampler, samples and fetches. A step without masks runs whole in launch (the
 * one graph with its sampler) and finish fetches. A mask that is row i of
 * runner_mask_rows() may be written until finish, any other must be final at launch. b and
 * rows are borrowed until finish; every successful launch is followed by one finish
 * (results: [b->num_sample]). Under tensor parallelism launch only keeps b and rows, and
 * finish runs the whole step. Both return 0 or a negative errno, as runner_execute; a
 * failed launch needs no finish. */
int runner_launch(struct runner *r, struct step_batch *b, const struct sample_row *rows);
int runner_finish(struct runner *r, struct sample_result *results);

/* Between runner_launch and runner_finish: whether the device still runs what launch
 * started (false on cpu, whose launch returns with the forward done, and under tensor
 * parallelism, whose launch starts nothing). For the figures of the masks' overlap. */
bool runner_busy(struct runner *r);

/* The backend's host memory for a step's masks (backend_ops.mask_rows): row i of the
 * sampled rows at i * backend_options.mask_words words, [max_num_seqs] rows. Writing the
 * masks there spares the copy into the upload buffer. */
uint32_t *runner_mask_rows(struct runner *r);

/* From now on forward() bumps *progress (atomically) once per layer it runs, so that a
 * watchdog can tell a long step that moves from a hung one; NULL stops it. progress must
 * outlive the runner. */
void runner_watch_progress(struct runner *r, uint64_t *progress);

/* The captured size a decode-only batch pads to, or b->num_tokens. */
int runner_padded_size(const struct runner *r, const struct step_batch *b);

/* Runs the model eagerly over b and copies the f32 logits of its sampled rows to the host,
 * logits[b->num_sample_padded, vocab]: for tests and the HF oracle. A batch already padded
 * (b->num_tokens_padded > b->num_tokens) runs padded; otherwise it is padded to itself. */
int runner_logits(struct runner *r, struct step_batch *b, float *logits);

/* One rank's share of its device (the whole runner's without tensor parallelism): for the
 * start-up log and /metrics. */
struct runner_rank_info {
    int device;                  /* cuda device ordinal; cpu: 0 */
    size_t weights_bytes;        /* the rank's weights in the backend's activation dtype */
    size_t kv_cache_bytes;       /* every layer's K and V cache on the rank */
    size_t graph_bytes;          /* device memory its CUDA graphs took (measured; 0 eager) */
};

/* Ranks of the runner: tensor_parallel_size, or 1. */
int runner_num_ranks(const struct runner *r);
void runner_rank_info(const struct runner *r, int rank, struct runner_rank_info *out);

/* Steps that ran through the piecewise graphs (0 under tensor parallelism). */
uint64_t runner_piece_steps(const struct runner *r);

/* Layer l's fp8 cache scales (1.0 for a cache that is not fp8). */
void runner_kv_scales(const struct runner *r, int layer, float *k_scale, float *v_scale);

/* What a batch for this runner needs besides the model's KV-cache groups (struct
 * model_config: num_kv_groups, kv_group_window). */
int runner_max_blocks_per_req(const struct runner *r);

/* The paged K and V caches of `layer` (device memory, [num_blocks, block_size, KV, D] in the
 * backend's act_dtype): for tests that poison freed blocks. Returns 0 or -EINVAL. */
int runner_layer_cache(const struct runner *r, int layer, void **k_cache, void **v_cache);        /* ceil(max_model_len / block_size) */

#endif
