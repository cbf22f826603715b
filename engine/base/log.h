/* log.h — one log line per event on stderr, with a journald priority prefix (<3>…<7>),
 * a component tag and the function. The level is checked before formatting, so a
 * disabled DEBUG line costs one comparison. Secrets never go through here. */
#ifndef OSPREY_LOG_H
#define OSPREY_LOG_H

enum log_level { LL_ERR = 3, LL_WARN = 4, LL_INFO = 6, LL_DEBUG = 7 };
enum log_format { LOG_FMT_TEXT, LOG_FMT_JSON };

extern int log_level;                 /* lines above this level are dropped; default LL_INFO */
extern enum log_format log_format;

#define LOG(lvl, comp, ...) do { if ((lvl) > log_level) break; \
        log_write_((lvl), (comp), __func__, __VA_ARGS__); } while (0)

void log_write_(int lvl, const char *comp, const char *func, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* "err", "warn", "info", "debug" → level; -1 for anything else. */
int log_level_parse(const char *s);

#endif
