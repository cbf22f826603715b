/* model_internal.h — what engine/model/model.c shares with the parsers of its model families
 * (model_families.c: Gemma, MoE, Phi-3's rotary) and the MoE expert binding
 * (model_experts.c) and gpt-oss's section (model_gptoss.c): the typed JSON field readers with "<path>: <field>: <problem>"
 * messages, the tensor binder, and their entry points. Private to engine/model/. The field
 * readers are static inline so that each parser file has them without an extern symbol. */
#ifndef OSPREY_MODEL_INTERNAL_H
#define OSPREY_MODEL_INTERNAL_H

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "engine/model/model.h"

#define MAX_DIM  (1 << 20)   /* hidden, ffn, heads, head_dim: far above any real model */
#define MAX_VOCAB (1 << 24)

static inline bool is_gemma(enum model_arch a)
{
    return a == ARCH_GEMMA2 || a == ARCH_GEMMA3;
}

/* ---- typed JSON fields with "<path>: <field>: <problem>" messages ---- */

struct cfg_parse {
    const char *path;    /* the file named in messages */
    char *err;
    bool has_dtype;      /* config.json names the weights' dtype */
};

static inline const char *json_type(const cJSON *j)
{
    if (cJSON_IsNull(j)) return "null";
    if (cJSON_IsBool(j)) return "a boolean";
    if (cJSON_IsNumber(j)) return "a number";
    if (cJSON_IsString(j)) return "a string";
    if (cJSON_IsArray(j)) return "an array";
    return "an object";
}

/* The member `key`, or NULL when absent or JSON null (both mean "use the default"). */
static inline const cJSON *member(const cJSON *obj, const char *key)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsNull(j) ? NULL : j;
}

static inline int bad(struct cfg_parse *p, const char *field, const char *fmt, const char *what)
{
    char msg[256];

    snprintf(msg, sizeof msg, fmt, what);
    errf(p->err, "%s: %s: %s", p->path, field, msg);
    return -EINVAL;
}

static inline bool is_int(const cJSON *j)
{
    return cJSON_IsNumber(j) && j->valuedouble == floor(j->valuedouble) &&
           fabs(j->valuedouble) <= 2147483647.0;
}

/* An integer in [lo, hi]; *v keeps its default when absent. Absent and required is an error. */
static inline int get_int(struct cfg_parse *p, const cJSON *obj, const char *key, const char *field,
                   bool required, int lo, int hi, int *v)
{
    const cJSON *j = member(obj, key);
    char range[96];

    if (!j)
        return required ? bad(p, field, "%s", "missing") : 0;
    if (!is_int(j))
        return bad(p, field, "expected an integer, got %s", json_type(j));
    if (j->valuedouble < lo || j->valuedouble > hi) {
        snprintf(range, sizeof range, "%d is out of range [%d, %d]", (int)j->valuedouble, lo, hi);
        return bad(p, field, "%s", range);
    }
    *v = (int)j->valuedouble;
    return 0;
}

/* A number > 0 (or >= 0 with allow_zero); *v keeps its default when absent. */
static inline int get_pos(struct cfg_parse *p, const cJSON *obj, const char *key, const char *field,
                   bool required, bool allow_zero, double *v)
{
    const cJSON *j = member(obj, key);

    if (!j)
        return required ? bad(p, field, "%s", "missing") : 0;
    if (!cJSON_IsNumber(j))
        return bad(p, field, "expected a number, got %s", json_type(j));
    if (!isfinite(j->valuedouble) || j->valuedouble < 0 || (!allow_zero && j->valuedouble == 0))
        return bad(p, field, "%s", allow_zero ? "must be >= 0" : "must be > 0");
    *v = j->valuedouble;
    return 0;
}

static inline int get_bool(struct cfg_parse *p, const cJSON *obj, const char *key, bool *v)
{
    const cJSON *j = member(obj, key);

    if (!j)
        return 0;
    if (!cJSON_IsBool(j))
        return bad(p, key, "expected true or false, got %s", json_type(j));
    *v = cJSON_IsTrue(j);
    return 0;
}

/* A string member, NULL when absent; sets rc on a wrong type. */
static inline const char *get_str(struct cfg_parse *p, const cJSON *obj, const char *key, int *rc)
{
    const cJSON *j = member(obj, key);

    if (j && !cJSON_IsString(j)) {
        *rc = bad(p, key, "expected a string, got %s", json_type(j));
        return NULL;
    }
    return j ? j->valuestring : NULL;
}

/* ---- binding tensors ---- */

struct model_dummy;

struct binder {
    const struct st_set *st;
    const char *where;      /* the file that lists the tensors, for "missing" messages */
    char *err;
    struct model_dummy *dummy;   /* --load-format dummy: tensors from its pools, st is NULL */
    size_t mxfp4_bytes;          /* MXFP4 experts dequantized so far (model_experts.c), */
    enum dtype mxfp4_dtype;      /* into this dtype, */
    double mxfp4_seconds;
};

/* Binds `name` into t and checks its shape against [d0] or [d0, d1] (model.c). */
int model__bind(struct binder *b, struct tensor_ref *t, const char *name, int ndim, int64_t d0,
                int64_t d1);

/* model_families.c */
int model__parse_rotary_dim(struct cfg_parse *p, const cJSON *root, struct model_config *cfg);
int model__parse_longrope(struct cfg_parse *p, const cJSON *rs, const char *field,
                          struct model_config *cfg);
int model__finish_longrope(struct cfg_parse *p, const cJSON *root, struct model_config *cfg);
int model__parse_moe(struct cfg_parse *p, const cJSON *root, struct model_config *cfg);
int model__parse_gemma(struct cfg_parse *p, const cJSON *root, struct model_config *cfg);

/* model_gptoss.c */
int model__parse_gpt_oss(struct cfg_parse *p, const cJSON *root, struct model_config *cfg);
int model__parse_yarn(struct cfg_parse *p, const cJSON *rs, const char *field,
                      struct model_config *cfg);

/* model_dummy.c: --load-format dummy's pools of random weights (in cfg's float dtype; the
 * linear layers' as e4m3 with one scale a row when fp8) and norms; _bind points t at them
 * with the shape asked, at a window of the pool hashed from its name (-EINVAL past the pools'
 * size); _bytes is what the pools hold on the host. */
int model__dummy_create(struct model_dummy **out, const struct model_config *c, uint64_t seed,
                        bool fp8, char *err);
int model__dummy_bind(struct model_dummy *d, struct tensor_ref *t, const char *name, int ndim,
                      int64_t d0, int64_t d1, bool linear);
size_t model__dummy_bytes(const struct model_dummy *d);
void model__dummy_destroy(struct model_dummy *d);

/* model_experts.c: a MoE layer's router, experts and shared expert */
int model__bind_moe(struct binder *b, const struct model_config *c, const char *prefix, int l,
                    struct layer_tensors *lt);

#endif
