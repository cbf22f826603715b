/* attention.c — kernel 2 of an attention layer, CPU reference: paged, varlen attention of
 * the step's queries over the KV cache. Keys and values are read only from the cache (the
 * step's own tokens were written there by cache_update), through the block table of the
 * layer's KV group. Causal within each request's new tokens, GQA, optional sliding window,
 * tanh soft-cap and attention sinks (gpt-oss: a per-head logit that only adds to the softmax's
 * denominator); online softmax over chunks of keys, f32. One task per (request, head).
 * A bf16 or fp8 cache is widened to f32 row by row as it is read (fp8: code * layer scale). */
#include <errno.h>
#include <math.h>
#include <stdatomic.h>

#include "engine/cpu/cpu_ops.h"

#define ATTN_MAX_HEAD_DIM 512
#define ATTN_CHUNK 64          /* keys scored per pass before the running max is rescaled */

struct attn_args {
    float *out;
    const float *q;
    int q_stride;
    const void *k_cache, *v_cache;
    const float *lut;          /* F8_E4M3 cache: the 256 decoded codes */
    const struct bk_batch *b;
    int group;
    const struct attn_params *p;
    atomic_int bad;            /* set when a block table entry is outside the cache */
};

/* Address of the cache row of the token at `pos` of a request, head kvh; NULL when the
 * block table has no valid block there. */
static const void *cache_row(const void *cache, const int32_t *blocks, int max_blocks,
                             int pos, int kvh, const struct cache_layout *l)
{
    int bi = pos / l->block_size, block;

    if (bi >= max_blocks)
        return NULL;
    block = blocks[bi];
    if (block < 0 || block >= l->num_blocks)
        return NULL;
    return (const char *)cache + (((size_t)block * l->block_size + pos % l->block_size) *
                                  l->num_kv_heads + kvh) * l->head_dim * dtype_size(l->dtype);
}

/* A cache row as f32: itself for an f32 cache, else widened into buf[D]. */
static const float *row_f32(const void *row, float *buf, int D, const struct cache_layout *l,
                            float scale, const float *lut)
{
    if (l->dtype == DT_F8_E4M3) {
        for (int d = 0; d < D; d++)
            buf[d] = lut[((const uint8_t *)row)[d]] * scale;
        return buf;
    }
    if (l->dtype == DT_BF16) {
        for (int d = 0; d < D; d++)
            buf[d] = bf16_to_f32(((const uint16_t *)row)[d]);
        return buf;
    }
    return row;
}

/* One query vector at absolute position `pos` over keys [lo, pos]; `sink` is one more logit
 * in the softmax with no value (gpt-oss), -INFINITY for none. Returns 0 or -EINVAL. */
static int attend_one(float *o, const float *qv, int pos, int lo, float sink,
                      const struct attn_args *a, const int32_t *blocks, int kvh)
{
    const struct attn_params *p = a->p;
    const struct cache_layout *l = &p->cache;
    int D = p->head_dim, maxb = a->b->max_blocks_per_req;
    float acc[ATTN_MAX_HEAD_DIM] = { 0 }, s[ATTN_CHUNK], kbuf[ATTN_MAX_HEAD_DIM];
    float vbuf[ATTN_MAX_HEAD_DIM];
    const void *vrow[ATTN_CHUNK];
    /* the running softmax starts from the sink's logit: e^(sink - m) = 1 in the denominator */
    float m = sink, sum = sink == -INFINITY ? 0.0f : 1.0f;

    for (int t0 = lo; t0 <= pos; t0 += ATTN_CHUNK) {
        int nk = MIN(ATTN_CHUNK, pos + 1 - t0);
        float cmax = -INFINITY, corr;

        for (int j = 0; j < nk; j++) {
            const void *kr = cache_row(a->k_cache, blocks, maxb, t0 + j, kvh, l);

            vrow[j] = cache_row(a->v_cache, blocks, maxb, t0 + j, kvh, l);
            if (!kr || !vrow[j])
                return -EINVAL;
            s[j] = dot_f32(qv, row_f32(kr, kbuf, D, l, l->k_scale, a->lut), D) * p->scale;
            if (p->softcap > 0.0f)
                s[j] = p->softcap * tanhf(s[j] / p->softcap);
            cmax = MAX(cmax, s[j]);
        }
        /* rescale what was summed so far to the new running max */
        corr = expf(m - MAX(m, cmax));
        m = MAX(m, cmax);
        sum *= corr;
        for (int d = 0; d < D; d++)
            acc[d] *= corr;
        for (int j = 0; j < nk; j++) {
            float e = expf(s[j] - m);
            const float *vr = row_f32(vrow[j], vbuf, D, l, l->v_scale, a->lut);

            sum += e;
            for (int d = 0; d < D; d++)
                acc[d] += e * vr[d];
        }
    }
    for (int d = 0; d < D; d++)
        o[d] = acc[d] / sum;
    return 0;
}

static void attention_task(void *arg, int task, int thread)
{
    struct attn_args *a = arg;
    const struct attn_params *p = a->p;
    const struct bk_batch *b = a->b;
    int H = p->num_heads, D = p->head_dim;
    int r = task / H, h = task % H, kvh = h / (H / p->num_kv_heads);
    int qs = b->query_start_loc[r], qe = b->query_start_loc[r + 1], seq = b->seq_lens[r];
    const int32_t *blocks = b->block_table[a->group] + (size_t)r * b->max_blocks_per_req;
    int out_stride = H * D;

    for (int i = qs; i < qe; i++) {
        float *o = a->out + (size_t)i * out_stride + (size_t)h * D;
        /* the new tokens are the last qe - qs of the seq tokens in context */
        int pos = seq - (qe - i);
        int lo = p->window > 0 ? MAX(0, pos - p->window + 1) : 0;
        float sink = p->sinks ? p->sinks[h] : -INFINITY;

        if (seq <= 0 || pos < 0 || attend_one(o, a->q + (size_t)i * a->q_stride + (size_t)h * D,
                                               pos, lo, sink, a, blocks, kvh)) {
            memset(o, 0, (size_t)D * sizeof *o);
            if (seq > 0)
                atomic_store(&a->bad, 1);
        }
    }
}

/* out[b->num_tokens, num_heads * head_dim]. Rows of padding requests (seq_len 0) and rows
 * after the last request are zeros. Returns -EINVAL (with those rows zeroed) when the batch
 * is inconsistent: query ranges outside the step, more new tokens than context, or a block
 * table entry outside the cache. */
int attention_cpu(struct threadpool *tp, float *out, const float *q, int q_stride,
                  const void *k_cache, const void *v_cache, const struct bk_batch *b,
                  int group, const struct attn_params *p)
{
    float lut[256];
    struct attn_args a = { out, q, q_stride, k_cache, v_cache, lut, b, group, p, 0 };
    int H = p->num_heads, D = p->head_dim, end;
    enum dtype dt = p->cache.dtype;

    if (D > ATTN_MAX_HEAD_DIM || p->num_kv_heads <= 0 || H % p->num_kv_heads ||
        group < 0 || group >= b->num_kv_groups ||
        (dt != DT_F32 && dt != DT_BF16 && dt != DT_F8_E4M3))
        return -EINVAL;
    if (dt == DT_F8_E4M3)
        fp8_e4m3_table(lut);
    for (int r = 0; r < b->num_reqs; r++) {
        int qs = b->query_start_loc[r], qe = b->query_start_loc[r + 1];
        if (qs < 0 || qe < qs || qe > b->num_tokens)
            return -EINVAL;
    }
    end = b->num_reqs > 0 ? b->query_start_loc[b->num_reqs] : 0;
    memset(out + (size_t)end * H * D, 0, (size_t)(b->num_tokens - end) * H * D * sizeof *out);
    threadpool_run(tp, b->num_reqs * H, attention_task, &a);
    return atomic_load(&a.bad) ? -EINVAL : 0;
}
