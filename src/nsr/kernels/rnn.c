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
HOT int rnn_train_impl(const rnn_t* r, int64_t P, const float* w, float* w_out, float* vel, int vel_init, float* loss, int mode, const float* src, int self_samples, const float* X, const float* Y, int S, int T, const int64_t* order, int batch, const float* lr, int lr_stride, float mom, int epochs) {
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
                for (int j = 0; j < b && !order; ++j)     /* sequence t0 + j of every lane: whole vectors */
                    for (int t = 0; t < T; ++t) {
                        h[((int64_t)j * T + t) * su] = xs[(int64_t)(t0 + j) * T + t];
                        yb[j * T + t] = ys[(int64_t)(t0 + j) * T + t];
                    }
                for (int j = 0; j < b && order; ++j)      /* sequence j of the step, per lane */
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

/* The same kernel compiled for the shipped layout (recurrent (2, 2): units 2, 2, 1) with the units,
   the activation and, for its own genome as the sequence, the sequence length as constants. The
   arithmetic and its order are the generic kernel's: the same bits (tested). */
#define RNN_ARGS int64_t P, const float* w, float* w_out, float* vel, int vel_init, float* loss, int mode, \
    const float* src, int self_samples, const float* X, const float* Y, int S, int T, const int64_t* order, \
    int batch, const float* lr, int lr_stride, float mom, int epochs
#define RNN_PASS P, w, w_out, vel, vel_init, loss, mode, src, self_samples, X, Y, S, T, order, batch, lr, lr_stride, \
    mom, epochs
#define RNN_SPECIALISED(name, act) \
    static int name(RNN_ARGS) { \
        rnn_t r; const int units[3] = {2, 2, 1}; \
        rnn_init(&r, 3, units, act); \
        if (mode == 1 && S == 1 && T == 17) { S = 1; T = 17; batch = 1; return rnn_train_impl(&r, RNN_PASS); } \
        return rnn_train_impl(&r, RNN_PASS); \
    }
RNN_SPECIALISED(rnn_221_linear, LINEAR)
RNN_SPECIALISED(rnn_221_tanh, TANH)
RNN_SPECIALISED(rnn_221_sigmoid, SIGMOID)
RNN_SPECIALISED(rnn_221_relu, RELU)

static int rnn_train_generic(const rnn_t* r, RNN_ARGS) { return rnn_train_impl(r, RNN_PASS); }

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
