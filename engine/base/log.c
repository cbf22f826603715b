/* log.c — stderr logging for journald: "<6>osprey[comp] func: message". In JSON format each
 * line is an object with level, comp, func and msg, for log shippers. */
#include "engine/base/log.h"

#include <pthread.h>
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

static void json_escape(FILE *f, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
}

void log_write_(int lvl, const char *comp, const char *func, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    /* One locked write per line so that lines from several threads never interleave. */
    pthread_mutex_lock(&log_lock);
    if (log_format == LOG_FMT_JSON) {
        fprintf(stderr, "<%d>{\"level\":\"%s\",\"comp\":\"", lvl, level_name(lvl));
        json_escape(stderr, comp);
        fprintf(stderr, "\",\"func\":\"%s\",\"msg\":\"", func);
        json_escape(stderr, msg);
        fputs("\"}\n", stderr);
    } else {
        fprintf(stderr, "<%d>osprey[%s] %s: %s\n", lvl, comp, func, msg);
    }
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
