/* The fixpoint tests of a population in one pass (nsr/kernels/classify.py): for every particle the
   fixpoint distance, the second-order distance and the largest weight, its class, and the sums the
   fixpoint scalars are made of. The same comparisons as nsr.fixpoints.classify_and_distance: a
   maximum of |x_i| is NaN when any x_i is NaN (as torch's amax), and a NaN compares false. */
#include <math.h>
#include <stdint.h>

enum { DIVERGENT = 0, ZERO = 1, NONTRIVIAL = 2, SECOND_ORDER = 3, OTHER = 4 };

/* max_i |a_i - b_i| over W numbers, NaN if any difference is NaN */
static inline float maxdiff(const float* a, const float* b, int64_t W) {
    float m = 0.0f;
    int nan = 0;
    for (int64_t i = 0; i < W; ++i) {
        const float d = fabsf(a[i] - b[i]);
        nan |= d != d;
        m = d > m ? d : m;
    }
    return nan ? NAN : m;
}

/* w, fw, ffw: [P, W]; loss: [P] or NULL. Writes classes [P] (int64) and distance [P] (NaN -> inf)
   when not NULL; counts[5] += each class's count; sums[4] += (sum of finite distances, how many,
   sum of finite losses, how many), in double, particle by particle. */
int nsr_fixpoint_tests(int64_t P, int64_t W, const float* w, const float* fw, const float* ffw, float eps,
                       const float* loss, int64_t* classes, float* distance, int64_t* counts, double* sums) {
    for (int64_t p = 0; p < P; ++p) {
        const float* wp = w + p * W;
        const float d = maxdiff(fw + p * W, wp, W);
        const float d2 = maxdiff(ffw + p * W, wp, W);
        float size = 0.0f;
        int nan = 0;
        for (int64_t i = 0; i < W; ++i) {
            const float a = fabsf(wp[i]);
            nan |= a != a;
            size = a > size ? a : size;
        }
        int c = d2 < eps ? SECOND_ORDER : OTHER;
        if (d < eps) c = (!nan && size < eps) ? ZERO : NONTRIVIAL;
        if (nan || isinf(size)) c = DIVERGENT;
        const float dist = (d != d || isinf(d)) ? INFINITY : d;
        if (classes) classes[p] = c;
        if (distance) distance[p] = dist;
        counts[c] += 1;
        if (isfinite(dist)) { sums[0] += (double)dist; sums[1] += 1.0; }
        if (loss && isfinite(loss[p])) { sums[2] += (double)loss[p]; sums[3] += 1.0; }
    }
    return 0;
}
