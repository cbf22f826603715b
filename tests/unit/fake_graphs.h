/* fake_graphs.h — a fake graph backend for the runner suites (test_forward.c,
 * test_runner_masks.c): the cpu backend whose "graphs" remember the body they were captured
 * with and replay by calling it again against the restaged batch — what a CUDA graph does
 * with fixed buffers. Keys are the runner's: a decode size for the whole step, minus it for
 * the forward alone (backend_ops.graph_capture); a piece of a token-count bucket from
 * PIECES_KEY_BASE on (engine/runner_pieces.h). */
#ifndef OSPREY_TEST_FAKE_GRAPHS_H
#define OSPREY_TEST_FAKE_GRAPHS_H

#include "engine/backend.h"

#define FAKE_GRAPHS_MAX_SIZE 16   /* the largest decode size a test captures */
#define FAKE_GRAPHS_MAX_BUCKETS 8 /* piecewise buckets a test captures */
#define FAKE_GRAPHS_MAX_PIECES 17 /* pieces of one bucket: models of up to 16 layers */

struct fake_graph_counts {
    int captures;              /* graphs captured, of either kind */
    int forward_captures;      /* of those, the forward alone (negative keys) */
    int replays;               /* graphs replayed, of either kind */
    int forward_replays;       /* of those, the forward alone */
    int exact_replays;         /* replays of a batch exactly the graph's size (unpadded) */
    int piece_captures;        /* piecewise graphs captured (keys from PIECES_KEY_BASE) */
    int piece_replays;         /* piecewise graphs replayed */
};

extern struct fake_graph_counts fake_graphs;        /* zeroed by fake_graphs_patch */
extern const struct backend_ops *fake_graphs_base;  /* the cpu ops the fake wraps */

/* Points be at a copy of its ops with stage, graph_capture and graph_replay faked and
 * returns that copy, for a caller that fakes more ops. One backend at a time. */
struct backend_ops *fake_graphs_patch(struct backend *be);

/* Only the allocations faked, as fake_graphs_patch fakes them too: filled with NaN bytes,
 * as cudaMalloc's memory may hold anything (for the eager runner a faked one is compared
 * with, so that both start from the same bytes). */
void fake_graphs_poison_alloc(struct backend *be);

#endif
