/* backend_cuda.h — the CUDA backend's entry points as engine/backend.c sees them (the
 * backend itself lives in engine/cuda/ and kernels/, built only with OSPREY_CUDA). */
#ifndef OSPREY_BACKEND_CUDA_H
#define OSPREY_BACKEND_CUDA_H

#include "engine/backend.h"

/* Creates the CUDA backend on opt->device. Returns 0, or -ENODEV / -ENOMEM with a message. */
int backend_cuda_create(struct backend **out, const struct backend_options *opt, char *err);

/* The backend's one stream (a cudaStream_t): where a communicator enqueues its collectives
 * so that they order with the ops and graphs capture them (engine/cuda/comm_nccl.c). */
void *backend_cuda_stream(struct backend *be);

/* How many fp8 products the backend has run on cuBLASLt's scaled FP8 GEMM, on its decode
 * GEMV and on its plain W8A16 kernel (engine/cuda/cuda_fp8_gemm.c), counted when launched
 * (a graph replay counts none): for tests and benchmarks. */
void backend_cuda_fp8_counts(struct backend *be, long *cublaslt, long *gemv, long *w8a16);

/* Decode-sized bf16 products (n up to max_n rows; 0: none) run the backend's GEMV, larger
 * ones cuBLAS; the default is BF16_GEMV_MAX of backend_cuda.c. A product captured in a
 * graph keeps the path it was captured with. Returns the previous limit; a negative max_n
 * leaves it as it is (a read). For tests and benchmarks, which run both paths. */
int backend_cuda_set_gemv_max(struct backend *be, int max_n);

/* How many bf16 products the backend has run on that GEMV, counted when launched (a graph
 * replay counts none). */
long backend_cuda_gemv_count(struct backend *be);

/* Destroys every graph the backend captured. A graph holding NCCL collectives must go
 * before its communicator (NCCL reclaims the graph's resources through the communicator
 * when the graph is destroyed): runner_tp.c calls this before comm_destroy. */
void backend_cuda_graphs_free(struct backend *be);

/* Number of usable CUDA devices; 0 when there is no driver or no device (never an error). */
int cuda_device_count(void);

#endif
