/* test_model_gemma.c — model_open on Gemma folders: the tiny-gemma2 and tiny-gemma3 presets
 * of gen-model bind every tensor (sandwich norms, Gemma 3's q/k norms) with Gemma's init
 * ((1 + w) norms start at 0), and a Gemma3ForConditionalGeneration folder serves its
 * language model from language_model.model. (as published) or model.language_model. (as
 * transformers 4.52+ names it), with the vision tower left unloaded. */
#include <check.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/log.h"
#include "engine/model/model.h"
#include "engine/model/safetensors.h"
#include "fixtures.h"

static void bound(const struct tensor_ref *t, int64_t d0, const char *what)
{
    ck_assert_msg(t->data != NULL, "%s not bound", what);
    ck_assert_msg(t->ndim == 1 && t->shape[0] == d0, "%s: [%lld], want [%lld]", what,
                  (long long)t->shape[0], (long long)d0);
}

static void open_preset(const char *preset, struct model *m, char *dir)
{
    char err[ERR_LEN] = "";

    ck_assert_int_eq(fixture_tmpdir(dir), 0);
    ck_assert_int_eq(fixture_gen(dir, preset, 1), 0);
    ck_assert_msg(model_open(m, dir, err) == 0, "%s: %s", preset, err);
}

START_TEST(generated_tiny_gemma2_binds_sandwich_norms_at_gemma_init)
{
    struct model m;
    char dir[FIXTURE_PATH];

    open_preset("tiny-gemma2", &m, dir);
    ck_assert_int_eq(m.cfg.arch, ARCH_GEMMA2);
    ck_assert(m.cfg.tie_word_embeddings);
    ck_assert_ptr_eq(m.lm_head.data, m.embed.data);
    for (int l = 0; l < 4; l++) {
        const struct layer_tensors *t = &m.layers[l];

        bound(&t->post_norm, 64, "post_attention_layernorm");
        bound(&t->pre_ff_norm, 64, "pre_feedforward_layernorm");
        bound(&t->post_ff_norm, 64, "post_feedforward_layernorm");
        ck_assert_ptr_null(t->q_norm.data);
        ck_assert_int_eq(m.cfg.layer_window[l], l % 2 ? 0 : 32);
        /* GemmaRMSNorm's weight starts at zero: the norm multiplies by 1 + 0 */
        for (int i = 0; i < 64; i++)
            ck_assert_uint_eq(((const uint16_t *)t->pre_ff_norm.data)[i], 0);
    }
    ck_assert_double_eq(m.cfg.attn_softcap, 50.0);
    ck_assert_double_eq(m.cfg.final_softcap, 30.0);
    model_close(&m);
    fixture_rmtree(dir);
}
END_TEST

START_TEST(generated_tiny_gemma3_binds_qk_norms_and_five_local_layers_to_one_global)
{
    struct model m;
    char dir[FIXTURE_PATH];

    open_preset("tiny-gemma3", &m, dir);
    ck_assert_int_eq(m.cfg.arch, ARCH_GEMMA3);
    ck_assert_str_eq(m.prefix, "model.");
    for (int l = 0; l < 6; l++) {
        bound(&m.layers[l].q_norm, 32, "q_norm");
        bound(&m.layers[l].k_norm, 32, "k_norm");
        bound(&m.layers[l].post_ff_norm, 64, "post_feedforward_layernorm");
        ck_assert_int_eq(m.cfg.layer_window[l], l == 5 ? 0 : 32);
    }
    ck_assert_double_eq(m.cfg.rope_local_theta, 10000.0);
    model_close(&m);
    fixture_rmtree(dir);
}
END_TEST

/* Turns a generated tiny-gemma3 folder into a Gemma3ForConditionalGeneration one: the
 * config becomes text_config, every "model." tensor moves under `prefix`, and a vision
 * tensor is added that nobody must bind. */
static void make_multimodal(const char *dir, const char *prefix)
{
    char err[ERR_LEN] = "", path[FIXTURE_PATH + 64], tmp[FIXTURE_PATH + 64];
    static uint16_t patch[16 * 3];
    struct st_set *set;
    struct st_write_tensor *w;
    char (*names)[128];
    cJSON *text, *root;
    char *s, *json;
    size_t len;
    int n;

    ck_assert_int_eq(st_open(&set, dir, err), 0);
    n = st_num_tensors(set);
    w = calloc((size_t)n + 1, sizeof *w);
    names = calloc((size_t)n, sizeof *names);
    ck_assert(w && names);
    for (int i = 0; i < n; i++) {
        const struct tensor_ref *t = st_tensor(set, i);

        snprintf(names[i], sizeof names[i], "%s%s", prefix, t->name + strlen("model."));
        w[i] = (struct st_write_tensor){ .name = names[i], .dtype = t->dtype, .ndim = t->ndim,
                                         .data = t->data };
        memcpy(w[i].shape, t->shape, sizeof t->shape);
    }
    w[n] = (struct st_write_tensor){ .name = "vision_tower.vision_model.embeddings.patch_embedding.weight",
                                     .dtype = DT_BF16, .ndim = 2, .shape = { 16, 3 }, .data = patch };
    snprintf(tmp, sizeof tmp, "%s/rewrite.tmp", dir);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    ck_assert_msg(st_write(tmp, w, n + 1, err) == 0, "%s", err);
    st_close(set);
    free(w);
    free(names);
    ck_assert_int_eq(rename(tmp, path), 0);

    snprintf(path, sizeof path, "%s/config.json", dir);
    ck_assert_int_eq(read_file(path, &json, &len, err), 0);
    text = cJSON_ParseWithLength(json, len);
    free(json);
    ck_assert_ptr_nonnull(text);
    cJSON_DeleteItemFromObject(text, "architectures");
    root = cJSON_CreateObject();
    cJSON_AddItemToArray(cJSON_AddArrayToObject(root, "architectures"),
                         cJSON_CreateString("Gemma3ForConditionalGeneration"));
    cJSON_AddStringToObject(root, "model_type", "gemma3");
    cJSON_AddItemToObject(root, "text_config", text);
    cJSON_AddItemToObject(root, "vision_config", cJSON_CreateObject());
    s = cJSON_Print(root);
    ck_assert_int_eq(fixture_write(dir, "config.json", s, strlen(s)), 0);
    free(s);
    cJSON_Delete(root);
}

START_TEST(gemma3_multimodal_folder_serves_its_language_model)
{
    static const char *prefixes[] = { "language_model.model.", "model.language_model." };

    for (int i = 0; i < 2; i++) {
        struct model plain, mm;
        char dir[FIXTURE_PATH], err[ERR_LEN] = "";

        open_preset("tiny-gemma3", &plain, dir);
        make_multimodal(dir, prefixes[i]);
        ck_assert_msg(model_open(&mm, dir, err) == 0, "%s: %s", prefixes[i], err);
        ck_assert(mm.cfg.multimodal);
        ck_assert_str_eq(mm.prefix, prefixes[i]);
        ck_assert_int_eq(mm.cfg.num_layers, plain.cfg.num_layers);
        ck_assert_int_eq(mm.cfg.layer_window[0], 32);
        ck_assert_int_eq(mm.layers[5].q_norm.shape[0], 32);
        ck_assert_ptr_nonnull(strstr(mm.layers[3].post_ff_norm.name, prefixes[i]));
        ck_assert_int_eq(memcmp(mm.embed.data, plain.embed.data, mm.embed.nbytes), 0);
        model_close(&mm);
        model_close(&plain);
        fixture_rmtree(dir);
    }
}
END_TEST

START_TEST(gemma_folder_missing_a_sandwich_norm_names_it)
{
    struct model m;
    char dir[FIXTURE_PATH], err[ERR_LEN] = "";
    struct st_set *set;
    struct st_write_tensor *w;
    int n, k = 0;

    ck_assert_int_eq(fixture_tmpdir(dir), 0);
    ck_assert_int_eq(fixture_gen(dir, "tiny-gemma2", 2), 0);
    ck_assert_int_eq(st_open(&set, dir, err), 0);
    n = st_num_tensors(set);
    w = calloc((size_t)n, sizeof *w);
    for (int i = 0; i < n; i++) {
        const struct tensor_ref *t = st_tensor(set, i);

        if (!strcmp(t->name, "model.layers.2.post_feedforward_layernorm.weight"))
            continue;
        w[k] = (struct st_write_tensor){ .name = t->name, .dtype = t->dtype, .ndim = t->ndim,
                                         .data = t->data };
        memcpy(w[k++].shape, t->shape, sizeof t->shape);
    }
    {
        char tmp[FIXTURE_PATH + 64], path[FIXTURE_PATH + 64];

        snprintf(tmp, sizeof tmp, "%s/rewrite.tmp", dir);
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        ck_assert_msg(st_write(tmp, w, k, err) == 0, "%s", err);
        st_close(set);
        ck_assert_int_eq(rename(tmp, path), 0);
    }
    free(w);
    ck_assert_int_eq(model_open(&m, dir, err), -EINVAL);
    ck_assert_msg(strstr(err, "model.layers.2.post_feedforward_layernorm.weight: missing"), "%s", err);
    fixture_rmtree(dir);
}
END_TEST

Suite *model_gemma_suite(void)
{
    Suite *s = suite_create("model_gemma");
    TCase *tc = tcase_create("gemma");

    tcase_add_unchecked_fixture(tc, fixture_quiet, fixture_loud);
    tcase_add_test(tc, generated_tiny_gemma2_binds_sandwich_norms_at_gemma_init);
    tcase_add_test(tc, generated_tiny_gemma3_binds_qk_norms_and_five_local_layers_to_one_global);
    tcase_add_test(tc, gemma3_multimodal_folder_serves_its_language_model);
    tcase_add_test(tc, gemma_folder_missing_a_sandwich_norm_names_it);
    suite_add_tcase(s, tc);
    return s;
}
