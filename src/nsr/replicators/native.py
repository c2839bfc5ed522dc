"""Native fused kernels: whole epochs of self-training and self-application in C, for float32 CPU
populations.

A replicator network has a few dozen weights, so the work of one particle fits in registers.
These kernels run a block of 8 particles side by side (16 with AVX-512; one SIMD lane each,
with GCC/clang vector types): a particle's weights and samples are loaded once, a whole epoch
(every step: forward, backpropagation, SGD update) runs in place, and the new weights are
written back: about 100 bytes of memory traffic per particle and epoch, where a tensor-op
formulation writes and reads dozens of full-size temporaries. (``torch.compile`` of the same
epoch, fully fused, was measured here: one to five minutes to compile, then 2-5x slower.)

The C source below is compiled on first use with the system's C compiler (``$CC``, else ``cc``,
``gcc`` or ``clang``; a few seconds) into a cache folder (``$NSR_CACHE_DIR``, else
``~/.cache/nsr``) and loaded with ctypes. Without a compiler, or with ``NSR_COMPILE=0``, nsr runs
the eager torch kernels of :mod:`nsr.replicators.fast` instead (same results to float rounding,
tested), and says why once (a ``RuntimeWarning``).

Arithmetic: sums over samples run sequentially, the update is ``torch.optim.SGD``'s rule, and
contraction to FMA is off, so training through the epoch kernel and stepping through
:func:`loss_grad` plus :func:`nsr.training.sgd_step` give the same bits (tested). A particle's
numbers never depend on its neighbours or on the number of threads.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import torch

ACT_CODES = {"linear": 0, "tanh": 1, "sigmoid": 2, "relu": 3}

SOURCE = r"""
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
    if (np < LN) memset(dst, 0, sizeof(vf) * n);         /* missing particles compute on zeros */
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

/* ---- MLP networks: L dense layers dims[0] -> ... -> dims[L], no biases ------------------------ */
typedef struct {
    int L, W, act, I, O, sumd, maxd;
    int dims[MAXL + 1], koff[MAXL], aoff[MAXL + 1];
} mlp_t;

static int mlp_init(mlp_t* m, int L, const int* dims, int act) {
    if (L < 1 || L > MAXL) return 1;
    m->L = L; m->act = act; m->W = 0; m->sumd = 0; m->maxd = 0;
    for (int i = 0; i <= L; ++i) {
        m->dims[i] = dims[i];
        m->aoff[i] = m->sumd;
        m->sumd += dims[i];
        if (dims[i] > m->maxd) m->maxd = dims[i];
    }
    for (int i = 0; i < L; ++i) { m->koff[i] = m->W; m->W += dims[i] * dims[i + 1]; }
    m->I = dims[0]; m->O = dims[L];
    return 0;
}

/* forward of B samples: h[j * sumd] holds sample j's inputs; every layer's outputs are stored after
   them. Loops run over the samples innermost, so a kernel weight stays in a register. */
HOT void mlp_fwd(const mlp_t* m, const vf* w, vf* h, int B) {
    const int sd = m->sumd;
    for (int k = 0; k < m->L; ++k) {
        const int din = m->dims[k], dout = m->dims[k + 1], ai = m->aoff[k], ao = m->aoff[k + 1];
        const vf* K = w + m->koff[k];
        for (int o = 0; o < dout; ++o) {
            const vf k0 = K[o];
            for (int j = 0; j < B; ++j) h[j * sd + ao + o] = h[j * sd + ai] * k0;
            for (int i = 1; i < din; ++i) {
                const vf ki = K[i * dout + o];
                for (int j = 0; j < B; ++j) h[j * sd + ao + o] = h[j * sd + ao + o] + h[j * sd + ai + i] * ki;
            }
            if (m->act != LINEAR)
                for (int j = 0; j < B; ++j) h[j * sd + ao + o] = act_fwd(m->act, h[j * sd + ao + o]);
        }
    }
}

/* loss and gradient of one step on B samples: h[j * sumd] holds sample j's inputs, y[j * O] its
   targets. Loops run over the samples innermost (a kernel weight stays in a register); g receives
   the gradient, summed over the samples in order; returns the per-particle MSE. d0, d1: [B][maxd] */
HOT vf mlp_step_grad(const mlp_t* m, const vf* w, vf* h, const vf* y, int B, vf* g, vf* d0, vf* d1) {
    const int sd = m->sumd, O = m->O, md = m->maxd;
    const float c2 = (float)(2.0 / ((double)B * (double)O));
    mlp_fwd(m, w, h, B);
    vf acc = {0};
    vf* delta = d0;
    vf* other = d1;
    for (int j = 0; j < B; ++j)
        for (int o = 0; o < O; ++o) {
            const vf e = h[j * sd + m->aoff[m->L] + o] - y[j * O + o];
            acc = acc + e * e;
            delta[j * md + o] = e * c2;                     /* dL/d output */
        }
    for (int k = m->L - 1; k >= 0; --k) {                 /* backward */
        const int din = m->dims[k], dout = m->dims[k + 1], ai = m->aoff[k], ao = m->aoff[k + 1];
        const vf* K = w + m->koff[k];
        vf* G = g + m->koff[k];
        if (m->act != LINEAR)
            for (int j = 0; j < B; ++j)
                for (int o = 0; o < dout; ++o) delta[j * md + o] = act_bwd(m->act, delta[j * md + o], h[j * sd + ao + o]);
        for (int i = 0; i < din; ++i)
            for (int o = 0; o < dout; ++o) {
                vf s = (vf){0};
                for (int j = 0; j < B; ++j) s = s + h[j * sd + ai + i] * delta[j * md + o];
                G[i * dout + o] = s;
            }
        if (k) {
            for (int i = 0; i < din; ++i) {
                const vf k0 = K[i * dout];
                for (int j = 0; j < B; ++j) other[j * md + i] = delta[j * md] * k0;
                for (int o = 1; o < dout; ++o) {
                    const vf ko = K[i * dout + o];
                    for (int j = 0; j < B; ++j) other[j * md + i] = other[j * md + i] + delta[j * md + o] * ko;
                }
            }
            vf* t = delta; delta = other; other = t;
        }
    }
    return acc / ((float)B * (float)O);
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

/* the samples of the block: mode 0 from X [P, S, I] and Y [P, S, O]; mode 1 weightwise, from the
   genomes `genome` and the id table ids [S, 3] */
HOT void mlp_samples(const mlp_t* m, int mode, int S, int64_t p0, int64_t np, const float* X, const float* Y,
                        const vf* genome, const float* ids, vf* xs, vf* ys) {
    const int I = m->I, O = m->O;
    if (mode == 1) {
        for (int s = 0; s < S; ++s) {
            xs[s * I] = genome[s];
            for (int c = 0; c < 3; ++c) xs[s * I + 1 + c] = (vf){0} + ids[s * 3 + c];
            if (ys) ys[s] = genome[s];
        }
        return;
    }
    load_rows(xs, X, p0, S * I, np);
    if (ys) load_rows(ys, Y, p0, S * O, np);
}

HOT vf load_lr(const float* lr, int lr_stride, int64_t p0, int64_t np) {
    vf v;
    for (int l = 0; l < LN; ++l) v[l] = lr[(l < np ? p0 + l : p0) * (int64_t)lr_stride];
    return v;
}

/* the samples of one step: t0.. in sample order, or per particle from order [P, S] */
HOT void gather(const vf* xs, const vf* ys, int n_in, int n_out, int stride, vf* h, vf* yb, int b, int t0,
                   const int64_t* order, int S, int64_t p0, int64_t np) {
    for (int j = 0; j < b; ++j) {
        vf* hj = h + (int64_t)j * stride;
        if (!order) {
            for (int i = 0; i < n_in; ++i) hj[i] = xs[(int64_t)(t0 + j) * n_in + i];
            for (int o = 0; o < n_out; ++o) yb[j * n_out + o] = ys[(int64_t)(t0 + j) * n_out + o];
            continue;
        }
        for (int l = 0; l < LN; ++l) {
            const int64_t s = order[(l < np ? p0 + l : p0) * (int64_t)S + t0 + j];
            for (int i = 0; i < n_in; ++i) hj[i][l] = xs[s * n_in + i][l];
            for (int o = 0; o < n_out; ++o) yb[j * n_out + o][l] = ys[s * n_out + o][l];
        }
    }
}

static int mlp_train_impl(const mlp_t* m, int64_t P, const float* w, float* w_out, float* vel, int vel_init, float* loss, int mode, const float* src, int self_samples, const float* X, const float* Y, int S, const float* ids, const int64_t* order, int batch, const float* lr, int lr_stride, float mom, int epochs) {
    const int W = m->W, I = m->I, O = m->O;
    if (mode == 1 && (I != 4 || O != 1 || S != W)) return 2;
    if (batch < 1 || batch > S) batch = S;
    const int B = batch;
    vf *wl = valloc(W), *gl = valloc(W), *vl = valloc(W), *gen = valloc(W), *xs = valloc(S * I), *ys = valloc(S * O);
    vf *h = valloc((size_t)B * m->sumd), *yb = valloc((size_t)B * O);
    vf *d0 = valloc((size_t)B * m->maxd), *d1 = valloc((size_t)B * m->maxd);
    int rc = (!wl || !gl || !vl || !gen || !xs || !ys || !h || !yb || !d0 || !d1) ? 3 : 0;
    for (int64_t p0 = 0; p0 < P && !rc; p0 += LN) {
        const int64_t np = P - p0 < LN ? P - p0 : LN;
        const vf lrl = load_lr(lr, lr_stride, p0, np);
        vf sl = {0};
        load_rows(wl, w, p0, W, np);
        int vinit = vel_init;
        if (vel && vel_init) load_rows(vl, vel, p0, W, np);
        if (mode == 1 && !self_samples) load_rows(gen, src, p0, W, np);
        for (int e = 0; e < epochs; ++e) {
            if (mode == 1 && self_samples) memcpy(gen, wl, sizeof(vf) * W);   /* epoch-start snapshot */
            if (e == 0 || (mode == 1 && self_samples)) mlp_samples(m, mode, S, p0, np, X, Y, gen, ids, xs, ys);
            int steps = 0;
            vf total = {0};
            for (int t = 0; t < S; t += B) {
                const int b = S - t < B ? S - t : B;
                gather(xs, ys, I, O, m->sumd, h, yb, b, t, order, S, p0, np);
                total = total + mlp_step_grad(m, wl, h, yb, b, gl, d0, d1);
                sgd(W, wl, gl, vel ? vl : NULL, &vinit, lrl, mom);
                steps += 1;
            }
            sl = total / (float)steps;
        }
        store_rows(w_out, wl, p0, W, np);
        if (vel) store_rows(vel, vl, p0, W, np);
        for (int l = 0; l < np; ++l) loss[p0 + l] = sl[l];
    }
    free(wl); free(gl); free(vl); free(gen); free(xs); free(ys); free(h); free(yb); free(d0); free(d1);
    return rc;
}

int nsr_mlp_train(int64_t P, int L, const int* dims, int act, const float* w, float* w_out, float* vel, int vel_init,
                  float* loss, int mode, const float* src, int self_samples, const float* X, const float* Y,
                  int S, const float* ids, const int64_t* order, int batch, const float* lr, int lr_stride,
                  float mom, int epochs) {
    mlp_t m;
    if (mlp_init(&m, L, dims, act)) return 1;
    return mlp_train_impl(&m, P, w, w_out, vel, vel_init, loss, mode, src, self_samples, X, Y, S, ids, order, batch, lr, lr_stride, mom, epochs);
}

/* loss [P] and gradient [P, W] of one step on X [P, B, I], Y [P, B, O] */
static int mlp_loss_grad_impl(const mlp_t* m, int64_t P, const float* w, const float* X, const float* Y, int B, float* loss, float* grad) {
    const int W = m->W, I = m->I, O = m->O;
    vf *wl = valloc(W), *gl = valloc(W), *xs = valloc((size_t)B * I), *ys = valloc((size_t)B * O);
    vf *h = valloc((size_t)B * m->sumd), *yb = valloc((size_t)B * O);
    vf *d0 = valloc((size_t)B * m->maxd), *d1 = valloc((size_t)B * m->maxd);
    int rc = (!wl || !gl || !xs || !ys || !h || !yb || !d0 || !d1) ? 3 : 0;
    for (int64_t p0 = 0; p0 < P && !rc; p0 += LN) {
        const int64_t np = P - p0 < LN ? P - p0 : LN;
        load_rows(wl, w, p0, W, np);
        load_rows(xs, X, p0, B * I, np);
        load_rows(ys, Y, p0, B * O, np);
        gather(xs, ys, I, O, m->sumd, h, yb, B, 0, NULL, B, p0, np);
        const vf sl = mlp_step_grad(m, wl, h, yb, B, gl, d0, d1);
        store_rows(grad, gl, p0, W, np);
        for (int l = 0; l < np; ++l) loss[p0 + l] = sl[l];
    }
    free(wl); free(gl); free(xs); free(ys); free(h); free(yb); free(d0); free(d1);
    return rc;
}

int nsr_mlp_loss_grad(int64_t P, int L, const int* dims, int act, const float* w, const float* X,
                      const float* Y, int B, float* loss, float* grad) {
    mlp_t m;
    if (mlp_init(&m, L, dims, act)) return 1;
    return mlp_loss_grad_impl(&m, P, w, X, Y, B, loss, grad);
}

/* outputs [P, S*O] of networks a on samples: mode 0 X [P, S, I]; mode 1 weightwise samples of b */
static int mlp_apply_impl(const mlp_t* m, int64_t P, const float* a, int mode, const float* b, const float* X, int S, const float* ids, float* out) {
    const int W = m->W, I = m->I, O = m->O;
    if (mode == 1 && (I != 4 || O != 1 || S != W)) return 2;
    vf *wl = valloc(W), *gen = valloc(W), *xs = valloc((size_t)S * I), *h = valloc((size_t)S * m->sumd);
    vf *res = valloc((size_t)S * O);
    int rc = (!wl || !gen || !xs || !h || !res) ? 3 : 0;
    for (int64_t p0 = 0; p0 < P && !rc; p0 += LN) {
        const int64_t np = P - p0 < LN ? P - p0 : LN;
        load_rows(wl, a, p0, W, np);
        if (mode == 1) load_rows(gen, b, p0, W, np);
        mlp_samples(m, mode, S, p0, np, X, NULL, gen, ids, xs, NULL);
        for (int s = 0; s < S; ++s)
            for (int i = 0; i < I; ++i) h[(int64_t)s * m->sumd + i] = xs[s * I + i];
        mlp_fwd(m, wl, h, S);
        for (int s = 0; s < S; ++s)
            for (int o = 0; o < O; ++o) res[s * O + o] = h[(int64_t)s * m->sumd + m->aoff[m->L] + o];
        store_rows(out, res, p0, S * O, np);
    }
    free(wl); free(gen); free(xs); free(h); free(res);
    return rc;
}

int nsr_mlp_apply(int64_t P, int L, const int* dims, int act, const float* a, int mode, const float* b,
                  const float* X, int S, const float* ids, float* out) {
    mlp_t m;
    if (mlp_init(&m, L, dims, act)) return 1;
    return mlp_apply_impl(&m, P, a, mode, b, X, S, ids, out);
}

/* ---- stacked simple RNNs: layer k has units u[k], input kernel [in, u] then recurrent [u, u] ---- */
typedef struct {
    int NL, W, act, sumu, maxu;
    int in[MAXL], u[MAXL], koff[MAXL], roff[MAXL], hoff[MAXL + 1];
} rnn_t;

static int rnn_init(rnn_t* r, int NL, const int* units, int act) {
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

/* forward of one sequence: h[t * sumu] holds input x_t; layer k's h_t at h[t * sumu + hoff[k+1]] */
HOT void rnn_fwd(const rnn_t* r, const vf* w, vf* h, int T) {
    const int su = r->sumu;
    for (int k = 0; k < r->NL; ++k) {
        const int din = r->in[k], u = r->u[k];
        const vf* K = w + r->koff[k];
        const vf* R = w + r->roff[k];
        for (int t = 0; t < T; ++t) {
            const vf* in = h + (int64_t)t * su + r->hoff[k];
            vf* out = h + (int64_t)t * su + r->hoff[k + 1];
            const vf* prev = t ? h + (int64_t)(t - 1) * su + r->hoff[k + 1] : NULL;
            for (int v = 0; v < u; ++v) {
                vf z = in[0] * K[v];
                for (int i = 1; i < din; ++i) z = z + in[i] * K[i * u + v];
                if (prev)
                    for (int j = 0; j < u; ++j) z = z + prev[j] * R[j * u + v];
                out[v] = act_fwd(r->act, z);
            }
        }
    }
}

/* loss and gradient of one step on B sequences of length T: h[j * T * sumu] holds sequence j,
   y[j * T + t] its targets; dp and dl [T][maxu] and carry [maxu] are scratch */
HOT vf rnn_step_grad(const rnn_t* r, const vf* w, vf* h, const vf* y, int B, int T, vf* g, vf* dp, vf* dl,
                        vf* carry) {
    const int su = r->sumu, mu = r->maxu;
    const float c2 = (float)(2.0 / ((double)B * (double)T));
    vf acc = {0};
    for (int k = 0; k < r->W; ++k) g[k] = (vf){0};
    for (int j = 0; j < B; ++j) rnn_fwd(r, w, h + (int64_t)j * T * su, T);
    for (int j = 0; j < B; ++j) {
        vf* hj = h + (int64_t)j * T * su;
        for (int t = 0; t < T; ++t) {                       /* dL/d output of the top layer */
            const vf e = hj[(int64_t)t * su + r->hoff[r->NL]] - y[(int64_t)j * T + t];
            acc = acc + e * e;
            dl[t * mu] = e * c2;
        }
        for (int k = r->NL - 1; k >= 0; --k) {
            const int din = r->in[k], u = r->u[k];
            const vf* K = w + r->koff[k];
            const vf* R = w + r->roff[k];
            vf* GK = g + r->koff[k];
            vf* GR = g + r->roff[k];
            for (int t = T - 1; t >= 0; --t) {
                const vf* out = hj + (int64_t)t * su + r->hoff[k + 1];
                vf* d = dp + (int64_t)t * mu;
                for (int v = 0; v < u; ++v)
                    d[v] = act_bwd(r->act, t < T - 1 ? dl[t * mu + v] + carry[v] : dl[t * mu + v], out[v]);
                if (t)
                    for (int i = 0; i < u; ++i) {          /* through h_t = ... + h_{t-1} @ R */
                        vf z = d[0] * R[i * u];
                        for (int v = 1; v < u; ++v) z = z + d[v] * R[i * u + v];
                        carry[i] = z;
                    }
            }
            for (int t = 0; t < T; ++t) {                  /* kernel gradients, summed over time in order */
                const vf* in = hj + (int64_t)t * su + r->hoff[k];
                const vf* d = dp + (int64_t)t * mu;
                for (int i = 0; i < din; ++i)
                    for (int v = 0; v < u; ++v) GK[i * u + v] = GK[i * u + v] + in[i] * d[v];
                if (t) {
                    const vf* prev = hj + (int64_t)(t - 1) * su + r->hoff[k + 1];
                    for (int i = 0; i < u; ++i)
                        for (int v = 0; v < u; ++v) GR[i * u + v] = GR[i * u + v] + prev[i] * d[v];
                }
            }
            if (k)
                for (int t = 0; t < T; ++t) {              /* dL/d inputs: the layer below's outputs */
                    const vf* d = dp + (int64_t)t * mu;
                    for (int i = 0; i < din; ++i) {
                        vf z = d[0] * K[i * u];
                        for (int v = 1; v < u; ++v) z = z + d[v] * K[i * u + v];
                        dl[t * mu + i] = z;
                    }
                }
        }
    }
    return acc / ((float)B * (float)T);
}

/* epochs of SGD: mode 0 sequences X, Y [P, S, T]; mode 1 the genome src (or the block's own weights
   when self_samples) as the one sequence (S = 1, T = W) */
static int rnn_train_impl(const rnn_t* r, int64_t P, const float* w, float* w_out, float* vel, int vel_init, float* loss, int mode, const float* src, int self_samples, const float* X, const float* Y, int S, int T, const int64_t* order, int batch, const float* lr, int lr_stride, float mom, int epochs) {
    const int W = r->W, su = r->sumu, mu = r->maxu;
    if (mode == 1 && (S != 1 || T != W)) return 2;
    if (batch < 1 || batch > S) batch = S;
    const int B = batch;
    vf *wl = valloc(W), *gl = valloc(W), *vl = valloc(W), *xs = valloc((size_t)S * T), *ys = valloc((size_t)S * T);
    vf *h = valloc((size_t)B * T * su), *yb = valloc((size_t)B * T), *dp = valloc((size_t)T * mu);
    vf *dl = valloc((size_t)T * mu), *carry = valloc(mu);
    int rc = (!wl || !gl || !vl || !xs || !ys || !h || !yb || !dp || !dl || !carry) ? 3 : 0;
    for (int64_t p0 = 0; p0 < P && !rc; p0 += LN) {
        const int64_t np = P - p0 < LN ? P - p0 : LN;
        const vf lrl = load_lr(lr, lr_stride, p0, np);
        vf sl = {0};
        load_rows(wl, w, p0, W, np);
        int vinit = vel_init;
        if (vel && vel_init) load_rows(vl, vel, p0, W, np);
        if (mode == 1 && !self_samples) { load_rows(xs, src, p0, W, np); memcpy(ys, xs, sizeof(vf) * W); }
        if (mode == 0) { load_rows(xs, X, p0, S * T, np); load_rows(ys, Y, p0, S * T, np); }
        for (int e = 0; e < epochs; ++e) {
            if (mode == 1 && self_samples) { memcpy(xs, wl, sizeof(vf) * W); memcpy(ys, wl, sizeof(vf) * W); }
            int steps = 0;
            vf total = {0};
            for (int t0 = 0; t0 < S; t0 += B) {
                const int b = S - t0 < B ? S - t0 : B;
                for (int j = 0; j < b; ++j)               /* sequence j of the step, per lane */
                    for (int l = 0; l < LN; ++l) {
                        const int64_t s = order ? order[(l < np ? p0 + l : p0) * (int64_t)S + t0 + j] : t0 + j;
                        for (int t = 0; t < T; ++t) {
                            h[((int64_t)j * T + t) * su][l] = xs[s * T + t][l];
                            yb[j * T + t][l] = ys[s * T + t][l];
                        }
                    }
                total = total + rnn_step_grad(r, wl, h, yb, b, T, gl, dp, dl, carry);
                sgd(W, wl, gl, vel ? vl : NULL, &vinit, lrl, mom);
                steps += 1;
            }
            sl = total / (float)steps;
        }
        store_rows(w_out, wl, p0, W, np);
        if (vel) store_rows(vel, vl, p0, W, np);
        for (int l = 0; l < np; ++l) loss[p0 + l] = sl[l];
    }
    free(wl); free(gl); free(vl); free(xs); free(ys); free(h); free(yb); free(dp); free(dl); free(carry);
    return rc;
}

int nsr_rnn_train(int64_t P, int NL, const int* units, int act, const float* w, float* w_out, float* vel,
                  int vel_init, float* loss,
                  int mode, const float* src, int self_samples, const float* X, const float* Y, int S, int T,
                  const int64_t* order, int batch, const float* lr, int lr_stride, float mom, int epochs) {
    rnn_t r;
    if (rnn_init(&r, NL, units, act)) return 1;
    return rnn_train_impl(&r, P, w, w_out, vel, vel_init, loss, mode, src, self_samples, X, Y, S, T, order, batch, lr, lr_stride, mom, epochs);
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
        const vf sl = rnn_step_grad(r, wl, h, yb, B, T, gl, dp, dl, carry);
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
        rnn_fwd(r, wl, h, T);
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
"""

# ---- building and loading ---------------------------------------------------------------------------
FLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fno-math-errno", "-fPIC", "-shared", "-std=c11"]
_lib = None
_lib_error: str | None = None
_lock = threading.Lock()
_enabled = os.environ.get("NSR_COMPILE", "1").strip().lower() not in ("0", "false", "no", "off", "")


def _cache_dir() -> str:
    base = os.environ.get("NSR_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "nsr")
    try:
        os.makedirs(base, exist_ok=True)
        return base
    except OSError:
        return tempfile.gettempdir()


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("model name", "flags")):
                    return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _build() -> ctypes.CDLL:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        raise RuntimeError("no C compiler found (set CC)")
    tag = hashlib.sha256("\0".join([SOURCE, cc, " ".join(FLAGS), _cpu_name(), sys.platform]).encode()).hexdigest()[:16]
    path = os.path.join(_cache_dir(), f"nsr_kernels_{tag}.so")
    if not os.path.exists(path):
        with tempfile.TemporaryDirectory() as tmp:
            c_file, so_file = os.path.join(tmp, "kernels.c"), os.path.join(tmp, "kernels.so")
            with open(c_file, "w") as f:
                f.write(SOURCE)
            res = None
            for flags in (FLAGS, [f for f in FLAGS if f != "-march=native"]):  # some compilers lack -march=native
                res = subprocess.run([cc, *flags, c_file, "-o", so_file, "-lm"], capture_output=True, text=True,
                                     timeout=300)
                if res.returncode == 0:
                    break
            if res.returncode:
                raise RuntimeError(f"{cc} failed: {res.stderr.strip()[:300]}")
            tmp_dest = f"{path}.{os.getpid()}.tmp"
            shutil.copyfile(so_file, tmp_dest)
            os.replace(tmp_dest, path)  # atomic: concurrent processes never load a partial file
    lib = ctypes.CDLL(path)
    i64, i32, f32, ptr = ctypes.c_int64, ctypes.c_int, ctypes.c_float, ctypes.c_void_p
    lib.nsr_mlp_train.argtypes = [i64, i32, ptr, i32, ptr, ptr, ptr, i32, ptr, i32, ptr, i32, ptr, ptr, i32, ptr, ptr,
                                  i32, ptr, i32, f32, i32]
    lib.nsr_mlp_loss_grad.argtypes = [i64, i32, ptr, i32, ptr, ptr, ptr, i32, ptr, ptr]
    lib.nsr_mlp_apply.argtypes = [i64, i32, ptr, i32, ptr, i32, ptr, ptr, i32, ptr, ptr]
    lib.nsr_rnn_train.argtypes = [i64, i32, ptr, i32, ptr, ptr, ptr, i32, ptr, i32, ptr, i32, ptr, ptr, i32, i32, ptr,
                                  i32, ptr, i32, f32, i32]
    lib.nsr_rnn_loss_grad.argtypes = [i64, i32, ptr, i32, ptr, ptr, ptr, i32, i32, ptr, ptr]
    lib.nsr_rnn_apply.argtypes = [i64, i32, ptr, i32, ptr, ptr, i32, ptr]
    for fn in ("nsr_mlp_train", "nsr_mlp_loss_grad", "nsr_mlp_apply", "nsr_rnn_train", "nsr_rnn_loss_grad",
               "nsr_rnn_apply"):
        getattr(lib, fn).restype = i32
    return lib


def set_enabled(enabled: bool) -> None:
    """Use the native kernels where they apply (``True``) or always the eager torch kernels."""
    global _enabled
    _enabled = bool(enabled)


def enabled() -> bool:
    return _enabled


def library():
    """The loaded kernels, building them on first use; None when disabled or unavailable."""
    global _lib, _lib_error
    if not _enabled:
        return None
    if _lib is None and _lib_error is None:
        with _lock:
            if _lib is None and _lib_error is None:
                try:
                    _lib = _build()
                except Exception as err:  # noqa: BLE001 - no compiler, read-only disk, ...: fall back
                    _lib_error = f"{type(err).__name__}: {err}"
                    warnings.warn(f"nsr: native kernels unavailable ({_lib_error}); using the eager torch kernels",
                                  RuntimeWarning, stacklevel=3)
    return _lib


def available() -> bool:
    """Whether the native kernels are enabled and built."""
    return library() is not None


def unavailable_reason() -> str | None:
    return _lib_error if _enabled else "disabled (NSR_COMPILE=0 or set_compile(False))"


def usable(*tensors) -> bool:
    """The native kernels take float32 CPU tensors that need no autograd graph (anything else runs
    the differentiable torch kernels)."""
    grad = torch.is_grad_enabled()
    return all(t is None or (t.device.type == "cpu" and t.dtype == torch.float32 and not (grad and t.requires_grad))
               for t in tensors) and available()


# ---- calling: split the population over torch's threads (ctypes releases the GIL) -------------------
MIN_PARTICLES_PER_THREAD = 2048
HUGE_PAGE_BYTES = 1 << 21
_pool: ThreadPoolExecutor | None = None
_pool_pid = 0  # a forked child gets the object but not the threads: it makes its own pool
_madvise = None


def empty(*shape) -> torch.Tensor:
    """A new float32 tensor for a kernel's output. Large ones are backed by transparent huge pages
    where Linux offers them (``madvise``): the first write then faults 512x fewer pages, which
    otherwise costs more than the kernel itself at a million particles."""
    global _madvise
    t = torch.empty(*shape, dtype=torch.float32)
    n = t.numel() * 4
    if n >= 8 * HUGE_PAGE_BYTES and sys.platform.startswith("linux"):
        try:
            if _madvise is None:
                libc = ctypes.CDLL(None, use_errno=True)
                libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
                _madvise = libc.madvise
            p = t.data_ptr()
            start = (p + HUGE_PAGE_BYTES - 1) // HUGE_PAGE_BYTES * HUGE_PAGE_BYTES
            length = (p + n - start) // HUGE_PAGE_BYTES * HUGE_PAGE_BYTES
            if length > 0:
                _madvise(ctypes.c_void_p(start), ctypes.c_size_t(length), 14)  # MADV_HUGEPAGE
        except (OSError, AttributeError, TypeError):
            _madvise = False
    return t


def _run(fn, P: int, call):
    """``call(p0, p1)`` over particle ranges, in parallel on ``torch.get_num_threads()`` threads."""
    global _pool, _pool_pid
    n = max(1, min(torch.get_num_threads(), P // MIN_PARTICLES_PER_THREAD))
    bounds = [(P * i // n, P * (i + 1) // n) for i in range(n)]
    if n == 1:
        rcs = [call(0, P)]
    else:
        if _pool is None or _pool._max_workers < n or _pool_pid != os.getpid():
            _pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="nsr-kernel")
            _pool_pid = os.getpid()
        rcs = list(_pool.map(lambda b: call(*b), bounds))
    if any(rcs):
        raise RuntimeError(f"nsr native kernel {fn} failed with code {max(rcs)}")


_arrays: dict = {}


def _int_array(values):
    key = tuple(values)
    if key not in _arrays:
        _arrays[key] = (ctypes.c_int * len(key))(*key)
    return _arrays[key]


def _row(t, p0):
    """Pointer to row p0 of a contiguous particle-first tensor (None stays None)."""
    return None if t is None else ctypes.c_void_p(t.data_ptr() + p0 * t.stride(0) * t.element_size())


def train(kind, dims, act, w, out, vel, vel_init, loss, mode, src, self_samples, X, Y, S, T, ids, order, batch,
          lr, lr_stride, mom, epochs):
    """``epochs`` epochs of SGD of the networks ``w [P, W]`` into ``out`` (may be ``w``), momentum
    buffers ``vel`` in place, last epoch's loss into ``loss [P]``. Samples: ``mode`` 0 from
    ``X, Y`` (``[P, S, I]`` / ``[P, S, T]``), 1 from the genomes ``src`` (or each particle's own at
    every epoch's start, ``self_samples``). ``order [P, S]`` or None; ``lr`` ``[1]`` (stride 0)
    or ``[P]`` (stride 1). See the C source."""
    lib = library()
    d = _int_array(dims)

    def call(p0, p1):
        common = (p1 - p0, len(dims) - (kind == "mlp"), d, ACT_CODES[act], _row(w, p0), _row(out, p0), _row(vel, p0),
                  int(vel_init), _row(loss, p0), mode, _row(src, p0), int(self_samples), _row(X, p0), _row(Y, p0), S)
        tail = (_row(order, p0), batch, _row(lr, p0) if lr_stride else _ptr(lr), lr_stride, float(mom), epochs)
        if kind == "mlp":
            return lib.nsr_mlp_train(*common, _ptr(ids), *tail)
        return lib.nsr_rnn_train(*common, T, *tail)

    _run(f"{kind}_train", w.shape[0], call)


def _ptr(t):
    """A tensor's data pointer (a ctypes array, e.g. a scalar learning rate, passes as it is)."""
    if t is None or isinstance(t, ctypes.Array):
        return t
    return ctypes.c_void_p(t.data_ptr())


def loss_grad(kind, dims, act, w, X, Y):
    """``(loss [P], grad [P, W])`` of one step on particle-first samples (MLP: ``X [P, B, I]``,
    ``Y [P, B, O]``; RNN: ``X, Y [P, B, T]``)."""
    lib = library()
    d = _int_array(dims)
    P, W = w.shape
    loss, grad = empty(P), empty(P, W)

    def call(p0, p1):
        args = (p1 - p0, len(dims) - (kind == "mlp"), d, ACT_CODES[act], _row(w, p0), _row(X, p0), _row(Y, p0))
        if kind == "mlp":
            return lib.nsr_mlp_loss_grad(*args, X.shape[1], _row(loss, p0), _row(grad, p0))
        return lib.nsr_rnn_loss_grad(*args, X.shape[1], X.shape[2], _row(loss, p0), _row(grad, p0))

    _run(f"{kind}_loss_grad", P, call)
    return loss, grad


def mlp_apply(dims, act, a, mode, b, X, S, ids, out_width):
    """Outputs ``[P, S * O]`` of networks ``a`` on weightwise samples of ``b`` (mode 1) or on ``X``."""
    lib = library()
    d = _int_array(dims)
    P = a.shape[0]
    out = empty(P, out_width)

    def call(p0, p1):
        return lib.nsr_mlp_apply(p1 - p0, len(dims) - 1, d, ACT_CODES[act], _row(a, p0), mode, _row(b, p0),
                                 _row(X, p0), S, _ptr(ids), _row(out, p0))

    _run("mlp_apply", P, call)
    return out


def rnn_apply(units, act, a, b):
    """``[P, W]``: recurrent networks ``a`` reading genomes ``b`` as sequences."""
    lib = library()
    u = _int_array(units)
    P, W = a.shape
    out = empty(P, W)

    def call(p0, p1):
        return lib.nsr_rnn_apply(p1 - p0, len(units), u, ACT_CODES[act], _row(a, p0), _row(b, p0), W, _row(out, p0))

    _run("rnn_apply", P, call)
    return out
