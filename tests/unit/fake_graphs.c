/* fake_graphs.c — the fake graph backend of fake_graphs.h. A real graph replays the
 * scalars it was captured with, so a replay checks that the restaged batch carries exactly
 * those (only the arrays behind the pointers may change). */
#include <errno.h>
#include <string.h>

#include "engine/runner_pieces.h"
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
static struct fake_graph pieces[FAKE_GRAPHS_MAX_BUCKETS][FAKE_GRAPHS_MAX_PIECES];
static struct bk_batch last_staged;

/* A piecewise key's bucket index and piece (runner_pieces.h), false for a decode key. */
static bool piece_of(int key, int *bucket, int *piece)
{
    if (key < PIECES_KEY_BASE)
        return false;
    *bucket = (key - PIECES_KEY_BASE) / (MODEL_MAX_LAYERS + 1);
    *piece = (key - PIECES_KEY_BASE) % (MODEL_MAX_LAYERS + 1);
    return true;
}

/* The graph of key `key`, NULL beyond the sizes a test may capture. */
static struct fake_graph *graph_of(int key)
{
    int bucket, piece;

    if (piece_of(key, &bucket, &piece))
        return bucket < FAKE_GRAPHS_MAX_BUCKETS && piece < FAKE_GRAPHS_MAX_PIECES
               ? &pieces[bucket][piece] : NULL;
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
    if (key >= PIECES_KEY_BASE) {
        fake_graphs.piece_captures++;
        return 0;
    }
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
    /* a piece bakes in its token count and nothing else of the batch (forward.h) */
    if (key >= PIECES_KEY_BASE) {
        if (n->num_tokens != c->num_tokens || n->num_kv_groups != c->num_kv_groups ||
            n->max_blocks_per_req != c->max_blocks_per_req)
            return -EINVAL;
        fake_graphs.piece_replays++;
        return g->body(g->arg);
    }
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

/* cudaMalloc's memory holds whatever it held: here NaN bytes, so that a buffer read before
 * anything wrote it (a piecewise step's padding rows) shows on the CPU too. */
static struct backend_ops poisoned;
static void *(*plain_alloc)(struct backend *be, size_t bytes, char *err);

static void *poison_alloc(struct backend *be, size_t bytes, char *err)
{
    void *p = plain_alloc(be, bytes, err);

    if (p)
        memset(p, 0xff, bytes);
    return p;
}

void fake_graphs_poison_alloc(struct backend *be)
{
    plain_alloc = be->ops->alloc;
    poisoned = *be->ops;
    poisoned.alloc = poison_alloc;
    be->ops = &poisoned;
}

struct backend_ops *fake_graphs_patch(struct backend *be)
{
    memset(&fake_graphs, 0, sizeof fake_graphs);
    memset(whole, 0, sizeof whole);
    memset(forward_only, 0, sizeof forward_only);
    memset(pieces, 0, sizeof pieces);
    fake_graphs_base = be->ops;
    patched = *be->ops;
    patched.stage = fake_stage;
    plain_alloc = be->ops->alloc;
    patched.alloc = poison_alloc;
    patched.graph_capture = fake_capture;
    patched.graph_replay = fake_replay;
    be->ops = &patched;
    return &patched;
}
