/* daemon.h — integration tests' handle on the real daemon: `$OSPREY_BIN serve` (default
 * build/osprey) on 127.0.0.1 with --port 0 and the CPU backend over a tiny generated model,
 * its stderr in a log file the tests can search, stopped with a signal and reaped.
 * OSPREY_TEST_WRAPPER="valgrind --leak-check=full -q …" runs every daemon under that tool. */
#ifndef OSPREY_TEST_DAEMON_H
#define OSPREY_TEST_DAEMON_H

#include <stdbool.h>
#include <sys/types.h>

struct daemon {
    pid_t pid;
    int port;
    char log_path[512];      /* the daemon's stderr */
    char url[64];            /* "http://127.0.0.1:PORT" */
};

/* The tiny test model (gen-model preset "tiny", seed 1), generated once per test process
 * under $OSPREY_TEST_TMP (or /tmp). Returns its folder. */
const char *daemon_model_dir(void);
/* The osprey binary: $OSPREY_BIN or build/osprey. */
const char *daemon_bin(void);

/* Starts `osprey serve --model <tiny> --served-model-name tiny --port 0 --backend cpu
 * --kv-cache-memory 32MiB --threads 1 --log-level info --shutdown-grace 10` plus extra (NULL-terminated, may be NULL), waits for the "listening
 * on" line and for /health to say 200. Returns 0, or -1 (the log is printed). */
int daemon_start(struct daemon *d, const char *const *extra);
/* The same with env ("NAME=value"…, NULL-terminated) added to the daemon's environment
 * (the caller's OSPREY_* variables are never passed on). */
int daemon_start_env(struct daemon *d, const char *const *extra, const char *const *env);
/* Sends sig (SIGTERM for a clean stop; 0 to just wait) and waits up to timeout_s for the exit. Returns the
 * exit status, 128 + signal when killed by one, or -1 when it had to be SIGKILLed. */
int daemon_stop(struct daemon *d, int sig, double timeout_s);
/* Whether the log holds `needle`. */
bool daemon_log_has(const struct daemon *d, const char *needle);
/* Where text (a daemon's stderr) holds a report of ASan, LSan or UBSan (SANITIZE=1 builds) or of
 * valgrind (OSPREY_TEST_WRAPPER), or NULL. daemon_stop fails the calling test on one. */
const char *daemon_tool_report(const char *log);
/* Prints the log to stderr (for a failing test). */
void daemon_print_log(const struct daemon *d);

#endif
