/* sampler.c — the CPU reference sampler (engine/sampler.h has the order of operations).
 * One row at a time; the CPU backend runs rows in
 * parallel. Randomness comes only from sample_exponential(seed, counter, token), so a seed
 * gives the same tokens alone or in any batch, here and on the GPU. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/sampler.h"
#include "engine/base/util.h"

/* log Σ exp(x), in double; -inf when every x is -inf. */
static double log_sum_exp(const float *x, int n)
{
    float m = -INFINITY;
    double s = 0.0;

    for (int i = 0; i < n; i++)
        m = MAX(m, x[i]);
    if (m == -INFINITY)
        return -INFINITY;
    for (int i = 0; i < n; i++)
        s += exp((double)x[i] - m);
    return m + log(s);
}

/* The n largest raw logits as logprobs, descending, lowest id first among equals. */
static void top_logprobs(const float *logits, int vocab, int n, double lse, struct sample_result *out)
{
    int count = 0;

    for (int i = 0; i < vocab; i++) {
        float v = logits[i];
        int j;

        if (count == n && !(v > out->top_logprobs[n - 1]))
            continue;
        /* a later id never passes an equal earlier one */
        for (j = MIN(count, n - 1); j > 0 && v > out->top_logprobs[j - 1]; j--) {
            out->top_logprobs[j] = out->top_logprobs[j - 1];
            out->top_ids[j] = out->top_ids[j - 1];
        }
        out->top_logprobs[j] = v;
        out->top_ids[j] = i;
        count = MIN(count + 1, n);
    }
    for (int j = 0; j < count; j++)
        out->top_logprobs[j] = (float)(out->top_logprobs[j] - lse);
    out->num_top = count;
}

static int32_t argmax(const float *x, int n)
{
    int32_t best = 0;

    for (int i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}

static bool in_vocab(int32_t id, int vocab)
{
    return id >= 0 && id < vocab;
}

/* Repetition over prompt + output (each distinct token once), then frequency and presence
 * over output. mark[vocab] is scratch whose contents do not matter on entry. */
static void apply_penalties(float *l, int vocab, const struct sample_row *row, float *mark)
{
    const int32_t *lists[2] = { row->prompt, row->output };
    int lens[2] = { row->num_prompt, row->num_output };
    float r = row->repetition_penalty;

    if (r > 0.0f && r != 1.0f) {
        for (int s = 0; s < 2; s++)
            for (int i = 0; i < lens[s]; i++)
                if (in_vocab(lists[s][i], vocab))
                    mark[lists[s][i]] = 1.0f;
        for (int s = 0; s < 2; s++)
            for (int i = 0; i < lens[s]; i++) {
                int32_t t = lists[s][i];
                if (in_vocab(t, vocab) && mark[t] == 1.0f) {
                    l[t] = l[t] > 0.0f ? l[t] / r : l[t] * r;
                    mark[t] = 0.0f;
                }
            }
    }
    if (row->frequency_penalty != 0.0f || row->presence_penalty != 0.0f) {
        for (int i = 0; i < row->num_output; i++)
            if (in_vocab(row->output[i], vocab))
                mark[row->output[i]] = 0.0f;
        for (int i = 0; i < row->num_output; i++)
            if (in_vocab(row->output[i], vocab))
                mark[row->output[i]] += 1.0f;
        for (int i = 0; i < row->num_output; i++) {
            int32_t t = row->output[i];
            if (in_vocab(t, vocab) && mark[t] > 0.0f) {
                l[t] -= row->frequency_penalty * mark[t] + row->presence_penalty;
                mark[t] = 0.0f;
            }
        }
    }
}

static void swap_f(float *a, float *b)
{
    float t = *a;
    *a = *b;
    *b = t;
}

/* The k-th largest (k >= 1) of a[0..n), which it reorders: quickselect with a three-way
 * partition, so runs of equal values cost nothing. */
static float kth_largest(float *a, int n, int k)
{
    int lo = 0, hi = n - 1, want = k - 1;

    while (lo < hi) {
        float pivot = a[lo + (hi - lo) / 2];
        int lt = lo, i = lo, gt = hi;

        /* [lo, lt) > pivot, [lt, i) == pivot, (gt, hi] < pivot */
        while (i <= gt) {
            if (a[i] > pivot)
                swap_f(&a[lt++], &a[i++]);
            else if (a[i] < pivot)
                swap_f(&a[i], &a[gt--]);
            else
                i++;
        }
        if (want < lt)
            hi = lt - 1;
        else if (want > gt)
            lo = gt + 1;
        else
            return pivot;
    }
    return a[want];
}

static int cmp_desc(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

/* The cut of top_p over the kept probabilities p[i] >= thr (p unnormalized, max 1): the
 * crossing value *vstar and how many tokens of exactly that value stay (*need, taken in
 * id order). Only tokens at or above a power-of-two threshold that already holds the mass
 * are sorted: a bucket pass over the exponents finds that threshold. */
static void top_p_cut(const float *p, int vocab, float thr, float top_p, float *tmp,
                      float *vstar, int *need)
{
    double mass[64] = { 0 }, total = 0.0, target, cum = 0.0;
    float t = 0.0f;
    int m = 0, first = 0;

    *vstar = 0.0f;
    *need = vocab;
    for (int i = 0; i < vocab; i++) {
        int e;

        if (!(p[i] > 0.0f) || p[i] < thr)
            continue;
        frexpf(p[i], &e);               /* p in [2^(e-1), 2^e); p <= 1 so e <= 1 */
        mass[MIN(63, 1 - e)] += p[i];
        total += p[i];
    }
    target = (double)top_p * total;
    for (int b = 0; b < 64; b++) {
        cum += mass[b];
        if (cum >= target) {
            t = b < 63 ? ldexpf(1.0f, -b) : 0.0f;
            break;
        }
    }
    for (int i = 0; i < vocab; i++)
        if (p[i] > 0.0f && p[i] >= thr && p[i] >= t)
            tmp[m++] = p[i];
    qsort(tmp, m, sizeof *tmp, cmp_desc);
    cum = 0.0;
    for (int j = 0; j < m; j++) {
        if (j == 0 || tmp[j] != tmp[j - 1])
            first = j;
        cum += tmp[j];
        if (cum >= target) {
            *vstar = tmp[j];
            *need = j - first + 1;
            return;
        }
    }
    /* rounding kept the prefix just short of the target: keep everything collected */
    *vstar = t;
    *need = vocab;
}

/* Temperature, min_p, top_k, top_p, then the exponential race over what is kept. l is
 * overwritten with unnormalized probabilities; tmp[vocab] is scratch. */
static int32_t sample_random(float *l, int vocab, const struct sample_row *row, float *tmp)
{
    float lmax = -INFINITY, inv_t = 1.0f / row->temperature, thr, vstar = 0.0f, best_s = -1.0f;
    int survivors = 0, need = vocab;
    int32_t best = -1;

    for (int i = 0; i < vocab; i++)
        lmax = MAX(lmax, l[i]);
    if (lmax == -INFINITY)
        return argmax(l, vocab);          /* everything banned: nothing to draw from */
    for (int i = 0; i < vocab; i++)
        l[i] = expf((l[i] - lmax) * inv_t);
    thr = row->min_p;                     /* times max(p), which is exactly 1 here */

    if (row->top_k > 0) {
        for (int i = 0; i < vocab; i++)
            if (l[i] > 0.0f && l[i] >= thr)
                tmp[survivors++] = l[i];
        if (row->top_k < survivors)
            thr = MAX(thr, kth_largest(tmp, survivors, row->top_k));
    }
    if (row->top_p < 1.0f)
        top_p_cut(l, vocab, thr, row->top_p, tmp, &vstar, &need);

    for (int32_t i = 0; i < vocab; i++) {
        float s;

        if (!(l[i] > 0.0f) || l[i] < thr || l[i] < vstar)
            continue;
        if (l[i] == vstar && need-- <= 0)
            continue;
        s = l[i] / sample_exponential(row->seed, row->counter, (uint32_t)i);
        if (s > best_s) {
            best_s = s;
            best = i;
        }
    }
    return best >= 0 ? best : argmax(l, vocab);
}

void sampler_ids_to_mask(const int32_t *ids, int n, uint32_t *mask, int words)
{
    memset(mask, 0, (size_t)words * sizeof *mask);
    for (int i = 0; i < n; i++)
        if (ids[i] >= 0 && ids[i] < 32 * words)
            mask[ids[i] >> 5] |= 1u << (ids[i] & 31);
}

int sampler_sample_row(const float *logits, int vocab, const struct sample_row *row,
                       struct sample_result *out, float *scratch)
{
    float *l = scratch, *tmp = scratch + vocab;
    double lse = 0.0;

    memset(out, 0, sizeof *out);
    if (row->num_logprobs >= 0) {
        lse = log_sum_exp(logits, vocab);
        if (row->num_logprobs > 0)
            top_logprobs(logits, vocab, MIN(row->num_logprobs, SAMPLE_MAX_LOGPROBS), lse, out);
    }
    memcpy(l, logits, (size_t)vocab * sizeof *l);
    if (row->num_allowed_ids > 0) {
        /* keep the allowed logits aside, blank the row, put them back */
        for (int i = 0; i < row->num_allowed_ids; i++)
            tmp[i] = in_vocab(row->allowed_ids[i], vocab) ? l[row->allowed_ids[i]] : -INFINITY;
        for (int i = 0; i < vocab; i++)
            l[i] = -INFINITY;
        for (int i = 0; i < row->num_allowed_ids && i < vocab; i++)
            if (in_vocab(row->allowed_ids[i], vocab))
                l[row->allowed_ids[i]] = tmp[i];
    }
    for (int i = 0; i < row->num_bias; i++)
        if (in_vocab(row->bias_ids[i], vocab))
            l[row->bias_ids[i]] += row->bias[i];
    apply_penalties(l, vocab, row, tmp);
    for (int i = 0; i < row->num_banned; i++)
        if (in_vocab(row->banned[i], vocab))
            l[row->banned[i]] = -INFINITY;
    if (row->allowed)
        for (int i = 0; i < vocab; i++)
            if (!(row->allowed[i >> 5] >> (i & 31) & 1))
                l[i] = -INFINITY;

    if (row->temperature < SAMPLE_GREEDY_EPS)
        out->token = argmax(l, vocab);
    else
        out->token = sample_random(l, vocab, row, tmp);
    if (row->num_logprobs >= 0)
        out->logprob = (float)(logits[out->token] - lse);
    return 0;
}
