/* backend.c — picks a backend by name. "cpu" is always built; "cuda" exists only in builds
 * with OSPREY_CUDA (engine/cuda/), and then only where a device is present. */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "engine/backend.h"
#ifdef OSPREY_CUDA
#include "engine/cuda/backend_cuda.h"   /* backend_cuda_create, cuda_device_count */
#endif

int backend_create(struct backend **out, const char *name, const struct backend_options *opt,
                   char *err)
{
    *out = NULL;
    if (!strcmp(name, "cpu"))
        return backend_cpu_create(out, opt, err);
    if (!strcmp(name, "cuda")) {
#ifdef OSPREY_CUDA
        if (cuda_device_count() <= 0) {
            errf(err, "backend cuda: no CUDA device found (try --backend cpu)");
            return -ENODEV;
        }
        return backend_cuda_create(out, opt, err);
#else
        errf(err, "backend cuda: this build has no CUDA (rebuild with nvcc on the PATH, "
                  "or use --backend cpu)");
        return -ENODEV;
#endif
    }
    errf(err, "backend \"%s\": unknown (expected cpu or cuda)", name);
    return -EINVAL;
}

void backend_destroy(struct backend *be)
{
    if (be)
        be->ops->destroy(be);
}

bool backend_cuda_available(void)
{
#ifdef OSPREY_CUDA
    return cuda_device_count() > 0;
#else
    return false;
#endif
}
