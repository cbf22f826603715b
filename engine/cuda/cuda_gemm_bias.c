/* cuda_gemm_bias.c — a linear layer with a bias (Qwen2's q/k/v) through cuBLASLt, whose
 * BIAS epilogue adds the bias to the f32 accumulator before the one rounding to bf16, as
 * PyTorch's F.linear does. (cuBLAS with the bias as C and beta 1 rounds the product first:
 * 2 ulp off where the bias cancels most of it.) Descriptors are made per call on the host;
 * the matmul itself is capturable and uses the backend's one fixed workspace. */
#include <errno.h>

#include "kernels/cuda_check.h"
#include "engine/cuda/cuda_internal.h"

/* out[n, w.rows] bf16 = x[n, w.cols] · wᵀ + bias[w.rows]. Column-major view: D[m = w.rows,
 * n] = Aᵀ · B with A = the weight as stored ([w.cols, w.rows] column-major), B = x. */
int cuda__gemm_bias(struct backend_cuda *cu, void *out, const void *x, const struct bk_weight *w,
                    const struct bk_weight *bias, int n)
{
    cublasLtMatmulDesc_t desc = NULL;
    cublasLtMatrixLayout_t la = NULL, lb = NULL, ld = NULL;
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulHeuristicResult_t heur;
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
    cudaDataType_t bias_type = CUDA_R_16BF;
    size_t ws = CUDA_BLAS_WORKSPACE_BYTES;
    float alpha = 1.0f, beta = 0.0f;
    int found = 0, rc = -EIO;

    if (CUDA_OK(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F)) &&
        CUDA_OK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta)) &&
        CUDA_OK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb)) &&
        CUDA_OK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi)) &&
        CUDA_OK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias->data,
                                               sizeof bias->data)) &&
        CUDA_OK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type,
                                               sizeof bias_type)) &&
        CUDA_OK(cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, w->cols, w->rows, w->cols)) &&
        CUDA_OK(cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, w->cols, n, w->cols)) &&
        CUDA_OK(cublasLtMatrixLayoutCreate(&ld, CUDA_R_16BF, w->rows, n, w->rows)) &&
        CUDA_OK(cublasLtMatmulPreferenceCreate(&pref)) &&
        CUDA_OK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                     &ws, sizeof ws)) &&
        CUDA_OK(cublasLtMatmulAlgoGetHeuristic(cu->lt, desc, la, lb, ld, ld, pref, 1, &heur, &found))) {
        if (found < 1)
            rc = -EINVAL;   /* no kernel for this shape: a usage error, not a dead device */
        else if (CUDA_OK(cublasLtMatmul(cu->lt, desc, &alpha, w->data, la, x, lb, &beta, out, ld,
                                        out, ld, &heur.algo, cu->blas_workspace, ws, cu->stream)))
            rc = 0;
    }
    if (pref)
        cublasLtMatmulPreferenceDestroy(pref);
    if (ld)
        cublasLtMatrixLayoutDestroy(ld);
    if (lb)
        cublasLtMatrixLayoutDestroy(lb);
    if (la)
        cublasLtMatrixLayoutDestroy(la);
    if (desc)
        cublasLtMatmulDescDestroy(desc);
    return rc == -EIO ? cuda__status(cu, rc) : rc;
}
