"""The recurrent family: stacked simple RNN layers without biases (the recurrent replicator).

Eager kernels (any device and dtype, particle-last; see :mod:`nsr.kernels.ops`) and the binding of
the native ones (``rnn.c``), behind :class:`RNNKernel`. Backpropagation through time is written
out by hand and equals autograd to float rounding (tested).
"""
from __future__ import annotations

import torch

from nsr.kernels.build import Library, Signature, f32, i32, i64, ptr
from nsr.kernels.family import KernelFamily
from nsr.kernels.ops import ACT_CODES, activate, activation_grad, bsum, columns, dense, kernels, mse, sgd
from nsr.kernels.parallel import empty, int_array, pointer, row, run

def rnn_forward(Ks, act: str, xT: torch.Tensor) -> list[torch.Tensor]:
    """Outputs ``[T, B, u, P]`` of every layer of stacked simple RNNs (kernels ``Ks``: input and
    recurrent kernel per layer, ``[in, u, P]`` and ``[u, u, P]``) on sequences ``xT [T, B, F, P]``."""
    hs = [xT]
    for K, R in zip(Ks[0::2], Ks[1::2]):
        T, B, F, P = hs[-1].shape
        xk = dense(columns(hs[-1].reshape(T * B, F, P)), K).view(T, B, -1, P)  # [T, B, u, P]
        h, steps = None, []
        for t in range(T):
            h = activate(act, xk[t] if h is None else dense(columns(h), R, xk[t]))  # [B, u, P]
            steps.append(h)
        hs.append(torch.stack(steps))
    return hs


def rnn_loss_grad(Ks, act: str, xT, yT):
    """Per-particle MSE ``[P]`` of the recurrent networks ``Ks`` on sequences ``(xT, yT
    [T, B, O, P])`` and its gradient ``[W, P]`` by backpropagation through time written out."""
    hs = rnn_forward(Ks, act, xT)
    loss, delta = mse(hs[-1], yT)  # [P], [T, B, O, P]
    T, B = xT.shape[:2]
    P = hs[-1].shape[-1]
    rows = []
    for layer in range(len(Ks) // 2 - 1, -1, -1):
        K, R = Ks[2 * layer], Ks[2 * layer + 1]
        h_in, h_out = hs[layer], hs[layer + 1]  # [T, B, I, P], [T, B, u, P]
        u = h_out.shape[2]
        carry, dpre = None, [None] * T
        for t in range(T - 1, -1, -1):
            dh = delta[t] if carry is None else delta[t] + carry  # dL/d h_t, [B, u, P]
            d = activation_grad(act, h_out[t])
            dpre[t] = dh if d is None else dh * d
            if t:
                carry = dense(columns(dpre[t]), R.transpose(0, 1))  # through h_t = ... h_{t-1} @ R
        dp = torch.stack(dpre).view(T * B, u, P)
        g_in = [bsum(c * dp).expand(-1, P) for c in columns(h_in.reshape(T * B, -1, h_in.shape[-1]))]
        if T > 1:
            prev = h_out[:-1].reshape((T - 1) * B, u, P)
            g_rec = [bsum(c * dp[B:]) for c in columns(prev)]
        else:
            g_rec = [torch.zeros_like(dp[0])] * u
        rows = g_in + g_rec + rows
        if layer:
            delta = dense(columns(dp), K.transpose(0, 1)).view(T, B, -1, P)  # [T, B, I, P]
    return loss, torch.cat(rows)


def rnn_epoch(shapes, act: str, wT, velT, xT, yT, orderT, batch: int, lr, momentum):
    """One epoch of SGD of the recurrent networks ``wT [W, P]`` on sequences ``(xT [T, S, F, P],
    yT [T, S, O, P])``, ``batch`` sequences a step in the order ``orderT [S, P]`` (None: in order)."""
    S = yT.shape[1]
    total, steps = None, 0
    for t in range(0, S, batch):
        if orderT is None:
            x_t, y_t = xT[:, t:t + batch], yT[:, t:t + batch]
        else:
            idx = orderT[t:t + batch]  # [b, P]
            x_t, y_t = _take_seq(xT, idx), _take_seq(yT, idx)
        loss, gT = rnn_loss_grad(kernels(wT, shapes), act, x_t, y_t)
        wT, velT = sgd(wT, gT, velT, lr, momentum)
        total = loss if total is None else total + loss
        steps += 1
    return wT, velT, total / steps


def _take_seq(t, idx):
    """Per-particle sequences ``t [T, S, F, P]`` at ``idx [b, P]`` -> ``[T, b, F, P]``."""
    T, _, F, P = t.shape
    return torch.gather(t, 1, idx[None, :, None, :].expand(T, idx.shape[0], F, P))


def rnn_apply(shapes, act: str, aT, xT):
    """Outputs ``[T, B, O, P]`` of recurrent networks ``aT [W, P]`` on sequences ``xT``."""
    return rnn_forward(kernels(aT, shapes), act, xT)[-1]


# ---- the native kernels (rnn.c) ------------------------------------------------------------------
SPECIALISED = True  # use rnn.c's kernel compiled for the shipped layout (the same bits; False: generic)
LIBRARY = Library("rnn", ["common.h", "rnn.c"], [
    Signature("nsr_rnn_train", P=i64, NL=i32, units=ptr, act=i32, w=ptr, w_out=ptr, vel=ptr, vel_init=i32,
              loss=ptr, mode=i32, src=ptr, self_samples=i32, X=ptr, Y=ptr, S=i32, T=i32, order=ptr, batch=i32,
              lr=ptr, lr_stride=i32, mom=f32, epochs=i32, specialised=i32),
    Signature("nsr_rnn_loss_grad", P=i64, NL=i32, units=ptr, act=i32, w=ptr, X=ptr, Y=ptr, B=i32, T=i32, loss=ptr,
              grad=ptr),
    Signature("nsr_rnn_apply", P=i64, NL=i32, units=ptr, act=i32, a=ptr, b=ptr, T=i32, out=ptr),
])


class RNNKernel(KernelFamily):
    """The recurrent family bound to a replicator: kernel shapes (input kernel ``[in, u]``, then
    recurrent kernel ``[u, u]``, per layer; the last layer has one unit) and activation. The one
    sample of a genome is the genome read as a sequence, one scalar per step."""

    library = LIBRARY
    reads_genome = True
    num_samples = 1

    def __init__(self, shapes, activation: str):
        self.shapes, self.activation = list(shapes), activation
        self.num_weights = sum(i * o for i, o in self.shapes)
        self.units = [o for _, o in self.shapes[0::2]]  # units of every layer, the last is 1
        self.width = max(max(self.units), 1)

    def chunk_floats(self, batch):
        return self.num_weights * batch * self.width * 2

    @property
    def apply_floats(self):
        return self.num_weights * 2 * self.width

    # ---- eager ----------------------------------------------------------------------------------
    def samples_pl(self, bT):
        """The one sample of genomes ``bT [W, P]``: the genome as a sequence ``[T=W, 1, 1, P]``."""
        seq = bT[:, None, None, :]
        return seq, seq

    def samples_pl_from(self, x, y):
        """Particle-first sequences ``x [P, S, T, F]`` as ``[T, S, F, P]`` (and the targets)."""
        return x.permute(2, 1, 3, 0).contiguous(), y.permute(2, 1, 3, 0).contiguous()

    def epoch(self, wT, velT, xs, ys, orderT, batch, lr, momentum):
        return rnn_epoch(self.shapes, self.activation, wT, velT, xs, ys, orderT, batch, lr, momentum)

    def loss_grad(self, wT, xs, ys):
        return rnn_loss_grad(kernels(wT, self.shapes), self.activation, xs, ys)

    def apply_pl(self, aT, bT):
        return rnn_apply(self.shapes, self.activation, aT, self.samples_pl(bT)[0])[:, 0, 0, :]

    # ---- native ---------------------------------------------------------------------------------
    def native_prepare(self, x, y):
        """Sequences ``[P, S, T, 1]`` as ``[P, S, T]``: one feature per step."""
        return x[..., 0].detach().contiguous(), y[..., 0].detach().contiguous()

    def native_train(self, *, w, out, vel, vel_init, loss, src, self_samples, X, Y, order, batch, lr, lr_stride,
                     momentum, epochs):
        u, act = int_array(self.units), ACT_CODES[self.activation]
        S, T = (X.shape[1], X.shape[2]) if X is not None else (1, self.num_weights)

        def call(p0, p1):
            return LIBRARY.call("nsr_rnn_train", P=p1 - p0, NL=len(self.units), units=u, act=act, w=row(w, p0),
                                w_out=row(out, p0), vel=row(vel, p0), vel_init=int(vel_init), loss=row(loss, p0),
                                mode=0 if X is not None else 1, src=row(src, p0), self_samples=int(self_samples),
                                X=row(X, p0), Y=row(Y, p0), S=S, T=T, order=row(order, p0), batch=batch,
                                lr=row(lr, p0) if lr_stride else pointer(lr), lr_stride=lr_stride,
                                mom=float(momentum), epochs=epochs, specialised=int(SPECIALISED))

        run("rnn_train", w.shape[0], call)

    def native_loss_grad(self, w, x, y):
        if x.shape[-1] != 1:
            return None  # the native code reads one feature per step
        u, act = int_array(self.units), ACT_CODES[self.activation]
        X, Y = self.native_prepare(x, y)  # [P, B, T]
        w = w.detach().contiguous()
        P, W = w.shape
        loss, grad = empty(P), empty(P, W)

        def call(p0, p1):
            return LIBRARY.call("nsr_rnn_loss_grad", P=p1 - p0, NL=len(self.units), units=u, act=act, w=row(w, p0),
                                X=row(X, p0), Y=row(Y, p0), B=X.shape[1], T=X.shape[2], loss=row(loss, p0),
                                grad=row(grad, p0))

        run("rnn_loss_grad", P, call)
        return loss, grad

    def native_apply(self, a, b):
        u, act = int_array(self.units), ACT_CODES[self.activation]
        a, b = a.detach().contiguous(), b.detach().contiguous()
        P, W = a.shape
        out = empty(P, W)

        def call(p0, p1):
            return LIBRARY.call("nsr_rnn_apply", P=p1 - p0, NL=len(self.units), units=u, act=act, a=row(a, p0),
                                b=row(b, p0), T=W, out=row(out, p0))

        run("rnn_apply", P, call)
        return out
