/* batch.c — the step batch's buffers and its padding to a captured graph size. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler/batch.h"

int batch_init(struct step_batch *b, int cap_tokens, int cap_reqs, int num_kv_groups,
               int max_blocks_per_req)
{
    memset(b, 0, sizeof *b);
    if (cap_tokens <= 0 || cap_reqs <= 0 || num_kv_groups <= 0 || num_kv_groups > KV_MAX_GROUPS ||
        max_blocks_per_req <= 0)
        return -EINVAL;
    b->cap_tokens = cap_tokens;
    b->cap_reqs = cap_reqs;
    b->num_kv_groups = num_kv_groups;
    b->max_blocks_per_req = max_blocks_per_req;
    b->input_ids = calloc(cap_tokens, sizeof *b->input_ids);
    b->positions = calloc(cap_tokens, sizeof *b->positions);
    b->query_start_loc = calloc(cap_reqs + 1, sizeof *b->query_start_loc);
    b->seq_lens = calloc(cap_reqs, sizeof *b->seq_lens);
    /* a sampled row per request at most, padding included */
    b->logits_indices = calloc(cap_reqs, sizeof *b->logits_indices);
    b->sample_req = calloc(cap_reqs, sizeof *b->sample_req);
    b->reqs = calloc(cap_reqs, sizeof *b->reqs);
    if (!b->input_ids || !b->positions || !b->query_start_loc || !b->seq_lens ||
        !b->logits_indices || !b->sample_req || !b->reqs)
        goto fail;
    for (int g = 0; g < num_kv_groups; g++) {
        b->block_table[g] = malloc((size_t)cap_reqs * max_blocks_per_req * sizeof(int32_t));
        b->slot_mapping[g] = malloc((size_t)cap_tokens * sizeof(int64_t));
        if (!b->block_table[g] || !b->slot_mapping[g])
            goto fail;
    }
    return 0;
fail:
    batch_fini(b);
    return -ENOMEM;
}

void batch_fini(struct step_batch *b)
{
    free(b->input_ids);
    free(b->positions);
    free(b->query_start_loc);
    free(b->seq_lens);
    free(b->logits_indices);
    free(b->sample_req);
    free(b->reqs);
    for (int g = 0; g < KV_MAX_GROUPS; g++) {
        free(b->block_table[g]);
        free(b->slot_mapping[g]);
    }
    memset(b, 0, sizeof *b);
}

int batch_pad_tokens(struct step_batch *b, int n)
{
    if (n < b->num_tokens || n > b->cap_tokens)
        return -EINVAL;
    for (int i = b->num_tokens; i < n; i++) {
        b->input_ids[i] = 0;
        b->positions[i] = 0;
        for (int g = 0; g < b->num_kv_groups; g++)
            b->slot_mapping[g][i] = KV_PADDING_SLOT;
    }
    b->num_tokens_padded = n;
    b->num_reqs_padded = b->num_reqs;
    b->num_sample_padded = b->num_sample;
    return 0;
}

int batch_pad(struct step_batch *b, int n)
{
    int rc;

    if (b->decode_only && n > b->cap_reqs)
        return -EINVAL;
    if ((rc = batch_pad_tokens(b, n)) || !b->decode_only)
        return rc;
    /* One padding request per padding token: one new token, nothing in context, no blocks;
     * it samples its own row so that the graph's sampling covers a fixed number of rows. */
    for (int r = b->num_reqs; r < n; r++) {
        b->query_start_loc[r + 1] = r + 1;
        b->seq_lens[r] = 0;
        for (int g = 0; g < b->num_kv_groups; g++)
            for (int j = 0; j < b->max_blocks_per_req; j++)
                b->block_table[g][(size_t)r * b->max_blocks_per_req + j] = KV_NO_BLOCK;
    }
    for (int s = b->num_sample; s < n; s++)
        b->logits_indices[s] = s;
    b->num_reqs_padded = n;
    b->num_sample_padded = n;
    return 0;
}
