/* runner_tp.h — tensor parallelism inside the runner: N ranks, each a runner of its own
 * over its shard of the model (engine/tp_shard.h) on its own backend, joined by a
 * communicator (engine/comm.h). The engine thread stages every step on every rank, then
 * the ranks run the layer loop at once (rank 0 on the engine thread, the others on one
 * worker thread each), then rank 0, which alone runs the (replicated) LM head, samples.
 * engine/runner.c is the way in; the runner__ functions below are its internals that
 * this file drives. */
#ifndef OSPREY_RUNNER_TP_H
#define OSPREY_RUNNER_TP_H

#include "engine/runner.h"

struct runner_tp;

/* o->tensor_parallel_size ranks over m; be is rank 0's backend (borrowed), the others are
 * created of the same kind. Returns 0 or a negative errno with a message. */
int runner_tp_create(struct runner_tp **out, struct backend *be, const struct model *m,
                     const struct runner_options *o, char *err);
void runner_tp_destroy(struct runner_tp *t);
int runner_tp_execute(struct runner_tp *t, struct step_batch *b, const struct sample_row *rows,
                      struct sample_result *results);
int runner_tp_logits(struct runner_tp *t, struct step_batch *b, float *logits);
struct runner *runner_tp_rank(struct runner_tp *t, int rank);
int runner_tp_size(const struct runner_tp *t);
void runner_tp_rank_info(const struct runner_tp *t, int rank, struct runner_rank_info *out);

/* runner.c's step in parts, for the ranks. runner__graph_size: the captured size a batch
 * replays at (0: eager). runner__stage: b padded to `size` (0: to itself, eagerly) and
 * staged. runner__run: the graph of `size`, or forward() eagerly (then, when `sample`, the
 * sample op too). runner__fetch: the n results of the last sample. runner__capture_graphs:
 * every graph size, captured now (a rank of a group defers it to here); it and
 * runner__num_graphs are runner_graphs.c's. */
int runner__graph_size(const struct runner *r, const struct step_batch *b);
int runner__stage(struct runner *r, struct step_batch *b, int size, const struct sample_row *rows);
int runner__run(struct runner *r, int size, bool sample);
int runner__fetch(struct runner *r, struct sample_result *results, int n);
int runner__download_logits(struct runner *r, float *logits, int rows);
int runner__capture_graphs(struct runner *r, char *err);
int runner__num_graphs(const struct runner *r);

#endif
