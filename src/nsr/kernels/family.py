"""What a kernel family is: the one object through which a replicator hands its training and
self-application to fused kernels.

A replicator with fused kernels sets ``kernel`` to an instance of a family (e.g.
``MLPKernel(shapes, activation)``, ``RNNKernel(shapes, activation)``), built from its own layout;
the drivers of :mod:`nsr.kernels.driver` then run whole epochs, ``loss_and_grad`` and ``apply``
through it. A replicator without one (``kernel = None``) trains through autograd. The interface
below is all the drivers use; see ``docs/extending.md`` for adding a family.

Layouts: particle-first tensors are ``[P, ...]`` (what users see); the eager kernels work
particle-last (``wT [W, P]``, samples ``[..., P]``), see :mod:`nsr.kernels.ops`.
"""
from __future__ import annotations

import torch


class KernelFamily:
    """Fused kernels for one family of networks, bound to a replicator's dimensions.

    Attributes: ``shapes`` (the genome's kernels ``[(inputs, outputs), ...]``), ``activation``,
    ``reads_genome`` (True: the kernels make the samples of a genome themselves, e.g. weightwise
    and recurrent; False: the driver calls the replicator's ``samples`` and hands them over),
    ``num_samples`` (samples per genome when ``reads_genome``), ``library`` (the
    :class:`nsr.kernels.build.Library` of its native code, or None for eager only).
    """

    shapes: list
    activation: str
    reads_genome: bool = False
    num_samples: int = 1
    library = None

    # ---- sizes, for chunking the eager kernels --------------------------------------------------
    def chunk_floats(self, batch: int) -> int:
        """Floats per particle of the largest temporary of a training step on ``batch`` samples."""
        raise NotImplementedError

    @property
    def apply_floats(self) -> int:
        """Floats per particle of the largest temporary of a self-application."""
        raise NotImplementedError

    # ---- eager kernels (any device and dtype), particle-last --------------------------------------
    def samples_pl(self, bT: torch.Tensor):
        """``(xs, ys)``: the samples of genomes ``bT [W, P]`` (``reads_genome`` families)."""
        raise NotImplementedError

    def samples_pl_from(self, x: torch.Tensor, y: torch.Tensor):
        """``(xs, ys)``: particle-first samples ``x, y`` ``[P, S, ...]`` in the particle-last layout."""
        raise NotImplementedError

    def epoch(self, wT, velT, xs, ys, orderT, batch: int, lr, momentum):
        """One SGD epoch on samples ``(xs, ys)``, ``batch`` a step, in the order ``orderT [S, P]``
        (None: sample order). Returns ``(wT, velT, loss [P])``, the loss averaged over the steps."""
        raise NotImplementedError

    def loss_grad(self, wT, xs, ys):
        """Per-particle MSE ``[P]`` and its gradient ``gT [W, P]`` on samples ``(xs, ys)``."""
        raise NotImplementedError

    def apply_pl(self, aT, bT):
        """``[W, P]``: networks ``aT`` applied to genomes ``bT`` (``reads_genome`` families)."""
        raise NotImplementedError

    # ---- native kernels (float32 CPU), particle-first ----------------------------------------------
    def native_ready(self) -> bool:
        """Whether this family's native library is enabled and built."""
        return self.library is not None and self.library.load() is not None

    def native_prepare(self, x, y):
        """Particle-first samples as the contiguous arrays the native code reads."""
        return x.detach().contiguous(), y.detach().contiguous()

    def native_train(self, *, w, out, vel, vel_init, loss, src, self_samples, X, Y, order, batch, lr, lr_stride,
                     momentum, epochs) -> None:
        """``epochs`` epochs of SGD of ``w [P, W]`` into ``out``; momentum buffers ``vel`` in place
        (``vel_init``: they hold values), the last epoch's loss into ``loss [P]``. Samples: ``X, Y``
        (prepared), else genomes ``src [P, W]``, else each particle's own at every epoch's start
        (``self_samples``). ``order [P, S]`` or None; ``lr`` ``[1]`` (stride 0) or ``[P]`` (stride 1)."""
        raise NotImplementedError

    def native_loss_grad(self, w, x, y):
        """``(loss [P], grad [P, W])`` on particle-first samples, or None where the native code does
        not take them."""
        return None

    def native_apply(self, a, b):
        """``[P, W]``: networks ``a`` applied to genomes ``b`` (``reads_genome`` families)."""
        raise NotImplementedError
