/* sched_check.h — helpers for the scheduler suites: requests with their own token arrays, and
 * a checker that verifies every step batch against the spec (budgets, layout, slots, block
 * ownership and ref counts) and simulates the runner's cache writes in a shadow cache, so
 * that a block shared or reused wrongly shows up as a request reading someone else's keys. */
#ifndef OSPREY_TEST_SCHED_CHECK_H
#define OSPREY_TEST_SCHED_CHECK_H

#include <stdint.h>

#include "scheduler/scheduler.h"

/* ck_assert records a checkpoint (a write to Check's log) on every call, even a passing one;
 * millions of checks in a random run would spend seconds there. This one costs a branch. */
#define CHECK(cond, ...) do { if (!(cond)) ck_abort_msg(__VA_ARGS__); } while (0)
#define CHECK_EQ(a, b) CHECK((a) == (b), "%s == %s: %lld != %lld", #a, #b, \
                             (long long)(a), (long long)(b))

/* A request with prompt[0, num_prompt) copied into a token array of num_prompt + max_tokens;
 * everything else zero. treq_free releases both (the engine's part of the contract). */
struct sched_request *treq_new(uint64_t id, const int32_t *prompt, int num_prompt, int max_tokens);
void treq_free(struct sched_request *r);

/* Fills t[0, n) with tokens in [3, 3 + vocab) from a seeded generator (ids 0..2 are left for
 * EOS and stop ids). */
void treq_tokens(int32_t *t, int n, uint32_t seed, int vocab);

struct sched_checker {
    const struct kv_cache *kv;
    struct sched_config cfg;
    uint64_t *shadow[KV_MAX_GROUPS];   /* [num_blocks * block_size] key last written per slot */
    uint8_t *seen;                     /* [largest pool * block_size] slot used this step */
    int32_t *owners;                   /* [largest pool] live tables holding each block of a group */
    uint64_t *keys;                    /* [max_model_len] prefix keys of one request */
};

void checker_init(struct sched_checker *ck, const struct scheduler *s, const struct sched_config *c);
void checker_fini(struct sched_checker *ck);

/* Checks batch b, just returned by sched_schedule, given every request the scheduler holds
 * (live[0, num_live), any state), then writes its tokens into the shadow cache and checks
 * that every request reads back its own keys over its whole attended context. */
void checker_step(struct sched_checker *ck, const struct step_batch *b,
                  struct sched_request *const *live, int num_live);

/* Block ownership, in each group's own pool: every block's ref count equals the live tables
 * holding it, a block shared by two tables carries a prefix-cache hash under its own group,
 * ref-0 blocks are exactly the free ones, waiting requests hold nothing. */
void checker_ownership(struct sched_checker *ck, struct sched_request *const *live, int num_live);

/* Every group's pool is back to full: every block free, every ref count zero. */
void checker_pool_full(const struct sched_checker *ck);

#endif
