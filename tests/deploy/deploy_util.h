/* deploy_util.h — what the deploy suites share: the real nginx (Debian's, with njs) started
 * as the test's own process over the repository's site (config/nginx/osprey.conf) in a
 * temporary prefix on loopback ports, a group of osprey replicas, and requests through
 * either with the replica that answered. */
#ifndef OSPREY_TEST_DEPLOY_UTIL_H
#define OSPREY_TEST_DEPLOY_UTIL_H

#include <stdbool.h>
#include <sys/types.h>

#include "tests/stress/stress_util.h"

#define DEPLOY_MAX_REPLICAS 4

struct deploy_nginx {
    pid_t pid;
    int port;                /* the osprey site: prefix-affine, least_conn without a key */
    int rr_port;             /* plain round robin over the same replicas, for comparison */
    char dir[512];           /* its prefix: nginx.conf, osprey/, logs, temp folders */
};

/* Starts nginx over the replicas on ports[0..num) (replicas.conf: max_fails=1 and
 * fail_timeout_s), waits until it accepts. The test adds, at http level, response headers
 * X-Osprey-Upstream ($upstream_addr: every replica tried, in order) and X-Osprey-Pool
 * ($osprey_pool), and an access log in the site's osprey_upstream format. Fails the test when nginx or its js module is missing
 * or nginx does not start (its error log is printed). */
void deploy_nginx_start(struct deploy_nginx *n, const int *ports, int num, int fail_timeout_s);
/* Stops it (SIGQUIT: graceful), reaps it and removes its prefix. */
void deploy_nginx_stop(struct deploy_nginx *n);
/* Whether nginx's error log holds needle. */
bool deploy_nginx_log_has(const struct deploy_nginx *n, const char *needle);

/* One request and its answer, with the replica that answered. */
struct deploy_answer {
    int status;
    char upstream[128];      /* X-Osprey-Upstream: "127.0.0.1:P" or "127.0.0.1:P, 127.0.0.1:Q" */
    char accel_buffering[16];            /* X-Accel-Buffering, "" when absent */
    struct stress_answer a;  /* the answer taken apart (stress_call's) */
};
/* POSTs body to path on port with extra headers (may be NULL). */
void deploy_call(int port, const char *path, const char *headers, const char *body, struct deploy_answer *r);
void deploy_answer_fini(struct deploy_answer *r);

/* A stream read as it arrives (HTTP/1.0, so that the body comes unchunked until the server
 * closes): when its first event came and how its events were spread over reads. */
struct deploy_stream {
    int fd;
    char *buf;               /* everything read: head and body */
    size_t len, cap;
    double sent_s, first_event_s, done_s;    /* stress_now() clock; 0 until seen */
    int reads_with_events;   /* reads that brought at least one "data: " */
    int events_before_done;  /* events that arrived in reads before the one with [DONE] */
};
/* Connects to port and sends a POST of body (JSON) to path with extra headers (may be NULL).
 * Fails the test when it cannot connect. */
void deploy_stream_open(struct deploy_stream *s, int port, const char *path, const char *headers,
                        const char *body);
/* Reads until the first event has arrived, the server closed or timeout_s; returns whether
 * an event came. */
bool deploy_stream_first(struct deploy_stream *s, double timeout_s);
/* Reads the rest (until the server closes or timeout_s) and takes the answer apart into r
 * (status, X-Osprey-Upstream, stream_done, text, finish); closes the connection. */
void deploy_stream_finish(struct deploy_stream *s, double timeout_s, struct deploy_answer *r);

/* The prefix-cache counters summed over daemons: osprey_prefix_cache_{queries,hits}_total. */
struct deploy_prefix {
    double queries, hits;
};
void deploy_prefix_read(const struct daemon *d, int num, struct deploy_prefix *p);

/* The absolute path of a file of the repository (tests run from its root, as run-tests.sh
 * and `make test` do); fails the test when it is missing. */
const char *deploy_repo_file(const char *rel, char *buf, size_t cap);
/* An unused loopback TCP port (bound to port 0, then released). */
int deploy_free_port(void);
/* The first executable of names found in $PATH, /usr/sbin or /sbin; NULL when none. */
const char *deploy_which(const char *name, char *buf, size_t cap);

#endif
