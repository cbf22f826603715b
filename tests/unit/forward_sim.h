/* forward_sim.h — a tiny scheduler for the forward tests: requests of random tokens,
 * shuffled block ids per KV-cache group, mixed step batches (prefill chunks, decodes,
 * padding) run through engine/runner.c on the CPU backend, each sampled row compared with
 * the independent naive forward (naive_forward.c). Shared by test_forward.c (the Llama
 * family), test_forward_gemma.c, test_forward_moe.c and test_forward_phi3.c. */
#ifndef OSPREY_TEST_FORWARD_SIM_H
#define OSPREY_TEST_FORWARD_SIM_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/backend.h"
#include "engine/runner.h"
#include "scheduler/batch.h"
#include "tests/unit/random_model.h"

enum { MAX_LEN = 64, MAX_SEQS = 16, MAX_BATCH_TOKENS = 256, MAX_FREE = 1024,
       WINDOW_EXTRA_BLOCKS = 48 };   /* a window group's pool beyond the full groups' */

/* ==== a tiny scheduler: requests, shuffled blocks, step batches ==== */

struct sim_req {
    int32_t tokens[MAX_LEN];
    int prompt_len;
    int len;                   /* tokens known: teacher-forced runs; or prompt + max generated */
    int computed;              /* tokens in the KV cache */
    int generated;             /* greedy runs: tokens sampled so far */
    int32_t blocks[KV_MAX_GROUPS][MAX_LEN];   /* KV_NO_BLOCK once freed out of the window */
    int num_blocks[KV_MAX_GROUPS];
    double *ref;               /* [len, vocab] reference logits (teacher-forced runs) */
};

struct sim {
    struct random_model fx;
    struct backend *be;
    struct runner *r;
    struct step_batch b;
    int block_size, num_groups, windows[KV_MAX_GROUPS];
    int group_blocks[KV_MAX_GROUPS];   /* blocks of each group's cache (its layers' storage) */
    size_t kv_elem;            /* bytes of a cache element */
    int free_ids[KV_MAX_GROUPS][MAX_FREE], num_free[KV_MAX_GROUPS];
    uint64_t rng;
    int n_new[MAX_SEQS];       /* of the step being built */
    struct sim_req *reqs[MAX_SEQS];
    /* what the run covered, so that a test can prove it tested what it claims */
    double max_err;
    int steps, mixed_steps, chunked_prompts, padded_steps;
    int hidden_blocks;         /* block table entries a window group no longer reads */
    int padded_replays;        /* graph steps padded beyond their real tokens */
    int freed_blocks;          /* window blocks freed and poisoned (free_out_of_window) */
    int reused_blocks;         /* allocations that took a freed, poisoned block */
    bool free_out_of_window;
    bool borrowed;             /* fx.m is the caller's model (sim_options.model): not freed */
    bool poisoned[KV_MAX_GROUPS][MAX_FREE];
};

struct sim_options {
    int block_size;
    const int *graph_sizes;
    int num_graph_sizes;
    const int *piece_sizes;    /* token-count buckets of the piecewise graphs */
    int num_piece_sizes;
    enum dtype kv_cache_dtype; /* runner_options' (0 = DT_F32 = auto) */
    bool calculate_kv_scales;
    bool fused_rope_cache;
    void (*patch)(struct backend *be);   /* swaps ops before the runner exists */
    int tensor_parallel_size;  /* the runner's ranks (engine/runner_tp.h); 0 = 1 */
    const struct model *model; /* borrowed: run this model (a dummy one, say) instead of the
                                * spec's random one; the spec then gives the seed only */
    double *max_err;           /* or NULL: sim_run_mixed leaves its max |logit - reference| here */
    bool free_out_of_window;   /* a window group's blocks that left every query's window go
                                * back to the pool, NaN-poisoned in every layer of the group,
                                * and other requests reuse them (as the scheduler does) */
};

void sim_create(struct sim *s, const struct fixture_spec *spec, const struct sim_options *so);
void sim_destroy(struct sim *s);
/* A request of random tokens; with_ref: the naive forward's logits of every position. */
void sim_req_init(struct sim *s, struct sim_req *q, int prompt_len, int len, bool with_ref);
/* Builds the step batch for s->reqs[0..k) taking s->n_new[i] tokens each. */
void sim_build(struct sim *s, int k);
/* Runs the built step through runner_logits (padded by `pad` tokens), compares every sampled
 * row with the reference into s->max_err; then the requests advance. */
void sim_check_step(struct sim *s, int k, int pad);
/* Picks this step's requests and token counts; returns how many. */
int sim_pick(struct sim *s, struct sim_req *reqs, int nreq, int step, bool greedy);
bool sim_all_done(const struct sim_req *reqs, int nreq, bool greedy);
/* Five teacher-forced requests over mixed steps, every sampled row within tol of the naive
 * forward. Returns how many block table entries a window hid; so (may be NULL) adds options. */
int sim_run_mixed(const struct fixture_spec *spec, int block_size, double tol,
                  const struct sim_options *so);
/* Greedy generation for reqs[0..nreq) over random mixed steps; tokens land in reqs. */
void sim_run_greedy(struct sim *s, struct sim_req *reqs, int nreq);
/* Three greedy requests (prompts of prompt_len, +5, +10 tokens, gen_len generated each, block
 * size 4) through runner_execute; every generated token must be the naive forward's argmax
 * where its top two logits are more than 1e-3 apart. Returns how many tokens were checked. */
int sim_greedy_matches_naive(const struct fixture_spec *spec, int prompt_len, int gen_len);

/* runner_create of spec's random model on a cpu backend whose ops `patch` changed (a copy of
 * them: a backend that lacks an op or a feature): its return value, its message in err. */
int sim_runner_create_patched(const struct fixture_spec *spec,
                              void (*patch)(struct backend_ops *ops), char *err);

#endif
