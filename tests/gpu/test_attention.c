/* test_attention.c — kernel 2 against the CPU backend: prefill-only, decode-only and mixed
 * batches (chunked prefills over earlier context, decodes, fresh prompts, padding
 * requests, tokens after the last request), GQA ratios 1, 4 and 8, head_dim 128, 64 and
 * 24, block sizes 1, 16 and 32 over shuffled block ids with random data in every unused
 * block, sliding windows (with the out-of-window blocks dropped from the table), soft-cap,
 * and 8k contexts through the split-K path (checked to be taken). Outputs are poisoned
 * first; rows of padding must come out exactly zero. The fp8 (e4m3) cache: the same bytes
 * and scales on both backends, through the same shapes, decode, prefill and split.
 * gpt-oss's attention sinks (a per-head logit in the denominator only) through every path:
 * prefill, mixed, the decode kernel and the varlen kernel's decodes, split and not, windows,
 * bf16 and fp8, graph replays; a sink far above every logit (output near zero) and one far
 * below (no effect) among them. Every batch with a prefill runs under each shape of the
 * varlen kernel (attention_prefill_cuda_tune: 16 rows a warp, and the prefill variant's 32
 * rows a warp), each against the same CPU result; the failure message names the shape. */
#ifdef OSPREY_CUDA
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "engine/cuda/cuda_internal.h"   /* CUDA_ATTN_PARTIAL_BYTES, cuda__attn_* */
#include "engine/base/fp8.h"
#include "engine/base/util.h"
#include "kernels/kernels.h"             /* attention_cuda_splits */
#include "tests/gpu/gpu_test.h"

struct attn_req {
    int q_len, seq_len;        /* seq_len 0: a padding request (q_len 1) */
};

struct attn_case {
    int H, KV, D, bs, window;
    float softcap, q_scale;
    const struct attn_req *reqs;
    int num_reqs, trailing;    /* tokens after the last request */
    int want_splits;           /* 1: must not split, 2: must split, 0: either */
    int graph_bound;           /* > 0: the GPU runs a graph captured from other lengths with
                                * max_seq_len this bound, replayed for this batch */
};

/* The body of the graph of attn_once_kv: the attention launch alone. */
struct attn_capture {
    struct gt *t;
    void *out;
    const void *q, *k, *v;
    int q_stride;
    const struct bk_batch *b;
    const struct attn_params *p;
};

static int attn_capture_cb(void *arg)
{
    struct attn_capture *c = arg;

    return c->t->gpu->ops->attention(c->t->gpu, c->out, c->q, c->q_stride, c->k, c->v, c->b, 0, c->p);
}

/* Captures the GPU attention of batch b (already staged once: the staging buffers' addresses
 * are fixed by its shape) from the same shape with other, shorter sequences, so nothing of
 * this batch's lengths reaches the capture, then stages b again and replays the graph. */
static bool attn_graph_run(struct gt *t, struct step_batch *b, struct attn_capture *c,
                           struct bk_batch *bg)
{
    int *saved = malloc(b->num_reqs * sizeof *saved);
    struct bk_batch cap;
    bool ok = false;

    if (!gt_check(t, saved != NULL, "out of host memory"))
        return false;
    memcpy(saved, b->seq_lens, b->num_reqs * sizeof *saved);
    for (int r = 0; r < b->num_reqs; r++)
        b->seq_lens[r] = MIN(saved[r], 1 + r % 3);
    c->b = &cap;
    if (gt_check(t, t->gpu->ops->stage(t->gpu, b, NULL, &cap) == 0, "stage for the capture") &&
        gt_check(t, t->gpu->ops->graph_capture(t->gpu, b->num_tokens, attn_capture_cb, c) == 0,
                 "graph_capture")) {
        memcpy(b->seq_lens, saved, b->num_reqs * sizeof *saved);
        ok = gt_check(t, t->gpu->ops->stage(t->gpu, b, NULL, bg) == 0, "stage for the replay") &&
             gt_check(t, bg->query_start_loc == cap.query_start_loc && bg->seq_lens == cap.seq_lens &&
                      bg->block_table[0] == cap.block_table[0], "staging moved between stages") &&
             gt_check(t, t->gpu->ops->graph_replay(t->gpu, b->num_tokens) == 0, "graph_replay");
    }
    memcpy(b->seq_lens, saved, b->num_reqs * sizeof *saved);
    free(saved);
    return ok;
}

/* What attention_cuda will choose for this batch on this device. */
static int splits_for(const struct bk_batch *b, const struct attn_params *p)
{
    struct cudaDeviceProp prop;
    struct attn_workspace ws = { 0, (float *)16, CUDA_ATTN_PARTIAL_BYTES };
    struct cuda_attn_params kp;
    struct cuda_attn_batch kb;
    int dev = 0;

    if (cudaGetDevice(&dev) != cudaSuccess || cudaGetDeviceProperties(&prop, dev) != cudaSuccess ||
        cuda__attn_params(&kp, p) || cuda__attn_batch(&kb, b, 0))
        return -1;
    ws.num_sms = prop.multiProcessorCount;
    return attention_cuda_splits(&kb, &kp, &ws);
}

static bool attn_backends(struct gt *t, int T, int R, int MB)
{
    struct backend_options o = { .max_tokens = T, .max_reqs = R, .max_blocks_per_req = MB,
                                 .num_kv_groups = 1, .vocab_size = 16 };
    return gt_backends(t, &o);
}

/* k_scale > 0: an fp8 e4m3 cache with these scales; 0: bf16. sinks: gpt-oss's per-head
 * sinks, head 0's 40 (above every logit), head 1's -40 (no weight), the others U(-2, 6). */
static void attn_run(struct gt *t, const struct attn_case *c, int *splits_seen, float k_scale,
                     float v_scale, bool sinks)
{
    int R = c->num_reqs, T = c->trailing, MB = 1, num_blocks = 5, max_q = 0, max_seq = 0;
    int q_stride = (c->H + 2 * c->KV) * c->D, row = c->KV * c->D, next = 0, *perm = NULL;
    size_t cache_elems;
    float *host = NULL, *ref = NULL, *got = NULL;
    struct step_batch b = { 0 };
    struct bk_batch bc, bg;
    struct dbuf q = { 0 }, kc = { 0 }, vc = { 0 }, out = { 0 }, sk = { 0 };
    struct rbuf kc8 = { 0 }, vc8 = { 0 };
    struct attn_params pc, pg;
    bool fp8 = k_scale > 0.0f;
    void *kcpu, *vcpu, *kgpu, *vgpu;

    for (int r = 0; r < R; r++) {
        T += c->reqs[r].q_len;
        MB = MAX(MB, (c->reqs[r].seq_len + c->bs - 1) / c->bs);
        num_blocks += (c->reqs[r].seq_len + c->bs - 1) / c->bs;
        max_q = MAX(max_q, c->reqs[r].seq_len ? c->reqs[r].q_len : 0);
        max_seq = MAX(max_seq, c->reqs[r].seq_len);
    }
    cache_elems = (size_t)num_blocks * c->bs * row;
    if (!attn_backends(t, T, R, MB) || !gt_check(t, batch_init(&b, T, R, 1, MB) == 0, "batch_init"))
        goto out;
    host = malloc(MAX(cache_elems, (size_t)T * q_stride) * 4);
    ref = malloc((size_t)T * c->H * c->D * 4);
    got = malloc((size_t)T * c->H * c->D * 4);
    perm = malloc(num_blocks * sizeof *perm);
    if (!gt_check(t, host && ref && got && perm, "out of host memory"))
        goto out;

    /* shuffled block ids; blocks wholly below every query's window are dropped */
    for (int i = 0; i < num_blocks; i++)
        perm[i] = i;
    for (int i = num_blocks - 1; i > 0; i--) {
        int j = gt_randint(&t->rng, i + 1), tmp = perm[i];
        perm[i] = perm[j];
        perm[j] = tmp;
    }
    b.query_start_loc[0] = 0;
    for (int r = 0; r < R; r++) {
        const struct attn_req *q = &c->reqs[r];
        int nb = (q->seq_len + c->bs - 1) / c->bs;
        int lo = c->window ? MAX(0, q->seq_len - q->q_len - c->window + 1) : 0;

        b.query_start_loc[r + 1] = b.query_start_loc[r] + q->q_len;
        b.seq_lens[r] = q->seq_len;
        for (int j = 0; j < MB; j++) {
            int id = j < nb ? perm[next++] : KV_NO_BLOCK;
            b.block_table[0][(size_t)r * MB + j] = (j + 1) * c->bs <= lo ? KV_NO_BLOCK : id;
        }
    }
    b.num_reqs = b.num_reqs_padded = R;
    b.num_tokens = b.num_tokens_padded = T;
    b.num_sample = b.num_sample_padded = 0;
    b.max_query_len = max_q;
    b.max_seq_len = c->graph_bound > 0 ? c->graph_bound : max_seq;   /* as the runner stages graphs */
    for (int i = 0; i < T; i++)
        b.slot_mapping[0][i] = KV_PADDING_SLOT;

    if (!gt_stage(t, &b, NULL, &bc, &bg) || !dbuf_create(t, &q, (size_t)T * q_stride, false) ||
        !dbuf_create(t, &out, (size_t)T * c->H * c->D, false) || !dbuf_poison(t, &out))
        goto out;
    gt_fill(&t->rng, host, (size_t)T * q_stride, -c->q_scale, c->q_scale);
    if (!dbuf_set(t, &q, host))
        goto out;
    if (fp8) {
        /* the same e4m3 bytes on both backends: values in [-1, 1] after the scale, every code
         * a finite one (a NaN code is never written: inputs are finite) */
        uint8_t *codes = (uint8_t *)host;   /* host holds at least cache_elems floats */
        for (int kv = 0; kv < 2; kv++) {
            float sc = kv ? v_scale : k_scale;
            for (size_t i = 0; i < cache_elems; i++)
                codes[i] = fp8_e4m3_from_f32(gt_randf(&t->rng, -1.0f, 1.0f) / sc);
            if (!rbuf_create(t, kv ? &vc8 : &kc8, codes, cache_elems))
                goto out;
        }
        kcpu = kc8.cpu, vcpu = vc8.cpu, kgpu = kc8.gpu, vgpu = vc8.gpu;
    } else {
        if (!dbuf_create(t, &kc, cache_elems, false) || !dbuf_create(t, &vc, cache_elems, false))
            goto out;
        gt_fill(&t->rng, host, cache_elems, -1.0f, 1.0f);
        if (!dbuf_set(t, &kc, host))
            goto out;
        gt_fill(&t->rng, host, cache_elems, -1.0f, 1.0f);
        if (!dbuf_set(t, &vc, host))
            goto out;
        kcpu = kc.cpu, vcpu = vc.cpu, kgpu = kc.gpu, vgpu = vc.gpu;
    }

    pc = (struct attn_params){ c->H, c->KV, c->D, 1.0f / sqrtf((float)c->D), c->softcap, c->window,
                               { num_blocks, c->bs, c->KV, c->D, fp8 ? DT_F8_E4M3 : DT_F32,
                                 k_scale, v_scale }, NULL };
    pg = pc;
    if (sinks) {
        for (int h = 0; h < c->H; h++)
            host[h] = h == 0 ? 40.0f : h == 1 ? -40.0f : gt_randf(&t->rng, -2.0f, 6.0f);
        if (!dbuf_create(t, &sk, c->H, true) || !dbuf_set(t, &sk, host))
            goto out;
        pc.sinks = sk.cpu;
        pg.sinks = sk.gpu;
    }
    gt_check(t, t->cpu->ops->attention(t->cpu, out.cpu, q.cpu, q_stride, kcpu, vcpu, &bc, 0, &pc) == 0,
             "cpu attention failed");
    /* a batch with a prefill runs under every shape of the varlen kernel (the default and the
     * prefill variants: attention_prefill_cuda_tune), each against the one CPU result; a
     * decode-only batch once */
    for (int v = 0; v == 0 || max_q > 1; v++) {
        char vname[64] = "";
        if (max_q > 1 && attention_prefill_cuda_tune(v, vname, sizeof vname) != 0)
            break;
        if (v > 0 && !dbuf_poison(t, &out))
            goto out;
        if (splits_seen)
            *splits_seen = MAX(*splits_seen, splits_for(&bg, &pg));
        if (c->want_splits)
            gt_check(t, (splits_for(&bg, &pg) > 1) == (c->want_splits == 2),
                     "expected %s, attention_cuda_splits says %d [%s]", c->want_splits == 2 ? "a split" :
                     "no split", splits_for(&bg, &pg), vname);
        if (c->graph_bound > 0) {
            struct attn_capture cap = { t, out.gpu, q.gpu, kgpu, vgpu, q_stride, NULL, &pg };
            if (!attn_graph_run(t, &b, &cap, &bg))
                goto out;
        } else {
            gt_check(t, t->gpu->ops->attention(t->gpu, out.gpu, q.gpu, q_stride, kgpu, vgpu, &bg, 0, &pg) == 0,
                     "cuda attention failed");
        }
        /* the CPU result once: a poison overwrites both copies */
        if (!dbuf_get(t, &out, v == 0 ? ref : NULL, got))
            goto out;
        if (c->graph_bound > 0) {
            /* graph = eager: the same staged batch (same bound, so the same split count) run
             * eagerly gives the replay's bits */
            float *eager = malloc((size_t)T * c->H * c->D * 4);
            if (gt_check(t, eager != NULL, "out of host memory") && dbuf_poison(t, &out) &&
                gt_check(t, t->gpu->ops->attention(t->gpu, out.gpu, q.gpu, q_stride, kgpu, vgpu, &bg,
                                                   0, &pg) == 0, "cuda attention failed") &&
                dbuf_get(t, &out, NULL, eager))
                gt_check(t, !memcmp(eager, got, (size_t)T * c->H * c->D * 4),
                         "graph replay and eager run of the same batch differ");
            free(eager);
        }
        {
            float mx = 0.0f;
            char what[192];
            for (size_t i = 0; i < (size_t)T * c->H * c->D; i++)
                mx = fmaxf(mx, fabsf(ref[i]));
            snprintf(what, sizeof what, "attention%s%s%s H %d KV %d D %d block %d window %d cap %g, %d reqs%s%s",
                     fp8 ? " fp8" : "", c->graph_bound ? " graph" : "", sinks ? " sinks" : "",
                     c->H, c->KV, c->D, c->bs,
                     c->window, c->softcap, R, vname[0] ? ", " : "", vname);
            /* bf16 probabilities in P·V and a bf16 output: about 2^-8 relative. fp8 adds nothing
             * of its own: both backends read the same codes, e4m3 widens to bf16 exactly and the
             * scales multiply in f32 */
            gt_compare(t, what, got, ref, (size_t)T * c->H * c->D, 4e-3 * mx + 1e-6, 2e-2, 1e-4);
        }
        /* padding requests and the tokens after the last request: exact zeros */
        for (int r = 0; r <= R; r++) {
            int s = r < R ? b.query_start_loc[r] : b.query_start_loc[R];
            int e = r < R ? b.query_start_loc[r + 1] : T;
            if (r < R && c->reqs[r].seq_len > 0)
                continue;
            for (size_t i = (size_t)s * c->H * c->D; i < (size_t)e * c->H * c->D; i++)
                if (!gt_check(t, got[i] == 0.0f, "padding row %zu: %g, expected 0",
                              i / (c->H * c->D), got[i]))
                    break;
        }
    }
out:
    attention_prefill_cuda_tune(-1, NULL, 0);
    dbuf_free(t, &q);
    dbuf_free(t, &kc);
    dbuf_free(t, &vc);
    rbuf_free(t, &kc8);
    rbuf_free(t, &vc8);
    dbuf_free(t, &out);
    dbuf_free(t, &sk);
    batch_fini(&b);
    free(host);
    free(ref);
    free(got);
    free(perm);
}

static void attn_once_kv(struct gt *t, const struct attn_case *c, int *splits_seen, float k_scale,
                         float v_scale)
{
    attn_run(t, c, splits_seen, k_scale, v_scale, false);
}

static void attn_once(struct gt *t, const struct attn_case *c, int *splits_seen)
{
    attn_once_kv(t, c, splits_seen, 0.0f, 0.0f);
}

#define REQS(...) (const struct attn_req[]){ __VA_ARGS__ }, \
    (int)(sizeof((const struct attn_req[]){ __VA_ARGS__ }) / sizeof(struct attn_req))

static void attention_prefill_only_matches_cpu(struct gt *t)
{
    const struct attn_case cases[] = {
        { 32, 8, 128, 16, 0, 0, 6, REQS({ 1, 1 }, { 17, 17 }, { 100, 100 }, { 300, 300 }), 0, 0, 0 },
        { 8, 8, 128, 16, 0, 0, 6, REQS({ 65, 65 }, { 130, 130 }), 0, 0, 0 },
        { 32, 4, 64, 32, 0, 0, 6, REQS({ 200, 200 }, { 3, 3 }), 0, 0, 0 },
        { 4, 2, 24, 16, 0, 0, 6, REQS({ 50, 50 }), 0, 0, 0 },
    };

    for (size_t i = 0; i < ARRAY_LEN(cases); i++)
        attn_once(t, &cases[i], NULL);
    gt_note(t, "fresh prompts 1..300 tokens, GQA 4/1/8, D 128/64/24");
}

/* The prefill variants' own edges (attn_run runs every prefill batch under each shape):
 * prompts of several 128-row tiles whose warps skip key tiles above their rows and mask only
 * the tiles crossing their diagonal, GQA 1 (a tile of 128 tokens) and 4 (32), a chunk over a
 * cached prefix, windows whose lower edge makes warps skip tiles below them, requests of
 * 1..129 tokens around the 32-row warp and 128-row tile edges, and a soft-cap; bf16 and fp8. */
static void attention_prefill_variants_match_cpu(struct gt *t)
{
    const struct attn_case cases[] = {
        { 8, 8, 128, 16, 0, 0, 6, REQS({ 1000, 1000 }, { 129, 129 }, { 257, 300 }), 0, 0, 0 },
        { 32, 8, 128, 16, 0, 0, 6, REQS({ 700, 700 }, { 31, 31 }, { 33, 33 }, { 1, 1 }), 2, 0, 0 },
        { 16, 16, 64, 16, 100, 0, 6, REQS({ 900, 900 }, { 128, 500 }, { 1, 0 }), 0, 0, 0 },
        { 32, 4, 64, 32, 200, 0, 6, REQS({ 64, 64 }, { 511, 1200 }), 0, 0, 0 },
        { 8, 2, 24, 16, 0, 20.0f, 16, REQS({ 257, 257 }, { 96, 96 }), 0, 0, 0 },
    };

    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        attn_once(t, &cases[i], NULL);
        attn_once_kv(t, &cases[i], NULL, 0.0113f, 0.0071f);
    }
    gt_note(t, "prompts and chunks of 1..1000 tokens, GQA 1/4/8, windows 100/200, cap 20, "
            "bf16 and fp8, every prefill shape");
}

static void attention_decode_only_matches_cpu(struct gt *t)
{
    /* a padded decode graph batch: real decodes, then padding requests of one token */
    const struct attn_case cases[] = {
        { 32, 8, 128, 16, 0, 0, 6,
          REQS({ 1, 1 }, { 1, 16 }, { 1, 17 }, { 1, 100 }, { 1, 1000 }, { 1, 2047 }, { 1, 0 }, { 1, 0 }), 0, 0, 0 },
        { 8, 8, 128, 16, 0, 0, 6, REQS({ 1, 33 }, { 1, 500 }, { 1, 0 }), 0, 0, 0 },
        { 32, 4, 64, 32, 0, 0, 6, REQS({ 1, 64 }, { 1, 65 }, { 1, 1 }), 0, 0, 0 },
        { 4, 2, 24, 16, 0, 0, 6, REQS({ 1, 7 }, { 1, 70 }), 0, 0, 0 },
        { 16, 2, 256, 16, 0, 0, 6, REQS({ 1, 300 }, { 1, 9 }), 0, 0, 0 },
    };

    struct attn_req many[160];
    struct attn_case wide = { 32, 8, 128, 16, 0, 0, 6, many, 160, 0, 1, 0 };

    for (size_t i = 0; i < ARRAY_LEN(cases); i++)
        attn_once(t, &cases[i], NULL);
    /* enough requests to fill the GPU twice without splitting (1,280 blocks: the decode
     * kernel splits below two waves of its 3 blocks an SM) */
    for (int r = 0; r < 160; r++)
        many[r] = (struct attn_req){ 1, r < 150 ? 1 + gt_randint(&t->rng, 3000) : 0 };
    attn_once(t, &wide, NULL);
    gt_note(t, "contexts 1..3000, padding requests, GQA 4/1/8, D 128/64/24/256, split and not");
}

static void attention_mixed_batch_matches_cpu(struct gt *t)
{
    const struct attn_case cases[] = {
        { 32, 8, 128, 16, 0, 0, 6,
          REQS({ 1, 40 }, { 50, 250 }, { 1, 700 }, { 120, 120 }, { 1, 0 }, { 7, 77 }), 5, 0, 0 },
        { 32, 4, 64, 16, 0, 0, 6, REQS({ 1, 3 }, { 33, 33 }, { 16, 1000 }), 3, 0, 0 },
    };

    for (size_t i = 0; i < ARRAY_LEN(cases); i++)
        attn_once(t, &cases[i], NULL);
    gt_note(t, "decodes + chunked prefills + prompts + padding + trailing tokens in one launch");
}

static void attention_long_context_splits_match_cpu(struct gt *t)
{
    const struct attn_case cases[] = {
        { 32, 8, 128, 16, 0, 0, 8, REQS({ 1, 8192 }, { 1, 8000 }, { 1, 4099 }, { 1, 8192 }), 0, 2, 0 },
        { 32, 4, 128, 16, 0, 0, 8, REQS({ 1, 8192 }), 0, 2, 0 },
        { 32, 8, 128, 32, 0, 0, 8, REQS({ 64, 8192 }), 0, 2, 0 },   /* a prefill chunk at 8k */
        { 8, 8, 64, 16, 0, 0, 8, REQS({ 1, 16384 }, { 1, 5 }), 0, 2, 0 },
    };
    int splits = 0;

    for (size_t i = 0; i < ARRAY_LEN(cases); i++)
        attn_once(t, &cases[i], &splits);
    gt_note(t, "8k-16k contexts, decode and a 64-token chunk; up to %d splits", splits);
}

static void attention_sliding_window_matches_cpu(struct gt *t)
{
    const struct attn_case cases[] = {
        { 32, 8, 128, 16, 64, 0, 6, REQS({ 300, 300 }, { 1, 2000 }, { 40, 1000 }), 0, 0, 0 },
        { 8, 2, 64, 16, 1000, 0, 6, REQS({ 1, 5000 }, { 1, 999 }, { 1, 1001 }), 0, 0, 0 },
        { 4, 2, 16, 16, 8, 0, 6, REQS({ 30, 30 }, { 1, 50 }), 0, 0, 0 },
    };

    for (size_t i = 0; i < ARRAY_LEN(cases); i++)
        attn_once(t, &cases[i], NULL);
    gt_note(t, "windows 64/1000/8, out-of-window blocks dropped from the table");
}

static void attention_softcap_matches_cpu(struct gt *t)
{
    const struct attn_case cases[] = {
        { 32, 8, 128, 16, 0, 30.0f, 16, REQS({ 1, 500 }, { 64, 64 }), 0, 0, 0 },
        { 8, 4, 64, 16, 0, 5.0f, 16, REQS({ 1, 3000 }), 0, 0, 0 },
    };

    for (size_t i = 0; i < ARRAY_LEN(cases); i++)
        attn_once(t, &cases[i], NULL);
    gt_note(t, "tanh soft-cap 30 and 5 on large scores");
}

static void attention_block_sizes_1_and_32_match_cpu(struct gt *t)
{
    const struct attn_case cases[] = {
        { 8, 4, 128, 1, 0, 0, 6, REQS({ 1, 37 }, { 20, 20 }, { 5, 100 }), 0, 0, 0 },
        { 8, 4, 128, 32, 0, 0, 6, REQS({ 1, 37 }, { 20, 20 }, { 5, 100 }), 0, 0, 0 },
    };

    for (size_t i = 0; i < ARRAY_LEN(cases); i++)
        attn_once(t, &cases[i], NULL);
    gt_note(t, "block size 1 (one slot per block) and 32");
}

/* The fp8 cache through the kernel's paths: decode blocks (one warp) with and without
 * splits, prefill blocks, GQA 1/4/8, D 128/64/24/256, a window and a soft-cap; scales that
 * are not powers of two (k_scale folds into the softmax scale, v_scale into the output);
 * D 24 takes the 8-byte copies of e4m3 chunks, the others the 16-byte ones. */
static void attention_fp8_cache_matches_cpu(struct gt *t)
{
    const float ks = 0.0113f, vs = 0.0071f;
    const struct attn_case cases[] = {
        { 32, 8, 128, 16, 0, 0, 6,
          REQS({ 1, 1 }, { 1, 17 }, { 1, 1000 }, { 1, 2047 }, { 1, 0 }), 0, 0, 0 },
        { 32, 8, 128, 16, 0, 0, 6, REQS({ 1, 40 }, { 50, 250 }, { 120, 120 }, { 1, 0 }), 3, 0, 0 },
        { 32, 8, 128, 16, 0, 0, 8, REQS({ 1, 8192 }, { 1, 4099 }), 0, 2, 0 },
        { 32, 8, 128, 32, 0, 0, 8, REQS({ 64, 8192 }), 0, 2, 0 },
        { 32, 4, 64, 32, 0, 0, 6, REQS({ 200, 200 }, { 1, 65 }), 0, 0, 0 },
        { 8, 8, 128, 1, 0, 0, 6, REQS({ 1, 37 }, { 20, 20 }), 0, 0, 0 },
        { 4, 2, 24, 16, 0, 0, 6, REQS({ 1, 70 }, { 50, 50 }), 0, 0, 0 },
        { 16, 2, 256, 16, 0, 0, 6, REQS({ 1, 300 }, { 40, 40 }), 0, 0, 0 },
        { 8, 2, 64, 16, 64, 0, 6, REQS({ 1, 999 }, { 100, 100 }), 0, 0, 0 },
        { 8, 4, 64, 16, 0, 5.0f, 16, REQS({ 1, 3000 }, { 64, 64 }), 0, 0, 0 },
    };
    int splits = 0;

    for (size_t i = 0; i < ARRAY_LEN(cases); i++)   /* scales 1.0 (the default) once */
        attn_once_kv(t, &cases[i], &splits, i == 5 ? 1.0f : ks, i == 5 ? 1.0f : vs);
    gt_note(t, "e4m3 K/V, scales 0.0113/0.0071 and 1: decode, prefill, mixed, window, cap, "
            "D 24-256, up to %d splits", splits);
}

/* ---- the decode kernel (attention_decode.cu): every request of the step has one query ---- */

/* n decodes of about `seq` tokens each (every fourth a little shorter, so that splits end
 * mid-tile), then `pad` padding requests */
static struct attn_req *decode_reqs(struct gt *t, int n, int seq, int pad)
{
    struct attn_req *r = malloc((n + pad) * sizeof *r);

    if (!gt_check(t, r != NULL, "out of host memory"))
        return NULL;
    for (int i = 0; i < n + pad; i++)
        r[i] = (struct attn_req){ 1, i >= n ? 0 : i % 4 == 3 ? seq - 1 - gt_randint(&t->rng, seq / 2) : seq };
    return r;
}

/* GQA 1, 2, 4, 8 and 16 at head_dim 64, 128 and 256; contexts of 1 to 5000 keys, ends on
 * and off the 16-key tiles; padding requests and tokens after the last request; block sizes
 * 1, 16 and 32. The fp8 cache through the same shapes. */
static void attention_decode_kernel_matches_cpu(struct gt *t)
{
    const struct attn_case cases[] = {
        { 8, 8, 64, 16, 0, 0, 6, REQS({ 1, 100 }, { 1, 0 }, { 1, 3000 }), 2, 0, 0 },
        { 16, 8, 128, 16, 0, 0, 6, REQS({ 1, 1 }, { 1, 64 }, { 1, 65 }, { 1, 0 }), 0, 0, 0 },
        { 32, 8, 128, 16, 0, 0, 6,
          REQS({ 1, 1 }, { 1, 15 }, { 1, 16 }, { 1, 17 }, { 1, 1000 }, { 1, 0 }, { 1, 2047 }), 1, 0, 0 },
        { 64, 8, 128, 16, 0, 0, 6, REQS({ 1, 700 }, { 1, 33 }), 0, 0, 0 },
        { 32, 2, 128, 16, 0, 0, 6, REQS({ 1, 5000 }, { 1, 9 }, { 1, 0 }), 0, 0, 0 },
        { 16, 4, 256, 16, 0, 0, 6, REQS({ 1, 300 }, { 1, 5000 }, { 1, 0 }), 0, 0, 0 },
        { 8, 1, 256, 16, 0, 0, 6, REQS({ 1, 129 }), 0, 0, 0 },
        { 16, 1, 64, 16, 0, 0, 6, REQS({ 1, 77 }, { 1, 4000 }), 0, 0, 0 },
        { 8, 4, 128, 1, 0, 0, 6, REQS({ 1, 37 }, { 1, 300 }), 0, 0, 0 },
        { 8, 2, 64, 32, 0, 0, 6, REQS({ 1, 37 }, { 1, 1500 }, { 1, 0 }), 0, 0, 0 },
    };

    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        attn_once(t, &cases[i], NULL);
        attn_once_kv(t, &cases[i], NULL, 0.0113f, 0.0071f);
    }
    gt_note(t, "bf16 and fp8, GQA 1-16, D 64/128/256, blocks 1/16/32, padding rows");
}

/* The shapes of the benchmark: 1 x 32k, 1 x 128k, 8 x 8k (split) and 64 x 4k, bf16 and fp8. */
static void attention_decode_long_contexts_match_cpu(struct gt *t)
{
    struct attn_req *r8 = decode_reqs(t, 8, 8192, 0), *r64 = decode_reqs(t, 64, 4096, 3);
    struct attn_case cases[] = {
        { 32, 8, 128, 16, 0, 0, 8, REQS({ 1, 32768 }), 0, 2, 0 },
        { 16, 2, 64, 16, 0, 0, 8, REQS({ 1, 131072 }), 0, 2, 0 },
        { 32, 8, 128, 16, 0, 0, 8, r8, 8, 0, 2, 0 },
        { 8, 2, 64, 16, 0, 0, 8, r64, 67, 0, 0, 0 },
    };
    int splits = 0;

    if (!r8 || !r64)
        goto out;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        attn_once(t, &cases[i], &splits);
        attn_once_kv(t, &cases[i], &splits, 0.0113f, 0.0071f);
    }
    gt_note(t, "1x32k, 1x128k, 8x8k, 64x4k (+3 padding), bf16 and fp8; up to %d splits", splits);
out:
    free(r8);
    free(r64);
}

/* Sliding windows (blocks below the window dropped from the table) and soft-caps over long,
 * split contexts. */
static void attention_decode_window_softcap_match_cpu(struct gt *t)
{
    const struct attn_case cases[] = {
        { 32, 8, 128, 16, 1000, 0, 6, REQS({ 1, 32768 }, { 1, 500 }), 0, 0, 0 },
        { 8, 2, 64, 16, 4096, 30.0f, 16, REQS({ 1, 20000 }, { 1, 4097 }), 0, 0, 0 },
        { 16, 4, 256, 16, 0, 50.0f, 16, REQS({ 1, 16384 }), 0, 2, 0 },
        { 16, 2, 128, 16, 17, 5.0f, 16, REQS({ 1, 9000 }, { 1, 3 }), 0, 0, 0 },
    };

    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        attn_once(t, &cases[i], NULL);
        attn_once_kv(t, &cases[i], NULL, 0.0113f, 0.0071f);
    }
    gt_note(t, "windows 1000/4096/17 and caps 30/50/5 over 3k-32k contexts, bf16 and fp8");
}

/* A graph captured with max_seq_len 32768 (as the runner stages graph batches) from short
 * sequences, replayed for long and short ones: the split count is baked in, the keys each
 * block takes are not. */
static void attention_decode_graph_replay_matches_cpu(struct gt *t)
{
    const struct attn_case cases[] = {
        { 32, 8, 128, 16, 0, 0, 8, REQS({ 1, 32768 }), 0, 2, 32768 },
        { 32, 8, 128, 16, 0, 0, 8, REQS({ 1, 20000 }, { 1, 100 }, { 1, 0 }, { 1, 32767 }), 0, 2, 32768 },
        { 8, 2, 64, 16, 0, 0, 8, REQS({ 1, 5 }, { 1, 0 }), 0, 0, 32768 },
        { 16, 4, 256, 16, 300, 0, 8, REQS({ 1, 8191 }, { 1, 0 }), 0, 0, 8192 },
    };

    /* the merge of the splits launched as a programmatic dependent, then in plain order */
    for (int flags = 0; flags < 2; flags++) {
        attention_decode_cuda_tune(0, false, 0, 0, flags, NULL, 0);
        for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
            attn_once(t, &cases[i], NULL);
            attn_once_kv(t, &cases[i], NULL, 0.0113f, 0.0071f);
        }
    }
    attention_decode_cuda_tune(0, false, 0, 0, 0, NULL, 0);
    gt_note(t, "captured at bound 32k/8k from short lengths, replayed for 5..32767 keys = eager; "
            "merge launched as a dependent and plain");
}

/* Every compiled instantiation of the decode kernel (the benchmark compares them) through a
 * split context with a padding request, a window, and a batch that does not split. */
static void attention_decode_variants_match_cpu(struct gt *t)
{
    static const int dims[] = { 64, 128, 256 };
    int ran = 0;

    for (size_t di = 0; di < ARRAY_LEN(dims); di++) {
        int D = dims[di], H = D == 64 ? 8 : 32, KV = D == 64 ? 2 : 8;
        const struct attn_case cases[] = {
            { H, KV, D, 16, 0, 0, 8, REQS({ 1, 9000 }, { 1, 0 }, { 1, 33 }), 1, 0, 0 },
            { H, KV, D, 16, 500, 0, 6, REQS({ 1, 3001 }), 0, 0, 0 },
            { H, KV, D, 16, 0, 0, 6, REQS({ 1, 100 }, { 1, 7 }, { 1, 0 }, { 1, 1000 }), 0, 0, 0 },
        };
        for (int fp8 = 0; fp8 < 2; fp8++)
            for (int k = 1; attention_decode_cuda_tune(D, fp8, k, 0, 0, NULL, 0) == 0; k++) {
                for (size_t i = 0; i < ARRAY_LEN(cases); i++)
                    attn_once_kv(t, &cases[i], NULL, fp8 ? 0.0113f : 0.0f, fp8 ? 0.0071f : 0.0f);
                ran++;
            }
    }
    attention_decode_cuda_tune(0, false, 0, 0, 0, NULL, 0);
    gt_note(t, "%d other instantiations, split/window/plain batches", ran);
}

/* ---- gpt-oss's attention sinks ---- */

/* The sink is one more logit in the denominator, once per row: the unsplit kernels fold it
 * in their epilogue, the split ones in the merge only. Cases at gpt-oss's shape (64 heads, 8
 * KV heads, D 64, window 128) and others; splits asked for where they matter (a sink counted
 * per split shows there, as one left out does everywhere). */
static const struct attn_case sink_cases[] = {
    /* prefill, and a mixed batch with padding and trailing tokens (varlen kernel) */
    { 64, 8, 64, 16, 0, 0, 6, REQS({ 1, 1 }, { 17, 17 }, { 200, 200 }), 0, 0, 0 },
    { 64, 8, 64, 16, 128, 0, 6, REQS({ 300, 300 }, { 40, 1000 }, { 1, 0 }), 0, 0, 0 },
    { 32, 8, 128, 16, 0, 0, 6,
      REQS({ 1, 40 }, { 50, 250 }, { 1, 700 }, { 120, 120 }, { 1, 0 }, { 7, 77 }), 5, 0, 0 },
    /* decodes (the decode kernel), unsplit and split, window and not */
    { 64, 8, 64, 16, 0, 0, 6, REQS({ 1, 1 }, { 1, 100 }, { 1, 2047 }, { 1, 0 }), 0, 0, 0 },
    { 64, 8, 64, 16, 128, 0, 6, REQS({ 1, 129 }, { 1, 5000 }, { 1, 0 }), 0, 0, 0 },
    { 64, 8, 64, 16, 0, 0, 8, REQS({ 1, 32768 }), 0, 2, 0 },
    { 32, 8, 128, 16, 0, 0, 8, REQS({ 1, 8192 }, { 1, 4099 }), 0, 2, 0 },
    /* the varlen kernel split: a prefill chunk at 8k, and decodes of a head_dim the decode
     * kernel does not take */
    { 64, 8, 64, 32, 0, 0, 8, REQS({ 64, 8192 }), 0, 2, 0 },
    { 8, 2, 24, 16, 0, 0, 8, REQS({ 1, 16384 }, { 1, 5 }), 0, 2, 0 },
    /* a soft-cap with sinks (no family has both; the paths must still compose) */
    { 8, 4, 64, 16, 0, 5.0f, 16, REQS({ 1, 3000 }, { 64, 64 }), 0, 0, 0 },
    /* graph replays of decode batches, split and not */
    { 64, 8, 64, 16, 0, 0, 8, REQS({ 1, 20000 }, { 1, 100 }, { 1, 0 }, { 1, 32767 }), 0, 2, 32768 },
    { 64, 8, 64, 16, 128, 0, 8, REQS({ 1, 5 }, { 1, 3000 }, { 1, 0 }), 0, 0, 32768 },
};

static void attention_sinks_match_cpu(struct gt *t)
{
    int splits = 0;

    for (size_t i = 0; i < ARRAY_LEN(sink_cases); i++) {
        attn_run(t, &sink_cases[i], &splits, 0.0f, 0.0f, true);
        attn_run(t, &sink_cases[i], &splits, 0.0113f, 0.0071f, true);
    }
    gt_note(t, "sinks 40/-40/U(-2,6): prefill, mixed, decode, windows, graphs, bf16 and fp8; "
            "up to %d splits", splits);
}

/* The varlen kernel takes the decodes too (attention_decode_cuda_tune -1), so its one-warp
 * decode blocks and their split merge see sinks as well. */
static void attention_sinks_varlen_decodes_match_cpu(struct gt *t)
{
    for (size_t i = 3; i < 7; i++) {
        attention_decode_cuda_tune(0, false, -1, 0, 0, NULL, 0);
        attn_run(t, &sink_cases[i], NULL, 0.0f, 0.0f, true);
        attn_run(t, &sink_cases[i], NULL, 0.0113f, 0.0071f, true);
    }
    attention_decode_cuda_tune(0, false, 0, 0, 0, NULL, 0);
    gt_note(t, "the decode cases of attention_sinks_match_cpu through the varlen kernel");
}

const struct gt_case gt_cases_attention[] = {
    { "attention_prefill_only_matches_cpu", attention_prefill_only_matches_cpu },
    { "attention_prefill_variants_match_cpu", attention_prefill_variants_match_cpu },
    { "attention_decode_only_matches_cpu", attention_decode_only_matches_cpu },
    { "attention_mixed_batch_matches_cpu", attention_mixed_batch_matches_cpu },
    { "attention_long_context_splits_match_cpu", attention_long_context_splits_match_cpu },
    { "attention_sliding_window_matches_cpu", attention_sliding_window_matches_cpu },
    { "attention_softcap_matches_cpu", attention_softcap_matches_cpu },
    { "attention_block_sizes_1_and_32_match_cpu", attention_block_sizes_1_and_32_match_cpu },
    { "attention_fp8_cache_matches_cpu", attention_fp8_cache_matches_cpu },
    { "attention_decode_kernel_matches_cpu", attention_decode_kernel_matches_cpu },
    { "attention_decode_long_contexts_match_cpu", attention_decode_long_contexts_match_cpu },
    { "attention_decode_window_softcap_match_cpu", attention_decode_window_softcap_match_cpu },
    { "attention_decode_graph_replay_matches_cpu", attention_decode_graph_replay_matches_cpu },
    { "attention_decode_variants_match_cpu", attention_decode_variants_match_cpu },
    { "attention_sinks_match_cpu", attention_sinks_match_cpu },
    { "attention_sinks_varlen_decodes_match_cpu", attention_sinks_varlen_decodes_match_cpu },
    { NULL, NULL },
};
#endif
