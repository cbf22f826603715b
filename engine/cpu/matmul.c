/* matmul.c — out[n, rows] = x[n, cols] · wᵀ (+ bias) for linear layers and the LM head, CPU
 * reference. Threads split the output rows into blocks of MM_ROWS; a block walks the columns
 * in slices of MM_COLS, widens that slice of its weight rows to f32 once (bf16 → f32 is a
 * shift, fp8 → f32 a table look-up times its scale: W8A16) and uses it for every token, so
 * a weight row is read from memory once per call however many tokens the step has
 * (prefill), and the slices stay in L1. */
#include <errno.h>

#include "engine/cpu/cpu_ops.h"

#define MM_ROWS 8      /* output rows per task */
#define MM_COLS 512    /* columns widened to f32 per pass: MM_ROWS * MM_COLS floats = 16 KiB */
#define MM_MIN_PARALLEL (1 << 15)  /* multiply-adds below which threads cost more than they save */

struct matmul_args {
    float *out;
    const float *x;
    const struct bk_weight *w, *bias;
    int n;
    const float *lut;          /* F8_E4M3 weights: the 256 decoded codes */
};

static void matmul_task(void *arg, int task, int thread)
{
    const struct matmul_args *a = arg;
    const struct bk_weight *w = a->w;
    int rows = w->rows, cols = w->cols;
    int r0 = task * MM_ROWS, nr = MIN(MM_ROWS, rows - r0);
    float wbuf[MM_ROWS][MM_COLS];
    const float *wr[MM_ROWS];

    for (int t = 0; t < a->n; t++)
        for (int r = 0; r < nr; r++)
            a->out[(size_t)t * rows + r0 + r] = a->bias ? weight_at(a->bias, r0 + r) : 0.0f;
    for (int c0 = 0; c0 < cols; c0 += MM_COLS) {
        int nc = MIN(MM_COLS, cols - c0);

        for (int r = 0; r < nr; r++) {
            if (w->dtype == DT_F32) {
                wr[r] = (const float *)w->data + (size_t)(r0 + r) * cols + c0;
            } else if (w->dtype == DT_F8_E4M3) {
                weight_row_fp8(wbuf[r], w, a->lut, r0 + r, c0, nc);
                wr[r] = wbuf[r];
            } else {
                weight_row_f32(wbuf[r], w, r0 + r, c0, nc);
                wr[r] = wbuf[r];
            }
        }
        for (int t = 0; t < a->n; t++) {
            const float *xt = a->x + (size_t)t * cols + c0;
            float *o = a->out + (size_t)t * rows + r0;

            for (int r = 0; r < nr; r++)
                o[r] += dot_f32(xt, wr[r], nc);
        }
    }
}

int matmul_cpu(struct threadpool *tp, float *out, const float *x, const struct bk_weight *w,
               const struct bk_weight *bias, int n)
{
    float lut[256];
    struct matmul_args a = { out, x, w, bias, n, lut };
    int tasks = (w->rows + MM_ROWS - 1) / MM_ROWS;

    if (w->dtype != DT_F32 && w->dtype != DT_BF16 && w->dtype != DT_F8_E4M3)
        return -EINVAL;
    if (w->dtype == DT_F8_E4M3) {
        if (!w->scale || w->scale_block < 1 ||
            w->scale_cols != (w->cols + w->scale_block - 1) / w->scale_block)
            return -EINVAL;
        fp8_e4m3_table(lut);
    }
    if (bias && (bias->rows * bias->cols != w->rows))
        return -EINVAL;
    if (n <= 0)
        return 0;
    if ((double)n * w->rows * w->cols < MM_MIN_PARALLEL) {
        for (int i = 0; i < tasks; i++)
            matmul_task(&a, i, 0);
        return 0;
    }
    threadpool_run(tp, tasks, matmul_task, &a);
    return 0;
}
