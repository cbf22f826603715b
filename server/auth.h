/* auth.h — API keys: the Bearer token of an Authorization header, compared in constant time
 * with the configured key, and the masked form ("****abcd") that logs may show. The key
 * itself never reaches a log line. */
#ifndef OSPREY_AUTH_H
#define OSPREY_AUTH_H

#include <stdbool.h>
#include <stddef.h>

/* "Bearer <token>": the scheme in any case, spaces and tabs around the token ignored.
 * Returns 0 with *token pointing into header (*len bytes), or -EINVAL (no header, another
 * scheme, an empty token). */
int auth_bearer(const char *header, const char **token, size_t *len);

/* Whether given[0..given_len) equals key[0..key_len), in time that depends on key_len only:
 * every byte of the key is compared whatever the given token holds. */
bool auth_equal(const char *given, size_t given_len, const char *key, size_t key_len);

/* Whether an Authorization header (may be NULL) carries key. */
bool auth_check(const char *authorization, const char *key);

/* Keys shorter than this show no character in the log. */
#define AUTH_MASK_MIN_LEN 16

/* "****" and the key's last 4 characters ("****" alone for keys shorter than
 * AUTH_MASK_MIN_LEN), into out (cap bytes, NUL-terminated); "(none)" for a NULL or empty key. */
void auth_mask(const char *key, char *out, size_t cap);

#endif
