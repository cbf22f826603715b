/* runner_internal.h — the runner's own state, shared by the files that make it up:
 * runner.c (a step: stage, launch, finish), runner_create.c (options check, buffers,
 * inv_freq, KV scales, creation and destruction, what a runner reports) and
 * runner_graphs.c (capturing the decode graphs and the piecewise buckets). Nothing outside
 * those files includes it (runner_tp.c drives the runner through runner_tp.h's runner__
 * functions). */
#ifndef OSPREY_RUNNER_INTERNAL_H
#define OSPREY_RUNNER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "engine/forward.h"
#include "engine/runner.h"
#include "engine/runner_pieces.h"
#include "engine/runner_tp.h"
#include "engine/weights.h"

struct runner {
    struct backend *be;              /* borrowed */
    const struct model *m;           /* borrowed */
    struct runner_options opt;       /* graph_sizes points at our sorted copy */
    int *graph_sizes;                /* [num_graphs] captured sizes, ascending */
    int num_graphs;
    int cap_tokens, cap_sample;      /* rows of the activation and logits buffers */
    int max_blocks_per_req;

    struct weights w;
    void **k_cache, **v_cache;       /* [num_layers] device */
    float *k_scale, *v_scale;        /* [num_layers] host, fp8 cache only */
    float *inv_freq;                 /* [head_dim / 2] device */
    float *inv_freq_local;           /* [head_dim / 2] device: Gemma 3's sliding layers, or NULL */
    struct forward_ctx fwd;          /* the buffers below, lent to forward() */
    struct bk_batch dev;             /* the staged batch; graphs replay against it */
    struct step_batch pad_batch;     /* all-padding decode batch for graph capture */
    struct sample_row *greedy_rows;  /* [cap_sample] rows used when the caller gives none */
    struct runner_pieces pieces;     /* piecewise graphs of mixed and prefill steps (none on
                                      * a rank of a tensor-parallel group: eager there) */
    size_t graph_bytes;              /* device memory the graphs took, measured */
    bool graphs_deferred;            /* --calculate-kv-scales: a graph bakes the fp8 KV scales
                                      * into its kernels' arguments, so the graphs are
                                      * captured after the first step measured them */
    bool forward_graphs;             /* the forward alone is captured too (not on a rank of
                                      * a tensor-parallel group: runner_tp runs whole steps) */
    struct runner_tp *tp;            /* tensor parallelism: the ranks run every step; the
                                      * fields above are then unused */
    /* the step between runner_launch and runner_finish */
    struct {
        bool active;
        struct step_batch *b;        /* borrowed from the caller until runner_finish */
        const struct sample_row *rows;
        bool split;                  /* launched the forward alone: finish samples */
    } launched;
};

/* How a step's batch is padded and staged. */
enum stage_kind {
    STAGE_EAGER,        /* to itself (or as the caller padded it) */
    STAGE_GRAPH,        /* a decode graph: padding requests, fixed bounds for its scalars */
    STAGE_PIECES,       /* piecewise graphs: padding tokens only, the real scalars (the
                         * eager attention reads them) */
};

/* The graph key of the forward alone at decode size `size` (backend_ops.graph_capture). */
static inline int runner_forward_key(int size)
{
    return -size;
}

/* runner.c: pads b to `size`, checks it fits our buffers and stages it (rows NULL: greedy
 * rows). A decode graph step (capture or replay) stages fixed bounds for the scalars a graph
 * bakes in. */
int runner_stage_batch(struct runner *r, struct step_batch *b, int size, enum stage_kind kind,
                       const struct sample_row *rows);
/* runner.c: the forward alone, and forward + sample (a graph's body: arg is the runner). */
int runner_forward_body(void *arg);
int runner_step_body(void *arg);

/* runner_graphs.c: every decode graph and piecewise bucket, captured now (or deferred to
 * after the first step under --calculate-kv-scales). Returns 0 or a negative errno with a
 * message in err. */
int runner_capture_graphs(struct runner *r, char *err);

#endif
