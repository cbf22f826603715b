/* json_text.h — what a cJSON tree forgets about a body: the exact text of a number.
 * cJSON keeps numbers as doubles, so integers above 2^53 lose their low bits; a field that
 * needs every bit (seed, any 64-bit value) reads its literal from the body here. The body
 * must already have parsed as a JSON object (server/openai_parse.c checks that first). */
#ifndef OSPREY_JSON_TEXT_H
#define OSPREY_JSON_TEXT_H

#include <stddef.h>
#include <stdint.h>

/* The text of the value of the top-level member `key` of the object in body[0..len):
 * *val points into body, *val_len bytes (a number's literal, a string with its quotes, …).
 * Keys written with escapes ("se\u0065d") match their decoded form. Returns 0, or -ENOENT
 * when there is no such member, -EINVAL when body is not an object. */
int json_text_member(const char *body, size_t len, const char *key, const char **val,
                     size_t *val_len);

/* A JSON number literal s[0..len) that is a non-negative integer written without fraction
 * or exponent ("18446744073709551615"), exactly, into *out. Returns 0, -EINVAL when the
 * literal has a sign, a fraction or an exponent, -ERANGE when it is 2^64 or more. */
int json_text_u64(const char *s, size_t len, uint64_t *out);

#endif
