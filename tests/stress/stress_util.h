/* stress_util.h — what the stress suites share on top of tests/integration (the daemon, the
 * HTTP client, it_util): the daemon's memory and descriptors read from /proc, a seeded
 * generator, client threads started together, and one answer taken apart whatever its
 * shape (a completion, a chat completion, a stream of either, or an error). */
#ifndef OSPREY_TEST_STRESS_UTIL_H
#define OSPREY_TEST_STRESS_UTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "tests/integration/it_util.h"

#define STRESS_MAX_CHOICES 4

/* /proc/<pid>/status: VmRSS (resident now) and VmHWM (the peak resident), KiB. */
struct stress_mem {
    long rss_kib, hwm_kib;
};
int stress_mem(pid_t pid, struct stress_mem *m);          /* 0, or -1 */
/* Open descriptors of pid (entries of /proc/<pid>/fd), or -1. */
int stress_fds(pid_t pid);

/* The seed of a seeded test: $OSPREY_STRESS_SEED, else `fallback`. Printed by the caller so
 * that a failure can be replayed. */
uint64_t stress_seed(uint64_t fallback);
/* splitmix64: the next value of the sequence in *state. */
uint64_t stress_rand(uint64_t *state);
/* Uniform in [0, n). */
int stress_below(uint64_t *state, int n);
double stress_now(void);

/* Runs fn(args + i * arg_size) on num_threads threads that start together (a barrier) and
 * returns once all have ended. */
void stress_run(int num_threads, void *(*fn)(void *), void *args, size_t arg_size);

/* One answer: status, Retry-After, the error's code, or each choice's text and finish
 * reason; streams also say whether they ended with [DONE] and were well framed. */
struct stress_answer {
    int status;
    char retry_after[16];            /* "" when absent */
    char code[48];                   /* error.code, "" when not an error object */
    int num_choices;
    char *text[STRESS_MAX_CHOICES];  /* completions' text or chat's content, by index */
    char finish[STRESS_MAX_CHOICES][16];
    bool stream_done, stream_clean;
    bool stream_error;               /* an event carried an error object */
};
/* POSTs body to path and takes the answer apart (a stream when the body asks for one). */
void stress_call(int port, const char *path, const char *body, struct stress_answer *a);
void stress_answer_fini(struct stress_answer *a);
/* The text of choice 0 of a request sent alone (non-streamed); fails the test unless 200.
 * malloc'd. */
char *stress_solo(const struct daemon *d, const char *path, const char *body);

/* Reads until the end of the response head (or timeout_s); returns what came (head and
 * maybe the start of the body, NUL-terminated, malloc'd) or NULL when nothing did. */
char *stress_read_head(int fd, double timeout_s);

#endif
