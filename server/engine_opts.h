/* engine_opts.h — the one place where the configuration (config/config.h) becomes the
 * engine's options (engine/engine.h): `osprey serve`, `osprey generate` and `osprey bench`
 * all fill struct engine_options here, so that a flag means the same to each of them and
 * the defaults (CUDA-graph sizes included) have one definition, config/options.c's table. */
#ifndef OSPREY_ENGINE_OPTS_H
#define OSPREY_ENGINE_OPTS_H

struct engine_options;
struct osprey_config;
struct tokenizer;

/* Fills eo from c's model, backend and engine options; tok (borrowed, may be NULL) is the
 * detokenizer. eo borrows c's strings and graph-size list: c must outlive the engine's
 * creation. A command overrides what is its own afterwards (bench: max_waiting; generate:
 * max_num_seqs). */
void engine_opts_from_config(struct engine_options *eo, const struct osprey_config *c,
                             const struct tokenizer *tok);

#endif
