/* backend_cpu.c — the portable C backend: the op vtable over engine/cpu/<op>.c, host memory
 * as "device" memory, zero-copy weights, staging (the step batch is used in place; the
 * masks are read where the engine wrote them, in the backend's mask rows) and the CPU
 * sampler run over the sampled rows. Activations are f32, the KV cache f32 unless the
 * runner asks for bf16 or fp8; weights stay bf16, f32 or F8_E4M3 as stored (f16 widens to
 * f32; F8_E4M3 gets a per-row f32 scale table). Parallel ops share one persistent thread pool.
 * This backend is the numerical reference the CUDA backend is tested against. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/backend.h"
#include "engine/cpu/cpu_ops.h"
#include "engine/base/log.h"

struct backend_cpu {
    struct backend base;
    struct backend_options opt;
    struct threadpool *pool;

    /* weights this backend allocated (concatenations, conversions); others are the model's
     * own mapping and are never freed here */
    void **owned;
    int num_owned, cap_owned;

    /* sampling: rows staged for the step, results of sample(), per-thread scratch */
    struct sample_row *rows;          /* [opt.max_reqs] */
    int num_rows;                     /* num_sample_padded of the staged batch */
    struct sample_result *results;    /* [opt.max_reqs] */
    float *scratch;                   /* [pool size, 2 * opt.vocab_size] */
    /* masks: rows handed out by mask_rows; a staged row whose mask is one of them samples
     * without it until stage_masks, as the cuda sampler would with the row not uploaded
     * (so that a runner that forgets stage_masks fails the cpu tests too) */
    uint32_t *masks;                  /* [opt.max_reqs, mask_words] */
    int mask_words;
    bool *mask_pending;               /* [opt.max_reqs] row i's mask is masks' row i */
};

static struct backend_cpu *cpu_of(struct backend *be)
{
    return (struct backend_cpu *)be;
}

/* ---- memory ---- */

static void *cpu_alloc(struct backend *be, size_t bytes, char *err)
{
    void *p = calloc(1, bytes ? bytes : 1);

    if (!p)
        errf(err, "cpu: out of memory allocating %zu bytes", bytes);
    return p;
}

static void cpu_free(struct backend *be, void *p)
{
    free(p);
}

/* MemAvailable / MemTotal from /proc/meminfo, else sysconf's free and total pages. */
static int cpu_mem_info(struct backend *be, size_t *free_bytes, size_t *total_bytes)
{
    FILE *f = fopen("/proc/meminfo", "r");
    unsigned long long avail = 0, total = 0, kb;
    char line[256];
    long page = sysconf(_SC_PAGESIZE);

    if (f) {
        while (fgets(line, sizeof line, f)) {
            if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
                avail = kb * 1024;
            else if (sscanf(line, "MemTotal: %llu kB", &kb) == 1)
                total = kb * 1024;
        }
        fclose(f);
    }
    if (!avail || !total) {
        avail = (unsigned long long)sysconf(_SC_AVPHYS_PAGES) * page;
        total = (unsigned long long)sysconf(_SC_PHYS_PAGES) * page;
    }
    *free_bytes = avail;
    *total_bytes = total;
    return 0;
}

static int cpu_copy(struct backend *be, void *dst, const void *src, size_t bytes)
{
    memmove(dst, src, bytes);
    return 0;
}

/* ---- weights ---- */

static int part_shape(const struct tensor_ref *t, int *rows, int *cols, char *err)
{
    int64_t r = t->shape[0], c = t->ndim == 2 ? t->shape[1] : 1;

    if (!t->data || (t->ndim != 1 && t->ndim != 2) || r <= 0 || c <= 0 ||
        r > INT32_MAX || c > INT32_MAX || (size_t)(r * c) * dtype_size(t->dtype) > t->nbytes) {
        errf(err, "cpu: tensor %s: cannot upload (ndim %d, shape [%lld, %lld], %zu bytes)",
             t->name ? t->name : "?", t->ndim, (long long)r, (long long)c, t->nbytes);
        return -EINVAL;
    }
    *rows = (int)r;
    *cols = (int)c;
    return 0;
}

static int remember_owned(struct backend_cpu *cpu, void *p)
{
    if (cpu->num_owned == cpu->cap_owned) {
        int cap = cpu->cap_owned ? 2 * cpu->cap_owned : 64;
        void **o = realloc(cpu->owned, cap * sizeof *o);

        if (!o)
            return -ENOMEM;
        cpu->owned = o;
        cpu->cap_owned = cap;
    }
    cpu->owned[cpu->num_owned++] = p;
    return 0;
}

/* bytes of memory the backend owns (freed with it); NULL with err set ("cpu: out of memory
 * for <what><name>") when malloc or the owned list fails. */
static void *alloc_owned(struct backend_cpu *cpu, size_t bytes, const char *what, const char *name,
                         char *err)
{
    void *p = malloc(bytes);

    if (!p || remember_owned(cpu, p)) {
        free(p);
        errf(err, "cpu: out of memory for %s%s", what, name ? name : "?");
        return NULL;
    }
    return p;
}

static void cpu_free_weight(struct backend *be, struct bk_weight *w);

/* F8_E4M3 parts: their bytes (the model's own memory for one part, else stacked into a
 * copy) and one f32 scale table expanded to [rows, scale_cols], so that the matmul finds a
 * row's scales without knowing the checkpoint's scheme (block, channel, tensor) or where
 * one fused part ends. */
static int upload_fp8(struct backend_cpu *cpu, struct bk_weight *out,
                      const struct tensor_ref *parts, int nparts, char *err)
{
    int64_t sb = parts[0].scale_block[1], sc;
    float *scale;
    uint8_t *dst;
    int row = 0;

    for (int i = 0; i < nparts; i++)
        if (parts[i].dtype != DT_F8_E4M3 || !parts[i].scale || parts[i].scale_block[0] < 1 ||
            parts[i].scale_block[1] != sb || sb < 1) {
            errf(err, "cpu: tensors %s and %s are fused into one matrix but are not both "
                 "F8_E4M3 with scales over the same columns", parts[0].name ? parts[0].name : "?",
                 parts[i].name ? parts[i].name : "?");
            return -EINVAL;
        }
    sc = (out->cols + sb - 1) / sb;
    scale = alloc_owned(cpu, (size_t)out->rows * sc * sizeof *scale, "the scales of ", parts[0].name,
                        err);
    if (!scale)
        return -ENOMEM;
    out->scale = scale;
    out->scale_cols = (int)sc;
    out->scale_block = (int)sb;
    for (int i = 0; i < nparts; i++)
        for (int64_t r = 0; r < parts[i].shape[0]; r++, row++)
            for (int64_t c = 0; c < sc; c++)
                scale[(size_t)row * sc + c] =
                    model_scale_at(parts[i].scale, (size_t)(r / parts[i].scale_block[0]) * sc + c);
    if (nparts == 1) {
        out->data = (void *)parts[0].data;   /* zero copy, as for bf16 */
        return 0;
    }
    dst = alloc_owned(cpu, (size_t)out->rows * out->cols, "weight ", parts[0].name, err);
    if (!dst)
        return -ENOMEM;
    out->data = dst;
    for (int i = 0; i < nparts; i++) {
        memcpy(dst, parts[i].data, (size_t)parts[i].shape[0] * out->cols);
        dst += (size_t)parts[i].shape[0] * out->cols;
    }
    return 0;
}

/* One part (or several stacked by rows): the model's own memory when it is a single bf16 or
 * f32 tensor, else a copy (f32 when the parts are f16 or of mixed dtypes). F8_E4M3 parts stay
 * F8_E4M3 with their scales (upload_fp8): the matmul dequantizes as it goes (W8A16). */
static int cpu_upload_weight(struct backend *be, struct bk_weight *out,
                             const struct tensor_ref *parts, int nparts, char *err)
{
    struct backend_cpu *cpu = cpu_of(be);
    enum dtype dt;
    int64_t rows = 0;
    int cols = 0;
    char *dst;

    memset(out, 0, sizeof *out);
    if (nparts < 1)
        return -EINVAL;
    dt = parts[0].dtype;
    for (int i = 0; i < nparts; i++) {
        int r, c;

        if (part_shape(&parts[i], &r, &c, err))
            return -EINVAL;
        if (i > 0 && c != cols) {
            errf(err, "cpu: tensor %s has %d columns, %s has %d: cannot stack them",
                 parts[i].name ? parts[i].name : "?", c, parts[0].name ? parts[0].name : "?", cols);
            return -EINVAL;
        }
        cols = c;
        rows += r;
        if (parts[i].dtype != dt)
            dt = DT_F32;
    }
    if (dt == DT_F16)
        dt = DT_F32;
    if (rows > INT32_MAX)
        return -EINVAL;
    for (int i = 0; i < nparts; i++)
        if (parts[i].dtype == DT_F8_E4M3)
            dt = DT_F8_E4M3;
    *out = (struct bk_weight){ .dtype = dt, .rows = (int)rows, .cols = cols };
    if (dt == DT_F8_E4M3) {
        int rc = upload_fp8(cpu, out, parts, nparts, err);
        if (rc)
            cpu_free_weight(be, out);
        return rc;
    }
    if (nparts == 1 && parts[0].dtype == dt) {
        out->data = (void *)parts[0].data;   /* zero copy: read-only, owned by the model */
        return 0;
    }
    dst = alloc_owned(cpu, (size_t)rows * cols * dtype_size(dt), "weight ", parts[0].name, err);
    if (!dst)
        return -ENOMEM;
    out->data = dst;
    for (int i = 0; i < nparts; i++) {
        size_t count = (size_t)parts[i].shape[0] * cols;

        if (parts[i].dtype == dt) {
            memcpy(dst, parts[i].data, count * dtype_size(dt));
        } else {
            const uint16_t *h = parts[i].data;   /* here dt is f32 and the part is 16-bit */
            float *f = (float *)dst;
            for (size_t j = 0; j < count; j++)
                f[j] = parts[i].dtype == DT_F16 ? f16_to_f32(h[j]) : bf16_to_f32(h[j]);
        }
        dst += count * dtype_size(dt);
    }
    return 0;
}

/* Frees p when this backend allocated it (the model's mapping is never freed here). */
static void free_owned(struct backend_cpu *cpu, const void *p)
{
    for (int i = 0; p && i < cpu->num_owned; i++)
        if (cpu->owned[i] == p) {
            free(cpu->owned[i]);
            cpu->owned[i] = cpu->owned[--cpu->num_owned];
            return;
        }
}

static void cpu_free_weight(struct backend *be, struct bk_weight *w)
{
    free_owned(cpu_of(be), w->data);
    free_owned(cpu_of(be), w->scale);
    memset(w, 0, sizeof *w);
}

/* ---- staging and sampling ---- */

/* The host batch is used in place: the pointers stay valid until the step ends. */
static int cpu_stage(struct backend *be, const struct step_batch *b, const struct sample_row *rows,
                     struct bk_batch *dev)
{
    struct backend_cpu *cpu = cpu_of(be);
    const struct backend_options *o = &cpu->opt;

    if (b->num_tokens_padded > o->max_tokens || b->num_reqs_padded > o->max_reqs ||
        b->num_sample_padded > o->max_reqs || b->num_sample > b->num_sample_padded ||
        b->num_kv_groups < 1 || b->num_kv_groups > KV_MAX_GROUPS ||
        b->max_blocks_per_req > o->max_blocks_per_req) {
        LOG(LL_ERR, "cpu", "batch beyond the staging capacity: tokens %d/%d, reqs %d/%d, "
            "sample %d, groups %d, blocks per req %d/%d", b->num_tokens_padded, o->max_tokens,
            b->num_reqs_padded, o->max_reqs, b->num_sample_padded, b->num_kv_groups,
            b->max_blocks_per_req, o->max_blocks_per_req);
        return -EINVAL;
    }
    memset(dev, 0, sizeof *dev);
    dev->num_reqs = b->num_reqs_padded;
    dev->num_tokens = b->num_tokens_padded;
    dev->num_sample = b->num_sample_padded;
    dev->max_query_len = b->max_query_len;
    dev->max_seq_len = b->max_seq_len;
    dev->num_kv_groups = b->num_kv_groups;
    dev->max_blocks_per_req = b->max_blocks_per_req;
    dev->input_ids = b->input_ids;
    dev->positions = b->positions;
    dev->query_start_loc = b->query_start_loc;
    dev->seq_lens = b->seq_lens;
    dev->logits_indices = b->logits_indices;
    for (int g = 0; g < b->num_kv_groups; g++) {
        dev->block_table[g] = b->block_table[g];
        dev->slot_mapping[g] = b->slot_mapping[g];
    }
    /* padding rows sample greedily; their results are never fetched */
    for (int i = 0; i < b->num_sample_padded; i++) {
        if (rows && i < b->num_sample)
            cpu->rows[i] = rows[i];
        else
            cpu->rows[i] = (struct sample_row){ .top_p = 1.0f, .repetition_penalty = 1.0f,
                                                .num_logprobs = -1 };
        cpu->mask_pending[i] = cpu->rows[i].allowed &&
                               cpu->rows[i].allowed == cpu->masks + (size_t)i * cpu->mask_words;
        if (cpu->mask_pending[i])
            cpu->rows[i].allowed = NULL;
    }
    cpu->num_rows = b->num_sample_padded;
    return 0;
}

static uint32_t *cpu_mask_rows(struct backend *be)
{
    return cpu_of(be)->masks;
}

/* The sampler reads the rows in place: nothing to copy, only the pointers to set. */
static int cpu_stage_masks(struct backend *be)
{
    struct backend_cpu *cpu = cpu_of(be);

    for (int i = 0; i < cpu->num_rows; i++)
        if (cpu->mask_pending[i]) {
            cpu->rows[i].allowed = cpu->masks + (size_t)i * cpu->mask_words;
            cpu->mask_pending[i] = false;
        }
    return 0;
}

struct sample_args {
    struct backend_cpu *cpu;
    const float *logits;
    int vocab;
};

static void sample_task(void *arg, int i, int thread)
{
    const struct sample_args *a = arg;
    float *scratch = a->cpu->scratch + (size_t)thread * 2 * a->cpu->opt.vocab_size;

    sampler_sample_row(a->logits + (size_t)i * a->vocab, a->vocab, &a->cpu->rows[i],
                       &a->cpu->results[i], scratch);
}

static int cpu_sample(struct backend *be, const float *logits, int vocab, const struct bk_batch *b)
{
    struct backend_cpu *cpu = cpu_of(be);
    struct sample_args a = { cpu, logits, vocab };

    if (vocab > cpu->opt.vocab_size || b->num_sample > cpu->num_rows)
        return -EINVAL;
    threadpool_run(cpu->pool, b->num_sample, sample_task, &a);
    return 0;
}

static int cpu_fetch_results(struct backend *be, struct sample_result *out, int n)
{
    struct backend_cpu *cpu = cpu_of(be);

    if (n > cpu->num_rows)
        return -EINVAL;
    memcpy(out, cpu->results, (size_t)n * sizeof *out);
    return 0;
}

/* ---- ops: the vtable's signatures over engine/cpu/<op>.c ---- */

static int cpu_embedding(struct backend *be, void *x, const int32_t *ids,
                         const struct bk_weight *table, int n)
{
    return embedding_cpu(x, ids, table, n);
}

static int cpu_rmsnorm(struct backend *be, void *out, void *residual, const void *x,
                       const struct bk_weight *w, int n, float eps)
{
    return rmsnorm_cpu(out, residual, x, w, n, eps);
}

static int cpu_matmul(struct backend *be, void *out, const void *x, const struct bk_weight *w,
                      const struct bk_weight *bias, int n)
{
    return matmul_cpu(cpu_of(be)->pool, out, x, w, bias, n);
}

static int cpu_head_rmsnorm(struct backend *be, void *x, int stride, int heads, int head_dim,
                            const struct bk_weight *w, int n, float eps)
{
    return head_rmsnorm_cpu(x, stride, heads, head_dim, w, n, eps);
}

static int cpu_rope(struct backend *be, void *q, void *k, const int32_t *positions, int n,
                    const struct rope_params *p)
{
    return rope_cpu(q, k, positions, n, p);
}

static int cpu_cache_update(struct backend *be, const void *k, const void *v, int kv_stride,
                            const int64_t *slot_mapping, int n, void *k_cache, void *v_cache,
                            const struct cache_layout *l)
{
    return cache_update_cpu(k, v, kv_stride, slot_mapping, n, k_cache, v_cache, l);
}

static int cpu_absmax(struct backend *be, float *out, const void *x, int stride, int rows,
                      int cols)
{
    return absmax_cpu(out, x, stride, rows, cols);
}

static int cpu_attention(struct backend *be, void *out, const void *q, int q_stride,
                         const void *k_cache, const void *v_cache, const struct bk_batch *b,
                         int group, const struct attn_params *p)
{
    return attention_cpu(cpu_of(be)->pool, out, q, q_stride, k_cache, v_cache, b, group, p);
}

static int cpu_silu_mul(struct backend *be, void *out, const void *gate_up, int n, int ffn)
{
    return silu_mul_cpu(out, gate_up, n, ffn);
}

static int cpu_gelu_tanh_mul(struct backend *be, void *out, const void *gate_up, int n, int ffn)
{
    return gelu_tanh_mul_cpu(out, gate_up, n, ffn);
}

static int cpu_scale(struct backend *be, void *x, int n, int dim, float s)
{
    return scale_cpu(x, n, dim, s);
}

static int cpu_softcap(struct backend *be, float *logits, int n, int vocab, float cap)
{
    return softcap_cpu(logits, n, vocab, cap);
}

static int cpu_moe(struct backend *be, void *out, const void *x, const struct moe_weights *w,
                   int n, const struct moe_params *p)
{
    return moe_cpu(cpu_of(be)->pool, out, x, w, n, p);
}

static int cpu_gather_rows(struct backend *be, void *out, const void *x, const int32_t *rows,
                           int n, int dim)
{
    return gather_rows_cpu(out, x, rows, n, dim);
}

static int cpu_lm_head(struct backend *be, float *logits, const void *x, const struct bk_weight *w,
                       int n)
{
    return matmul_cpu(cpu_of(be)->pool, logits, x, w, NULL, n);
}

/* ---- lifetime ---- */

static void cpu_destroy(struct backend *be)
{
    struct backend_cpu *cpu = cpu_of(be);

    threadpool_destroy(cpu->pool);
    for (int i = 0; i < cpu->num_owned; i++)
        free(cpu->owned[i]);
    free(cpu->owned);
    free(cpu->rows);
    free(cpu->results);
    free(cpu->scratch);
    free(cpu->masks);
    free(cpu->mask_pending);
    free(cpu);
}

static const struct backend_ops cpu_ops = {
    .name = "cpu",
    .act_dtype = DT_F32,
    .rope_ext = true,
    .attn_sinks = true,
    .moe_oai = true,
    .moe_oai_published = true,   /* moe.c reads gpt-oss's experts in place */
    .weights_in_place = true,    /* cpu_upload_weight shares single float tensors */
    .destroy = cpu_destroy,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .mem_info = cpu_mem_info,
    .upload = cpu_copy,
    .download = cpu_copy,
    .upload_weight = cpu_upload_weight,
    .free_weight = cpu_free_weight,
    .stage = cpu_stage,
    .mask_rows = cpu_mask_rows,
    .stage_masks = cpu_stage_masks,
    .embedding = cpu_embedding,
    .rmsnorm = cpu_rmsnorm,
    .matmul = cpu_matmul,
    .head_rmsnorm = cpu_head_rmsnorm,
    .rope = cpu_rope,
    .cache_update = cpu_cache_update,
    .attention = cpu_attention,
    .silu_mul = cpu_silu_mul,
    .gather_rows = cpu_gather_rows,
    .lm_head = cpu_lm_head,
    .sample = cpu_sample,
    .fetch_results = cpu_fetch_results,
    .gelu_tanh_mul = cpu_gelu_tanh_mul,
    .scale = cpu_scale,
    .softcap = cpu_softcap,
    .moe = cpu_moe,
    .moe_work_bytes = moe_cpu_work_bytes,
    .rope_cache_update = NULL,
    .absmax = cpu_absmax,
    .busy = NULL,
    .graph_capture = NULL,
    .graph_replay = NULL,
};

int backend_cpu_create(struct backend **out, const struct backend_options *opt, char *err)
{
    struct backend_cpu *cpu;
    int threads = opt->num_threads > 0 ? opt->num_threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    int rc;

    *out = NULL;
    if (opt->max_tokens < 0 || opt->max_reqs < 0 || opt->vocab_size < 0) {
        errf(err, "cpu: negative capacity in the backend options");
        return -EINVAL;
    }
    cpu = calloc(1, sizeof *cpu);
    if (!cpu) {
        errf(err, "cpu: out of memory");
        return -ENOMEM;
    }
    cpu->base.ops = &cpu_ops;
    cpu->opt = *opt;
    cpu->opt.num_threads = threads = MAX(threads, 1);
    rc = threadpool_create(&cpu->pool, threads);
    if (rc) {
        errf(err, "cpu: cannot start %d worker threads (%s)", threads, strerror(-rc));
        free(cpu);
        return rc;
    }
    cpu->rows = calloc(MAX(opt->max_reqs, 1), sizeof *cpu->rows);
    cpu->results = calloc(MAX(opt->max_reqs, 1), sizeof *cpu->results);
    cpu->scratch = calloc((size_t)threads * 2 * MAX(opt->vocab_size, 1), sizeof *cpu->scratch);
    cpu->mask_words = MAX(opt->mask_words, (MAX(opt->vocab_size, 1) + 31) / 32);
    cpu->masks = calloc((size_t)MAX(opt->max_reqs, 1) * cpu->mask_words, sizeof *cpu->masks);
    cpu->mask_pending = calloc(MAX(opt->max_reqs, 1), sizeof *cpu->mask_pending);
    if (!cpu->rows || !cpu->results || !cpu->scratch || !cpu->masks || !cpu->mask_pending) {
        cpu_destroy(&cpu->base);
        errf(err, "cpu: out of memory for sampling buffers (vocab %d, %d rows)",
             opt->vocab_size, opt->max_reqs);
        return -ENOMEM;
    }
    LOG(LL_DEBUG, "cpu", "cpu backend: %d threads", threads);
    *out = &cpu->base;
    return 0;
}
