"""The drivers: ``[P, W]`` populations in, ``[P, W]`` out, through a replicator's kernel family.

:func:`train` (what ``nsr.training`` runs), :func:`loss_and_grad` and :func:`apply` pick the native
kernels for float32 CPU populations that need no autograd graph, and the eager torch kernels
otherwise (on CPU in cache-sized chunks of particles). Both compute the same steps with the same
random numbers as the step-by-step epoch of ``nsr.training`` (tested).
"""
from __future__ import annotations

import ctypes

import torch

from nsr.kernels import build
from nsr.kernels.ops import chunk_size, chunks, lr_chunk
from nsr.kernels.parallel import empty
from nsr.random import epoch_order


def backend(w: torch.Tensor) -> str:
    """``"native"`` or ``"eager"``: which kernels run for a population like ``w``."""
    return "native" if build.native_tensors(w) and build.available() else "eager"


def _native(fam, *tensors) -> bool:
    return build.native_tensors(*tensors) and fam.native_ready()


def train(rep, w, epochs=1, lr=0.01, batch_size=1, momentum=0.0, shuffle=True, generator=None, velocity=None,
          source=None, samples=None, order=None):
    """``epochs`` epochs of SGD for every particle of ``w [P, W]`` through ``rep.kernel``.

    Samples: ``samples=(x, y)`` (particle-first, fixed), else those of genomes ``source [P, W]``
    (fixed; learn_from), else the particle's own genome at each epoch's start (self-training).
    Each epoch draws its visiting order with :func:`nsr.random.epoch_order`, as the step-by-step
    epoch does, so the same random numbers are consumed. ``lr`` is a number or a tensor
    broadcastable to ``[P, W]``. Returns ``(w [P, W], velocity [P, W] or None, loss [P])``, loss
    the last epoch's mean over its steps (NaN without epochs). ``order`` ``[P, S]``: the visiting
    order of a single epoch drawn by the caller (the one :func:`epoch_order` would draw from
    ``generator``), used where the samples are shuffled.
    """
    fam = rep.kernel
    P, W = w.shape
    dev = w.device
    S = samples[0].shape[1] if samples is not None else fam.num_samples
    b = S if batch_size is None else min(batch_size, S)
    shuffled = shuffle and batch_size is not None and batch_size < S and S > 1
    w = w.detach()
    if epochs == 0:
        return w, velocity, torch.full((P,), float("nan"), dtype=w.dtype, device=dev)
    if order is not None and (epochs != 1 or tuple(order.shape) != (P, S)):
        raise ValueError(f"order: one epoch's [{P}, {S}] visiting order, got {tuple(order.shape)} for {epochs} epochs")
    if not shuffled:
        orders = lambda: None  # noqa: E731
    elif order is not None:
        orders = lambda: order  # noqa: E731
    else:
        orders = lambda: epoch_order(P, S, True, generator, dev)  # noqa: E731
    if _native(fam, w, velocity, source, *(samples or ()), lr if isinstance(lr, torch.Tensor) else None):
        res = _train_native(rep, w, epochs, lr, b, momentum, velocity, source, samples, orders, shuffled)
        if res is not None:
            return res
    return _train_eager(rep, w, epochs, lr, b, momentum, velocity, source, samples, orders)


def _native_lr(lr, P):
    """``(lr tensor, stride)`` for the native kernels, or None for shapes they do not take."""
    if not isinstance(lr, torch.Tensor):
        return (ctypes.c_float * 1)(float(lr)), 0
    if lr.numel() == 1:
        return lr.detach().reshape(1).contiguous(), 0
    if lr.dim() in (1, 2) and lr.shape[0] == P and lr.numel() == P:
        return lr.detach().reshape(P).contiguous(), 1
    return None


def _train_native(rep, w, epochs, lr, b, momentum, velocity, source, samples, orders, shuffled):
    fam = rep.kernel
    P, W = w.shape
    lrs = _native_lr(lr, P)
    if lrs is None:
        return None
    lr_t, lr_stride = lrs
    w = w.contiguous()
    out = empty(P, W)  # the kernels read w and write out; later epochs work in place
    vel = None
    if momentum:
        vel = velocity.detach().clone().contiguous() if velocity is not None else empty(P, W)
    state = {"src": w, "vel_init": velocity is not None}
    loss = empty(P)

    def run(n_epochs, order, src, self_samples, X, Y):
        fam.native_train(w=state["src"], out=out, vel=vel, vel_init=state["vel_init"], loss=loss, src=src,
                         self_samples=self_samples, X=X, Y=Y, order=order, batch=b, lr=lr_t, lr_stride=lr_stride,
                         momentum=momentum, epochs=n_epochs)
        state["src"] = out
        state["vel_init"] = state["vel_init"] or vel is not None

    if samples is not None or not fam.reads_genome:  # fixed samples, or samples torch computes (aggregates)
        fixed = fam.native_prepare(*samples) if samples is not None else (
            fam.native_prepare(*rep.samples(source.detach())) if source is not None else None)
        per_epoch = shuffled or fixed is None
        for _ in range(epochs if per_epoch else 1):
            X, Y = fixed if fixed is not None else fam.native_prepare(*rep.samples(state["src"]))
            run(1 if per_epoch else epochs, orders(), None, False, X, Y)
    else:  # the kernel reads its samples from the genomes (weightwise, recurrent)
        src = None if source is None else source.detach().contiguous()
        if shuffled:
            for _ in range(epochs):
                run(1, orders(), src, src is None, None, None)
        else:
            run(epochs, None, src, src is None, None, None)
    return out, (vel if momentum else velocity), loss


def _train_eager(rep, w, epochs, lr, b, momentum, velocity, source, samples, orders):
    fam = rep.kernel
    P, W = w.shape
    dev = w.device
    lr_t = lr if isinstance(lr, torch.Tensor) else torch.tensor(float(lr), dtype=w.dtype, device=dev)
    mom = torch.tensor(float(momentum), dtype=w.dtype, device=dev) if momentum else 0.0
    out = w.clone()  # [P, W], updated chunk by chunk, epoch by epoch
    vel = None if velocity is None else velocity.detach().clone()
    loss = torch.empty(P, dtype=w.dtype, device=dev)
    parts = chunks(P, chunk_size(P, fam.chunk_floats(b), dev))

    def chunk_samples(p0, p1, wT):
        if samples is not None:
            return fam.samples_pl_from(samples[0][p0:p1], samples[1][p0:p1])
        if not fam.reads_genome:  # samples computed by torch in the particle-first layout
            return fam.samples_pl_from(*rep.samples(out[p0:p1] if source is None else source[p0:p1]))
        return fam.samples_pl(wT if source is None else source[p0:p1].t().contiguous())

    for _ in range(epochs):
        order = orders()
        orderT = None if order is None else order.t()  # [S, P]
        vel_parts = []
        for p0, p1 in parts:
            wT = out[p0:p1].t().contiguous()  # [W, c]
            vT = None if vel is None else vel[p0:p1].t().contiguous()
            xs, ys = chunk_samples(p0, p1, wT)
            o = None if orderT is None else orderT[:, p0:p1].contiguous()
            wT, vT, l_c = fam.epoch(wT, vT, xs, ys, o, b, lr_chunk(lr_t, p0, p1, P), mom)
            out[p0:p1] = wT.t()
            loss[p0:p1] = l_c
            if vT is not None:
                if vel is None:
                    vel_parts.append(vT.t())
                else:
                    vel[p0:p1] = vT.t()
        if vel_parts:
            vel = torch.cat(vel_parts).contiguous()
    return out, vel, loss


def loss_and_grad(rep, w, x, y):
    """Per-particle loss ``[P]`` and gradient ``[P, W]`` on particle-first samples ``x, y``."""
    fam = rep.kernel
    if _native(fam, w, x, y):
        res = fam.native_loss_grad(w, x, y)
        if res is not None:
            return res
    P = w.shape[0]
    size = chunk_size(P, fam.chunk_floats(x.shape[1]), w.device)
    loss = torch.empty(P, dtype=w.dtype, device=w.device)
    grad = torch.empty_like(w)
    for p0, p1 in chunks(P, size):
        xs, ys = fam.samples_pl_from(x[p0:p1], y[p0:p1])
        l_c, gT = fam.loss_grad(w[p0:p1].t().contiguous(), xs, ys)
        loss[p0:p1] = l_c
        grad[p0:p1] = gT.t()
    return loss, grad


def apply(rep, a, b):
    """``[P, W]``: network ``a[i]`` applied to (the samples of) genome ``b[i]``, for families that
    read the samples from the genome itself (weightwise, recurrent)."""
    fam = rep.kernel
    P, W = a.shape
    if _native(fam, a, b):
        return fam.native_apply(a, b)
    out = torch.empty_like(b)
    for p0, p1 in chunks(P, chunk_size(P, fam.apply_floats, a.device)):
        out[p0:p1] = fam.apply_pl(a[p0:p1].t().contiguous(), b[p0:p1].t().contiguous()).t()
    return out
