/* matmul_t.c — out[n, cols] = x[n, rows] · w (+ bias) for a weight stored input-major
 * ([in, out], as gpt-oss publishes its experts), CPU reference. matmul.c's layout would need
 * a transposed copy of such a weight (gpt-oss-20b: 38 GB of experts); here each weight row
 * is one input feature, so the product is an axpy over the rows: out[t] += x[t][r] · w[r].
 * Threads split the output columns into blocks of MT_COLS; a block walks every weight row
 * once per MT_TOKENS tokens, MT_ROWS rows at a time, each widened to f32 once for all of
 * those tokens, so at decode (a few rows per expert) the weight is streamed from memory
 * once. The sums stay in the weight's column order until the block's tokens are done; with
 * `deinterleave` (gpt-oss's gate in column 2j, up in 2j + 1) they are then written as out's
 * halves, [gate; up], the layout the activations read. Each output sums
 * bias + x[0] w[0] + x[1] w[1] + … in row order in f32 (matmul.c sums 16 interleaved partial
 * sums instead: the two round differently, see docs/ARCHITECTURE.md). */
#include <errno.h>

#include "engine/cpu/cpu_ops.h"

#define MT_COLS 128         /* weight columns per task: small enough that 2 or more threads get
                             * even shares of an expert (gpt-oss-20b: 45 and 23 tasks) */
#define MT_ROWS 8           /* weight rows added per pass over the outputs */
#define MT_TOKENS 32        /* tokens whose sums a pass keeps: 32 x 128 floats = 16 KiB */
#define MT_MIN_PARALLEL (1 << 15)  /* multiply-adds below which threads cost more */

struct matmul_t_args {
    float *out;
    const float *x;
    const struct bk_weight *w, *bias;
    int n, lanes;           /* 2: deinterleave on the way out, else 1 */
};

/* o[j] += x[0] v[0][j] + … + x[nr - 1] v[nr - 1][j], added in that order; MT_ROWS rows a
 * pass keep o[j] in a register instead of loading and storing it once per row. */
static void axpy_rows(float *o, const float *x, const float *v[MT_ROWS], int nr, int nc)
{
    if (nr == MT_ROWS) {
        const float *v0 = v[0], *v1 = v[1], *v2 = v[2], *v3 = v[3];
        const float *v4 = v[4], *v5 = v[5], *v6 = v[6], *v7 = v[7];

        for (int j = 0; j < nc; j++)
            o[j] = o[j] + x[0] * v0[j] + x[1] * v1[j] + x[2] * v2[j] + x[3] * v3[j] +
                   x[4] * v4[j] + x[5] * v5[j] + x[6] * v6[j] + x[7] * v7[j];
        return;
    }
    for (int q = 0; q < nr; q++)
        for (int j = 0; j < nc; j++)
            o[j] += x[q] * v[q][j];
}

/* Sums of nt tokens over the task's columns [c0, c0 + nc), in the weight's column order
 * (acc[t][c] is column c0 + c), written to out: as they are, or with deinterleave column
 * 2j to out's j and 2j + 1 to cols / 2 + j. */
static void store_tile(const struct matmul_t_args *a, float (*acc)[MT_COLS], int t0, int nt,
                       int c0, int nc)
{
    int cols = a->w->cols, half = cols / 2;

    for (int t = 0; t < nt; t++) {
        float *o = a->out + (size_t)(t0 + t) * cols;

        if (a->lanes == 1) {
            memcpy(o + c0, acc[t], (size_t)nc * sizeof *o);
            continue;
        }
        for (int j = 0; j < nc / 2; j++) {
            o[c0 / 2 + j] = acc[t][2 * j];
            o[half + c0 / 2 + j] = acc[t][2 * j + 1];
        }
    }
}

static void matmul_t_task(void *arg, int task, int thread)
{
    const struct matmul_t_args *a = arg;
    const struct bk_weight *w = a->w;
    int rows = w->rows, cols = w->cols, c0 = task * MT_COLS, nc = MIN(MT_COLS, cols - c0);
    float wide[MT_ROWS][MT_COLS], acc[MT_TOKENS][MT_COLS];

    for (int t0 = 0; t0 < a->n; t0 += MT_TOKENS) {
        int nt = MIN(MT_TOKENS, a->n - t0);

        for (int t = 0; t < nt; t++)
            for (int c = 0; c < nc; c++)
                acc[t][c] = a->bias ? weight_at(a->bias, (size_t)(c0 + c)) : 0.0f;
        for (int r0 = 0; r0 < rows; r0 += MT_ROWS) {
            int nr = MIN(MT_ROWS, rows - r0);
            const float *v[MT_ROWS];

            for (int q = 0; q < nr; q++) {
                if (w->dtype == DT_F32) {
                    v[q] = (const float *)w->data + (size_t)(r0 + q) * cols + c0;
                } else {
                    weight_row_f32(wide[q], w, r0 + q, c0, nc);
                    v[q] = wide[q];
                }
            }
            for (int t = 0; t < nt; t++)
                axpy_rows(acc[t], a->x + (size_t)(t0 + t) * rows + r0, v, nr, nc);
        }
        store_tile(a, acc, t0, nt, c0, nc);
    }
}

int matmul_t_cpu(struct threadpool *tp, float *out, const float *x, const struct bk_weight *w,
                 const struct bk_weight *bias, int n, bool deinterleave)
{
    struct matmul_t_args a = { out, x, w, bias, n, deinterleave ? 2 : 1 };
    int tasks = (w->cols + MT_COLS - 1) / MT_COLS;

    /* fp8 weights are linear layers', laid out as matmul.c reads them; experts stay float */
    if (w->dtype != DT_F32 && w->dtype != DT_BF16)
        return -EINVAL;
    if ((deinterleave && w->cols % 2) || (bias && bias->rows * bias->cols != w->cols))
        return -EINVAL;
    if (n <= 0)
        return 0;
    if ((double)n * w->rows * w->cols < MT_MIN_PARALLEL) {
        for (int i = 0; i < tasks; i++)
            matmul_t_task(&a, i, 0);
        return 0;
    }
    threadpool_run(tp, tasks, matmul_t_task, &a);
    return 0;
}
