/* sampling.cu — the GPU sampler: one thread block per row of logits, in engine/sampler.h's
 * order of operations (the CPU reference is engine/sampler.c): logprobs of the raw logits
 * (log-sum-exp in double, top N by radix select), repetition / frequency / presence
 * logit_bias and penalties from the staged token lists, banned ids, the grammar mask, then greedy argmax
 * or temperature, min_p, top_k, top_p and the exponential race over
 * sample_exponential(seed, counter, i).
 * Thresholds come from radix selects over the float bits (counts for top_k, probability
 * mass for top_p), never a sort; ties at a threshold are broken by id exactly as the CPU
 * does. Rows whose parameters need no working copy are read in place. */
#include <limits.h>
#include <math.h>

#include "engine/base/sample_hash.h"   /* sample_exponential, shared with the CPU sampler */
#include "kernels/common.cuh"

#define SAMPLE_THREADS 512
#define FULL_MASK 0xffffffffu

struct sample_shared {
    unsigned int cnt[256];     /* radix histogram: counts */
    double mass[256];          /* and probability mass (top_p) */
    float red_f[32];
    int red_i[32];
    double red_d[32];
    unsigned int sel;          /* thread 0 → all: the chosen digit */
    int above;                 /* thread 0 → all: elements above the chosen digit */
    double above_mass;
    int crossed;
    int num_top;               /* top logprob candidates collected */
    int top_ids[CUDA_SAMPLE_MAX_LOGPROBS];
    float top_vals[CUDA_SAMPLE_MAX_LOGPROBS];
};

/* ---- block reductions (every thread gets the result; each ends with a barrier) ---- */

__device__ float block_max(float v, sample_shared &sh)
{
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;

    v = warp_max(v);
    if (lane == 0)
        sh.red_f[warp] = v;
    __syncthreads();
    v = lane < SAMPLE_THREADS / 32 ? sh.red_f[lane] : -INFINITY;
    v = warp_max(v);
    __syncthreads();
    return v;
}

__device__ double block_sum_d(double v, sample_shared &sh)
{
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;

#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(FULL_MASK, v, o);
    if (lane == 0)
        sh.red_d[warp] = v;
    __syncthreads();
    v = lane < SAMPLE_THREADS / 32 ? sh.red_d[lane] : 0.0;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(FULL_MASK, v, o);
    __syncthreads();
    return v;
}

__device__ int block_sum_i(int v, sample_shared &sh)
{
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;

    v = __reduce_add_sync(FULL_MASK, v);
    if (lane == 0)
        sh.red_i[warp] = v;
    __syncthreads();
    v = lane < SAMPLE_THREADS / 32 ? sh.red_i[lane] : 0;
    v = __reduce_add_sync(FULL_MASK, v);
    __syncthreads();
    return v;
}

/* (v, i) pairs: the larger v wins, the lower i among equal v. i = INT_MAX: nothing. */
__device__ __forceinline__ void arg_better(float &bv, int &bi, float v, int i)
{
    if (v > bv || (v == bv && i < bi)) {
        bv = v;
        bi = i;
    }
}

__device__ int block_argmax(float v, int i, sample_shared &sh)
{
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;

#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        arg_better(v, i, __shfl_xor_sync(FULL_MASK, v, o), __shfl_xor_sync(FULL_MASK, i, o));
    if (lane == 0) {
        sh.red_f[warp] = v;
        sh.red_i[warp] = i;
    }
    __syncthreads();
    v = lane < SAMPLE_THREADS / 32 ? sh.red_f[lane] : -INFINITY;
    i = lane < SAMPLE_THREADS / 32 ? sh.red_i[lane] : INT_MAX;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        arg_better(v, i, __shfl_xor_sync(FULL_MASK, v, o), __shfl_xor_sync(FULL_MASK, i, o));
    __syncthreads();
    return i;
}

/* Argmax over x[0, n) with the lowest id on ties; 0 when every value is NaN. */
template <class F>
__device__ int row_argmax(int n, F value, sample_shared &sh)
{
    float bv = -INFINITY;
    int bi = INT_MAX;

    for (int i = threadIdx.x; i < n; i += SAMPLE_THREADS)
        arg_better(bv, bi, value(i), i);
    bi = block_argmax(bv, bi, sh);
    return bi == INT_MAX ? 0 : bi;
}

/* ---- radix select ---- */

/* Adds one to cnt[d] for every lane with d >= 0, one atomic per distinct digit per warp.
 * Called by all 32 lanes. */
__device__ __forceinline__ void hist_add(unsigned int *cnt, int d)
{
    unsigned int peers = __match_any_sync(FULL_MASK, d);

    if (d >= 0 && (int)(threadIdx.x & 31) == __ffs(peers) - 1)
        atomicAdd(&cnt[d], (unsigned int)__popc(peers));
}

/* The k-th largest 32-bit key (1 <= k <= the number of selected elements) among i < n for
 * which key_of(i, &key) is true; *above gets how many selected keys are larger. Four
 * passes of 8 bits over the row, the most significant first. */
template <class F>
__device__ uint32_t radix_kth(int n, int k, F key_of, int *above, sample_shared &sh)
{
    uint32_t prefix = 0, mask = 0;
    int acc = 0;

    for (int shift = 24; shift >= 0; shift -= 8) {
        for (int b = threadIdx.x; b < 256; b += SAMPLE_THREADS)
            sh.cnt[b] = 0;
        __syncthreads();
        for (int base = 0; base < n; base += SAMPLE_THREADS) {
            int i = base + threadIdx.x, d = -1;
            uint32_t key;
            if (i < n && key_of(i, &key) && (key & mask) == prefix)
                d = (int)((key >> shift) & 255);
            hist_add(sh.cnt, d);
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            int d = 255;
            for (; d > 0; d--) {
                if (acc + (int)sh.cnt[d] >= k)
                    break;
                acc += sh.cnt[d];
            }
            sh.sel = d;
            sh.above = acc;
        }
        __syncthreads();
        prefix |= sh.sel << shift;
        mask |= 255u << shift;
        acc = sh.above;
        __syncthreads();
    }
    *above = acc;
    return prefix;
}

/* Order-preserving 32-bit key of a float (larger float, larger key). */
__device__ __forceinline__ uint32_t float_key(float v)
{
    uint32_t u = __float_as_uint(v);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

/* The top-p cut over probabilities p(i) > 0 kept by thr: the value v* at which the mass in
 * descending order first reaches target, with *above_mass = the mass of all larger kept
 * values and *count_at = how many kept values equal v*. p > 0 floats order like their
 * bits; passes over bits 30..23 (the exponent), 22..15, 14..7, 6..0. Returns false when
 * rounding left the whole mass short of target (then everything kept stays). */
template <class F>
__device__ bool radix_top_p(int n, F p_of, float thr, double target, float *vstar,
                            double *above_mass, int *count_at, sample_shared &sh)
{
    uint32_t prefix = 0, mask = 0;
    double acc = 0.0;

    for (int pass = 0; pass < 4; pass++) {
        int shift = pass < 3 ? 23 - 8 * pass : 0;         /* 23, 15, 7, 0 */
        uint32_t dmask = pass < 3 ? 255u : 127u;          /* 8, 8, 8, 7 bits */

        for (int b = threadIdx.x; b < 256; b += SAMPLE_THREADS) {
            sh.cnt[b] = 0;
            sh.mass[b] = 0.0;
        }
        __syncthreads();
        for (int base = 0; base < n; base += SAMPLE_THREADS) {
            int i = base + threadIdx.x, d = -1;
            float v = 0.0f;
            if (i < n) {
                v = p_of(i);
                uint32_t u = __float_as_uint(v);
                if (v > 0.0f && v >= thr && (u & mask) == prefix)
                    d = (int)((u >> shift) & dmask);
            }
            hist_add(sh.cnt, d);
            if (d >= 0)
                atomicAdd(&sh.mass[d], (double)v);
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            int d = (int)dmask;
            sh.crossed = 0;
            for (; d >= 0; d--) {
                if (acc + sh.mass[d] >= target) {
                    sh.crossed = 1;
                    break;
                }
                acc += sh.mass[d];
            }
            sh.sel = d < 0 ? 0 : (unsigned int)d;
            sh.above_mass = acc;
            sh.above = (int)sh.cnt[sh.sel];
        }
        __syncthreads();
        if (!sh.crossed)
            return false;
        prefix |= sh.sel << shift;
        mask |= dmask << shift;
        acc = sh.above_mass;
        *count_at = sh.above;
        __syncthreads();
    }
    *vstar = __uint_as_float(prefix);
    *above_mass = acc;
    return true;
}

/* ---- the phases of a row ---- */

/* The num_top largest raw logits with their ids (descending, lowest id first among equal
 * values) into sh.top_ids / sh.top_vals; NaN never enters. */
__device__ void top_logits(const float *x, int vocab, int num_top, sample_shared &sh)
{
    int valid = 0, above, need;
    uint32_t kth, id_cut;

    for (int i = threadIdx.x; i < vocab; i += SAMPLE_THREADS)
        valid += x[i] == x[i];
    valid = block_sum_i(valid, sh);
    num_top = min(num_top, valid);
    if (threadIdx.x == 0)
        sh.num_top = 0;
    if (num_top <= 0)
        return;
    kth = radix_kth(vocab, num_top, [&](int i, uint32_t *k) {
        float v = x[i];
        *k = float_key(v);
        return v == v;
    }, &above, sh);
    /* the lowest `need` ids among the values equal to the k-th: ids by ~i, largest first */
    need = num_top - above;
    id_cut = ~radix_kth(vocab, need, [&](int i, uint32_t *k) {
        float v = x[i];
        *k = ~(uint32_t)i;
        return v == v && float_key(v) == kth;
    }, &above, sh);
    for (int i = threadIdx.x; i < vocab; i += SAMPLE_THREADS) {
        float v = x[i];
        uint32_t key = float_key(v);
        if (v == v && (key > kth || (key == kth && (uint32_t)i <= id_cut))) {
            int slot = atomicAdd(&sh.num_top, 1);
            if (slot < CUDA_SAMPLE_MAX_LOGPROBS) {
                sh.top_ids[slot] = i;
                sh.top_vals[slot] = v;
            }
        }
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        /* at most 20 entries: insertion sort by (value desc, id asc) */
        int m = min(sh.num_top, CUDA_SAMPLE_MAX_LOGPROBS);
        for (int a = 1; a < m; a++) {
            int id = sh.top_ids[a], j = a;
            float v = sh.top_vals[a];
            for (; j > 0 && (sh.top_vals[j - 1] < v ||
                             (sh.top_vals[j - 1] == v && sh.top_ids[j - 1] > id)); j--) {
                sh.top_vals[j] = sh.top_vals[j - 1];
                sh.top_ids[j] = sh.top_ids[j - 1];
            }
            sh.top_vals[j] = v;
            sh.top_ids[j] = id;
        }
        sh.num_top = m;
    }
    __syncthreads();
}

/* log Σ exp(x) in double, -inf when every x is -inf (engine/sampler.c log_sum_exp). */
__device__ double log_sum_exp(const float *x, int vocab, sample_shared &sh)
{
    float m = -INFINITY;
    double s = 0.0;

    for (int i = threadIdx.x; i < vocab; i += SAMPLE_THREADS)
        m = fmaxf(m, x[i]);
    m = block_max(m, sh);
    if (m == -INFINITY)
        return -INFINITY;
    for (int i = threadIdx.x; i < vocab; i += SAMPLE_THREADS)
        s += exp((double)x[i] - m);
    s = block_sum_d(s, sh);
    return m + log(s);
}

__device__ __forceinline__ bool in_vocab(int32_t t, int vocab)
{
    return t >= 0 && t < vocab;
}

/* x[t] with the row's logit_bias entries for t added in list order, as the CPU adds them. */
__device__ __forceinline__ float biased(const float *x, int32_t t, const int32_t *bias_ids,
                                        const int32_t *bias_bits, int num_bias)
{
    float v = x[t];

    for (int k = 0; k < num_bias; k++)
        if (bias_ids[k] == t)
            v = __fadd_rn(v, __int_as_float(bias_bits[k]));
    return v;
}

/* work = x with the bias, penalties and bans of the row applied, in the CPU's order:
 * logit_bias added (one thread, in list order: ids may repeat), repetition over prompt +
 * output (written from the biased x, so a token listed twice is penalized once), then
 * frequency and presence over output with counts gathered in cnt (left all zero), then -inf
 * for banned ids, then -inf for what the row's mask leaves out (a grammar's, allowed_token_ids',
 * or both intersected: the engine builds it). Products and sums are rounded as the CPU
 * rounds them. */
__device__ void apply_penalties(const float *x, float *work, int32_t *cnt, int vocab,
                                const cuda_sample_row &row, const int32_t *hist,
                                const uint32_t *masks, bool rep, bool freq)
{
    const int32_t *prompt = hist + row.hist_off, *output = prompt + row.num_prompt;
    const int32_t *banned = output + row.num_output;
    const int32_t *bias_ids = banned + row.num_banned, *bias_bits = bias_ids + row.num_bias;
    float r = row.repetition_penalty;

    for (int i = threadIdx.x; i < vocab; i += SAMPLE_THREADS)
        work[i] = x[i];
    __syncthreads();
    if (row.num_bias > 0) {
        if (threadIdx.x == 0)
            for (int k = 0; k < row.num_bias; k++)
                if (in_vocab(bias_ids[k], vocab))
                    work[bias_ids[k]] = __fadd_rn(work[bias_ids[k]], __int_as_float(bias_bits[k]));
        __syncthreads();
    }
    if (rep) {
        for (int j = threadIdx.x; j < row.num_prompt + row.num_output; j += SAMPLE_THREADS) {
            int32_t t = prompt[j];
            if (in_vocab(t, vocab)) {
                float v = row.num_bias > 0 ? biased(x, t, bias_ids, bias_bits, row.num_bias) : x[t];
                work[t] = v > 0.0f ? v / r : __fmul_rn(v, r);
            }
        }
        __syncthreads();
    }
    if (freq) {
        for (int j = threadIdx.x; j < row.num_output; j += SAMPLE_THREADS)
            if (in_vocab(output[j], vocab))
                atomicAdd(&cnt[output[j]], 1);
        __syncthreads();
        for (int j = threadIdx.x; j < row.num_output; j += SAMPLE_THREADS) {
            int32_t t = output[j];
            int c = in_vocab(t, vocab) ? atomicExch(&cnt[t], 0) : 0;
            if (c > 0) {
                float pen = __fadd_rn(__fmul_rn(row.frequency_penalty, (float)c),
                                      row.presence_penalty);
                work[t] = __fsub_rn(work[t], pen);
            }
        }
        __syncthreads();
    }
    for (int j = threadIdx.x; j < row.num_banned; j += SAMPLE_THREADS)
        if (in_vocab(banned[j], vocab))
            work[banned[j]] = -INFINITY;
    if (row.mask_off >= 0 && masks) {
        const uint32_t *m = masks + row.mask_off;
        for (int i = threadIdx.x; i < vocab; i += SAMPLE_THREADS)
            if (!(m[i >> 5] >> (i & 31) & 1u))
                work[i] = -INFINITY;
    }
    __syncthreads();
}

/* Temperature, min_p, top_k, top_p and the exponential race over what is kept
 * (engine/sampler.c sample_random). l(i) reads the row's logit i (x, work, or x through the
 * row's mask); p is materialized into work when a threshold needs several passes over it. */
template <class L>
__device__ int sample_random(L l, float *work, int vocab, const cuda_sample_row &row,
                             sample_shared &sh)
{
    float lmax = -INFINITY, inv_t = 1.0f / row.temperature, thr = row.min_p, vstar = 0.0f;
    bool need_p = row.top_k > 0 || row.top_p < 1.0f;
    uint32_t id_cut = 0xffffffffu;

    for (int i = threadIdx.x; i < vocab; i += SAMPLE_THREADS)
        lmax = fmaxf(lmax, l(i));
    lmax = block_max(lmax, sh);
    if (lmax == -INFINITY)   /* everything banned: nothing to draw from */
        return row_argmax(vocab, l, sh);
    if (need_p) {
        for (int i = threadIdx.x; i < vocab; i += SAMPLE_THREADS)
            work[i] = expf((l(i) - lmax) * inv_t);
        __syncthreads();
    }
    auto p_of = [&](int i) { return need_p ? work[i] : expf((l(i) - lmax) * inv_t); };

    if (row.top_k > 0) {
        int survivors = 0, above;
        for (int i = threadIdx.x; i < vocab; i += SAMPLE_THREADS) {
            float v = work[i];
            survivors += v > 0.0f && v >= thr;
        }
        survivors = block_sum_i(survivors, sh);
        if (row.top_k < survivors) {
            float t = thr;
            uint32_t kth = radix_kth(vocab, row.top_k, [&](int i, uint32_t *k) {
                float v = work[i];
                *k = __float_as_uint(v);
                return v > 0.0f && v >= t;
            }, &above, sh);
            thr = fmaxf(thr, __uint_as_float(kth));
        }
    }
    if (row.top_p < 1.0f) {
        double total = 0.0, above_mass = 0.0;
        int count_at = 0;
        for (int i = threadIdx.x; i < vocab; i += SAMPLE_THREADS) {
            float v = work[i];
            if (v > 0.0f && v >= thr)
                total += v;
        }
        total = block_sum_d(total, sh);
        double target = (double)row.top_p * total;
        if (radix_top_p(vocab, p_of, thr, target, &vstar, &above_mass, &count_at, sh)) {
            /* how many tokens of exactly v* the prefix needs, summed as the CPU sums */
            int need = 0;
            double cum = above_mass;
            while (need < count_at && cum < target) {
                cum += vstar;
                need++;
            }
            need = max(need, 1);
            if (need < count_at) {
                int above;
                float t = thr, vs = vstar;
                id_cut = ~radix_kth(vocab, need, [&](int i, uint32_t *k) {
                    float v = work[i];
                    *k = ~(uint32_t)i;
                    return v > 0.0f && v >= t && v == vs;
                }, &above, sh);
            }
        } else {
            vstar = 0.0f;
        }
    }

    float best_s = -1.0f;
    int best = INT_MAX;
    for (int i = threadIdx.x; i < vocab; i += SAMPLE_THREADS) {
        float v = p_of(i);
        if (!(v > 0.0f) || v < thr || v < vstar || (v == vstar && (uint32_t)i > id_cut))
            continue;
        arg_better(best_s, best, v / sample_exponential(row.seed, row.counter, (uint32_t)i), i);
    }
    best = block_argmax(best_s, best, sh);
    if (best == INT_MAX)
        best = row_argmax(vocab, p_of, sh);
    return best;
}

/* grid num_rows, block SAMPLE_THREADS: one row per block */
__global__ void __launch_bounds__(SAMPLE_THREADS)
sample_kernel(const float *logits, int vocab, const cuda_sample_row *rows, const int32_t *hist,
              const uint32_t *masks, float *work_all, int32_t *counts_all, cuda_sample_result *results)
{
    __shared__ sample_shared sh;
    const cuda_sample_row row = rows[blockIdx.x];
    const float *x = logits + (size_t)blockIdx.x * vocab, *l = x;
    float *work = work_all + (size_t)blockIdx.x * vocab;
    int32_t *cnt = counts_all + (size_t)blockIdx.x * vocab;
    double lse = 0.0;
    int num_top = 0, token;

    if (row.num_logprobs >= 0) {
        lse = log_sum_exp(x, vocab, sh);
        if (row.num_logprobs > 0) {
            top_logits(x, vocab, min(row.num_logprobs, CUDA_SAMPLE_MAX_LOGPROBS), sh);
            num_top = sh.num_top;
        }
    }

    bool rep = row.repetition_penalty > 0.0f && row.repetition_penalty != 1.0f &&
               row.num_prompt + row.num_output > 0;
    bool freq = (row.frequency_penalty != 0.0f || row.presence_penalty != 0.0f) &&
                row.num_output > 0;
    bool masked = row.mask_off >= 0 && masks;
    if (rep || freq || row.num_banned > 0 || row.num_bias > 0) {
        apply_penalties(x, work, cnt, vocab, row, hist, masks, rep, freq);
        l = work;
    }
    if (masked && l == x) {
        /* A mask alone (a grammar's, allowed_token_ids'): applied where the logits are read,
         * in the sampler's first pass, instead of a copy of the row and a pass over it; a
         * structured-output batch is mostly such rows. Same values as the copy would hold. */
        const uint32_t *m = masks + row.mask_off;
        auto lm = [&](int i) { return m[i >> 5] >> (i & 31) & 1u ? x[i] : -INFINITY; };
        token = row.greedy ? row_argmax(vocab, lm, sh) : sample_random(lm, work, vocab, row, sh);
    } else {
        auto lw = [&](int i) { return l[i]; };
        token = row.greedy ? row_argmax(vocab, lw, sh) : sample_random(lw, work, vocab, row, sh);
    }

    if (threadIdx.x == 0) {
        cuda_sample_result *out = &results[blockIdx.x];
        out->token = token;
        out->logprob = row.num_logprobs >= 0 ? (float)((double)x[token] - lse) : 0.0f;
        out->num_top = num_top;
        for (int j = 0; j < CUDA_SAMPLE_MAX_LOGPROBS; j++) {
            out->top_ids[j] = j < num_top ? sh.top_ids[j] : 0;
            out->top_logprobs[j] = j < num_top ? (float)((double)sh.top_vals[j] - lse) : 0.0f;
        }
    }
}

int sample_cuda(const float *logits, int vocab, int num_rows, const struct cuda_sample_row *rows,
                const int32_t *hist, const uint32_t *masks, float *work, int32_t *counts,
                struct cuda_sample_result *results, cudaStream_t s)
{
    if (vocab <= 0 || num_rows < 0)
        return -EINVAL;
    if (num_rows == 0)
        return 0;
    sample_kernel<<<num_rows, SAMPLE_THREADS, 0, s>>>(logits, vocab, rows, hist, masks, work,
                                                      counts, results);
    if (!CUDA_OK(cudaGetLastError()))
        return -EIO;
    return 0;
}
