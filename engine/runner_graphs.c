/* runner_graphs.c — the runner's graphs (CUDA), captured at creation (or, under
 * --calculate-kv-scales, after the first step measured the scales): one decode graph per
 * configured size from an all-padding decode batch, each twice (the whole step, and the
 * forward alone for steps with masks), then the piecewise graphs of every token-count
 * bucket (runner_pieces.c). runner.c replays them. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "engine/base/log.h"
#include "engine/runner_internal.h"

/* The piecewise graphs' buckets, for the start-up log: "16 32 64". */
static void bucket_list(const struct runner_pieces *pc, char *out, size_t cap)
{
    size_t len = 0;

    out[0] = '\0';
    for (int i = 0; i < pc->num && len < cap; i++)
        len += snprintf(out + len, cap - len, "%s%d", i ? " " : "", pc->sizes[i]);
}

/* The piecewise graphs of every bucket, each captured from an all-padding batch of that many
 * tokens that belong to no request. */
static int capture_pieces(struct runner *r, char *err)
{
    struct step_batch *d = &r->pad_batch;
    int rc;

    for (int i = 0; i < r->pieces.num; i++) {
        d->num_reqs = d->num_tokens = d->num_sample = 0;
        d->max_query_len = d->max_seq_len = 0;
        d->decode_only = false;
        d->query_start_loc[0] = 0;
        if ((rc = runner_stage_batch(r, d, r->pieces.sizes[i], STAGE_PIECES, NULL)) ||
            (rc = pieces_capture(&r->pieces, r->be, i))) {
            errf(err, "runner: capturing the piecewise graphs of %d tokens failed (%s)",
                 r->pieces.sizes[i], strerror(-rc));
            return rc;
        }
    }
    return 0;
}

/* One decode graph per size, each captured from an all-padding decode batch of that size;
 * then the piecewise graphs of mixed and prefill steps per token-count bucket. */
int runner_capture_graphs(struct runner *r, char *err)
{
    struct step_batch *d = &r->pad_batch;
    int largest = r->num_graphs ? r->graph_sizes[r->num_graphs - 1] : 0, rc;
    int largest_bucket = r->pieces.num ? r->pieces.sizes[r->pieces.num - 1] : 0;
    size_t free0 = 0, free1 = 0, total = 0;
    char buckets[PIECES_MAX_BUCKETS * 10];
    bool measured;

    if (r->fwd.calc_kv_scales) {
        r->graphs_deferred = true;
        LOG(LL_INFO, "runner", "--calculate-kv-scales: the graphs wait for the scales of the "
            "first prefill (a graph keeps the scales it was captured with)");
        return 0;
    }
    measured = r->be->ops->mem_info && !r->be->ops->mem_info(r->be, &free0, &total);
    if (!d->cap_tokens &&
        (rc = batch_init(d, MAX(largest, largest_bucket), MAX(largest, 1), r->m->cfg.num_kv_groups,
                         r->max_blocks_per_req)))
        return rc;
    /* with a communicator, one eager step of the largest padding batch first: the
     * collectives' first use (where NCCL may connect to its peers) stays out of a capture */
    if (r->fwd.comm) {
        d->num_reqs = d->num_tokens = d->num_sample = 0;
        d->decode_only = largest > 0;
        d->query_start_loc[0] = 0;
        if ((rc = largest ? runner_stage_batch(r, d, largest, STAGE_GRAPH, NULL)
                          : runner_stage_batch(r, d, largest_bucket, STAGE_PIECES, NULL)) ||
            (rc = forward(&r->fwd, &r->dev)) ||
            (rc = comm_wait(r->fwd.comm))) {
            errf(err, "runner: the warm-up step before the graphs failed (%s)", strerror(-rc));
            return rc;
        }
    }
    for (int i = 0; i < r->num_graphs; i++) {
        int size = r->graph_sizes[i];

        d->num_reqs = d->num_tokens = d->num_sample = 0;
        d->decode_only = true;
        d->query_start_loc[0] = 0;
        if ((rc = runner_stage_batch(r, d, size, STAGE_GRAPH, NULL)) ||
            (rc = r->be->ops->graph_capture(r->be, size, runner_step_body, r)) ||
            (r->forward_graphs &&
             (rc = r->be->ops->graph_capture(r->be, runner_forward_key(size),
                                             runner_forward_body, r)))) {
            errf(err, "runner: capturing the graph of decode batch size %d failed (%s)", size,
                 strerror(-rc));
            return rc;
        }
    }
    if ((rc = capture_pieces(r, err)))
        return rc;
    if (measured && !r->be->ops->mem_info(r->be, &free1, &total))
        r->graph_bytes = free0 > free1 ? free0 - free1 : 0;
    if (r->num_graphs)
        LOG(LL_INFO, "runner", "captured %d graphs%s, decode batches of 1 to %d",
            r->num_graphs, r->forward_graphs ? " and their forwards alone (steps with masks)" : "",
            largest);
    bucket_list(&r->pieces, buckets, sizeof buckets);
    if (r->pieces.num)
        LOG(LL_INFO, "runner", "captured %d piecewise graphs (%d pieces for each of %d buckets) "
            "for mixed and prefill steps of up to %d tokens: %s", r->pieces.num *
            (r->m->cfg.num_layers + 1), r->m->cfg.num_layers + 1, r->pieces.num, largest_bucket,
            buckets);
    LOG(LL_INFO, "runner", "the graphs took %.1f MiB", r->graph_bytes / 1048576.0);
    return 0;
}

int runner__capture_graphs(struct runner *r, char *err)
{
    return r->num_graphs || r->pieces.num ? runner_capture_graphs(r, err) : 0;
}

int runner__num_graphs(const struct runner *r)
{
    return r->graphs_deferred ? 0 : r->num_graphs;
}
