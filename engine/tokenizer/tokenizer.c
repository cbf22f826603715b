/* tokenizer.c — the tokenizer's API: loading a Hugging Face tokenizer.json (model, added
 * tokens, normalizer, pre-tokenizer, post-processor, decoder; each parsed by its own file
 * with the readers of tokenizer_json.c) and tokenizer_config.json (bos/eos,
 * add_bos_token/add_eos_token, chat_template), and the read-only queries. Encoding is in
 * tokenizer_encode.c, decoding in tokenizer_decode.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>   /* access */

#include "engine/base/log.h"
#include "engine/tokenizer/tokenizer_internal.h"
#include "engine/base/util.h"

/* --- added tokens ---------------------------------------------------------------------- */

static int find_added(const struct tokenizer *t, const char *s, size_t len)
{
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].len == len && !memcmp(t->added[i].content, s, len))
            return i;
    return -1;
}

/* Ids as Hugging Face assigns them on load: a token already in the model vocabulary keeps
 * that id, a new one takes the next id after the vocabulary (counted in entries); the
 * file's "id" is only checked. A repeated content replaces the earlier entry. */
static int load_added(struct tokenizer *t, const cJSON *list, const char *file, char *err)
{
    const cJSON *e;
    int32_t next_id = 0;
    int i = 0;

    if (!list || cJSON_IsNull(list))
        return 0;
    if (!cJSON_IsArray(list)) {
        errf(err, "%s: added_tokens: expected an array", file);
        return -EINVAL;
    }
    for (int id = 0; id < t->vocab_size; id++)
        next_id += t->tok[id] != NULL;
    t->added = calloc(MAX(cJSON_GetArraySize(list), 1), sizeof *t->added);
    if (!t->added)
        return -ENOMEM;
    cJSON_ArrayForEach(e, list) {
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(e, "content");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
        struct tk_added a = { 0 };
        char where[64];
        size_t len;
        int rc, k;

        snprintf(where, sizeof where, "added_tokens[%d]", i++);
        if (!cJSON_IsString(content) || !cJSON_IsNumber(id)) {
            errf(err, "%s: %s: expected an object with a string \"content\" and a numeric \"id\"",
                 file, where);
            return -EINVAL;
        }
        len = strlen(content->valuestring);
        if (tk__utf8_valid_prefix(content->valuestring, len) != len) {
            errf(err, "%s: %s.content: not valid UTF-8", file, where);
            return -EINVAL;
        }
        if ((rc = tk__json_bool(e, "special", false, &a.special, where, file, err)) ||
            (rc = tk__json_bool(e, "lstrip", false, &a.lstrip, where, file, err)) ||
            (rc = tk__json_bool(e, "rstrip", false, &a.rstrip, where, file, err)) ||
            (rc = tk__json_bool(e, "single_word", false, &a.single_word, where, file, err)) ||
            (rc = tk__json_bool(e, "normalized", !a.special, &a.normalized, where, file, err)))
            return rc;
        if (len == 0)
            continue;
        if ((k = find_added(t, content->valuestring, len)) >= 0)
            a.id = t->added[k].id;
        else if ((a.id = tk__strmap_get(&t->vocab, t->tok, t->tok_len, content->valuestring, len)) < 0)
            a.id = next_id++;
        if (a.id >= TK_MAX_ID) {
            errf(err, "%s: %s: too many tokens (id %d)", file, where, a.id);
            return -EINVAL;
        }
        if (a.id != id->valuedouble)
            LOG(LL_WARN, "tok", "%s: %s \"%.64s\" has id %g in the file but gets id %d",
                file, where, content->valuestring, id->valuedouble, a.id);
        if (!(a.content = arena_strndup(&t->strings, content->valuestring, len)))
            return -ENOMEM;
        a.len = len;
        if (k < 0)
            k = t->n_added++;
        t->added[k] = a;
    }
    return 0;
}

/* Grows the per-id tables to cover the added tokens and fills them. */
static int index_added(struct tokenizer *t)
{
    int size = t->vocab_size, w = 0;

    for (int i = 0; i < t->n_added; i++)
        size = MAX(size, t->added[i].id + 1);
    if (size > t->vocab_size) {
        const char **tok = realloc(t->tok, size * sizeof *tok);
        uint32_t *tok_len;

        if (!tok)
            return -ENOMEM;
        t->tok = tok;
        if (!(tok_len = realloc(t->tok_len, size * sizeof *tok_len)))
            return -ENOMEM;
        t->tok_len = tok_len;
        memset(t->tok + t->vocab_size, 0, (size - t->vocab_size) * sizeof *tok);
        memset(t->tok_len + t->vocab_size, 0, (size - t->vocab_size) * sizeof *tok_len);
        t->vocab_size = size;
    }
    t->added_of = malloc(MAX(size, 1) * sizeof *t->added_of);
    t->special = calloc(MAX(size, 1), 1);
    if (!t->added_of || !t->special)
        return -ENOMEM;
    for (int id = 0; id < size; id++)
        t->added_of[id] = -1;
    /* Two entries with one id (through the vocabulary): the later wins, as in a map. */
    for (int i = 0; i < t->n_added; i++)
        t->added_of[t->added[i].id] = i;
    for (int i = 0; i < t->n_added; i++) {
        const struct tk_added *a = &t->added[i];
        int32_t v;

        if (t->added_of[a->id] != i)
            continue;
        if (a->special) {
            /* decode's skip_special compares token strings: a vocabulary entry with the
             * same content is skipped too. */
            t->special[a->id] = 1;
            if ((v = tk__strmap_get(&t->vocab, t->tok, t->tok_len, a->content, a->len)) >= 0)
                t->special[v] = 1;
        }
    }
    /* Shadowed entries must not match text either. */
    for (int i = 0; i < t->n_added; i++)
        if (t->added_of[t->added[i].id] == i) {
            t->added[w] = t->added[i];
            t->added_of[t->added[w].id] = w;
            w++;
        }
    t->n_added = w;
    return 0;
}

/* --- tokenizer_config.json ------------------------------------------------------------- */

/* bos_token / eos_token: a string, or an object with "content"; NULL when absent. */
static int config_token(const cJSON *cfg, const char *key, char **out, const char *file, char *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);

    *out = NULL;
    if (cJSON_IsObject(v))
        v = cJSON_GetObjectItemCaseSensitive(v, "content");
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsString(v)) {
        errf(err, "%s: %s: expected a string or an object with \"content\"", file, key);
        return -EINVAL;
    }
    *out = strdup(v->valuestring);
    return *out ? 0 : -ENOMEM;
}

static int config_template(struct tokenizer *t, const cJSON *cfg, const char *file, char *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template"), *e;

    if (cJSON_IsArray(v)) {
        cJSON_ArrayForEach(e, v) {
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(e, "name");

            if (cJSON_IsString(name) && !strcmp(name->valuestring, "default")) {
                v = cJSON_GetObjectItemCaseSensitive(e, "template");
                break;
            }
        }
        if (!e)
            return 0;
    }
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsString(v)) {
        errf(err, "%s: chat_template: expected a string or a list of {name, template}", file);
        return -EINVAL;
    }
    t->chat_template = strdup(v->valuestring);
    t->chat_template_file = "tokenizer_config.json";
    return t->chat_template ? 0 : -ENOMEM;
}

static int load_config(struct tokenizer *t, const char *json, size_t len, const char *file,
                       char *err)
{
    const char *end = NULL;
    cJSON *cfg = cJSON_ParseWithLengthOpts(json, len, &end, false);
    const cJSON *add_bos, *add_eos;
    int rc;

    if (!cfg || !cJSON_IsObject(cfg)) {
        errf(err, "%s: not a JSON object (parse stopped at byte %zu)", file,
             end && end >= json && end <= json + len ? (size_t)(end - json) : (size_t)0);
        cJSON_Delete(cfg);
        return -EINVAL;
    }
    if ((rc = config_token(cfg, "bos_token", &t->bos_token, file, err)) ||
        (rc = config_token(cfg, "eos_token", &t->eos_token, file, err)) ||
        (rc = config_template(t, cfg, file, err)))
        goto out;
    t->bos_id = t->bos_token ? tokenizer_token_to_id(t, t->bos_token) : -1;
    t->eos_id = t->eos_token ? tokenizer_token_to_id(t, t->eos_token) : -1;
    add_bos = cJSON_GetObjectItemCaseSensitive(cfg, "add_bos_token");
    add_eos = cJSON_GetObjectItemCaseSensitive(cfg, "add_eos_token");
    if ((add_bos && !cJSON_IsBool(add_bos) && !cJSON_IsNull(add_bos)) ||
        (add_eos && !cJSON_IsBool(add_eos) && !cJSON_IsNull(add_eos))) {
        errf(err, "%s: add_bos_token / add_eos_token: expected true or false", file);
        rc = -EINVAL;
        goto out;
    }
    /* As transformers' Llama tokenizers: the flags replace the post-processor. */
    if (cJSON_IsBool(add_bos) || cJSON_IsBool(add_eos))
        rc = tk__post_override(t, cJSON_IsTrue(add_bos), cJSON_IsTrue(add_eos));
out:
    cJSON_Delete(cfg);
    return rc;
}

/* --- loading --------------------------------------------------------------------------- */

static int load(struct tokenizer *t, const char *json, size_t len, const char *file, char *err)
{
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, false);
    const cJSON *model;
    int rc = -EINVAL;

    if (!root) {
        errf(err, "%s: malformed JSON (parse stopped at byte %zu of %zu)", file,
             end && end >= json && end <= json + len ? (size_t)(end - json) : (size_t)0, len);
        return -EINVAL;
    }
    if (!cJSON_IsObject(root)) {
        errf(err, "%s: expected a JSON object at the top", file);
        goto out;
    }
    model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!model) {
        errf(err, "%s: model: missing", file);
        goto out;
    }
    tk__byte_level_init(t);
    if ((rc = tk__bpe_load(t, model, file, err)) ||
        (rc = load_added(t, cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), file, err)) ||
        (rc = index_added(t)) ||
        (rc = tk__norm_parse(t, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), file, err)) ||
        (rc = tk__pretok_parse(t, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), file, err)) ||
        (rc = tk__post_parse(t, cJSON_GetObjectItemCaseSensitive(root, "post_processor"), file, err)) ||
        (rc = tk__dec_parse(t, cJSON_GetObjectItemCaseSensitive(root, "decoder"), file, err)))
        goto out;
    rc = tk__added_prepare(t, file, err);
out:
    if (rc == -ENOMEM)
        errf(err, "%s: out of memory", file);
    cJSON_Delete(root);
    return rc;
}

static int load_all(struct tokenizer **out, const char *json, size_t len, const char *file,
                    const char *config_json, size_t config_len, const char *config_file, char *err)
{
    struct tokenizer *t = calloc(1, sizeof *t);
    int rc;

    *out = NULL;
    if (!t) {
        errf(err, "%s: out of memory", file);
        return -ENOMEM;
    }
    /* A vocabulary takes megabytes: blocks of 1 MiB keep the mallocs few. */
    arena_init_sized(&t->strings, 1 << 20, SIZE_MAX);
    t->unk_id = t->bos_id = t->eos_id = -1;
    rc = load(t, json, len, file, err);
    if (!rc && config_json)
        rc = load_config(t, config_json, config_len, config_file, err);
    if (rc) {
        tokenizer_destroy(t);
        return rc;
    }
    *out = t;
    return 0;
}

int tokenizer_load_json(struct tokenizer **out, const char *json, size_t len,
                        const char *config_json, size_t config_len, char *err)
{
    return load_all(out, json, len, "tokenizer.json", config_json, config_len,
                    "tokenizer_config.json", err);
}

/* Largest files read whole from a model folder, with margin over real models: tokenizer.json
 * is ~11 MB for Qwen3 and ~33 MB for Gemma 3; tokenizer_config.json ~1 MB at most (a full
 * added_tokens_decoder); a chat template tens of KiB. A FIFO or /dev/zero in their place is
 * refused (read_file_bounded), never waited on or read until memory runs out. */
#define TOKENIZER_JSON_MAX ((size_t)256 << 20)
#define TOKENIZER_CONFIG_MAX ((size_t)64 << 20)
#define CHAT_TEMPLATE_MAX ((size_t)16 << 20)

static int read_optional(const char *dir, const char *name, size_t max_bytes, char **buf, size_t *len,
                         char *err)
{
    char path[4096];

    *buf = NULL;
    *len = 0;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (access(path, F_OK) != 0)
        return 0;
    return read_file_bounded(path, max_bytes, buf, len, err);
}

int tokenizer_load(struct tokenizer **out, const char *dir, char *err)
{
    char path[4096], cfg_path[4096], *json = NULL, *cfg = NULL, *jinja = NULL;
    size_t len, cfg_len, jinja_len;
    double t0 = now_s();
    int rc;

    *out = NULL;
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    snprintf(cfg_path, sizeof cfg_path, "%s/tokenizer_config.json", dir);
    if ((rc = read_file_bounded(path, TOKENIZER_JSON_MAX, &json, &len, err)) ||
        (rc = read_optional(dir, "tokenizer_config.json", TOKENIZER_CONFIG_MAX, &cfg, &cfg_len, err)) ||
        (rc = load_all(out, json, len, path, cfg, cfg_len, cfg_path, err)))
        goto out;
    /* Newer model folders keep the template beside the config. */
    if (!(*out)->chat_template) {
        if ((rc = read_optional(dir, "chat_template.jinja", CHAT_TEMPLATE_MAX, &jinja, &jinja_len, err)))
            goto out;
        (*out)->chat_template = jinja;
        (*out)->chat_template_file = jinja ? "chat_template.jinja" : NULL;
        jinja = NULL;
    }
    LOG(LL_INFO, "tok", "%s: %d tokens (%d added), loaded in %.0f ms", path,
        (*out)->vocab_size, (*out)->n_added, (now_s() - t0) * 1e3);
out:
    if (rc) {
        tokenizer_destroy(*out);
        *out = NULL;
    }
    free(json);
    free(cfg);
    free(jinja);
    return rc;
}

void tokenizer_destroy(struct tokenizer *t)
{
    if (!t)
        return;
    for (int i = 0; i < t->n_norm; i++)
        tk__norm_free(&t->norm[i]);
    for (int i = 0; i < t->n_pretok; i++)
        tk__pretok_free(&t->pretok[i]);
    for (int i = 0; i < t->n_dec; i++)
        tk__dec_free(&t->dec[i]);
    for (int i = 0; i < t->n_post; i++)
        tk__post_free(&t->post[i]);
    for (int i = 0; i < t->n_added; i++)
        free(t->added[i].norm);
    free(t->added);
    free(t->added_of);
    free(t->special);
    free(t->raw_match.node);
    free(t->norm_match.node);
    free(t->tok);
    free(t->tok_len);
    tk__strmap_free(&t->vocab);
    tk__mergemap_free(&t->merges);
    free(t->cont_prefix);
    free(t->end_suffix);
    free(t->bos_token);
    free(t->eos_token);
    free(t->chat_template);
    arena_fini(&t->strings);
    free(t);
}

/* --- queries --------------------------------------------------------------------------- */

int tokenizer_vocab_size(const struct tokenizer *t)
{
    return t->vocab_size;
}

int32_t tokenizer_token_to_id(const struct tokenizer *t, const char *token)
{
    size_t len = strlen(token);
    int k = find_added(t, token, len);

    if (k >= 0)
        return t->added[k].id;
    return tk__strmap_get(&t->vocab, t->tok, t->tok_len, token, len);
}

const char *tokenizer_id_to_token(const struct tokenizer *t, int32_t id)
{
    if (id < 0 || id >= t->vocab_size)
        return NULL;
    if (t->added_of[id] >= 0)
        return t->added[t->added_of[id]].content;
    return t->tok[id];
}

bool tokenizer_is_special(const struct tokenizer *t, int32_t id)
{
    return id >= 0 && id < t->vocab_size && t->special[id];
}

int32_t tokenizer_bos_id(const struct tokenizer *t) { return t->bos_id; }
int32_t tokenizer_eos_id(const struct tokenizer *t) { return t->eos_id; }
const char *tokenizer_bos_token(const struct tokenizer *t) { return t->bos_token; }
const char *tokenizer_eos_token(const struct tokenizer *t) { return t->eos_token; }
const char *tokenizer_chat_template(const struct tokenizer *t) { return t->chat_template; }
const char *tokenizer_chat_template_file(const struct tokenizer *t) { return t->chat_template_file; }
