/* cmd_tokenize.c — `osprey tokenize` (text → ids as a JSON array) and `osprey detokenize`
 * (a JSON array of ids → text) over a Hugging Face tokenizer folder: a command-line view of
 * engine/tokenizer/tokenizer.h, handy to compare against other tokenizers by hand. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/tokenizer/tokenizer.h"
#include "engine/base/buf.h"
#include "engine/base/util.h"
#include "server/commands.h"

struct tok_args {
    const char *dir;      /* --tokenizer */
    bool flag;            /* --add-special / --keep-special */
    const char *input;    /* the one positional argument */
};

/* Returns 0 to go on, 1 when --help was printed, 2 on a usage error (already reported). */
static int parse_args(int argc, char **argv, const char *flag, const char *usage,
                      struct tok_args *a)
{
    bool options = true;

    memset(a, 0, sizeof *a);
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];

        if (options && (!strcmp(s, "--help") || !strcmp(s, "-h"))) {
            fputs(usage, stdout);
            return 1;
        }
        if (options && !strcmp(s, "--")) {
            options = false;
        } else if (options && !strcmp(s, "--tokenizer")) {
            if (++i == argc) {
                fprintf(stderr, "osprey %s: --tokenizer needs a folder\n", argv[0]);
                return 2;
            }
            a->dir = argv[i];
        } else if (options && !strncmp(s, "--tokenizer=", 12)) {
            a->dir = s + 12;
        } else if (options && !strcmp(s, flag)) {
            a->flag = true;
        } else if (options && s[0] == '-' && s[1] != '\0') {
            fprintf(stderr, "osprey %s: unknown option '%s' (osprey %s --help)\n", argv[0], s, argv[0]);
            return 2;
        } else if (a->input) {
            fprintf(stderr, "osprey %s: one input only (quote it), got '%s' too\n", argv[0], s);
            return 2;
        } else
            a->input = s;
    }
    if (!a->dir || !a->input) {
        fprintf(stderr, "osprey %s: %s missing (osprey %s --help)\n", argv[0],
                !a->dir ? "--tokenizer DIR" : "the input", argv[0]);
        return 2;
    }
    return 0;
}

/* TEXT, or standard input for "-". */
static int read_input(const char *arg, char **text, size_t *len)
{
    struct buf b = BUF_INIT;
    char chunk[65536];
    size_t n;

    *text = NULL;
    *len = 0;
    if (strcmp(arg, "-")) {
        *len = strlen(arg);
        *text = strdup(arg);
        return *text ? 0 : -1;
    }
    while ((n = fread(chunk, 1, sizeof chunk, stdin)) > 0)
        if (buf_put(&b, chunk, n)) {
            buf_fini(&b);
            return -1;
        }
    if (ferror(stdin) || buf_reserve(&b, 0)) {   /* reserve: a NUL-terminated "" for no input */
        buf_fini(&b);
        return -1;
    }
    *text = b.p;
    *len = b.len;
    return 0;
}

int cmd_tokenize(int argc, char **argv)
{
    static const char usage[] =
        "usage: osprey tokenize --tokenizer DIR [--add-special] TEXT\n"
        "  Prints the token ids of TEXT (\"-\" reads standard input) as a JSON array.\n"
        "  --tokenizer DIR   folder with tokenizer.json (and tokenizer_config.json)\n"
        "  --add-special     add the special tokens the tokenizer adds (BOS, ...)\n";
    struct tokenizer *t = NULL;
    struct tok_args a;
    char err[ERR_LEN], *text = NULL;
    int32_t *ids = NULL;
    size_t len;
    int n, rc = parse_args(argc, argv, "--add-special", usage, &a);

    if (rc)
        return rc == 1 ? 0 : 2;
    if (read_input(a.input, &text, &len)) {
        fprintf(stderr, "osprey tokenize: cannot read standard input\n");
        return 1;
    }
    rc = 1;
    if (tokenizer_load(&t, a.dir, err) || tokenizer_encode(t, text, len, a.flag, &ids, &n, err)) {
        fprintf(stderr, "osprey tokenize: %s\n", err);
        goto out;
    }
    putchar('[');
    for (int i = 0; i < n; i++)
        printf(i ? ", %d" : "%d", ids[i]);
    puts("]");
    rc = 0;
out:
    free(ids);
    free(text);
    tokenizer_destroy(t);
    return rc;
}

int cmd_detokenize(int argc, char **argv)
{
    static const char usage[] =
        "usage: osprey detokenize --tokenizer DIR [--keep-special] IDS_JSON\n"
        "  Prints the text of a JSON array of token ids (\"-\" reads standard input),\n"
        "  followed by a newline.\n"
        "  --tokenizer DIR   folder with tokenizer.json (and tokenizer_config.json)\n"
        "  --keep-special    keep special tokens (<s>, <|eot_id|>, ...) in the text\n";
    struct tokenizer *t = NULL;
    struct tok_args a;
    char err[ERR_LEN], *json = NULL, *text = NULL;
    cJSON *arr = NULL, *e;
    int32_t *ids = NULL;
    size_t len;
    int n = 0, rc = parse_args(argc, argv, "--keep-special", usage, &a);

    if (rc)
        return rc == 1 ? 0 : 2;
    if (read_input(a.input, &json, &len)) {
        fprintf(stderr, "osprey detokenize: cannot read standard input\n");
        return 1;
    }
    rc = 1;
    arr = cJSON_ParseWithLength(json, len);
    if (!cJSON_IsArray(arr)) {
        fprintf(stderr, "osprey detokenize: IDS_JSON must be a JSON array of integers, like [1, 2]\n");
        goto out;
    }
    if (!(ids = malloc(MAX(cJSON_GetArraySize(arr), 1) * sizeof *ids))) {
        fprintf(stderr, "osprey detokenize: out of memory\n");
        goto out;
    }
    cJSON_ArrayForEach(e, arr) {
        double v = e->valuedouble;

        if (!cJSON_IsNumber(e) || !(v >= -2147483648.0 && v <= 2147483647.0) ||
            v != (double)(int32_t)v) {
            fprintf(stderr, "osprey detokenize: element %d of IDS_JSON is not an integer id\n", n);
            goto out;
        }
        ids[n++] = (int32_t)v;
    }
    if (tokenizer_load(&t, a.dir, err) || tokenizer_decode(t, ids, n, !a.flag, &text, &len, err)) {
        fprintf(stderr, "osprey detokenize: %s\n", err);
        goto out;
    }
    fwrite(text, 1, len, stdout);
    putchar('\n');
    rc = 0;
out:
    cJSON_Delete(arr);
    free(ids);
    free(json);
    free(text);
    tokenizer_destroy(t);
    return rc;
}
