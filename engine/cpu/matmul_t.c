/* matmul_t.c — out[n, cols] = x[n, rows] · w (+ bias) for a weight stored input-major
 * ([in, out], as gpt-oss publishes its experts), CPU reference. matmul.c's layout would need
 * a transposed copy of such a weight (gpt-oss-20b: 38 GB of experts); here each weight row
 * is one input feature, so the product is an axpy over the rows: out[t] += x[t][r] · w[r].
 * Threads split the output columns into blocks of MT_COLS; a block walks every weight row
 * once per MT_TOKENS tokens, widened to f32 once for all of them, so at decode (a few rows
 * per expert) the weight is streamed from memory once. With `deinterleave`, the weight's
 * columns alternate between two outputs (gpt-oss's gate in column 2j, up in 2j + 1), which
 * are written as out's halves, [gate; up], the layout the activations read. Each output sums
 * bias + x[0] w[0] + x[1] w[1] + … in row order in f32 (matmul.c sums 16 interleaved partial
 * sums instead: the two round differently, see docs/ARCHITECTURE.md). */
#include <errno.h>

#include "engine/cpu/cpu_ops.h"

#define MT_COLS 512         /* weight columns per task, widened to f32 per row: 2 KiB */
#define MT_TOKENS 64        /* tokens whose outputs a pass keeps: 64 x 512 floats = 128 KiB */
#define MT_MIN_PARALLEL (1 << 15)  /* multiply-adds below which threads cost more */

struct matmul_t_args {
    float *out;
    const float *x;
    const struct bk_weight *w, *bias;
    int n, lanes;           /* lanes: 2 when deinterleaving, else 1 */
};

/* Lane l of the widened columns [c0, c0 + nc) of a row: element j is column c0 + lanes j + l. */
static void split_lanes(float *dst[2], const float *src, int nc, int lanes)
{
    for (int j = 0; j < nc / lanes; j++)
        for (int l = 0; l < lanes; l++)
            dst[l][j] = src[lanes * j + l];
}

static void matmul_t_task(void *arg, int task, int thread)
{
    const struct matmul_t_args *a = arg;
    const struct bk_weight *w = a->w;
    int rows = w->rows, cols = w->cols, lanes = a->lanes, half = cols / lanes;
    int c0 = task * MT_COLS, nc = MIN(MT_COLS, cols - c0), nj = nc / lanes, j0 = c0 / lanes;
    float wide[MT_COLS], lane_buf[2][MT_COLS / 2];
    float *lane[2] = { lane_buf[0], lane_buf[1] };

    for (int t0 = 0; t0 < a->n; t0 += MT_TOKENS) {
        int nt = MIN(MT_TOKENS, a->n - t0);

        for (int t = t0; t < t0 + nt; t++)
            for (int l = 0; l < lanes; l++)
                for (int j = 0; j < nj; j++)
                    a->out[(size_t)t * cols + (size_t)l * half + j0 + j] =
                        a->bias ? weight_at(a->bias, (size_t)c0 + (size_t)lanes * j + l) : 0.0f;
        for (int r = 0; r < rows; r++) {
            const float *wl[2];

            if (w->dtype == DT_F32 && lanes == 1) {
                wl[0] = (const float *)w->data + (size_t)r * cols + c0;
            } else {
                weight_row_f32(wide, w, r, c0, nc);
                if (lanes == 1) {
                    wl[0] = wide;
                } else {
                    split_lanes(lane, wide, nc, lanes);
                    wl[0] = lane[0];
                    wl[1] = lane[1];
                }
            }
            for (int t = t0; t < t0 + nt; t++) {
                float xr = a->x[(size_t)t * rows + r];

                for (int l = 0; l < lanes; l++) {
                    float *o = a->out + (size_t)t * cols + (size_t)l * half + j0;
                    const float *v = wl[l];

                    for (int j = 0; j < nj; j++)
                        o[j] += xr * v[j];
                }
            }
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
