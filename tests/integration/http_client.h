/* http_client.h — a small blocking HTTP/1.1 client for the tests: one request per
 * connection (Connection: close), the whole response read until the server closes, chunked
 * bodies decoded. Raw sockets too, for what curl cannot do (half requests, disconnects). */
#ifndef OSPREY_TEST_HTTP_CLIENT_H
#define OSPREY_TEST_HTTP_CLIENT_H

#include <stddef.h>

struct hc_response {
    int status;            /* 0 when no status line came back */
    char *head;            /* status line and headers, NUL-terminated */
    char *body;            /* decoded body, NUL-terminated */
    size_t body_len;
};

/* Sends method path with extra_headers ("Name: value\r\n"…, may be NULL) and body (NULL for
 * none; Content-Length is added). Waits at most timeout_s for the whole answer.
 * Returns 0, or -1 when the connection failed or timed out (out->status may still be set). */
int hc_request(int port, const char *method, const char *path, const char *extra_headers,
               const char *body, struct hc_response *out, double timeout_s);
void hc_response_fini(struct hc_response *r);
/* The value of a header (case-insensitive name), copied into buf; NULL when absent. */
const char *hc_header(const struct hc_response *r, const char *name, char *buf, size_t cap);

/* A connected socket to 127.0.0.1:port, or -1. */
int hc_connect(int port);
/* Connects (with a receive buffer of rcvbuf bytes when not 0, set before connecting so that
 * the window advertised is small from the start) and sends a POST of body (JSON) to path on
 * a keep-alive connection. Returns the socket, or -1. */
int hc_open_post(int port, const char *path, const char *body, int rcvbuf);
/* Sends all of s; 0 or -1. */
int hc_send(int fd, const char *s, size_t len);
/* Reads until the server closes or timeout_s passes; malloc'd, NUL-terminated, *len bytes.
 * *closed tells whether the server closed the connection. */
char *hc_read_all(int fd, double timeout_s, size_t *len, int *closed);
/* Reads until `needle` has arrived (or timeout_s); returns 1 when it did. */
int hc_read_until(int fd, const char *needle, double timeout_s);

#endif
