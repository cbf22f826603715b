/* cuda_check.h — the one checker of CUDA runtime and cuBLAS results (STYLE.md "CUDA
 * errors"): CUDA_OK(x) is true when x succeeded; otherwise it logs the statement, function,
 * file and line and is false, and the caller returns -EIO (or goes to its cleanup). Used
 * by the kernels' launchers and the host side of the CUDA backend alike. */
#ifndef OSPREY_CUDA_CHECK_H
#define OSPREY_CUDA_CHECK_H

#include <stdbool.h>

#include <cublas_api.h>        /* cublasStatus_t */
#include <cuda_runtime_api.h>  /* cudaError_t */

#ifdef __cplusplus
extern "C" {
#endif

bool cuda_ok_rt_(cudaError_t e, const char *stmt, const char *func, const char *file, int line);
bool cuda_ok_blas_(cublasStatus_t s, const char *stmt, const char *func, const char *file,
                   int line);

#ifdef __cplusplus
}
static inline bool cuda_ok_(cudaError_t e, const char *stmt, const char *func, const char *file,
                            int line)
{
    return cuda_ok_rt_(e, stmt, func, file, line);
}
static inline bool cuda_ok_(cublasStatus_t s, const char *stmt, const char *func,
                            const char *file, int line)
{
    return cuda_ok_blas_(s, stmt, func, file, line);
}
#define CUDA_OK(x) cuda_ok_((x), #x, __func__, __FILE__, __LINE__)
#else
#define CUDA_OK(x) _Generic((x), cudaError_t: cuda_ok_rt_, cublasStatus_t: cuda_ok_blas_) \
                           ((x), #x, __func__, __FILE__, __LINE__)
#endif

#endif
