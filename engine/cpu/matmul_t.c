/* matmul_t.c — out[n, cols] = x[n, rows] · w (+ bias) for a weight stored input-major
 * ([in, out], as gpt-oss publishes its experts), CPU reference. matmul.c's layout would need
 * a transposed copy of such a weight (gpt-oss-20b: 38 GB of experts); here each weight row
 * is one input feature, so the product is an axpy over the rows: out[t] += x[t][r] · w[r].
 * Threads split the output columns into blocks of MT_COLS; a block walks every weight row
 * once per MT_TOKENS tokens, MT_ROWS rows at a time, widened to f32 once for all of them, so at decode (a few rows
 * per expert) the weight is streamed from memory once. With `deinterleave`, the weight's
 * columns alternate between two outputs (gpt-oss's gate in column 2j, up in 2j + 1), which
 * are written as out's halves, [gate; up], the layout the activations read. Each output sums
 * bias + x[0] w[0] + x[1] w[1] + … in row order in f32 (matmul.c sums 16 interleaved partial
 * sums instead: the two round differently, see docs/ARCHITECTURE.md). */
#include <errno.h>

#include "engine/cpu/cpu_ops.h"

#define MT_COLS 512         /* weight columns per task, widened to f32 per row: 2 KiB */
#define MT_ROWS 8           /* weight rows added per pass over the outputs */
#define MT_TOKENS 64        /* tokens whose outputs a pass keeps: 64 x 512 floats = 128 KiB */
#define MT_MIN_PARALLEL (1 << 15)  /* multiply-adds below which threads cost more */

struct matmul_t_args {
    float *out;
    const float *x;
    const struct bk_weight *w, *bias;
    int n, lanes;           /* lanes: 2 when deinterleaving, else 1 */
};

/* Columns [c0, c0 + nc) of row r widened to f32 into lanes: lane[l][j] is column
 * c0 + lanes j + l (two lanes: gpt-oss's gate and up, split in the same pass). */
static void widen_lanes(float (*lane)[MT_COLS], const struct bk_weight *w, int r, int c0, int nc,
                        int lanes)
{
    size_t base = (size_t)r * w->cols + c0;

    if (lanes == 1) {
        weight_row_f32(lane[0], w, r, c0, nc);
    } else if (w->dtype == DT_BF16) {
        const uint16_t *src = (const uint16_t *)w->data + base;

        for (int j = 0; j < nc / 2; j++) {
            uint32_t g = (uint32_t)src[2 * j] << 16, u = (uint32_t)src[2 * j + 1] << 16;

            memcpy(&lane[0][j], &g, sizeof g);
            memcpy(&lane[1][j], &u, sizeof u);
        }
    } else {
        const float *src = (const float *)w->data + base;

        for (int j = 0; j < nc / 2; j++) {
            lane[0][j] = src[2 * j];
            lane[1][j] = src[2 * j + 1];
        }
    }
}

/* o[j] += x[0] v[0][j] + … + x[nr - 1] v[nr - 1][j], added in that order; MT_ROWS rows a
 * pass keep o[j] in a register instead of loading and storing it once per row. */
static void axpy_rows(float *o, const float *x, const float *v[MT_ROWS], int nr, int nj)
{
    if (nr == MT_ROWS) {
        const float *v0 = v[0], *v1 = v[1], *v2 = v[2], *v3 = v[3];
        const float *v4 = v[4], *v5 = v[5], *v6 = v[6], *v7 = v[7];

        for (int j = 0; j < nj; j++)
            o[j] = o[j] + x[0] * v0[j] + x[1] * v1[j] + x[2] * v2[j] + x[3] * v3[j] +
                   x[4] * v4[j] + x[5] * v5[j] + x[6] * v6[j] + x[7] * v7[j];
        return;
    }
    for (int q = 0; q < nr; q++)
        for (int j = 0; j < nj; j++)
            o[j] += x[q] * v[q][j];
}

static void matmul_t_task(void *arg, int task, int thread)
{
    const struct matmul_t_args *a = arg;
    const struct bk_weight *w = a->w;
    int rows = w->rows, cols = w->cols, lanes = a->lanes, half = cols / lanes;
    int c0 = task * MT_COLS, nc = MIN(MT_COLS, cols - c0), nj = nc / lanes, j0 = c0 / lanes;
    float buf[MT_ROWS][2][MT_COLS];

    for (int t0 = 0; t0 < a->n; t0 += MT_TOKENS) {
        int nt = MIN(MT_TOKENS, a->n - t0);

        for (int t = t0; t < t0 + nt; t++)
            for (int l = 0; l < lanes; l++)
                for (int j = 0; j < nj; j++)
                    a->out[(size_t)t * cols + (size_t)l * half + j0 + j] =
                        a->bias ? weight_at(a->bias, (size_t)c0 + (size_t)lanes * j + l) : 0.0f;
        for (int r0 = 0; r0 < rows; r0 += MT_ROWS) {
            int nr = MIN(MT_ROWS, rows - r0);
            const float *v[2][MT_ROWS];

            for (int q = 0; q < nr; q++) {
                widen_lanes(buf[q], w, r0 + q, c0, nc, lanes);
                for (int l = 0; l < lanes; l++)
                    v[l][q] = buf[q][l];
            }
            for (int t = t0; t < t0 + nt; t++)
                for (int l = 0; l < lanes; l++)
                    axpy_rows(a->out + (size_t)t * cols + (size_t)l * half + j0,
                              a->x + (size_t)t * rows + r0, v[l], nr, nj);
        }
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
