/* cli.h — the flag parser of the offline subcommands (generate, bench): a table of options,
 * "--name value" or "--name=value", typed destinations, one-line errors naming the command.
 * `osprey serve` takes its options from config/ instead. */
#ifndef OSPREY_CLI_H
#define OSPREY_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

enum cli_type {
    CLI_STR,     /* const char ** */
    CLI_INT,     /* int *, >= 0 */
    CLI_U64,     /* uint64_t * */
    CLI_FLOAT,   /* float * */
    CLI_SIZE,    /* size_t *: bytes with K/M/G/KiB/MiB/GiB */
    CLI_BOOL,    /* bool *: a bare flag sets it */
};

struct cli_opt {
    const char *name;   /* "--max-tokens" */
    enum cli_type type;
    void *dst;
};

/* Parses argv[1..argc) into the destinations. Returns 0; 1 after printing usage for --help
 * (exit 0); 2 after a one-line error on stderr ("osprey <cmd>: …", exit 2). */
int cli_parse(const char *cmd, int argc, char **argv, const struct cli_opt *opts, int num_opts,
              void (*usage)(FILE *f));

/* Parses a JSON array of token ids ("[1, 2, 3]"); *ids malloc'd. Returns 0 or -EINVAL with a
 * message in err. */
int cli_parse_ids(const char *json, int32_t **ids, int *n, char *err);

#endif
