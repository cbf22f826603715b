/* util.c — error messages, dtype helpers, half-precision conversions, file reads (into a
 * struct buf, buf.h). */
#include "engine/base/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <math.h>

#include "engine/base/buf.h"

void errf(char *err, const char *fmt, ...)
{
    va_list ap;

    if (!err)
        return;
    va_start(ap, fmt);
    vsnprintf(err, ERR_LEN, fmt, ap);
    va_end(ap);
}

void assert_fail_(const char *expr, const char *file, int line)
{
    fprintf(stderr, "<2>osprey: assertion failed: %s (%s:%d)\n", expr, file, line);
    abort();
}

size_t dtype_size(enum dtype t)
{
    return t == DT_F32 ? 4 : t == DT_F8_E4M3 || t == DT_U8 ? 1 : 2;
}

const char *dtype_name(enum dtype t)
{
    switch (t) {
    case DT_F32: return "F32";
    case DT_F16: return "F16";
    case DT_BF16: return "BF16";
    case DT_F8_E4M3: return "F8_E4M3";
    case DT_U8: return "U8";
    }
    return "?";
}

int dtype_parse(const char *s, enum dtype *out)
{
    if (!strcmp(s, "F32")) *out = DT_F32;
    else if (!strcmp(s, "F16")) *out = DT_F16;
    else if (!strcmp(s, "BF16")) *out = DT_BF16;
    else if (!strcmp(s, "F8_E4M3")) *out = DT_F8_E4M3;
    else if (!strcmp(s, "U8")) *out = DT_U8;
    else return -EINVAL;
    return 0;
}

float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    union { uint32_t u; float f; } v;

    if (exp == 0) {
        /* zero or subnormal: value = man * 2^-24 */
        float f = (float)man * (1.0f / 16777216.0f);
        return sign ? -f : f;
    }
    if (exp == 31)
        v.u = sign | 0x7f800000u | (man << 13);
    else
        v.u = sign | ((exp + 112) << 23) | (man << 13);
    return v.f;
}

uint16_t f32_to_f16(float f)
{
    union { float f; uint32_t u; } v = { .f = f };
    uint32_t sign = (v.u >> 16) & 0x8000, abs = v.u & 0x7fffffffu;

    if (abs > 0x7f800000u)
        return (uint16_t)(sign | 0x7e00);
    if (abs >= 0x477ff000u)                 /* rounds to >= 65520: infinity */
        return (uint16_t)(sign | 0x7c00);
    if (abs < 0x38800000u) {                /* below 2^-14: subnormal or zero */
        union { uint32_t u; float f; } a = { .u = abs };
        uint32_t m = (uint32_t)lrintf(a.f * 16777216.0f);   /* nearest even, in units of 2^-24 */
        return (uint16_t)(sign | m);
    }
    abs += 0xfffu + ((abs >> 13) & 1);
    return (uint16_t)(sign | ((abs - 0x38000000u) >> 13));
}

int read_file(const char *path, char **out, size_t *len, char *err)
{
    FILE *f = fopen(path, "rb");
    struct buf b = BUF_INIT;
    int rc = -EIO;

    *out = NULL;
    if (!f) {
        rc = -errno;
        errf(err, "%s: %s", path, strerror(errno));
        return rc;
    }
    for (;;) {
        size_t got;

        if (buf_reserve(&b, 65536)) {
            errf(err, "%s: out of memory", path);
            rc = -ENOMEM;
            goto fail;
        }
        got = fread(b.p + b.len, 1, b.cap - b.len - 1, f);
        b.len += got;
        if (got == 0) {
            if (ferror(f)) {
                errf(err, "%s: read error", path);
                goto fail;
            }
            break;
        }
    }
    fclose(f);
    b.p[b.len] = '\0';
    *out = buf_take(&b, len);
    return 0;
fail:
    fclose(f);
    buf_fini(&b);
    return rc;
}

const char *file_kind(unsigned m)
{
    if (S_ISDIR(m))  return "a directory";
    if (S_ISFIFO(m)) return "a FIFO";
    if (S_ISCHR(m))  return "a character device";
    if (S_ISBLK(m))  return "a block device";
    if (S_ISSOCK(m)) return "a socket";
    return "not a regular file";
}

int open_regular_file(const char *path, struct stat *sb, char *err)
{
    /* O_NONBLOCK: opening a FIFO with no writer would otherwise wait forever; it changes
     * nothing for the regular files we go on to read. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY), rc;

    if (fd < 0) {
        rc = -errno;
        errf(err, "%s: %s", path, strerror(errno));
        return rc;
    }
    if (fstat(fd, sb) != 0) {
        rc = -errno;
        errf(err, "%s: %s", path, strerror(errno));
        close(fd);
        return rc;
    }
    if (!S_ISREG(sb->st_mode)) {
        errf(err, "%s: is %s, not a regular file", path, file_kind(sb->st_mode));
        close(fd);
        return -EINVAL;
    }
    return fd;
}

int read_file_bounded(const char *path, size_t max_bytes, char **out, size_t *len, char *err)
{
    struct stat sb;
    struct buf b = BUF_INIT;
    int fd, rc;

    *out = NULL;
    fd = open_regular_file(path, &sb, err);
    if (fd < 0)
        return fd;
    if ((uint64_t)sb.st_size > max_bytes) {
        errf(err, "%s: %lld bytes, more than the %zu this file may have", path, (long long)sb.st_size,
             max_bytes);
        rc = -EFBIG;
        goto fail;
    }
    /* The size may change under us: read to the end, never past max_bytes. One byte more
     * than the size is room to see the end (or growth) without another allocation. */
    if (buf_reserve(&b, (size_t)sb.st_size + 1)) {
        errf(err, "%s: out of memory for %zu bytes", path, (size_t)sb.st_size + 1);
        rc = -ENOMEM;
        goto fail;
    }
    for (;;) {
        ssize_t got;

        if (b.len > max_bytes) {
            errf(err, "%s: grew past the %zu bytes this file may have", path, max_bytes);
            rc = -EFBIG;
            goto fail;
        }
        /* Full (the last byte is the NUL's): double, up to one byte past max_bytes. */
        if (b.cap - b.len == 1 && buf_reserve(&b, MIN(b.cap, max_bytes + 1 - b.len))) {
            errf(err, "%s: out of memory for %zu bytes", path, b.cap * 2);
            rc = -ENOMEM;
            goto fail;
        }
        got = read(fd, b.p + b.len, MIN(b.cap - b.len - 1, max_bytes + 1 - b.len));
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            rc = -errno;
            errf(err, "%s: read: %s", path, strerror(errno));
            goto fail;
        }
        if (got == 0)
            break;
        b.len += (size_t)got;
    }
    close(fd);
    b.p[b.len] = '\0';
    *out = buf_take(&b, len);
    return 0;
fail:
    close(fd);
    buf_fini(&b);
    return rc;
}

double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}
