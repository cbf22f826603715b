/* tp_shard.h — one rank's share of a model under tensor parallelism (Megatron-style): q, k,
 * v, gate and up split by output rows (column-parallel), o and down by input columns
 * (row-parallel: the layer loop all-reduces their outputs), biases with their rows, norms,
 * the embedding and the LM head replicated. Fused q/k/v and gate/up as published (Phi-3)
 * become the rank's separate q, k, v, gate and up rows. A MoE layer splits every expert by
 * its intermediate size (gate/up rows, down columns; the shared expert too) and replicates
 * the router, so that every rank routes alike and the block's output is a partial sum,
 * all-reduced like down's. gpt-oss: the sinks split with their heads, the interleaved
 * experts by (gate, up) column pairs with the gate_up bias, and the biases of o and of the
 * experts' down added by rank 0 alone (zeros elsewhere), once before the all-reduce. The
 * KV heads are split too; when the group has
 * more ranks than KV heads each KV head is replicated on N / KV ranks (vLLM's rule). The
 * shard is a struct model whose config says the rank's heads, KV heads and intermediate
 * size, so that the runner, the weights upload and the KV cache sizing work on it as on a
 * whole model. Row slices point into the model's mapping; column slices are copied (only
 * the rank's slice: no rank holds a whole weight). */
#ifndef OSPREY_TP_SHARD_H
#define OSPREY_TP_SHARD_H

#include "engine/model/model.h"

struct tp_shard {
    struct model m;            /* the rank's model: cfg sharded, layers[] of slices */
    void **copies;             /* [num_copies] the column slices' bytes */
    int num_copies;
    void *zeros;               /* gpt-oss, ranks > 0: the experts' down bias (rank 0 adds it) */
};

/* Returns 0 when a group of n ranks can shard c, else -EINVAL with a message naming the
 * value that does not divide (or the checkpoint's fp8 weights, which are not sharded yet). */
int tp_shard_check(const struct model_config *c, int n, char *err);

/* One rank's config of a group of n (n must pass tp_shard_check): its heads, KV heads and
 * intermediate sizes; everything else c's. */
void tp_shard_config(const struct model_config *c, int n, struct model_config *out);

/* Fills s with rank `rank` of n's share of m (m must outlive s). Returns 0, or -EINVAL /
 * -ENOMEM with a message; on failure s holds nothing. */
int tp_shard_create(struct tp_shard *s, const struct model *m, int rank, int n, char *err);
void tp_shard_free(struct tp_shard *s);

#endif
