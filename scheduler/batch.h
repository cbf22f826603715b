/* batch.h — the step batch: what the scheduler hands the model runner every engine step
 * (DESIGN.md "The step batch"). Field names follow vLLM. All arrays are host memory owned
 * by the scheduler and reused from step to step; the runner copies them to its device. */
#ifndef OSPREY_BATCH_H
#define OSPREY_BATCH_H

#include <stdbool.h>
#include <stdint.h>

#define KV_PADDING_SLOT (-1)   /* slot_mapping entry of a padding token: writes nothing */
#define KV_NO_BLOCK     (-1)   /* block_table entry with no block (unused, or out of the window) */
#define KV_MAX_GROUPS   4      /* KV-cache groups: one per attention kind (full, window W, …) */

struct sched_request;

struct step_batch {
    int num_reqs;              /* real requests in this step */
    int num_tokens;            /* real tokens: sum of new tokens over requests */
    int num_sample;            /* real sampled rows: requests whose last token is in this step */
    bool decode_only;          /* every request has exactly one new token */

    /* After batch_pad() these cover padding too; without padding they equal the real counts.
     * A padded decode batch gets one padding request per padding token (seq_len 0). */
    int num_tokens_padded;
    int num_reqs_padded;
    int num_sample_padded;

    int32_t *input_ids;        /* [num_tokens_padded] tokens, request after request; padding 0 */
    int32_t *positions;        /* [num_tokens_padded] absolute position; padding 0 */
    int32_t *query_start_loc;  /* [num_reqs_padded + 1] prefix sum of new tokens per request */
    int32_t *seq_lens;         /* [num_reqs_padded] tokens in context after this step; padding 0 */

    int num_kv_groups;
    int max_blocks_per_req;    /* row length of every block_table: ceil(max_model_len / block_size) */
    int32_t *block_table[KV_MAX_GROUPS];  /* [num_reqs_padded, max_blocks_per_req] block ids,
                                             KV_NO_BLOCK where none (padding rows: all) */
    int64_t *slot_mapping[KV_MAX_GROUPS]; /* [num_tokens_padded] block_id * block_size
                                             + pos % block_size; KV_PADDING_SLOT for padding */

    int32_t *logits_indices;   /* [num_sample_padded] token rows that produce logits; a partial
                                  prefill chunk samples nothing; padding rows point at themselves */
    int32_t *sample_req;       /* [num_sample] index into reqs of each sampled row */
    int max_query_len;         /* over real requests */
    int max_seq_len;           /* over real requests */

    struct sched_request **reqs;  /* [num_reqs] borrowed: the scheduler owns them */

    /* capacity of the arrays above (batch_init) */
    int cap_tokens, cap_reqs;
};

/* Allocates every array for at most cap_tokens tokens and cap_reqs requests (padding
 * included) in num_kv_groups groups. Returns 0 or -ENOMEM. */
int batch_init(struct step_batch *b, int cap_tokens, int cap_reqs, int num_kv_groups,
               int max_blocks_per_req);
void batch_fini(struct step_batch *b);

/* Pads a built batch to num_tokens_padded tokens: input_ids/positions 0, slot_mapping
 * KV_PADDING_SLOT in every group. A decode-only batch also gets padding requests (one per
 * padding token, seq_len 0, block table rows KV_NO_BLOCK) and padding sample rows, so that a
 * graph captured for that size can replay it. Returns 0, or -EINVAL when n is smaller than
 * num_tokens or beyond the batch's capacity. */
int batch_pad(struct step_batch *b, int num_tokens_padded);

/* The token part of batch_pad alone, whatever the batch's kind: padding tokens that belong
 * to no request (input_ids/positions 0, KV_PADDING_SLOT), no padding requests or sampled
 * rows. For piecewise graphs, whose padding only the graphed pieces see (the attention runs
 * over the real requests). Returns 0 or -EINVAL as batch_pad. */
int batch_pad_tokens(struct step_batch *b, int num_tokens_padded);

#endif
