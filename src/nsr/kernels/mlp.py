"""The dense MLP family: stacks of dense layers without biases (weightwise, aggregating).

Eager kernels (any device and dtype, particle-last; see :mod:`nsr.kernels.ops`) and the binding of
the native ones (``mlp.c``), behind :class:`MLPKernel`. Backpropagation is written out by hand and
equals autograd to float rounding (tested).
"""
from __future__ import annotations

import torch

from nsr.kernels.build import Library, Signature, f32, i32, i64, native_tensors, ptr
from nsr.kernels.family import KernelFamily
from nsr.kernels.ops import (ACT_CODES, activate, activation_grad, bsum, chunk_size, chunks, columns, dense, kernels,
                             mse, sgd, take)
from nsr.kernels.parallel import empty, int_array, pointer, row, run

def mlp_forward(Ks, act: str, cols) -> list[torch.Tensor]:
    """Outputs ``[B, O_l, P]`` of every layer of the networks ``Ks`` on input columns ``cols``."""
    hs = []
    for K in Ks:
        hs.append(activate(act, dense(cols if not hs else columns(hs[-1]), K)))
    return hs


def mlp_loss_grad(Ks, act: str, cols, yT: torch.Tensor):
    """Per-particle MSE ``[P]`` of the networks ``Ks`` on samples ``(cols, yT [B, O, P])`` and its
    gradient ``[W, P]`` by backpropagation written out (equal to autograd; tested)."""
    hs = mlp_forward(Ks, act, cols)
    loss, delta = mse(hs[-1], yT)  # [P], [B, O, P]
    P = hs[-1].shape[-1]
    rows = []
    for layer in range(len(Ks) - 1, -1, -1):
        d = activation_grad(act, hs[layer])
        if d is not None:
            delta = delta * d  # dL/d pre-activation, [B, O, P]
        inp = cols if layer == 0 else columns(hs[layer - 1])
        rows = [bsum(c * delta).expand(-1, P) for c in inp] + rows  # I x [O, P]: kernel rows
        if layer:
            delta = dense(columns(delta), Ks[layer].transpose(0, 1))  # [B, I, P]
    return loss, torch.cat(rows)  # [W, P]


def take(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Per-particle samples ``t [S, F, P]`` (or shared ``[S, F, 1]``) at ``idx [b, P]`` -> ``[b, F, P]``."""
    if t.shape[-1] == 1 and idx.shape[1] != 1:
        return t[:, :, 0][idx].permute(0, 2, 1)
    return torch.gather(t, 0, idx[:, None, :].expand(idx.shape[0], t.shape[1], idx.shape[1]))


def mlp_epoch(shapes, act: str, wT, velT, cols, yT, orderT, batch: int, lr, momentum):
    """One epoch of SGD of the MLP networks ``wT [W, P]`` on samples ``(cols, yT [S, O, P])``,
    ``batch`` samples a step, visited in the per-particle order ``orderT [S, P]`` (None: in
    sample order). Returns ``(wT, velT, loss [P])``, the loss averaged over the epoch's steps."""
    S = yT.shape[0]
    total, steps = None, 0
    for t in range(0, S, batch):
        if orderT is None:
            c_t, y_t = [c[t:t + batch] for c in cols], yT[t:t + batch]
        else:
            idx = orderT[t:t + batch]  # [b, P]
            c_t, y_t = [take(c, idx) for c in cols], take(yT, idx)
        loss, gT = mlp_loss_grad(kernels(wT, shapes), act, c_t, y_t)
        wT, velT = sgd(wT, gT, velT, lr, momentum)
        total = loss if total is None else total + loss
        steps += 1
    return wT, velT, total / steps


def mlp_apply(shapes, act: str, aT, cols):
    """Outputs ``[S, O, P]`` of networks ``aT [W, P]`` on input columns ``cols``."""
    return mlp_forward(kernels(aT, shapes), act, cols)[-1]


# ---- the native kernels (mlp.c; its weightwise full batch in mlp_weightwise.h) ---------------------
LIBRARY = Library("mlp", ["common.h", "aggregates.h", "mlp_weightwise.h", "mlp.c"], [
    Signature("nsr_mlp_train", P=i64, w=ptr, w_out=ptr, vel=ptr, vel_init=i32, loss=ptr, mode=i32, src=ptr,
              self_samples=i32, X=ptr, Y=ptr, S=i32, ids=ptr, agg=ptr, order=ptr, batch=i32, lr=ptr, lr_stride=i32,
              mom=f32, epochs=i32, L=i32, dims=ptr, act=i32, specialised=i32),
    Signature("nsr_mlp_loss_grad", P=i64, L=i32, dims=ptr, act=i32, w=ptr, X=ptr, Y=ptr, B=i32, loss=ptr, grad=ptr),
    Signature("nsr_mlp_apply", P=i64, L=i32, dims=ptr, act=i32, a=ptr, mode=i32, b=ptr, X=ptr, S=i32, ids=ptr,
              out=ptr),
    Signature("nsr_mlp_aggregate", P=i64, W=i32, agg=ptr, b=ptr, out=ptr),
])


SPECIALISED = True  # use mlp.c's kernels compiled for the shipped layouts (the same bits; False: generic)


class MLPKernel(KernelFamily):
    """The MLP family bound to a replicator: layer shapes, activation and the sample encoding.

    ``ids``: for replicators whose samples are read from the genome as (w_k, three ids) per weight
    (weightwise), a function ``device -> [W, 3]`` float32 of the ids; None when the replicator's
    ``samples`` makes them (``num_samples`` per genome). The aggregating replicator's family,
    whose one sample the native kernel makes from the genome too, is
    :class:`nsr.kernels.aggregates.AggregatesKernel`.
    """

    library = LIBRARY

    def __init__(self, shapes, activation: str, ids=None, num_samples: int = 1):
        self.shapes, self.activation, self.ids = list(shapes), activation, ids
        self.num_weights = sum(i * o for i, o in self.shapes)
        self.reads_genome = ids is not None
        self.num_samples = self.num_weights if self.reads_genome else num_samples
        self.dims = [i for i, _ in self.shapes] + [self.shapes[-1][1]]  # layer widths
        if self.reads_genome and (self.dims[0] != 4 or self.dims[-1] != 1):
            raise ValueError("an MLPKernel reading its samples from the genome takes 4 inputs and 1 output")

    def chunk_floats(self, batch):
        return batch * max(max(i, o) for i, o in self.shapes)

    @property
    def apply_floats(self):
        return self.num_weights * max(max(i, o) for i, o in self.shapes)

    # ---- eager ----------------------------------------------------------------------------------
    def samples_pl(self, bT):
        """Genomes ``bT [W, P]`` as input columns (w_k ``[W, 1, P]``, then the shared ids
        ``[W, 1, 1]``, never expanded over P) and targets ``[W, 1, P]``."""
        wk = bT[:, None, :]
        ids = self.ids(bT.device).to(bT.dtype)  # [W, 3]
        return [wk] + [ids[:, c].reshape(-1, 1, 1) for c in range(3)], wk

    def samples_pl_from(self, x, y):
        """``x [P, S, I]``, ``y [P, S, O]`` as input columns ``[S, 1, P]`` and targets ``[S, O, P]``."""
        return columns(x.permute(1, 2, 0).contiguous()), y.permute(1, 2, 0).contiguous()

    def epoch(self, wT, velT, xs, ys, orderT, batch, lr, momentum):
        return mlp_epoch(self.shapes, self.activation, wT, velT, xs, ys, orderT, batch, lr, momentum)

    def loss_grad(self, wT, xs, ys):
        return mlp_loss_grad(kernels(wT, self.shapes), self.activation, xs, ys)

    def apply_pl(self, aT, bT):
        return mlp_apply(self.shapes, self.activation, aT, self.samples_pl(bT)[0])[:, 0, :]

    def forward(self, a, x):
        """``[P, S, O]``: outputs of networks ``a [P, W]`` on particle-first inputs ``x [P, S, I]``."""
        P, S = x.shape[0], x.shape[1]
        O = self.shapes[-1][1]
        if native_tensors(a, x) and self.native_ready():
            return self._native_apply(a.detach().contiguous(), 0, None, x.detach().contiguous(), S, S * O).view(P, S, O)
        out = torch.empty(P, S, O, dtype=a.dtype, device=a.device)
        for p0, p1 in chunks(P, chunk_size(P, self.chunk_floats(S), a.device)):
            cols = columns(x[p0:p1].permute(1, 2, 0).contiguous())
            out[p0:p1] = mlp_apply(self.shapes, self.activation, a[p0:p1].t().contiguous(), cols).permute(2, 0, 1)
        return out

    # ---- native ---------------------------------------------------------------------------------
    def native_train(self, *, w, out, vel, vel_init, loss, src, self_samples, X, Y, order, batch, lr, lr_stride,
                     momentum, epochs):
        S = X.shape[1] if X is not None else self.num_weights
        ids = None if X is not None else self.ids("cpu").contiguous()
        self._native_train(w, out, vel, vel_init, loss, src, self_samples, X, Y, S, 0 if X is not None else 1,
                           ids, None, order, batch, lr, lr_stride, momentum, epochs)

    def _native_train(self, w, out, vel, vel_init, loss, src, self_samples, X, Y, S, mode, ids, agg, order, batch,
                      lr, lr_stride, momentum, epochs):
        """mlp.c's training epochs on samples ``X, Y`` (mode 0), weightwise samples of the genomes
        with the id table ``ids`` (mode 1) or their aggregates described by ``agg`` (mode 2)."""
        d, act = int_array(self.dims), ACT_CODES[self.activation]

        def call(p0, p1):
            return LIBRARY.call("nsr_mlp_train", P=p1 - p0, L=len(self.dims) - 1, dims=d, act=act, w=row(w, p0),
                                w_out=row(out, p0), vel=row(vel, p0), vel_init=int(vel_init), loss=row(loss, p0),
                                mode=mode, src=row(src, p0), self_samples=int(self_samples),
                                X=row(X, p0), Y=row(Y, p0), S=S, ids=pointer(ids), agg=agg, order=row(order, p0),
                                batch=batch, lr=row(lr, p0) if lr_stride else pointer(lr), lr_stride=lr_stride,
                                mom=float(momentum), epochs=epochs, specialised=int(SPECIALISED))

        run("mlp_train", w.shape[0], call)

    def native_loss_grad(self, w, x, y):
        d, act = int_array(self.dims), ACT_CODES[self.activation]
        w, X, Y = w.detach().contiguous(), x.detach().contiguous(), y.detach().contiguous()
        P, W = w.shape
        loss, grad = empty(P), empty(P, W)

        def call(p0, p1):
            return LIBRARY.call("nsr_mlp_loss_grad", P=p1 - p0, L=len(self.dims) - 1, dims=d, act=act, w=row(w, p0),
                                X=row(X, p0), Y=row(Y, p0), B=X.shape[1], loss=row(loss, p0), grad=row(grad, p0))

        run("mlp_loss_grad", P, call)
        return loss, grad

    def native_apply(self, a, b):
        W = self.num_weights
        return self._native_apply(a.detach().contiguous(), 1, b.detach().contiguous(), None, W, W)

    def _native_apply(self, a, mode, b, X, S, out_width):
        """Outputs ``[P, S * O]`` of networks ``a`` on the genome samples of ``b`` (mode 1) or on ``X``."""
        d, act = int_array(self.dims), ACT_CODES[self.activation]
        ids = self.ids("cpu").contiguous() if mode == 1 else None
        P = a.shape[0]
        out = empty(P, out_width)

        def call(p0, p1):
            return LIBRARY.call("nsr_mlp_apply", P=p1 - p0, L=len(self.dims) - 1, dims=d, act=act, a=row(a, p0),
                                mode=mode, b=row(b, p0), X=row(X, p0), S=S, ids=pointer(ids), out=row(out, p0))

        run("mlp_apply", P, call)
        return out
