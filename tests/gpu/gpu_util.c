/* gpu_util.c — the GPU tests' framework and shared helpers (gpu_test.h): checks and
 * comparisons, the two backends, buffers mirrored on both, bf16-rounded random data. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/rng.h"
#include "engine/base/util.h"
#include "engine/model/gen_model.h"   /* gt_gen_model */
#include "engine/model/model.h"
#include "tests/gpu/gpu_test.h"

bool gt_check(struct gt *t, bool cond, const char *fmt, ...)
{
    va_list ap;

    t->checks++;
    if (cond)
        return true;
    if (t->failures++ == 0) {
        va_start(ap, fmt);
        vsnprintf(t->first_failure, sizeof t->first_failure, fmt, ap);
        va_end(ap);
    }
    return false;
}

void gt_note(struct gt *t, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(t->note, sizeof t->note, fmt, ap);
    va_end(ap);
}

void gt_remove(struct gt *t, const char *fmt, ...)
{
    char path[512], cmd[sizeof path + 16];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(path, sizeof path, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0)
        gt_check(t, false, "could not remove %s", path);
}

bool gt_compare(struct gt *t, const char *what, const float *got, const float *ref, size_t n,
                double atol, double rtol, double max_nmse)
{
    double max_abs = 0.0, num = 0.0, den = 0.0, nmse;
    size_t bad = 0, first = 0;

    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - ref[i]);

        if (!(d <= atol + rtol * fabs(ref[i]))) {   /* NaN fails too */
            if (bad++ == 0)
                first = i;
        }
        if (d > max_abs || isnan(d))
            max_abs = isnan(d) ? INFINITY : d;
        num += isnan(d) ? 1e30 : d * d;
        den += (double)ref[i] * ref[i];
    }
    nmse = den > 0.0 ? num / den : (num > 0.0 ? INFINITY : 0.0);
    t->max_abs = MAX(t->max_abs, max_abs);
    t->nmse = MAX(t->nmse, nmse);
    if (!gt_check(t, bad == 0, "%s: %zu of %zu outside %.2g + %.2g|ref|; first [%zu] got %g ref %g",
                  what, bad, n, atol, rtol, first, bad ? got[first] : 0.0, bad ? ref[first] : 0.0))
        return false;
    return gt_check(t, nmse <= max_nmse, "%s: nmse %.3g > %.3g", what, nmse, max_nmse);
}

bool gt_backends(struct gt *t, const struct backend_options *o)
{
    char err[ERR_LEN] = "";

    gt_backends_free(t);
    if (!gt_check(t, backend_create(&t->cpu, "cpu", o, err) == 0, "cpu backend: %s", err))
        return false;
    return gt_check(t, backend_create(&t->gpu, "cuda", o, err) == 0, "cuda backend: %s", err);
}

void gt_backends_free(struct gt *t)
{
    backend_destroy(t->cpu);
    backend_destroy(t->gpu);
    t->cpu = t->gpu = NULL;
}

uint64_t gt_rand_u64(uint64_t *s)
{
    return rng_next(s);
}

static float bf16_round(float x)
{
    return bf16_to_f32(f32_to_bf16(x));
}

float gt_randf(uint64_t *s, float lo, float hi)
{
    double u = (double)(gt_rand_u64(s) >> 11) / 9007199254740992.0;
    return bf16_round((float)(lo + (hi - lo) * u));
}

int gt_randint(uint64_t *s, int n)
{
    return (int)(gt_rand_u64(s) % (uint64_t)n);
}

void gt_fill(uint64_t *s, float *x, size_t n, float lo, float hi)
{
    for (size_t i = 0; i < n; i++)
        x[i] = gt_randf(s, lo, hi);
}

void gt_inv_freq(float *f, int D, double theta)
{
    for (int i = 0; i < D / 2; i++)
        f[i] = (float)pow(theta, -2.0 * i / D);
}

void gt_positions(uint64_t *s, int32_t *pos, int n)
{
    for (int i = 0; i < n; i++)
        pos[i] = i % 3 == 0 ? gt_randint(s, 131072) : gt_randint(s, 4096);
    pos[0] = 0;
}

/* ---- mirrored buffers ---- */

bool dbuf_create(struct gt *t, struct dbuf *d, size_t n, bool f32)
{
    char err[ERR_LEN] = "";

    memset(d, 0, sizeof *d);
    d->n = n;
    d->f32 = f32;
    d->cpu = t->cpu->ops->alloc(t->cpu, n * sizeof(float), err);
    if (!gt_check(t, d->cpu != NULL, "cpu alloc: %s", err))
        return false;
    d->gpu = t->gpu->ops->alloc(t->gpu, n * (f32 ? 4 : 2), err);
    return gt_check(t, d->gpu != NULL, "cuda alloc: %s", err);
}

void dbuf_free(struct gt *t, struct dbuf *d)
{
    if (d->cpu)
        t->cpu->ops->free(t->cpu, d->cpu);
    if (d->gpu)
        t->gpu->ops->free(t->gpu, d->gpu);
    memset(d, 0, sizeof *d);
}

bool dbuf_set(struct gt *t, struct dbuf *d, const float *host)
{
    uint16_t *h16;
    int rc;

    if (t->cpu->ops->upload(t->cpu, d->cpu, host, d->n * 4))
        return gt_check(t, false, "cpu upload failed");
    if (d->f32)
        return gt_check(t, t->gpu->ops->upload(t->gpu, d->gpu, host, d->n * 4) == 0,
                        "cuda upload failed");
    if (!(h16 = malloc(d->n * 2 + 2)))
        return gt_check(t, false, "out of host memory");
    for (size_t i = 0; i < d->n; i++)
        h16[i] = f32_to_bf16(host[i]);
    rc = t->gpu->ops->upload(t->gpu, d->gpu, h16, d->n * 2);
    free(h16);
    return gt_check(t, rc == 0, "cuda upload failed (%d)", rc);
}

bool dbuf_poison(struct gt *t, struct dbuf *d)
{
    float *nan = malloc(d->n * 4 + 4);
    bool ok;

    if (!nan)
        return gt_check(t, false, "out of host memory");
    for (size_t i = 0; i < d->n; i++)
        nan[i] = NAN;
    ok = dbuf_set(t, d, nan);
    free(nan);
    return ok;
}

bool dbuf_get(struct gt *t, const struct dbuf *d, float *cpu_out, float *gpu_out)
{
    uint16_t *h16;
    int rc;

    if (cpu_out && t->cpu->ops->download(t->cpu, cpu_out, d->cpu, d->n * 4))
        return gt_check(t, false, "cpu download failed");
    if (!gpu_out)
        return true;
    if (d->f32)
        return gt_check(t, t->gpu->ops->download(t->gpu, gpu_out, d->gpu, d->n * 4) == 0,
                        "cuda download failed");
    if (!(h16 = malloc(d->n * 2 + 2)))
        return gt_check(t, false, "out of host memory");
    rc = t->gpu->ops->download(t->gpu, h16, d->gpu, d->n * 2);
    for (size_t i = 0; i < d->n && rc == 0; i++)
        gpu_out[i] = bf16_to_f32(h16[i]);
    free(h16);
    return gt_check(t, rc == 0, "cuda download failed (%d)", rc);
}

bool rbuf_create(struct gt *t, struct rbuf *r, const void *host, size_t bytes)
{
    char err[ERR_LEN] = "";

    memset(r, 0, sizeof *r);
    r->bytes = bytes;
    if (!gt_check(t, (r->cpu = t->cpu->ops->alloc(t->cpu, bytes, err)) != NULL, "%s", err) ||
        !gt_check(t, (r->gpu = t->gpu->ops->alloc(t->gpu, bytes, err)) != NULL, "%s", err))
        return false;
    return gt_check(t, t->cpu->ops->upload(t->cpu, r->cpu, host, bytes) == 0 &&
                       t->gpu->ops->upload(t->gpu, r->gpu, host, bytes) == 0, "upload failed");
}

void rbuf_free(struct gt *t, struct rbuf *r)
{
    if (r->cpu)
        t->cpu->ops->free(t->cpu, r->cpu);
    if (r->gpu)
        t->gpu->ops->free(t->gpu, r->gpu);
    memset(r, 0, sizeof *r);
}

bool dweight_create(struct gt *t, struct dweight *w, const float *host, int rows, int cols,
                    enum dtype dtype)
{
    size_t n = (size_t)rows * cols;
    struct tensor_ref ref = { .name = "test.weight", .dtype = dtype, .ndim = cols > 1 ? 2 : 1,
                              .shape = { rows, cols }, .nbytes = n * dtype_size(dtype) };
    char err[ERR_LEN] = "";

    memset(w, 0, sizeof *w);
    if (!(w->blob = malloc(ref.nbytes)))
        return gt_check(t, false, "out of host memory");
    for (size_t i = 0; i < n; i++) {
        if (dtype == DT_F32)
            ((float *)w->blob)[i] = host[i];
        else if (dtype == DT_BF16)
            ((uint16_t *)w->blob)[i] = f32_to_bf16(host[i]);
        else
            ((uint16_t *)w->blob)[i] = f32_to_f16(host[i]);
    }
    ref.data = w->blob;
    if (!gt_check(t, t->cpu->ops->upload_weight(t->cpu, &w->cpu, &ref, 1, err) == 0,
                  "cpu upload_weight: %s", err))
        return false;
    return gt_check(t, t->gpu->ops->upload_weight(t->gpu, &w->gpu, &ref, 1, err) == 0,
                    "cuda upload_weight: %s", err);
}

void dweight_free(struct gt *t, struct dweight *w)
{
    if (w->cpu.data)
        t->cpu->ops->free_weight(t->cpu, &w->cpu);
    if (w->gpu.data)
        t->gpu->ops->free_weight(t->gpu, &w->gpu);
    free(w->blob);
    memset(w, 0, sizeof *w);
}

bool gt_stage(struct gt *t, const struct step_batch *b, const struct sample_row *rows,
              struct bk_batch *cpu, struct bk_batch *gpu)
{
    int rc1 = t->cpu->ops->stage(t->cpu, b, rows, cpu);
    int rc2 = t->gpu->ops->stage(t->gpu, b, rows, gpu);

    return gt_check(t, rc1 == 0 && rc2 == 0, "stage: cpu %d, cuda %d", rc1, rc2);
}

bool gt_gen_model(struct gt *t, char *dir, struct gen_model_opts *go, struct model *m)
{
    char err[ERR_LEN] = "";

    if (!gt_check(t, mkdtemp(dir) != NULL, "mkdtemp"))
        return false;
    go->out_dir = dir;
    if (gt_check(t, gen_model_write(go, NULL, err) == 0, "gen-model %s: %s", go->config, err) &&
        gt_check(t, model_open(m, dir, err) == 0, "model_open %s: %s", go->config, err))
        return true;
    gt_remove(t, "%s", dir);
    return false;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double gt_median(double *v, int n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return n ? (n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2])) : 0.0;
}
