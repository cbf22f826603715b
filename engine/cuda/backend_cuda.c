/* backend_cuda.c — the CUDA backend's vtable: device memory, weights (uploaded as bf16, or
 * kept e4m3 with their scales for fp8: cuda_fp8_gemm.c),
 * one stream, one cuBLAS handle with one fixed workspace (a graph capture never
 * allocates), and the ops, each a thin wrapper over a kernel launcher of kernels/ or a
 * cuBLAS product. Staging and sampling are in cuda_stage.c, graphs in cuda_graph.c. Any
 * device error marks the backend dead: from then on every op returns -EIO and the engine
 * stops (the daemon's version of an abort, STYLE.md "CUDA errors"). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/cuda/backend_cuda.h"
#include "kernels/cuda_check.h"
#include "engine/cuda/cuda_internal.h"
#include "engine/base/log.h"
#include "engine/base/util.h"

#define CONVERT_CHUNK ((size_t)1 << 22)   /* elements converted to bf16 per host pass */
/* bf16 products of up to this many rows run our GEMV (kernels/gemv.cu), not cuBLAS: decode
 * steps of one token, whose small products cuBLAS's GEMV reads at well below the copy
 * bandwidth (issue 13). backend_cuda_set_gemv_max changes it for tests and benchmarks. */
#define BF16_GEMV_MAX 1

void *backend_cuda_stream(struct backend *be)
{
    return (void *)((struct backend_cuda *)be)->stream;
}

int backend_cuda_set_gemv_max(struct backend *be, int max_n)
{
    struct backend_cuda *cu = cuda__of(be);
    int prev = cu->gemv_max;

    if (max_n >= 0)
        cu->gemv_max = max_n;
    return prev;
}

long backend_cuda_gemv_count(struct backend *be)
{
    return cuda__of(be)->num_gemv;
}

void backend_cuda_graphs_free(struct backend *be)
{
    struct backend_cuda *cu = cuda__of(be);

    if (cudaSetDevice(cu->device) != cudaSuccess)
        (void)cudaGetLastError();
    if (cu->stream)
        (void)cudaStreamSynchronize(cu->stream);   /* no replay still running */
    cuda__graphs_free(cu);
}

int cuda_device_count(void)
{
    int n = 0;

    /* no driver or no device is an answer, not an error; clear it so that nothing later
     * reads it as the result of another call */
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return n;
}

/* ---- memory ---- */

static void *cu_alloc(struct backend *be, size_t bytes, char *err)
{
    struct backend_cuda *cu = cuda__of(be);
    void *p = NULL;
    size_t free_b = 0, total_b = 0;

    if (cuda__enter(cu)) {
        errf(err, "cuda: the device failed earlier; cannot allocate");
        return NULL;
    }
    if (cudaMalloc(&p, bytes ? bytes : 1) != cudaSuccess) {
        (void)cudaGetLastError();   /* out of memory is not sticky */
        cudaMemGetInfo(&free_b, &total_b);
        errf(err, "cuda: out of device memory allocating %zu MiB (%zu of %zu MiB free) "
             "---> HINT: lower num_blocks / max_model_len / max_num_seqs", bytes >> 20,
             free_b >> 20, total_b >> 20);
        return NULL;
    }
    if (!CUDA_OK(cudaMemsetAsync(p, 0, bytes, cu->stream)) ||
        !CUDA_OK(cudaStreamSynchronize(cu->stream))) {
        cudaFree(p);
        cuda__status(cu, -EIO);
        errf(err, "cuda: clearing %zu bytes of new device memory failed", bytes);
        return NULL;
    }
    return p;
}

static void cu_free(struct backend *be, void *p)
{
    if (!p)
        return;
    /* bound even when dead: the memory is freed in the device's context all the same */
    if (cudaSetDevice(cuda__of(be)->device) != cudaSuccess)
        (void)cudaGetLastError();
    CUDA_OK(cudaFree(p));
}

static int cu_mem_info(struct backend *be, size_t *free_bytes, size_t *total_bytes)
{
    struct backend_cuda *cu = cuda__of(be);

    if (cuda__enter(cu))
        return -EIO;
    if (!CUDA_OK(cudaMemGetInfo(free_bytes, total_bytes)))
        return cuda__status(cu, -EIO);
    return 0;
}

/* Synchronous copies, ordered after everything already on the stream. */
static int cu_copy(struct backend_cuda *cu, void *dst, const void *src, size_t bytes,
                   enum cudaMemcpyKind kind)
{
    if (cuda__enter(cu))
        return -EIO;
    if (bytes == 0)
        return 0;
    if (!CUDA_OK(cudaMemcpyAsync(dst, src, bytes, kind, cu->stream)) ||
        !CUDA_OK(cudaStreamSynchronize(cu->stream)))
        return cuda__status(cu, -EIO);
    return 0;
}

static int cu_upload(struct backend *be, void *dst, const void *src, size_t bytes)
{
    return cu_copy(cuda__of(be), dst, src, bytes, cudaMemcpyHostToDevice);
}

static int cu_download(struct backend *be, void *dst, const void *src, size_t bytes)
{
    return cu_copy(cuda__of(be), dst, src, bytes, cudaMemcpyDeviceToHost);
}

/* ---- weights: every part becomes bf16, rows stacked ---- */

static int part_shape(const struct tensor_ref *t, int64_t *rows, int64_t *cols, char *err)
{
    int64_t r = t->ndim >= 1 ? t->shape[0] : 0, c = t->ndim == 2 ? t->shape[1] : 1;

    if (!t->data || (t->ndim != 1 && t->ndim != 2) || r <= 0 || c <= 0 || r > INT32_MAX ||
        c > INT32_MAX || (t->dtype != DT_BF16 && t->dtype != DT_F16 && t->dtype != DT_F32 &&
                          t->dtype != DT_F8_E4M3) ||
        (size_t)(r * c) * dtype_size(t->dtype) > t->nbytes) {
        errf(err, "cuda: tensor %s: cannot upload (ndim %d, shape [%lld, %lld], %s, %zu bytes)",
             t->name ? t->name : "?", t->ndim, (long long)r, (long long)c,
             dtype_name(t->dtype), t->nbytes);
        return -EINVAL;
    }
    *rows = r;
    *cols = c;
    return 0;
}

/* Copies count elements of a part to dst (bf16, device), converting on the host in chunks. */
static int upload_part(struct backend_cuda *cu, uint16_t *dst, const struct tensor_ref *t,
                       size_t count, uint16_t *buf)
{
    if (t->dtype == DT_BF16)
        return cu_copy(cu, dst, t->data, count * 2, cudaMemcpyHostToDevice);
    for (size_t i0 = 0; i0 < count; i0 += CONVERT_CHUNK) {
        size_t n = MIN(CONVERT_CHUNK, count - i0);
        int rc;

        for (size_t i = 0; i < n; i++)
            buf[i] = t->dtype == DT_F32 ? f32_to_bf16(((const float *)t->data)[i0 + i])
                                        : f32_to_bf16(f16_to_f32(((const uint16_t *)t->data)[i0 + i]));
        if ((rc = cu_copy(cu, dst + i0, buf, n * 2, cudaMemcpyHostToDevice)))
            return rc;
    }
    return 0;
}

static int cu_upload_weight(struct backend *be, struct bk_weight *out,
                            const struct tensor_ref *parts, int nparts, char *err)
{
    struct backend_cuda *cu = cuda__of(be);
    int64_t rows = 0, cols = 0;
    bool convert = false, fp8 = false;
    uint16_t *dst, *buf = NULL;
    int rc = 0;

    memset(out, 0, sizeof *out);
    if (nparts < 1)
        return -EINVAL;
    for (int i = 0; i < nparts; i++) {
        int64_t r, c;

        if ((rc = part_shape(&parts[i], &r, &c, err)))
            return rc;
        if (i > 0 && c != cols) {
            errf(err, "cuda: tensor %s has %lld columns, %s has %lld: cannot stack them",
                 parts[i].name ? parts[i].name : "?", (long long)c,
                 parts[0].name ? parts[0].name : "?", (long long)cols);
            return -EINVAL;
        }
        cols = c;
        rows += r;
        convert |= parts[i].dtype != DT_BF16;
        fp8 |= parts[i].dtype == DT_F8_E4M3;
    }
    if (rows > INT32_MAX)
        return -EINVAL;
    if (fp8)   /* stays e4m3 with its scales: cuda_fp8_gemm.c */
        return cuda__fp8_upload(cu, out, parts, nparts, rows, cols, err);
    if (!(dst = cu_alloc(be, (size_t)rows * cols * 2, err)))
        return cu->dead ? -EIO : -ENOMEM;
    if (convert && !(buf = malloc(CONVERT_CHUNK * sizeof *buf))) {
        cu_free(be, dst);
        errf(err, "cuda: out of host memory converting %s", parts[0].name ? parts[0].name : "?");
        return -ENOMEM;
    }
    *out = (struct bk_weight){ .data = dst, .dtype = DT_BF16, .rows = (int)rows, .cols = (int)cols };
    for (int i = 0; i < nparts && !rc; i++) {
        size_t count = (size_t)parts[i].shape[0] * cols;

        rc = upload_part(cu, dst, &parts[i], count, buf);
        dst += count;
    }
    free(buf);
    if (rc) {
        errf(err, "cuda: uploading %s failed", parts[0].name ? parts[0].name : "?");
        cu_free(be, out->data);
        memset(out, 0, sizeof *out);
    }
    return rc;
}

static void cu_free_weight(struct backend *be, struct bk_weight *w)
{
    cu_free(be, w->data);
    cu_free(be, (void *)w->scale);   /* fp8 weights' scales; NULL otherwise */
    memset(w, 0, sizeof *w);
}

/* ---- ops ---- */

static bool is_bf16(const struct bk_weight *w)
{
    return w && w->data && w->dtype == DT_BF16;
}

static int cu_embedding(struct backend *be, void *x, const int32_t *ids,
                        const struct bk_weight *table, int n)
{
    struct backend_cuda *cu = cuda__of(be);

    if (cuda__enter(cu))
        return -EIO;
    if (!is_bf16(table))
        return -EINVAL;
    return cuda__status(cu, embedding_cuda(x, ids, table->data, table->rows, table->cols, n,
                                           cu->stream));
}

static int cu_rmsnorm(struct backend *be, void *out, void *residual, const void *x,
                      const struct bk_weight *w, int n, float eps)
{
    struct backend_cuda *cu = cuda__of(be);

    if (cuda__enter(cu))
        return -EIO;
    if (!is_bf16(w))
        return -EINVAL;
    return cuda__status(cu, rmsnorm_cuda(out, residual, x, w->data, n, w->rows * w->cols, eps,
                                         cu->stream));
}

/* out[n, w.rows] (bf16 or f32) = x[n, w.cols] · wᵀ (+ bias): up to gemv_max rows on our
 * GEMV, else cuBLAS column-major, so outᵀ[w.rows, n] = W[w.rows, w.cols] (stored as its
 * transpose) · xᵀ. With a bias the cuBLAS product goes through cuBLASLt's bias epilogue
 * (cuda_gemm_bias.c). */
int cuda__gemm(struct backend_cuda *cu, void *out, cudaDataType_t out_type, const void *x,
               const struct bk_weight *w, const struct bk_weight *bias, int n)
{
    float alpha = 1.0f, beta = 0.0f;

    if (cuda__enter(cu))
        return -EIO;
    if (w && w->dtype == DT_F8_E4M3)
        return cuda__fp8_gemm(cu, out, out_type == CUDA_R_32F, x, w, bias, n);
    if (!is_bf16(w) || n < 0 || (bias && (!is_bf16(bias) || bias->rows * bias->cols != w->rows ||
                                          out_type != CUDA_R_16BF)))
        return -EINVAL;
    if (n == 0)
        return 0;
    /* Decode-sized products on our GEMV (bias included); it declines the shapes it cannot
     * stream 16 bytes at a time (cols % 8, unaligned x), which cuBLAS takes. */
    if (n <= cu->gemv_max) {
        int rc = bf16_gemv_cuda(out, out_type == CUDA_R_32F, x, w->data, bias ? bias->data : NULL,
                                w->rows, w->cols, n, cu->stream);

        if (rc != -EINVAL) {
            cu->num_gemv += rc == 0;
            return cuda__status(cu, rc);
        }
    }
    if (bias)
        return cuda__gemm_bias(cu, out, x, w, bias, n);
    if (!CUDA_OK(cublasGemmEx(cu->blas, CUBLAS_OP_T, CUBLAS_OP_N, w->rows, n, w->cols, &alpha,
                              w->data, CUDA_R_16BF, w->cols, x, CUDA_R_16BF, w->cols, &beta,
                              out, out_type, w->rows, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT)))
        return cuda__status(cu, -EIO);
    return 0;
}

static int cu_matmul(struct backend *be, void *out, const void *x, const struct bk_weight *w,
                     const struct bk_weight *bias, int n)
{
    return cuda__gemm(cuda__of(be), out, CUDA_R_16BF, x, w, bias, n);
}

static int cu_lm_head(struct backend *be, float *logits, const void *x, const struct bk_weight *w,
                      int n)
{
    return cuda__gemm(cuda__of(be), logits, CUDA_R_32F, x, w, NULL, n);
}

static int cu_head_rmsnorm(struct backend *be, void *x, int stride, int heads, int head_dim,
                           const struct bk_weight *w, int n, float eps)
{
    struct backend_cuda *cu = cuda__of(be);

    if (cuda__enter(cu))
        return -EIO;
    if (!is_bf16(w) || w->rows * w->cols != head_dim)
        return -EINVAL;
    return cuda__status(cu, head_rmsnorm_cuda(x, stride, heads, head_dim, w->data, n, eps,
                                              cu->stream));
}

static int cu_rope(struct backend *be, void *q, void *k, const int32_t *positions, int n,
                   const struct rope_params *p)
{
    struct backend_cuda *cu = cuda__of(be);
    struct cuda_rope_params kp = cuda__rope_params(p);

    if (cuda__enter(cu))
        return -EIO;
    return cuda__status(cu, rope_cuda(q, k, positions, n, &kp, cu->stream));
}

static int cu_cache_update(struct backend *be, const void *k, const void *v, int kv_stride,
                           const int64_t *slot_mapping, int n, void *k_cache, void *v_cache,
                           const struct cache_layout *l)
{
    struct backend_cuda *cu = cuda__of(be);
    struct cuda_cache_layout kl;

    if (cuda__enter(cu))
        return -EIO;
    if (cuda__cache_layout(&kl, l))
        return -EINVAL;
    return cuda__status(cu, cache_update_cuda(k, v, kv_stride, slot_mapping, n, k_cache, v_cache,
                                              &kl, cu->stream));
}

static int cu_rope_cache_update(struct backend *be, void *q, void *k, const void *v,
                                const int32_t *positions, const int64_t *slot_mapping, int n,
                                const struct rope_params *p, void *k_cache, void *v_cache,
                                const struct cache_layout *l)
{
    struct backend_cuda *cu = cuda__of(be);
    struct cuda_rope_params kp = cuda__rope_params(p);
    struct cuda_cache_layout kl;

    if (cuda__enter(cu))
        return -EIO;
    if (cuda__cache_layout(&kl, l))
        return -EINVAL;
    return cuda__status(cu, rope_cache_update_cuda(q, k, v, positions, slot_mapping, n, &kp,
                                                   k_cache, v_cache, &kl, cu->stream));
}

static int cu_attention(struct backend *be, void *out, const void *q, int q_stride,
                        const void *k_cache, const void *v_cache, const struct bk_batch *b,
                        int group, const struct attn_params *p)
{
    struct backend_cuda *cu = cuda__of(be);
    struct cuda_attn_params kp;
    struct cuda_attn_batch kb;

    if (cuda__enter(cu))
        return -EIO;
    if (cuda__attn_params(&kp, p) || cuda__attn_batch(&kb, b, group))
        return -EINVAL;
    return cuda__status(cu, attention_cuda(out, q, q_stride, k_cache, v_cache, &kb, &kp,
                                           &cu->attn, cu->stream));
}

static int cu_silu_mul(struct backend *be, void *out, const void *gate_up, int n, int ffn)
{
    struct backend_cuda *cu = cuda__of(be);

    if (cuda__enter(cu))
        return -EIO;
    return cuda__status(cu, silu_mul_cuda(out, gate_up, n, ffn, cu->stream));
}

static int cu_gelu_tanh_mul(struct backend *be, void *out, const void *gate_up, int n, int ffn)
{
    struct backend_cuda *cu = cuda__of(be);

    if (cuda__enter(cu))
        return -EIO;
    return cuda__status(cu, gelu_tanh_mul_cuda(out, gate_up, n, ffn, cu->stream));
}

static int cu_scale(struct backend *be, void *x, int n, int dim, float s)
{
    struct backend_cuda *cu = cuda__of(be);

    if (cuda__enter(cu))
        return -EIO;
    return cuda__status(cu, scale_cuda(x, (size_t)n * dim, s, cu->stream));
}

static int cu_softcap(struct backend *be, float *logits, int n, int vocab, float cap)
{
    struct backend_cuda *cu = cuda__of(be);

    if (cuda__enter(cu))
        return -EIO;
    return cuda__status(cu, softcap_cuda(logits, (size_t)n * vocab, cap, cu->stream));
}

static int cu_gather_rows(struct backend *be, void *out, const void *x, const int32_t *rows,
                          int n, int dim)
{
    struct backend_cuda *cu = cuda__of(be);

    if (cuda__enter(cu))
        return -EIO;
    return cuda__status(cu, gather_rows_cuda(out, x, rows, n, dim, cu->stream));
}

/* ---- lifetime ---- */

static void cu_destroy(struct backend *be)
{
    struct backend_cuda *cu = cuda__of(be);

    if (cudaSetDevice(cu->device) != cudaSuccess)
        (void)cudaGetLastError();   /* a device that never opened: nothing of it to free */
    if (cu->stream)
        cudaStreamSynchronize(cu->stream);
    cuda__graphs_free(cu);
    cuda__stage_fini(cu);
    cuda__fp8_fini(cu);
    cudaFree(cu->sample_work);
    cudaFree(cu->sample_counts);
    cudaFree(cu->results);
    cudaFreeHost(cu->results_host);
    cudaFree(cu->attn.partial);
    if (cu->blas)
        cublasDestroy(cu->blas);
    if (cu->lt)
        cublasLtDestroy(cu->lt);
    cudaFree(cu->blas_workspace);
    if (cu->stream)
        cudaStreamDestroy(cu->stream);
    free(cu);
}

static const struct backend_ops cuda_ops = {
    .name = "cuda",
    .act_dtype = DT_BF16,
    .rope_ext = true,
    .attn_sinks = true,        /* kernels/attention*.cu fold the sink into the denominator */
    .moe_oai = true,           /* kernels/moe.cu: router and expert biases, clamped SwiGLU */
    .destroy = cu_destroy,
    .alloc = cu_alloc,
    .free = cu_free,
    .mem_info = cu_mem_info,
    .upload = cu_upload,
    .download = cu_download,
    .upload_weight = cu_upload_weight,
    .free_weight = cu_free_weight,
    .stage = cuda__stage,
    .mask_rows = cuda__mask_rows,
    .stage_masks = cuda__stage_masks,
    .busy = cuda__busy,
    .embedding = cu_embedding,
    .rmsnorm = cu_rmsnorm,
    .matmul = cu_matmul,
    .head_rmsnorm = cu_head_rmsnorm,
    .rope = cu_rope,
    .cache_update = cu_cache_update,
    .attention = cu_attention,
    .silu_mul = cu_silu_mul,
    .gelu_tanh_mul = cu_gelu_tanh_mul,
    .scale = cu_scale,
    .softcap = cu_softcap,
    .gather_rows = cu_gather_rows,
    .moe = cuda__moe,
    .moe_work_bytes = cuda__moe_work_bytes,
    .lm_head = cu_lm_head,
    .sample = cuda__sample,
    .fetch_results = cuda__fetch_results,
    .rope_cache_update = cu_rope_cache_update,
    .absmax = cuda__absmax,
    .graph_capture = cuda__graph_capture,
    .graph_replay = cuda__graph_replay,
};

/* cudaMalloc that names what failed in err. */
static bool dev_alloc(void **p, size_t bytes, const char *what, char *err)
{
    if (cudaMalloc(p, bytes ? bytes : 1) == cudaSuccess)
        return true;
    (void)cudaGetLastError();
    *p = NULL;
    errf(err, "cuda: out of device memory for %s (%zu MiB)", what, bytes >> 20);
    return false;
}

static int init_device(struct backend_cuda *cu, char *err)
{
    struct cudaDeviceProp prop;
    int count = cuda_device_count();

    if (cu->opt.device < 0 || cu->opt.device >= count) {
        errf(err, "cuda: device %d does not exist (%d found)", cu->opt.device, count);
        return -ENODEV;
    }
    if (!CUDA_OK(cudaSetDevice(cu->opt.device)) ||
        !CUDA_OK(cudaGetDeviceProperties(&prop, cu->opt.device))) {
        errf(err, "cuda: cannot open device %d", cu->opt.device);
        return -ENODEV;
    }
    if (prop.major != 9 || prop.minor != 0) {
        errf(err, "cuda: device %d (%s) is sm_%d%d; this build has kernels for sm_90a "
             "(H100/H200) only ---> HINT: add a -gencode for it to NVFLAGS and rebuild",
             cu->opt.device, prop.name, prop.major, prop.minor);
        return -ENODEV;
    }
    cu->device = cu->opt.device;
    cu->attn.num_sms = prop.multiProcessorCount;
    LOG(LL_INFO, "cuda", "device %d: %s, %d SMs, %zu MiB, L2 %d MiB", cu->device, prop.name,
        prop.multiProcessorCount, prop.totalGlobalMem >> 20, prop.l2CacheSize >> 20);
    return 0;
}

/* One small bf16 product through cuBLAS at creation. cuBLAS loads its kernels at their first
 * use, ~0.1 s on the H200; decode graphs of one row run the GEMV (cuda__gemm) and never call
 * it, so without this the first prefill (a request's time to first token) would pay it. */
static int warm_blas(struct backend_cuda *cu, char *err)
{
    enum { W = 128 };
    const float alpha = 1.0f, beta = 0.0f;
    size_t bytes = (size_t)3 * W * W * 2;
    char *buf = NULL;
    bool ok;

    if (!dev_alloc((void **)&buf, bytes, "a warm-up product", err))
        return -ENOMEM;
    ok = CUDA_OK(cudaMemsetAsync(buf, 0, bytes, cu->stream)) &&
         CUDA_OK(cublasGemmEx(cu->blas, CUBLAS_OP_T, CUBLAS_OP_N, W, W, W, &alpha, buf,
                              CUDA_R_16BF, W, buf + (size_t)W * W * 2, CUDA_R_16BF, W, &beta,
                              buf + (size_t)2 * W * W * 2, CUDA_R_16BF, W, CUBLAS_COMPUTE_32F,
                              CUBLAS_GEMM_DEFAULT)) &&
         CUDA_OK(cudaStreamSynchronize(cu->stream));
    ok = CUDA_OK(cudaFree(buf)) && ok;
    if (!ok) {
        errf(err, "cuda: cuBLAS's warm-up product failed");
        return -EIO;
    }
    return 0;
}

static int init_handles(struct backend_cuda *cu, char *err)
{
    if (!CUDA_OK(cudaStreamCreateWithFlags(&cu->stream, cudaStreamNonBlocking)) ||
        !CUDA_OK(cublasCreate(&cu->blas)) || !CUDA_OK(cublasSetStream(cu->blas, cu->stream)) ||
        !CUDA_OK(cublasLtCreate(&cu->lt))) {
        errf(err, "cuda: cannot create the stream or the cuBLAS handle");
        return -EIO;
    }
    if (!dev_alloc(&cu->blas_workspace, CUDA_BLAS_WORKSPACE_BYTES, "the cuBLAS workspace", err))
        return -ENOMEM;
    if (!CUDA_OK(cublasSetWorkspace(cu->blas, cu->blas_workspace, CUDA_BLAS_WORKSPACE_BYTES)) ||
        attention_cuda_init() || moe_cuda_init()) {
        errf(err, "cuda: cannot configure cuBLAS, the attention or the MoE kernels");
        return -EIO;
    }
    if (warm_blas(cu, err))
        return -EIO;
    cu->attn.partial_bytes = CUDA_ATTN_PARTIAL_BYTES;
    if (!dev_alloc((void **)&cu->attn.partial, cu->attn.partial_bytes,
                   "attention's split-K partials", err))
        return -ENOMEM;
    return 0;
}

static int init_sampling(struct backend_cuda *cu, char *err)
{
    size_t rows = (size_t)MAX(cu->opt.max_reqs, 1), vocab = (size_t)MAX(cu->opt.vocab_size, 1);

    if (!dev_alloc((void **)&cu->sample_work, rows * vocab * sizeof(float), "sampling scratch", err) ||
        !dev_alloc((void **)&cu->sample_counts, rows * vocab * sizeof(int32_t),
                   "sampling counts", err) ||
        !dev_alloc((void **)&cu->results, rows * sizeof *cu->results, "sampling results", err))
        return -ENOMEM;
    if (!CUDA_OK(cudaMallocHost((void **)&cu->results_host, rows * sizeof *cu->results_host))) {
        errf(err, "cuda: out of pinned host memory for sampling results");
        return -ENOMEM;
    }
    if (!CUDA_OK(cudaMemsetAsync(cu->sample_counts, 0, rows * vocab * sizeof(int32_t), cu->stream)) ||
        !CUDA_OK(cudaMemsetAsync(cu->results, 0, rows * sizeof *cu->results, cu->stream)) ||
        !CUDA_OK(cudaStreamSynchronize(cu->stream))) {
        errf(err, "cuda: clearing the sampling buffers failed");
        return -EIO;
    }
    return 0;
}

int backend_cuda_create(struct backend **out, const struct backend_options *opt, char *err)
{
    struct backend_cuda *cu;
    int rc, prev = 0;

    *out = NULL;
    if (opt->max_tokens < 0 || opt->max_reqs < 0 || opt->vocab_size < 0 ||
        opt->max_blocks_per_req < 0 || opt->num_kv_groups < 0 || opt->num_kv_groups > KV_MAX_GROUPS) {
        errf(err, "cuda: bad capacity in the backend options (tokens %d, reqs %d, vocab %d, "
             "blocks per request %d, groups %d)", opt->max_tokens, opt->max_reqs,
             opt->vocab_size, opt->max_blocks_per_req, opt->num_kv_groups);
        return -EINVAL;
    }
    if (!(cu = calloc(1, sizeof *cu))) {
        errf(err, "cuda: out of memory");
        return -ENOMEM;
    }
    cu->base.ops = &cuda_ops;
    cu->opt = *opt;
    cu->device = opt->device;
    cu->gemv_max = BF16_GEMV_MAX;
    /* the caller's thread keeps its device: every entry point binds its own (cuda__enter) */
    (void)cudaGetDevice(&prev);
    if ((rc = init_device(cu, err)) || (rc = init_handles(cu, err)) ||
        (rc = init_sampling(cu, err)) || (rc = cuda__stage_init(cu, err)) ||
        (rc = cuda__fp8_init(cu, err))) {
        cu_destroy(&cu->base);
        (void)cudaSetDevice(prev);
        return rc;
    }
    (void)cudaSetDevice(prev);
    *out = &cu->base;
    return 0;
}
