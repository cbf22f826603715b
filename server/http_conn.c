/* http_conn.c — the daemon's TCP connections as MHD opens and closes them, and the watcher
 * thread over them: it cuts a connection whose request is not in by its deadline, and
 * notices a client that left while its connection sleeps (MHD polls no suspended socket).
 * Leaving means a reset or a failed write, never a half-close: a client that shut down its
 * sending side after a whole request (shutdown(SHUT_WR), as `nc -N` does) still reads its
 * answer. server/http.c owns the requests; this file only reads and marks them. */
#include "server/http_internal.h"

#include <linux/tcp.h>       /* TCP_INFO with tcpi_bytes_received (glibc's lacks it) */
#include <netinet/in.h>      /* IPPROTO_TCP */
#include <poll.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "engine/base/log.h"
#include "engine/base/util.h"

#define WATCH_PERIOD_MS 100

/* MHD_OPTION_NOTIFY_CONNECTION: tracks each connection (its descriptor and deadline) for the
 * watcher, from the connection's start to its close. */
void http__connection_cb(void *cls, struct MHD_Connection *conn, void **socket_context,
                         enum MHD_ConnectionNotificationCode code)
{
    struct http_server *s = cls;
    struct http_conn *hc;

    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);

        if (!ci || !(hc = calloc(1, sizeof *hc)))
            return;              /* untracked: no deadline, no disconnect watch */
        hc->fd = ci->connect_fd;
        hc->deadline_s = s->o.request_timeout_s > 0 ? now_s() + s->o.request_timeout_s : 0;
        pthread_mutex_lock(&s->conns_lock);
        hc->next = s->conns;
        if (s->conns)
            s->conns->prev = hc;
        s->conns = hc;
        pthread_mutex_unlock(&s->conns_lock);
        *socket_context = hc;
        return;
    }
    /* Closed: MHD calls this before it closes the socket, so the watcher (which looks at fd
     * only under conns_lock) never touches a descriptor that was reused. */
    if (!(hc = *socket_context))
        return;
    pthread_mutex_lock(&s->conns_lock);
    if (hc->prev)
        hc->prev->next = hc->next;
    else
        s->conns = hc->next;
    if (hc->next)
        hc->next->prev = hc->prev;
    pthread_mutex_unlock(&s->conns_lock);
    free(hc);
    *socket_context = NULL;
}

/* Bytes received on fd so far (the kernel's count, whatever MHD read of them), or -1 where
 * the kernel does not say (before Linux 4.1). */
static int64_t bytes_received(int fd)
{
    struct tcp_info ti;
    socklen_t len = sizeof ti;

    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) ||
        len < offsetof(struct tcp_info, tcpi_bytes_received) + sizeof ti.tcpi_bytes_received)
        return -1;
    return (int64_t)ti.tcpi_bytes_received;
}

/* Slowloris on a keep-alive connection: a request's deadline counted from the end of the
 * one before would give a client the idle timeout *plus* the request timeout to dribble in
 * its next head. So the clock stops between requests (MHD's idle timeout covers silence)
 * and starts again when a byte of the next one comes: the watcher sees the socket's received
 * count move. Without that count, the old, lenient deadline. */
void http__conn_idle(struct http_server *s, struct http_conn *hc)
{
    int64_t bytes = bytes_received(hc->fd);

    if (s->o.request_timeout_s <= 0)
        return;
    if (bytes < 0) {
        hc->deadline_s = now_s() + s->o.idle_timeout_s + s->o.request_timeout_s;
        return;
    }
    hc->deadline_s = 0;
    hc->idle = true;
    hc->idle_bytes = (uint64_t)bytes;
}

/* ---- the watcher ---- */

enum peer { PEER_HERE, PEER_HALF_CLOSED, PEER_GONE };

/* What the peer did. A reset, or a close once we wrote to it, shows as POLLERR/POLLHUP; its
 * FIN alone (end of file, POLLRDHUP) is only the end of what it sends: a half-close and a
 * close look the same until a write is answered with a reset. Pipelined bytes are neither. */
static enum peer peer_state(int fd)
{
    struct pollfd p = { .fd = fd, .events = POLLIN | POLLRDHUP };
    char c;

    if (poll(&p, 1, 0) <= 0)
        return PEER_HERE;
    if (p.revents & (POLLHUP | POLLERR))
        return PEER_GONE;
    if ((p.revents & POLLRDHUP) || ((p.revents & POLLIN) && recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0))
        return PEER_HALF_CLOSED;
    return PEER_HERE;
}

/* A sleeping request whose peer sent its FIN: is it still reading? A stream will find out at
 * its next write. A deferred answer writes nothing until the end, so it is asked once with an
 * interim "100 Continue", which any HTTP/1.1 client must accept and skip before the final
 * answer (RFC 9110 15.2): a peer that closed answers it with a reset, seen on the next pass.
 * Safe to write here: the request is parked, so MHD writes nothing on this connection until
 * http_wake, which needs r->lock (held). HTTP/1.0 clients may not be sent a 1xx: they keep
 * their request until its answer is written. Returns the peer's state after the probe. */
static enum peer probe_half_closed(struct http_request *r, int fd)
{
    static const char probe[] = "HTTP/1.1 100 Continue\r\n\r\n";
    ssize_t n;

    if (r->streaming || r->probed || !r->http11)
        return PEER_HALF_CLOSED;
    r->probed = true;
    n = send(fd, probe, sizeof probe - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n == (ssize_t)sizeof probe - 1)
        return PEER_HALF_CLOSED;
    if (n > 0)
        shutdown(fd, SHUT_RDWR);     /* half a probe sent: the connection cannot go on */
    return PEER_GONE;
}

void *http__watcher_main(void *arg)
{
    struct http_server *s = arg;

    pthread_mutex_lock(&s->conns_lock);
    while (!s->watcher_stop) {
        struct http_request *gone[64];
        int num_gone = 0;
        double now = now_s();
        struct timespec ts;

        for (struct http_conn *hc = s->conns; hc; hc = hc->next) {
            struct http_request *r = hc->req;

            if (hc->idle && bytes_received(hc->fd) > (int64_t)hc->idle_bytes) {
                /* The next request's first bytes came since the last pass: its clock starts. */
                hc->idle = false;
                hc->deadline_s = now + s->o.request_timeout_s;
            }
            if (hc->deadline_s > 0 && now > hc->deadline_s && !hc->cut) {
                /* MHD sees the shut socket fail and closes the connection itself. */
                LOG(LL_INFO, "http", "closing a connection that sent its request too slowly "
                    "(request-timeout %.0fs)", s->o.request_timeout_s);
                shutdown(hc->fd, SHUT_RDWR);
                hc->cut = true;
            }
            if (!r || num_gone == (int)ARRAY_LEN(gone))
                continue;
            pthread_mutex_lock(&r->lock);
            if (r->parked && !r->closed && r->ops) {
                enum peer p = peer_state(hc->fd);

                if (p == PEER_HALF_CLOSED)
                    p = probe_half_closed(r, hc->fd);
                if (p == PEER_GONE) {
                    r->closed = true;
                    r->client_gone = true;
                    r->refs++;
                    gone[num_gone++] = r;
                }
            }
            pthread_mutex_unlock(&r->lock);
        }
        pthread_mutex_unlock(&s->conns_lock);
        /* Outside every lock: closed() calls into the engine. */
        for (int i = 0; i < num_gone; i++) {
            LOG(LL_INFO, "http", "req %llu: client went away while waiting; aborting", gone[i]->id);
            gone[i]->ops->closed(gone[i]->job);
            http_unref(gone[i]);
        }
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += WATCH_PERIOD_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&s->conns_lock);
        if (!s->watcher_stop)
            pthread_cond_timedwait(&s->watcher_cond, &s->conns_lock, &ts);
    }
    pthread_mutex_unlock(&s->conns_lock);
    return NULL;
}
