/* cuda_fp8_gemm.c — FP8 (e4m3) linear layers on the CUDA backend: the weights stay e4m3 on
 * the device with their f32 scales, and a product quantizes its bf16 activations in one
 * kernel (kernels/quant.cu) before cuBLASLt's scaled e4m3 x e4m3 GEMM with bf16 (or f32)
 * output. Two scalings, as Hopper's cuBLASLt offers them:
 *   - block-wise checkpoints (weight_block_size [128, 128]): the weight's scales as 128x128
 *     blocks (BLK128x128_32F) and the activations' per token and 128-wide k-block
 *     (VEC128_32F), DeepSeek's and Qwen3-FP8's recipe;
 *   - per-channel and per-tensor weights (compressed-tensors, --quantization fp8): one scale
 *     per weight row and one per token (OUTER_VEC_32F on both).
 * Decode-sized products (up to FP8_GEMV_MAX rows) run our W8A16 GEMV instead, which streams
 * the e4m3 weights at close to copy bandwidth, where cuBLASLt's FP8 kernels are built for
 * larger N. Anything else (other block sizes, fused parts that split a 128-row block, a K
 * that is not a multiple of 16) runs our plain W8A16 kernel, said once in the log. Algorithms come from
 * cublasLtMatmulAlgoGetHeuristic once per shape and are cached with their descriptors; the
 * activation buffers are sized at upload time, so a step allocates nothing and the whole
 * product is capturable in the decode graphs. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/util.h"
#include "engine/cuda/backend_cuda.h"
#include "engine/cuda/cuda_internal.h"
#include "kernels/cuda_check.h"

#define FP8_BLOCK 128
#define FP8_PLAN_SLOTS 512     /* cached shapes; a full table replaces its oldest probe slot */
#define FP8_PLAN_PROBES 8
#define FP8_GEMV_MAX 1         /* products of up to this many rows run our GEMV (H200, 8B
                                * products: 1.6-1.8x bf16 at n = 1, 2.2-3.8 TB/s of weights;
                                * 1.2-1.4x at 2, 0.8-1.1x at 4) */

enum fp8_mode {
    FP8_W8A16 = 0,             /* our kernel */
    FP8_BLOCK128,              /* BLK128x128 weight, VEC128 activations */
    FP8_ROWWISE,               /* OUTER_VEC weight rows, OUTER_VEC tokens */
};

/* One cached product shape: descriptors and the algorithm the heuristic chose. */
struct fp8_plan {
    int mode, m, k, n, out_f32, bias;   /* the key; m == 0: an empty slot */
    bool ok;                   /* false: cuBLASLt has no algorithm (remembered, not retried) */
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t la, lb, ld;
    cublasLtMatmulAlgo_t algo;
};

static int ceil_div(int a, int b)
{
    return (a + b - 1) / b;
}

static enum fp8_mode weight_mode(const struct bk_weight *w)
{
    if (w->scale_row_block == FP8_BLOCK && w->scale_block == FP8_BLOCK)
        return FP8_BLOCK128;
    if (w->scale_row_block <= 1 && w->scale_cols == 1 && w->scale_block >= w->cols)
        return FP8_ROWWISE;
    return FP8_W8A16;
}

static const char *mode_name(enum fp8_mode m)
{
    return m == FP8_BLOCK128 ? "cuBLASLt 128x128 blocks" : m == FP8_ROWWISE
           ? "cuBLASLt per-channel" : "W8A16 kernel";
}

/* ---- upload ---- */

/* cudaMalloc + zero; the message names `what`. */
static void *dev_zalloc(struct backend_cuda *cu, size_t bytes, const char *what, char *err)
{
    void *p = NULL;

    if (cudaMalloc(&p, bytes ? bytes : 1) != cudaSuccess) {
        (void)cudaGetLastError();
        errf(err, "cuda: out of device memory for %s (%zu MiB)", what, bytes >> 20);
        return NULL;
    }
    if (!CUDA_OK(cudaMemsetAsync(p, 0, bytes, cu->stream)) ||
        !CUDA_OK(cudaStreamSynchronize(cu->stream))) {
        cudaFree(p);
        cuda__status(cu, -EIO);
        errf(err, "cuda: clearing %s failed", what);
        return NULL;
    }
    return p;
}

/* A synchronous host-to-device copy on the backend's stream. */
static int h2d(struct backend_cuda *cu, void *dst, const void *src, size_t bytes)
{
    if (!CUDA_OK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, cu->stream)) ||
        !CUDA_OK(cudaStreamSynchronize(cu->stream)))
        return cuda__status(cu, -EIO);
    return 0;
}

/* The activation buffers for products of up to max_tokens rows over k columns into rows
 * outputs: grown (before any capture: uploads precede the graphs) when a weight needs more. */
static int grow_workspace(struct backend_cuda *cu, int rows, int k, char *err)
{
    struct cuda_fp8_state *f = &cu->fp8;
    int tokens = (MAX(cu->opt.max_tokens, 1) + 3) / 4 * 4 + 4;   /* main rows + a padded tail */
    size_t q_bytes = (size_t)tokens * MAX(k, f->max_k);
    size_t s_bytes = (size_t)tokens * ceil_div(MAX(k, f->max_k), FP8_BLOCK) * sizeof(float);
    size_t t_bytes = (size_t)4 * MAX(rows, f->max_rows) * sizeof(float);

    if (k <= f->max_k && rows <= f->max_rows)
        return 0;
    k = MAX(k, f->max_k);          /* the buffers cover every weight uploaded so far */
    rows = MAX(rows, f->max_rows);
    if (f->captured) {   /* a graph holds the old buffers' addresses */
        errf(err, "cuda: an fp8 weight [%d, %d] needs larger activation buffers, but graphs "
             "with fp8 products were captured already", rows, k);
        return -EINVAL;
    }
    if (cu->stream && !CUDA_OK(cudaStreamSynchronize(cu->stream)))
        return cuda__status(cu, -EIO);
    cudaFree(f->act_q);
    cudaFree(f->act_scale);
    cudaFree(f->tail_out);
    f->act_q = NULL;
    f->act_scale = NULL;
    f->tail_out = NULL;
    f->max_k = f->max_rows = 0;
    if (!(f->act_q = dev_zalloc(cu, q_bytes, "fp8 activations", err)) ||
        !(f->act_scale = dev_zalloc(cu, s_bytes, "fp8 activation scales", err)) ||
        !(f->tail_out = dev_zalloc(cu, t_bytes, "fp8 GEMM tail rows", err)))
        return cu->dead ? -EIO : -ENOMEM;
    f->max_k = MAX(k, 1);
    f->max_rows = MAX(rows, 1);
    return 0;
}

int cuda__fp8_upload(struct backend_cuda *cu, struct bk_weight *out,
                     const struct tensor_ref *parts, int nparts, int64_t rows, int64_t cols,
                     char *err)
{
    const char *name = parts[0].name ? parts[0].name : "?";
    int64_t cb = parts[0].scale_block[1], row0 = 0;
    int K = (int)cols, M = (int)rows, L = ceil_div(K, (int)MIN(cb, cols));
    bool rowwise = cb >= cols, block = cb == FP8_BLOCK;
    int srows, sld, rb, nstatic = 0;
    float *scale = NULL, in_scale = 0.0f;
    size_t scale_elems;
    uint8_t *dst = NULL;
    int rc = -EINVAL;

    for (int i = 0; i < nparts; i++) {
        const struct tensor_ref *p = &parts[i];

        if (p->dtype != DT_F8_E4M3 || !p->scale || p->scale_block[0] < 1 ||
            p->scale_block[1] != cb || cb < 1 || (size_t)(p->shape[0] * cols) > p->nbytes) {
            errf(err, "cuda: tensors %s and %s are fused into one matrix but are not both "
                 "F8_E4M3 with scales over the same columns", name, p->name ? p->name : "?");
            return -EINVAL;
        }
        /* 128x128 blocks survive stacking only when no part ends inside a block */
        block &= p->scale_block[0] == FP8_BLOCK && (i == nparts - 1 || p->shape[0] % FP8_BLOCK == 0);
        /* fused parts with static activation scales share the largest (vLLM's rule: none
         * of them saturates) */
        if (p->input_scale) {
            nstatic++;
            in_scale = MAX(in_scale, model_scale_at(p->input_scale, 0));
        }
    }
    if (nstatic && (nstatic != nparts || !(in_scale > 0.0f) || !rowwise)) {
        LOG(LL_WARN, "cuda", "%s: static activation scales %s: quantizing its activations "
            "per token instead", name, nstatic != nparts ? "on some fused parts only"
            : !rowwise ? "with block-wise weights" : "not positive");
        nstatic = 0;
    }
    if (rowwise) {                  /* one scale a row: channel, tensor */
        rb = 1, srows = M, sld = 1, L = 1;
    } else if (block) {             /* the checkpoint's blocks, K-major, ld rounded up to 4 */
        rb = FP8_BLOCK, srows = ceil_div(M, FP8_BLOCK), sld = (L + 3) / 4 * 4;
    } else {                        /* expanded per row, for the W8A16 kernel */
        rb = 1, srows = M, sld = L;
    }
    /* the scales, then (static scheme) the activation scale at a 16-byte aligned offset */
    scale_elems = (size_t)srows * sld;
    scale_elems = nstatic ? (scale_elems + 3) / 4 * 4 + 4 : scale_elems;
    if (!(scale = calloc(scale_elems, sizeof *scale))) {
        errf(err, "cuda: out of host memory for the scales of %s", name);
        return -ENOMEM;
    }
    if (nstatic)
        scale[scale_elems - 4] = in_scale;
    for (int i = 0; i < nparts; i++) {
        const struct tensor_ref *p = &parts[i];
        int64_t pr = p->shape[0], prb = p->scale_block[0];

        if (block) {
            for (int64_t b = 0; b < ceil_div((int)pr, FP8_BLOCK); b++)
                for (int c = 0; c < L; c++)
                    scale[(size_t)(row0 / FP8_BLOCK + b) * sld + c] =
                        model_scale_at(p->scale, (size_t)b * L + c);
        } else {
            for (int64_t r = 0; r < pr; r++)
                for (int c = 0; c < L; c++)
                    scale[(size_t)(row0 + r) * sld + c] =
                        model_scale_at(p->scale, (size_t)(r / prb) * L + c);
        }
        row0 += pr;
    }
    if (!(dst = dev_zalloc(cu, (size_t)M * K, name, err)) ||
        !(out->scale = dev_zalloc(cu, scale_elems * sizeof(float), "fp8 scales", err))) {
        rc = cu->dead ? -EIO : -ENOMEM;
        goto fail;
    }
    out->data = dst;
    out->dtype = DT_F8_E4M3;
    out->rows = M;
    out->cols = K;
    out->scale_cols = sld;
    out->scale_block = rowwise ? K : (int)cb;
    out->scale_row_block = rb;
    out->input_scale = nstatic ? out->scale + scale_elems - 4 : NULL;
    row0 = 0;
    for (int i = 0; i < nparts; i++) {
        size_t bytes = (size_t)parts[i].shape[0] * K;

        if ((rc = h2d(cu, dst + row0 * K, parts[i].data, bytes)))
            goto fail;
        row0 += parts[i].shape[0];
    }
    if ((rc = h2d(cu, (void *)out->scale, scale, scale_elems * sizeof(float))))
        goto fail;
    free(scale);
    scale = NULL;
    if ((rc = grow_workspace(cu, M, K, err)))
        goto fail;
    {
        enum fp8_mode m = weight_mode(out);

        if (m == FP8_W8A16 || K % 16 || M % 4 || cu->fp8.force_w8a16)
            LOG(LL_WARN, "cuda", "%s: fp8 [%d, %d] with %lldx%lld scale blocks runs on osprey's "
                "W8A16 kernel (slower): cuBLASLt's scaled FP8 GEMM takes 128x128 blocks or one "
                "scale a row, K a multiple of 16, rows a multiple of 4%s", name, M, K,
                (long long)parts[0].scale_block[0], (long long)cb,
                cu->fp8.force_w8a16 ? " (TEST_OSPREY_CUDA_FP8=w8a16)" : "");
        else
            LOG(LL_DEBUG, "cuda", "%s: fp8 [%d, %d] on %s%s", name, M, K, mode_name(m),
                out->input_scale ? ", static activation scale" : "");
    }
    return 0;
fail:
    free(scale);
    cudaFree(dst);
    cudaFree((void *)out->scale);
    memset(out, 0, sizeof *out);
    return rc;
}

/* ---- plans ---- */

static void plan_clear(struct fp8_plan *p)
{
    if (p->ld)
        cublasLtMatrixLayoutDestroy(p->ld);
    if (p->lb)
        cublasLtMatrixLayoutDestroy(p->lb);
    if (p->la)
        cublasLtMatrixLayoutDestroy(p->la);
    if (p->desc)
        cublasLtMatmulDescDestroy(p->desc);
    memset(p, 0, sizeof *p);
}

/* Descriptors for D[m, n] = scale_A scale_B · op(A) B in cuBLAS's column-major terms: A is
 * the weight as stored ([k, m], K-major, transposed: FP8 wants "TN"), B the quantized
 * activations ([k, n], K-major), D the output ([m, n], m contiguous = row-major [n, m]).
 * Scale pointers are set per call (set_pointers); these are placeholders for the heuristic.
 * Returns 0, or -EIO for a cuBLASLt error (the plan is then cleared). */
static int plan_build(struct backend_cuda *cu, struct fp8_plan *p, const void *a_scale,
                      const void *bias)
{
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    int32_t sa = p->mode == FP8_BLOCK128 ? CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F
                                         : CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F;
    int32_t sb = p->mode == FP8_BLOCK128 ? CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F
                                         : CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F;
    cudaDataType_t dt = p->out_f32 ? CUDA_R_32F : CUDA_R_16BF, bias_type = CUDA_R_16BF;
    cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulHeuristicResult_t heur;
    size_t ws = CUDA_BLAS_WORKSPACE_BYTES;
    uint32_t align = 16;       /* tails and views start 16-byte aligned, not 256 */
    const void *b_scale = cu->fp8.act_scale;
    int found = 0, rc = -EIO;

    if (CUDA_OK(cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F)) &&
        CUDA_OK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta)) &&
        CUDA_OK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb)) &&
        CUDA_OK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &sa, sizeof sa)) &&
        CUDA_OK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &sb, sizeof sb)) &&
        CUDA_OK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER,
                                               &a_scale, sizeof a_scale)) &&
        CUDA_OK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER,
                                               &b_scale, sizeof b_scale)) &&
        (!p->bias ||
         (CUDA_OK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi)) &&
          CUDA_OK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                                 sizeof bias)) &&
          CUDA_OK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
                                                 &bias_type, sizeof bias_type)))) &&
        CUDA_OK(cublasLtMatrixLayoutCreate(&p->la, CUDA_R_8F_E4M3, p->k, p->m, p->k)) &&
        CUDA_OK(cublasLtMatrixLayoutCreate(&p->lb, CUDA_R_8F_E4M3, p->k, p->n, p->k)) &&
        CUDA_OK(cublasLtMatrixLayoutCreate(&p->ld, dt, p->m, p->n, p->m)) &&
        CUDA_OK(cublasLtMatmulPreferenceCreate(&pref)) &&
        CUDA_OK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                     &ws, sizeof ws)) &&
        CUDA_OK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                                     &align, sizeof align)) &&
        CUDA_OK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                                     &align, sizeof align)) &&
        CUDA_OK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                                     &align, sizeof align)) &&
        CUDA_OK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                                     &align, sizeof align))) {
        /* An unsupported combination is an answer (NOT_SUPPORTED, or no result), not an
         * error: the caller falls back. */
        cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(cu->lt, p->desc, p->la, p->lb, p->ld,
                                                           p->ld, pref, 1, &heur, &found);
        rc = 0;
        p->ok = st == CUBLAS_STATUS_SUCCESS && found > 0 && heur.state == CUBLAS_STATUS_SUCCESS;
        if (p->ok)
            p->algo = heur.algo;
    }
    if (pref)
        cublasLtMatmulPreferenceDestroy(pref);
    if (rc) {
        plan_clear(p);
        return cuda__status(cu, -EIO);
    }
    return 0;
}

/* The cached plan for this key, built on first use; NULL only on a cuBLASLt error (-EIO
 * in *rc). A plan with ok == false means: no algorithm, fall back. A full table replaces a
 * slot, never `keep` (the other plan of the same product). */
static struct fp8_plan *plan_get(struct backend_cuda *cu, int mode, int m, int k, int n,
                                 bool out_f32, bool bias, const void *a_scale,
                                 const void *bias_ptr, const struct fp8_plan *keep, int *rc)
{
    struct cuda_fp8_state *f = &cu->fp8;
    uint64_t h = ((((uint64_t)mode * 1000003u + m) * 1000003u + k) * 1000003u + n) * 4u +
                 out_f32 * 2u + bias;
    struct fp8_plan *slot = NULL;

    *rc = 0;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    for (int i = 0; i < FP8_PLAN_PROBES; i++) {
        struct fp8_plan *p = &f->plans[(h + i) % FP8_PLAN_SLOTS];

        if (p->m == m && p->mode == mode && p->k == k && p->n == n && p->out_f32 == out_f32 &&
            p->bias == bias)
            return p;
        if (!slot && p->m == 0)
            slot = p;
    }
    if (!slot) {   /* full: replace the home slot (or the next, when it is keep) */
        slot = &f->plans[h % FP8_PLAN_SLOTS];
        if (slot == keep)
            slot = &f->plans[(h + 1) % FP8_PLAN_SLOTS];
        plan_clear(slot);
    }
    *slot = (struct fp8_plan){ .mode = mode, .m = m, .k = k, .n = n, .out_f32 = out_f32,
                               .bias = bias };
    if ((*rc = plan_build(cu, slot, a_scale, bias_ptr))) {
        memset(slot, 0, sizeof *slot);
        return NULL;
    }
    if (!slot->ok)
        LOG(LL_WARN, "cuda", "cuBLASLt has no fp8 GEMM for %s, m %d k %d n %d%s%s: falling back",
            mode_name(mode), m, k, n, bias ? " +bias" : "", out_f32 ? " f32 out" : "");
    return slot;
}

/* One scaled product: D[n, m] = act rows [b_off..] x weight, scales at b_scale. */
static int plan_run(struct backend_cuda *cu, struct fp8_plan *p, void *d, const void *a,
                    const void *a_scale, const void *b, const void *b_scale, const void *bias)
{
    float alpha = 1.0f, beta = 0.0f;

    if (!CUDA_OK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER,
                                                &a_scale, sizeof a_scale)) ||
        !CUDA_OK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER,
                                                &b_scale, sizeof b_scale)) ||
        (p->bias && !CUDA_OK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                            &bias, sizeof bias))) ||
        !CUDA_OK(cublasLtMatmul(cu->lt, p->desc, &alpha, a, p->la, b, p->lb, &beta, d, p->ld, d,
                                p->ld, &p->algo, cu->blas_workspace, CUDA_BLAS_WORKSPACE_BYTES,
                                cu->stream)))
        return cuda__status(cu, -EIO);
    return 0;
}

static struct cuda_fp8_weight kernel_weight(const struct bk_weight *w)
{
    return (struct cuda_fp8_weight){
        .w = w->data, .scale = w->scale, .rows = w->rows, .cols = w->cols,
        .row_block = MAX(w->scale_row_block, 1), .col_block = w->scale_block,
        .scale_ld = w->scale_cols, .input_scale = w->input_scale,
    };
}

static int run_w8a16(struct backend_cuda *cu, void *out, bool out_f32, const void *x,
                     const struct bk_weight *w, const struct bk_weight *bias, int n)
{
    struct cuda_fp8_weight kw = kernel_weight(w);

    cu->fp8.num_w8a16++;
    return cuda__status(cu, fp8_w8a16_gemm_cuda(out, out_f32, x, &kw, bias ? bias->data : NULL,
                                                n, cu->stream));
}

/* How one product runs: its plans (lead: rows [0, n_main) straight into out; tail: the last
 * n - n_main rows padded to 4, through tail_out), and whether the bias needs its own pass. */
struct fp8_route {
    struct fp8_plan *lead, *tail;
    int n_main, n_pad;
    bool bias_add;
};

/* Plans for n rows, as one product (split false) or as rows of 4 plus a padded tail. Returns
 * 0 with r->lead / r->tail set (either NULL when it has no rows), 1 when cuBLASLt has no
 * algorithm for some part, or -EIO. The bias goes through the epilogue where an algorithm
 * has it, else through one bias-add pass over all rows. */
static int route(struct backend_cuda *cu, struct fp8_route *r, enum fp8_mode mode,
                 const struct bk_weight *w, const void *bias, int n, bool out_f32, bool split)
{
    int M = w->rows, K = w->cols, rc = 0;

    memset(r, 0, sizeof *r);
    r->n_main = split ? n / 4 * 4 : n;
    r->n_pad = r->n_main + (n > r->n_main ? 4 : 0);
    for (int with_bias = bias != NULL; with_bias >= 0; with_bias--) {
        r->lead = r->tail = NULL;
        r->bias_add = bias && !with_bias;
        if (r->n_main > 0 &&
            !(r->lead = plan_get(cu, mode, M, K, r->n_main, out_f32, with_bias, w->scale,
                                 with_bias ? bias : NULL, NULL, &rc)))
            return rc;
        if (r->n_pad > r->n_main &&
            !(r->tail = plan_get(cu, mode, M, K, 4, out_f32, with_bias, w->scale,
                                 with_bias ? bias : NULL, r->lead, &rc)))
            return rc;
        if ((!r->lead || r->lead->ok) && (!r->tail || r->tail->ok))
            return 0;
        if (!bias)
            break;
    }
    return 1;
}

int cuda__fp8_gemm(struct backend_cuda *cu, void *out, bool out_f32, const void *x,
                   const struct bk_weight *w, const struct bk_weight *bias, int n)
{
    struct cuda_fp8_state *f = &cu->fp8;
    enum fp8_mode mode = weight_mode(w);
    int M = w->rows, K = w->cols, L = mode == FP8_BLOCK128 ? ceil_div(K, FP8_BLOCK) : 1, rc;
    size_t esize = out_f32 ? 4 : 2;
    const void *bias_ptr = bias ? bias->data : NULL;
    struct fp8_route r;
    struct cuda_fp8_act act;

    if (cu->dead)
        return -EIO;
    if (!w->data || !w->scale || n < 0 || n > MAX(cu->opt.max_tokens, 1) || K > f->max_k ||
        M > f->max_rows || (bias && (out_f32 || bias->dtype != DT_BF16 ||
                                      bias->rows * bias->cols != M)))
        return -EINVAL;
    if (n == 0)
        return 0;
    if (f->force_w8a16)
        return run_w8a16(cu, out, out_f32, x, w, bias, n);
    /* Decode-sized products stream the weights through our GEMV (half the bytes of bf16's,
     * no activation quantization); it declines shapes it cannot vectorize. */
    if (n <= f->gemv_max) {
        struct cuda_fp8_weight kw = kernel_weight(w);

        rc = fp8_gemv_cuda(out, out_f32, x, &kw, bias ? bias->data : NULL, n, cu->stream);
        if (rc != -EINVAL) {
            f->num_gemv += rc == 0;
            return cuda__status(cu, rc);
        }
    }
    if (mode == FP8_W8A16 || K % 16 || M % 4)
        return run_w8a16(cu, out, out_f32, x, w, bias, n);
    /* The plans first: a shape without an algorithm falls back before anything launches.
     * Block scaling always runs in rows of 4 (its scale layouts want N % 4 == 0); per-row
     * scaling runs as one product, else in rows of 4 too, else on the W8A16 kernel. */
    rc = route(cu, &r, mode, w, bias_ptr, n, out_f32, mode == FP8_BLOCK128 || f->split_rows);
    if (rc == 1 && mode == FP8_ROWWISE && !f->split_rows && n % 4)
        rc = route(cu, &r, mode, w, bias_ptr, n, out_f32, true);
    if (rc == 1)
        return run_w8a16(cu, out, out_f32, x, w, bias, n);
    if (rc)
        return rc;
    {
        enum cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;

        if (!CUDA_OK(cudaStreamIsCapturing(cu->stream, &cs)))
            return cuda__status(cu, -EIO);
        f->captured |= cs != cudaStreamCaptureStatusNone;
    }
    f->num_cublaslt++;
    act = (struct cuda_fp8_act){ .q = f->act_q, .scale = f->act_scale, .n = n,
                                 .n_main = r.n_main, .n_pad = r.n_pad, .k = K,
                                 .group = mode == FP8_BLOCK128 ? FP8_BLOCK : 0,
                                 .static_scale = mode == FP8_ROWWISE ? w->input_scale : NULL };
    if ((rc = cuda__status(cu, fp8_quantize_act_cuda(&act, x, cu->stream))))
        return rc;
    if (r.lead && (rc = plan_run(cu, r.lead, out, w->data, w->scale, f->act_q, f->act_scale,
                                 bias_ptr)))
        return rc;
    if (r.tail) {
        if ((rc = plan_run(cu, r.tail, f->tail_out, w->data, w->scale,
                           f->act_q + (size_t)r.n_main * K, f->act_scale + (size_t)L * r.n_main,
                           bias_ptr)))
            return rc;
        if (!CUDA_OK(cudaMemcpyAsync((char *)out + (size_t)r.n_main * M * esize, f->tail_out,
                                     (size_t)(n - r.n_main) * M * esize,
                                     cudaMemcpyDeviceToDevice, cu->stream)))
            return cuda__status(cu, -EIO);
    }
    if (r.bias_add)
        return cuda__status(cu, bias_add_cuda(out, bias->data, n, M, cu->stream));
    return 0;
}

void backend_cuda_fp8_counts(struct backend *be, long *cublaslt, long *gemv, long *w8a16)
{
    *cublaslt = cuda__of(be)->fp8.num_cublaslt;
    *gemv = cuda__of(be)->fp8.num_gemv;
    *w8a16 = cuda__of(be)->fp8.num_w8a16;
}

int cuda__fp8_init(struct backend_cuda *cu, char *err)
{
    /* diagnostics for tests and benchmarks: which path runs (not OSPREY_ options: the
     * config loader reads that prefix as the daemon's flags) */
    const char *env = getenv("TEST_OSPREY_CUDA_FP8");
    const char *gemv = getenv("TEST_OSPREY_CUDA_FP8_GEMV_MAX");

    cu->fp8.force_w8a16 = env && !strcmp(env, "w8a16");
    cu->fp8.split_rows = env && !strcmp(env, "split");
    /* cuBLASLt from gemv_max + 1 rows up; "lt" and "split" test its small-n paths */
    cu->fp8.gemv_max = env && (!strcmp(env, "lt") || !strcmp(env, "split")) ? 0
                     : gemv ? atoi(gemv) : FP8_GEMV_MAX;
    if (!(cu->fp8.plans = calloc(FP8_PLAN_SLOTS, sizeof *cu->fp8.plans))) {
        errf(err, "cuda: out of memory for the fp8 GEMM plans");
        return -ENOMEM;
    }
    if (!(cu->fp8.absmax = dev_zalloc(cu, sizeof(float), "the absmax result", err)))
        return cu->dead ? -EIO : -ENOMEM;
    return 0;
}

void cuda__fp8_fini(struct backend_cuda *cu)
{
    struct cuda_fp8_state *f = &cu->fp8;

    for (int i = 0; f->plans && i < FP8_PLAN_SLOTS; i++)
        plan_clear(&f->plans[i]);
    free(f->plans);
    cudaFree(f->act_q);
    cudaFree(f->act_scale);
    cudaFree(f->tail_out);
    cudaFree(f->absmax);
    memset(f, 0, sizeof *f);
}

/* --calculate-kv-scales: a device reduction, then a synchronous copy of its one float. It
 * runs in the first prefill, which is eager, never inside a capture. */
int cuda__absmax(struct backend *be, float *out, const void *x, int stride, int rows, int cols)
{
    struct backend_cuda *cu = cuda__of(be);
    int rc;

    if ((rc = cuda__enter(cu)))   /* -EIO when dead; binds this thread to the device */
        return rc;
    if ((rc = cuda__status(cu, absmax_cuda(cu->fp8.absmax, x, stride, rows, cols, cu->stream))))
        return rc;
    if (!CUDA_OK(cudaMemcpyAsync(out, cu->fp8.absmax, sizeof *out, cudaMemcpyDeviceToHost,
                                 cu->stream)) ||
        !CUDA_OK(cudaStreamSynchronize(cu->stream)))
        return cuda__status(cu, -EIO);
    return 0;
}
