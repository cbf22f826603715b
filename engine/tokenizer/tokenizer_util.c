/* tokenizer_util.c — the small pieces the tokenizer files share: string lists, strict and
 * lossy UTF-8, the character classes Hugging Face's Rust code uses (char::is_whitespace,
 * regex \w, char::is_numeric, punctuation), and the string hash. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>   /* utf8proc_category */
#include <xxhash.h>     /* XXH3_64bits */

#include "engine/tokenizer/tokenizer_internal.h"

void tk__pieces_clear(struct tk_pieces *p)
{
    p->buf.len = 0;
    p->n = 0;
}

int tk__grow(void **arr, int *cap, int n, size_t elem)
{
    int c = *cap ? *cap * 2 : 16;
    void *p;

    if (n < *cap)
        return 0;
    if (c <= n)
        c = n + 1;
    if (!(p = realloc(*arr, (size_t)c * elem)))
        return -ENOMEM;
    *arr = p;
    *cap = c;
    return 0;
}

int tk__pieces_add_ref(struct tk_pieces *p, size_t off, size_t n, bool at0)
{
    /* the buffer even for empty pieces: p->buf.p + off must never be NULL + 0 */
    if (buf_reserve(&p->buf, 0) || TK_GROW(p->v, p->cap, p->n))
        return -ENOMEM;
    p->v[p->n++] = (struct tk_piece){ off, n, at0 };
    return 0;
}

int tk__pieces_add(struct tk_pieces *p, const char *s, size_t n, bool at0)
{
    size_t off = p->buf.len;

    if (buf_put(&p->buf, s, n))
        return -ENOMEM;
    return tk__pieces_add_ref(p, off, n, at0);
}

void tk__pieces_free(struct tk_pieces *p)
{
    buf_fini(&p->buf);
    free(p->v);
    memset(p, 0, sizeof *p);
}

/* Length of the well-formed sequence at s (Unicode Table 3-7), or of its longest valid
 * prefix as a negative number (-1 at least): the "maximal subpart" that lossy decoding
 * replaces with one U+FFFD. */
static int utf8_seq(const unsigned char *s, size_t len, uint32_t *cp)
{
    unsigned char b = s[0], lo = 0x80, hi = 0xbf;
    int n;
    uint32_t c;

    if (b < 0x80) {
        *cp = b;
        return 1;
    }
    if (b >= 0xc2 && b <= 0xdf) { n = 2; c = b & 0x1f; }
    else if (b >= 0xe0 && b <= 0xef) {
        n = 3; c = b & 0x0f;
        if (b == 0xe0) lo = 0xa0;
        if (b == 0xed) hi = 0x9f;
    } else if (b >= 0xf0 && b <= 0xf4) {
        n = 4; c = b & 0x07;
        if (b == 0xf0) lo = 0x90;
        if (b == 0xf4) hi = 0x8f;
    } else
        return -1;
    for (int k = 1; k < n; k++) {
        if ((size_t)k >= len || s[k] < lo || s[k] > hi)
            return -k;
        c = c << 6 | (s[k] & 0x3f);
        lo = 0x80;
        hi = 0xbf;
    }
    *cp = c;
    return n;
}

int tk__utf8_decode(const char *s, size_t len, uint32_t *cp)
{
    int n;

    if (len == 0)
        return 0;
    n = utf8_seq((const unsigned char *)s, len, cp);
    return n > 0 ? n : 0;
}

int tk__utf8_encode(uint32_t cp, char out[4])
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3f));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

size_t tk__utf8_valid_prefix(const char *s, size_t len)
{
    size_t i = 0;
    uint32_t cp;

    while (i < len) {
        int n;

        if ((unsigned char)s[i] < 0x80) {
            i++;
            continue;
        }
        n = utf8_seq((const unsigned char *)s + i, len - i, &cp);
        if (n < 0)
            break;
        i += n;
    }
    return i;
}

int tk__utf8_lossy(const char *s, size_t len, struct buf *out)
{
    size_t i = 0;
    uint32_t cp;

    while (i < len) {
        size_t good = tk__utf8_valid_prefix(s + i, len - i);
        int n;

        if (buf_put(out, s + i, good))
            return -ENOMEM;
        i += good;
        if (i == len)
            break;
        n = utf8_seq((const unsigned char *)s + i, len - i, &cp);
        if (buf_put(out, "\xef\xbf\xbd", 3))
            return -ENOMEM;
        i += (size_t)-n;
    }
    return 0;
}

bool tk__is_space(uint32_t c)
{
    return (c >= 0x09 && c <= 0x0d) || c == 0x20 || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
           c == 0x205f || c == 0x3000;
}

bool tk__is_word(uint32_t c)
{
    if (c < 0x80)
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME: case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_PC:
        return true;
    default:
        return c == 0x200c || c == 0x200d;
    }
}

bool tk__is_numeric(uint32_t c)
{
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);

    return k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_NO;
}

bool tk__is_punct(uint32_t c)
{
    if (c < 0x80)
        return (c >= 0x21 && c <= 0x2f) || (c >= 0x3a && c <= 0x40) ||
               (c >= 0x5b && c <= 0x60) || (c >= 0x7b && c <= 0x7e);
    switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_PC: case UTF8PROC_CATEGORY_PD: case UTF8PROC_CATEGORY_PS:
    case UTF8PROC_CATEGORY_PE: case UTF8PROC_CATEGORY_PI: case UTF8PROC_CATEGORY_PF:
    case UTF8PROC_CATEGORY_PO:
        return true;
    default:
        return false;
    }
}

uint64_t tk__hash(const void *s, size_t n)
{
    return XXH3_64bits(s, n);
}
