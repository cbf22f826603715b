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

/* runner.c's step in parts, for the ranks: stage b eagerly (padded to itself), run forward,
 * sample and fetch n results, copy `rows` rows of logits to the host. */
int runner__stage(struct runner *r, struct step_batch *b, const struct sample_row *rows);
int runner__forward(struct runner *r);
int runner__sample_fetch(struct runner *r, struct sample_result *results, int n);
int runner__download_logits(struct runner *r, float *logits, int rows);

#endif
