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
typedef float vfu __attribute__((vector_size(4 * LN), aligned(4), may_alias));   /* vf at any float */
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
/* t[r] (lane c: number c of particle r) -> t[c] (lane r: number c of particle r): log2(LN) stages,
   each swapping bit s of r with bit s of c by two-vector shuffles with constant masks */
#define TILE_M0(c, s) (((c) & (s)) ? LN + ((c) ^ (s)) : (c))   /* rows with bit s clear */
#define TILE_M1(c, s) (((c) & (s)) ? LN + (c) : ((c) ^ (s)))   /* rows with bit s set */
#if LN == 16
#define TILE_MASK(f, s) (vi){f(0, s), f(1, s), f(2, s), f(3, s), f(4, s), f(5, s), f(6, s), f(7, s), \
                             f(8, s), f(9, s), f(10, s), f(11, s), f(12, s), f(13, s), f(14, s), f(15, s)}
#else
#define TILE_MASK(f, s) (vi){f(0, s), f(1, s), f(2, s), f(3, s), f(4, s), f(5, s), f(6, s), f(7, s)}
#endif
#define TILE_STAGE(t, s) do { \
        const vi m0 = TILE_MASK(TILE_M0, s), m1 = TILE_MASK(TILE_M1, s); \
        for (int r = 0; r < LN; ++r) \
            if (!(r & (s))) { \
                const vf a = t[r], b = t[r | (s)]; \
                t[r] = __builtin_shuffle(a, b, m0); \
                t[r | (s)] = __builtin_shuffle(a, b, m1); \
            } \
    } while (0)

HOT void transpose_tile(vf* t) {
#if LN == 16
    TILE_STAGE(t, 8);
#endif
    TILE_STAGE(t, 4);
    TILE_STAGE(t, 2);
    TILE_STAGE(t, 1);
}

/* A full block's rows are contiguous: they move as tiles of LN x LN numbers, whole vectors each
   (a tile's row reading or writing past its end stays inside the block; writes there are made
   before the numbers that belong there: tiles from the last, rows in order), transposed in
   registers. The last row of a partial tile moves number by number. */
HOT void load_rows(vf* dst, const float* src, int64_t p0, int n, int64_t np) {
    if (np == LN) {
        const float* rows = src + p0 * (int64_t)n;
        const int64_t end = (int64_t)LN * n;
        for (int k0 = 0; k0 < n; k0 += LN) {
            const int w = n - k0 < LN ? n - k0 : LN;
            vf t[LN];
            for (int r = 0; r < LN; ++r) {
                const int64_t at = (int64_t)r * n + k0;
                if (at + LN <= end) t[r] = *(const vfu*)(rows + at);    /* one vector load */
                else { t[r] = (vf){0}; for (int c = 0; c < w; ++c) t[r][c] = rows[at + c]; }
            }
            transpose_tile(t);
            for (int c = 0; c < w; ++c) dst[k0 + c] = t[c];
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
    if (np == LN) {
        float* rows = dst + p0 * (int64_t)n;
        const int64_t end = (int64_t)LN * n;
        for (int k0 = (n - 1) / LN * LN; k0 >= 0; k0 -= LN) {
            const int w = n - k0 < LN ? n - k0 : LN;
            vf t[LN];
            for (int c = 0; c < LN; ++c) t[c] = c < w ? src[k0 + c] : (vf){0};
            transpose_tile(t);
            for (int r = 0; r < LN; ++r) {
                const int64_t at = (int64_t)r * n + k0;
                if (at + LN <= end) *(vfu*)(rows + at) = t[r];
                else for (int c = 0; c < w; ++c) rows[at + c] = t[r][c];
            }
        }
        return;
    }
    for (int l = 0; l < np; ++l) {
        float* row = dst + (p0 + l) * (int64_t)n;
        for (int k = 0; k < n; ++k) row[k] = src[k][l];
    }
}

/* ask for the genomes of the block at p0 (read) and for their rows of the output (written): a
   block's loads then find them in cache rather than wait for memory (a full block only) */
#define PREFETCH 16                    /* blocks ahead */
HOT void prefetch_block(const float* src, float* dst, int64_t p0, int n, int64_t P) {
    if (p0 + LN > P) return;
    const char* a = (const char*)(src + p0 * (int64_t)n);
    char* b = (char*)(dst + p0 * (int64_t)n);
    for (int64_t k = 0; k < (int64_t)LN * n * (int64_t)sizeof(float); k += 64) {
        __builtin_prefetch(a + k, 0);
        __builtin_prefetch(b + k, 1);
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

#if defined(__AVX512F__) && LN == 16
#include <immintrin.h>
/* A 16x16 tile of floats in 16 vectors, transposed in registers: r[l] = row l -> r[k] = column k,
   for k < n (the last rows of a 14-number genome need not be written). Moves particle blocks
   between rows and lanes (mlp_weightwise.h, rnn.c). */
HOT void transpose16(__m512* r, int n) {
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {                         /* r[4b + c], lane q: column 4q + c */
        r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
        r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
        r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
        r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
    }
    for (int c = 0; c < 4; ++c) {
        t[c] = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x88);
        t[4 + c] = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xdd);
        t[8 + c] = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x88);
        t[12 + c] = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xdd);
    }
    for (int c = 0; c < 4; ++c) {
        r[c] = _mm512_shuffle_f32x4(t[c], t[8 + c], 0x88);
        r[8 + c] = _mm512_shuffle_f32x4(t[c], t[8 + c], 0xdd);
        r[4 + c] = _mm512_shuffle_f32x4(t[4 + c], t[12 + c], 0x88);
        if (12 + c < n) r[12 + c] = _mm512_shuffle_f32x4(t[4 + c], t[12 + c], 0xdd);
    }
#endif

#endif
