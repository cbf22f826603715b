/* threadpool.h — a persistent pool of worker threads for the CPU backend's parallel ops
 * (matmul rows, attention heads, sampled rows). The caller's thread works too, so a pool of
 * one thread runs everything inline. One run at a time: ops on the backend are sequential. */
#ifndef OSPREY_THREADPOOL_H
#define OSPREY_THREADPOOL_H

struct threadpool;

/* fn(arg, task, thread): task in [0, num_tasks), thread in [0, threadpool_size()) names the
 * thread that runs it (for per-thread scratch). */
typedef void (*threadpool_fn)(void *arg, int task, int thread);

/* Starts num_threads - 1 workers (num_threads >= 1 counts the caller). Returns 0, -EINVAL or
 * -ENOMEM / the pthread error. */
int threadpool_create(struct threadpool **out, int num_threads);
/* Stops and joins every worker; NULL-safe. */
void threadpool_destroy(struct threadpool *tp);
int threadpool_size(const struct threadpool *tp);

/* Runs every task and returns when all are done. Tasks are handed out one at a time in
 * order, so neighbouring tasks (rows of a weight) tend to run on different threads at once. */
void threadpool_run(struct threadpool *tp, int num_tasks, threadpool_fn fn, void *arg);

#endif
