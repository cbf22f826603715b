/* test_moe.c — the CUDA moe op (engine/cuda/cuda_moe.c, kernels/moe.cu) against the CPU
 * backend's (engine/cpu/moe.c) on random bf16 weights, in the three families' routings:
 * Mixtral (8 experts, top 2, renormalized), Qwen3-MoE (128, top 8, renormalized, small
 * hidden and ffn), Qwen2-MoE (60, top 4, not renormalized, plus the sigmoid-gated shared
 * expert); n = 1, 3, 64, 300, 2048 rows, some all zero. The GPU scratch is poisoned (NaN
 * floats, -1 ids) before each run, so a padding row of a tile that read or wrote what it
 * should not shows. Also: shapes off the 16-byte path and at the limits (256 experts, top
 * 8), exact ties (a zero router: the lower expert wins, as on the CPU), both tile shapes
 * of the grouped GEMM on the same data, repeated runs bit for bit, and graph replays bit
 * for bit equal to eager runs on new data. gpt-oss's block (the router's bias, the experts'
 * gate_up and down biases, the clamped SwiGLU with alpha 1.702 and limit 7, biases large
 * enough that both clamps bite) at its two models' expert counts, decode and prefill batches,
 * off the 16-byte path, and in graphs. The GEMV path of steps of 1-4 tokens and the decode
 * tiles at those sizes, in every family and at the models' real expert shapes (fewer
 * experts); n <= 4 in the cases above takes the GEMV path (the default).
 *
 * Tolerance: the CPU computes in f32; the GPU rounds the activation silu(gate) * up and
 * each weighted expert output to bf16 before the sum (2^-9 relative each), and the
 * output once more; the shared expert's dense path rounds its gate_up, activation and
 * output too (cuBLAS writes bf16). An element then lies within 2e-2 of the output's rms
 * plus 1e-2 of itself (a few bf16 steps; on the H200, 1.5e-2 of the rms was exceeded by 10
 * of 522240 elements of the shared-expert case, by at most 11%), and the nmse stays below 1e-4 (one
 * bf16 rounding is ~1.3e-6; measured <= 1.3e-5). A row whose k-th and (k+1)-th router logits on the CPU lie within 1e-3 may pick
 * another expert on the GPU (f32 sums in another order): such near-tie rows are left out
 * and counted in the note; exact ties are kept. */
#ifdef OSPREY_CUDA
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/util.h"
#include "engine/cuda/backend_cuda.h"   /* backend_cuda_stream */
#include "kernels/kernels.h"            /* moe_experts_cuda: the tile shapes, directly */
#include "tests/gpu/gpu_test.h"

struct moe_shape {
    int E, k, H, F, SF;
    bool renorm;
};

/* Two tensors of every expert (gate_up and down, or their biases): each on both backends,
 * and the per-backend arrays the moe op takes. */
struct expert_pair {
    struct dweight *gu, *dn;
    struct bk_weight *cgu, *cdn, *ggu, *gdn;
};

struct moe_fx {
    struct moe_shape s;
    struct dweight router, sgu, sdn, sg;
    struct expert_pair ex;          /* the experts' weights */
    /* gpt-oss: the router's bias (also on the host, for near_ties) and the experts' biases */
    struct dweight rb;
    struct expert_pair bias;
    float *rb_host;
    struct moe_weights cw, gw;
    struct moe_params p;
};

static bool backends(struct gt *t, int max_tokens)
{
    struct backend_options o = { .max_tokens = max_tokens, .max_reqs = 8, .max_blocks_per_req = 8,
                                 .num_kv_groups = 1, .vocab_size = 16 };
    return gt_backends(t, &o);
}

/* A random [rows, cols] weight in U(-a, a) on both backends; its values also into keep
 * (host, rows * cols floats) when not NULL. */
static bool rand_weight_keep(struct gt *t, struct dweight *w, int rows, int cols, float a,
                             float *keep)
{
    float *h = malloc((size_t)rows * cols * 4);
    bool ok;

    if (!gt_check(t, h != NULL, "out of host memory"))
        return false;
    gt_fill(&t->rng, h, (size_t)rows * cols, -a, a);
    ok = dweight_create(t, w, h, rows, cols, DT_BF16);
    if (keep)
        memcpy(keep, h, (size_t)rows * cols * 4);
    free(h);
    return ok;
}

static bool rand_weight(struct gt *t, struct dweight *w, int rows, int cols, float a)
{
    return rand_weight_keep(t, w, rows, cols, a, NULL);
}

/* E experts' pair: gate_up-like [gu_rows, gu_cols] in U(-gu_a, gu_a), down-like [dn_rows,
 * dn_cols] in U(-dn_a, dn_a). */
static bool pair_create(struct gt *t, struct expert_pair *x, int E, int gu_rows, int gu_cols,
                        float gu_a, int dn_rows, int dn_cols, float dn_a)
{
    x->gu = calloc(E, sizeof *x->gu);
    x->dn = calloc(E, sizeof *x->dn);
    x->cgu = calloc(E, sizeof *x->cgu);
    x->cdn = calloc(E, sizeof *x->cdn);
    x->ggu = calloc(E, sizeof *x->ggu);
    x->gdn = calloc(E, sizeof *x->gdn);
    if (!gt_check(t, x->gu && x->dn && x->cgu && x->cdn && x->ggu && x->gdn, "out of host memory"))
        return false;
    for (int e = 0; e < E; e++) {
        if (!rand_weight(t, &x->gu[e], gu_rows, gu_cols, gu_a) ||
            !rand_weight(t, &x->dn[e], dn_rows, dn_cols, dn_a))
            return false;
        x->cgu[e] = x->gu[e].cpu;
        x->cdn[e] = x->dn[e].cpu;
        x->ggu[e] = x->gu[e].gpu;
        x->gdn[e] = x->dn[e].gpu;
    }
    return true;
}

static void pair_free(struct gt *t, struct expert_pair *x, int E)
{
    for (int e = 0; x->gu && x->dn && e < E; e++) {
        dweight_free(t, &x->gu[e]);
        dweight_free(t, &x->dn[e]);
    }
    free(x->gu);
    free(x->dn);
    free(x->cgu);
    free(x->cdn);
    free(x->ggu);
    free(x->gdn);
}

static void fx_free(struct gt *t, struct moe_fx *f)
{
    dweight_free(t, &f->router);
    pair_free(t, &f->ex, f->s.E);
    pair_free(t, &f->bias, f->s.E);
    dweight_free(t, &f->rb);
    free(f->rb_host);
    dweight_free(t, &f->sgu);
    dweight_free(t, &f->sdn);
    dweight_free(t, &f->sg);
    memset(f, 0, sizeof *f);
}

/* gpt-oss's biases on top of f's weights, and its activation: the router's bias in
 * U(-1, 1) (moves the top-k), the experts' gate_up biases in U(-8, 8) (so that gate passes
 * the limit 7 and up both -7 and 7 on some rows: outputs near 1 before them), down's in
 * U(-1, 1). */
static bool fx_add_oai(struct gt *t, struct moe_fx *f)
{
    int E = f->s.E;

    f->rb_host = calloc(E, sizeof *f->rb_host);
    if (!gt_check(t, f->rb_host != NULL, "out of host memory") ||
        !rand_weight_keep(t, &f->rb, E, 1, 1.0f, f->rb_host) ||
        !pair_create(t, &f->bias, E, 2 * f->s.F, 1, 8.0f, f->s.H, 1, 1.0f))
        return false;
    f->cw.router_bias = &f->rb.cpu;
    f->cw.gate_up_bias = f->bias.cgu;
    f->cw.down_bias = f->bias.cdn;
    f->gw.router_bias = &f->rb.gpu;
    f->gw.gate_up_bias = f->bias.ggu;
    f->gw.down_bias = f->bias.gdn;
    f->p.act = MOE_ACT_SWIGLU_OAI;
    f->p.swiglu_alpha = 1.702f;
    f->p.swiglu_limit = 7.0f;
    return true;
}

/* Weights scaled so that the router's logits have a standard deviation near 2 and each
 * projection's outputs near 1 (x in U(-1, 1)). zero_router: every logit 0, all ties. */
static bool fx_create(struct gt *t, struct moe_fx *f, struct moe_shape s, bool zero_router)
{
    int E = s.E;
    float ra = zero_router ? 0.0f : 6.0f / sqrtf(s.H);

    memset(f, 0, sizeof *f);
    f->s = s;
    if (!rand_weight(t, &f->router, E, s.H, ra) ||
        !pair_create(t, &f->ex, E, 2 * s.F, s.H, 3.0f / sqrtf(s.H), s.H, s.F, 3.0f / sqrtf(s.F)))
        return false;
    if (s.SF && (!rand_weight(t, &f->sgu, 2 * s.SF, s.H, 3.0f / sqrtf(s.H)) ||
                 !rand_weight(t, &f->sdn, s.H, s.SF, 3.0f / sqrtf(s.SF)) ||
                 !rand_weight(t, &f->sg, 1, s.H, 3.0f / sqrtf(s.H))))
        return false;
    f->cw = (struct moe_weights){ &f->router.cpu, f->ex.cgu, f->ex.cdn, s.SF ? &f->sgu.cpu : NULL,
                                  s.SF ? &f->sdn.cpu : NULL, s.SF ? &f->sg.cpu : NULL,
                                  NULL, NULL, NULL, false };
    f->gw = (struct moe_weights){ &f->router.gpu, f->ex.ggu, f->ex.gdn, s.SF ? &f->sgu.gpu : NULL,
                                  s.SF ? &f->sdn.gpu : NULL, s.SF ? &f->sg.gpu : NULL,
                                  NULL, NULL, NULL, false };
    f->p = (struct moe_params){ E, s.k, s.H, s.F, s.SF, s.renorm, NULL, MOE_ACT_SILU, 0.0f, 0.0f };
    return true;
}

/* Scratch for n rows on the GPU, filled with 0xff bytes: NaN as floats and bf16, -1 as ids. */
static void *gpu_work(struct gt *t, const struct moe_fx *f, int n, size_t *bytes)
{
    char err[ERR_LEN] = "";
    size_t b = t->gpu->ops->moe_work_bytes(n, &f->p);
    void *w = t->gpu->ops->alloc(t->gpu, b, err), *h = malloc(b + 1);

    if (!gt_check(t, w && h, "scratch of %zu bytes: %s", b, err)) {
        if (w)
            t->gpu->ops->free(t->gpu, w);
        free(h);
        return NULL;
    }
    memset(h, 0xff, b);
    gt_check(t, t->gpu->ops->upload(t->gpu, w, h, b) == 0, "poisoning the scratch");
    free(h);
    *bytes = b;
    return w;
}

/* Rows of x whose CPU router logits have a near tie (0 < gap < 1e-3) at the top-k edge. */
static int near_ties(struct gt *t, struct moe_fx *f, const struct dbuf *x, int n, bool *skip)
{
    char err[ERR_LEN] = "";
    int E = f->s.E, k = f->s.k, count = 0;
    float *l = t->cpu->ops->alloc(t->cpu, (size_t)n * E * 4, err), *row = malloc(E * 4);

    memset(skip, 0, n);
    if (!gt_check(t, l && row, "out of memory") ||
        !gt_check(t, t->cpu->ops->lm_head(t->cpu, l, x->cpu, &f->router.cpu, n) == 0, "cpu router"))
        goto out;
    for (int r = 0; r < n && k < E; r++) {
        float kth = -INFINITY, next = -INFINITY;
        memcpy(row, l + (size_t)r * E, E * 4);
        for (int e = 0; f->rb_host && e < E; e++)   /* gpt-oss: the biased logits route */
            row[e] += f->rb_host[e];
        for (int j = 0; j <= k; j++) {   /* the k-th and (k+1)-th largest, by selection */
            int b = 0;
            for (int e = 1; e < E; e++)
                if (row[e] > row[b])
                    b = e;
            if (j == k - 1)
                kth = row[b];
            if (j == k)
                next = row[b];
            row[b] = -INFINITY;
        }
        skip[r] = kth - next > 0.0f && kth - next < 1e-3f;
        count += skip[r];
    }
out:
    if (l)
        t->cpu->ops->free(t->cpu, l);
    free(row);
    return count;
}

/* Both backends' op on x[n, H] (the last `zero` rows all zero); compares and returns the
 * number of near-tie rows left out. gpu_out (host, [n, H]) receives the GPU's output. */
static int run_once(struct gt *t, struct moe_fx *f, int n, int zero, float *gpu_out)
{
    int H = f->s.H, skipped = 0;
    size_t wb = 0, cwb = t->cpu->ops->moe_work_bytes(n, &f->p);
    float *xh = malloc((size_t)n * H * 4), *ref = malloc((size_t)n * H * 4);
    float *got = malloc((size_t)n * H * 4);
    bool *skip = malloc(n);
    struct dbuf x = { 0 }, out = { 0 };
    char err[ERR_LEN] = "", what[96];
    void *cwork = NULL, *gwork = NULL;
    struct moe_params cp = f->p, gp = f->p;

    if (!gt_check(t, xh && ref && got && skip, "out of host memory"))
        goto out;
    gt_fill(&t->rng, xh, (size_t)n * H, -1.0f, 1.0f);
    memset(xh + (size_t)(n - zero) * H, 0, (size_t)zero * H * 4);
    if (!dbuf_create(t, &x, (size_t)n * H, false) || !dbuf_set(t, &x, xh) ||
        !dbuf_create(t, &out, (size_t)n * H, false) || !dbuf_poison(t, &out) ||
        !gt_check(t, (cwork = t->cpu->ops->alloc(t->cpu, cwb, err)) != NULL, "%s", err) ||
        !(gwork = gpu_work(t, f, n, &wb)))
        goto out;
    cp.work = cwork;
    gp.work = gwork;
    skipped = near_ties(t, f, &x, n, skip);
    if (!gt_check(t, t->cpu->ops->moe(t->cpu, out.cpu, x.cpu, &f->cw, n, &cp) == 0, "cpu moe") ||
        !gt_check(t, t->gpu->ops->moe(t->gpu, out.gpu, x.gpu, &f->gw, n, &gp) == 0, "cuda moe") ||
        !dbuf_get(t, &out, ref, got))
        goto out;
    if (gpu_out)
        memcpy(gpu_out, got, (size_t)n * H * 4);
    {
        double ss = 0.0;
        size_t m = 0;

        for (int r = 0; r < n; r++) {
            if (skip[r])
                continue;
            for (int d = 0; d < H; d++) {
                ss += (double)ref[(size_t)r * H + d] * ref[(size_t)r * H + d];
                ref[m] = ref[(size_t)r * H + d];
                got[m++] = got[(size_t)r * H + d];
            }
        }
        snprintf(what, sizeof what, "E %d k %d H %d F %d SF %d n %d%s", f->s.E, f->s.k, H,
                 f->s.F, f->s.SF, n, f->rb_host ? " gpt-oss" : "");
        if (m)
            gt_compare(t, what, got, ref, m, 2e-2 * sqrt(ss / m), 1e-2, 1e-4);
    }
out:
    if (cwork)
        t->cpu->ops->free(t->cpu, cwork);
    if (gwork)
        t->gpu->ops->free(t->gpu, gwork);
    dbuf_free(t, &x);
    dbuf_free(t, &out);
    free(xh);
    free(ref);
    free(got);
    free(skip);
    return skipped;
}

static void family_act(struct gt *t, struct moe_shape s, const char *name, bool oai)
{
    static const int ns[] = { 1, 3, 64, 300, 2048 };
    struct moe_fx f;
    int skipped = 0;

    if (!backends(t, 2048))
        return;
    if (fx_create(t, &f, s, false) && (!oai || fx_add_oai(t, &f)))
        for (size_t i = 0; i < ARRAY_LEN(ns); i++)
            skipped += run_once(t, &f, ns[i], ns[i] >= 64 ? 5 : 0, NULL);
    fx_free(t, &f);
    gt_note(t, "%s: E %d top %d H %d F %d%s, n 1/3/64/300/2048; %d near-tie rows left out",
            name, s.E, s.k, s.H, s.F, s.SF ? " + shared" : "", skipped);
}

static void family(struct gt *t, struct moe_shape s, const char *name)
{
    family_act(t, s, name, false);
}

static void moe_mixtral_matches_cpu(struct gt *t)
{
    family(t, (struct moe_shape){ 8, 2, 512, 256, 0, true }, "Mixtral");
}

static void moe_qwen3_matches_cpu(struct gt *t)
{
    family(t, (struct moe_shape){ 128, 8, 256, 128, 0, true }, "Qwen3-MoE");
}

static void moe_qwen2_shared_expert_matches_cpu(struct gt *t)
{
    family(t, (struct moe_shape){ 60, 4, 256, 64, 256, false }, "Qwen2-MoE");
}

/* gpt-oss-20b's 32 experts top 4 and gpt-oss-120b's 128 top 4 (softmax over the top-k
 * logits: the renormalized case), at small hidden and ffn. */
static void moe_gpt_oss_matches_cpu(struct gt *t)
{
    family_act(t, (struct moe_shape){ 32, 4, 256, 128, 0, true }, "gpt-oss-20b experts", true);
}

static void moe_gpt_oss_120b_experts_match_cpu(struct gt *t)
{
    family_act(t, (struct moe_shape){ 128, 4, 192, 96, 0, true }, "gpt-oss-120b experts", true);
}

/* gpt-oss's block off the 16-byte path (element loads), and with one expert. */
static void moe_gpt_oss_odd_shapes_match_cpu(struct gt *t)
{
    static const struct { struct moe_shape s; int n; } cases[] = {
        { { 5, 3, 100, 36, 0, true }, 37 },
        { { 1, 1, 64, 24, 0, true }, 5 },
        { { 32, 4, 2880 / 16, 2880 / 16, 0, true }, 300 },
    };
    int skipped = 0;

    if (!backends(t, 512))
        return;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct moe_fx f;
        if (fx_create(t, &f, cases[i].s, false) && fx_add_oai(t, &f))
            skipped += run_once(t, &f, cases[i].n, 1, NULL);
        fx_free(t, &f);
    }
    gt_note(t, "gpt-oss: H 100/F 36 (no 16-byte loads), E 1, H 180; %d near-tie rows left out",
            skipped);
}

/* Off the 16-byte path (hidden 100, ffn 36: element loads), one expert, and the limits. */
static void moe_odd_shapes_and_limits_match_cpu(struct gt *t)
{
    static const struct { struct moe_shape s; int n; } cases[] = {
        { { 5, 3, 100, 36, 20, false }, 37 },
        { { 1, 1, 64, 24, 0, true }, 5 },
        { { 256, 8, 64, 32, 0, true }, 64 },
        { { 256, 8, 64, 32, 0, false }, 300 },
        { { 8, 2, 64, 24, 80, false }, 17 },   /* the tests/data/hf/qwen2-moe shapes */
    };
    int skipped = 0;

    if (!backends(t, 512))
        return;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct moe_fx f;
        if (fx_create(t, &f, cases[i].s, false))
            skipped += run_once(t, &f, cases[i].n, 1, NULL);
        fx_free(t, &f);
    }
    gt_note(t, "H 100/F 36 (no 16-byte loads), E 1, E 256 top 8, hf qwen2-moe shape; %d near-tie "
            "rows left out", skipped);
}

/* The GEMV path (steps of at most 4 tokens; kernels/moe.cu moe_gemv_kernel) and the
 * grouped GEMM's decode tiles at the same sizes, each against the CPU, in every family:
 * n = 1, 2, 3, 4. Shapes: the families' (small), Qwen3-30B-A3B's expert shape (hidden
 * 2048, ffn 768: a lane's gate_up row takes two steps of loads, down's one with its last
 * chunk masked) and gpt-oss's (2880: a step with some lanes' chunks past the row) with
 * fewer experts, hidden 184 (down's last block has warps past the last row), and hidden
 * 100 / ffn 36 (no 16-byte loads: AUTO routes it to the decode tiles). What a broken GEMV
 * path shows here: a wrong expert id (another expert's random weights), gpt-oss's gate and
 * up read interleaved instead of [gate; up] as weights.c hands them to this backend, a
 * bias added twice (gate_up's in U(-8, 8)), or the routing weight left out (every output
 * k times too large with renormalized weights near 1/k): errors of the order of the
 * output itself, far past the bounds. */
struct gemv_case {
    struct moe_shape s;
    bool oai;
    const char *name;
};

static const struct gemv_case gemv_cases[] = {
    { { 8, 2, 512, 256, 0, true }, false, "Mixtral" },
    { { 128, 8, 256, 128, 0, true }, false, "Qwen3-MoE" },
    { { 60, 4, 256, 64, 256, false }, false, "Qwen2-MoE + shared" },
    { { 32, 4, 256, 128, 0, true }, true, "gpt-oss-20b" },
    { { 128, 4, 192, 96, 0, true }, true, "gpt-oss-120b" },
    { { 16, 8, 2048, 768, 0, true }, false, "Qwen3-30B-A3B expert shape" },
    { { 4, 4, 2880, 2880, 0, true }, true, "gpt-oss expert shape" },
    { { 8, 2, 184, 40, 0, true }, false, "H 184" },
    { { 5, 3, 100, 36, 20, false }, false, "H 100/F 36" },
    { { 5, 3, 100, 36, 0, true }, true, "gpt-oss H 100/F 36" },
};

static void gemv_run(struct gt *t, size_t from, size_t to)
{
    int skipped = 0, runs = 0;

    if (!backends(t, 64))
        return;
    for (size_t i = from; i < to; i++) {
        struct moe_fx f;

        if (fx_create(t, &f, gemv_cases[i].s, false) && (!gemv_cases[i].oai || fx_add_oai(t, &f)))
            for (int n = 1; n <= 4; n++)
                for (int gemv = 1; gemv >= 0; gemv--) {
                    moe_cuda_set_gemv_max(gemv ? 4 : 0);   /* 0: the decode tiles */
                    skipped += run_once(t, &f, n, n == 4, NULL);
                    runs++;
                }
        moe_cuda_set_gemv_max(-1);
        fx_free(t, &f);
        gt_note(t, "%s: E %d top %d H %d F %d", gemv_cases[i].name, gemv_cases[i].s.E,
                gemv_cases[i].s.k, gemv_cases[i].s.H, gemv_cases[i].s.F);
    }
    gt_note(t, "n 1-4, GEMV and decode tiles: %d runs, %d near-tie rows left out", runs, skipped);
}

static void moe_gemv_families_match_cpu(struct gt *t)
{
    gemv_run(t, 0, 5);
}

static void moe_gemv_model_and_odd_shapes_match_cpu(struct gt *t)
{
    gemv_run(t, 5, ARRAY_LEN(gemv_cases));
}

/* A zero router: every probability equal, the experts 0 .. k-1 win on both backends. */
static void moe_ties_pick_the_lower_expert(struct gt *t)
{
    if (!backends(t, 64))
        return;
    for (int renorm = 0; renorm < 2; renorm++) {
        struct moe_fx f;
        if (fx_create(t, &f, (struct moe_shape){ 16, 4, 128, 64, 0, renorm }, true))
            run_once(t, &f, 33, 3, NULL);
        fx_free(t, &f);
    }
    gt_note(t, "zero router, E 16 top 4, renormalized and not: experts 0-3 on both");
}

/* The decode and prefill tile shapes on the same routing give the same output (each
 * element sums its products in the same k order, so bit for bit is expected); the GEMV
 * path, forced at every n (its grid is sized by pairs, not tiles), within rounding. */
static void moe_tile_shapes_agree(struct gt *t)
{
    static const int ns[] = { 3, 64, 300 };
    struct moe_shape s = { 128, 8, 256, 128, 0, true };
    struct moe_fx f = { 0 };
    int bitwise = 0, runs = 0;
    char err[ERR_LEN] = "";

    if (!backends(t, 512) || !fx_create(t, &f, s, false))
        goto out;
    for (size_t i = 0; i < ARRAY_LEN(ns); i++) {
        int n = ns[i], P = n * s.k;
        struct cuda_moe_params kp = { n, s.E, s.k, s.H, s.F, s.renorm, CUDA_MOE_TILE_DECODE,
                                      CUDA_MOE_ACT_SILU, 0.0f, 0.0f };
        struct cuda_moe_experts ex;
        struct dbuf x = { 0 }, logits = { 0 }, y = { 0 }, out = { 0 };
        size_t wb = moe_experts_cuda_work_bytes(&kp);
        void *work = t->gpu->ops->alloc(t->gpu, wb, err);
        float *xh = malloc((size_t)n * s.H * 4), *o[2] = { malloc((size_t)n * s.H * 4),
                                                         malloc((size_t)n * s.H * 4) };
        void *st = backend_cuda_stream(t->gpu);

        memset(&ex, 0, sizeof ex);
        for (int e = 0; e < s.E; e++) {
            ex.gate_up[e] = f.ex.ggu[e].data;
            ex.down[e] = f.ex.gdn[e].data;
        }
        if (gt_check(t, work && xh && o[0] && o[1], "out of memory: %s", err) &&
            dbuf_create(t, &x, (size_t)n * s.H, false) &&
            dbuf_create(t, &logits, (size_t)n * s.E, true) &&
            dbuf_create(t, &y, (size_t)P * s.H, false) &&
            dbuf_create(t, &out, (size_t)n * s.H, false)) {
            gt_fill(&t->rng, xh, (size_t)n * s.H, -1.0f, 1.0f);
            dbuf_set(t, &x, xh);
            gt_check(t, t->gpu->ops->lm_head(t->gpu, logits.gpu, x.gpu, &f.router.gpu, n) == 0,
                     "router");
            for (int v = 0; v < 4; v++) {
                static const enum cuda_moe_tile tiles[4] = { CUDA_MOE_TILE_DECODE,
                    CUDA_MOE_TILE_DECODE_WIDE, CUDA_MOE_TILE_PREFILL, CUDA_MOE_TILE_GEMV };
                static const char *names[4] = { "", "16x64 tiles vs 16x32",
                    "64x128 tiles vs 16x32", "GEMV vs 16x32 tiles" };
                kp.tile = tiles[v];
                dbuf_poison(t, &out);
                gt_check(t, moe_experts_cuda(y.gpu, x.gpu, logits.gpu, &kp, &ex, work, st) == 0 &&
                            moe_combine_cuda(out.gpu, y.gpu, n, s.k, s.H, NULL, NULL, st) == 0,
                         "tile %d launch", v);
                dbuf_get(t, &out, NULL, o[v ? 1 : 0]);
                if (v) {
                    /* GEMV sums in another order than the tensor cores: a bf16 step apart
                     * at times, never bit for bit by design */
                    gt_compare(t, names[v], o[1], o[0], (size_t)n * s.H, 1e-2, 1e-2, 1e-5);
                    if (v < 3) {
                        bitwise += !memcmp(o[0], o[1], (size_t)n * s.H * 4);
                        runs++;
                    }
                }
            }
        }
        if (work)
            t->gpu->ops->free(t->gpu, work);
        dbuf_free(t, &x);
        dbuf_free(t, &logits);
        dbuf_free(t, &y);
        dbuf_free(t, &out);
        free(xh);
        free(o[0]);
        free(o[1]);
    }
    gt_note(t, "16x64 and 64x128 tiles against 16x32, n 3/64/300: %d of %d bit for bit; the GEMV "
            "path forced at each n within bounds", bitwise, runs);
out:
    fx_free(t, &f);
}

struct graph_arg {
    struct gt *t;
    struct moe_fx *f;
    void *out, *x;
    int n;
};

static int graph_body(void *arg)
{
    struct graph_arg *a = arg;
    return a->t->gpu->ops->moe(a->t->gpu, a->out, a->x, &a->f->gw, a->n, &a->f->p);
}

/* Captured once, replayed on new inputs: equal to an eager run of those inputs bit for bit,
 * and eager runs equal each other (no float atomics, a stable grouping). */
static void moe_graph_replay_equals_eager(struct gt *t)
{
    static const struct { struct moe_shape s; int n; bool oai; } cases[] = {
        { { 128, 8, 256, 128, 0, true }, 1, false },   /* n <= 4: the GEMV path */
        { { 128, 8, 256, 128, 0, true }, 2, false },
        { { 128, 8, 256, 128, 0, true }, 4, false },
        { { 128, 8, 256, 128, 0, true }, 64, false },
        { { 60, 4, 256, 64, 256, false }, 8, false },
        { { 8, 2, 512, 256, 0, true }, 300, false },
        { { 32, 4, 256, 128, 0, true }, 1, true },    /* gpt-oss: decode and prefill batches */
        { { 32, 4, 256, 128, 0, true }, 3, true },
        { { 32, 4, 256, 128, 0, true }, 64, true },
        { { 32, 4, 256, 128, 0, true }, 300, true },
    };
    int replays = 0;

    if (!backends(t, 512))
        return;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct moe_fx f;
        int n = cases[i].n, H = cases[i].s.H;
        struct dbuf x = { 0 }, out = { 0 };
        float *xh = malloc((size_t)n * H * 4), *e1 = malloc((size_t)n * H * 4);
        float *e2 = malloc((size_t)n * H * 4), *g = malloc((size_t)n * H * 4);
        size_t wb = 0;
        void *work = NULL;
        struct graph_arg ga;

        if (!fx_create(t, &f, cases[i].s, false) || (cases[i].oai && !fx_add_oai(t, &f)) ||
            !gt_check(t, xh && e1 && e2 && g, "memory") ||
            !(work = gpu_work(t, &f, n, &wb)) || !dbuf_create(t, &x, (size_t)n * H, false) ||
            !dbuf_create(t, &out, (size_t)n * H, false))
            goto next;
        f.p.work = work;
        ga = (struct graph_arg){ t, &f, out.gpu, x.gpu, n };
        gt_fill(&t->rng, xh, (size_t)n * H, -1.0f, 1.0f);
        dbuf_set(t, &x, xh);
        if (!gt_check(t, t->gpu->ops->graph_capture(t->gpu, 1000 + (int)i, graph_body, &ga) == 0,
                      "capture %zu", i))
            goto next;
        for (int round = 0; round < 3; round++) {
            gt_fill(&t->rng, xh, (size_t)n * H, -1.0f, 1.0f);
            dbuf_set(t, &x, xh);
            dbuf_poison(t, &out);
            gt_check(t, graph_body(&ga) == 0, "eager");
            dbuf_get(t, &out, NULL, e1);
            dbuf_poison(t, &out);
            gt_check(t, graph_body(&ga) == 0, "eager again");
            dbuf_get(t, &out, NULL, e2);
            dbuf_poison(t, &out);
            gt_check(t, t->gpu->ops->graph_replay(t->gpu, 1000 + (int)i) == 0, "replay");
            dbuf_get(t, &out, NULL, g);
            gt_check(t, !memcmp(e1, e2, (size_t)n * H * 4), "case %zu round %d: two eager runs "
                     "differ", i, round);
            gt_check(t, !memcmp(e1, g, (size_t)n * H * 4), "case %zu round %d: the replay differs "
                     "from the eager run", i, round);
            gt_check(t, !isnan(g[0]) && !isnan(g[(size_t)n * H - 1]), "case %zu: NaN output", i);
            replays++;
        }
next:
        if (work)
            t->gpu->ops->free(t->gpu, work);
        dbuf_free(t, &x);
        dbuf_free(t, &out);
        fx_free(t, &f);
        free(xh);
        free(e1);
        free(e2);
        free(g);
    }
    gt_note(t, "n 1/2/4/64 Qwen3, 8 Qwen2 shared, 300 Mixtral, 1/3/64/300 gpt-oss: %d replays bit "
            "for bit = eager", replays);
}

const struct gt_case gt_cases_moe[] = {
    { "moe_mixtral_matches_cpu", moe_mixtral_matches_cpu },
    { "moe_qwen3_matches_cpu", moe_qwen3_matches_cpu },
    { "moe_qwen2_shared_expert_matches_cpu", moe_qwen2_shared_expert_matches_cpu },
    { "moe_odd_shapes_and_limits_match_cpu", moe_odd_shapes_and_limits_match_cpu },
    { "moe_ties_pick_the_lower_expert", moe_ties_pick_the_lower_expert },
    { "moe_tile_shapes_agree", moe_tile_shapes_agree },
    { "moe_graph_replay_equals_eager", moe_graph_replay_equals_eager },
    { "moe_gpt_oss_matches_cpu", moe_gpt_oss_matches_cpu },
    { "moe_gpt_oss_120b_experts_match_cpu", moe_gpt_oss_120b_experts_match_cpu },
    { "moe_gpt_oss_odd_shapes_match_cpu", moe_gpt_oss_odd_shapes_match_cpu },
    { "moe_gemv_families_match_cpu", moe_gemv_families_match_cpu },
    { "moe_gemv_model_and_odd_shapes_match_cpu", moe_gemv_model_and_odd_shapes_match_cpu },
    { NULL, NULL },
};

#endif
