/* daemon.c — start, find and stop the real `osprey serve` for integration tests. */
#include "tests/integration/daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <check.h>

#include "engine/model/gen_model.h"
#include "engine/base/util.h"
#include "tests/integration/http_client.h"

extern char **environ;

static const char *tmp_dir(void)
{
    const char *t = getenv("OSPREY_TEST_TMP");

    return t && t[0] ? t : "/tmp";
}

const char *daemon_bin(void)
{
    const char *b = getenv("OSPREY_BIN");

    return b && b[0] ? b : "build/osprey";
}

const char *daemon_model_dir(void)
{
    static char dir[512];
    char cfg[600], err[ERR_LEN];
    struct stat st;

    /* Under run-tests.sh's per-run folder; by hand, one per parent (the Check runner). */
    if (getenv("OSPREY_TEST_TMP"))
        snprintf(dir, sizeof dir, "%s/tiny-model", tmp_dir());
    else
        snprintf(dir, sizeof dir, "/tmp/osprey-it-tiny.%d", (int)getppid());
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    if (stat(cfg, &st) != 0) {
        /* Written once: under a temporary name, then renamed, so that a concurrent reader
         * never sees half a folder. */
        char part[600];
        struct gen_model_opts o = { .config = "tiny", .seed = 1 };

        snprintf(part, sizeof part, "%s.part.%d", dir, (int)getpid());
        o.out_dir = part;
        if (gen_model_write(&o, NULL, err)) {
            fprintf(stderr, "daemon_model_dir: %s\n", err);
            return dir;
        }
        if (rename(part, dir)) {
            char cmd[1300];

            snprintf(cmd, sizeof cmd, "rm -rf '%s'", part);   /* another test won the race */
            if (system(cmd)) {}
        }
    }
    return dir;
}

static double mono_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static char *read_log(const struct daemon *d)
{
    char *text = NULL;
    size_t len;

    if (read_file(d->log_path, &text, &len, NULL))
        return NULL;
    return text;
}

bool daemon_log_has(const struct daemon *d, const char *needle)
{
    char *text = read_log(d);
    bool has = text && strstr(text, needle);

    free(text);
    return has;
}

void daemon_print_log(const struct daemon *d)
{
    char *text = read_log(d);

    fprintf(stderr, "---- %s ----\n%s---- end ----\n", d->log_path, text ? text : "(none)\n");
    free(text);
}

int daemon_start(struct daemon *d, const char *const *extra)
{
    return daemon_start_env(d, extra, NULL);
}

/* OSPREY_TEST_WRAPPER ("valgrind --leak-check=full -q", say) runs every daemon under a tool:
 * its words go before the daemon's in args. Returns how many it put there. */
static int wrapper_words(const char **args, int max, char *buf, size_t size)
{
    const char *w = getenv("OSPREY_TEST_WRAPPER");
    int n = 0;

    if (!w || !w[0])
        return 0;
    snprintf(buf, size, "%s", w);
    for (char *save = NULL, *tok = strtok_r(buf, " ", &save); tok && n < max; tok = strtok_r(NULL, " ", &save))
        args[n++] = tok;
    return n;
}

/* A sanitizer's report holds one of marks; valgrind's -q mode prints nothing but its reports,
 * every line of them "==PID== ". */
const char *daemon_tool_report(const char *log)
{
    static const char *const marks[] = { "ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:" };
    const char *at;

    for (size_t i = 0; i < sizeof marks / sizeof marks[0]; i++)
        if ((at = strstr(log, marks[i])))
            return at;
    for (at = log; (at = strstr(at, "==")); at += 2)
        if ((at == log || at[-1] == '\n') && at[2] >= '0' && at[2] <= '9')
            return at;
    return NULL;
}

int daemon_start_env(struct daemon *d, const char *const *extra, const char *const *extra_env)
{
    static int counter;
    static char wrapper[512];
    /* OSPREY_TEST_BACKEND=cuda runs the same suites on the GPU machine */
    const char *backend = getenv("OSPREY_TEST_BACKEND") ? getenv("OSPREY_TEST_BACKEND") : "cpu";
    const char *args[64] = { daemon_bin(), "serve", "--model", daemon_model_dir(), "--port", "0",
                             "--backend", backend, "--kv-cache-memory", "32MiB", "--threads", "1",
                             "--log-level", "info", "--shutdown-grace", "10", "--served-model-name", "tiny" };
    int n = 18, wrapped;
    const char *argv[80];
    char *env[256];
    int num_env = 0;
    double end;

    /* The daemon reads OSPREY_* variables as options: keep the caller's out of the test. */
    for (char **e = environ; *e && num_env < 255; e++)
        if (strncmp(*e, "OSPREY_", 7))
            env[num_env++] = *e;
    for (; extra_env && *extra_env && num_env < 255; extra_env++)
        env[num_env++] = (char *)*extra_env;
    env[num_env] = NULL;
    memset(d, 0, sizeof *d);
    /* OSPREY_TEST_TP_SIZE=N runs the same suites with the model sharded over N ranks (the
     * GPU machine with several GPUs: scripts/gpu/tp-multi.sh) */
    if (getenv("OSPREY_TEST_TP_SIZE")) {
        args[n++] = "--tensor-parallel-size";
        args[n++] = getenv("OSPREY_TEST_TP_SIZE");
    }
    for (; extra && *extra && n < 62; extra++)
        args[n++] = *extra;
    args[n] = NULL;
    wrapped = wrapper_words(argv, 16, wrapper, sizeof wrapper);
    memcpy(argv + wrapped, args, sizeof args);
    snprintf(d->log_path, sizeof d->log_path, "%s/osprey-it-%d-%d.log", tmp_dir(), (int)getpid(), counter++);
    /* fork + exec rather than posix_spawn: the child asks to be killed when the test that
     * started it dies, so that a failed assertion never leaves a daemon running. */
    if ((d->pid = fork()) == 0) {
        int out = open("/dev/null", O_WRONLY), log = open(d->log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() == 1 || out < 0 || log < 0 || dup2(out, 1) < 0 || dup2(log, 2) < 0)
            _exit(127);
        execvpe(argv[0], (char *const *)argv, env);
        _exit(127);
    }
    if (d->pid < 0) {
        d->pid = 0;
        fprintf(stderr, "daemon_start: cannot fork\n");
        return -1;
    }
    /* valgrind starts a daemon in seconds, not milliseconds */
    for (end = mono_s() + (wrapped ? 120 : 30); mono_s() < end; usleep(20000)) {
        char *text = read_log(d), *at = text ? strstr(text, "listening on http://127.0.0.1:") : NULL;
        int status;

        if (at)
            d->port = atoi(at + strlen("listening on http://127.0.0.1:"));
        free(text);
        if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
            d->pid = 0;
            break;
        }
        if (d->port) {
            struct hc_response r;

            hc_request(d->port, "GET", "/health", NULL, NULL, &r, 2);
            status = r.status;
            hc_response_fini(&r);
            if (status == 200) {
                snprintf(d->url, sizeof d->url, "http://127.0.0.1:%d", d->port);
                return 0;
            }
        }
    }
    daemon_print_log(d);
    if (d->pid)
        daemon_stop(d, SIGKILL, 5);
    return -1;
}

/* Every daemon a test stops must have exited without a sanitizer's or valgrind's report:
 * a report fails the test that started it, whatever that test checks. */
static void assert_no_tool_report(const struct daemon *d)
{
    char *text = read_log(d);
    const char *at = text ? daemon_tool_report(text) : NULL;

    if (at)
        daemon_print_log(d);
    free(text);
    ck_assert_msg(!at, "%s holds a sanitizer or valgrind report", d->log_path);
}

int daemon_stop(struct daemon *d, int sig, double timeout_s)
{
    double end = mono_s() + timeout_s * (getenv("OSPREY_TEST_WRAPPER") ? 10 : 1);
    int status;

    if (d->pid <= 0)
        return -1;
    if (sig)
        kill(d->pid, sig);
    while (mono_s() < end) {
        if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
            d->pid = 0;
            assert_no_tool_report(d);
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
        usleep(10000);
    }
    kill(d->pid, SIGKILL);
    waitpid(d->pid, &status, 0);
    d->pid = 0;
    return -1;
}
