/* attention.cu — kernel 2 of an attention layer: paged, varlen attention of the step's
 * queries over the KV cache, for any mix of prefill chunks and decodes in one launch.
 * Flash-attention 2 on bf16 tensor cores (mma.sync m16n8k16, f32 accumulation, online
 * softmax in registers): a thread block takes a tile of BM query rows of one request, the
 * rows being (token, query head) pairs of one KV head's GQA group, so a decode's G heads
 * share one pass over the keys; keys and values stream through shared memory in tiles of
 * BN cache rows found through the block table (cp.async, two stages). When the batch
 * alone would not fill the GPU (few requests, long contexts), the keys of each tile are
 * split over gridDim.z blocks that write partial results (flash-decoding); a second kernel
 * merges them. An fp8 cache streams its e4m3 bytes the same way into a staging area and
 * each tile is widened to bf16 (exactly) in shared memory before the mma; the layer's
 * k_scale is folded into the softmax scale and v_scale into the output, which is the same
 * as multiplying every element and rounds nothing more. Everything batch-dependent is read
 * on the device; grid sizes depend only on the padded counts and max_seq_len, so a
 * captured graph replays any batch of its size. Steps of decodes only (max_query_len <= 1)
 * go to the decode kernel of attention_decode.cu where it takes the shape. gpt-oss's
 * attention sinks touch no key loop: a row's sink joins its softmax denominator once the
 * row is complete, in the epilogue, or in the merge of the splits (attn_fold_sink).
 * CPU twin: engine/cpu/attention.c. */
#include <math.h>
#include <stdio.h>    /* snprintf */

#include "engine/base/util.h"   /* MIN, MAX */
#include "kernels/attention.cuh"  /* attn_args, mma and cp.async primitives, the decode path */
#include "kernels/fp8.cuh"      /* fp8x2_to_bf162 */

#define ATTN_MAX_SPLITS 64

/* First tile index of request r (r == num_reqs: the rows after the last request). Tiles of
 * consecutive requests never overlap: request r owns [start(r), start(r) + ceil(rows/BM)). */
template <int BM>
__device__ __forceinline__ long long tile_start(const attn_args &a, int r)
{
    return (long long)a.qsl[r] * a.G / BM + r;
}

/* bf16: Q, then K and V tiles in ST stages each. FP8: Q, one bf16 K and V tile (widened
 * from the e4m3 stage in use, so one is enough), then the e4m3 K and V tiles in ST stages. */
template <int HD, int WARPS, int BN, bool FP8, int RPW, int ST>
constexpr size_t attn_smem_bytes()
{
    return (size_t)(WARPS * RPW + (FP8 ? 2 : 2 * ST) * BN) * (HD + 8) * sizeof(bf16) +
           (FP8 ? (size_t)2 * ST * BN * HD : 0);
}

/* grid (ceil(num_tokens * G / BM) + num_reqs + 1, KVH, num_splits), block WARPS * 32.
 * HD: head_dim rounded up to a power of two >= 32 (the extra dims are zero-filled).
 * FP8: the cache holds e4m3 codes (one byte an element).
 * RPW: query rows per warp, BM = WARPS * RPW. 16: one m16 row group, each K and V fragment
 * read from shared memory feeds one mma, so shared-memory bandwidth bounds the prefill. 32
 * (the prefill variant): two row groups share every K and V fragment, twice the mma per
 * ldmatrix; Q stays in shared memory where its fragments would not fit in registers beside
 * two groups' accumulators (HD 128), and the variant also skips, per warp, key tiles none
 * of its rows sees, masks only tiles that cross one of its rows' ends, and takes the tiles
 * of a request last-first (the longest causal rows start first, the short ones fill the
 * tail). ST: K/V pipeline stages (ST - 1 tiles in flight while one is computed). */
template <int HD, int WARPS, int BN, bool FP8, int RPW = 16, int ST = 2>
__global__ void __launch_bounds__(WARPS * 32) attn_kernel(const __grid_constant__ attn_args a)
{
    constexpr int BM = WARPS * RPW, NT = WARPS * 32, LDS = HD + 8;  /* padded rows: no bank conflicts */
    constexpr int MG = RPW / 16;          /* m16 row groups per warp */
    constexpr int CPR = HD / 8;           /* 16-byte chunks per row */
    constexpr int KT = HD / 16;           /* k-steps of Q·Kᵀ */
    constexpr int NS = BN / 8;            /* 8-key tiles of S */
    constexpr int NO = HD / 8;            /* 8-dim tiles of O */
    constexpr bool Q_IN_REGS = RPW * HD <= 2048;
    constexpr bool PREFILL = RPW > 16;    /* the prefill variant's per-warp tile skipping */
    static_assert(RPW % 16 == 0 && ST >= 2, "row groups of 16, at least two stages");
    extern __shared__ __align__(16) unsigned char smem[];
    __shared__ long long s_off[ST][BN];   /* cache element offset of each key row, -1 = none */
    constexpr int KST = FP8 ? 1 : ST;     /* bf16 K/V stages */
    bf16 *sQ = reinterpret_cast<bf16 *>(smem), *sK = sQ + BM * LDS, *sV = sK + KST * BN * LDS;
    uint8_t *rK = reinterpret_cast<uint8_t *>(sV + KST * BN * LDS), *rV = rK + ST * BN * HD;

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int g8 = lane >> 2, t4 = lane & 3;
    const int kvh = blockIdx.y, split = blockIdx.z;
    const long long bx = PREFILL ? (long long)gridDim.x - 1 - blockIdx.x : blockIdx.x;

    /* ---- the request of this tile: the last r with tile_start(r) <= bx ---- */
    int rlo = 0, rhi = a.num_reqs;
    while (rlo < rhi) {
        int mid = (rlo + rhi + 1) >> 1;
        if (tile_start<BM>(a, mid) <= bx)
            rlo = mid;
        else
            rhi = mid - 1;
    }
    const int r = rlo;
    int qs = a.qsl[r], qe = r < a.num_reqs ? a.qsl[r + 1] : a.num_tokens;
    const int seq = r < a.num_reqs ? a.seq_lens[r] : 0;
    qs = min(max(qs, 0), a.num_tokens);
    qe = min(max(qe, qs), a.num_tokens);
    const int qlen = qe - qs;
    const long long nrows = (long long)qlen * a.G;
    const long long row0 = (bx - tile_start<BM>(a, r)) * BM;
    if (row0 >= nrows)
        return;   /* a gap between two requests' tiles */

    /* ---- the key range of the tile and of this split ---- */
    const long long last = min(row0 + BM, nrows) - 1;
    const int pos_first = seq - qlen + (int)(row0 / a.G), pos_last = seq - qlen + (int)(last / a.G);
    const int kv_hi = max(pos_last + 1, 0);
    const int kv_lo = a.window > 0 ? max(pos_first - a.window + 1, 0) : 0;
    const int max_lo = a.window > 0 ? max(pos_last - a.window + 1, 0) : 0;
    int tb = kv_lo / BN, te = kv_hi > kv_lo ? (kv_hi + BN - 1) / BN : tb;
    {
        int per = (te - tb + a.num_splits - 1) / a.num_splits;
        int b = tb + split * per;
        te = min(b + per, te);
        tb = min(b, te);
    }

    const long long wrow0 = row0 + warp * RPW;
    /* the position of this thread's row rr (g8 or g8 + 8) of row group mg (-1: past the
     * request's rows): the prefill variant finds it again in each masked tile rather than
     * hold it in registers it lacks */
    auto row_pos = [&](int mg, int rr) {
        long long rho = wrow0 + mg * 16 + g8 + rr * 8;
        return rho < nrows ? seq - qlen + (int)(rho / a.G) : -1;
    };
    /* the 16-row shape holds them (two registers: without them ptxas takes 128 registers
     * and spills for its fp8 HD 64 instantiation) */
    int pos_held[PREFILL ? 1 : MG][2];
#pragma unroll
    for (int mg = 0; mg < (PREFILL ? 1 : MG); mg++)
#pragma unroll
        for (int rr = 0; rr < 2; rr++)
            pos_held[mg][rr] = row_pos(mg, rr);
    const bool warp_active = wrow0 < nrows;
    /* the prefill variant's per-warp key range: the positions of the warp's first and last
     * real rows, and the window's lowest key of its first and of its last row */
    const int w_first = seq - qlen + (int)(min(wrow0, nrows - 1) / a.G);
    const int w_last = seq - qlen + (int)((min(wrow0 + RPW, nrows) - 1) / a.G);
    const int w_lo_min = a.window > 0 ? max(w_first - a.window + 1, 0) : 0;
    const int w_lo_max = a.window > 0 ? max(w_last - a.window + 1, 0) : 0;

    float o[MG][NO][4], m[MG][2], l[MG][2];
#pragma unroll
    for (int mg = 0; mg < MG; mg++) {
        m[mg][0] = m[mg][1] = -INFINITY;
        l[mg][0] = l[mg][1] = 0.0f;
#pragma unroll
        for (int j = 0; j < NO; j++)
            o[mg][j][0] = o[mg][j][1] = o[mg][j][2] = o[mg][j][3] = 0.0f;
    }

    const int row_elems = a.KVH * a.D;
    const int32_t *bt = a.block_table + (size_t)r * a.max_blocks;

    /* key row offsets of tile `tile` into s_off[st]: -1 past the causal end, or where the
     * block table has no block (a window's dropped blocks, padding) */
    auto key_offsets = [&](int tile, int st) {
        for (int kk = tid; kk < BN; kk += NT) {
            int t = tile * BN + kk;
            long long off = -1;
            if (r < a.num_reqs && t >= 0 && t < kv_hi && t / a.block_size < a.max_blocks) {
                int blk = bt[t / a.block_size];
                if (blk >= 0 && blk < a.num_blocks)
                    off = ((long long)blk * a.block_size + t % a.block_size) * row_elems +
                          (long long)kvh * a.D;
            }
            s_off[st][kk] = off;
        }
    };
    auto load_kv = [&](int st) {
        if (FP8) {
            /* into the stage's e4m3 tile (rows HD bytes): 16 codes a copy where head_dim
             * keeps every head's row 16-byte aligned (half the copies of 8-byte chunks, for
             * the same bytes), else 8 */
            const uint8_t *kc = static_cast<const uint8_t *>(a.k_cache);
            const uint8_t *vc = static_cast<const uint8_t *>(a.v_cache);
            uint8_t *dk = rK + st * BN * HD, *dv = rV + st * BN * HD;
            if (a.D % 16 == 0) {
                constexpr int C16 = HD / 16;
                for (int idx = tid; idx < BN * C16; idx += NT) {
                    int kk = idx / C16, c = idx % C16;
                    long long off = s_off[st][kk];
                    bool ok = off >= 0 && c * 16 < a.D;
                    cp_async16(dk + kk * HD + c * 16, ok ? kc + off + c * 16 : kc, ok);
                    cp_async16(dv + kk * HD + c * 16, ok ? vc + off + c * 16 : vc, ok);
                }
                return;
            }
            for (int idx = tid; idx < BN * CPR; idx += NT) {
                int kk = idx / CPR, c = idx % CPR;
                long long off = s_off[st][kk];
                bool ok = off >= 0 && c * 8 < a.D;
                cp_async8(dk + kk * HD + c * 8, ok ? kc + off + c * 8 : kc, ok);
                cp_async8(dv + kk * HD + c * 8, ok ? vc + off + c * 8 : vc, ok);
            }
            return;
        }
        const bf16 *kc = static_cast<const bf16 *>(a.k_cache);
        const bf16 *vc = static_cast<const bf16 *>(a.v_cache);
        bf16 *dk = sK + st * BN * LDS, *dv = sV + st * BN * LDS;
        for (int idx = tid; idx < BN * CPR; idx += NT) {
            int kk = idx / CPR, c = idx % CPR;
            long long off = s_off[st][kk];
            bool ok = off >= 0 && c * 8 < a.D;
            cp_async16(dk + kk * LDS + c * 8, ok ? kc + off + c * 8 : kc, ok);
            cp_async16(dv + kk * LDS + c * 8, ok ? vc + off + c * 8 : vc, ok);
        }
    };
    /* FP8: the e4m3 tile of stage st widened to bf16 (exact) into sK and sV; zero-filled
     * chunks (code 0) become +0 as the bf16 path's do */
    auto widen_kv = [&](int st) {
        const uint8_t *rk = rK + st * BN * HD, *rv = rV + st * BN * HD;
        for (int idx = tid; idx < BN * CPR; idx += NT) {
            int kk = idx / CPR, c = idx % CPR;
            uint2 k8 = *reinterpret_cast<const uint2 *>(rk + kk * HD + c * 8);
            uint2 v8 = *reinterpret_cast<const uint2 *>(rv + kk * HD + c * 8);
            /* little-endian: the low half of a word holds the row's earlier two codes */
            __nv_bfloat162 kb[4] = {
                fp8x2_to_bf162((uint16_t)k8.x), fp8x2_to_bf162((uint16_t)(k8.x >> 16)),
                fp8x2_to_bf162((uint16_t)k8.y), fp8x2_to_bf162((uint16_t)(k8.y >> 16)) };
            __nv_bfloat162 vb[4] = {
                fp8x2_to_bf162((uint16_t)v8.x), fp8x2_to_bf162((uint16_t)(v8.x >> 16)),
                fp8x2_to_bf162((uint16_t)v8.y), fp8x2_to_bf162((uint16_t)(v8.y >> 16)) };
            *reinterpret_cast<uint4 *>(sK + kk * LDS + c * 8) = *reinterpret_cast<const uint4 *>(kb);
            *reinterpret_cast<uint4 *>(sV + kk * LDS + c * 8) = *reinterpret_cast<const uint4 *>(vb);
        }
    };

    if (tb < te) {
        /* prologue: Q and the first ST - 1 key tiles, one commit group each (Q in the
         * first); empty groups past te keep the count that cp_async_wait<ST - 2> relies on */
        for (int idx = tid; idx < BM * CPR; idx += NT) {
            int mrow = idx / CPR, c = idx % CPR;
            long long rho = row0 + mrow;
            bool ok = rho < nrows && c * 8 < a.D;
            const bf16 *src = a.q;
            if (ok)
                src = a.q + (size_t)(qs + rho / a.G) * a.q_stride +
                      (size_t)(kvh * a.G + (int)(rho % a.G)) * a.D + c * 8;
            cp_async16(sQ + mrow * LDS + c * 8, src, ok);
        }
#pragma unroll
        for (int i = 0; i < ST - 1; i++)
            if (tb + i < te)
                key_offsets(tb + i, i);
        __syncthreads();
#pragma unroll
        for (int i = 0; i < ST - 1; i++) {
            if (tb + i < te)
                load_kv(i);
            cp_async_commit();
        }
    }

    uint32_t qf[Q_IN_REGS ? MG : 1][Q_IN_REGS ? KT : 1][4];
    for (int tile = tb; tile < te; tile++) {
        const int st = (tile - tb) % ST, nst = (tile - tb + ST - 1) % ST;
        const bool has_next = tile + ST - 1 < te;

        if (has_next)
            key_offsets(tile + ST - 1, nst);
        cp_async_wait<ST - 2>();   /* this tile's group (and Q's) has landed */
        __syncthreads();        /* ... for all; stage nst free; offsets visible */
        if (has_next)
            load_kv(nst);
        if (has_next || ST > 2)
            cp_async_commit();  /* two stages wait for all; more count groups, empty or not */
        if (FP8) {
            /* sK/sV's last readers (the previous tile's mma) passed the barrier above */
            widen_kv(st);
            __syncthreads();
        }
        if (Q_IN_REGS && tile == tb) {
#pragma unroll
            for (int mg = 0; mg < (Q_IN_REGS ? MG : 1); mg++)
#pragma unroll
                for (int kt = 0; kt < (Q_IN_REGS ? KT : 1); kt++)
                    ldmatrix_x4(qf[mg][kt], sQ + (warp * RPW + mg * 16 + (lane & 15)) * LDS +
                                                kt * 16 + (lane >> 4) * 8);
        }
        if (!warp_active)
            continue;

        const int key0 = tile * BN;
        if (PREFILL && (key0 > w_last || key0 + BN - 1 < w_lo_min))
            continue;   /* no row of this warp sees a key of the tile: it would add zeros */
        const bf16 *k_st = sK + (FP8 ? 0 : st) * BN * LDS, *v_st = sV + (FP8 ? 0 : st) * BN * LDS;

        /* S = Q · Kᵀ for this warp's rows and BN keys: each K fragment feeds every row group */
        float s[MG][NS][4];
#pragma unroll
        for (int mg = 0; mg < MG; mg++)
#pragma unroll
            for (int j = 0; j < NS; j++)
                s[mg][j][0] = s[mg][j][1] = s[mg][j][2] = s[mg][j][3] = 0.0f;
#pragma unroll
        for (int kt = 0; kt < KT; kt++) {
            uint32_t af[MG][4];
#pragma unroll
            for (int mg = 0; mg < MG; mg++) {
                if (Q_IN_REGS) {
#pragma unroll
                    for (int i = 0; i < 4; i++)
                        af[mg][i] = qf[Q_IN_REGS ? mg : 0][Q_IN_REGS ? kt : 0][i];
                } else {
                    ldmatrix_x4(af[mg], sQ + (warp * RPW + mg * 16 + (lane & 15)) * LDS + kt * 16 +
                                            (lane >> 4) * 8);
                }
            }
#pragma unroll
            for (int np = 0; np < NS / 2; np++) {
                uint32_t b[4];
                ldmatrix_x4(b, k_st + (np * 16 + (lane & 7) + ((lane >> 4) << 3)) * LDS +
                                   kt * 16 + ((lane >> 3) & 1) * 8);
#pragma unroll
                for (int mg = 0; mg < MG; mg++) {
                    mma_bf16(s[mg][2 * np], af[mg], b[0], b[1]);
                    mma_bf16(s[mg][2 * np + 1], af[mg], b[2], b[3]);
                }
            }
        }

        /* scale (log2 units), soft-cap; the causal and window mask only in tiles that cross
         * an end of some row's key range (the block's rows, or the prefill variant's warp's).
         * Without a soft-cap the prefill variant leaves the scores unscaled: sc, the factor
         * still owed, is applied to the row max and inside p = 2^(s sc - max), one fma (a
         * factor of 1 compiles to the plain subtraction). */
        const bool need_mask = PREFILL ? !(key0 >= w_lo_max && key0 + BN - 1 <= w_first)
                                       : !(key0 >= max_lo && key0 + BN - 1 <= pos_first);
        const float sc = PREFILL && !(a.softcap > 0.0f) ? a.scale_log2 : 1.0f;
        if (!PREFILL || a.softcap > 0.0f) {
#pragma unroll
            for (int mg = 0; mg < MG; mg++)
#pragma unroll
                for (int j = 0; j < NS; j++)
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        float x = s[mg][j][e];
                        if (a.softcap > 0.0f)
                            x = a.softcap * tanhf(x * a.scale / a.softcap) * LOG2E;
                        else
                            x *= a.scale_log2;
                        s[mg][j][e] = x;
                    }
        }
        if (need_mask) {
#pragma unroll
            for (int mg = 0; mg < MG; mg++)
#pragma unroll
                for (int rr = 0; rr < 2; rr++) {
                    int pos = PREFILL ? row_pos(mg, rr) : pos_held[PREFILL ? 0 : mg][rr];
                    int lo = a.window > 0 ? max(pos - a.window + 1, 0) : 0;
#pragma unroll
                    for (int j = 0; j < NS; j++)
#pragma unroll
                        for (int e = 2 * rr; e < 2 * rr + 2; e++) {
                            int key = key0 + j * 8 + t4 * 2 + (e & 1);
                            if (key < lo || key > pos)
                                s[mg][j][e] = -INFINITY;
                        }
                }
        }

        /* online softmax: new running max, rescale what was summed, p = 2^(s - max) */
#pragma unroll
        for (int mg = 0; mg < MG; mg++)
#pragma unroll
            for (int rr = 0; rr < 2; rr++) {
                float mx = -INFINITY;
#pragma unroll
                for (int j = 0; j < NS; j++)
                    mx = fmaxf(mx, fmaxf(s[mg][j][2 * rr], s[mg][j][2 * rr + 1]));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                float m_new = fmaxf(m[mg][rr], mx * sc);   /* sc > 0: the max of the scaled */
                float m_use = m_new == -INFINITY ? 0.0f : m_new;   /* a row with no key yet */
                float alpha = exp2f(m[mg][rr] - m_use);
                m[mg][rr] = m_new;
                l[mg][rr] *= alpha;
#pragma unroll
                for (int j = 0; j < NO; j++) {
                    o[mg][j][2 * rr] *= alpha;
                    o[mg][j][2 * rr + 1] *= alpha;
                }
#pragma unroll
                for (int j = 0; j < NS; j++) {
                    s[mg][j][2 * rr] = exp2f(fmaf(s[mg][j][2 * rr], sc, -m_use));
                    s[mg][j][2 * rr + 1] = exp2f(fmaf(s[mg][j][2 * rr + 1], sc, -m_use));
                    l[mg][rr] += s[mg][j][2 * rr] + s[mg][j][2 * rr + 1];
                }
            }

        /* O += P · V, P from the S accumulators (their layout is the A fragment's); each V
         * fragment feeds every row group */
#pragma unroll
        for (int kk = 0; kk < BN / 16; kk++) {
            uint32_t pa[MG][4];
#pragma unroll
            for (int mg = 0; mg < MG; mg++) {
                pa[mg][0] = pack_bf16(s[mg][2 * kk][0], s[mg][2 * kk][1]);
                pa[mg][1] = pack_bf16(s[mg][2 * kk][2], s[mg][2 * kk][3]);
                pa[mg][2] = pack_bf16(s[mg][2 * kk + 1][0], s[mg][2 * kk + 1][1]);
                pa[mg][3] = pack_bf16(s[mg][2 * kk + 1][2], s[mg][2 * kk + 1][3]);
            }
#pragma unroll
            for (int dp = 0; dp < NO / 2; dp++) {
                uint32_t b[4];
                ldmatrix_x4_trans(b, v_st + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LDS +
                                         dp * 16 + (lane >> 4) * 8);
#pragma unroll
                for (int mg = 0; mg < MG; mg++) {
                    mma_bf16(o[mg][2 * dp], pa[mg], b[0], b[1]);
                    mma_bf16(o[mg][2 * dp + 1], pa[mg], b[2], b[3]);
                }
            }
        }
    }

    /* ---- epilogue: the full sums of the rows, then the output or the split's partials ---- */
#pragma unroll
    for (int mg = 0; mg < MG; mg++)
#pragma unroll
        for (int rr = 0; rr < 2; rr++) {
            l[mg][rr] += __shfl_xor_sync(0xffffffffu, l[mg][rr], 1);
            l[mg][rr] += __shfl_xor_sync(0xffffffffu, l[mg][rr], 2);
        }
#pragma unroll
    for (int mg = 0; mg < MG; mg++)
#pragma unroll
        for (int rr = 0; rr < 2; rr++) {
            long long rho = wrow0 + mg * 16 + g8 + rr * 8;
            if (rho >= nrows)
                continue;
            int tok = qs + (int)(rho / a.G), head = kvh * a.G + (int)(rho % a.G);
            if (a.num_splits == 1) {
                /* the sink joins the denominator here, once (a split kernel's merge does it) */
                float c = a.sinks ? attn_fold_sink(m[mg][rr], l[mg][rr], a.sinks[head]) : 1.0f;
                float inv = l[mg][rr] > 0.0f ? c * a.v_scale / l[mg][rr] : 0.0f;
                bf16 *dst = a.out + (size_t)tok * a.H * a.D + (size_t)head * a.D;
#pragma unroll
                for (int j = 0; j < NO; j++) {
                    int d = j * 8 + t4 * 2;
                    if (d < a.D)
                        *reinterpret_cast<__nv_bfloat162 *>(dst + d) = __floats2bfloat162_rn(
                            o[mg][j][2 * rr] * inv, o[mg][j][2 * rr + 1] * inv);
                }
            } else {
                size_t idx = ((size_t)split * a.num_tokens + tok) * a.H + head;
                if (t4 == 0)
                    a.part_ml[idx] = make_float2(m[mg][rr], l[mg][rr]);
                if (l[mg][rr] > 0.0f) {
                    float *dst = a.part_o + idx * a.D;
#pragma unroll
                    for (int j = 0; j < NO; j++) {
                        int d = j * 8 + t4 * 2;
                        if (d < a.D)
                            *reinterpret_cast<float2 *>(dst + d) = make_float2(
                                o[mg][j][2 * rr] * a.v_scale, o[mg][j][2 * rr + 1] * a.v_scale);
                    }
                }
            }
        }
}

/* grid num_tokens * H, block ATTN_REDUCE_THREADS: one block merges the splits of one
 * (token, head): out = Σ o_z 2^(m_z - M) / (Σ l_z 2^(m_z - M) + 2^(sink - M)), the sink's
 * term only with sinks (M then counts it too). Splits that saw no key (l 0;
 * their o was never written) weigh nothing; a row no split saw is zeros. The weights come
 * first (one pass over the splits' (m, l)), then the threads split the (split, dim) grid
 * between them so that no thread walks all splits one dependent load after another. */
#define ATTN_REDUCE_THREADS 256
__global__ void __launch_bounds__(ATTN_REDUCE_THREADS) attn_reduce_kernel(const __grid_constant__ attn_args a)
{
    __shared__ float s_w[ATTN_MAX_SPLITS], s_part[ATTN_REDUCE_THREADS];
    __shared__ float s_inv;
    const size_t rows = (size_t)a.num_tokens * a.H, idx = blockIdx.x;
    const int t = threadIdx.x, groups = ATTN_REDUCE_THREADS / a.D;

    if (t < 32) {
        float mz[ATTN_MAX_SPLITS / 32], lz[ATTN_MAX_SPLITS / 32], mmax = -INFINITY, sum = 0.0f;
#pragma unroll
        for (int i = 0; i < ATTN_MAX_SPLITS / 32; i++) {
            int z = t + 32 * i;
            float2 ml = z < a.num_splits ? a.part_ml[z * rows + idx] : make_float2(-INFINITY, 0.0f);
            mz[i] = ml.x;
            lz[i] = ml.y;
            if (ml.y > 0.0f)
                mmax = fmaxf(mmax, ml.x);
        }
        mmax = warp_max(mmax);
        /* gpt-oss's sink: once here, as one more split with logit sink and no output (each
         * split's partial softmax left it out, or it would count num_splits times) */
        float sink2 = a.sinks ? a.sinks[idx % a.H] * LOG2E : -INFINITY;
        mmax = fmaxf(mmax, sink2);
#pragma unroll
        for (int i = 0; i < ATTN_MAX_SPLITS / 32; i++) {
            float w = lz[i] > 0.0f ? exp2f(mz[i] - mmax) : 0.0f;
            s_w[t + 32 * i] = w;
            sum += lz[i] * w;
        }
        sum = warp_sum(sum);
        if (a.sinks)
            sum += exp2f(sink2 - mmax);
        if (t == 0)
            s_inv = sum > 0.0f ? 1.0f / sum : 0.0f;
    }
    __syncthreads();
    if (t < groups * a.D) {
        int g = t / a.D, d = t % a.D;
        float acc = 0.0f;
#pragma unroll 4
        for (int z = g; z < a.num_splits; z += groups)
            if (s_w[z] != 0.0f)
                acc += a.part_o[(z * rows + idx) * a.D + d] * s_w[z];
        s_part[t] = acc;
    }
    __syncthreads();
    for (int d = t; d < a.D; d += ATTN_REDUCE_THREADS) {
        float acc = 0.0f;
        for (int g = 0; g < groups; g++)
            acc += s_part[g * a.D + d];
        a.out[idx * a.D + d] = __float2bfloat16(acc * s_inv);   /* rows [token][head][D] */
    }
}

/* ---- host side ---- */

/* The varlen kernel's shapes for batches with a prefill: four warps of 16 rows (as decodes
 * and short chunks use) or the prefill variant, four warps of 32 rows (two row groups
 * sharing each K and V fragment), both with 64-key tiles in two stages. On the H200 the
 * prefill variant runs one causal request of 8k tokens at 272 TFLOP/s against 135 for 16
 * rows a warp (4k: 216 vs 123; 1k: 115 vs 73), but a 512-token one at 30 against 54: its
 * 128-row tiles give a short prompt too few blocks to fill the GPU. Three stages, or 32-key
 * tiles (which spare the 64-key shape's few spilled registers at head_dim 128), were slower
 * in the same run (8k: 181 and 240). It takes head dims up to 128 (at 256 the accumulators
 * alone would not fit) and batches whose longest query is ATTN_PF_MIN_QUERY tokens or more;
 * attention_prefill_cuda_tune forces a shape for tests and benchmarks. */
enum { ATTN_PF_ROWS16, ATTN_PF_ROWS32, ATTN_PF_COUNT };
#define ATTN_PF_DEFAULT ATTN_PF_ROWS32   /* for max_query_len >= ATTN_PF_MIN_QUERY */
#define ATTN_PF_MIN_QUERY 1024
static int attn_pf_tune = -1;            /* -1: by shape */

static int attn_prefill_variant(const struct cuda_attn_batch *b, const struct cuda_attn_params *p)
{
    int v = ATTN_PF_ROWS16;

    if (attn_pf_tune >= 0)
        v = attn_pf_tune;
    else if (b->max_query_len >= ATTN_PF_MIN_QUERY)
        v = ATTN_PF_DEFAULT;
    return p->head_dim > 128 ? ATTN_PF_ROWS16 : v;
}

int attention_prefill_cuda_tune(int variant, char *name, size_t name_len)
{
    static const char *const names[ATTN_PF_COUNT] = {
        "4 warps x 16 rows, 64 keys x 2 stages", "4 warps x 32 rows, 64 keys x 2 stages" };

    if (variant < -1 || variant >= ATTN_PF_COUNT)
        return -ENOENT;
    attn_pf_tune = variant;
    if (name && name_len && variant < 0)
        snprintf(name, name_len, "default from %d query tokens: %s", ATTN_PF_MIN_QUERY,
                 names[ATTN_PF_DEFAULT]);
    else if (name && name_len)
        snprintf(name, name_len, "%s", names[variant]);
    return 0;
}

/* Rows per block: decodes only, one warp; else the prefill variant's tile. */
static int attn_block_m(const struct cuda_attn_batch *b, const struct cuda_attn_params *p)
{
    if (b->max_query_len <= 1)
        return 16;
    return attn_prefill_variant(b, p) == ATTN_PF_ROWS16 ? 64 : 128;
}

static int attn_varlen_splits(const struct cuda_attn_batch *b, const struct cuda_attn_params *p,
                              const struct attn_workspace *ws)
{
    int bm = attn_block_m(b, p);
    int bn = bm == 16 || p->head_dim > 128 ? 32 : 64;
    int G = p->num_kv_heads > 0 ? p->num_heads / p->num_kv_heads : 1;
    long long tiles = MAX((long long)b->num_reqs, ((long long)b->num_tokens * G + bm - 1) / bm);
    long long blocks = tiles * p->num_kv_heads, per_split;
    long long splits, want;

    /* Decodes: about four blocks per SM (a decode block is one warp waiting on its key
     * tiles one after another: more of them in flight is what fills the memory system),
     * each split at least one key tile long. Batches with prefills (four-warp blocks, where
     * a split costs a second pass): split only when they leave SMs idle, to two blocks per
     * SM, each split at least two tiles long. */
    want = (bm == 16 ? 4LL : 1LL) * MAX(ws ? ws->num_sms : 0, 0);
    if (!ws || !ws->partial || ws->partial_bytes < 16 || ws->num_sms <= 0 || blocks >= want ||
        b->num_tokens <= 0)
        return 1;
    want = bm == 16 ? want : 2LL * ws->num_sms;
    splits = (want + blocks - 1) / blocks;
    splits = MIN(splits, MAX(1, b->max_seq_len / (bm == 16 ? bn : 2 * bn)));
    splits = MIN(splits, ATTN_MAX_SPLITS);
    per_split = (long long)b->num_tokens * p->num_heads * (p->head_dim + 2) * (long long)sizeof(float);
    splits = MIN(splits, (long long)((ws->partial_bytes - 16) / per_split));  /* 16: alignment */
    return (int)MAX(splits, 1);
}

int attention_cuda_splits(const struct cuda_attn_batch *b, const struct cuda_attn_params *p,
                          const struct attn_workspace *ws)
{
    if (attn_decode_supports(p, b))
        return attn_decode_splits(b, p, ws);
    return attn_varlen_splits(b, p, ws);
}

template <int HD, int WARPS, int BN, int RPW = 16, int ST = 2>
static int attn_launch(const attn_args &a, bool fp8, cudaStream_t s)
{
    constexpr int BM = WARPS * RPW;
    dim3 grid((unsigned int)(((long long)a.num_tokens * a.G + BM - 1) / BM + a.num_reqs + 1),
              a.KVH, a.num_splits);

    if (fp8)
        attn_kernel<HD, WARPS, BN, true, RPW, ST>
            <<<grid, WARPS * 32, attn_smem_bytes<HD, WARPS, BN, true, RPW, ST>(), s>>>(a);
    else
        attn_kernel<HD, WARPS, BN, false, RPW, ST>
            <<<grid, WARPS * 32, attn_smem_bytes<HD, WARPS, BN, false, RPW, ST>(), s>>>(a);
    if (!CUDA_OK(cudaGetLastError()))
        return -EIO;
    if (a.num_splits > 1) {
        attn_reduce_kernel<<<(unsigned int)((long long)a.num_tokens * a.H), ATTN_REDUCE_THREADS, 0, s>>>(a);
        if (!CUDA_OK(cudaGetLastError()))
            return -EIO;
    }
    return 0;
}

template <int HD, int WARPS, int BN, int RPW = 16, int ST = 2>
static bool attn_set_smem(void)
{
    return CUDA_OK(cudaFuncSetAttribute(attn_kernel<HD, WARPS, BN, false, RPW, ST>,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)attn_smem_bytes<HD, WARPS, BN, false, RPW, ST>())) &&
           CUDA_OK(cudaFuncSetAttribute(attn_kernel<HD, WARPS, BN, true, RPW, ST>,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)attn_smem_bytes<HD, WARPS, BN, true, RPW, ST>()));
}

/* Shared memory of the prefill variant at HD 128, bf16 (padded rows of 272 bytes): 128 Q
 * rows and two stages of 64-key K and V tiles, 384 rows = 104,448 bytes (two blocks an SM,
 * as the registers allow). At HD 64 (144-byte rows): 55,296. */
static_assert(attn_smem_bytes<128, 4, 64, false, 32, 2>() == 104448, "two prefill blocks an SM");

/* The head_dim HD instantiation for a batch with prefills (attn_prefill_variant). */
template <int HD>
static int attn_launch_prefill(const attn_args &a, bool fp8, int variant, cudaStream_t s)
{
    if (variant == ATTN_PF_ROWS32)
        return attn_launch<HD, 4, 64, 32, 2>(a, fp8, s);
    return attn_launch<HD, 4, 64>(a, fp8, s);
}

/* Raises the shared-memory limit of every instantiation once, at backend creation (never
 * inside a graph capture). */
int attention_cuda_init(void)
{
    bool ok = attn_set_smem<32, 1, 32>() && attn_set_smem<32, 4, 64>() &&
              attn_set_smem<64, 1, 32>() && attn_set_smem<64, 4, 64>() &&
              attn_set_smem<128, 1, 32>() && attn_set_smem<128, 4, 64>() &&
              attn_set_smem<256, 1, 32>() && attn_set_smem<256, 4, 32>() &&
              attn_set_smem<32, 4, 64, 32, 2>() && attn_set_smem<64, 4, 64, 32, 2>() &&
              attn_set_smem<128, 4, 64, 32, 2>();
    return ok && attn_decode_init() == 0 ? 0 : -EIO;
}

int attention_cuda(bf16 *out, const bf16 *q, int q_stride, const void *k_cache,
                   const void *v_cache, const struct cuda_attn_batch *b,
                   const struct cuda_attn_params *p, const struct attn_workspace *ws,
                   cudaStream_t s)
{
    const struct cuda_cache_layout *l = &p->cache;
    int D = p->head_dim, pv;
    bool decode = attn_block_m(b, p) == 16, fp8 = l->dtype == CUDA_KV_FP8_E4M3;
    attn_args a = {};

    if (D <= 0 || D % 8 || D > 256 || p->num_kv_heads <= 0 || p->num_heads % p->num_kv_heads ||
        l->num_kv_heads != p->num_kv_heads || l->head_dim != D || l->block_size <= 0 ||
        l->num_blocks <= 0 || (b->num_reqs > 0 && !b->block_table) || q_stride % 8 ||
        q_stride < p->num_heads * D || !aligned16(q) || !aligned16(k_cache) ||
        !aligned16(v_cache) || b->num_reqs < 0 || b->num_tokens < 0 || b->max_blocks_per_req < 0)
        return -EINVAL;
    if (l->dtype != CUDA_KV_BF16 &&
        !(fp8 && isfinite(l->k_scale) && l->k_scale > 0.0f && isfinite(l->v_scale) &&
          l->v_scale > 0.0f))
        return -EINVAL;
    if (b->num_tokens == 0)
        return 0;
    a.out = out;
    a.q = q;
    a.k_cache = k_cache;
    a.v_cache = v_cache;
    a.qsl = b->query_start_loc;
    a.seq_lens = b->seq_lens;
    a.block_table = b->block_table;
    a.q_stride = q_stride;
    a.num_reqs = b->num_reqs;
    a.num_tokens = b->num_tokens;
    a.max_blocks = b->max_blocks_per_req;
    a.H = p->num_heads;
    a.KVH = p->num_kv_heads;
    a.G = p->num_heads / p->num_kv_heads;
    a.D = D;
    a.block_size = l->block_size;
    a.num_blocks = l->num_blocks;
    a.window = p->window;
    /* fp8: q · (k8 * k_scale) * scale == (q · k8) * (scale * k_scale), and likewise v */
    a.scale = fp8 ? p->scale * l->k_scale : p->scale;
    a.scale_log2 = a.scale * LOG2E;
    a.v_scale = fp8 ? l->v_scale : 1.0f;
    a.softcap = p->softcap;
    a.sinks = p->sinks;
    a.num_splits = attention_cuda_splits(b, p, ws);
    if (a.num_splits > 1) {
        size_t o_floats = (size_t)a.num_splits * a.num_tokens * a.H * D;
        a.part_o = ws->partial;
        a.part_ml = reinterpret_cast<float2 *>(ws->partial + (o_floats + 1) / 2 * 2);
    }
    if (attn_decode_supports(p, b))
        return attn_decode_launch(a, fp8, s);
    /* decodes: one-warp blocks with 32-key tiles, half the shared memory of 64-key ones, so
     * that twice as many blocks (each waiting on its own loads) fit on an SM */
    pv = attn_prefill_variant(b, p);
    if (D <= 32)
        return decode ? attn_launch<32, 1, 32>(a, fp8, s) : attn_launch_prefill<32>(a, fp8, pv, s);
    if (D <= 64)
        return decode ? attn_launch<64, 1, 32>(a, fp8, s) : attn_launch_prefill<64>(a, fp8, pv, s);
    if (D <= 128)
        return decode ? attn_launch<128, 1, 32>(a, fp8, s) : attn_launch_prefill<128>(a, fp8, pv, s);
    return decode ? attn_launch<256, 1, 32>(a, fp8, s) : attn_launch<256, 4, 32>(a, fp8, s);
}
