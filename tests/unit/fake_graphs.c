/* fake_graphs.c — the fake graph backend of fake_graphs.h. A real graph replays the
 * scalars it was captured with, so a replay checks that the restaged batch carries exactly
 * those (only the arrays behind the pointers may change). */
#include <errno.h>
#include <string.h>

#include "tests/unit/fake_graphs.h"

struct fake_graph {
    int (*body)(void *);
    void *arg;
    struct bk_batch staged;    /* as staged when it was captured */
};

struct fake_graph_counts fake_graphs;
const struct backend_ops *fake_graphs_base;
static struct backend_ops patched;
static struct fake_graph whole[FAKE_GRAPHS_MAX_SIZE + 1], forward_only[FAKE_GRAPHS_MAX_SIZE + 1];
static struct bk_batch last_staged;

/* The graph of key `key`, NULL beyond the sizes a test may capture. */
static struct fake_graph *graph_of(int key)
{
    if (key == 0 || key > FAKE_GRAPHS_MAX_SIZE || key < -FAKE_GRAPHS_MAX_SIZE)
        return NULL;
    return key > 0 ? &whole[key] : &forward_only[-key];
}

static int fake_stage(struct backend *be, const struct step_batch *b, const struct sample_row *rows,
                      struct bk_batch *dev)
{
    int rc = fake_graphs_base->stage(be, b, rows, dev);

    last_staged = *dev;
    return rc;
}

static int fake_capture(struct backend *be, int key, int (*body)(void *), void *arg)
{
    struct fake_graph *g = graph_of(key);

    (void)be;
    if (!g)
        return -EINVAL;
    *g = (struct fake_graph){ body, arg, last_staged };
    fake_graphs.captures++;
    fake_graphs.forward_captures += key < 0;
    return 0;
}

static int fake_replay(struct backend *be, int key)
{
    struct fake_graph *g = graph_of(key);
    const struct bk_batch *c, *n = &last_staged;
    int size = key < 0 ? -key : key;

    (void)be;
    if (!g || !g->body)
        return -ENOENT;
    c = &g->staged;
    if (c->num_tokens != size || n->num_tokens != size || n->num_reqs != c->num_reqs ||
        n->num_sample != c->num_sample || n->max_query_len != c->max_query_len ||
        n->max_seq_len != c->max_seq_len || n->max_blocks_per_req != c->max_blocks_per_req ||
        n->num_kv_groups != c->num_kv_groups)
        return -EINVAL;
    fake_graphs.replays++;
    fake_graphs.forward_replays += key < 0;
    fake_graphs.exact_replays += n->seq_lens[n->num_reqs - 1] > 0;
    return g->body(g->arg);
}

struct backend_ops *fake_graphs_patch(struct backend *be)
{
    memset(&fake_graphs, 0, sizeof fake_graphs);
    memset(whole, 0, sizeof whole);
    memset(forward_only, 0, sizeof forward_only);
    fake_graphs_base = be->ops;
    patched = *be->ops;
    patched.stage = fake_stage;
    patched.graph_capture = fake_capture;
    patched.graph_replay = fake_replay;
    be->ops = &patched;
    return &patched;
}
