/* The dense MLP family (weightwise, aggregating): see nsr/kernels/mlp.py. */
#include "common.h"
#include "aggregates.h"

/* ---- MLP networks: L dense layers dims[0] -> ... -> dims[L], no biases ------------------------ */
typedef struct {
    int L, W, act, I, O, sumd, maxd;
    int dims[MAXL + 1], koff[MAXL], aoff[MAXL + 1];
} mlp_t;

HOT int mlp_init(mlp_t* m, int L, const int* dims, int act) {
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

/* the samples of the block: mode 0 from X [P, S, I] and Y [P, S, O]; mode 1 weightwise, from the
   genomes `genome` and the id table ids [S, 3]; mode 2 aggregating, one sample: the aggregates of
   the genomes (as inputs and as targets), described by agg (aggregates.h) */
HOT void mlp_samples(const mlp_t* m, int mode, int S, int64_t p0, int64_t np, const float* X, const float* Y,
                        const vf* genome, const float* ids, const int* agg, vf* xs, vf* ys) {
    const int I = m->I, O = m->O;
    if (mode == 2) {
        agg_samples(agg, genome, xs);
        if (ys) for (int o = 0; o < O; ++o) ys[o] = xs[o];
        return;
    }
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

HOT int mlp_train_impl(const mlp_t* m, int64_t P, const float* w, float* w_out, float* vel, int vel_init, float* loss, int mode, const float* src, int self_samples, const float* X, const float* Y, int S, const float* ids, const int* agg, const int64_t* order, int batch, const float* lr, int lr_stride, float mom, int epochs) {
    const int W = m->W, I = m->I, O = m->O;
    if (mode == 1 && (I != 4 || O != 1 || S != W)) return 2;
    if (mode == 2 && (I != O || S != 1 || !agg_valid(agg, W, I))) return 2;
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
        prefetch_block(w, w_out, p0 + PREFETCH * LN, W, P);
        int vinit = vel_init;
        if (vel && vel_init) load_rows(vl, vel, p0, W, np);
        if (mode >= 1 && !self_samples) load_rows(gen, src, p0, W, np);
        for (int e = 0; e < epochs; ++e) {
            if (mode == 1 && self_samples) memcpy(gen, wl, sizeof(vf) * W);   /* epoch-start snapshot */
            if (e == 0 || (mode >= 1 && self_samples))      /* (aggregates: made before the epoch's step) */
                mlp_samples(m, mode, S, p0, np, X, Y, mode == 2 && self_samples ? wl : gen, ids, agg, xs, ys);
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

#include "mlp_weightwise.h"  /* ww4221_train: weightwise 4-2-2-1 full batch, its own code */

/* The same kernel compiled for the shipped layouts (weightwise and aggregating (2, 2)) with the
   widths, the activation and the full batch (weightwise's 14 samples, aggregating's one) as
   constants: the compiler unrolls the layers and keeps the kernels in registers. The arithmetic,
   and its order, is the generic kernel's: the same bits (tested). */
#define TRAIN_ARGS int64_t P, const float* w, float* w_out, float* vel, int vel_init, float* loss, int mode, \
    const float* src, int self_samples, const float* X, const float* Y, int S, const float* ids, const int* agg, \
    const int64_t* order, int batch, const float* lr, int lr_stride, float mom, int epochs
#define TRAIN_PASS P, w, w_out, vel, vel_init, loss, mode, src, self_samples, X, Y, S, ids, agg, order, batch, lr, \
    lr_stride, mom, epochs
#define SPECIALISED(name, d0, d1, d2, d3, act) \
    static int name(TRAIN_ARGS) { \
        mlp_t m; const int dims[4] = {d0, d1, d2, d3}; \
        mlp_init(&m, 3, dims, act); \
        if (d3 == 1 && mode == 1 && S == 14 && batch >= 14) {  /* weightwise full batch: 14 samples a step */ \
            if ((act == LINEAR || act == RELU) && !order)  /* (tanh, sigmoid: libm calls clobber registers) */ \
                return ww4221_train(act, P, w, w_out, vel, vel_init, loss, src, self_samples, ids, lr, lr_stride, \
                                    mom, epochs); \
            batch = 14; S = 14; \
            return mlp_train_impl(&m, TRAIN_PASS); \
        } \
        if (d3 == d0 && S == 1) {  /* aggregating: one sample (its aggregates), one step an epoch */ \
            batch = 1; S = 1; \
            return mlp_train_impl(&m, TRAIN_PASS); \
        } \
        return mlp_train_impl(&m, TRAIN_PASS); \
    }
SPECIALISED(train_4221_linear, 4, 2, 2, 1, LINEAR)
SPECIALISED(train_4221_tanh, 4, 2, 2, 1, TANH)
SPECIALISED(train_4221_sigmoid, 4, 2, 2, 1, SIGMOID)
SPECIALISED(train_4221_relu, 4, 2, 2, 1, RELU)
SPECIALISED(train_4224_linear, 4, 2, 2, 4, LINEAR)
SPECIALISED(train_4224_tanh, 4, 2, 2, 4, TANH)
SPECIALISED(train_4224_sigmoid, 4, 2, 2, 4, SIGMOID)
SPECIALISED(train_4224_relu, 4, 2, 2, 4, RELU)

static int train_generic(const mlp_t* m, TRAIN_ARGS) { return mlp_train_impl(m, TRAIN_PASS); }

int nsr_mlp_train(TRAIN_ARGS, int L, const int* dims, int act, int specialised) {
    mlp_t m;
    if (mlp_init(&m, L, dims, act) || act < 0 || act > 3) return 1;
    typedef int (*train_fn)(TRAIN_ARGS);
    static const train_fn t4221[4] = {train_4221_linear, train_4221_tanh, train_4221_sigmoid, train_4221_relu};
    static const train_fn t4224[4] = {train_4224_linear, train_4224_tanh, train_4224_sigmoid, train_4224_relu};
    if (specialised && L == 3 && dims[0] == 4 && dims[1] == 2 && dims[2] == 2 && (dims[3] == 1 || dims[3] == 4))
        return (dims[3] == 1 ? t4221 : t4224)[act](TRAIN_PASS);
    return train_generic(&m, TRAIN_PASS);
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
        mlp_samples(m, mode, S, p0, np, X, NULL, gen, ids, NULL, xs, NULL);
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

/* out [P, A]: the aggregates of genomes b [P, W] described by agg (aggregates.h), as the training
   kernel makes its samples */
int nsr_mlp_aggregate(int64_t P, int W, const int* agg, const float* b, float* out) {
    if (!agg || !agg_valid(agg, W, agg[2])) return 2;
    const int A = agg[2];
    vf *g = valloc(W), *res = valloc(A);
    int rc = (!g || !res) ? 3 : 0;
    for (int64_t p0 = 0; p0 < P && !rc; p0 += LN) {
        const int64_t np = P - p0 < LN ? P - p0 : LN;
        load_rows(g, b, p0, W, np);
        agg_samples(agg, g, res);
        store_rows(out, res, p0, A, np);
    }
    free(g); free(res);
    return rc;
}
