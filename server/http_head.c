/* http_head.c — the request head as libmicrohttpd read it, checked for what lets two
 * parties frame the same bytes two ways (request smuggling, RFC 9112 5.1, 5.2, 6.1): a
 * header name that is not a token ("Content-Length : 5"), an obs-folded line, a
 * Content-Length that is not 1*DIGIT, a Transfer-Encoding other than one "chunked", or both
 * framings at once. libmicrohttpd 0.9.75 accepts the first two and then does not see the
 * framing header at all, so the body would be read as a second request.
 *
 * MHD offers no hook on the raw bytes, but it parses the head in place: every header's name
 * and value point into the head's buffer, its CR, LF and colons overwritten with NULs. The
 * headers must therefore tile the head exactly, line after line; an obs-fold breaks the
 * tiling (MHD appends the folded text to a copy of the *name* elsewhere in its pool), and so
 * does any byte MHD skipped. http.c calls this on the first call for a request, before a
 * body byte is read, and answers 400 with Connection: close. */
#include "server/http_internal.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* tchar of RFC 9110 5.6.2: what a header name may hold. */
static bool is_tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

bool http__is_token(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!is_tchar((unsigned char)*s))
            return false;
    return true;
}

struct head_walk {
    uintptr_t head, end;             /* the head's bytes as MHD left them: [head, end) */
    uintptr_t line_end;              /* where the previous line's terminator starts */
    bool tiled;                      /* every header so far began where the last line ended */
    struct http_head *h;
};

/* Whether [from, to) lies in the head and holds only byte c (any count in [min, max]). */
static bool run_of(const struct head_walk *w, uintptr_t from, uintptr_t to, char c, size_t min,
                   size_t max)
{
    if (from < w->head || to > w->end || to < from || to - from < min || to - from > max)
        return false;
    for (uintptr_t p = from; p < to; p++)
        if (*(const char *)p != c && !(c == ' ' && *(const char *)p == '\t'))
            return false;
    return true;
}

static enum MHD_Result header_cb(void *cls, enum MHD_ValueKind kind, const char *key,
                                 const char *value)
{
    struct head_walk *w = cls;
    struct http_head *h = w->h;
    uintptr_t k = (uintptr_t)key, v = (uintptr_t)value, colon = k + strlen(key);

    (void)kind;
    if (!value)
        value = "";
    h->bytes += strlen(key) + strlen(value) + 4;
    if (!h->bad_name[0] && !http__is_token(key))
        snprintf(h->bad_name, sizeof h->bad_name, "%s", key);
    if (!strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH)) {
        h->num_content_length++;
        if (!value[0] || value[strspn(value, "0123456789")])
            h->bad_content_length = true;
    }
    if (!strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING)) {
        h->num_transfer_encoding++;
        if (strcasecmp(value, "chunked"))
            snprintf(h->bad_transfer_encoding, sizeof h->bad_transfer_encoding, "%s", value);
    }
    /* The line: its terminator (CRLF or LF: 1 or 2 NULs), the name, the colon (a NUL), blanks,
     * the value. Anything else between two headers is a line MHD folded away. */
    if (w->tiled)
        w->tiled = run_of(w, w->line_end, k, '\0', 1, 2) && colon < w->end &&
                   v >= colon + 1 && run_of(w, colon + 1, v, ' ', 0, SIZE_MAX) &&
                   v + strlen(value) < w->end;
    if (w->tiled)
        w->line_end = v + strlen(value);
    return MHD_YES;
}

int http__head_check(struct MHD_Connection *conn, const char *method, const char *version,
                     struct http_head *h)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
    struct head_walk w = { .head = (uintptr_t)method, .tiled = true, .h = h };

    memset(h, 0, sizeof *h);
    w.end = ci ? w.head + ci->header_size : 0;
    /* The request line ends after the version (MHD keeps "HTTP/1.1" in place). */
    w.line_end = (uintptr_t)version + strlen(version);
    if (!ci || (uintptr_t)version < w.head || w.line_end >= w.end)
        w.tiled = false;
    MHD_get_connection_values(conn, MHD_HEADER_KIND, header_cb, &w);
    /* The last line's terminator, then the empty line's: 2 to 4 NULs up to the end. */
    h->folded = !w.tiled || !run_of(&w, w.line_end, w.end, '\0', 2, 4);
    return h->folded || h->bad_name[0] || h->bad_content_length || h->bad_transfer_encoding[0] ||
                   h->num_content_length > 1 || h->num_transfer_encoding > 1 ||
                   (h->num_content_length && h->num_transfer_encoding) ||
                   (h->num_transfer_encoding && !strcmp(version, MHD_HTTP_VERSION_1_0))
               ? -EPROTO : 0;
}

void http__head_describe(const struct http_head *h, const char *version, char *out, size_t cap)
{
    if (h->bad_name[0])
        snprintf(out, cap, "the header name '%s' is not a token (no spaces or tabs before the colon)",
                 h->bad_name);
    else if (h->folded)
        snprintf(out, cap, "a header line is folded onto the next (obs-fold) or the head is malformed");
    else if (h->num_content_length > 1)
        snprintf(out, cap, "more than one Content-Length header");
    else if (h->num_transfer_encoding > 1)
        snprintf(out, cap, "more than one Transfer-Encoding header");
    else if (h->num_content_length && h->num_transfer_encoding)
        snprintf(out, cap, "both Content-Length and Transfer-Encoding");
    else if (h->bad_content_length)
        snprintf(out, cap, "Content-Length is not a decimal number");
    else if (h->bad_transfer_encoding[0])
        snprintf(out, cap, "Transfer-Encoding '%s' is not supported (only 'chunked')",
                 h->bad_transfer_encoding);
    else if (h->num_transfer_encoding && !strcmp(version, MHD_HTTP_VERSION_1_0))
        snprintf(out, cap, "Transfer-Encoding in an HTTP/1.0 request");
    else
        snprintf(out, cap, "malformed head");
}
