/* http_client.c — the tests' HTTP client: plain sockets, poll() for the timeouts. */
#include "tests/integration/http_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double mono_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int hc_connect(int port)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&a, sizeof a)) {
        close(fd);
        return -1;
    }
    return fd;
}

int hc_open_post(int port, const char *path, const char *body, int rcvbuf)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    size_t blen = strlen(body), cap = strlen(path) + blen + 256;
    char *req = malloc(cap);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), n;

    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    /* Before connect, so that the window the client advertises is small from the start. */
    if (fd >= 0 && rcvbuf)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    if (!req || fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a))
        goto fail;
    n = snprintf(req, cap, "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                           "Content-Length: %zu\r\n\r\n%s", path, blen, body);
    if (hc_send(fd, req, (size_t)n))
        goto fail;
    free(req);
    return fd;
fail:
    free(req);
    if (fd >= 0)
        close(fd);
    return -1;
}

int hc_send(int fd, const char *s, size_t len)
{
    while (len) {
        ssize_t n = send(fd, s, len, MSG_NOSIGNAL);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        s += n;
        len -= (size_t)n;
    }
    return 0;
}

char *hc_read_all(int fd, double timeout_s, size_t *len, int *closed)
{
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    double end = mono_s() + timeout_s;

    *closed = 0;
    while (buf) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        double left = end - mono_s();
        ssize_t got;

        if (left <= 0 || poll(&p, 1, (int)(left * 1000) + 1) <= 0)
            break;
        if (n + 4096 + 1 > cap) {
            char *b = realloc(buf, cap * 2);
            if (!b) {
                free(buf);
                return NULL;
            }
            buf = b;
            cap *= 2;
        }
        got = recv(fd, buf + n, cap - n - 1, 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            *closed = 1;
            break;
        }
        n += (size_t)got;
    }
    if (buf)
        buf[n] = '\0';
    *len = n;
    return buf;
}

int hc_read_until(int fd, const char *needle, double timeout_s)
{
    char buf[65536];
    size_t n = 0;
    double end = mono_s() + timeout_s;

    while (n < sizeof buf - 1) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        double left = end - mono_s();
        ssize_t got;

        if (left <= 0 || poll(&p, 1, (int)(left * 1000) + 1) <= 0)
            return 0;
        if ((got = recv(fd, buf + n, sizeof buf - 1 - n, 0)) <= 0)
            return 0;
        n += (size_t)got;
        buf[n] = '\0';
        if (strstr(buf, needle))
            return 1;
    }
    return 0;
}

/* Decodes a chunked body in place; returns the decoded length. */
static size_t dechunk(char *b, size_t len)
{
    size_t in = 0, out = 0;

    while (in < len) {
        char *end;
        unsigned long n = strtoul(b + in, &end, 16);
        char *crlf = strstr(b + in, "\r\n");

        if (!crlf || end > crlf)
            break;
        in = (size_t)(crlf - b) + 2;
        if (n == 0 || in + n > len)
            break;
        memmove(b + out, b + in, n);
        out += n;
        in += n + 2;
    }
    b[out] = '\0';
    return out;
}

int hc_request(int port, const char *method, const char *path, const char *extra_headers,
               const char *body, struct hc_response *out, double timeout_s)
{
    size_t blen = body ? strlen(body) : 0, hlen = 512 + strlen(path) + (extra_headers ? strlen(extra_headers) : 0);
    char *req = malloc(hlen + blen), *raw, *sep, tmp[64];
    int fd, closed, n;
    size_t len;

    memset(out, 0, sizeof *out);
    if (!req || (fd = hc_connect(port)) < 0) {
        free(req);
        return -1;
    }
    n = snprintf(req, hlen, "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n%s",
                 method, path, port, extra_headers ? extra_headers : "");
    if (body)
        n += snprintf(req + n, hlen - (size_t)n, "Content-Type: application/json\r\nContent-Length: %zu\r\n", blen);
    n += snprintf(req + n, hlen - (size_t)n, "\r\n");
    if (body)
        memcpy(req + n, body, blen);
    if (hc_send(fd, req, (size_t)n + blen)) {
        free(req);
        close(fd);
        return -1;
    }
    free(req);
    raw = hc_read_all(fd, timeout_s, &len, &closed);
    close(fd);
    if (!raw)
        return -1;
    sscanf(raw, "HTTP/1.%*d %d", &out->status);
    if (!(sep = strstr(raw, "\r\n\r\n"))) {
        out->head = raw;
        out->body = strdup("");
        return -1;
    }
    *sep = '\0';
    out->head = raw;
    out->body_len = len - (size_t)(sep + 4 - raw);
    out->body = malloc(out->body_len + 1);
    memcpy(out->body, sep + 4, out->body_len);
    out->body[out->body_len] = '\0';
    if (hc_header(out, "Transfer-Encoding", tmp, sizeof tmp) && !strcasecmp(tmp, "chunked"))
        out->body_len = dechunk(out->body, out->body_len);
    return closed ? 0 : -1;
}

void hc_response_fini(struct hc_response *r)
{
    free(r->head);
    free(r->body);
    memset(r, 0, sizeof *r);
}

const char *hc_header(const struct hc_response *r, const char *name, char *buf, size_t cap)
{
    size_t n = strlen(name);

    for (const char *line = r->head ? strstr(r->head, "\r\n") : NULL; line; line = strstr(line, "\r\n")) {
        const char *end;
        size_t vlen;

        line += 2;
        if (strncasecmp(line, name, n) || line[n] != ':')
            continue;
        line += n + 1;
        while (*line == ' ')
            line++;
        end = strstr(line, "\r\n");
        vlen = end ? (size_t)(end - line) : strlen(line);
        if (vlen >= cap)
            vlen = cap - 1;
        memcpy(buf, line, vlen);
        buf[vlen] = '\0';
        return buf;
    }
    return NULL;
}
