/* safetensors.h — the safetensors files of one model, mapped read-only, and a streaming
 * writer for `osprey gen-model`. A file is an 8-byte little-endian header length N, N bytes
 * of JSON naming every tensor's dtype, shape and byte range, then the data. The header
 * parser works on a byte buffer alone so a fuzzer can drive it (tests/fuzz/). */
#ifndef OSPREY_SAFETENSORS_H
#define OSPREY_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "engine/model/model.h"  /* struct tensor_ref, enum dtype */

#define ST_MAX_HEADER_BYTES (100u << 20)  /* the reference implementation's limit */

/* One parsed file. Every tensor's data points into `map`; names point into `names`. */
struct st_file {
    char *path;                  /* malloc'd, for messages */
    const uint8_t *map;          /* [size] bytes: the whole file (mmap, or the caller's buffer) */
    size_t size;                 /* bytes */
    bool mapped;                 /* map came from mmap and is unmapped by st_file_fini */
    struct tensor_ref *tensors;  /* [num_tensors], in header order */
    int num_tensors;
    char *names;                 /* every tensor name, NUL-terminated, back to back */
};

/* The files of one model folder: model.safetensors, or the shards that
 * model.safetensors.index.json names, plus a name index over all their tensors. */
struct st_set {
    struct st_file *files;       /* [num_files] */
    int num_files;
    const struct tensor_ref **slots;  /* [num_slots] open-addressing table by name */
    int num_slots;
    int num_tensors;             /* over all files */
};

/* Parses the header of a whole safetensors file held in `file` (file_size bytes) into f:
 * names, dtypes, shapes, and data pointers into `file` (not copied; f->mapped is false).
 * `path` names the file in messages. Returns 0, or -EINVAL with "<path>: <tensor>: <problem>"
 * in err; f then needs no st_file_fini. */
int st_parse_header(const uint8_t *file, size_t file_size, const char *path,
                    struct st_file *f, char *err);
void st_file_fini(struct st_file *f);

/* Opens dir/model.safetensors, else dir/model.safetensors.index.json and every shard it
 * names (mmap, read-only, private). Returns 0 with *out set, or a negative errno with a
 * message naming the file (and tensor). */
int st_open(struct st_set **out, const char *dir, char *err);
void st_close(struct st_set *set);  /* NULL-safe */

/* The tensor called `name`, or NULL. */
const struct tensor_ref *st_find(const struct st_set *set, const char *name);

/* Iteration: tensors 0 .. st_num_tensors()-1, file after file in header order. */
int st_num_tensors(const struct st_set *set);
const struct tensor_ref *st_tensor(const struct st_set *set, int i);

/* "[2048, 512]" into buf (len bytes), for messages. */
void st_shape_format(char *buf, size_t len, int ndim, const int64_t *shape);

/* The path of the file that holds t (a pointer st_find or st_tensor returned). */
const char *st_file_of(const struct st_set *set, const struct tensor_ref *t);

/* One tensor to write. Its bytes come from `data`, or when data is NULL from `fill`, which
 * is called with consecutive pieces (offset_bytes, n_bytes) that are multiples of the
 * element size, so nothing larger than one piece sits in memory. fill returns 0 or a
 * negative errno. */
struct st_write_tensor {
    const char *name;
    enum dtype dtype;
    int ndim;
    int64_t shape[4];
    const void *data;            /* [product(shape)] elements, or NULL */
    int (*fill)(void *ctx, const struct st_write_tensor *t, void *buf, size_t offset_bytes,
                size_t n_bytes);
    void *ctx;
};

/* Writes a safetensors file: the header (metadata {"format":"pt"}, padded with spaces to a
 * multiple of 8 bytes as the reference writer does), then every tensor's data back to back:
 * 4-byte dtypes first, then 2-byte ones, then 1-byte ones, each group in the order given, so that every
 * tensor is aligned with no gaps. Returns 0, or a negative errno with a message; a partly
 * written file is removed. */
int st_write(const char *path, const struct st_write_tensor *t, int n, char *err);

#endif
