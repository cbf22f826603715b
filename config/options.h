/* options.h — internal to config/: the one table that describes every option of
 * struct osprey_config (options.c), and the typed parsers and formatters that read a value
 * from text and write it back. config.c builds the three sources, --help, the Markdown
 * table and the dump on top of these. Not part of the public API (that is config.h). */
#ifndef OSPREY_CONFIG_OPTIONS_H
#define OSPREY_CONFIG_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"

#define OPTIONS_STR_MAX   4096  /* bytes of a string value (paths, keys, names, origins) */
#define OPTIONS_LIST_MAX  256   /* elements of a list value */
#define OPTIONS_KEY_MAX   64    /* bytes of an option key, its flag or its env name */

enum option_type {
    OPT_INT,       /* int; decimal; [min, max], optionally one of `allowed` */
    OPT_U64,       /* uint64_t; decimal */
    OPT_SIZE,      /* size_t bytes; "1048576", "512MiB", "1.5G" */
    OPT_FLOAT,     /* double; [min, max], min excluded with OPT_MIN_OPEN */
    OPT_SECONDS,   /* double seconds; "30", "0.5", "250ms", "2m", "1h" */
    OPT_BOOL,      /* bool; true/false, yes/no, on/off, 1/0 */
    OPT_STRING,    /* char * (malloc'd), NULL when empty */
    OPT_ENUM,      /* const char * pointing into `choices` */
    OPT_INT_LIST,  /* int * + int count at count_off; comma list, sorted and deduplicated */
    OPT_STR_LIST,  /* char ** + int count at count_off; comma list */
};

enum {
    OPT_SECRET   = 1 << 0,  /* masked in config_dump */
    OPT_NO_JSON  = 1 << 1,  /* not a key of the JSON file (--config itself) */
    OPT_MIN_OPEN = 1 << 2,  /* min is excluded: (min, max] */
};

struct config_option {
    const char *key;             /* JSON key and field name, snake_case */
    enum option_type type;
    size_t off;                  /* offsetof(struct osprey_config, field) */
    size_t count_off;            /* lists: offsetof the int count */
    const char *def;             /* default, as a flag would spell it ("" = unset / empty) */
    const char *arg;             /* placeholder in --help: N, SIZE, PATH ... (NULL for enums, bools) */
    double min, max;             /* numbers, sizes, list elements: allowed range */
    int allowed[8];              /* OPT_INT: the only values allowed, 0-terminated (empty = any in range) */
    const char *choices[8];      /* OPT_ENUM: the values, NULL-terminated */
    unsigned flags;              /* OPT_SECRET, OPT_NO_JSON, OPT_MIN_OPEN */
    const char *section;         /* non-NULL: this option starts a group of that title */
    const char *help;            /* one line for --help and the Markdown table */
};

extern const struct config_option options_table[];
extern const int options_count;

/* The option whose key is exactly `key` (snake_case), or NULL. */
const struct config_option *options_find(const char *key);
/* The key nearest to `key` by edit distance when it is close enough to be a typo, or NULL. */
const struct config_option *options_suggest(const char *key);
/* "--max-num-seqs" and "OSPREY_MAX_NUM_SEQS" of an option (buf of OPTIONS_KEY_MAX + 8). */
void options_flag_name(const struct config_option *o, char *buf);
void options_env_name(const struct config_option *o, char *buf);

/* Parses `text` as the option's type and stores it in c (freeing what was there). `src`
 * names the source in errors ("--port", "OSPREY_PORT", "/etc/osprey.json: port"). Returns
 * 0, -EINVAL (message in err) or -ENOMEM. */
int options_set(const struct config_option *o, struct osprey_config *c, const char *text,
                const char *src, char *err);
/* Frees what the option's field owns and leaves it NULL / empty. */
void options_free(const struct config_option *o, struct osprey_config *c);
/* The current value as text a flag would accept ("" when unset); secrets masked. */
void options_format(const struct config_option *o, const struct osprey_config *c, char *buf,
                    size_t n);
/* "integer 1–65536", "size 1KiB–1GiB", "one of auto, cpu, cuda" ... for the Markdown table. */
void options_describe_type(const struct config_option *o, char *buf, size_t n);

/* The boolean words: 0 with *out set, or -EINVAL. */
int options_parse_bool(const char *text, bool *out);
/* `text` for an error message: quoted, cut at 40 bytes, control bytes as '?'. */
const char *options_quote(const char *text, char *buf, size_t n);

#endif
