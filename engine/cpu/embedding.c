/* embedding.c — token embedding lookup and row gathering (the sampled rows before the LM
 * head), CPU reference. */
#include <errno.h>
#include <string.h>

#include "engine/cpu/cpu_ops.h"

/* x[i] = table[ids[i]] in f32. An id outside the table gives a zero row and -EINVAL (the
 * server validates ids, so this is a bug upstream, never a read out of bounds). */
int embedding_cpu(float *x, const int32_t *ids, const struct bk_weight *table, int n)
{
    int dim = table->cols, rc = 0;

    for (int i = 0; i < n; i++) {
        float *row = x + (size_t)i * dim;

        if (ids[i] < 0 || ids[i] >= table->rows) {
            memset(row, 0, (size_t)dim * sizeof *row);
            rc = -EINVAL;
            continue;
        }
        weight_row_f32(row, table, ids[i], 0, dim);
    }
    return rc;
}

/* out[i] = x[rows[i]], rows of `dim` floats. */
int gather_rows_cpu(float *out, const float *x, const int32_t *rows, int n, int dim)
{
    for (int i = 0; i < n; i++) {
        if (rows[i] < 0)
            return -EINVAL;
        memcpy(out + (size_t)i * dim, x + (size_t)rows[i] * dim, (size_t)dim * sizeof *out);
    }
    return 0;
}
