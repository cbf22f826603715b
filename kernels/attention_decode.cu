/* attention_decode.cu — kernel 2 of an attention layer when every request of the step has one
 * query (the decode graphs' case); attention.cu dispatches here and keeps mixed steps.
 * Decode attention only streams the KV cache, so the whole design is about keeping DRAM
 * busy: one thread block takes one (token, KV head, key split) and all G <= 16 query heads
 * that share the KV head (GQA-packed: each K/V byte is read once); the keys are split over
 * enough blocks to fill every SM once; each block keeps ST - 1 tiles of NW * KPW keys in
 * flight (cp.async into a ring of ST stages, the block table read once per key a tile
 * ahead); each of its NW warps runs flash-attention on KPW keys of every tile with mma.sync
 * (Q·Kᵀ and P·V, online softmax in registers); the warps merge their rows in shared memory
 * and a small second kernel merges the splits. An fp8 (e4m3) cache is fed to the math
 * straight from the stage: K's codes widen to bf16 in registers (dims permuted in Q and K
 * alike so that one 8-byte load gives a thread its fragments), V's are interleaved by byte
 * permutes and widened to f16 for an f16 P·V, exactly. The split count depends only on the
 * padded counts and max_seq_len; each block finds its keys from the device's seq_lens, so a
 * captured graph replays any batch of its size and any sequence length up to max_seq_len.
 * gpt-oss's sinks join each row's denominator after the warps' merge, or in the merge of the
 * splits, never inside the key loop.
 * Several instantiations are compiled; the first of each head_dim and dtype runs, the others
 * are there for the benchmark's comparison (attention_decode_cuda_tune). */
#include <math.h>
#include <stdio.h>    /* snprintf */

#include "engine/base/util.h"     /* MIN, MAX */
#include "kernels/attention.cuh"  /* attn_args, cp.async and mma primitives */
#include "kernels/fp8.cuh"        /* fp8x2_to_bf162 */

#define DEC_MAX_SPLITS 256
#define DEC_MIN_TILES 4           /* keys of a split: at least this many tiles */
#define DEC_REDUCE_THREADS 128

enum dec_load {
    DEC_LOAD_CHUNKS = 0,   /* cp.async of 16-byte chunks, every thread reading the block table */
    DEC_LOAD_LUT = 1,      /* the same, the table read once per key a tile ahead (sRow) */
    DEC_LOAD_BULK = 2,     /* one cp.async.bulk per row, completing on a stage's mbarrier */
};

/* Shared memory of one block: Q (16 rows, bf16, 16-byte chunks XOR-swizzled by row), the
 * offset table (LUT) or the stages' mbarriers (BULK), then ST stages of a K and a V tile of BN
 * rows, each row head_dim elements and 16 bytes of padding (spreads ldmatrix rows over the
 * banks); the warps' merge reuses the stages after the last tile. */
template <int HD, int NW, int KPW, int ST, bool FP8, int LOAD>
constexpr size_t dec_smem_bytes()
{
    constexpr size_t q = 16 * HD * 2, row = HD * (FP8 ? 1 : 2) + 16;
    constexpr size_t stages = (size_t)ST * 2 * (NW * KPW) * row;
    constexpr size_t merge = (size_t)NW * 16 * HD * 4 + (size_t)NW * 16 * 8;
    constexpr size_t lut = LOAD == DEC_LOAD_LUT ? 2 * (NW * KPW) * 4 :
                           LOAD == DEC_LOAD_BULK ? (ST * 8 + 15) / 16 * 16 : 0;
    return q + lut + (stages > merge ? stages : merge);
}

__device__ __forceinline__ uint32_t bf162_bits(__nv_bfloat162 h)
{
    return *reinterpret_cast<uint32_t *>(&h);
}

/* two e4m3 codes (lo in the low byte) widened to an f16 pair, exactly */
__device__ __forceinline__ uint32_t fp8x2_to_f16x2_bits(uint32_t codes)
{
    __half2_raw h = __nv_cvt_fp8x2_to_halfraw2((__nv_fp8x2_storage_t)(codes & 0xffffu), __NV_E4M3);
    return (uint32_t)h.x | (uint32_t)h.y << 16;
}

/* ---- mbarriers and bulk copies (sm_90) ---- */

__device__ __forceinline__ void mbar_init(uint64_t *bar, int count)
{
    unsigned int b = (unsigned int)__cvta_generic_to_shared(bar);

    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(b), "r"(count) : "memory");
}

/* this thread's arrival for the phase, and tx more bytes that the phase waits for */
__device__ __forceinline__ void mbar_arrive_expect_tx(uint64_t *bar, int tx)
{
    unsigned int b = (unsigned int)__cvta_generic_to_shared(bar);

    asm volatile("{\n .reg .b64 st;\n"
                 " mbarrier.arrive.expect_tx.shared::cta.b64 st, [%0], %1;\n}\n" ::"r"(b), "r"(tx)
                 : "memory");
}

__device__ __forceinline__ void mbar_wait(uint64_t *bar, int parity)
{
    unsigned int b = (unsigned int)__cvta_generic_to_shared(bar);

    asm volatile("{\n .reg .pred p;\n"
                 "wait_%=:\n"
                 " mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n"
                 " @!p bra wait_%=;\n}\n" ::"r"(b), "r"(parity)
                 : "memory");
}

/* bytes (a multiple of 16, both addresses 16-byte aligned) from global to shared memory,
 * completing on bar */
__device__ __forceinline__ void bulk_g2s(void *smem, const void *gmem, int bytes, uint64_t *bar)
{
    unsigned int s = (unsigned int)__cvta_generic_to_shared(smem);
    unsigned int b = (unsigned int)__cvta_generic_to_shared(bar);

    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n"
                 ::"r"(s), "l"(gmem), "r"(bytes), "r"(b) : "memory");
}

/* grid (num_tokens, KVH, num_splits), block NW * 32. HD: the head_dim (64, 128, 256); each
 * warp takes KPW keys (16, 32, 64) of every tile of NW * KPW; LOAD: how K/V rows reach the
 * stages (enum dec_load); DIAG: a benchmark's diagnostic that loads and skips the math
 * (its output is garbage). */
template <int HD, int NW, int KPW, int ST, bool FP8, int LOAD, bool DIAG>
__global__ void __launch_bounds__(NW * 32) attn_decode_kernel(const __grid_constant__ attn_args a)
{
    constexpr int NT = NW * 32, BN = NW * KPW, ES = FP8 ? 1 : 2, NS = KPW / 8;
    constexpr int ROWB = HD * ES + 16;     /* bytes of a staged K or V row */
    constexpr int CH = HD * ES / 16;       /* 16-byte chunks of a row */
    constexpr int NO = HD / 8;             /* 8-dim tiles of O */
    constexpr bool LUT = LOAD == DEC_LOAD_LUT, BULK = LOAD == DEC_LOAD_BULK;
    constexpr int ROW = HD * ES;           /* bytes of a cache row of one head */
    extern __shared__ __align__(16) unsigned char smem[];
    bf16 *sQ = reinterpret_cast<bf16 *>(smem);
    int *sRow = reinterpret_cast<int *>(smem + 16 * HD * 2);   /* LUT: [2][BN] cache rows */
    uint64_t *sBar = reinterpret_cast<uint64_t *>(smem + 16 * HD * 2);   /* BULK: [ST] */
    unsigned char *sKV = smem + 16 * HD * 2 +
                         (LUT ? 2 * BN * 4 : BULK ? (ST * 8 + 15) / 16 * 16 : 0);

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int g8 = lane >> 2, t4 = lane & 3;
    const int tok = blockIdx.x, kvh = blockIdx.y, split = blockIdx.z;

    /* the merge kernel may be launched now; it waits for this grid's completion itself */
    asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");

    /* ---- the request of this token: the last r with qsl[r] <= tok (num_reqs: none) ---- */
    int rlo = 0, rhi = a.num_reqs;
    while (rlo < rhi) {
        int mid = (rlo + rhi + 1) >> 1;
        if (a.qsl[mid] <= tok)
            rlo = mid;
        else
            rhi = mid - 1;
    }
    const int r = rlo;
    int pos = -1;   /* the query's position; -1: a token of no request, or a padding one */
    if (r < a.num_reqs && a.seq_lens[r] > 0)
        pos = a.seq_lens[r] - (a.qsl[r + 1] - tok);

    /* ---- keys [kv_lo, kv_hi) of the query, and this split's tiles of them ---- */
    const int kv_hi = max(pos + 1, 0);
    const int kv_lo = a.window > 0 ? max(pos - a.window + 1, 0) : 0;
    int tb = kv_lo / BN, te = kv_hi > kv_lo ? (kv_hi + BN - 1) / BN : tb;
    {
        int per = (te - tb + a.num_splits - 1) / a.num_splits;
        int b = tb + split * per;
        te = min(b + per, te);
        tb = min(b, te);
    }
    const int ntiles = te - tb;

    /* ---- Q of the G heads into rows 0..G-1 (zeros below: their results are dropped) ---- */
    for (int idx = tid; idx < 16 * (HD / 8); idx += NT) {
        int row = idx / (HD / 8), c = idx % (HD / 8);
        uint4 v = make_uint4(0, 0, 0, 0);
        if (row < a.G && ntiles > 0)
            v = *reinterpret_cast<const uint4 *>(a.q + (size_t)tok * a.q_stride +
                                                 (size_t)(kvh * a.G + row) * HD + c * 8);
        *reinterpret_cast<uint4 *>(sQ + row * HD + (c ^ (row & 7)) * 8) = v;
    }

    const long long row_elems = (long long)a.KVH * HD;
    const int32_t *bt = a.block_table + (size_t)(r < a.num_reqs ? r : 0) * a.max_blocks;
    const char *kc = static_cast<const char *>(a.k_cache), *vc = static_cast<const char *>(a.v_cache);

    /* the cache row (block * block_size + slot) of key t, or -1: keys outside
     * [kv_lo, kv_hi), and keys whose block the table does not hold, are never read */
    auto key_row = [&](int t) -> int {
        if (t < kv_lo || t >= kv_hi)
            return -1;
        int bi = t / a.block_size;
        int blk = bi < a.max_blocks ? __ldg(bt + bi) : -1;
        if (blk < 0 || blk >= a.num_blocks)
            return -1;
        return blk * a.block_size + (t - bi * a.block_size);
    };
    /* K and V rows of tile `tile` into stage st (rows of no key zero-filled); from_lut: the
     * rows are in sRow[lut] */
    auto issue = [&](int tile, int st, bool from_lut, int lut) {
        unsigned char *dk = sKV + (size_t)st * 2 * BN * ROWB, *dv = dk + BN * ROWB;
#pragma unroll
        for (int idx = tid; idx < BN * CH; idx += NT) {
            int kk = idx / CH, c = idx % CH;
            int crow = LUT && from_lut ? sRow[lut * BN + kk] : key_row(tile * BN + kk);
            bool ok = crow >= 0;
            long long off = ok ? ((long long)crow * row_elems + kvh * HD) * ES + c * 16 : 0;
            cp_async16(dk + kk * ROWB + c * 16, kc + off, ok);
            cp_async16(dv + kk * ROWB + c * 16, vc + off, ok);
        }
    };
    /* BULK: thread tid copies rows tid, tid + NT, ... of the K then V rows of the tile (2 BN
     * of them) in bulk copies that complete on the stage's mbarrier; every thread arrives
     * there once a round with the bytes it expects (rows of no key: zeros written here) */
    auto issue_bulk = [&](int tile, int st) {
        int crow[(2 * BN + NT - 1) / NT], tx = 0;
#pragma unroll
        for (int k = 0; k < (2 * BN + NT - 1) / NT; k++) {
            int rw = tid + k * NT;
            crow[k] = rw < 2 * BN ? key_row(tile * BN + rw % BN) : -1;
            tx += rw < 2 * BN && crow[k] >= 0 ? ROW : 0;
        }
        mbar_arrive_expect_tx(sBar + st, tx);
#pragma unroll
        for (int k = 0; k < (2 * BN + NT - 1) / NT; k++) {
            int rw = tid + k * NT;
            if (rw >= 2 * BN)
                continue;
            bool isv = rw >= BN;
            unsigned char *dst = sKV + (size_t)st * 2 * BN * ROWB + rw * ROWB;
            if (crow[k] >= 0) {
                bulk_g2s(dst, (isv ? vc : kc) + ((long long)crow[k] * row_elems + kvh * HD) * ES,
                         ROW, sBar + st);
            } else {
#pragma unroll
                for (int c = 0; c < CH; c++)
                    reinterpret_cast<uint4 *>(dst)[c] = make_uint4(0, 0, 0, 0);
                /* these generic writes come before a later round's bulk writes here */
                asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
            }
        }
    };
    auto fill_lut = [&](int tile, int lut) {
        for (int kk = tid; kk < BN; kk += NT)
            sRow[lut * BN + kk] = key_row(tile * BN + kk);
    };

    if (BULK) {
        if (tid < ST)
            mbar_init(sBar + tid, NT);
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
        __syncthreads();
    }
#pragma unroll
    for (int s = 0; s < ST - 1; s++) {
        if (BULK) {
            if (s < ntiles)
                issue_bulk(tb + s, s);
            continue;
        }
        if (s < ntiles)
            issue(tb + s, s, false, 0);
        cp_async_commit();   /* empty groups too: the wait below counts groups */
    }
    /* LUT: sRow[(i + ST - 1) & 1] holds tile i + ST - 1's offsets at the top of iteration i */
    if (LUT && ST - 1 < ntiles)
        fill_lut(tb + ST - 1, (ST - 1) & 1);

    float o[NO][4], m[2] = { -INFINITY, -INFINITY }, l[2] = { 0.0f, 0.0f };
#pragma unroll
    for (int j = 0; j < NO; j++)
        o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
    const bool two_rows = a.G > 8;   /* rows g8 + 8 hold heads too */

    for (int i = 0; i < ntiles; i++) {
        if (BULK)
            mbar_wait(sBar + i % ST, (i / ST) & 1);
        else
            cp_async_wait<ST - 2>();
        __syncthreads();   /* tile i landed for all; the stage of tile i - 1 is free again */
        if (BULK) {
            if (i + ST - 1 < ntiles)
                issue_bulk(tb + i + ST - 1, (i + ST - 1) % ST);
        } else {
            if (i + ST - 1 < ntiles)
                issue(tb + i + ST - 1, (i + ST - 1) % ST, true, (i + ST - 1) & 1);
            cp_async_commit();
        }
        /* the other half was last read by iteration i - 1's copies, before the barrier */
        if (LUT && i + ST < ntiles)
            fill_lut(tb + i + ST, (i + ST) & 1);

        const int key0 = (tb + i) * BN + warp * KPW;   /* this warp's KPW keys */
        if (DIAG || key0 >= kv_hi || key0 + KPW <= kv_lo)
            continue;
        const unsigned char *ks = sKV + (size_t)(i % ST) * 2 * BN * ROWB + warp * KPW * ROWB;
        const unsigned char *vs = ks + BN * ROWB;

        /* S = Q · Kᵀ: 16 rows × KPW keys. Dims are taken in a permuted order (the sum does not
         * care): in each 32-dim chunk, thread t4 holds dims t4*8 .. t4*8+7 of its row and its
         * key, which are the fragments of two k-steps in one load. */
        float s[NS][4];
#pragma unroll
        for (int j = 0; j < NS; j++)
            s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
        for (int c = 0; c < HD / 32; c++) {
            const int qc = ((c * 4 + t4) ^ g8) * 8;   /* rows g8 and g8 + 8 swizzle alike */
            uint4 qa = *reinterpret_cast<const uint4 *>(sQ + g8 * HD + qc);
            uint4 qb = make_uint4(0, 0, 0, 0);
            if (two_rows)
                qb = *reinterpret_cast<const uint4 *>(sQ + (g8 + 8) * HD + qc);
            const uint32_t a0[4] = { qa.x, qb.x, qa.y, qb.y }, a1[4] = { qa.z, qb.z, qa.w, qb.w };
#pragma unroll
            for (int j = 0; j < NS; j++) {
                const unsigned char *kr = ks + (j * 8 + g8) * ROWB;
                uint32_t b[4];
                if constexpr (FP8) {
                    uint2 k8 = *reinterpret_cast<const uint2 *>(kr + c * 32 + t4 * 8);
                    b[0] = bf162_bits(fp8x2_to_bf162((uint16_t)k8.x));
                    b[1] = bf162_bits(fp8x2_to_bf162((uint16_t)(k8.x >> 16)));
                    b[2] = bf162_bits(fp8x2_to_bf162((uint16_t)k8.y));
                    b[3] = bf162_bits(fp8x2_to_bf162((uint16_t)(k8.y >> 16)));
                } else {
                    uint4 k4 = *reinterpret_cast<const uint4 *>(kr + (c * 32 + t4 * 8) * 2);
                    b[0] = k4.x, b[1] = k4.y, b[2] = k4.z, b[3] = k4.w;
                }
                mma_bf16(s[j], a0, b[0], b[1]);
                mma_bf16(s[j], a1, b[2], b[3]);
            }
        }

        /* scale (log2 units), soft-cap, and the mask of keys outside [kv_lo, kv_hi) */
        const bool need_mask = key0 < kv_lo || key0 + KPW > kv_hi;
#pragma unroll
        for (int j = 0; j < NS; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                float x = s[j][e];
                if (e >= 2 && !two_rows) {
                    s[j][e] = 0.0f;   /* no head in rows g8 + 8 (G <= 8): P 0 there */
                    continue;
                }
                if (a.softcap > 0.0f)
                    x = a.softcap * tanhf(x * a.scale / a.softcap) * LOG2E;
                else
                    x *= a.scale_log2;
                int key = key0 + j * 8 + t4 * 2 + (e & 1);
                if (need_mask && (key < kv_lo || key >= kv_hi))
                    x = -INFINITY;
                s[j][e] = x;
            }

        /* online softmax of rows g8 (rr 0) and g8 + 8 (rr 1; none when G <= 8) */
#pragma unroll
        for (int rr = 0; rr < 2; rr++) {
            if (rr == 1 && !two_rows)
                break;
            float mx = -INFINITY;
#pragma unroll
            for (int j = 0; j < NS; j++)
                mx = fmaxf(mx, fmaxf(s[j][2 * rr], s[j][2 * rr + 1]));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            float m_new = fmaxf(m[rr], mx);
            float m_use = m_new == -INFINITY ? 0.0f : m_new;
            float alpha = exp2f(m[rr] - m_use);
            m[rr] = m_new;
            l[rr] *= alpha;
#pragma unroll
            for (int j = 0; j < NO; j++) {
                o[j][2 * rr] *= alpha;
                o[j][2 * rr + 1] *= alpha;
            }
#pragma unroll
            for (int j = 0; j < NS; j++) {
                s[j][2 * rr] = exp2f(s[j][2 * rr] - m_use);
                s[j][2 * rr + 1] = exp2f(s[j][2 * rr + 1] - m_use);
                l[rr] += s[j][2 * rr] + s[j][2 * rr + 1];
            }
        }

        /* O += P · V, one k-step per 16 keys; P's fragments are S's registers */
#pragma unroll
        for (int kk = 0; kk < KPW / 16; kk++) {
            const unsigned char *vk = vs + kk * 16 * ROWB;
            if constexpr (FP8) {
                /* thread (g8, t4) needs V[key][dim] for keys 2t4, 2t4+1, 2t4+8, 2t4+9 and, in
                 * O-tile j, the dim g8 * NO + j (O's columns permuted the same way: column n
                 * of tile j is dim n * NO + j), so each key row gives one contiguous load */
                const uint32_t pa[4] = { pack_f16(s[2 * kk][0], s[2 * kk][1]),
                                         pack_f16(s[2 * kk][2], s[2 * kk][3]),
                                         pack_f16(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                         pack_f16(s[2 * kk + 1][2], s[2 * kk + 1][3]) };
                uint32_t v[4][NO / 4];
#pragma unroll
                for (int k = 0; k < 4; k++) {
                    const unsigned char *vr = vk + (2 * t4 + (k & 1) + (k >> 1) * 8) * ROWB + g8 * NO;
                    if constexpr (NO == 8) {
                        uint2 x = *reinterpret_cast<const uint2 *>(vr);
                        v[k][0] = x.x;
                        v[k][1] = x.y;
                    } else {
#pragma unroll
                        for (int w = 0; w < NO / 4; w += 4) {
                            uint4 x = *reinterpret_cast<const uint4 *>(vr + w * 4);
                            v[k][w] = x.x;
                            v[k][w + 1] = x.y;
                            v[k][w + 2] = x.z;
                            v[k][w + 3] = x.w;
                        }
                    }
                }
#pragma unroll
                for (int w = 0; w < NO / 4; w++) {
                    /* bytes (key 2t4, key 2t4+1) of dims 4w .. 4w+3, and of keys 2t4+8, 2t4+9 */
                    uint32_t lo01 = __byte_perm(v[0][w], v[1][w], 0x5140);
                    uint32_t hi01 = __byte_perm(v[0][w], v[1][w], 0x7362);
                    uint32_t lo89 = __byte_perm(v[2][w], v[3][w], 0x5140);
                    uint32_t hi89 = __byte_perm(v[2][w], v[3][w], 0x7362);
                    mma_f16(o[4 * w + 0], pa, fp8x2_to_f16x2_bits(lo01), fp8x2_to_f16x2_bits(lo89));
                    mma_f16(o[4 * w + 1], pa, fp8x2_to_f16x2_bits(lo01 >> 16),
                            fp8x2_to_f16x2_bits(lo89 >> 16));
                    mma_f16(o[4 * w + 2], pa, fp8x2_to_f16x2_bits(hi01), fp8x2_to_f16x2_bits(hi89));
                    mma_f16(o[4 * w + 3], pa, fp8x2_to_f16x2_bits(hi01 >> 16),
                            fp8x2_to_f16x2_bits(hi89 >> 16));
                }
            } else {
                const uint32_t pa[4] = { pack_bf16(s[2 * kk][0], s[2 * kk][1]),
                                         pack_bf16(s[2 * kk][2], s[2 * kk][3]),
                                         pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                         pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3]) };
#pragma unroll
                for (int dp = 0; dp < NO / 2; dp++) {
                    uint32_t b[4];
                    ldmatrix_x4_trans(b, vk + ((lane & 7) + ((lane >> 3) & 1) * 8) * ROWB +
                                             (dp * 16 + (lane >> 4) * 8) * 2);
                    mma_bf16(o[2 * dp], pa, b[0], b[1]);
                    mma_bf16(o[2 * dp + 1], pa, b[2], b[3]);
                }
            }
        }
    }

    /* ---- merge the warps' rows in shared memory (the stages are free once all land) ---- */
    cp_async_wait<0>();
    __syncthreads();
    float *sO = reinterpret_cast<float *>(sKV);            /* [NW][16][HD] */
    float2 *sML = reinterpret_cast<float2 *>(sO + NW * 16 * HD);   /* [NW][16] */
#pragma unroll
    for (int rr = 0; rr < 2; rr++) {
        l[rr] += __shfl_xor_sync(0xffffffffu, l[rr], 1);
        l[rr] += __shfl_xor_sync(0xffffffffu, l[rr], 2);
        int row = g8 + rr * 8;
        if (row >= a.G)
            continue;
        if (t4 == 0)
            sML[warp * 16 + row] = make_float2(m[rr], l[rr]);
        float *dst = sO + (warp * 16 + row) * HD;
#pragma unroll
        for (int j = 0; j < NO; j++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                int n = t4 * 2 + e, d = FP8 ? n * NO + j : j * 8 + n;
                dst[d] = o[j][2 * rr + e];
            }
    }
    __syncthreads();
    for (int idx = tid; idx < a.G * HD; idx += NT) {
        int row = idx / HD, d = idx % HD, head = kvh * a.G + row;
        float mmax = -INFINITY, sum = 0.0f, acc = 0.0f;
#pragma unroll
        for (int w = 0; w < NW; w++)
            if (sML[w * 16 + row].y > 0.0f)
                mmax = fmaxf(mmax, sML[w * 16 + row].x);
#pragma unroll
        for (int w = 0; w < NW; w++) {
            float2 ml = sML[w * 16 + row];
            if (ml.y > 0.0f) {
                float wt = exp2f(ml.x - mmax);
                sum += ml.y * wt;
                acc += sO[(w * 16 + row) * HD + d] * wt;
            }
        }
        if (a.num_splits == 1) {
            /* the sink joins the denominator here, once (split blocks leave it to the merge) */
            if (a.sinks)
                acc *= attn_fold_sink(mmax, sum, a.sinks[head]);
            a.out[(size_t)tok * a.H * HD + (size_t)head * HD + d] =
                __float2bfloat16(sum > 0.0f ? acc * a.v_scale / sum : 0.0f);
        } else {
            size_t pi = ((size_t)split * a.num_tokens + tok) * a.H + head;
            if (d == 0)
                a.part_ml[pi] = make_float2(mmax, sum);
            if (sum > 0.0f)
                a.part_o[pi * HD + d] = acc * a.v_scale;
        }
    }
}

/* grid num_tokens * H, block DEC_REDUCE_THREADS: merges the splits of one (token, head):
 * out = Σ o_z 2^(m_z - M) / (Σ l_z 2^(m_z - M) + 2^(sink - M)), the sink's term only with
 * sinks (M then counts it too). Splits that saw no key (l 0, o never
 * written) weigh nothing; a row no split saw is zeros. */
__global__ void __launch_bounds__(DEC_REDUCE_THREADS) attn_decode_reduce_kernel(const __grid_constant__ attn_args a)
{
    __shared__ float s_w[DEC_MAX_SPLITS];
    __shared__ float s_inv;
    const size_t rows = (size_t)a.num_tokens * a.H, idx = blockIdx.x;
    const int t = threadIdx.x;

    /* launched as a programmatic dependent: wait for the attention blocks' partials (a no-op
     * for an ordinary launch) */
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
    if (t < 32) {
        float mmax = -INFINITY, sum = 0.0f;
        for (int z = t; z < a.num_splits; z += 32) {
            float2 ml = a.part_ml[z * rows + idx];
            if (ml.y > 0.0f)
                mmax = fmaxf(mmax, ml.x);
        }
        mmax = warp_max(mmax);
        /* gpt-oss's sink: once here, as one more split with logit sink and no output (each
         * split's partial softmax left it out, or it would count num_splits times) */
        float sink2 = a.sinks ? a.sinks[idx % a.H] * LOG2E : -INFINITY;
        mmax = fmaxf(mmax, sink2);
        for (int z = t; z < a.num_splits; z += 32) {
            float2 ml = a.part_ml[z * rows + idx];
            float w = ml.y > 0.0f ? exp2f(ml.x - mmax) : 0.0f;
            s_w[z] = w;
            sum += ml.y * w;
        }
        sum = warp_sum(sum);
        if (a.sinks)
            sum += exp2f(sink2 - mmax);
        if (t == 0)
            s_inv = sum > 0.0f ? 1.0f / sum : 0.0f;
    }
    __syncthreads();
    for (int d = t; d < a.D; d += DEC_REDUCE_THREADS) {
        float acc = 0.0f;
#pragma unroll 8
        for (int z = 0; z < a.num_splits; z++)
            if (s_w[z] != 0.0f)
                acc += a.part_o[(z * rows + idx) * a.D + d] * s_w[z];
        a.out[idx * a.D + d] = __float2bfloat16(acc * s_inv);   /* rows [token][head][D] */
    }
}

/* ---- host side ---- */

/* One instantiation: its shape, launcher, and how many of its blocks an SM holds. */
struct dec_variant {
    int hd, nw, kpw, st;
    bool fp8;
    int load;                  /* enum dec_load */
    bool diag;                 /* loads only: for the benchmark, never picked by the daemon */
    size_t smem;
    int (*init)(void);
    void (*launch)(const attn_args &a, cudaStream_t s);
    int resident;              /* blocks per SM (attn_decode_init); 0 before it */
};

template <int HD, int NW, int KPW, int ST, bool FP8, int LOAD, bool DIAG>
static int dec_init_one(void)
{
    int n = 0;

    if (!CUDA_OK(cudaFuncSetAttribute(attn_decode_kernel<HD, NW, KPW, ST, FP8, LOAD, DIAG>,
                                      cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      (int)dec_smem_bytes<HD, NW, KPW, ST, FP8, LOAD>())) ||
        !CUDA_OK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, attn_decode_kernel<HD, NW, KPW, ST, FP8, LOAD, DIAG>,
                                                               NW * 32, dec_smem_bytes<HD, NW, KPW, ST, FP8, LOAD>())))
        return -1;
    return n;
}

template <int HD, int NW, int KPW, int ST, bool FP8, int LOAD, bool DIAG>
static void dec_launch_one(const attn_args &a, cudaStream_t s)
{
    dim3 grid((unsigned int)a.num_tokens, (unsigned int)a.KVH, (unsigned int)a.num_splits);

    attn_decode_kernel<HD, NW, KPW, ST, FP8, LOAD, DIAG><<<grid, NW * 32, dec_smem_bytes<HD, NW, KPW, ST, FP8, LOAD>(), s>>>(a);
}

#define DEC_VARIANT(HD, NW, KPW, ST, FP8, LOAD, DIAG) \
    { HD, NW, KPW, ST, FP8, LOAD, DIAG, dec_smem_bytes<HD, NW, KPW, ST, FP8, LOAD>(), \
      dec_init_one<HD, NW, KPW, ST, FP8, LOAD, DIAG>, \
      dec_launch_one<HD, NW, KPW, ST, FP8, LOAD, DIAG>, 0 }

/* The first entry of each (head_dim, dtype) is the one used; the others are there for
 * attention_decode_cuda_tune (the benchmark's comparison). */
/* Shared memory per SM on sm_90 is 228 KB, 1 KB of it reserved per block: 3 blocks fit
 * in 76,800 bytes each, 2 in 115,712. */
#define L_ DEC_LOAD_LUT
#define B_ DEC_LOAD_BULK
static struct dec_variant dec_variants[] = {
    /* the defaults, the first of each head_dim and dtype: the fastest of the second device
     * window (docs/BENCHMARKS.md), which fill the SMs with more warps and fewer stages */
    DEC_VARIANT(64, 8, 16, 2, false, L_, false),
    DEC_VARIANT(64, 4, 32, 2, true, L_, false),
    DEC_VARIANT(128, 4, 16, 2, false, L_, false),
    DEC_VARIANT(128, 4, 16, 3, true, L_, false),
    DEC_VARIANT(256, 2, 16, 3, false, L_, false),
    DEC_VARIANT(256, 4, 16, 3, true, L_, false),
    /* alternatives for attention_decode_cuda_tune (bench.c compares them) */
    DEC_VARIANT(64, 4, 16, 4, false, L_, false),
    DEC_VARIANT(64, 4, 32, 2, false, L_, false),
    DEC_VARIANT(64, 4, 16, 4, false, B_, false),
    DEC_VARIANT(64, 4, 16, 6, true, L_, false),
    DEC_VARIANT(64, 4, 16, 3, true, L_, false),
    DEC_VARIANT(64, 8, 16, 2, true, L_, false),
    DEC_VARIANT(128, 4, 16, 3, false, L_, false),
    DEC_VARIANT(128, 4, 16, 3, false, B_, false),
    DEC_VARIANT(128, 4, 16, 4, true, L_, false),
    DEC_VARIANT(128, 4, 32, 2, true, L_, false),
    /* diagnostics: the defaults' loads without the math */
    DEC_VARIANT(64, 8, 16, 2, false, L_, true),
    DEC_VARIANT(64, 4, 32, 2, true, L_, true),
    DEC_VARIANT(128, 4, 16, 2, false, L_, true),
    DEC_VARIANT(128, 4, 16, 3, true, L_, true),
};
#undef L_
#undef B_

static int dec_tune_variant, dec_tune_waves;   /* attention_decode_cuda_tune; 0: defaults */
static int dec_tune_flags;

static bool dec_pdl(void)
{
    return !(dec_tune_flags & 1);   /* flag 1: launch the merge the plain way */
}

/* The k-th instantiation for (head_dim, dtype) among the real ones (diag false) or the
 * diagnostics, or NULL. */
static struct dec_variant *dec_find(int hd, bool fp8, int k, bool diag)
{
    for (size_t i = 0; i < sizeof dec_variants / sizeof dec_variants[0]; i++) {
        struct dec_variant *v = &dec_variants[i];
        if (v->hd == hd && v->fp8 == fp8 && v->diag == diag && k-- == 0)
            return v;
    }
    return NULL;
}

/* The instantiation in use: the tuned one where it exists, else the default. Variants from
 * DEC_DIAG_BASE up are the diagnostics. */
#define DEC_DIAG_BASE 100
static struct dec_variant *dec_pick(int hd, bool fp8)
{
    struct dec_variant *v = NULL;

    if (dec_tune_variant >= DEC_DIAG_BASE)
        v = dec_find(hd, fp8, dec_tune_variant - DEC_DIAG_BASE, true);
    else if (dec_tune_variant > 0)
        v = dec_find(hd, fp8, dec_tune_variant, false);
    return v ? v : dec_find(hd, fp8, 0, false);
}

int attention_decode_cuda_tune(int hd, bool fp8, int variant, int waves, int flags, char *name,
                               size_t name_len)
{
    const struct dec_variant *v = NULL;

    if (variant >= DEC_DIAG_BASE)
        v = dec_find(hd, fp8, variant - DEC_DIAG_BASE, true);
    else if (variant >= 0)
        v = dec_find(hd, fp8, variant, false);
    if (variant > 0 && !v)
        return -ENOENT;   /* variant 0 needs no instantiation: it means "the defaults" */
    dec_tune_variant = variant;
    dec_tune_waves = waves;
    dec_tune_flags = flags;
    if (name && name_len) {
        if (v)
            snprintf(name, name_len, "%d warps x %d keys, %d stages%s, %d/SM, %s x%d%s%s", v->nw,
                     v->kpw, v->st, v->load == DEC_LOAD_LUT ? ", offset table" :
                     v->load == DEC_LOAD_BULK ? ", bulk copies" : "", v->resident,
                     waves < 0 ? "no split" : "waves", MAX(waves, 1),
                     flags & 1 ? ", plain merge launch" : "", v->diag ? ", LOADS ONLY" : "");
        else
            snprintf(name, name_len, variant < 0 ? "the varlen kernel" : "defaults");
    }
    return 0;
}

int attn_decode_init(void)
{
    for (size_t i = 0; i < sizeof dec_variants / sizeof dec_variants[0]; i++) {
        int n = dec_variants[i].init();
        if (n <= 0)
            return -EIO;
        dec_variants[i].resident = n;
    }
    return 0;
}

bool attn_decode_supports(const struct cuda_attn_params *p, const struct cuda_attn_batch *b)
{
    int D = p->head_dim, G = p->num_kv_heads > 0 ? p->num_heads / p->num_kv_heads : 0;

    return dec_tune_variant >= 0 && b->max_query_len <= 1 && (D == 64 || D == 128 || D == 256) && G >= 1 && G <= 16 &&
           b->num_tokens <= INT32_MAX / 2 && p->num_kv_heads <= 65535;
}

/* One wave of resident blocks is what fills the GPU; a batch with fewer (token, KV head)
 * pairs than two waves splits its keys: the fewest splits whose blocks fill at least 90% of
 * the whole waves they take (a last, partial wave leaves SMs idle), else the fullest, each
 * split at least DEC_MIN_TILES tiles of max_seq_len long and at most DEC_MAX_SPLITS. */
int attn_decode_splits(const struct cuda_attn_batch *b, const struct cuda_attn_params *p,
                       const struct attn_workspace *ws)
{
    const struct dec_variant *v = dec_pick(p->head_dim, p->cache.dtype == CUDA_KV_FP8_E4M3);
    long long pairs = (long long)b->num_tokens * p->num_kv_heads, wave, cap, per_split;
    long long best = 1;
    double best_eff = 0.0;

    if (!v || !ws || !ws->partial || ws->num_sms <= 0 || b->num_tokens <= 0 || dec_tune_waves < 0)
        return 1;
    wave = (long long)ws->num_sms * MAX(v->resident, 1) * MAX(dec_tune_waves, 1);
    if (pairs >= 2 * wave)
        return 1;
    cap = MAX(1, (long long)b->max_seq_len / (v->nw * v->kpw * DEC_MIN_TILES));
    cap = MIN(cap, DEC_MAX_SPLITS);
    per_split = (long long)b->num_tokens * p->num_heads * (p->head_dim + 2) * (long long)sizeof(float);
    cap = MIN(cap, (long long)(ws->partial_bytes > 16 ? (ws->partial_bytes - 16) / per_split : 1));
    for (long long z = 1; z <= cap; z++) {
        long long blocks = pairs * z, waves = (blocks + wave - 1) / wave;
        double eff = (double)blocks / (double)(waves * wave);
        if (eff > best_eff) {
            best_eff = eff;
            best = z;
        }
        if (eff >= 0.9)
            break;
    }
    return (int)MAX(best, 1);
}

int attn_decode_launch(const attn_args &a, bool fp8, cudaStream_t s)
{
    const struct dec_variant *v = dec_pick(a.D, fp8);

    if (!v)
        return -EINVAL;
    v->launch(a, s);
    if (!CUDA_OK(cudaGetLastError()))
        return -EIO;
    if (a.num_splits > 1) {
        /* programmatic dependent launch: the merge's blocks are launched while the last
         * attention blocks run and wait (griddepcontrol.wait) for their results, which
         * takes the launch gap between the two kernels off the step */
        cudaLaunchConfig_t cfg = {};
        cudaLaunchAttribute attr[1];
        attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        attr[0].val.programmaticStreamSerializationAllowed = 1;
        cfg.gridDim = dim3((unsigned int)((long long)a.num_tokens * a.H));
        cfg.blockDim = dim3(DEC_REDUCE_THREADS);
        cfg.stream = s;
        cfg.attrs = attr;
        cfg.numAttrs = dec_pdl() ? 1 : 0;
        if (!CUDA_OK(cudaLaunchKernelEx(&cfg, attn_decode_reduce_kernel, a)))
            return -EIO;
    }
    return 0;
}
