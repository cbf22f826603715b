/* auth.c — Bearer parsing and the constant-time key comparison behind --api-key. */
#include "server/auth.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static const char *skip_blanks(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return s;
}

int auth_bearer(const char *header, const char **token, size_t *len)
{
    const char *s, *end;

    if (!header)
        return -EINVAL;
    s = skip_blanks(header);
    if (strncasecmp(s, "Bearer", 6) || (s[6] != ' ' && s[6] != '\t'))
        return -EINVAL;
    s = skip_blanks(s + 6);
    end = s + strlen(s);
    while (end > s && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    if (end == s)
        return -EINVAL;
    *token = s;
    *len = (size_t)(end - s);
    return 0;
}

bool auth_equal(const char *given, size_t given_len, const char *key, size_t key_len)
{
    /* volatile: keep the compiler from turning the loop into an early-exit memcmp. */
    volatile unsigned char diff = (unsigned char)(given_len != key_len);

    for (size_t i = 0; i < key_len; i++) {
        unsigned char g = i < given_len ? (unsigned char)given[i] : 0;

        diff |= g ^ (unsigned char)key[i];
    }
    return diff == 0;
}

bool auth_check(const char *authorization, const char *key)
{
    const char *token;
    size_t len;

    if (auth_bearer(authorization, &token, &len))
        return false;
    return auth_equal(token, len, key, strlen(key));
}

void auth_mask(const char *key, char *out, size_t cap)
{
    size_t n = key ? strlen(key) : 0;

    if (n == 0)
        snprintf(out, cap, "(none)");
    else if (n < AUTH_MASK_MIN_LEN)
        snprintf(out, cap, "****");     /* 4 of 9 characters would leave 5 to guess */
    else
        snprintf(out, cap, "****%s", key + n - 4);
}
