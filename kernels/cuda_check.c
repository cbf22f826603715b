/* cuda_check.c — what CUDA_OK (cuda_check.h) does on a failure: one ERR line naming the
 * statement, the error, the function, file and line. Success costs one comparison. It calls
 * log_write_ itself rather than LOG() so that the line names the caller's function. */
#include <cublas_api.h>
#include <cuda_runtime_api.h>

#include "kernels/cuda_check.h"
#include "engine/base/log.h"

bool cuda_ok_rt_(cudaError_t e, const char *stmt, const char *func, const char *file, int line)
{
    if (e == cudaSuccess)
        return true;
    log_write_(LL_ERR, "cuda", func, "%s failed: %s (%s) at %s:%d", stmt, cudaGetErrorName(e),
               cudaGetErrorString(e), file, line);
    return false;
}

bool cuda_ok_blas_(cublasStatus_t s, const char *stmt, const char *func, const char *file,
                   int line)
{
    if (s == CUBLAS_STATUS_SUCCESS)
        return true;
    log_write_(LL_ERR, "cuda", func, "%s failed: %s (%s) at %s:%d", stmt, cublasGetStatusName(s),
               cublasGetStatusString(s), file, line);
    return false;
}
