/* json_out.h — JSON text written straight into one growable buffer, with a bound on its
 * size. Answers are rendered through it (server/openai_render.c) rather than through a
 * cJSON tree, which costs several times the text per value: a response with every token's
 * logprobs is hundreds of thousands of values. Errors are sticky: after the first failure
 * (out of memory, or the bound passed) every write does nothing and json_out_take says why. */
#ifndef OSPREY_JSON_OUT_H
#define OSPREY_JSON_OUT_H

#include <stddef.h>

struct json_out {
    char *p;                 /* [cap] the text so far, NUL-terminated once anything is written */
    size_t len, cap;         /* bytes */
    size_t limit;            /* the text may not grow past this many bytes; 0: no bound */
    int err;                 /* 0, -ENOMEM or -E2BIG (the limit) */
};

void json_out_init(struct json_out *o, size_t limit);
void json_out_fini(struct json_out *o);

/* s[0..n) as it is (JSON punctuation, keys known to need no escape). */
void json_out_raw(struct json_out *o, const char *s, size_t n);
void json_out_lit(struct json_out *o, const char *s);       /* NUL-terminated */
/* A JSON string of s[0..n): quotes, escapes (\u0000 for NUL), and U+FFFD for each byte that
 * does not start a well-formed UTF-8 character (JSON text is UTF-8). NULL s: "null". */
void json_out_str(struct json_out *o, const char *s, size_t n);
/* The same without the quotes: a string written in parts (an echoed prompt, then the text).
 * A part must not end inside a character that the next completes: each is checked alone. */
void json_out_str_part(struct json_out *o, const char *s, size_t n);
void json_out_int(struct json_out *o, long long v);
/* A number as cJSON prints it (integers within int as integers, else the shortest of %.15g
 * and %.17g that reads back the same); NaN and infinities, which JSON lacks, as null. */
void json_out_num(struct json_out *o, double v);

/* The text (malloc'd, NUL-terminated, *len bytes), leaving o empty; NULL with the error in
 * *rc (when rc is not NULL) when a write failed. */
char *json_out_take(struct json_out *o, size_t *len, int *rc);

#endif
