/* Shared pieces of nsr's native kernels: SIMD lanes of particles, activations, particle blocks,
   the SGD update. Included by every kernel family's .c file (see nsr/kernels/build.py). */
#ifndef NSR_COMMON_H
#define NSR_COMMON_H
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__AVX512F__)
#define LN 16                          /* particles per block: one vector lane each */
#else
#define LN 8
#endif
#define MAXL 64                        /* layers */
typedef float vf __attribute__((vector_size(4 * LN)));   /* one number of LN particles */
typedef int32_t vi __attribute__((vector_size(4 * LN)));
#define HOT static inline __attribute__((always_inline))

enum { LINEAR = 0, TANH = 1, SIGMOID = 2, RELU = 3 };

HOT vf act_fwd(int act, vf z) {
    switch (act) {
    case TANH: for (int l = 0; l < LN; ++l) z[l] = tanhf(z[l]); return z;
    case SIGMOID: for (int l = 0; l < LN; ++l) z[l] = 1.0f / (1.0f + expf(-z[l])); return z;
    case RELU: return (vf)((vi)z & ~(z < 0.0f));          /* NaN stays NaN, like torch.relu */
    default: return z;
    }
}

/* delta * d act / d pre-activation, written in terms of the output y (as activation_grad) */
HOT vf act_bwd(int act, vf d, vf y) {
    const vf one = (vf){0} + 1.0f;
    switch (act) {
    case TANH: return d * (1.0f - y * y);
    case SIGMOID: return d * (y * (1.0f - y));
    case RELU: return d * (vf)((vi)one & (y > 0.0f));
    default: return d;
    }
}

static void* valloc(size_t n) { return aligned_alloc(64, (n ? n : 1) * sizeof(vf)); }

/* ---- particle blocks: rows of particle-first arrays [P, n] to and from lanes ------------------- */
HOT void load_rows(vf* dst, const float* src, int64_t p0, int n, int64_t np) {
    if (np == LN) {                                       /* a full block: each vector built in a register */
        const float* rows = src + p0 * (int64_t)n;       /* (never from LN narrow stores: no stalled loads) */
        for (int k = 0; k < n; ++k) {
            vf t;
            for (int l = 0; l < LN; ++l) t[l] = rows[(int64_t)l * n + k];
            dst[k] = t;
        }
        return;
    }
    memset(dst, 0, sizeof(vf) * n);                      /* missing particles compute on zeros */
    for (int l = 0; l < np; ++l) {
        const float* row = src + (p0 + l) * (int64_t)n;   /* one particle's row: contiguous reads */
        for (int k = 0; k < n; ++k) dst[k][l] = row[k];
    }
}

HOT void store_rows(float* dst, const vf* src, int64_t p0, int n, int64_t np) {
    for (int l = 0; l < np; ++l) {
        float* row = dst + (p0 + l) * (int64_t)n;
        for (int k = 0; k < n; ++k) row[k] = src[k][l];
    }
}

/* torch.optim.SGD (dampening 0, no Nesterov), as nsr.training.sgd_step computes it */
HOT void sgd(int W, vf* w, const vf* g, vf* v, int* vinit, vf lr, float mom) {
    if (v) {
        if (*vinit) { for (int k = 0; k < W; ++k) v[k] = v[k] * mom + g[k]; }
        else { for (int k = 0; k < W; ++k) v[k] = g[k]; *vinit = 1; }
        g = v;
    }
    for (int k = 0; k < W; ++k) w[k] = w[k] - lr * g[k];
}

HOT vf load_lr(const float* lr, int lr_stride, int64_t p0, int64_t np) {
    vf v;
    for (int l = 0; l < LN; ++l) v[l] = lr[(l < np ? p0 + l : p0) * (int64_t)lr_stride];
    return v;
}

#endif
