/* fuzz_safetensors.c — st_parse_header on arbitrary bytes taken as a whole safetensors file.
 * What it accepts is checked too: every tensor's bytes lie inside the file (each is touched
 * at both ends, so ASan sees a range that runs past the buffer) and its size matches its
 * shape and dtype. */
#include "tests/fuzz/fuzz.h"

#include "engine/model/safetensors.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_quiet();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct st_file f;
    char err[ERR_LEN];
    volatile uint8_t sink = 0;

    if (st_parse_header(data, size, "fuzz.safetensors", &f, err) != 0)
        return 0;
    for (int i = 0; i < f.num_tensors; i++) {
        const struct tensor_ref *t = &f.tensors[i];
        const uint8_t *p = t->data;
        size_t elems = 1;

        for (int d = 0; d < t->ndim; d++)
            elems *= (size_t)t->shape[d];
        if (t->ndim < 0 || t->ndim > 4 || elems * dtype_size(t->dtype) != t->nbytes ||
            p < data || p + t->nbytes > data + size)
            abort();
        if (t->nbytes)
            sink ^= p[0] ^ p[t->nbytes - 1];
    }
    (void)sink;
    st_file_fini(&f);
    return 0;
}
