/* fp8_ref.c — see fp8_ref.h. Written from the safetensors and e4m3 specifications, using
 * only cJSON, the writer st_write and file helpers: none of the reading code under test. */
#include "tests/unit/fp8_ref.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/model/safetensors.h"
#include "tests/unit/fixtures.h"

double fp8_ref_decode(uint8_t c)
{
    int e = (c >> 3) & 15, m = c & 7;
    double v;

    if ((c & 0x7f) == 0x7f)
        return NAN;
    v = e == 0 ? ldexp(m, -9) : ldexp(8 + m, e - 10);
    return c & 0x80 ? -v : v;
}

struct ckpt {
    char *file;                   /* the whole model.safetensors */
    size_t size;
    struct fp8_ref_tensor *t;
    int n;
};

static size_t elem_size(enum dtype d)
{
    return dtype_size(d);
}

static int ckpt_read(const char *dir, struct ckpt *c)
{
    char path[FIXTURE_PATH + 64], *hdr;
    uint64_t hlen = 0;
    cJSON *root, *e;
    int rc;

    memset(c, 0, sizeof *c);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if ((rc = read_file(path, &c->file, &c->size, NULL)))
        return rc;
    for (int i = 0; i < 8; i++)
        hlen |= (uint64_t)(uint8_t)c->file[i] << (8 * i);
    if (!(hdr = strndup(c->file + 8, hlen)))
        return -ENOMEM;
    root = cJSON_Parse(hdr);
    free(hdr);
    if (!root)
        return -EINVAL;
    c->t = calloc((size_t)cJSON_GetArraySize(root), sizeof *c->t);
    cJSON_ArrayForEach(e, root) {
        struct fp8_ref_tensor *t = &c->t[c->n];
        const char *dt;
        const cJSON *d;

        if (!strcmp(e->string, "__metadata__"))
            continue;
        dt = cJSON_GetObjectItem(e, "dtype")->valuestring;
        t->dtype = !strcmp(dt, "F32") ? DT_F32 : !strcmp(dt, "BF16") ? DT_BF16
                 : !strcmp(dt, "F16") ? DT_F16 : !strcmp(dt, "U8") ? DT_U8 : DT_F8_E4M3;
        snprintf(t->name, sizeof t->name, "%s", e->string);
        cJSON_ArrayForEach(d, cJSON_GetObjectItem(e, "shape"))
            t->shape[t->ndim++] = (int64_t)d->valuedouble;
        t->data = c->file + 8 + hlen +
                  (size_t)cJSON_GetArrayItem(cJSON_GetObjectItem(e, "data_offsets"), 0)->valuedouble;
        c->n++;
    }
    cJSON_Delete(root);
    return 0;
}

static void ckpt_free(struct ckpt *c)
{
    free(c->file);
    free(c->t);
}

static struct fp8_ref_tensor *ckpt_find(struct ckpt *c, const char *name)
{
    for (int i = 0; i < c->n; i++)
        if (!strcmp(c->t[i].name, name))
            return &c->t[i];
    return NULL;
}

static int copy_file(const char *src, const char *dst, const char *name, bool optional)
{
    char path[FIXTURE_PATH + 64], *buf;
    size_t len;
    int rc;

    snprintf(path, sizeof path, "%s/%s", src, name);
    if ((rc = read_file(path, &buf, &len, NULL)))
        return optional ? 0 : rc;
    rc = fixture_write(dst, name, buf, len);
    free(buf);
    return rc;
}

static int write_ckpt(struct ckpt *c, const char *dst)
{
    struct st_write_tensor *w = calloc((size_t)c->n, sizeof *w);
    char path[FIXTURE_PATH + 64], err[ERR_LEN];
    int n = 0, rc;

    for (int i = 0; i < c->n; i++) {
        if (c->t[i].drop)
            continue;
        w[n].name = c->t[i].name;
        w[n].dtype = c->t[i].dtype;
        w[n].ndim = c->t[i].ndim;
        memcpy(w[n].shape, c->t[i].shape, sizeof w[n].shape);
        w[n].data = c->t[i].data;
        n++;
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dst);
    rc = st_write(path, w, n, err);
    if (rc)
        fprintf(stderr, "fp8_ref: %s\n", err);
    free(w);
    return rc;
}

/* Creates dst and copies the files beside the weights. */
static int copy_side_files(const char *src, const char *dst)
{
    int rc;

    if (mkdir(dst, 0755) != 0 && errno != EEXIST)
        return -errno;
    if ((rc = copy_file(src, dst, "generation_config.json", true)) ||
        (rc = copy_file(src, dst, "tokenizer.json", true)) ||
        (rc = copy_file(src, dst, "tokenizer_config.json", true)))
        return rc;
    return 0;
}

int fp8_ref_rewrite(const char *src, const char *dst,
                    void (*mutate)(void *ctx, struct fp8_ref_tensor *t), void *ctx,
                    char *(*config_edit)(const char *text, void *ctx),
                    const struct fp8_ref_tensor *extra, int n_extra)
{
    struct ckpt c;
    char path[FIXTURE_PATH + 64], *cfg;
    size_t len;
    int rc;

    if ((rc = ckpt_read(src, &c)))
        return rc;
    if (n_extra > 0) {
        struct fp8_ref_tensor *t = realloc(c.t, (size_t)(c.n + n_extra) * sizeof *t);

        if (!t) {
            ckpt_free(&c);
            return -ENOMEM;
        }
        c.t = t;
        memcpy(c.t + c.n, extra, (size_t)n_extra * sizeof *extra);
        c.n += n_extra;
    }
    for (int i = 0; mutate && i < c.n; i++)
        mutate(ctx, &c.t[i]);
    snprintf(path, sizeof path, "%s/config.json", src);
    if (!(rc = copy_side_files(src, dst)) && !(rc = read_file(path, &cfg, &len, NULL))) {
        char *edited = config_edit ? config_edit(cfg, ctx) : NULL;

        rc = fixture_write(dst, "config.json", edited ? edited : cfg,
                           strlen(edited ? edited : cfg));
        free(edited);
        free(cfg);
    }
    if (!rc)
        rc = write_ckpt(&c, dst);
    ckpt_free(&c);
    return rc;
}

/* Scale element of weight element (r, col) by the checkpoint's own layout. */
static double scale_of(const struct fp8_ref_tensor *s, int64_t r, int64_t col, int64_t b0,
                       int64_t b1)
{
    int64_t sc = s->ndim == 2 ? s->shape[1] : 1;
    size_t i = (size_t)((r / b0) * sc + col / b1);

    if (s->dtype == DT_BF16)
        return bf16_to_f32(((const uint16_t *)s->data)[i]);
    return ((const float *)s->data)[i];
}

int fp8_ref_dequantize(const char *src, const char *dst, enum dtype out_dtype)
{
    struct ckpt c;
    char path[FIXTURE_PATH + 64], *text, *out_text;
    size_t len;
    cJSON *cfg, *qc, *bs;
    int64_t block = 0;
    bool block_wise;
    void **bufs;
    int rc;

    snprintf(path, sizeof path, "%s/config.json", src);
    if ((rc = read_file(path, &text, &len, NULL)))
        return rc;
    cfg = cJSON_Parse(text);
    free(text);
    qc = cJSON_GetObjectItem(cfg, "quantization_config");
    block_wise = !strcmp(cJSON_GetObjectItem(qc, "quant_method")->valuestring, "fp8");
    if ((bs = cJSON_GetObjectItem(qc, "weight_block_size")))
        block = (int64_t)bs->child->valuedouble;
    cJSON_DeleteItemFromObject(cfg, "quantization_config");
    cJSON_ReplaceItemInObject(cfg, "torch_dtype",
                              cJSON_CreateString(out_dtype == DT_F32 ? "float32" : "bfloat16"));
    out_text = cJSON_Print(cfg);
    cJSON_Delete(cfg);
    if ((rc = ckpt_read(src, &c))) {
        free(out_text);
        return rc;
    }
    bufs = calloc((size_t)c.n, sizeof *bufs);
    for (int i = 0; i < c.n; i++) {
        struct fp8_ref_tensor *t = &c.t[i], *s;
        char sname[160];
        int64_t rows = t->shape[0], cols = t->shape[1];
        size_t base = strlen(t->name) - strlen("weight");

        if (strstr(t->name, "weight_scale")) {
            t->drop = true;
            continue;
        }
        if (t->dtype != DT_F8_E4M3)
            continue;
        snprintf(sname, sizeof sname, "%.*s%s", (int)base, t->name,
                 block_wise ? "weight_scale_inv" : "weight_scale");
        s = ckpt_find(&c, sname);
        bufs[i] = malloc((size_t)(rows * cols) * elem_size(out_dtype));
        for (int64_t r = 0; r < rows; r++)
            for (int64_t col = 0; col < cols; col++) {
                double w = fp8_ref_decode(((const uint8_t *)t->data)[r * cols + col]) *
                           (block_wise ? scale_of(s, r, col, block ? block : rows, block ? block : cols)
                                       : scale_of(s, r, col, 1, cols));

                if (out_dtype == DT_F32)
                    ((float *)bufs[i])[r * cols + col] = (float)w;
                else
                    ((uint16_t *)bufs[i])[r * cols + col] = f32_to_bf16((float)w);
            }
        t->data = bufs[i];
        t->dtype = out_dtype;
    }
    if (!(rc = copy_side_files(src, dst)) &&
        !(rc = fixture_write(dst, "config.json", out_text, strlen(out_text))))
        rc = write_ckpt(&c, dst);
    for (int i = 0; i < c.n; i++)
        free(bufs[i]);
    free(bufs);
    free(out_text);
    ckpt_free(&c);
    return rc;
}
