/* fuzz_http_wire.c — raw bytes on a TCP connection to the daemon's real HTTP side
 * (server/http*.c over libmicrohttpd 0.9.75, started once on 127.0.0.1 with a GET route and
 * a POST route that runs on the workers), so that MHD's parser and our checks on what it
 * parsed are fuzzed together. The input is sent, the sending side shut, and the answer read
 * until the server closes or falls quiet. Beyond no crash, leak or UB in either: when an
 * independent strict reading of the first request head (RFC 9112, written here) finds it
 * malformed or framed two ways — a header line without a colon, a name that is not a token
 * (a blank before the colon), an obs-folded line, a NUL, a Content-Length that is not
 * 1*DIGIT or given twice, a Transfer-Encoding other than one "chunked", both framings,
 * Transfer-Encoding in HTTP/1.0 — no 2xx may come back: the body was never read as a
 * request (request smuggling). */
#include "tests/fuzz/fuzz.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <poll.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server/http.h"

static struct http_server *srv;
static int port;

static void health(struct http_request *r, void *app)
{
    (void)app;
    http_respond(r, 200, "application/json", strdup("{\"status\":\"ok\"}"), 15);
}

static void echo(struct http_request *r, void *app)
{
    size_t len;
    const char *body = http_request_body(r, &len);
    char *out = malloc(32);

    (void)app;
    (void)body;
    if (!out)
        abort();
    http_respond(r, 200, "application/json", out, (size_t)snprintf(out, 32, "{\"bytes\":%zu}", len));
}

static const struct http_route routes[] = {
    { "/health", "GET", HTTP_PUBLIC, health },
    { "/echo", "POST", HTTP_PUBLIC, echo },
};

static void stop_server(void)
{
    http_server_stop(srv);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct http_options o = {
        .host = "127.0.0.1", .port = 0, .num_threads = 2, .max_connections = 256,
        .max_body_bytes = 4096, .max_header_bytes = 4096, .request_timeout_s = 1, .idle_timeout_s = 1,
        .routes = routes, .num_routes = 2,
    };
    char err[ERR_LEN];

    (void)argc;
    (void)argv;
    fuzz_quiet();
    if (http_server_start(&srv, &o, err)) {
        fprintf(stderr, "fuzz_http_wire: %s\n", err);
        abort();
    }
    port = http_server_port(srv);
    atexit(stop_server);
    return 0;
}

/* ---- the strict reading ---- */

static bool tchar(unsigned char c)
{
    return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* One line of the head: [*at, end of line), the CR of a CRLF left out; *at moves past it.
 * Returns false at the end of the input (the head is incomplete). */
static bool next_line(const char *in, size_t n, size_t *at, const char **line, size_t *len)
{
    const char *nl = memchr(in + *at, '\n', n - *at);

    if (!nl)
        return false;
    *line = in + *at;
    *len = (size_t)(nl - *line);
    if (*len && (*line)[*len - 1] == '\r')
        (*len)--;
    *at = (size_t)(nl - in) + 1;
    return true;
}

/* Whether the first request head is complete and malformed or framed two ways. */
static bool head_is_bad(const char *in, size_t n)
{
    size_t at = 0, len, num_cl = 0, num_te = 0;
    const char *line;
    bool bad = false, http10;

    do {                             /* empty lines before the request line are skipped */
        if (!next_line(in, n, &at, &line, &len))
            return false;
    } while (len == 0);
    http10 = len >= 8 && !memcmp(line + len - 8, "HTTP/1.0", 8);
    for (;;) {
        const char *colon, *v, *end;

        if (!next_line(in, n, &at, &line, &len))
            return false;            /* incomplete: no promise */
        if (len == 0)
            break;
        if (memchr(line, '\0', len) || line[0] == ' ' || line[0] == '\t' || !(colon = memchr(line, ':', len))) {
            bad = true;
            continue;
        }
        for (const char *p = line; p < colon; p++)
            bad |= !tchar((unsigned char)*p);
        bad |= colon == line;
        v = colon + 1;
        end = line + len;
        while (v < end && (*v == ' ' || *v == '\t'))
            v++;
        while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        if ((size_t)(colon - line) == 14 && !strncasecmp(line, "Content-Length", 14)) {
            num_cl++;
            bad |= end == v;
            for (const char *p = v; p < end; p++)
                bad |= !isdigit((unsigned char)*p);
        } else if ((size_t)(colon - line) == 17 && !strncasecmp(line, "Transfer-Encoding", 17)) {
            num_te++;
            bad |= end - v != 7 || strncasecmp(v, "chunked", 7);
        }
    }
    return bad || num_cl > 1 || num_te > 1 || (num_cl && num_te) || (num_te && http10);
}

/* ---- the exchange ---- */

static int connect_server(void)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    if (fd < 0)
        abort();
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a))
        abort();
    return fd;
}

/* Sends in while reading what comes back (the server may answer and close before it has
 * read everything), then shuts the sending side and reads until the server closes — or, so
 * that an input takes milliseconds rather than the idle timeout (MHD, edge-triggered, does
 * not see a FIN that came with the request until then), until the answer has been quiet
 * for QUIET_MS, or nothing came for FIRST_MS. Answers come at once: osprey's routes here do
 * no work. */
#define FIRST_MS 100
#define QUIET_MS 30
static char *exchange(const uint8_t *in, size_t n, size_t *got)
{
    size_t cap = 1 << 16, sent = 0;
    char *out = malloc(cap + 1);
    int fd = connect_server();
    bool shut = false;

    if (!out)
        abort();
    *got = 0;
    for (;;) {
        struct pollfd p = { .fd = fd, .events = POLLIN | (shut ? 0 : POLLOUT) };
        ssize_t k;

        if (!shut && sent == n) {
            shutdown(fd, SHUT_WR);
            shut = true;
            continue;
        }
        if (poll(&p, 1, !shut ? 1000 : *got ? QUIET_MS : FIRST_MS) <= 0)
            break;
        if (p.revents & POLLIN) {
            k = recv(fd, out + *got, cap - *got, 0);
            if (k <= 0)
                break;
            *got += (size_t)k;
            if (*got == cap)
                break;
        } else if (p.revents & POLLOUT) {
            k = send(fd, in + sent, n - sent, MSG_NOSIGNAL);
            if (k <= 0) {
                shut = true;         /* the server closed its side: read what it said */
                continue;
            }
            sent += (size_t)k;
        } else {
            break;
        }
    }
    close(fd);
    out[*got] = '\0';
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t got;
    char *answer;

    if (size > 16384)
        return 0;
    answer = exchange(data, size, &got);
    /* Status lines start the answer or a line; bodies (JSON, MHD's HTML) hold no raw newline. */
    if (head_is_bad((const char *)data, size))
        FUZZ_CHECK(strncmp(answer, "HTTP/1.1 2", 10) && !strstr(answer, "\nHTTP/1.1 2"),
                   "a 2xx after a malformed head: %.300s", answer);
    free(answer);
    return 0;
}
