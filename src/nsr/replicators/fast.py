"""Fused kernels: self-application and whole training epochs of populations.

Every replicator is a tiny network (a few dozen weights) evaluated for P particles at once. Two
implementations of the same arithmetic live behind :func:`train`, :func:`loss_and_grad` and
:func:`apply` (which ``nsr.training`` and the replicators call; nothing else needs to):

- **native** (float32 on CPU): the C kernels of :mod:`nsr.replicators.native`, built on first use;
  a block of 8 particles runs a whole epoch in registers (about 100 bytes of memory traffic per
  particle and epoch). Threads: ``torch.get_num_threads()``.
- **eager torch** (any device and dtype, and the fallback): the functions below, in a
  particle-last layout. A population is ``wT [W, P]``, a kernel is a view ``[inputs, outputs, P]``
  of its rows, and every multiply-add is one elementwise op over rows of P numbers. Sample
  inputs shared by all particles (the weightwise ids) stay ``[S, 1, 1]`` constants. On CPU the
  population is cut into cache-sized chunks of particles.

Both compute backpropagation by hand (through the dense layers; through time for the recurrent
replicator) and torch.optim.SGD's update, and agree with autograd to float rounding (tested).
Sums over samples are sequential (native) or pairwise by elementwise adds (eager), never torch
reductions, so a particle's numbers never depend on how many particles run beside it.

Switch the native kernels off with ``NSR_COMPILE=0`` or :func:`set_compile`.

>>> import torch
>>> from nsr.replicators import Weightwise
>>> rep = Weightwise()
>>> w = rep.init(5, generator=torch.Generator().manual_seed(0))
>>> x, y = rep.samples(w)
>>> torch.allclose(rep.apply(w, w), rep.forward(w, x)[:, :, 0], atol=1e-6)
True
"""
from __future__ import annotations

import ctypes

import torch

from nsr.replicators import native
from nsr.replicators.base import activate, activation_grad


def set_compile(enabled: bool) -> None:
    """Use the native (compiled) kernels where they apply (``True``), or only the eager torch ones."""
    native.set_enabled(enabled)


def compile_enabled() -> bool:
    """Whether the native kernels are switched on (``NSR_COMPILE=0`` switches them off)."""
    return native.enabled()


def backend(w: torch.Tensor) -> str:
    """``"native"`` or ``"eager"``: which kernels run for a population like ``w``."""
    return "native" if native.usable(w) else "eager"


# ---- chunking (eager kernels on CPU) ---------------------------------------------------------------
CHUNK_FLOATS = 1 << 19  # elements of the largest temporary per chunk on CPU (2 MiB in float32)
CHUNK_FLOATS_GPU = 1 << 27  # on GPUs (512 MiB): big kernels, bounded memory at 10^8 particles


def chunk_size(P: int, floats_per_particle: int, device: torch.device) -> int:
    """Particles per chunk: cache-sized chunks on CPUs, large ones on GPUs."""
    budget = CHUNK_FLOATS if device.type == "cpu" else CHUNK_FLOATS_GPU
    return max(256, budget // max(floats_per_particle, 1))


def _chunks(P: int, size: int):
    return [(p, min(p + size, P)) for p in range(0, P, size)]


# ---- dense layers, particle-last ----------------------------------------------------------------
def kernels(wT: torch.Tensor, shapes) -> list[torch.Tensor]:
    """Kernels of genomes ``wT [W, P]`` as views ``[inputs, outputs, P]`` (genome order)."""
    out, off = [], 0
    for i, o in shapes:
        out.append(wT[off:off + i * o].view(i, o, wT.shape[1]))
        off += i * o
    return out


def dense(cols, K: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
    """``z + sum_c cols[c] * K[c]``: a dense layer on input columns ``cols`` (each broadcastable to
    ``[B, 1, P]``; ``[B, 1, 1]`` for an input shared by all particles) with kernel ``K [I, O, P]``.
    Returns pre-activations ``[B, O, P]``."""
    for c in range(len(cols)):
        z = cols[c] * K[c] if z is None else z.addcmul(cols[c], K[c])
    return z


def columns(h: torch.Tensor) -> list[torch.Tensor]:
    """The columns ``[B, 1, P]`` of ``h [B, F, P]``."""
    return [h[:, j:j + 1] for j in range(h.shape[1])]


def bsum(t: torch.Tensor) -> torch.Tensor:
    """Sum over the leading (sample) axis of ``t [B, ...]`` by halving: elementwise adds only, so
    a particle's sum never depends on how many particles are computed alongside it (torch's
    reductions change their order when the other axes collapse to one element)."""
    while t.shape[0] > 1:
        h = t.shape[0] // 2
        s = t[:h] + t[h:2 * h]
        if t.shape[0] % 2:
            s[:1] += t[2 * h:]  # the odd one out joins the first partial sum
        t = s
    return t[0]


def sgd(wT, gT, velT, lr, momentum):
    """torch.optim.SGD's update (dampening 0, no Nesterov) in the particle-last layout."""
    if momentum:
        velT = gT if velT is None else velT * momentum + gT
        gT = velT
    return wT - lr * gT, velT


def _mse(out, yT):
    """Per-particle MSE ``[P]`` over all samples and outputs, and dL/d out."""
    e = out - yT
    n = e[..., 0].numel()
    return bsum(e.square().flatten(0, -2)) / n, e * (2.0 / n)


# ---- MLP replicators (weightwise, aggregating) --------------------------------------------------
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
    loss, delta = _mse(hs[-1], yT)  # [P], [B, O, P]
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


# ---- the recurrent replicator ---------------------------------------------------------------------
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
    loss, delta = _mse(hs[-1], yT)  # [P], [T, B, O, P]
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


# ---- drivers: [P, W] populations in, [P, W] out -----------------------------------------------------
EPOCHS = {"mlp": mlp_epoch, "rnn": rnn_epoch}
LOSS_GRADS = {"mlp": mlp_loss_grad, "rnn": rnn_loss_grad}


def _lr_chunk(lr, p0, p1, P):
    """The learning rate of particles p0..p1 in the particle-last layout (broadcastable to [W, c])."""
    if not isinstance(lr, torch.Tensor) or lr.dim() == 0:
        return lr
    lr2 = lr.reshape(1, -1) if lr.dim() == 1 else lr  # broadcastable to [P, W]
    return (lr2[p0:p1] if lr2.shape[0] == P and P > 1 else lr2).t()


def train(rep, w, epochs=1, lr=0.01, batch_size=1, momentum=0.0, shuffle=True, generator=None, velocity=None,
          source=None, samples=None):
    """``epochs`` epochs of SGD for every particle of ``w [P, W]``: what ``nsr.training`` runs.

    Samples: ``samples=(x, y)`` (particle-first, fixed), else those of genomes ``source [P, W]``
    (fixed; learn_from), else the particle's own genome at each epoch's start (self-training).
    Each epoch draws its visiting order with :func:`nsr.training.epoch_order`, as the
    step-by-step loop does, so the same random numbers are consumed. ``lr`` is a number or a
    tensor broadcastable to ``[P, W]``. Returns ``(w [P, W], velocity [P, W] or None, loss [P])``,
    loss the last epoch's mean over its steps (NaN without epochs).
    """
    from nsr.training import epoch_order  # training sits above the replicators

    P, W = w.shape
    dev = w.device
    S = samples[0].shape[1] if samples is not None else rep._num_samples
    b = S if batch_size is None else min(batch_size, S)
    shuffled = shuffle and batch_size is not None and batch_size < S and S > 1
    w = w.detach()
    if epochs == 0:
        return w, velocity, torch.full((P,), float("nan"), dtype=w.dtype, device=dev)
    orders = (lambda: epoch_order(P, S, True, generator, dev)) if shuffled else (lambda: None)
    if native.usable(w, velocity, source, *(samples or ()), lr if isinstance(lr, torch.Tensor) else None):
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
    P, W = w.shape
    lrs = _native_lr(lr, P)
    if lrs is None:
        return None
    lr_t, lr_stride = lrs
    w = w.contiguous()
    out = native.empty(P, W)  # the kernels read w and write out; later epochs work in place
    vel = None
    if momentum:
        vel = velocity.detach().clone().contiguous() if velocity is not None else native.empty(P, W)
    state = {"src": w, "vel_init": velocity is not None}
    loss = native.empty(P)
    kind, how = rep._fast, rep._native_samples

    def run(n_epochs, order, src, self_samples, X, Y):
        S, T = (X.shape[1], X.shape[2] if kind == "rnn" else 0) if X is not None else (W if kind == "mlp" else 1, W)
        native.train(kind, rep._native_dims, rep.activation, state["src"], out, vel, state["vel_init"], loss,
                     0 if X is not None else 1, src, self_samples, X, Y, S, T,
                     rep._native_ids() if kind == "mlp" and X is None else None, order, b, lr_t, lr_stride,
                     momentum, n_epochs)
        state["src"] = out
        state["vel_init"] = state["vel_init"] or vel is not None

    def prepared(x, y):
        if kind == "rnn":
            x, y = x[..., 0], y[..., 0]  # [P, S, T]: one feature per step
        return x.detach().contiguous(), y.detach().contiguous()

    if samples is not None or how is None:  # fixed samples, or samples torch computes (aggregates)
        fixed = prepared(*samples) if samples is not None else (
            prepared(*rep.samples(source.detach())) if source is not None else None)
        per_epoch = shuffled or fixed is None
        for _ in range(epochs if per_epoch else 1):
            X, Y = fixed if fixed is not None else prepared(*rep.samples(state["src"]))
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
    P, W = w.shape
    dev = w.device
    lr_t = lr if isinstance(lr, torch.Tensor) else torch.tensor(float(lr), dtype=w.dtype, device=dev)
    mom = torch.tensor(float(momentum), dtype=w.dtype, device=dev) if momentum else 0.0
    epoch_fn = EPOCHS[rep._fast]
    shapes, act = rep.shapes, rep.activation
    out = w.clone()  # [P, W], updated chunk by chunk, epoch by epoch
    vel = None if velocity is None else velocity.detach().clone()
    loss = torch.empty(P, dtype=w.dtype, device=dev)
    chunks = _chunks(P, chunk_size(P, rep._chunk_floats(b), dev))

    def chunk_samples(p0, p1, wT):
        if samples is not None:
            return rep._samples_pl_from(samples[0][p0:p1], samples[1][p0:p1])
        if rep._native_samples is None:  # samples computed by torch in the particle-first layout
            return rep._samples_pl_from(*rep.samples(out[p0:p1] if source is None else source[p0:p1]))
        return rep._samples_pl(wT if source is None else source[p0:p1].t().contiguous())

    for _ in range(epochs):
        order = orders()
        orderT = None if order is None else order.t()  # [S, P]
        vel_parts = []
        for p0, p1 in chunks:
            wT = out[p0:p1].t().contiguous()  # [W, c]
            vT = None if vel is None else vel[p0:p1].t().contiguous()
            xs, ys = chunk_samples(p0, p1, wT)
            o = None if orderT is None else orderT[:, p0:p1].contiguous()
            wT, vT, l_c = epoch_fn(shapes, act, wT, vT, xs, ys, o, b, _lr_chunk(lr_t, p0, p1, P), mom)
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
    if native.usable(w, x, y) and (rep._fast == "mlp" or x.shape[-1] == 1):
        if rep._fast == "rnn":
            x, y = x[..., 0], y[..., 0]  # [P, B, T]: one feature per step
        return native.loss_grad(rep._fast, rep._native_dims, rep.activation, w.detach().contiguous(),
                                x.detach().contiguous(), y.detach().contiguous())
    P = w.shape[0]
    size = chunk_size(P, rep._chunk_floats(x.shape[1]), w.device)
    loss = torch.empty(P, dtype=w.dtype, device=w.device)
    grad = torch.empty_like(w)
    lg = LOSS_GRADS[rep._fast]
    for p0, p1 in _chunks(P, size):
        xs, ys = rep._samples_pl_from(x[p0:p1], y[p0:p1])
        l_c, gT = lg(kernels(w[p0:p1].t().contiguous(), rep.shapes), rep.activation, xs, ys)
        loss[p0:p1] = l_c
        grad[p0:p1] = gT.t()
    return loss, grad


def apply(rep, a, b):
    """``[P, W]``: network ``a[i]`` applied to (the samples of) genome ``b[i]``, for replicators whose
    samples are read from the genome itself (weightwise, recurrent)."""
    P, W = a.shape
    if native.usable(a, b):
        a, b = a.detach().contiguous(), b.detach().contiguous()
        if rep._fast == "mlp":
            return native.mlp_apply(rep._native_dims, rep.activation, a, 1, b, None, W, rep._native_ids(), W)
        return native.rnn_apply(rep._native_dims, rep.activation, a, b)
    out = torch.empty_like(b)
    for p0, p1 in _chunks(P, chunk_size(P, rep._apply_floats, a.device)):
        out[p0:p1] = rep._apply_pl(a[p0:p1].t().contiguous(), b[p0:p1].t().contiguous()).t()
    return out


def forward_samples(rep, a, x):
    """``[P, S, O]``: outputs of MLP networks ``a [P, W]`` on particle-first inputs ``x [P, S, I]``."""
    P, S = x.shape[0], x.shape[1]
    if native.usable(a, x):
        O = rep.shapes[-1][1]
        out = native.mlp_apply(rep._native_dims, rep.activation, a.detach().contiguous(), 0, None,
                               x.detach().contiguous(), S, None, S * O)
        return out.view(P, S, O)
    out = torch.empty(P, S, rep.shapes[-1][1], dtype=a.dtype, device=a.device)
    for p0, p1 in _chunks(P, chunk_size(P, rep._chunk_floats(S), a.device)):
        cols = columns(x[p0:p1].permute(1, 2, 0).contiguous())
        out[p0:p1] = mlp_apply(rep.shapes, rep.activation, a[p0:p1].t().contiguous(), cols).permute(2, 0, 1)
    return out
