/* util.h — small things every module uses: error messages for callers, invariant checks,
 * tensor element types and their conversions, whole-file reads. Nothing here allocates
 * behind the caller's back or knows about models, requests or HTTP. */
#ifndef OSPREY_UTIL_H
#define OSPREY_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define ERR_LEN 512 /* bytes of the `char *err` buffer callers pass down */

/* Writes a printf-style message into err (ERR_LEN bytes); err may be NULL. */
void errf(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Our own invariants only, never input: logs file and line, then aborts. */
#define ASSERT(x) do { if (!(x)) assert_fail_(#x, __FILE__, __LINE__); } while (0)
void assert_fail_(const char *expr, const char *file, int line) __attribute__((noreturn));

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#ifndef MIN   /* <sys/param.h> (through uv.h) has the same two */
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#endif
#ifndef MAX
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#endif

/* Element types of weights, activations and caches. F8_E4M3 is float8_e4m3fn (fp8.h): FP8
 * checkpoints' weights and the fp8 KV cache, always with a scale beside it. U8: raw bytes,
 * read only as MXFP4 experts' packed blocks and e8m0 scales (engine/model/mxfp4.h). */
enum dtype { DT_F32, DT_F16, DT_BF16, DT_F8_E4M3, DT_U8 };
size_t dtype_size(enum dtype t);
const char *dtype_name(enum dtype t);  /* "F32", "F16", "BF16", "F8_E4M3", "U8" (safetensors spelling) */
int dtype_parse(const char *s, enum dtype *out);     /* 0, or -EINVAL for anything else */

static inline float bf16_to_f32(uint16_t h)
{
    union { uint32_t u; float f; } v = { .u = (uint32_t)h << 16 };
    return v.f;
}

/* Round to nearest even, as torch does; NaN stays NaN. */
static inline uint16_t f32_to_bf16(float f)
{
    union { float f; uint32_t u; } v = { .f = f };
    if ((v.u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((v.u >> 16) | 0x40);
    v.u += 0x7fffu + ((v.u >> 16) & 1);
    return (uint16_t)(v.u >> 16);
}

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

/* Reads a whole file into a NUL-terminated malloc'd buffer; *len excludes the NUL.
 * Returns 0, or a negative errno with a message naming the path in err. */
int read_file(const char *path, char **out, size_t *len, char *err);

/* Reads a whole regular file of at most max_bytes into a NUL-terminated malloc'd buffer;
 * *len (may be NULL) excludes the NUL. What a model folder, a config file or a key file
 * holds is read through here: anything but a regular file (a FIFO, which would block the
 * open and then the read forever; a symlink to /dev/zero, which never ends; a directory) is
 * refused at once, and so is a file larger than max_bytes, before anything is allocated for
 * it. Returns 0, or a negative errno (-EINVAL not a regular file, -EFBIG too large) with a
 * message naming the path in err. */
int read_file_bounded(const char *path, size_t max_bytes, char **out, size_t *len, char *err);

/* Opens path read-only (O_NONBLOCK, so a FIFO cannot block the open) and fills *sb.
 * Returns the descriptor, or a negative errno with a message naming the path in err
 * (-EINVAL, descriptor closed, when it is not a regular file). */
struct stat;
int open_regular_file(const char *path, struct stat *sb, char *err);

/* "a directory", "a FIFO", "a character device" ... for an st_mode that is not a regular
 * file: words for the error that refuses it. */
const char *file_kind(unsigned st_mode);

/* Monotonic clock in seconds. */
double now_s(void);

#endif
