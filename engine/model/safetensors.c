/* safetensors.c — reads the safetensors files of a model folder (mmap, read-only) and
 * writes new ones for gen-model. The header parser trusts nothing: every length, offset,
 * shape and dtype is checked against the file before a tensor_ref points into it, and
 * every message names the file and the tensor. model.c binds the tensors by role. */
#include "engine/model/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>   /* name index */

#define ST_JSON_MAX_INT 9007199254740992.0  /* 2^53: larger integers are not exact in JSON */
#define ST_WRITE_CHUNK_BYTES (8u << 20)
/* model.safetensors.index.json: one line per tensor, so a few MB for the largest models
 * (a hundred thousand tensors); 64 MiB is margin, and /dev/zero in its place is refused. */
#define INDEX_JSON_MAX ((size_t)64 << 20)

void st_shape_format(char *buf, size_t len, int ndim, const int64_t *shape)
{
    size_t n = 0;

    n += (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < ndim && n < len; i++)
        n += (size_t)snprintf(buf + n, len - n, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (n < len)
        snprintf(buf + n, len - n, "]");
}

/* A JSON number that is a whole number in [0, 2^53]. */
static bool json_uint(const cJSON *j, uint64_t *out)
{
    double d;

    if (!cJSON_IsNumber(j))
        return false;
    d = j->valuedouble;
    if (!(d >= 0 && d <= ST_JSON_MAX_INT) || d != (double)(uint64_t)d)
        return false;
    *out = (uint64_t)d;
    return true;
}

/* The dtypes safetensors defines that osprey cannot compute with: named as unsupported
 * rather than unknown, so the message tells a quantized model from a corrupt file. */
static bool dtype_is_known(const char *s)
{
    static const char *const known[] = {
        "BOOL", "U8", "I8", "U16", "I16", "U32", "I32", "U64", "I64", "F64", "C64",
        "F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4", "E8M0",
    };
    for (size_t i = 0; i < ARRAY_LEN(known); i++)
        if (!strcmp(s, known[i]))
            return true;
    return false;
}

/* Fills t from one header entry; data_off is the file offset where the data area starts. */
static int parse_entry(const cJSON *e, const char *path, const uint8_t *file, size_t file_size,
                       size_t data_off, struct tensor_ref *t, char *err)
{
    const char *name = e->string;
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    uint64_t elems = 1, bytes, begin, end, data_size = file_size - data_off;
    char shp[128];
    int i = 0;

    if (!cJSON_IsObject(e)) {
        errf(err, "%s: %s: header entry is not an object", path, name);
        return -EINVAL;
    }
    if (!cJSON_IsString(dt)) {
        errf(err, "%s: %s: dtype missing or not a string", path, name);
        return -EINVAL;
    }
    if (dtype_parse(dt->valuestring, &t->dtype) != 0) {
        errf(err, "%s: %s: %s dtype %s (supported: BF16, F16, F32, F8_E4M3, U8)", path, name,
             dtype_is_known(dt->valuestring) ? "unsupported" : "unknown", dt->valuestring);
        return -EINVAL;
    }
    if (!cJSON_IsArray(shape)) {
        errf(err, "%s: %s: shape missing or not an array", path, name);
        return -EINVAL;
    }
    t->ndim = cJSON_GetArraySize(shape);
    if (t->ndim > 4) {
        errf(err, "%s: %s: shape has %d dimensions, at most 4 are supported", path, name, t->ndim);
        return -EINVAL;
    }
    for (const cJSON *d = shape->child; d; d = d->next, i++) {
        uint64_t v;

        if (!json_uint(d, &v)) {
            errf(err, "%s: %s: shape[%d] is not a non-negative integer", path, name, i);
            return -EINVAL;
        }
        t->shape[i] = (int64_t)v;
        if (__builtin_mul_overflow(elems, v, &elems)) {
            errf(err, "%s: %s: shape product overflows", path, name);
            return -EINVAL;
        }
    }
    st_shape_format(shp, sizeof shp, t->ndim, t->shape);
    if (__builtin_mul_overflow(elems, (uint64_t)dtype_size(t->dtype), &bytes)) {
        errf(err, "%s: %s: shape %s overflows in bytes", path, name, shp);
        return -EINVAL;
    }
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 ||
        !json_uint(offs->child, &begin) || !json_uint(offs->child->next, &end)) {
        errf(err, "%s: %s: data_offsets must be [begin, end], two non-negative integers",
             path, name);
        return -EINVAL;
    }
    if (begin > end || end > data_size) {
        errf(err, "%s: %s: data_offsets [%llu, %llu] lie outside the data area (%llu bytes)",
             path, name, (unsigned long long)begin, (unsigned long long)end,
             (unsigned long long)data_size);
        return -EINVAL;
    }
    if (end - begin != bytes) {
        errf(err, "%s: %s: data_offsets span %llu bytes but %s %s needs %llu", path, name,
             (unsigned long long)(end - begin), dt->valuestring, shp, (unsigned long long)bytes);
        return -EINVAL;
    }
    /* Readers cast the mapping to uint16_t / float: the element must be aligned in the file
     * (writers pad the header to 8 bytes for this). */
    if ((data_off + begin) % dtype_size(t->dtype) != 0) {
        errf(err, "%s: %s: data at file offset %llu is not aligned to its %zu-byte elements",
             path, name, (unsigned long long)(data_off + begin), dtype_size(t->dtype));
        return -EINVAL;
    }
    t->data = file + data_off + begin;
    t->nbytes = (size_t)bytes;
    return 0;
}

static int cmp_name(const void *a, const void *b)
{
    const struct tensor_ref *x = *(const struct tensor_ref *const *)a;
    const struct tensor_ref *y = *(const struct tensor_ref *const *)b;
    return strcmp(x->name, y->name);
}

static int check_duplicates(struct st_file *f, char *err)
{
    const struct tensor_ref **v = malloc(sizeof *v * (size_t)(f->num_tensors + 1));
    int rc = 0;

    if (!v) {
        errf(err, "%s: out of memory", f->path);
        return -ENOMEM;
    }
    for (int i = 0; i < f->num_tensors; i++)
        v[i] = &f->tensors[i];
    qsort(v, (size_t)f->num_tensors, sizeof *v, cmp_name);
    for (int i = 1; i < f->num_tensors && rc == 0; i++)
        if (!strcmp(v[i - 1]->name, v[i]->name)) {
            errf(err, "%s: %s: tensor named twice in the header", f->path, v[i]->name);
            rc = -EINVAL;
        }
    free(v);
    return rc;
}

int st_parse_header(const uint8_t *file, size_t file_size, const char *path,
                    struct st_file *f, char *err)
{
    cJSON *root = NULL;
    const char *end = NULL;
    uint64_t hlen;
    size_t names_len = 0, data_off;
    char *np;
    int n = 0, rc = -EINVAL;

    memset(f, 0, sizeof *f);
    f->map = file;
    f->size = file_size;
    if (!(f->path = strdup(path))) {
        errf(err, "%s: out of memory", path);
        return -ENOMEM;
    }
    if (file_size < 8) {
        errf(err, "%s: truncated: %zu bytes, less than the 8-byte header length", path, file_size);
        goto fail;
    }
    hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | file[i];
    if (hlen > ST_MAX_HEADER_BYTES) {
        errf(err, "%s: header length %llu is absurd (limit %u bytes)", path,
             (unsigned long long)hlen, ST_MAX_HEADER_BYTES);
        goto fail;
    }
    if (hlen > file_size - 8) {
        errf(err, "%s: header length %llu runs past the end of the file (%zu bytes): truncated?",
             path, (unsigned long long)hlen, file_size);
        goto fail;
    }
    data_off = 8 + (size_t)hlen;
    root = cJSON_ParseWithLengthOpts((const char *)file + 8, (size_t)hlen, &end, false);
    if (!root) {
        errf(err, "%s: header is not valid JSON (at byte %td of %llu)", path,
             end ? end - (const char *)file - 8 : 0, (unsigned long long)hlen);
        goto fail;
    }
    for (const char *p = end; p < (const char *)file + data_off; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            errf(err, "%s: header has bytes after its JSON (at byte %td)", path,
                 p - (const char *)file - 8);
            goto fail;
        }
    if (!cJSON_IsObject(root)) {
        errf(err, "%s: header is not a JSON object", path);
        goto fail;
    }
    for (const cJSON *e = root->child; e; e = e->next) {
        if (!strcmp(e->string, "__metadata__")) {
            if (!cJSON_IsObject(e)) {
                errf(err, "%s: __metadata__ is not an object", path);
                goto fail;
            }
            continue;
        }
        n++;
        names_len += strlen(e->string) + 1;
    }
    f->tensors = calloc((size_t)n + 1, sizeof *f->tensors);
    f->names = malloc(names_len + 1);
    if (!f->tensors || !f->names) {
        errf(err, "%s: out of memory for %d tensors", path, n);
        rc = -ENOMEM;
        goto fail;
    }
    np = f->names;
    for (const cJSON *e = root->child; e; e = e->next) {
        struct tensor_ref *t = &f->tensors[f->num_tensors];
        size_t len = strlen(e->string) + 1;

        if (!strcmp(e->string, "__metadata__"))
            continue;
        if ((rc = parse_entry(e, path, file, file_size, data_off, t, err)) != 0)
            goto fail;
        memcpy(np, e->string, len);
        t->name = np;
        np += len;
        f->num_tensors++;
    }
    if ((rc = check_duplicates(f, err)) != 0)
        goto fail;
    cJSON_Delete(root);
    return 0;
fail:
    cJSON_Delete(root);
    st_file_fini(f);
    return rc < 0 ? rc : -EINVAL;
}

void st_file_fini(struct st_file *f)
{
    if (f->mapped && f->map)
        munmap((void *)f->map, f->size);
    free(f->tensors);
    free(f->names);
    free(f->path);
    memset(f, 0, sizeof *f);
}

/* Maps path and parses its header into f. */
static int map_file(const char *path, struct st_file *f, char *err)
{
    struct stat sb;
    void *map;
    /* A FIFO in place of the weights must not block the open: open_regular_file refuses
     * it, and anything else that is not a regular file. */
    int fd, rc;

    memset(f, 0, sizeof *f);
    fd = open_regular_file(path, &sb, err);
    if (fd < 0)
        return fd;
    if (sb.st_size < 8) {
        errf(err, "%s: truncated: %lld bytes, less than the 8-byte header length", path,
             (long long)sb.st_size);
        close(fd);
        return -EINVAL;
    }
    map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    rc = -errno;
    close(fd);
    if (map == MAP_FAILED) {
        errf(err, "%s: mmap: %s", path, strerror(-rc));
        return rc;
    }
    madvise(map, (size_t)sb.st_size, MADV_SEQUENTIAL);  /* weights are read once, in order */
    rc = st_parse_header(map, (size_t)sb.st_size, path, f, err);
    if (rc != 0) {
        munmap(map, (size_t)sb.st_size);
        return rc;
    }
    f->mapped = true;
    return 0;
}

static uint64_t name_hash(const char *name)
{
    return XXH3_64bits(name, strlen(name));
}

/* The slot holding name, or the empty slot where it would go. */
static int find_slot(const struct st_set *set, const char *name)
{
    int mask = set->num_slots - 1, i = (int)(name_hash(name) & (uint64_t)mask);

    while (set->slots[i] && strcmp(set->slots[i]->name, name))
        i = (i + 1) & mask;
    return i;
}

/* Builds the name index over every file; a name in two files is an error. */
static int build_index(struct st_set *set, char *err)
{
    int total = 0, slots = 16;

    for (int i = 0; i < set->num_files; i++)
        total += set->files[i].num_tensors;
    while (slots < 2 * total)
        slots *= 2;
    set->slots = calloc((size_t)slots, sizeof *set->slots);
    if (!set->slots) {
        errf(err, "out of memory for %d tensor names", total);
        return -ENOMEM;
    }
    set->num_slots = slots;
    set->num_tensors = total;
    for (int i = 0; i < set->num_files; i++)
        for (int j = 0; j < set->files[i].num_tensors; j++) {
            const struct tensor_ref *t = &set->files[i].tensors[j];
            int s = find_slot(set, t->name);

            if (set->slots[s]) {
                errf(err, "%s: %s: tensor is also in %s", set->files[i].path, t->name,
                     st_file_of(set, set->slots[s]));
                return -EINVAL;
            }
            set->slots[s] = t;
        }
    return 0;
}

/* A shard name from the index must be a plain file name inside the folder. */
static bool shard_name_ok(const char *s)
{
    return s[0] && !strchr(s, '/') && strcmp(s, ".") && strcmp(s, "..");
}

/* Opens the shards named by dir/model.safetensors.index.json. */
static int open_index(struct st_set *set, const char *dir, const char *ipath, char *err)
{
    char *text = NULL, path[4096];
    cJSON *root = NULL, *map;
    const char **shards = NULL;
    int nshards = 0, rc = -EINVAL;

    if ((rc = read_file_bounded(ipath, INDEX_JSON_MAX, &text, NULL, err)) != 0)
        return rc;
    rc = -EINVAL;
    root = cJSON_Parse(text);
    map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!root) {
        errf(err, "%s: not valid JSON", ipath);
        goto out;
    }
    if (!cJSON_IsObject(map) || !map->child) {
        errf(err, "%s: weight_map: missing, empty or not an object", ipath);
        goto out;
    }
    shards = calloc((size_t)cJSON_GetArraySize(map), sizeof *shards);
    if (!shards) {
        errf(err, "%s: out of memory", ipath);
        rc = -ENOMEM;
        goto out;
    }
    for (const cJSON *e = map->child; e; e = e->next) {
        int k;

        if (!cJSON_IsString(e) || !shard_name_ok(e->valuestring)) {
            errf(err, "%s: weight_map: %s: not a file name in the model folder", ipath, e->string);
            goto out;
        }
        for (k = 0; k < nshards && strcmp(shards[k], e->valuestring); k++)
            ;
        if (k == nshards)
            shards[nshards++] = e->valuestring;
    }
    set->files = calloc((size_t)nshards, sizeof *set->files);
    if (!set->files) {
        errf(err, "%s: out of memory", ipath);
        rc = -ENOMEM;
        goto out;
    }
    for (int k = 0; k < nshards; k++) {
        snprintf(path, sizeof path, "%s/%s", dir, shards[k]);
        if ((rc = map_file(path, &set->files[k], err)) != 0)
            goto out;
        set->num_files++;
    }
    if ((rc = build_index(set, err)) != 0)
        goto out;
    for (const cJSON *e = map->child; e; e = e->next) {
        const struct tensor_ref *t = st_find(set, e->string);

        if (!t || strcmp(strrchr(st_file_of(set, t), '/') + 1, e->valuestring)) {
            errf(err, "%s: weight_map: %s: not found in %s", ipath, e->string, e->valuestring);
            rc = -EINVAL;
            goto out;
        }
    }
    rc = 0;
out:
    free(shards);
    cJSON_Delete(root);
    free(text);
    return rc;
}

int st_open(struct st_set **out, const char *dir, char *err)
{
    struct st_set *set = calloc(1, sizeof *set);
    char path[4096];
    int rc;

    *out = NULL;
    if (!set) {
        errf(err, "%s: out of memory", dir);
        return -ENOMEM;
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (access(path, F_OK) == 0) {
        if (!(set->files = calloc(1, sizeof *set->files))) {
            errf(err, "%s: out of memory", path);
            rc = -ENOMEM;
            goto fail;
        }
        if ((rc = map_file(path, &set->files[0], err)) != 0)
            goto fail;
        set->num_files = 1;
        if ((rc = build_index(set, err)) != 0)
            goto fail;
    } else {
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
        if (access(path, F_OK) != 0) {
            errf(err, "%s: no model.safetensors or model.safetensors.index.json", dir);
            rc = -ENOENT;
            goto fail;
        }
        if ((rc = open_index(set, dir, path, err)) != 0)
            goto fail;
    }
    *out = set;
    return 0;
fail:
    st_close(set);
    return rc;
}

void st_close(struct st_set *set)
{
    if (!set)
        return;
    for (int i = 0; i < set->num_files; i++)
        st_file_fini(&set->files[i]);
    free(set->files);
    free(set->slots);
    free(set);
}

const struct tensor_ref *st_find(const struct st_set *set, const char *name)
{
    return set->num_slots ? set->slots[find_slot(set, name)] : NULL;
}

int st_num_tensors(const struct st_set *set)
{
    return set->num_tensors;
}

const struct tensor_ref *st_tensor(const struct st_set *set, int i)
{
    for (int f = 0; f < set->num_files; f++) {
        if (i < set->files[f].num_tensors)
            return &set->files[f].tensors[i];
        i -= set->files[f].num_tensors;
    }
    return NULL;
}

const char *st_file_of(const struct st_set *set, const struct tensor_ref *t)
{
    for (int f = 0; f < set->num_files; f++) {
        const struct st_file *sf = &set->files[f];
        if (t >= sf->tensors && t < sf->tensors + sf->num_tensors)
            return sf->path;
    }
    return "?";
}

/* ---- writing ---- */

/* Data order: 4-byte dtypes first, then 2-byte ones, then 1-byte ones (F8_E4M3), each in
 * the caller's order, so that every tensor starts aligned with no gaps between them
 * (readers reject gaps). */
static void data_order(const struct st_write_tensor *t, int n, int *order)
{
    int k = 0;

    for (size_t es = 4; es >= 1; es /= 2)
        for (int i = 0; i < n; i++)
            if (dtype_size(t[i].dtype) == es)
                order[k++] = i;
}

/* The header JSON, unpadded; NULL on a bad tensor (message in err) or no memory. */
static char *header_json(const struct st_write_tensor *tv, const int *order, int n,
                         uint64_t *data_bytes, char *err)
{
    cJSON *root = cJSON_CreateObject(), *meta = cJSON_AddObjectToObject(root, "__metadata__");
    uint64_t off = 0;
    char *s = NULL;

    if (!meta || !cJSON_AddStringToObject(meta, "format", "pt"))
        goto nomem;
    for (int i = 0; i < n; i++) {
        const struct st_write_tensor *t = &tv[order[i]];
        cJSON *e = cJSON_AddObjectToObject(root, t->name), *shape, *offs;
        uint64_t bytes = dtype_size(t->dtype);

        if (t->ndim < 0 || t->ndim > 4) {
            errf(err, "%s: %d dimensions, at most 4", t->name, t->ndim);
            goto fail;
        }
        if (!e || !cJSON_AddStringToObject(e, "dtype", dtype_name(t->dtype)) ||
            !(shape = cJSON_AddArrayToObject(e, "shape")))
            goto nomem;
        for (int d = 0; d < t->ndim; d++) {
            if (t->shape[d] < 0 || __builtin_mul_overflow(bytes, (uint64_t)t->shape[d], &bytes)) {
                errf(err, "%s: bad shape", t->name);
                goto fail;
            }
            if (!cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d])))
                goto nomem;
        }
        if (!(offs = cJSON_AddArrayToObject(e, "data_offsets")) ||
            !cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off)) ||
            !cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(off + bytes))))
            goto nomem;
        off += bytes;
    }
    if (!(s = cJSON_PrintUnformatted(root)))
        goto nomem;
    cJSON_Delete(root);
    *data_bytes = off;
    return s;
nomem:
    errf(err, "out of memory for the safetensors header");
fail:
    cJSON_Delete(root);
    return NULL;
}

static int write_tensor(FILE *fp, const struct st_write_tensor *t, uint8_t *buf, char *err)
{
    size_t total = dtype_size(t->dtype);
    int rc;

    for (int d = 0; d < t->ndim; d++)
        total *= (size_t)t->shape[d];   /* checked by header_json */
    if (t->data)
        return fwrite(t->data, 1, total, fp) == total ? 0 : -EIO;
    for (size_t off = 0; off < total; off += ST_WRITE_CHUNK_BYTES) {
        size_t n = MIN((size_t)ST_WRITE_CHUNK_BYTES, total - off);

        if ((rc = t->fill(t->ctx, t, buf, off, n)) != 0) {
            errf(err, "%s: generating data failed: %s", t->name, strerror(-rc));
            return rc;
        }
        if (fwrite(buf, 1, n, fp) != n)
            return -EIO;
    }
    return 0;
}

int st_write(const char *path, const struct st_write_tensor *t, int n, char *err)
{
    uint64_t data_bytes, hlen;
    int *order = malloc(sizeof *order * (size_t)(n + 1));
    char *hdr = NULL;
    uint8_t len8[8], *buf = NULL;
    FILE *fp = NULL;
    bool created = false;
    int rc = -EIO;

    if (!order) {
        errf(err, "%s: out of memory", path);
        return -ENOMEM;
    }
    data_order(t, n, order);
    if (!(hdr = header_json(t, order, n, &data_bytes, err))) {
        free(order);
        return -EINVAL;
    }
    hlen = (strlen(hdr) + 7) & ~(uint64_t)7;
    for (int i = 0; i < 8; i++)
        len8[i] = (uint8_t)(hlen >> (8 * i));
    if (!(buf = malloc(ST_WRITE_CHUNK_BYTES))) {
        errf(err, "%s: out of memory", path);
        rc = -ENOMEM;
        goto out;
    }
    if (!(fp = fopen(path, "wb"))) {
        rc = -errno;
        errf(err, "%s: %s", path, strerror(errno));
        goto out;
    }
    created = true;
    if (fwrite(len8, 1, 8, fp) != 8 || fwrite(hdr, 1, strlen(hdr), fp) != strlen(hdr) ||
        fprintf(fp, "%*s", (int)(hlen - strlen(hdr)), "") < 0)
        goto io;
    for (int i = 0; i < n; i++)
        if ((rc = write_tensor(fp, &t[order[i]], buf, err)) != 0) {
            if (rc == -EIO)
                goto io;
            goto out;
        }
    rc = fclose(fp) == 0 ? 0 : -errno;
    fp = NULL;
    if (rc == 0)
        goto out;
io:
    errf(err, "%s: write failed: %s", path, strerror(errno ? errno : EIO));
    rc = -EIO;
out:
    if (fp)
        fclose(fp);
    if (rc != 0 && created)
        unlink(path);
    free(buf);
    free(hdr);
    free(order);
    return rc;
}
