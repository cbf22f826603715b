/* runner_pieces.h — piecewise CUDA graphs (vLLM's): for steps that decode graphs do not
 * cover (prefill chunks, mixed steps, decode batches beyond the largest decode graph), the
 * layer loop's pieces between attentions (forward.h: forward_piece) captured once per
 * token-count bucket, replayed with each layer's attention run eagerly in between over the
 * real requests. The runner (engine/runner.c) owns one of these; it pads a step's tokens to
 * the bucket (batch_pad_tokens) and stages it before pieces_run. */
#ifndef OSPREY_RUNNER_PIECES_H
#define OSPREY_RUNNER_PIECES_H

#include <stdint.h>

#include "engine/backend.h"
#include "engine/forward.h"

/* Graph keys (backend_ops.graph_capture) of piece p of the i-th bucket: above every
 * decode key (± a batch size, which the runner keeps below the base). */
#define PIECES_KEY_BASE (1 << 24)
#define PIECES_MAX_BUCKETS 32
#define PIECES_KEY(i, p) (PIECES_KEY_BASE + (i) * (MODEL_MAX_LAYERS + 1) + (p))

struct piece_arg;

struct runner_pieces {
    int *sizes;                      /* [num] token-count buckets, ascending; NULL = none */
    int num;
    int num_layers;
    const struct forward_ctx *fwd;   /* borrowed from the runner */
    const struct bk_batch *dev;      /* the runner's staged batch (the padded step) */
    struct piece_arg *args;          /* [num_layers + 1] the captured bodies' arguments */
    uint64_t steps;                  /* steps run through the pieces */
};

/* Sorts sizes[0..n) ascending and keeps each value at most max once, at the front; returns
 * how many (the decode graphs' sizes take it too). */
int graph_sizes_sort(int *sizes, int n, int max);

/* Keeps the sizes (any order, duplicates allowed) that are at most max_tokens, sorted, at
 * most PIECES_MAX_BUCKETS of them (the smallest). n == 0 leaves pc empty. Returns 0,
 * -EINVAL for a size below 1, or -ENOMEM. */
int pieces_init(struct runner_pieces *pc, const int *sizes, int n, int max_tokens,
                const struct forward_ctx *f, const struct bk_batch *dev);
void pieces_fini(struct runner_pieces *pc);

/* The bucket a step of num_tokens tokens pads to (its index), or -1: none that large, or
 * larger than cap_tokens (the batch's capacity). */
int pieces_bucket(const struct runner_pieces *pc, int num_tokens, int cap_tokens);

/* Captures the num_layers + 1 pieces of bucket i from the staged batch (the caller staged
 * sizes[i] tokens, all padding). Returns 0 or the backend's error. */
int pieces_capture(struct runner_pieces *pc, struct backend *be, int i);

/* Runs the staged step (padded to sizes[i]; real_tokens of it belong to its requests): each
 * piece's graph, each layer's attention eagerly over the real tokens, then the head
 * (forward_head) eagerly over the sampled rows. Leaves the logits as forward() does. */
int pieces_run(struct runner_pieces *pc, struct backend *be, int i, int real_tokens);

#endif
