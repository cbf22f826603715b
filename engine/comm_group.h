/* comm_group.h — what the in-process communicators (comm_cpu.c, cuda/comm_cuda_local.c)
 * share: a host barrier for the ranks' threads that comm_abort can break, so that a rank
 * waiting for a peer that failed wakes with -ECANCELED instead of waiting forever, and the
 * count of the ranks' views still holding the group. */
#ifndef OSPREY_COMM_GROUP_H
#define OSPREY_COMM_GROUP_H

#include <pthread.h>
#include <stdbool.h>

struct comm_group {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int size, waiting, refs;
    unsigned long generation;
    bool aborted;
};

void comm_group_init(struct comm_group *g, int size);
void comm_group_fini(struct comm_group *g);
/* Returns 0 when all size ranks arrived, -ECANCELED once the group is aborted. */
int comm_group_barrier(struct comm_group *g);
/* Breaks every barrier, now and later. */
void comm_group_abort(struct comm_group *g);
bool comm_group_aborted(struct comm_group *g);
void comm_group_ref(struct comm_group *g);
/* Drops one view's reference; true when it was the last (the caller then finishes and
 * frees the group). */
bool comm_group_unref(struct comm_group *g);

#endif
