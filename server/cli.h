/* cli.h — the flag parser of the offline subcommands (generate, bench): a table of the
 * command's own options, "--name value" or "--name=value", typed destinations, one-line
 * errors naming the command. The engine options they share with `osprey serve` (--model,
 * --backend, --kv-cache-memory, --block-size ...) are not in those tables: they go to a
 * struct osprey_config through config/'s one option table, so that each flag has the same
 * name, parser, range and default in every command. */
#ifndef OSPREY_CLI_H
#define OSPREY_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct osprey_config;

enum cli_type {
    CLI_STR,     /* const char ** */
    CLI_INT,     /* int *, >= 0 */
    CLI_U64,     /* uint64_t * */
    CLI_FLOAT,   /* float * */
    CLI_BOOL,    /* bool *: a bare flag sets it */
};

struct cli_opt {
    const char *name;   /* "--max-tokens" */
    enum cli_type type;
    void *dst;
};

/* The config keys of the engine options every offline command takes (cli_engine_keys[0 ..
 * cli_num_engine_keys)): the model, the backend and the "Engine" options of serve. */
extern const char *const cli_engine_keys[];
extern const int cli_num_engine_keys;

/* Parses argv[1..argc) into the destinations; a flag not in opts that names one of
 * cli_engine_keys (as serve spells it: --kv-cache-memory, --enforce-eager, --no-FLAG for a
 * boolean) is set in engine (config_set), which config_init must have filled. Returns 0; 1
 * after printing usage for --help (exit 0); 2 after a one-line error on stderr ("osprey
 * <cmd>: …", exit 2). */
int cli_parse(const char *cmd, int argc, char **argv, const struct cli_opt *opts, int num_opts,
              struct osprey_config *engine, void (*usage)(FILE *f));
/* The --help lines of the engine options, with serve's words and defaults. */
void cli_print_engine_help(FILE *f);

/* Parses a JSON array of token ids ("[1, 2, 3]"); *ids malloc'd. Returns 0 or -EINVAL with a
 * message in err. */
int cli_parse_ids(const char *json, int32_t **ids, int *n, char *err);

#endif
