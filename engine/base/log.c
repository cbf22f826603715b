/* log.c — stderr logging for journald: "<6>osprey[comp] func: message". In JSON format each
 * line is an object with level, comp, func and msg, for log shippers. */
#include "engine/base/log.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int log_level = LL_INFO;
enum log_format log_format = LOG_FMT_TEXT;

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *level_name(int lvl)
{
    switch (lvl) {
    case LL_ERR: return "err";
    case LL_WARN: return "warn";
    case LL_INFO: return "info";
    default: return "debug";
    }
}

/* The length of the UTF-8 sequence at s (1-4), or 0 when it is not valid UTF-8 (overlong,
 * a surrogate, past U+10FFFF, cut short). */
static int utf8_len(const unsigned char *s)
{
    unsigned c = s[0];
    int n = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 :
            c >= 0xf0 && c <= 0xf4 ? 4 : 0;

    for (int i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] > 0x9f) || (c == 0xf0 && s[1] < 0x90) ||
        (c == 0xf4 && s[1] > 0x8f))
        return 0;
    return n;
}

/* A line being built: one write per line, so lines from several threads (and processes
 * sharing the journal stream) never interleave, and stderr's lack of buffering costs one
 * system call per line, not one per piece. */
struct line {
    char buf[12 * 1024];             /* a 2 KiB message escaped at worst 5 bytes for 1 */
    size_t len;
};

static void put(struct line *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct line *l, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (l->len >= sizeof l->buf)
        return;
    va_start(ap, fmt);
    n = vsnprintf(l->buf + l->len, sizeof l->buf - l->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        l->len = l->len + (size_t)n < sizeof l->buf ? l->len + (size_t)n : sizeof l->buf - 1;
}

/* Appends s so that a line stays one line and says only what it says: much of what we log
 * came from a client (a path, a model name, a prompt at debug), and a raw newline there would
 * start a forged line that journald reads with the client's "<0>" priority, a raw ESC would
 * drive the terminal of whoever reads the log, and invalid UTF-8 would break a JSON shipper.
 * So control characters (C0, DEL, C1) and every byte that is not part of valid UTF-8 are
 * escaped: \xNN in text; in JSON \u00NN for controls, and the text \xNN for invalid bytes
 * (JSON cannot hold them), with '"' and '\' escaped as JSON wants. The component and
 * message go through here in both formats. */
static void write_escaped(struct line *l, const char *str, bool json)
{
    const unsigned char *s = (const unsigned char *)str;

    while (*s) {
        int n = utf8_len(s);
        unsigned cp = n == 2 ? ((s[0] & 0x1fu) << 6) | (s[1] & 0x3fu) : s[0];

        if (n == 0)
            put(l, json ? "\\\\x%02x" : "\\x%02x", s[0]);
        else if (n == 1 && (cp < 0x20 || cp == 0x7f))
            put(l, json ? "\\u%04x" : "\\x%02x", cp);
        else if (n == 2 && cp >= 0x80 && cp <= 0x9f)
            put(l, json ? "\\u%04x" : "\\xc2\\x%02x", json ? cp : s[1]);
        else if (json && (cp == '"' || cp == '\\'))
            put(l, "\\%c", cp);
        else
            put(l, "%.*s", n, (const char *)s);
        s += n ? n : 1;
    }
}

void log_write_(int lvl, const char *comp, const char *func, const char *fmt, ...)
{
    static struct line l;            /* under log_lock: 12 KiB off the callers' stacks */
    char msg[2048];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    pthread_mutex_lock(&log_lock);
    l.len = 0;
    if (log_format == LOG_FMT_JSON) {
        put(&l, "<%d>{\"level\":\"%s\",\"comp\":\"", lvl, level_name(lvl));
        write_escaped(&l, comp, true);
        put(&l, "\",\"func\":\"%s\",\"msg\":\"", func);
        write_escaped(&l, msg, true);
        put(&l, "\"}");
    } else {
        put(&l, "<%d>osprey[%s] %s: ", lvl, comp, func);
        write_escaped(&l, msg, false);
    }
    l.buf[l.len++] = '\n';           /* put() leaves room for it */
    fwrite(l.buf, 1, l.len, stderr);
    fflush(stderr);
    pthread_mutex_unlock(&log_lock);
}

int log_level_parse(const char *s)
{
    if (!strcmp(s, "err") || !strcmp(s, "error")) return LL_ERR;
    if (!strcmp(s, "warn") || !strcmp(s, "warning")) return LL_WARN;
    if (!strcmp(s, "info")) return LL_INFO;
    if (!strcmp(s, "debug")) return LL_DEBUG;
    return -1;
}
