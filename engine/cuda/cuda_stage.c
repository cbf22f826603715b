/* cuda_stage.c — the step batch and its sampling rows on their way to the device: packed
 * into one pinned host buffer in a layout that depends only on the padded counts (so a
 * graph captured for a size finds every array where it left it; the token arrays' on the
 * token count alone, for the piecewise graphs), uploaded by one async
 * copy to a device buffer of the same layout, and handed to the ops as struct bk_batch.
 * The masks have a pinned buffer of their own, which the engine writes in place
 * (mask_rows) while the forward runs, uploaded by stage_masks. Also the sample op over the
 * staged rows and fetch_results, the one place a step waits for the device. */
#include <errno.h>
#include <string.h>

#include "kernels/cuda_check.h"
#include "engine/cuda/cuda_internal.h"
#include "engine/base/log.h"
#include "engine/base/util.h"

/* Byte offsets of every array of one staged step. */
struct stage_layout {
    size_t input_ids, positions, query_start_loc, seq_lens, logits_indices;
    size_t block_table[KV_MAX_GROUPS], slot_mapping[KV_MAX_GROUPS];
    size_t rows, hist, end;     /* hist: the token lists, end: with hist_cap tokens */
};

static size_t align_up(size_t x, size_t a)
{
    return (x + a - 1) / a * a;
}

/* The layout for T tokens, R requests, S sampled rows, MB blocks per request, G groups
 * and H history tokens. Every array starts on a 16-byte boundary. The token arrays come
 * first, at offsets that depend on T (and G) alone: a piecewise graph (runner_pieces.c),
 * captured once per token count, reads them while the requests and sampled rows vary. */
static struct stage_layout layout_of(int T, int R, int S, int MB, int G, int H)
{
    struct stage_layout l = { 0 };
    size_t off = 0;

#define TAKE(field, bytes) (l.field = off, off = align_up(off + (bytes), 16))
    TAKE(input_ids, (size_t)T * 4);
    TAKE(positions, (size_t)T * 4);
    for (int g = 0; g < G; g++)
        TAKE(slot_mapping[g], (size_t)T * 8);
    TAKE(query_start_loc, (size_t)(R + 1) * 4);
    TAKE(seq_lens, (size_t)R * 4);
    TAKE(logits_indices, (size_t)S * 4);
    for (int g = 0; g < G; g++)
        TAKE(block_table[g], (size_t)R * MB * 4);
    TAKE(rows, (size_t)S * sizeof(struct cuda_sample_row));
    TAKE(hist, (size_t)H * 4);
#undef TAKE
    l.end = off;
    return l;
}

int cuda__stage_init(struct backend_cuda *cu, char *err)
{
    const struct backend_options *o = &cu->opt;
    struct cuda_stage *st = &cu->st;
    long long hist = (long long)MAX(o->max_reqs, 1) * MAX(o->max_blocks_per_req, 1) *
                     CUDA_HISTORY_PER_BLOCK;
    struct stage_layout l;

    st->hist_cap = (int)MIN(MAX(hist, CUDA_HISTORY_MIN), CUDA_HISTORY_MAX);
    l = layout_of(MAX(o->max_tokens, 1), MAX(o->max_reqs, 1), MAX(o->max_reqs, 1),
                  MAX(o->max_blocks_per_req, 1), MAX(o->num_kv_groups, 1), st->hist_cap);
    st->cap_bytes = l.end;
    st->vocab_words = (MAX(o->vocab_size, 1) + 31) / 32;
    st->mask_words = MAX(o->mask_words, st->vocab_words);
    if (!CUDA_OK(cudaMallocHost(&st->host, st->cap_bytes)) ||
        !CUDA_OK(cudaMalloc(&st->dev, st->cap_bytes)) ||
        !CUDA_OK(cudaMallocHost((void **)&st->mask_host, (size_t)MAX(o->max_reqs, 1) * st->mask_words * 4)) ||
        !CUDA_OK(cudaMalloc((void **)&st->mask_dev, (size_t)MAX(o->max_reqs, 1) * st->mask_words * 4)) ||
        !CUDA_OK(cudaEventCreateWithFlags(&st->copied, cudaEventDisableTiming)) ||
        !CUDA_OK(cudaStreamCreateWithFlags(&st->mask_stream, cudaStreamNonBlocking)) ||
        !CUDA_OK(cudaEventCreateWithFlags(&st->masks_copied, cudaEventDisableTiming))) {
        (void)cudaGetLastError();
        errf(err, "cuda: cannot allocate the staging buffers (%zu MiB pinned and on the device)",
             (st->cap_bytes + (size_t)MAX(o->max_reqs, 1) * st->mask_words * 4) >> 20);
        return -ENOMEM;
    }
    LOG(LL_DEBUG, "cuda", "staging: %zu KiB, %d history tokens", st->cap_bytes >> 10, st->hist_cap);
    return 0;
}

void cuda__stage_fini(struct backend_cuda *cu)
{
    struct cuda_stage *st = &cu->st;

    if (st->mask_stream) {   /* its last copy may still read mask_host */
        cudaStreamSynchronize(st->mask_stream);
        cudaStreamDestroy(st->mask_stream);
    }
    if (st->masks_copied)
        cudaEventDestroy(st->masks_copied);
    cudaFreeHost(st->host);
    cudaFree(st->dev);
    cudaFreeHost(st->mask_host);
    cudaFree(st->mask_dev);
    if (st->copied)
        cudaEventDestroy(st->copied);
    memset(st, 0, sizeof *st);
}

/* A padding row, or a row when the caller gives none: greedy, nothing reported. */
static const struct sample_row greedy_row = { .top_p = 1.0f, .repetition_penalty = 1.0f,
                                              .num_logprobs = -1 };

/* Row i of the step as the kernel reads it; its token lists go to hist[*used...]. Only the
 * lists a penalty reads are staged (the prompt only for the repetition penalty). Returns
 * 0, -EINVAL for a malformed row, -E2BIG past the history bound. */
static int stage_row(struct cuda_sample_row *out, const struct sample_row *r, int32_t *hist,
                     int cap, int *used)
{
    bool rep = r->repetition_penalty > 0.0f && r->repetition_penalty != 1.0f;
    bool freq = r->frequency_penalty != 0.0f || r->presence_penalty != 0.0f;
    int np = rep ? r->num_prompt : 0, no = rep || freq ? r->num_output : 0, nb = r->num_banned;
    int nl = r->num_bias;

    /* allowed_token_ids reach the GPU as a mask (sample_row.allowed): the engine builds it */
    if (r->num_prompt < 0 || r->num_output < 0 || nb < 0 || nl < 0 || (np && !r->prompt) ||
        (no && !r->output) || (nb && !r->banned) || (nl && (!r->bias_ids || !r->bias)) ||
        r->num_allowed_ids > 0 || !(r->temperature >= 0.0f))
        return -EINVAL;
    if ((long long)*used + np + no + nb + 2LL * nl > cap)
        return -E2BIG;
    *out = (struct cuda_sample_row){
        .temperature = r->temperature, .top_p = r->top_p, .min_p = r->min_p,
        .presence_penalty = r->presence_penalty, .frequency_penalty = r->frequency_penalty,
        .repetition_penalty = r->repetition_penalty, .top_k = r->top_k,
        .num_logprobs = r->num_logprobs < 0 ? -1 : MIN(r->num_logprobs, SAMPLE_MAX_LOGPROBS),
        .greedy = r->temperature < SAMPLE_GREEDY_EPS,   /* sampler.h's threshold, applied here */
        .seed = r->seed, .counter = r->counter, .hist_off = *used,
        .num_prompt = np, .num_output = no, .num_banned = nb, .num_bias = nl, .mask_off = -1,
    };
    if (np)
        memcpy(hist + *used, r->prompt, (size_t)np * 4);
    if (no)
        memcpy(hist + *used + np, r->output, (size_t)no * 4);
    if (nb)
        memcpy(hist + *used + np + no, r->banned, (size_t)nb * 4);
    if (nl) {   /* the ids, then the biases' bits */
        memcpy(hist + *used + np + no + nb, r->bias_ids, (size_t)nl * 4);
        memcpy(hist + *used + np + no + nb + nl, r->bias, (size_t)nl * 4);
    }
    *used += np + no + nb + 2 * nl;
    return 0;
}

int cuda__stage(struct backend *be, const struct step_batch *b, const struct sample_row *rows,
                struct bk_batch *dev)
{
    struct backend_cuda *cu = cuda__of(be);
    const struct backend_options *o = &cu->opt;
    struct cuda_stage *st = &cu->st;
    int T = b->num_tokens_padded, R = b->num_reqs_padded, S = b->num_sample_padded;
    int MB = b->max_blocks_per_req, G = b->num_kv_groups, used = 0, rc, masked = 0, taken = 0;
    bool in_place = false;
    struct stage_layout l;
    char *h = st->host, *d = st->dev;
    struct cuda_sample_row *srows;

    if (cuda__enter(cu))
        return -EIO;
    if (T < 0 || R < 0 || S < 0 || T > MAX(o->max_tokens, 1) || R > MAX(o->max_reqs, 1) ||
        S > MAX(o->max_reqs, 1) || b->num_sample > S || G < 1 || G > MAX(o->num_kv_groups, 1) ||
        MB < 0 || MB > MAX(o->max_blocks_per_req, 1)) {
        LOG(LL_ERR, "cuda", "batch beyond the staging capacity: tokens %d/%d, reqs %d/%d, "
            "sampled %d/%d, groups %d/%d, blocks per request %d/%d", T, o->max_tokens, R,
            o->max_reqs, S, o->max_reqs, G, o->num_kv_groups, MB, o->max_blocks_per_req);
        return -EINVAL;
    }
    /* the previous uploads must have left the pinned buffers before they are rewritten */
    if ((st->pending && !CUDA_OK(cudaEventSynchronize(st->copied))) ||
        (st->masks_pending && !CUDA_OK(cudaEventSynchronize(st->masks_copied))))
        return cuda__status(cu, -EIO);
    st->pending = st->masks_pending = false;
    l = layout_of(T, R, S, MB, G, 0);

    memcpy(h + l.input_ids, b->input_ids, (size_t)T * 4);
    memcpy(h + l.positions, b->positions, (size_t)T * 4);
    memcpy(h + l.query_start_loc, b->query_start_loc, (size_t)(R + 1) * 4);
    memcpy(h + l.seq_lens, b->seq_lens, (size_t)R * 4);
    memcpy(h + l.logits_indices, b->logits_indices, (size_t)S * 4);
    for (int g = 0; g < G; g++) {
        memcpy(h + l.block_table[g], b->block_table[g], (size_t)R * MB * 4);
        memcpy(h + l.slot_mapping[g], b->slot_mapping[g], (size_t)T * 8);
    }
    srows = (struct cuda_sample_row *)(h + l.rows);
    for (int i = 0; i < S; i++) {
        const struct sample_row *r = rows && i < b->num_sample ? &rows[i] : &greedy_row;

        if ((rc = stage_row(&srows[i], r, (int32_t *)(h + l.hist), st->hist_cap, &used))) {
            LOG(LL_ERR, "cuda", "sampled row %d: %s", i, rc == -E2BIG
                ? "its penalty and ban lists pass the staging bound (CUDA_HISTORY_MAX tokens a step)"
                : "malformed (negative list length, NULL list, allowed_token_ids not made a mask, "
                  "or negative temperature)");
            return rc;
        }
        if (r->allowed) {
            uint32_t *row = st->mask_host + (size_t)i * st->mask_words;

            /* the engine's rows are written in place (uploaded by stage_masks); a mask of
             * the caller's own covers at least the model's vocab and is taken now */
            if (r->allowed != row) {
                memcpy(row, r->allowed, (size_t)st->vocab_words * 4);
                taken = i + 1;
            } else {
                in_place = true;
            }
            srows[i].mask_off = i * st->mask_words;
            masked = i + 1;
        }
    }
    if (!CUDA_OK(cudaMemcpyAsync(d, h, l.hist + (size_t)used * 4, cudaMemcpyHostToDevice,
                                 cu->stream)) ||
        (taken && !CUDA_OK(cudaMemcpyAsync(st->mask_dev, st->mask_host,
                                           (size_t)taken * st->mask_words * 4,
                                           cudaMemcpyHostToDevice, cu->stream))) ||
        !CUDA_OK(cudaEventRecord(st->copied, cu->stream)))
        return cuda__status(cu, -EIO);
    st->pending = true;
    st->masked = in_place ? masked : 0;

    memset(dev, 0, sizeof *dev);
    dev->num_reqs = R;
    dev->num_tokens = T;
    dev->num_sample = S;
    dev->max_query_len = b->max_query_len;
    dev->max_seq_len = b->max_seq_len;
    dev->num_kv_groups = G;
    dev->max_blocks_per_req = MB;
    dev->input_ids = (const int32_t *)(d + l.input_ids);
    dev->positions = (const int32_t *)(d + l.positions);
    dev->query_start_loc = (const int32_t *)(d + l.query_start_loc);
    dev->seq_lens = (const int32_t *)(d + l.seq_lens);
    dev->logits_indices = (const int32_t *)(d + l.logits_indices);
    for (int g = 0; g < G; g++) {
        dev->block_table[g] = (const int32_t *)(d + l.block_table[g]);
        dev->slot_mapping[g] = (const int64_t *)(d + l.slot_mapping[g]);
    }
    st->rows = (const struct cuda_sample_row *)(d + l.rows);
    st->hist = (const int32_t *)(d + l.hist);
    st->num_rows = S;
    return 0;
}

uint32_t *cuda__mask_rows(struct backend *be)
{
    return cuda__of(be)->st.mask_host;
}

/* The rows up to the last one written in place (a caller's own masks among them were
 * uploaded at stage already; again is harmless), 16 KB a row of a 128k vocabulary. On a
 * stream of its own, so that the copy runs while the forward still does (when the masks
 * were done before it); the backend's stream waits for it, so the sampler, queued next,
 * reads the new masks. mask_dev is free: the previous step's sampler ended before its
 * fetch returned. masks_copied guards mask_host: a caller's masks copied in at the next
 * stage wait for it. */
int cuda__stage_masks(struct backend *be)
{
    struct backend_cuda *cu = cuda__of(be);
    struct cuda_stage *st = &cu->st;

    if (cuda__enter(cu))
        return -EIO;
    if (!st->masked)
        return 0;
    /* after the stage's copies (a caller's own masks go to the same rows of mask_dev), not
     * after the forward queued behind them */
    if (!CUDA_OK(cudaStreamWaitEvent(st->mask_stream, st->copied, 0)) ||
        !CUDA_OK(cudaMemcpyAsync(st->mask_dev, st->mask_host,
                                 (size_t)st->masked * st->mask_words * 4,
                                 cudaMemcpyHostToDevice, st->mask_stream)) ||
        !CUDA_OK(cudaEventRecord(st->masks_copied, st->mask_stream)) ||
        !CUDA_OK(cudaStreamWaitEvent(cu->stream, st->masks_copied, 0)))
        return cuda__status(cu, -EIO);
    st->masks_pending = true;
    st->masked = 0;
    return 0;
}

int cuda__sample(struct backend *be, const float *logits, int vocab, const struct bk_batch *b)
{
    struct backend_cuda *cu = cuda__of(be);

    if (cuda__enter(cu))
        return -EIO;
    if (vocab > MAX(cu->opt.vocab_size, 1) || b->num_sample > cu->st.num_rows)
        return -EINVAL;
    return cuda__status(cu, sample_cuda(logits, vocab, b->num_sample, cu->st.rows, cu->st.hist,
                                        cu->st.mask_dev, cu->sample_work, cu->sample_counts,
                                        cu->results, cu->stream));
}

bool cuda__busy(struct backend *be)
{
    struct backend_cuda *cu = cuda__of(be);
    cudaError_t e;

    if (cuda__enter(cu))
        return false;
    e = cudaStreamQuery(cu->stream);
    /* cleared whatever it is: "not ready" must not be taken by the next launch's check
     * for an error of its own (PyTorch clears it too), and a sticky error shows again at
     * the next op that waits */
    if (e != cudaSuccess)
        (void)cudaGetLastError();
    return e == cudaErrorNotReady;
}

int cuda__fetch_results(struct backend *be, struct sample_result *out, int n)
{
    struct backend_cuda *cu = cuda__of(be);

    if (cuda__enter(cu))
        return -EIO;
    if (n < 0 || n > cu->st.num_rows)
        return -EINVAL;
    if (n == 0)
        return 0;
    if (!CUDA_OK(cudaMemcpyAsync(cu->results_host, cu->results,
                                 (size_t)n * sizeof *cu->results_host, cudaMemcpyDeviceToHost,
                                 cu->stream)) ||
        !CUDA_OK(cudaStreamSynchronize(cu->stream)))
        return cuda__status(cu, -EIO);
    for (int i = 0; i < n; i++)
        cuda__sample_result(&out[i], &cu->results_host[i]);
    return 0;
}
