/* The recurrent family (stacked simple RNNs): see nsr/kernels/rnn.py. */
#include "common.h"

/* ---- stacked simple RNNs: layer k has units u[k], input kernel [in, u] then recurrent [u, u] ---- */
typedef struct {
    int NL, W, act, sumu, maxu;
    int in[MAXL], u[MAXL], koff[MAXL], roff[MAXL], hoff[MAXL + 1];
} rnn_t;

HOT int rnn_init(rnn_t* r, int NL, const int* units, int act) {
    if (NL < 1 || NL > MAXL) return 1;
    r->NL = NL; r->act = act; r->W = 0; r->sumu = 1; r->maxu = 1;
    r->hoff[0] = 0;                                /* the input sequence (one feature) */
    for (int k = 0; k < NL; ++k) {
        r->in[k] = k ? units[k - 1] : 1;
        r->u[k] = units[k];
        r->koff[k] = r->W; r->W += r->in[k] * units[k];
        r->roff[k] = r->W; r->W += units[k] * units[k];
        r->hoff[k + 1] = r->sumu; r->sumu += units[k];
        if (units[k] > r->maxu) r->maxu = units[k];
    }
    return units[NL - 1] == 1 ? 0 : 2;
}

/* NB particle blocks are interleaved in every array of the kernels below: number e of block b at
   [e * NB + b]. Each block's operations and their order are those of a lone block (NB = 1); the
   blocks' independent chains of dependent multiplies and adds are issued side by side, so that
   they overlap in the pipeline (the recurrence is bound by latency, not by throughput). */
#define NBMAX 4
#define UNROLL_LAYERS _Pragma("GCC unroll 4")  /* the shipped layout's 3 layers: widths as constants */
#define AT(p, e) (p)[(int64_t)(e) * NB + b]

/* forward of one sequence: h[t * sumu] holds input x_t; layer k's h_t at h[t * sumu + hoff[k+1]] */
HOT void rnn_fwd(const rnn_t* r, const vf* w, vf* h, int T, int NB) {
    const int su = r->sumu;
    UNROLL_LAYERS
    for (int k = 0; k < r->NL; ++k) {
        const int din = r->in[k], u = r->u[k];
        const vf* K = w + (int64_t)r->koff[k] * NB;
        const vf* R = w + (int64_t)r->roff[k] * NB;
        for (int t = 0; t < T; ++t) {
            const vf* in = h + ((int64_t)t * su + r->hoff[k]) * NB;
            vf* out = h + ((int64_t)t * su + r->hoff[k + 1]) * NB;
            const vf* prev = t ? h + ((int64_t)(t - 1) * su + r->hoff[k + 1]) * NB : NULL;
            for (int v = 0; v < u; ++v) {
                vf z[NBMAX];
                for (int b = 0; b < NB; ++b) z[b] = AT(in, 0) * AT(K, v);
                for (int i = 1; i < din; ++i)
                    for (int b = 0; b < NB; ++b) z[b] = z[b] + AT(in, i) * AT(K, i * u + v);
                if (prev)
                    for (int j = 0; j < u; ++j)
                        for (int b = 0; b < NB; ++b) z[b] = z[b] + AT(prev, j) * AT(R, j * u + v);
                for (int b = 0; b < NB; ++b) AT(out, v) = act_fwd(r->act, z[b]);
            }
        }
    }
}

/* loss (into loss[NB]) and gradient of one step on B sequences of length T: h[j * T * sumu] holds
   sequence j, y[j * T + t] its targets; dp and dl [T][maxu] and carry [maxu] are scratch */
HOT void rnn_step_grad(const rnn_t* r, const vf* w, vf* h, const vf* y, int B, int T, vf* g, vf* dp, vf* dl,
                       vf* carry, vf* loss, int NB) {
    const int su = r->sumu, mu = r->maxu;
    const float c2 = (float)(2.0 / ((double)B * (double)T));
    vf acc[NBMAX];
    for (int b = 0; b < NB; ++b) acc[b] = (vf){0};
    for (int k = 0; k < r->W * NB; ++k) g[k] = (vf){0};
    for (int j = 0; j < B; ++j) rnn_fwd(r, w, h + (int64_t)j * T * su * NB, T, NB);
    for (int j = 0; j < B; ++j) {
        vf* hj = h + (int64_t)j * T * su * NB;
        for (int t = 0; t < T; ++t)                         /* dL/d output of the top layer */
            for (int b = 0; b < NB; ++b) {
                const vf e = AT(hj, (int64_t)t * su + r->hoff[r->NL]) - AT(y, (int64_t)j * T + t);
                acc[b] = acc[b] + e * e;
                AT(dl, t * mu) = e * c2;
            }
        UNROLL_LAYERS
        for (int k = r->NL - 1; k >= 0; --k) {
            const int din = r->in[k], u = r->u[k];
            const vf* K = w + (int64_t)r->koff[k] * NB;
            const vf* R = w + (int64_t)r->roff[k] * NB;
            vf* GK = g + (int64_t)r->koff[k] * NB;
            vf* GR = g + (int64_t)r->roff[k] * NB;
            for (int t = T - 1; t >= 0; --t) {
                const vf* out = hj + ((int64_t)t * su + r->hoff[k + 1]) * NB;
                vf* d = dp + (int64_t)t * mu * NB;
                for (int v = 0; v < u; ++v)
                    for (int b = 0; b < NB; ++b)
                        AT(d, v) = act_bwd(r->act, t < T - 1 ? AT(dl, t * mu + v) + AT(carry, v) : AT(dl, t * mu + v),
                                           AT(out, v));
                if (t)
                    for (int i = 0; i < u; ++i) {          /* through h_t = ... + h_{t-1} @ R */
                        vf z[NBMAX];
                        for (int b = 0; b < NB; ++b) z[b] = AT(d, 0) * AT(R, i * u);
                        for (int v = 1; v < u; ++v)
                            for (int b = 0; b < NB; ++b) z[b] = z[b] + AT(d, v) * AT(R, i * u + v);
                        for (int b = 0; b < NB; ++b) AT(carry, i) = z[b];
                    }
            }
            for (int i = 0; i < din; ++i)                  /* kernel gradients, summed over time in order */
                for (int v = 0; v < u; ++v) {
                    vf z[NBMAX];
                    for (int b = 0; b < NB; ++b) z[b] = AT(GK, i * u + v);
                    for (int t = 0; t < T; ++t) {
                        const vf* in = hj + ((int64_t)t * su + r->hoff[k]) * NB;
                        const vf* d = dp + (int64_t)t * mu * NB;
                        for (int b = 0; b < NB; ++b) z[b] = z[b] + AT(in, i) * AT(d, v);
                    }
                    for (int b = 0; b < NB; ++b) AT(GK, i * u + v) = z[b];
                }
            for (int i = 0; i < u; ++i)
                for (int v = 0; v < u; ++v) {
                    vf z[NBMAX];
                    for (int b = 0; b < NB; ++b) z[b] = AT(GR, i * u + v);
                    for (int t = 1; t < T; ++t) {
                        const vf* prev = hj + ((int64_t)(t - 1) * su + r->hoff[k + 1]) * NB;
                        const vf* d = dp + (int64_t)t * mu * NB;
                        for (int b = 0; b < NB; ++b) z[b] = z[b] + AT(prev, i) * AT(d, v);
                    }
                    for (int b = 0; b < NB; ++b) AT(GR, i * u + v) = z[b];
                }
            if (k)
                for (int t = 0; t < T; ++t) {              /* dL/d inputs: the layer below's outputs */
                    const vf* d = dp + (int64_t)t * mu * NB;
                    for (int i = 0; i < din; ++i) {
                        vf z[NBMAX];
                        for (int b = 0; b < NB; ++b) z[b] = AT(d, 0) * AT(K, i * u);
                        for (int v = 1; v < u; ++v)
                            for (int b = 0; b < NB; ++b) z[b] = z[b] + AT(d, v) * AT(K, i * u + v);
                        for (int b = 0; b < NB; ++b) AT(dl, t * mu + i) = z[b];
                    }
                }
        }
    }
    for (int b = 0; b < NB; ++b) loss[b] = acc[b] / ((float)B * (float)T);
}

/* common.h's sgd on NB interleaved blocks, block b with its learning rates lr[b] */
HOT void sgd_blocks(int W, int NB, vf* w, const vf* g, vf* v, int* vinit, const vf* lr, float mom) {
    if (v) {
        if (*vinit) { for (int k = 0; k < W * NB; ++k) v[k] = v[k] * mom + g[k]; }
        else { for (int k = 0; k < W * NB; ++k) v[k] = g[k]; *vinit = 1; }
        g = v;
    }
    for (int k = 0; k < W; ++k)
        for (int b = 0; b < NB; ++b) AT(w, k) = AT(w, k) - lr[b] * AT(g, k);
}

/* A full block of the shipped layout (16 particles' 17-number genomes: 16 rows, contiguous) to and
   from lanes: numbers 0..15 of the 16 rows as one 16x16 tile transposed in registers, number 16 by
   one gather (scatter) of the rows' last numbers; the same values as load_rows and store_rows */
#if defined(__AVX512F__) && LN == 16
#include <immintrin.h>
#define RNN_FAST_IO 1
}

HOT __m512i rnn_last_index(void) {                   /* row l's number 16: float 17 l + 16 */
    return _mm512_add_epi32(_mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                               _mm512_set1_epi32(17)), _mm512_set1_epi32(16));
}

HOT void rnn17_load(vf* dst, const float* rows, int NB, int b) {   /* rows: [16, 17] */
    __m512 r[16];
    for (int l = 0; l < 16; ++l) r[l] = _mm512_loadu_ps(rows + 17 * l);
    const __m512 last = _mm512_i32gather_ps(rnn_last_index(), rows, 4);
    transpose16(r, 16);
    for (int k = 0; k < 16; ++k) AT(dst, k) = (vf)r[k];
    AT(dst, 16) = (vf)last;
}

HOT void rnn17_store(float* rows, const vf* src, int NB, int b) {
    __m512 r[16];
    for (int k = 0; k < 16; ++k) r[k] = (__m512)AT(src, k);
    transpose16(r, 16);
    for (int l = 0; l < 16; ++l) _mm512_storeu_ps(rows + 17 * l, r[l]);
    _mm512_i32scatter_ps(rows, rnn_last_index(), (__m512)AT(src, 16), 4);
}
#else
#define RNN_FAST_IO 0
#endif

/* rows of block b (at pb, npb particles; none: zeros) into, and out of, the interleaved array dst */
HOT void load_block(vf* dst, vf* tmp, const float* src, int64_t pb, int n, int64_t npb, int NB, int b) {
#if RNN_FAST_IO
    if (n == 17 && npb == LN) { rnn17_load(dst, src + pb * 17, NB, b); return; }
#endif
    load_rows(tmp, src, pb, n, npb > 0 ? npb : 0);
    for (int k = 0; k < n; ++k) AT(dst, k) = tmp[k];
}

HOT void store_block(float* dst, vf* tmp, const vf* src, int64_t pb, int n, int64_t npb, int NB, int b) {
#if RNN_FAST_IO
    if (n == 17 && npb == LN) { rnn17_store(dst + pb * 17, src, NB, b); return; }
#endif
    for (int k = 0; k < n; ++k) tmp[k] = AT(src, k);
    store_rows(dst, tmp, pb, n, npb);
}

/* epochs of SGD: mode 0 sequences X, Y [P, S, T]; mode 1 the genome src (or the block's own weights
   when self_samples) as the one sequence (S = 1, T = W); NB particle blocks at a time */
HOT int rnn_train_impl(const rnn_t* r, int NB, int64_t P, const float* w, float* w_out, float* vel, int vel_init, float* loss, int mode, const float* src, int self_samples, const float* X, const float* Y, int S, int T, const int64_t* order, int batch, const float* lr, int lr_stride, float mom, int epochs) {
    const int W = r->W, su = r->sumu, mu = r->maxu;
    if (mode == 1 && (S != 1 || T != W)) return 2;
    if (batch < 1 || batch > S) batch = S;
    const int B = batch;
    const int n = W > S * T ? W : S * T;
    vf *wl = valloc(W * NB), *gl = valloc(W * NB), *vl = valloc(W * NB), *xs = valloc((size_t)S * T * NB);
    vf *ys = valloc((size_t)S * T * NB), *h = valloc((size_t)B * T * su * NB), *yb = valloc((size_t)B * T * NB);
    vf *dp = valloc((size_t)T * mu * NB), *dl = valloc((size_t)T * mu * NB), *carry = valloc(mu * NB);
    vf *tmp = valloc(n);
    int rc = (!wl || !gl || !vl || !xs || !ys || !h || !yb || !dp || !dl || !carry || !tmp) ? 3 : 0;
    for (int64_t p0 = 0; p0 < P && !rc; p0 += (int64_t)NB * LN) {
        int64_t pb[NBMAX], npb[NBMAX], q[NBMAX];      /* block b: first particle, count, lane source */
        vf lrl[NBMAX], sl[NBMAX];
        for (int b = 0; b < NB; ++b) {
            pb[b] = p0 + (int64_t)b * LN;
            npb[b] = P - pb[b] < LN ? (P - pb[b] > 0 ? P - pb[b] : 0) : LN;
            q[b] = npb[b] ? pb[b] : p0;               /* an empty block reads block 0's first particle */
            lrl[b] = load_lr(lr, lr_stride, q[b], npb[b] ? npb[b] : 1);
            sl[b] = (vf){0};
            prefetch_block(w, w_out, pb[b] + (int64_t)PREFETCH * LN, W, P);
            load_block(wl, tmp, w, pb[b], W, npb[b], NB, b);
        }
        int vinit = vel_init;
        for (int b = 0; b < NB; ++b) {
            if (vel && vel_init) load_block(vl, tmp, vel, pb[b], W, npb[b], NB, b);
            if (mode == 1 && !self_samples) { load_block(xs, tmp, src, pb[b], W, npb[b], NB, b); }
            if (mode == 0) { load_block(xs, tmp, X, pb[b], S * T, npb[b], NB, b); load_block(ys, tmp, Y, pb[b], S * T, npb[b], NB, b); }
        }
        if (mode == 1 && !self_samples) memcpy(ys, xs, sizeof(vf) * W * NB);
        for (int e = 0; e < epochs; ++e) {
            if (mode == 1 && self_samples) { memcpy(xs, wl, sizeof(vf) * W * NB); memcpy(ys, wl, sizeof(vf) * W * NB); }
            int steps = 0;
            vf total[NBMAX];
            for (int b = 0; b < NB; ++b) total[b] = (vf){0};
            for (int t0 = 0; t0 < S; t0 += B) {
                const int nseq = S - t0 < B ? S - t0 : B;
                for (int j = 0; j < nseq && !order; ++j)  /* sequence t0 + j of every lane: whole vectors */
                    for (int t = 0; t < T; ++t)
                        for (int b = 0; b < NB; ++b) {
                            AT(h, ((int64_t)j * T + t) * su) = AT(xs, (int64_t)(t0 + j) * T + t);
                            AT(yb, j * T + t) = AT(ys, (int64_t)(t0 + j) * T + t);
                        }
                for (int j = 0; j < nseq && order; ++j)   /* sequence j of the step, per lane */
                    for (int b = 0; b < NB; ++b)
                        for (int l = 0; l < LN; ++l) {
                            const int64_t s = order[(l < npb[b] ? pb[b] + l : q[b]) * (int64_t)S + t0 + j];
                            for (int t = 0; t < T; ++t) {
                                AT(h, ((int64_t)j * T + t) * su)[l] = AT(xs, s * T + t)[l];
                                AT(yb, j * T + t)[l] = AT(ys, s * T + t)[l];
                            }
                        }
                vf sloss[NBMAX];
                rnn_step_grad(r, wl, h, yb, nseq, T, gl, dp, dl, carry, sloss, NB);
                for (int b = 0; b < NB; ++b) total[b] = total[b] + sloss[b];
                sgd_blocks(W, NB, wl, gl, vel ? vl : NULL, &vinit, lrl, mom);
                steps += 1;
            }
            for (int b = 0; b < NB; ++b) sl[b] = total[b] / (float)steps;
        }
        for (int b = 0; b < NB; ++b) {
            store_block(w_out, tmp, wl, pb[b], W, npb[b], NB, b);
            if (vel) store_block(vel, tmp, vl, pb[b], W, npb[b], NB, b);
            for (int l = 0; l < npb[b]; ++l) loss[pb[b] + l] = sl[b][l];
        }
    }
    free(wl); free(gl); free(vl); free(xs); free(ys); free(h); free(yb); free(dp); free(dl); free(carry); free(tmp);
    return rc;
}

/* The same kernel compiled for the shipped layout (recurrent (2, 2): units 2, 2, 1) with the units,
   the activation and, for its own genome as the sequence, the sequence length as constants. The
   arithmetic and its order are the generic kernel's, and it runs particle blocks interleaved four at a time
   (the generic kernel one at a time): the same bits (tested). */
#define RNN_ARGS int64_t P, const float* w, float* w_out, float* vel, int vel_init, float* loss, int mode, \
    const float* src, int self_samples, const float* X, const float* Y, int S, int T, const int64_t* order, \
    int batch, const float* lr, int lr_stride, float mom, int epochs
#define RNN_PASS P, w, w_out, vel, vel_init, loss, mode, src, self_samples, X, Y, S, T, order, batch, lr, lr_stride, \
    mom, epochs
#ifndef RNN_NB
#define RNN_NB 4                       /* particle blocks interleaved (2 and 3: slower, measured) */
#endif
#define RNN_SPECIALISED(name, act) \
    static int name(RNN_ARGS) { \
        rnn_t r; const int units[3] = {2, 2, 1}; \
        rnn_init(&r, 3, units, act); \
        if (mode == 1 && S == 1 && T == 17) { S = 1; T = 17; batch = 1; return rnn_train_impl(&r, RNN_NB, RNN_PASS); } \
        return rnn_train_impl(&r, RNN_NB, RNN_PASS); \
    }
RNN_SPECIALISED(rnn_221_linear, LINEAR)
RNN_SPECIALISED(rnn_221_tanh, TANH)
RNN_SPECIALISED(rnn_221_sigmoid, SIGMOID)
RNN_SPECIALISED(rnn_221_relu, RELU)

static int rnn_train_generic(const rnn_t* r, RNN_ARGS) { return rnn_train_impl(r, 1, RNN_PASS); }

int nsr_rnn_train(int64_t P, int NL, const int* units, int act, const float* w, float* w_out, float* vel,
                  int vel_init, float* loss,
                  int mode, const float* src, int self_samples, const float* X, const float* Y, int S, int T,
                  const int64_t* order, int batch, const float* lr, int lr_stride, float mom, int epochs,
                  int specialised) {
    rnn_t r;
    if (rnn_init(&r, NL, units, act) || act < 0 || act > 3) return 1;
    typedef int (*train_fn)(RNN_ARGS);
    static const train_fn t221[4] = {rnn_221_linear, rnn_221_tanh, rnn_221_sigmoid, rnn_221_relu};
    if (specialised && NL == 3 && units[0] == 2 && units[1] == 2 && units[2] == 1) return t221[act](RNN_PASS);
    return rnn_train_generic(&r, RNN_PASS);
}

static int rnn_loss_grad_impl(const rnn_t* r, int64_t P, const float* w, const float* X, const float* Y, int B, int T, float* loss, float* grad) {
    const int W = r->W, su = r->sumu, mu = r->maxu;
    vf *wl = valloc(W), *gl = valloc(W), *xs = valloc((size_t)B * T), *h = valloc((size_t)B * T * su);
    vf *yb = valloc((size_t)B * T), *dp = valloc((size_t)T * mu), *dl = valloc((size_t)T * mu), *carry = valloc(mu);
    int rc = (!wl || !gl || !xs || !h || !yb || !dp || !dl || !carry) ? 3 : 0;
    for (int64_t p0 = 0; p0 < P && !rc; p0 += LN) {
        const int64_t np = P - p0 < LN ? P - p0 : LN;
        load_rows(wl, w, p0, W, np);
        load_rows(xs, X, p0, B * T, np);
        load_rows(yb, Y, p0, B * T, np);
        for (int j = 0; j < B * T; ++j) h[(int64_t)j * su] = xs[j];
        vf sl;
        rnn_step_grad(r, wl, h, yb, B, T, gl, dp, dl, carry, &sl, 1);
        store_rows(grad, gl, p0, W, np);
        for (int l = 0; l < np; ++l) loss[p0 + l] = sl[l];
    }
    free(wl); free(gl); free(xs); free(h); free(yb); free(dp); free(dl); free(carry);
    return rc;
}

int nsr_rnn_loss_grad(int64_t P, int NL, const int* units, int act, const float* w, const float* X,
                      const float* Y, int B, int T, float* loss, float* grad) {
    rnn_t r;
    if (rnn_init(&r, NL, units, act)) return 1;
    return rnn_loss_grad_impl(&r, P, w, X, Y, B, T, loss, grad);
}

static int rnn_apply_impl(const rnn_t* r, int64_t P, const float* a, const float* b, int T, float* out) {
    const int W = r->W, su = r->sumu;
    vf *wl = valloc(W), *xs = valloc(T), *h = valloc((size_t)T * su), *res = valloc(T);
    int rc = (!wl || !xs || !h || !res) ? 3 : 0;
    for (int64_t p0 = 0; p0 < P && !rc; p0 += LN) {
        const int64_t np = P - p0 < LN ? P - p0 : LN;
        load_rows(wl, a, p0, W, np);
        load_rows(xs, b, p0, T, np);
        for (int t = 0; t < T; ++t) h[(int64_t)t * su] = xs[t];
        rnn_fwd(r, wl, h, T, 1);
        for (int t = 0; t < T; ++t) res[t] = h[(int64_t)t * su + r->hoff[r->NL]];
        store_rows(out, res, p0, T, np);
    }
    free(wl); free(xs); free(h); free(res);
    return rc;
}

int nsr_rnn_apply(int64_t P, int NL, const int* units, int act, const float* a, const float* b, int T, float* out) {
    rnn_t r;
    if (rnn_init(&r, NL, units, act)) return 1;
    return rnn_apply_impl(&r, P, a, b, T, out);
}
