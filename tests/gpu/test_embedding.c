/* test_embedding.c — the embedding lookup and the row gather against the CPU backend (both
 * are copies, so the results are exact), with 1 to 512 rows and widths with and without
 * 16-byte vectors; ids outside the table give zero rows on the GPU. */
#ifdef OSPREY_CUDA
#include <stdlib.h>

#include "engine/base/util.h"
#include "tests/gpu/gpu_test.h"

static bool backends(struct gt *t)
{
    struct backend_options o = { .max_tokens = 512, .max_reqs = 8, .max_blocks_per_req = 8,
                                 .num_kv_groups = 1, .vocab_size = 16 };
    return gt_backends(t, &o);
}

static void embed_once(struct gt *t, int vocab, int dim, int n)
{
    float *tab = malloc((size_t)vocab * dim * 4), *ref = malloc((size_t)n * dim * 4);
    float *got = malloc((size_t)n * dim * 4);
    int32_t *ids = malloc((size_t)n * 4);
    struct dweight w = { 0 };
    struct dbuf out = { 0 };
    struct rbuf rid = { 0 };

    if (!gt_check(t, tab && ref && got && ids, "out of host memory"))
        goto out;
    gt_fill(&t->rng, tab, (size_t)vocab * dim, -1.0f, 1.0f);
    for (int i = 0; i < n; i++)
        ids[i] = i == 0 ? vocab - 1 : gt_randint(&t->rng, vocab);
    if (!dweight_create(t, &w, tab, vocab, dim, DT_BF16) || !dbuf_create(t, &out, (size_t)n * dim, false) ||
        !dbuf_poison(t, &out) || !rbuf_create(t, &rid, ids, (size_t)n * 4))
        goto out;
    gt_check(t, t->cpu->ops->embedding(t->cpu, out.cpu, rid.cpu, &w.cpu, n) == 0, "cpu embedding");
    gt_check(t, t->gpu->ops->embedding(t->gpu, out.gpu, rid.gpu, &w.gpu, n) == 0, "cuda embedding");
    if (dbuf_get(t, &out, ref, got))
        gt_compare(t, "embedding", got, ref, (size_t)n * dim, 0.0, 0.0, 0.0);
out:
    dweight_free(t, &w);
    dbuf_free(t, &out);
    rbuf_free(t, &rid);
    free(tab);
    free(ref);
    free(got);
    free(ids);
}

static void embedding_matches_cpu(struct gt *t)
{
    if (!backends(t))
        return;
    embed_once(t, 384, 64, 1);
    embed_once(t, 128256, 4096, 37);
    embed_once(t, 1000, 2048, 512);
    embed_once(t, 50, 60, 9);     /* width 60: no 16-byte vectors */
    gt_note(t, "vocab 384/128256/1000/50, dims 64/4096/2048/60, 1 to 512 rows, exact");
}

static void embedding_of_an_id_outside_the_table_is_zeros(struct gt *t)
{
    int32_t ids[4] = { 3, -1, 50, 7 };
    float tab[50 * 64], got[4 * 64], ref[4 * 64] = { 0 };
    struct dweight w = { 0 };
    struct dbuf out = { 0 };
    struct rbuf rid = { 0 };

    if (!backends(t))
        return;
    gt_fill(&t->rng, tab, ARRAY_LEN(tab), -1.0f, 1.0f);
    for (int d = 0; d < 64; d++) {
        ref[d] = tab[3 * 64 + d];
        ref[3 * 64 + d] = tab[7 * 64 + d];
    }
    if (dweight_create(t, &w, tab, 50, 64, DT_BF16) && dbuf_create(t, &out, 4 * 64, false) &&
        dbuf_poison(t, &out) && rbuf_create(t, &rid, ids, sizeof ids)) {
        gt_check(t, t->gpu->ops->embedding(t->gpu, out.gpu, rid.gpu, &w.gpu, 4) == 0, "embedding");
        if (dbuf_get(t, &out, NULL, got))
            gt_compare(t, "rows of ids -1 and 50 (vocab 50)", got, ref, 4 * 64, 0.0, 0.0, 0.0);
    }
    dweight_free(t, &w);
    dbuf_free(t, &out);
    rbuf_free(t, &rid);
    gt_note(t, "ids -1 and vocab: zero rows, neighbours intact");
}

static void gather_once(struct gt *t, int rows, int dim, int n)
{
    float *x = malloc((size_t)rows * dim * 4), *ref = malloc((size_t)n * dim * 4);
    float *got = malloc((size_t)n * dim * 4);
    int32_t *idx = malloc((size_t)n * 4);
    struct dbuf bx = { 0 }, out = { 0 };
    struct rbuf ri = { 0 };

    if (!gt_check(t, x && ref && got && idx, "out of host memory"))
        goto out;
    gt_fill(&t->rng, x, (size_t)rows * dim, -2.0f, 2.0f);
    for (int i = 0; i < n; i++)
        idx[i] = gt_randint(&t->rng, rows);
    if (!dbuf_create(t, &bx, (size_t)rows * dim, false) || !dbuf_set(t, &bx, x) ||
        !dbuf_create(t, &out, (size_t)n * dim, false) || !dbuf_poison(t, &out) ||
        !rbuf_create(t, &ri, idx, (size_t)n * 4))
        goto out;
    gt_check(t, t->cpu->ops->gather_rows(t->cpu, out.cpu, bx.cpu, ri.cpu, n, dim) == 0, "cpu gather");
    gt_check(t, t->gpu->ops->gather_rows(t->gpu, out.gpu, bx.gpu, ri.gpu, n, dim) == 0, "cuda gather");
    if (dbuf_get(t, &out, ref, got))
        gt_compare(t, "gather_rows", got, ref, (size_t)n * dim, 0.0, 0.0, 0.0);
out:
    dbuf_free(t, &bx);
    dbuf_free(t, &out);
    rbuf_free(t, &ri);
    free(x);
    free(ref);
    free(got);
    free(idx);
}

static void gather_rows_matches_cpu(struct gt *t)
{
    if (!backends(t))
        return;
    gather_once(t, 512, 4096, 1);
    gather_once(t, 512, 4096, 256);
    gather_once(t, 40, 100, 13);
    gt_note(t, "1 and 256 of 512 rows of 4096, 13 of 40 rows of 100, exact");
}

const struct gt_case gt_cases_embedding[] = {
    { "embedding_matches_cpu", embedding_matches_cpu },
    { "embedding_of_an_id_outside_the_table_is_zeros", embedding_of_an_id_outside_the_table_is_zeros },
    { "gather_rows_matches_cpu", gather_rows_matches_cpu },
    { NULL, NULL },
};
#endif
