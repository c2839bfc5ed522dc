/* Weightwise 4-2-2-1 self-training on full batches (one step of the genome's 14 samples per
   epoch), with code of its own: the shipped weightwise layout's hot path. Included by mlp.c; see
   nsr/kernels/mlp.py. The same bits as mlp.c's generic kernel (tests/test_kernel_variants.py). */
#ifndef NSR_MLP_WEIGHTWISE_H
#define NSR_MLP_WEIGHTWISE_H
#include "common.h"

/* ---- weightwise 4-2-2-1, full batch: one step of the genome's 14 samples per epoch ------------- */
/* The step sample by sample: one sample's activations and deltas and the 14 gradient sums stay in
   registers (the weights are read from L1), nothing is stored until the SGD update. Every
   operation, and the order of every sum, is mlp_step_grad's (the gradients are summed over the
   samples in order from +0): the same bits (tested). */

/* one sample: inputs (x0 = w_j, its ids x1..x3), target x0; adds its squared error to *acc and
   its gradient to G */
HOT void ww4221_sample(int act, const vf* w, const vf x0, const vf x1, const vf x2, const vf x3, vf* G, vf* acc) {
    const float c2 = (float)(2.0 / ((double)14 * (double)1));
    vf a0 = x0 * w[0], a1 = x0 * w[1];                          /* layer 0: K0 = w[0..8) [4][2] */
    a0 = a0 + x1 * w[2]; a1 = a1 + x1 * w[3];
    a0 = a0 + x2 * w[4]; a1 = a1 + x2 * w[5];
    a0 = a0 + x3 * w[6]; a1 = a1 + x3 * w[7];
    a0 = act_fwd(act, a0); a1 = act_fwd(act, a1);
    vf b0 = a0 * w[8], b1 = a0 * w[9];                          /* layer 1: K1 = w[8..12) [2][2] */
    b0 = b0 + a1 * w[10]; b1 = b1 + a1 * w[11];
    b0 = act_fwd(act, b0); b1 = act_fwd(act, b1);
    vf out = b0 * w[12];                                        /* layer 2: K2 = w[12..14) [2][1] */
    out = out + b1 * w[13];
    out = act_fwd(act, out);
    const vf e = out - x0;                                      /* the target is w_j itself */
    *acc = *acc + e * e;
    vf d = e * c2;
    d = act_bwd(act, d, out);
    G[12] = G[12] + b0 * d; G[13] = G[13] + b1 * d;
    vf d0 = d * w[12], d1 = d * w[13];
    d0 = act_bwd(act, d0, b0); d1 = act_bwd(act, d1, b1);
    G[8] = G[8] + a0 * d0; G[9] = G[9] + a0 * d1;
    G[10] = G[10] + a1 * d0; G[11] = G[11] + a1 * d1;
    vf c0 = d0 * w[8], c1 = d0 * w[10];
    c0 = c0 + d1 * w[9]; c1 = c1 + d1 * w[11];
    c0 = act_bwd(act, c0, a0); c1 = act_bwd(act, c1, a1);
    G[0] = G[0] + x0 * c0; G[1] = G[1] + x0 * c1;
    G[2] = G[2] + x1 * c0; G[3] = G[3] + x1 * c1;
    G[4] = G[4] + x2 * c0; G[5] = G[5] + x2 * c1;
    G[6] = G[6] + x3 * c0; G[7] = G[7] + x3 * c1;
}

/* the step on the samples of genomes gen [14] (ids idv [14][3], as mlp_samples makes them):
   gradient into g [14], returns the per-particle MSE */
HOT vf ww4221_step(int act, const vf* w, const vf* gen, const vf* idv, vf* g) {
    vf G[14];
    for (int k = 0; k < 14; ++k) G[k] = (vf){0};
    vf acc = {0};
    _Pragma("GCC unroll 14")  /* the 14 samples scheduled as one */
    for (int j = 0; j < 14; ++j) ww4221_sample(act, w, gen[j], idv[3 * j], idv[3 * j + 1], idv[3 * j + 2], G, &acc);
    for (int k = 0; k < 14; ++k) g[k] = G[k];
    return acc / ((float)14 * (float)1);
}

/* A full block of 16 particles' genomes (16 rows of 14 floats, contiguous) to and from lanes:
   the rows are transposed in registers (62 or 64 shuffles) instead of moved lane by lane. The same
   values as load_rows and store_rows. */
#if defined(__AVX512F__) && LN == 16
#include <immintrin.h>
#define WW_FAST_IO 1
}

HOT void ww_load_block(vf* dst, const float* rows) {          /* rows: [16, 14] */
    __m512 r[16];
    for (int l = 0; l < 16; ++l) r[l] = _mm512_maskz_loadu_ps(0x3fff, rows + 14 * l);
    transpose16(r, 14);
    for (int k = 0; k < 14; ++k) dst[k] = (vf)r[k];
}

HOT void ww_store_block(float* rows, const vf* src) {
    __m512 r[16];
    for (int k = 0; k < 14; ++k) r[k] = (__m512)src[k];
    r[14] = r[15] = _mm512_setzero_ps();
    transpose16(r, 16);
    for (int l = 0; l < 16; ++l) _mm512_mask_storeu_ps(rows + 14 * l, 0x3fff, r[l]);
}
#else
#define WW_FAST_IO 0
#endif

HOT void ww_load_rows(vf* dst, const float* src, int64_t p0, int64_t np) {
#if WW_FAST_IO
    if (np == LN) { ww_load_block(dst, src + p0 * 14); return; }
#endif
    load_rows(dst, src, p0, 14, np);
}

HOT void ww_store_rows(float* dst, const vf* src, int64_t p0, int64_t np) {
#if WW_FAST_IO
    if (np == LN) { ww_store_block(dst + p0 * 14, src); return; }
#endif
    store_rows(dst, src, p0, 14, np);
}

/* mlp_train_impl for weightwise 4-2-2-1 on full batches in sample order (one step per epoch), on
   the particle blocks of [p0, P); idv: the ids as vectors */
HOT void ww4221_blocks(int act, int64_t P, const float* w, float* w_out, float* vel, int vel_init, float* loss,
                       const float* src, int self_samples, const vf* idv, const float* lr, int lr_stride, float mom,
                       int epochs) {
    enum { W = 14 };
    vf wl[W], gl[W], vl[W], gen[W];
    for (int64_t p0 = 0; p0 < P; p0 += LN) {
        const int64_t np = P - p0 < LN ? P - p0 : LN;
        const vf lrl = load_lr(lr, lr_stride, p0, np);
        vf sl = {0};
        if (p0 + 3 * LN <= P)  /* the genomes two blocks ahead into L1, their output lines for writing */
            for (int c = 0; c < 14; ++c) {
                __builtin_prefetch((const char*)(w + (p0 + 2 * LN) * 14) + 64 * c, 0, 3);
                __builtin_prefetch((const char*)(w_out + (p0 + 2 * LN) * 14) + 64 * c, 1, 3);
            }
        ww_load_rows(wl, w, p0, np);
        int vinit = vel_init;
        if (vel && vel_init) ww_load_rows(vl, vel, p0, np);
        if (!self_samples) ww_load_rows(gen, src, p0, np);
        for (int e = 0; e < epochs; ++e) {
            /* self-training: the samples are the epoch-start genome, wl itself until the update */
            vf total = {0};
            total = total + ww4221_step(act, wl, self_samples ? wl : gen, idv, gl);
            sgd(W, wl, gl, vel ? vl : NULL, &vinit, lrl, mom);
            sl = total / (float)1;
        }
        ww_store_rows(w_out, wl, p0, np);
        if (vel) ww_store_rows(vel, vl, p0, np);
        if (np == LN) memcpy(loss + p0, &sl, sizeof sl);
        else for (int l = 0; l < np; ++l) loss[p0 + l] = sl[l];
    }
}

HOT int ww4221_train(int act, int64_t P, const float* w, float* w_out, float* vel, int vel_init, float* loss,
                     const float* src, int self_samples, const float* ids, const float* lr, int lr_stride, float mom,
                     int epochs) {
    vf idv[14 * 3];
    for (int s = 0; s < 14; ++s)
        for (int c = 0; c < 3; ++c) idv[s * 3 + c] = (vf){0} + ids[s * 3 + c];
    if (!vel && self_samples && lr_stride == 0)   /* self-training without momentum: its own code */
        ww4221_blocks(act, P, w, w_out, NULL, 0, loss, NULL, 1, idv, lr, 0, 0.0f, epochs);
    else
        ww4221_blocks(act, P, w, w_out, vel, vel_init, loss, src, self_samples, idv, lr, lr_stride, mom, epochs);
    return 0;
}

#endif
