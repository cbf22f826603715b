/* cuda_graph.c — CUDA graphs of the runner's steps: graph_capture runs the caller's body (the
 * runner's forward + sample, or its forward alone for a step with masks, or one piece of
 * the forward between attentions: engine/runner_pieces.h) with the backend's stream in
 * capture mode and keeps the instantiated graph under the caller's key (the batch size,
 * minus it for the forward alone, PIECES_KEY_BASE up for pieces); graph_replay launches it. The ops read every
 * batch-dependent value from the staging buffers at fixed addresses, so a replay after a
 * new stage() computes the new batch. Nothing inside a capture allocates or waits. */
#include <errno.h>
#include <stdlib.h>

#include "kernels/cuda_check.h"
#include "engine/cuda/cuda_internal.h"
#include "engine/base/log.h"

static struct cuda_graph *find_graph(struct backend_cuda *cu, int size)
{
    for (int i = 0; i < cu->num_graphs; i++)
        if (cu->graphs[i].size == size)
            return &cu->graphs[i];
    return NULL;
}

/* A slot for `size`: the existing one (its old graph destroyed) or a new one. */
static struct cuda_graph *graph_slot(struct backend_cuda *cu, int size)
{
    struct cuda_graph *g = find_graph(cu, size);

    if (g) {
        cudaGraphExecDestroy(g->exec);
        g->exec = NULL;
        return g;
    }
    if (cu->num_graphs == cu->cap_graphs) {
        int cap = cu->cap_graphs ? 2 * cu->cap_graphs : 16;
        struct cuda_graph *a = realloc(cu->graphs, cap * sizeof *a);
        if (!a)
            return NULL;
        cu->graphs = a;
        cu->cap_graphs = cap;
    }
    g = &cu->graphs[cu->num_graphs++];
    g->size = size;
    g->exec = NULL;
    return g;
}

int cuda__graph_capture(struct backend *be, int size, int (*body)(void *arg), void *arg)
{
    struct backend_cuda *cu = cuda__of(be);
    cudaGraph_t graph = NULL;
    cudaGraphExec_t exec = NULL;
    struct cuda_graph *slot;
    cudaError_t end;
    int rc;

    if (cuda__enter(cu))
        return -EIO;
    /* thread-local mode: a forbidden call (an allocation, a sync) from this thread fails
     * the capture instead of passing silently */
    if (!CUDA_OK(cudaStreamBeginCapture(cu->stream, cudaStreamCaptureModeThreadLocal)))
        return cuda__status(cu, -EIO);
    rc = body(arg);
    end = cudaStreamEndCapture(cu->stream, &graph);
    if (rc || !CUDA_OK(end)) {
        (void)cudaGetLastError();   /* an invalidated capture is not a sticky error */
        if (graph)
            cudaGraphDestroy(graph);
        LOG(LL_ERR, "cuda", "capturing the graph of size %d failed (%d)", size, rc);
        return rc ? rc : -EIO;
    }
    if (!CUDA_OK(cudaGraphInstantiate(&exec, graph, 0))) {
        cudaGraphDestroy(graph);
        return cuda__status(cu, -EIO);
    }
    cudaGraphDestroy(graph);
    if (!CUDA_OK(cudaGraphUpload(exec, cu->stream))) {
        cudaGraphExecDestroy(exec);
        return cuda__status(cu, -EIO);
    }
    if (!(slot = graph_slot(cu, size))) {
        cudaGraphExecDestroy(exec);
        return -ENOMEM;
    }
    slot->exec = exec;
    return 0;
}

int cuda__graph_replay(struct backend *be, int size)
{
    struct backend_cuda *cu = cuda__of(be);
    struct cuda_graph *g;

    if (cuda__enter(cu))
        return -EIO;
    if (!(g = find_graph(cu, size)) || !g->exec)
        return -ENOENT;
    if (!CUDA_OK(cudaGraphLaunch(g->exec, cu->stream)))
        return cuda__status(cu, -EIO);
    return 0;
}

void cuda__graphs_free(struct backend_cuda *cu)
{
    for (int i = 0; i < cu->num_graphs; i++)
        if (cu->graphs[i].exec)
            cudaGraphExecDestroy(cu->graphs[i].exec);
    free(cu->graphs);
    cu->graphs = NULL;
    cu->num_graphs = cu->cap_graphs = 0;
}
