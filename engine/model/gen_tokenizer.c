/* gen_tokenizer.c — tokenizer.json and tokenizer_config.json for gen-model. The generated
 * file has the shape of Llama 3's: a BPE model (vocab + merges, byte-level alphabet), a
 * Split pre-tokenizer with Llama 3's regex followed by ByteLevel(use_regex false), a
 * ByteLevel decoder, a TemplateProcessing post-processor that adds <|begin_of_text|>, and
 * the special tokens as added_tokens above the BPE ids. */
#include "engine/model/gen_tokenizer.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine/model/bpe_train.h"
#include "engine/base/util.h"

/* Llama-3-style chat template: every message as header + content + <|eot_id|>, BOS first. */
static const char chat_template[] =
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + "
    "message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}";

enum { SP_BOS = 0, SP_EOS = 1, SP_START_HEADER = 6, SP_END_HEADER = 7, SP_EOT = 9 };

/* Name of special token i (0-based above the BPE ids), in Llama 3's layout. */
static void special_name(int i, char *out, size_t len)
{
    static const struct { int at; const char *name; } named[] = {
        { SP_BOS, "<|begin_of_text|>" }, { SP_EOS, "<|end_of_text|>" },
        { SP_START_HEADER, "<|start_header_id|>" }, { SP_END_HEADER, "<|end_header_id|>" },
        { SP_EOT, "<|eot_id|>" },
    };
    int below = 0;

    for (size_t k = 0; k < ARRAY_LEN(named); k++) {
        if (named[k].at == i) {
            snprintf(out, len, "%s", named[k].name);
            return;
        }
        below += named[k].at < i;
    }
    snprintf(out, len, "<|reserved_special_token_%d|>", i - below);
}

/* {"content": ..., "lstrip": false, ...} as both files spell an added token. */
static cJSON *added_token(const char *content, int id)
{
    cJSON *o = cJSON_CreateObject();

    if (id >= 0)
        cJSON_AddNumberToObject(o, "id", id);
    cJSON_AddStringToObject(o, "content", content);
    cJSON_AddBoolToObject(o, "single_word", false);
    cJSON_AddBoolToObject(o, "lstrip", false);
    cJSON_AddBoolToObject(o, "rstrip", false);
    cJSON_AddBoolToObject(o, "normalized", false);
    cJSON_AddBoolToObject(o, "special", true);
    return o;
}

static cJSON *pre_tokenizer(void)
{
    cJSON *seq = cJSON_CreateObject(), *list = cJSON_AddArrayToObject(seq, "pretokenizers");
    cJSON *split = cJSON_CreateObject(), *bl = cJSON_CreateObject();

    cJSON_AddStringToObject(seq, "type", "Sequence");
    cJSON_AddStringToObject(split, "type", "Split");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(split, "pattern"), "Regex", bpe_llama3_pattern);
    cJSON_AddStringToObject(split, "behavior", "Isolated");
    cJSON_AddBoolToObject(split, "invert", false);
    cJSON_AddStringToObject(bl, "type", "ByteLevel");
    cJSON_AddBoolToObject(bl, "add_prefix_space", false);
    cJSON_AddBoolToObject(bl, "trim_offsets", true);
    cJSON_AddBoolToObject(bl, "use_regex", false);
    cJSON_AddItemToArray(list, split);
    cJSON_AddItemToArray(list, bl);
    return seq;
}

static cJSON *template_piece(const char *kind, const char *id, int type_id)
{
    cJSON *o = cJSON_CreateObject(), *in = cJSON_AddObjectToObject(o, kind);

    cJSON_AddStringToObject(in, "id", id);
    cJSON_AddNumberToObject(in, "type_id", type_id);
    return o;
}

/* TemplateProcessing: "<|begin_of_text|> $A" and "<|begin_of_text|> $A <|begin_of_text|> $B". */
static cJSON *post_processor(const char *bos, int bos_id)
{
    cJSON *pp = cJSON_CreateObject(), *single, *pair, *sp, *ids, *toks;

    cJSON_AddStringToObject(pp, "type", "TemplateProcessing");
    single = cJSON_AddArrayToObject(pp, "single");
    cJSON_AddItemToArray(single, template_piece("SpecialToken", bos, 0));
    cJSON_AddItemToArray(single, template_piece("Sequence", "A", 0));
    pair = cJSON_AddArrayToObject(pp, "pair");
    cJSON_AddItemToArray(pair, template_piece("SpecialToken", bos, 0));
    cJSON_AddItemToArray(pair, template_piece("Sequence", "A", 0));
    cJSON_AddItemToArray(pair, template_piece("SpecialToken", bos, 1));
    cJSON_AddItemToArray(pair, template_piece("Sequence", "B", 1));
    sp = cJSON_AddObjectToObject(cJSON_AddObjectToObject(pp, "special_tokens"), bos);
    cJSON_AddStringToObject(sp, "id", bos);
    ids = cJSON_AddArrayToObject(sp, "ids");
    cJSON_AddItemToArray(ids, cJSON_CreateNumber(bos_id));
    toks = cJSON_AddArrayToObject(sp, "tokens");
    cJSON_AddItemToArray(toks, cJSON_CreateString(bos));
    return pp;
}

static cJSON *byte_level(bool add_prefix_space, bool trim_offsets)
{
    cJSON *o = cJSON_CreateObject();

    cJSON_AddStringToObject(o, "type", "ByteLevel");
    cJSON_AddBoolToObject(o, "add_prefix_space", add_prefix_space);
    cJSON_AddBoolToObject(o, "trim_offsets", trim_offsets);
    cJSON_AddBoolToObject(o, "use_regex", true);
    return o;
}

/* The "model" object: vocab in id order and merges as "left right" strings. */
static cJSON *bpe_model(const struct bpe_train *b)
{
    cJSON *m = cJSON_CreateObject(), *vocab, *merges;
    int longest = 0;
    char *text, *right;

    for (int i = 0; i < b->num_tokens; i++)
        longest = MAX(longest, b->tokens[i].len);
    if (!(text = malloc(4 * (size_t)longest + 2)))   /* two tokens, 2 bytes a byte, ' ', NUL */
        return m;   /* incomplete: tokenizer_json's count check fails */
    cJSON_AddStringToObject(m, "type", "BPE");
    cJSON_AddNullToObject(m, "dropout");
    cJSON_AddNullToObject(m, "unk_token");
    cJSON_AddNullToObject(m, "continuing_subword_prefix");
    cJSON_AddNullToObject(m, "end_of_word_suffix");
    cJSON_AddBoolToObject(m, "fuse_unk", false);
    cJSON_AddBoolToObject(m, "byte_fallback", false);
    cJSON_AddBoolToObject(m, "ignore_merges", false);
    vocab = cJSON_AddObjectToObject(m, "vocab");
    for (int i = 0; i < b->num_tokens; i++) {
        bpe_train_token_text(b, i, text);
        cJSON_AddNumberToObject(vocab, text, i);
    }
    merges = cJSON_AddArrayToObject(m, "merges");
    for (int i = 0; i < b->num_merges; i++) {
        bpe_train_token_text(b, b->merges[i][0], text);
        right = text + strlen(text);
        *right++ = ' ';
        bpe_train_token_text(b, b->merges[i][1], right);
        cJSON_AddItemToArray(merges, cJSON_CreateString(text));
    }
    free(text);
    return m;
}

static char *tokenizer_json(const struct bpe_train *b, int num_special)
{
    cJSON *root = cJSON_CreateObject(), *added, *model;
    char name[64], bos[64];
    char *s;

    cJSON_AddStringToObject(root, "version", "1.0");
    cJSON_AddNullToObject(root, "truncation");
    cJSON_AddNullToObject(root, "padding");
    added = cJSON_AddArrayToObject(root, "added_tokens");
    for (int i = 0; i < num_special; i++) {
        special_name(i, name, sizeof name);
        cJSON_AddItemToArray(added, added_token(name, b->num_tokens + i));
    }
    cJSON_AddNullToObject(root, "normalizer");
    cJSON_AddItemToObject(root, "pre_tokenizer", pre_tokenizer());
    special_name(SP_BOS, bos, sizeof bos);
    cJSON_AddItemToObject(root, "post_processor", post_processor(bos, b->num_tokens + SP_BOS));
    cJSON_AddItemToObject(root, "decoder", byte_level(true, true));
    cJSON_AddItemToObject(root, "model", bpe_model(b));
    /* cJSON drops what it cannot allocate: count what is there before printing. */
    model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (cJSON_GetArraySize(added) != num_special ||
        cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(model, "vocab")) != b->num_tokens ||
        cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(model, "merges")) != b->num_merges) {
        cJSON_Delete(root);
        return NULL;
    }
    s = cJSON_Print(root);
    cJSON_Delete(root);
    return s;
}

static char *tokenizer_config_json(int first_special, int num_special, int model_max_length)
{
    cJSON *root = cJSON_CreateObject(), *dec, *names;
    char name[64], id[16];
    char *s;

    cJSON_AddBoolToObject(root, "add_bos_token", true);
    cJSON_AddBoolToObject(root, "add_eos_token", false);
    dec = cJSON_AddObjectToObject(root, "added_tokens_decoder");
    for (int i = 0; i < num_special; i++) {
        special_name(i, name, sizeof name);
        snprintf(id, sizeof id, "%d", first_special + i);
        cJSON_AddItemToObject(dec, id, added_token(name, -1));
    }
    special_name(SP_BOS, name, sizeof name);
    cJSON_AddStringToObject(root, "bos_token", name);
    cJSON_AddStringToObject(root, "chat_template", chat_template);
    cJSON_AddBoolToObject(root, "clean_up_tokenization_spaces", true);
    special_name(SP_EOT, name, sizeof name);
    cJSON_AddStringToObject(root, "eos_token", name);
    names = cJSON_AddArrayToObject(root, "model_input_names");
    cJSON_AddItemToArray(names, cJSON_CreateString("input_ids"));
    cJSON_AddItemToArray(names, cJSON_CreateString("attention_mask"));
    cJSON_AddNumberToObject(root, "model_max_length", model_max_length);
    cJSON_AddStringToObject(root, "tokenizer_class", "PreTrainedTokenizerFast");
    s = cJSON_Print(root);
    cJSON_Delete(root);
    return s;
}

int gen_tokenizer_build(struct gen_tokenizer *t, int vocab_size, int model_max_length,
                        uint64_t seed, char *err)
{
    /* Llama 3 keeps 256 specials; a tiny vocabulary keeps 16 so that BPE has room. */
    int num_special = vocab_size >= 4096 ? 256 : 16, base = vocab_size - num_special, rc;
    struct bpe_train b;

    memset(t, 0, sizeof *t);
    if (vocab_size < GEN_TOKENIZER_MIN_VOCAB) {
        errf(err, "vocab_size %d is too small for a generated byte-level tokenizer (at least "
             "%d; or pass --tokenizer)", vocab_size, GEN_TOKENIZER_MIN_VOCAB);
        return -EINVAL;
    }
    if ((rc = bpe_train_init(&b, base, seed, err)) == 0) {
        t->tokenizer_json = tokenizer_json(&b, num_special);
    }
    bpe_train_fini(&b);
    if (rc)
        return rc;
    t->config_json = tokenizer_config_json(base, num_special, model_max_length);
    if (!t->tokenizer_json || !t->config_json) {
        errf(err, "out of memory writing the tokenizer");
        gen_tokenizer_fini(t);
        return -ENOMEM;
    }
    t->tokenizer_json_len = strlen(t->tokenizer_json);
    t->config_json_len = strlen(t->config_json);
    t->num_tokens = vocab_size;
    t->bos_id = base + SP_BOS;
    t->eos_ids[0] = base + SP_EOT;
    t->eos_ids[1] = base + SP_EOS;
    t->num_eos = 2;
    return 0;
}

/* ---- copying an existing tokenizer ---- */

/* A JSON token id as an int, -1 when it is none (converting a double beyond int's range
 * would be undefined). */
static int json_id(const cJSON *id)
{
    return cJSON_IsNumber(id) && id->valuedouble >= 0 && id->valuedouble <= INT_MAX
               ? (int)id->valuedouble : -1;
}

/* The id of token `content`: an added token, else a vocab entry; -1 when absent. */
static int token_id(const cJSON *tok, const char *content)
{
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(tok, "added_tokens");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(tok, "model"), "vocab");
    const cJSON *v;

    for (const cJSON *a = cJSON_IsArray(added) ? added->child : NULL; a; a = a->next) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(a, "content");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(a, "id");

        if (cJSON_IsString(c) && cJSON_IsNumber(id) && !strcmp(c->valuestring, content))
            return json_id(id);
    }
    v = cJSON_IsObject(vocab) ? cJSON_GetObjectItemCaseSensitive(vocab, content) : NULL;
    return json_id(v);
}

/* tokenizer_config's bos_token / eos_token: a string or {"content": ...}. */
static const char *config_token(const cJSON *cfg, const char *key)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(cfg, key);

    if (cJSON_IsObject(j))
        j = cJSON_GetObjectItemCaseSensitive(j, "content");
    return cJSON_IsString(j) ? j->valuestring : NULL;
}

static void add_eos(struct gen_tokenizer *t, int id)
{
    for (int k = 0; k < t->num_eos; k++)
        if (t->eos_ids[k] == id)
            return;
    if (id >= 0 && t->num_eos < MODEL_MAX_EOS)
        t->eos_ids[t->num_eos++] = id;
}

/* Highest id + 1 over model.vocab (an object, or Unigram's list) and added_tokens. */
static int count_ids(const cJSON *tok, const char *path, char *err)
{
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(tok, "model"), "vocab");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(tok, "added_tokens");
    double top = -1;

    if (cJSON_IsArray(vocab)) {
        top = cJSON_GetArraySize(vocab) - 1;
    } else if (cJSON_IsObject(vocab)) {
        for (const cJSON *v = vocab->child; v; v = v->next)
            if (cJSON_IsNumber(v) && v->valuedouble > top)
                top = v->valuedouble;
    } else {
        errf(err, "%s: model.vocab: missing or not an object", path);
        return -EINVAL;
    }
    for (const cJSON *a = cJSON_IsArray(added) ? added->child : NULL; a; a = a->next) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(a, "id");
        if (cJSON_IsNumber(id) && id->valuedouble > top)
            top = id->valuedouble;
    }
    if (top < 0 || top >= (1 << 24)) {
        errf(err, "%s: token ids out of range (highest %.0f)", path, top);
        return -EINVAL;
    }
    return (int)top + 1;
}

int gen_tokenizer_copy(struct gen_tokenizer *t, const char *dir, char *err)
{
    char path[4200], cpath[4200];
    cJSON *tok = NULL, *cfg = NULL;
    const char *bos, *eos;
    int rc;

    memset(t, 0, sizeof *t);
    t->bos_id = -1;
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    snprintf(cpath, sizeof cpath, "%s/tokenizer_config.json", dir);
    if ((rc = read_file(path, &t->tokenizer_json, &t->tokenizer_json_len, err)) ||
        (rc = read_file(cpath, &t->config_json, &t->config_json_len, err)))
        goto out;
    rc = -EINVAL;
    if (!cJSON_IsObject(tok = cJSON_ParseWithLength(t->tokenizer_json, t->tokenizer_json_len))) {
        errf(err, "%s: not a JSON object", path);
        goto out;
    }
    if (!cJSON_IsObject(cfg = cJSON_ParseWithLength(t->config_json, t->config_json_len))) {
        errf(err, "%s: not a JSON object", cpath);
        goto out;
    }
    if ((rc = count_ids(tok, path, err)) < 0)
        goto out;
    t->num_tokens = rc;
    bos = config_token(cfg, "bos_token");
    t->bos_id = token_id(tok, bos ? bos : "<|begin_of_text|>");
    if ((eos = config_token(cfg, "eos_token")))
        add_eos(t, token_id(tok, eos));
    add_eos(t, token_id(tok, "<|eot_id|>"));
    add_eos(t, token_id(tok, "<|end_of_text|>"));
    rc = 0;
out:
    cJSON_Delete(tok);
    cJSON_Delete(cfg);
    if (rc)
        gen_tokenizer_fini(t);
    return rc;
}

void gen_tokenizer_fini(struct gen_tokenizer *t)
{
    free(t->tokenizer_json);
    free(t->config_json);
    memset(t, 0, sizeof *t);
}
