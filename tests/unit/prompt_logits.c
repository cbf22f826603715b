/* prompt_logits.c — see prompt_logits.h. */
#include "tests/unit/prompt_logits.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine/backend.h"
#include "engine/model/model.h"
#include "engine/runner.h"
#include "scheduler/batch.h"
#include "tests/unit/fixtures.h"

/* logits[PROMPT_TOKENS, vocab] of a fixed prompt, every position sampled, in one prefill. */
float *prompt_logits(const char *dir, struct prompt_opts ro, int *vocab)
{
    struct model m;
    struct backend *be;
    struct runner *r;
    struct runner_options o = { .block_size = 16, .num_blocks = 8, .max_num_batched_tokens = 64,
                                .max_num_seqs = PROMPT_TOKENS, .max_model_len = 64,
                                .kv_cache_dtype = ro.kv, .quantize_fp8 = ro.quantize,
                                .calculate_kv_scales = ro.calc };
    struct backend_options bo = { .num_threads = 2 };
    struct step_batch b;
    char err[ERR_LEN] = "";
    float *logits;

    ck_assert_msg(model_open(&m, dir, err) == 0, "%s", err);
    ck_assert_int_eq(runner_backend_options(&m.cfg, &o, &bo), 0);
    ck_assert_int_eq(backend_create(&be, "cpu", &bo, err), 0);
    ck_assert_msg(runner_create(&r, be, &m, &o, err) == 0, "%s", err);
    ck_assert_int_eq(batch_init(&b, 64, PROMPT_TOKENS, m.cfg.num_kv_groups,
                                runner_max_blocks_per_req(r)), 0);
    b.num_reqs = 1;
    b.num_tokens = b.num_sample = PROMPT_TOKENS;
    b.query_start_loc[0] = 0;
    b.query_start_loc[1] = PROMPT_TOKENS;
    b.seq_lens[0] = PROMPT_TOKENS;
    b.max_query_len = b.max_seq_len = PROMPT_TOKENS;
    /* every KV-cache group (gpt-oss's sliding and full layers) the same blocks, far from
     * contiguous */
    for (int g = 0; g < m.cfg.num_kv_groups; g++)
        for (int i = 0; i < runner_max_blocks_per_req(r); i++)
            b.block_table[g][i] = 7 - i;
    for (int i = 0; i < PROMPT_TOKENS; i++) {
        b.input_ids[i] = (i * 37 + 11) % m.cfg.vocab_size;
        b.positions[i] = i;
        for (int g = 0; g < m.cfg.num_kv_groups; g++)
            b.slot_mapping[g][i] = (int64_t)(7 - i / 16) * 16 + i % 16;
        b.logits_indices[i] = i;
    }
    *vocab = m.cfg.vocab_size;
    logits = malloc(sizeof *logits * PROMPT_TOKENS * *vocab);
    ck_assert_int_eq(runner_logits(r, &b, logits), 0);
    for (int l = 0; ro.scales && l < m.cfg.num_layers; l++)
        runner_kv_scales(r, l, &ro.scales[2 * l], &ro.scales[2 * l + 1]);
    batch_fini(&b);
    runner_destroy(r);
    backend_destroy(be);
    model_close(&m);
    return logits;
}

/* `osprey generate` (OSPREY_BIN) on a fixed prompt, 24 greedy tokens: its ids. */
void osprey_generate_ids(const char *dir, const char *extra, char *out, size_t len)
{
    const char *bin = getenv("OSPREY_BIN") ? getenv("OSPREY_BIN") : "build/osprey";
    char cmd[3 * FIXTURE_PATH];
    FILE *p;
    size_t n;

    snprintf(cmd, sizeof cmd, "%s generate --model %s --prompt-ids '[1, 5, 9, 200, 31, 7]' --ids "
             "--max-tokens 24 --ignore-eos --threads 2 %s 2>/dev/null", bin, dir, extra);
    ck_assert_ptr_nonnull(p = popen(cmd, "r"));
    n = fread(out, 1, len - 1, p);
    out[n] = '\0';
    ck_assert_msg(pclose(p) == 0, "%s failed: %s", cmd, out);
    ck_assert_msg(out[0] == '[', "%s: %s", cmd, out);
}
