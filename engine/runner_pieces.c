/* runner_pieces.c — piecewise graphs of mixed and prefill steps (runner_pieces.h). A piece
 * reads the batch only through num_tokens (baked into its graph: the bucket) and the
 * staged arrays (input_ids, positions, slot_mapping), so one capture per bucket serves
 * every step padded to it; the attention, which needs the requests (query_start_loc,
 * seq_lens, block tables, max_seq_len), runs eagerly with the true token count, and the
 * head too, since the number of sampled rows varies independently of the tokens. Padding
 * tokens write no cache (slot KV_PADDING_SLOT) and rows never mix in a piece, so they
 * change no real row. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/util.h"   /* MIN */
#include "engine/runner_pieces.h"

struct piece_arg {
    struct runner_pieces *pc;
    int p;
};

static int cmp_int(const void *a, const void *b)
{
    return (*(const int *)a > *(const int *)b) - (*(const int *)a < *(const int *)b);
}

int graph_sizes_sort(int *sizes, int n, int max)
{
    int kept = 0;

    qsort(sizes, n, sizeof *sizes, cmp_int);
    for (int i = 0; i < n; i++)
        if (sizes[i] <= max && (kept == 0 || sizes[i] != sizes[kept - 1]))
            sizes[kept++] = sizes[i];
    return kept;
}

int pieces_init(struct runner_pieces *pc, const int *sizes, int n, int max_tokens,
                const struct forward_ctx *f, const struct bk_batch *dev)
{
    int L = f->cfg->num_layers;

    memset(pc, 0, sizeof *pc);
    pc->num_layers = L;
    pc->fwd = f;
    pc->dev = dev;
    for (int i = 0; i < n; i++)
        if (sizes[i] < 1)
            return -EINVAL;
    if (n == 0)
        return 0;
    if (!(pc->sizes = malloc(n * sizeof *pc->sizes)) ||
        !(pc->args = calloc(L + 1, sizeof *pc->args))) {
        pieces_fini(pc);
        return -ENOMEM;
    }
    memcpy(pc->sizes, sizes, n * sizeof *pc->sizes);
    pc->num = MIN(graph_sizes_sort(pc->sizes, n, max_tokens), PIECES_MAX_BUCKETS);
    for (int p = 0; p <= L; p++)
        pc->args[p] = (struct piece_arg){ pc, p };
    return 0;
}

void pieces_fini(struct runner_pieces *pc)
{
    free(pc->sizes);
    free(pc->args);
    pc->sizes = NULL;
    pc->args = NULL;
    pc->num = 0;
}

int pieces_bucket(const struct runner_pieces *pc, int num_tokens, int cap_tokens)
{
    if (num_tokens <= 0)
        return -1;
    for (int i = 0; i < pc->num; i++)
        if (pc->sizes[i] >= num_tokens)
            return pc->sizes[i] <= cap_tokens ? i : -1;
    return -1;
}

static int piece_body(void *arg)
{
    struct piece_arg *a = arg;

    return forward_piece(a->pc->fwd, a->pc->dev, a->p);
}

int pieces_capture(struct runner_pieces *pc, struct backend *be, int i)
{
    int rc;

    for (int p = 0; p <= pc->num_layers; p++)
        if ((rc = be->ops->graph_capture(be, PIECES_KEY(i, p), piece_body, &pc->args[p])))
            return rc;
    return 0;
}

int pieces_run(struct runner_pieces *pc, struct backend *be, int i, int real_tokens)
{
    struct bk_batch real = *pc->dev;   /* attention over the requests' tokens only */
    int L = pc->num_layers, rc;

    real.num_tokens = real_tokens;
    for (int p = 0; p <= L; p++)
        if ((rc = be->ops->graph_replay(be, PIECES_KEY(i, p))) ||
            (p < L && (rc = forward_attention(pc->fwd, &real, p))))
            return rc;
    pc->steps++;
    return forward_head(pc->fwd, pc->dev);
}
