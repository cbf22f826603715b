/* jinja_value.c — the values a template computes with, as Python sees them: truthiness,
 * equality and ordering, lists and insertion-ordered dicts (hashed past a few entries),
 * conversion from cJSON, UTF-8 code points, and the error, work and memory accounting every
 * evaluator file shares (struct jinja_render; values live in its arena, through jinja__alloc). */
#include "engine/chat_template/jinja.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <xxhash.h>

#include "engine/base/util.h" /* ERR_LEN */

/* ---- errors and accounting ---- */

int jinja__fail(struct jinja_render *r, const char *fmt, ...)
{
    char msg[ERR_LEN];
    va_list ap;

    if (r->failed)
        return -EINVAL;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    r->failed = true;
    errf(r->err, "line %u: %s", (unsigned)r->line, msg);
    return -EINVAL;
}

int jinja__oom(struct jinja_render *r)
{
    if (!r->failed) {
        r->failed = true;
        errf(r->err, "line %u: the template used more than %zu bytes of memory", (unsigned)r->line,
             r->lim->max_memory_bytes);
    }
    return -ENOMEM;
}

int jinja__charge(struct jinja_render *r, uint64_t n)
{
    r->work += n;
    if (r->work > r->lim->max_work)
        return jinja__fail(r, "the template did more than %llu steps of work",
                           (unsigned long long)r->lim->max_work);
    return 0;
}

void *jinja__alloc(struct jinja_render *r, size_t n)
{
    void *p = arena_alloc(&r->arena, n);

    if (!p)
        jinja__oom(r);
    return p;
}

int jinja__fail_undefined(struct jinja_render *r, struct jinja_value v)
{
    if (v.s.p)
        return jinja__fail(r, "%.*s", (int)v.s.len, v.s.p);
    return jinja__fail(r, "undefined value");
}

/* ---- UTF-8 ---- */

size_t jinja__u8_next(const char *s, size_t len, size_t i, int32_t *cp)
{
    const unsigned char *p = (const unsigned char *)s + i;
    size_t left = len - i, n;
    uint32_t c = p[0], min;

    if (c < 0x80) {
        *cp = (int32_t)c;
        return i + 1;
    }
    if (c >= 0xc2 && c < 0xe0)
        n = 2, c &= 0x1f, min = 0x80;
    else if (c >= 0xe0 && c < 0xf0)
        n = 3, c &= 0x0f, min = 0x800;
    else if (c >= 0xf0 && c < 0xf5)
        n = 4, c &= 0x07, min = 0x10000;
    else
        goto bad;
    if (left < n)
        goto bad;
    for (size_t k = 1; k < n; k++) {
        if ((p[k] & 0xc0) != 0x80)
            goto bad;
        c = (c << 6) | (p[k] & 0x3f);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c < 0xe000))
        goto bad;
    *cp = (int32_t)c;
    return i + n;
bad:
    /* Python's surrogateescape: the byte stands for itself as U+DC80..U+DCFF. */
    *cp = 0xdc00 + p[0];
    return i + 1;
}

size_t jinja__u8_count(const char *p, size_t len)
{
    size_t n = 0;
    int32_t cp;

    for (size_t i = 0; i < len; n++) {
        if ((unsigned char)p[i] < 0x80)
            i++;
        else
            i = jinja__u8_next(p, len, i, &cp);
    }
    return n;
}

bool jinja__py_isspace(int32_t c)
{
    if (c < 0x80)
        return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20);
    return c == 0x85 || c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 ||
           c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

/* ---- Python semantics ---- */

const char *jinja__type_name(struct jinja_value v)
{
    switch (v.type) {
    case JV_UNDEF: return "Undefined";
    case JV_NONE: return "NoneType";
    case JV_BOOL: return "bool";
    case JV_INT: return "int";
    case JV_FLOAT: return "float";
    case JV_STR: return "str";
    case JV_LIST:
        if (v.flags & JV_F_VIEW)
            return v.flags & JV_F_ITEMS ? "dict_items" : v.flags & JV_F_KEYS ? "dict_keys" : "dict_values";
        return v.flags & JV_F_GEN ? "generator" : v.flags & JV_F_TUPLE ? "tuple" : "list";
    case JV_DICT: return "dict";
    case JV_NS: return "Namespace";
    case JV_MACRO: return "Macro";
    case JV_FUNC: return "builtin_function_or_method";
    case JV_LOOP: return "LoopContext";
    }
    return "object";
}

bool jinja__truthy(struct jinja_value v)
{
    switch (v.type) {
    case JV_UNDEF: case JV_NONE: return false;
    case JV_BOOL: return v.b;
    case JV_INT: return v.i != 0;
    case JV_FLOAT: return v.f != 0.0;
    case JV_STR: return v.s.len != 0;
    case JV_LIST: return (v.flags & JV_F_GEN) || v.list->len != 0;
    case JV_DICT: return v.dict->len != 0;
    default: return true;
    }
}

static double num_f(struct jinja_value v)
{
    return v.type == JV_FLOAT ? v.f : v.type == JV_INT ? (double)v.i : (double)v.b;
}

static int64_t num_i(struct jinja_value v)
{
    return v.type == JV_INT ? v.i : (int64_t)v.b;
}

/* Numeric equality across bool, int and float, exact as Python's. */
static bool num_eq(struct jinja_value a, struct jinja_value b)
{
    if (a.type != JV_FLOAT && b.type != JV_FLOAT)
        return num_i(a) == num_i(b);
    if (a.type == JV_FLOAT && b.type == JV_FLOAT)
        return a.f == b.f;
    {
        double f = a.type == JV_FLOAT ? a.f : b.f;
        int64_t i = a.type == JV_FLOAT ? num_i(b) : num_i(a);

        if (f != floor(f) || fabs(f) >= 9.2e18)
            return false;
        return (int64_t)f == i;
    }
}

int jinja__eq(struct jinja_render *r, struct jinja_value a, struct jinja_value b, bool *out)
{
    *out = false;
    if (jinja__is_num(a) && jinja__is_num(b)) {
        *out = num_eq(a, b);
        return 0;
    }
    if (a.type != b.type)
        return 0;
    switch (a.type) {
    case JV_UNDEF: case JV_NONE:
        *out = true;
        return 0;
    case JV_STR:
        *out = a.s.len == b.s.len && !memcmp(a.s.p, b.s.p, a.s.len);
        return jinja__charge(r, a.s.len / 64);
    case JV_LIST:
        if ((a.flags & (JV_F_TUPLE | JV_F_GEN | JV_F_VIEW)) != (b.flags & (JV_F_TUPLE | JV_F_GEN | JV_F_VIEW)))
            return 0;
        if (a.flags & JV_F_GEN) {
            *out = a.list == b.list;
            return 0;
        }
        if (a.list->len != b.list->len)
            return 0;
        if (r->depth++ > r->lim->max_depth)
            return jinja__fail(r, "values nested too deeply to compare");
        for (size_t i = 0; i < a.list->len; i++) {
            int rc = jinja__charge(r, 1);

            if (!rc)
                rc = jinja__eq(r, a.list->items[i], b.list->items[i], out);
            if (rc || !*out) {
                r->depth--;
                return rc;
            }
        }
        r->depth--;
        *out = true;
        return 0;
    case JV_DICT:
        if (a.dict->len != b.dict->len)
            return 0;
        if (r->depth++ > r->lim->max_depth)
            return jinja__fail(r, "values nested too deeply to compare");
        for (size_t i = 0; i < a.dict->len; i++) {
            struct jinja_value other;
            int rc = jinja__charge(r, 1);

            if (rc) {
                r->depth--;
                return rc;
            }
            if (!jinja__dict_get(b.dict, a.dict->keys[i], &other)) {
                r->depth--;
                return 0;
            }
            rc = jinja__eq(r, a.dict->vals[i], other, out);
            if (rc || !*out) {
                r->depth--;
                return rc;
            }
        }
        r->depth--;
        *out = true;
        return 0;
    case JV_NS: *out = a.dict == b.dict; return 0;
    case JV_MACRO: *out = a.closure->macro == b.closure->macro; return 0;
    case JV_FUNC: *out = a.func == b.func; return 0;
    case JV_LOOP: *out = a.loop == b.loop; return 0;
    default: return 0;
    }
}

int jinja__lt(struct jinja_render *r, struct jinja_value a, struct jinja_value b, bool *out)
{
    *out = false;
    if (a.type == JV_UNDEF)
        return jinja__fail_undefined(r, a);
    if (b.type == JV_UNDEF)
        return jinja__fail_undefined(r, b);
    if (jinja__is_num(a) && jinja__is_num(b)) {
        if (a.type != JV_FLOAT && b.type != JV_FLOAT)
            *out = num_i(a) < num_i(b);
        else
            *out = num_f(a) < num_f(b);
        return 0;
    }
    if (a.type == JV_STR && b.type == JV_STR) {
        /* UTF-8 byte order is code point order. */
        int c = memcmp(a.s.p, b.s.p, MIN(a.s.len, b.s.len));

        *out = c < 0 || (c == 0 && a.s.len < b.s.len);
        return jinja__charge(r, a.s.len / 64);
    }
    if (a.type == JV_LIST && b.type == JV_LIST && !((a.flags | b.flags) & (JV_F_GEN | JV_F_VIEW)) &&
        (a.flags & JV_F_TUPLE) == (b.flags & JV_F_TUPLE)) {
        size_t n = MIN(a.list->len, b.list->len);

        for (size_t i = 0; i < n; i++) {
            bool eq;
            int rc = jinja__charge(r, 1);

            if (!rc)
                rc = jinja__eq(r, a.list->items[i], b.list->items[i], &eq);
            if (rc)
                return rc;
            if (!eq)
                return jinja__lt(r, a.list->items[i], b.list->items[i], out);
        }
        *out = a.list->len < b.list->len;
        return 0;
    }
    return jinja__fail(r, "'<' not supported between instances of '%s' and '%s'", jinja__type_name(a),
                       jinja__type_name(b));
}

/* ---- lists ---- */

struct jinja_list *jinja__list_new(struct jinja_render *r, size_t cap)
{
    struct jinja_list *l = jinja__alloc(r, sizeof *l);

    if (!l)
        return NULL;
    /* Never a NULL items array, so that copying zero items stays defined. */
    cap = cap ? cap : 1;
    if (!(l->items = jinja__alloc(r, cap * sizeof *l->items)))
        return NULL;
    l->cap = cap;
    return l;
}

int jinja__list_push(struct jinja_render *r, struct jinja_list *l, struct jinja_value v)
{
    if (l->len == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        struct jinja_value *items = jinja__alloc(r, cap * sizeof *items);

        if (!items)
            return -ENOMEM;
        if (l->len)
            memcpy(items, l->items, l->len * sizeof *items);
        l->items = items;
        l->cap = cap;
    }
    l->items[l->len++] = v;
    return 0;
}

struct jinja_value jinja__list_val(struct jinja_list *l, uint8_t flags)
{
    struct jinja_value v = { .type = JV_LIST, .flags = flags };

    v.list = l;
    return v;
}

/* ---- dicts ---- */

#define DICT_LINEAR 8

static bool key_hashable(struct jinja_value k)
{
    if (k.type == JV_LIST)
        return k.flags & JV_F_TUPLE;
    return k.type == JV_STR || jinja__is_num(k) || k.type == JV_NONE;
}

static uint64_t key_hash(struct jinja_value k)
{
    switch (k.type) {
    case JV_STR:
        return XXH3_64bits(k.s.p, k.s.len);
    case JV_BOOL: case JV_INT:
        return XXH3_64bits(&(int64_t){ num_i(k) }, sizeof(int64_t));
    case JV_FLOAT:
        if (k.f == floor(k.f) && fabs(k.f) < 9.2e18)
            return XXH3_64bits(&(int64_t){ (int64_t)k.f }, sizeof(int64_t));
        return XXH3_64bits(&k.f, sizeof k.f);
    case JV_LIST: {
        uint64_t h = 0x9e3779b97f4a7c15ull;

        for (size_t i = 0; i < k.list->len; i++)
            h = (h ^ key_hash(k.list->items[i])) * 0x100000001b3ull;
        return h;
    }
    default:
        return 0;
    }
}

/* Key equality without errors: keys are strings, numbers, none or tuples of those. */
static bool key_eq(struct jinja_value a, struct jinja_value b)
{
    if (jinja__is_num(a) && jinja__is_num(b))
        return num_eq(a, b);
    if (a.type != b.type)
        return false;
    if (a.type == JV_STR)
        return a.s.len == b.s.len && !memcmp(a.s.p, b.s.p, a.s.len);
    if (a.type == JV_NONE)
        return true;
    if (a.type == JV_LIST) {
        if (a.list->len != b.list->len)
            return false;
        for (size_t i = 0; i < a.list->len; i++)
            if (!key_eq(a.list->items[i], b.list->items[i]))
                return false;
        return true;
    }
    return false;
}

static long dict_find(const struct jinja_dict *d, struct jinja_value key)
{
    if (!d->index_cap) {
        for (size_t i = 0; i < d->len; i++)
            if (key_eq(d->keys[i], key))
                return (long)i;
        return -1;
    }
    for (size_t h = key_hash(key) & (d->index_cap - 1);; h = (h + 1) & (d->index_cap - 1)) {
        uint32_t e = d->index[h];

        if (!e)
            return -1;
        if (key_eq(d->keys[e - 1], key))
            return (long)e - 1;
    }
}

static void index_insert(struct jinja_dict *d, size_t entry)
{
    size_t h = key_hash(d->keys[entry]) & (d->index_cap - 1);

    while (d->index[h])
        h = (h + 1) & (d->index_cap - 1);
    d->index[h] = (uint32_t)entry + 1;
}

struct jinja_dict *jinja__dict_new(struct jinja_render *r, size_t cap)
{
    struct jinja_dict *d = jinja__alloc(r, sizeof *d);

    if (!d)
        return NULL;
    if (cap) {
        d->keys = jinja__alloc(r, cap * sizeof *d->keys);
        d->vals = jinja__alloc(r, cap * sizeof *d->vals);
        if (!d->keys || !d->vals)
            return NULL;
        d->cap = cap;
    }
    return d;
}

int jinja__dict_set(struct jinja_render *r, struct jinja_dict *d, struct jinja_value key,
                    struct jinja_value val)
{
    long at;

    if (!key_hashable(key))
        return jinja__fail(r, "unhashable type: '%s'", jinja__type_name(key));
    at = dict_find(d, key);
    if (at >= 0) {
        d->vals[at] = val;
        return 0;
    }
    if (d->len >= UINT32_MAX - 1)
        return jinja__oom(r);
    if (d->len == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 8;
        struct jinja_value *keys = jinja__alloc(r, cap * sizeof *keys), *vals = jinja__alloc(r,
                                                                                             cap * sizeof *vals);

        if (!keys || !vals)
            return -ENOMEM;
        if (d->len) {
            memcpy(keys, d->keys, d->len * sizeof *keys);
            memcpy(vals, d->vals, d->len * sizeof *vals);
        }
        d->keys = keys;
        d->vals = vals;
        d->cap = cap;
    }
    d->keys[d->len] = key;
    d->vals[d->len] = val;
    d->len++;
    if (d->len > DICT_LINEAR && d->len * 2 > d->index_cap) {
        size_t cap = 32;

        while (cap < d->len * 4)
            cap *= 2;
        d->index = jinja__alloc(r, cap * sizeof *d->index);
        if (!d->index)
            return -ENOMEM;
        d->index_cap = cap;
        for (size_t i = 0; i < d->len; i++)
            index_insert(d, i);
    } else if (d->index_cap) {
        index_insert(d, d->len - 1);
    }
    return 0;
}

bool jinja__dict_get(const struct jinja_dict *d, struct jinja_value key, struct jinja_value *out)
{
    long at;

    if (!key_hashable(key))
        return false;
    at = dict_find(d, key);
    if (at < 0)
        return false;
    *out = d->vals[at];
    return true;
}

bool jinja__dict_get_str(const struct jinja_dict *d, const char *name, size_t len, struct jinja_value *out)
{
    return jinja__dict_get(d, jinja__str(name, len), out);
}

struct jinja_value jinja__str_copy(struct jinja_render *r, const char *p, size_t len, bool *ok)
{
    char *s = jinja__alloc(r, len + 1);

    *ok = s != NULL;
    if (!s)
        return jinja__str("", 0);
    memcpy(s, p, len);
    return jinja__str(s, len);
}

/* ---- from cJSON ---- */

int jinja__from_json(struct jinja_render *r, const cJSON *j, struct jinja_value *out, int depth)
{
    int rc;

    if (depth > 512)
        return jinja__fail(r, "JSON input nested deeper than 512");
    if ((rc = jinja__charge(r, 1)))
        return rc;
    if (cJSON_IsNull(j)) {
        *out = jinja__none();
    } else if (cJSON_IsBool(j)) {
        *out = jinja__bool(cJSON_IsTrue(j));
    } else if (cJSON_IsNumber(j)) {
        /* cJSON keeps no int/float distinction: an integral value in range is an int,
         * as json.loads gives for the JSON a client writes (1, not 1.0). */
        double d = j->valuedouble;

        if (d == floor(d) && fabs(d) < 9.2e18)
            *out = jinja__int((int64_t)d);
        else
            *out = jinja__float(d);
    } else if (cJSON_IsString(j)) {
        const char *s = j->valuestring ? j->valuestring : "";

        *out = jinja__str(s, strlen(s));
    } else if (cJSON_IsArray(j)) {
        struct jinja_list *l = jinja__list_new(r, (size_t)cJSON_GetArraySize(j));

        if (!l)
            return -ENOMEM;
        for (const cJSON *c = j->child; c; c = c->next) {
            struct jinja_value v;

            if ((rc = jinja__from_json(r, c, &v, depth + 1)) || (rc = jinja__list_push(r, l, v)))
                return rc;
        }
        *out = jinja__list_val(l, 0);
    } else if (cJSON_IsObject(j)) {
        struct jinja_dict *d = jinja__dict_new(r, (size_t)cJSON_GetArraySize(j));

        if (!d)
            return -ENOMEM;
        for (const cJSON *c = j->child; c; c = c->next) {
            struct jinja_value v;
            const char *k = c->string ? c->string : "";

            if ((rc = jinja__from_json(r, c, &v, depth + 1)) ||
                (rc = jinja__dict_set(r, d, jinja__str(k, strlen(k)), v)))
                return rc;
        }
        out->type = JV_DICT;
        out->flags = 0;
        out->dict = d;
    } else {
        /* cJSON_Raw or an invalid node: a string of its text, if any. */
        const char *s = j->valuestring ? j->valuestring : "";

        *out = jinja__str(s, strlen(s));
    }
    return 0;
}

int jinja__iterate(struct jinja_render *r, struct jinja_value v, struct jinja_list **out)
{
    struct jinja_list *l;

    switch (v.type) {
    case JV_UNDEF:
        *out = jinja__list_new(r, 0);
        return *out ? 0 : -ENOMEM;
    case JV_LIST:
        if (v.flags & JV_F_GEN) {
            /* A generator runs once: a second walk sees nothing, as in Python. */
            if (v.list->consumed) {
                *out = jinja__list_new(r, 0);
                return *out ? 0 : -ENOMEM;
            }
            v.list->consumed = true;
        }
        *out = v.list;
        return 0;
    case JV_DICT: {
        struct jinja_dict *d = v.dict;

        if (!(l = jinja__list_new(r, d->len)))
            return -ENOMEM;
        memcpy(l->items, d->keys, d->len * sizeof *l->items);
        l->len = d->len;
        *out = l;
        return jinja__charge(r, d->len);
    }
    case JV_STR: {
        int32_t cp;

        if (!(l = jinja__list_new(r, 0)))
            return -ENOMEM;
        for (size_t i = 0, next; i < v.s.len; i = next) {
            int rc;

            next = jinja__u8_next(v.s.p, v.s.len, i, &cp);
            if ((rc = jinja__list_push(r, l, jinja__str(v.s.p + i, next - i))))
                return rc;
        }
        *out = l;
        return jinja__charge(r, v.s.len);
    }
    default:
        return jinja__fail(r, "'%s' object is not iterable", jinja__type_name(v));
    }
}

int jinja__sort(struct jinja_render *r, struct jinja_value *items, size_t n,
                int (*less)(struct jinja_render *r, struct jinja_value a, struct jinja_value b,
                            void *ctx, bool *out),
                void *ctx)
{
    struct jinja_value *tmp;
    int rc;

    if (n < 2)
        return 0;
    if ((rc = jinja__charge(r, n)))
        return rc;
    if (!(tmp = jinja__alloc(r, n * sizeof *tmp)))
        return -ENOMEM;
    /* Bottom-up merge sort: stable, O(n log n) comparisons, no recursion. */
    for (size_t width = 1; width < n; width *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * width) {
            size_t mid = MIN(lo + width, n), hi = MIN(lo + 2 * width, n), i = lo, j = mid, k = lo;

            while (i < mid && j < hi) {
                bool lt;

                if ((rc = jinja__charge(r, 1)) || (rc = less(r, items[j], items[i], ctx, &lt)))
                    return rc;
                tmp[k++] = lt ? items[j++] : items[i++];
            }
            while (i < mid)
                tmp[k++] = items[i++];
            while (j < hi)
                tmp[k++] = items[j++];
        }
        memcpy(items, tmp, n * sizeof *items);
    }
    return 0;
}
