/* The aggregating replicator's samples in the native kernels: each chunk of a genome reduced to one
   number by its mean or its max, bit for bit as torch computes `b[:, s:e].mean(1)` and
   `b[:, s:e].amax(1)` on contiguous float32 CPU rows (see nsr/kernels/aggregates.py). Lanes are
   particles, so every lane follows torch's own order of operations on its row:

   - mean: ATen's cascade sum (SumKernel.cpp) into a zeroed output, then a division by the chunk's
     length. Rows shorter than torch's vector width V: four interleaved partial sums (row_sum),
     the remainder added to the first, then the other three. Longer rows: V such sums, one per
     vector lane, over the whole vectors of the row, then the remainder and the V lane sums added
     in order to zero. Where both terms of a sum are NaN, torch's binary keeps the accumulator's
     (x86 keeps the first operand's), except when the lane sums are added, where it keeps the lane
     sum's: C leaves the order of the operands to the compiler, so agg_add says it.
   - max: ATen's vectorised reduction (Reduce.h, binary_kernel_reduce_vec) from -inf: rows of at
     least 4 V numbers are first reduced as 4 vectors (maximum: a tie keeps the later number, a
     NaN makes NaN), then lane by lane; the rest one by one (std::max: a tie keeps the earlier
     number). Any NaN gives the canonical quiet NaN. Only the sign of a zero depends on the order.

   The description of an aggregation, `agg` (int32): {aggregator (0 mean, 1 max), V, A, bounds[0],
   ..., bounds[A]}: chunk a is the genome's positions bounds[a] .. bounds[a + 1] - 1. */
#ifndef NSR_AGGREGATES_H
#define NSR_AGGREGATES_H
#include "common.h"

enum { AGG_MEAN = 0, AGG_MAX = 1 };

/* a + b, a NaN result being a's NaN (quieted) where a is one, else b's, else the sum's (x86's rule
   for its first operand a) */
HOT vf agg_add(vf a, vf b) {
    const vf r = a + b;
    const vi na = a != a, nb = b != b, quiet = (vi){0} + 0x00400000;
    return (vf)((((vi)a | quiet) & na) | (((vi)b | quiet) & nb & ~na) | ((vi)r & ~(na | nb)));
}

static int agg_ceil_log2(int64_t x) {  /* ATen's utils::CeilLog2 */
    if (x <= 2) return 1;
    int b = 0;
    for (uint64_t v = (uint64_t)(x - 1); v; v >>= 1) ++b;
    return b;
}

/* a + b; `careful`: by agg_add (a constant where inlined). Without a NaN among the numbers summed
   every NaN of a sum is the machine's one default NaN, whatever the order of the operands. */
HOT vf agg_plus(vf a, vf b, int careful) { return careful ? agg_add(a, b) : a + b; }

/* ATen's row_sum of rows of at least 64 numbers: 4 interleaved partial sums accumulated in levels
   of 2^lp rows (multi_row_sum) */
static vf agg_row_sum_levels(const vf* x, int64_t n, int64_t st) {
    const int64_t rows = n / 4;
    int lp = agg_ceil_log2(rows) / 4;
    if (lp < 4) lp = 4;
    const int64_t step = (int64_t)1 << lp, mask = step - 1;
    vf acc[4][4];
    for (int j = 0; j < 4; ++j)
        for (int k = 0; k < 4; ++k) acc[j][k] = (vf){0};
    int64_t i = 0;
    while (i + step <= rows) {
        for (int64_t r = 0; r < step; ++r, ++i)
            for (int k = 0; k < 4; ++k) acc[0][k] = agg_add(acc[0][k], x[(4 * i + k) * st]);
        for (int j = 1; j < 4; ++j) {
            for (int k = 0; k < 4; ++k) { acc[j][k] = agg_add(acc[j][k], acc[j - 1][k]); acc[j - 1][k] = (vf){0}; }
            if (i & (mask << (j * lp))) break;
        }
    }
    for (; i < rows; ++i)
        for (int k = 0; k < 4; ++k) acc[0][k] = agg_add(acc[0][k], x[(4 * i + k) * st]);
    for (int j = 1; j < 4; ++j)
        for (int k = 0; k < 4; ++k) acc[0][k] = agg_add(acc[0][k], acc[j][k]);
    vf s = acc[0][0];
    for (int64_t r = rows * 4; r < n; ++r) s = agg_add(s, x[r * st]);
    for (int k = 1; k < 4; ++k) s = agg_add(s, acc[0][k]);
    return s;
}

/* ATen's row_sum: the n numbers x[0], x[st], x[2 st], ... as 4 interleaved partial sums, the
   remainder added to the first, then the other three. Below 16 rows of 4 no level of
   multi_row_sum closes, and its adds of the unused levels' zeros change no bit (a sum started
   at +0 is never -0, and its NaNs are quiet already): plain running sums. */
HOT vf agg_row_sum(const vf* x, int64_t n, int64_t st, int careful) {
    const int64_t rows = n / 4;
    if (rows >= 16) return agg_row_sum_levels(x, n, st);
    vf a0 = (vf){0}, a1 = (vf){0}, a2 = (vf){0}, a3 = (vf){0};
    for (int64_t i = 0; i < rows; ++i) {
        a0 = agg_plus(a0, x[(4 * i) * st], careful);
        a1 = agg_plus(a1, x[(4 * i + 1) * st], careful);
        a2 = agg_plus(a2, x[(4 * i + 2) * st], careful);
        a3 = agg_plus(a3, x[(4 * i + 3) * st], careful);
    }
    for (int64_t r = rows * 4; r < n; ++r) a0 = agg_plus(a0, x[r * st], careful);
    return agg_plus(agg_plus(agg_plus(a0, a1, careful), a2, careful), a3, careful);
}

/* torch's float32 mean of the n numbers x[0 .. n-1] (a contiguous row), torch vectors of V floats.
   (The sum's final add to the zeroed output changes no bit: the sum is never -0.) */
HOT vf agg_mean(const vf* x, int n, int V, int careful) {
    vf s;
    if (n >= V) {                                          /* vectorized_inner_sum */
        const int nv = n / V;
        s = (vf){0};
        for (int k = nv * V; k < n; ++k) s = agg_plus(s, x[k], careful);
        for (int t = 0; t < V; ++t)                        /* then the V lane sums, each first */
            s = agg_plus(agg_row_sum(x + t, nv, V, careful), s, careful);
    } else {                                               /* scalar_inner_sum */
        s = agg_row_sum(x, n, 1, careful);
    }
    return s / (float)n;
}

HOT vi agg_isnan(vf a) { return a != a; }

/* Vectorized<float> maximum: the larger, a tie keeps b (NaNs are set by the caller) */
HOT vf agg_vec_max(vf a, vf b) {
    const vi gt = a > b;
    return (vf)(((vi)a & gt) | ((vi)b & ~gt));
}

/* max_impl, std::max: the larger, a tie keeps a (NaNs are set by the caller) */
HOT vf agg_max_impl(vf a, vf b) {
    const vi lt = a < b;
    return (vf)(((vi)b & lt) | ((vi)a & ~lt));
}

/* torch's float32 amax of the n numbers x[0 .. n-1] (a contiguous row), torch vectors of V floats.
   Any NaN gives the canonical NaN, so the folds below need only say which of two equal numbers
   (+0 and -0) stays. */
HOT vf agg_max(const vf* x, int n, int V) {
    vi nan = agg_isnan(x[0]);
    for (int k = 1; k < n; ++k) nan = nan | agg_isnan(x[k]);
    const int count = n / (4 * V);
    vf out = (vf){0} - INFINITY;                           /* the output starts at the lower bound */
    if (count > 0) {                                       /* reduction128, torch lane by lane */
        vf b = (vf){0};
        for (int t = 0; t < V; ++t) {
            vf a0 = x[t], a1 = x[V + t], a2 = x[2 * V + t], a3 = x[3 * V + t];
            for (int i = 1; i < count; ++i) {
                const vf* r = x + 4 * i * V + t;
                a0 = agg_vec_max(a0, r[0]); a1 = agg_vec_max(a1, r[V]);
                a2 = agg_vec_max(a2, r[2 * V]); a3 = agg_vec_max(a3, r[3 * V]);
            }
            const vf c = agg_vec_max(agg_vec_max(a0, a1), agg_vec_max(a2, a3));
            b = t ? agg_max_impl(b, c) : c;
        }
        out = agg_max_impl(out, b);
    } else {
        out = x[0];                                        /* max_impl(-inf, x[0]), NaNs aside */
    }
    for (int k = count > 0 ? count * 4 * V : 1; k < n; ++k) out = agg_max_impl(out, x[k]);
    const vf qnan = (vf){0} + __builtin_nanf("");
    return (vf)(((vi)qnan & nan) | ((vi)out & ~nan));
}

/* the aggregates out[0 .. A-1] of the genomes g[W] (lanes: particles). The means are summed
   plainly first: without a NaN among them no NaN was among their numbers, so they are torch's;
   else they are summed again with agg_add. */
HOT void agg_samples(const int* agg, const vf* g, vf* out) {
    const int op = agg[0], V = agg[1], A = agg[2];
    const int* bounds = agg + 3;
    if (op == AGG_MAX) {
        for (int a = 0; a < A; ++a) out[a] = agg_max(g + bounds[a], bounds[a + 1] - bounds[a], V);
        return;
    }
    vi nan = (vi){0};
    for (int a = 0; a < A; ++a) {
        out[a] = agg_mean(g + bounds[a], bounds[a + 1] - bounds[a], V, 0);
        nan = nan | agg_isnan(out[a]);
    }
    const vi none = (vi){0};
    if (memcmp(&nan, &none, sizeof nan))                   /* a NaN in some lane */
        for (int a = 0; a < A; ++a) out[a] = agg_mean(g + bounds[a], bounds[a + 1] - bounds[a], V, 1);
}

/* whether agg describes A chunks that tile a genome of W weights */
static int agg_valid(const int* agg, int W, int A) {
    if (!agg || (agg[0] != AGG_MEAN && agg[0] != AGG_MAX) || agg[1] < 1 || agg[2] != A)
        return 0;
    const int* bounds = agg + 3;
    if (bounds[0] != 0 || bounds[A] != W) return 0;
    for (int a = 0; a < A; ++a)
        if (bounds[a + 1] <= bounds[a]) return 0;
    return 1;
}
#endif
