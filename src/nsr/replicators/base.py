"""What every replicator shares: the genome layout, initialisation, validation, the contract.

A population is one tensor ``w`` of shape ``[P, W]``: P particles, W weights each. The genome is
laid out layer by layer; each kernel ``[inputs, outputs]`` is flattened row-major
(``docs/science.md``). How to write a replicator of your own: ``docs/extending.md``.
"""
from __future__ import annotations

import inspect
import math

import numpy as np
import torch

from nsr import kernels as fused
from nsr.kernels.ops import ACTIVATIONS, activate, activation_grad  # noqa: F401  (re-exported)
from nsr.random import normal_from_uniform, uniform

def check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


ORTHOGONAL = ("keras2", "uniform")  # the orthogonal initialisers (Replicator.orthogonal)


def check_choice(name: str, value, choices) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


class Replicator:
    """A neural network architecture whose genome is its flat weight vector.

    Subclasses set ``self.shapes`` (the kernels, in genome order) and ``self.recurrent`` (the
    indices of kernels initialised orthogonally), and implement :meth:`samples` and
    :meth:`forward` in torch; that is enough to self-train (through autograd), self-apply, be
    classified, live in soups and be checkpointed. Optional: their own :meth:`apply`, an analytic
    :meth:`loss_and_grad`, and ``kernel``, a kernel family of :mod:`nsr.kernels` (fused
    training and self-application). See ``docs/extending.md``.
    """

    shapes: list[tuple[int, int]]
    recurrent: tuple[int, ...] = ()
    orthogonal: str = "keras2"  # how kernels in `recurrent` are drawn: "keras2" (published) or "uniform"
    activation: str = "linear"
    kernel = None  # a kernel family (nsr.kernels) bound to this replicator, or None: autograd

    # ---- layout ---------------------------------------------------------------------------
    @property
    def num_weights(self) -> int:
        """W, the number of weights of one genome."""
        return sum(i * o for i, o in self.shapes)

    @property
    def offsets(self) -> list[int]:
        out, off = [], 0
        for i, o in self.shapes:
            out.append(off)
            off += i * o
        return out

    def kernels(self, w: torch.Tensor) -> list[torch.Tensor]:
        """The kernels of genomes ``w`` ``[P, W]``, as views ``[P, inputs, outputs]``."""
        P = w.shape[0]
        return [w[:, off:off + i * o].view(P, i, o) for off, (i, o) in zip(self.offsets, self.shapes)]

    def check_weights(self, w, name: str = "w") -> torch.Tensor:
        """Raise ``ValueError`` unless ``w`` is a float tensor ``[P, W]`` of this replicator."""
        if not isinstance(w, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor of shape [P, {self.num_weights}], got {type(w).__name__}")
        if not w.is_floating_point():
            raise ValueError(f"{name} must be a floating point tensor, got dtype {w.dtype}")
        if w.dim() != 2 or w.shape[1] != self.num_weights:
            raise ValueError(f"{name} must have shape [P, {self.num_weights}] for {self!r}, got {list(w.shape)}")
        return w

    # ---- initialisation ---------------------------------------------------------------------
    def _num_init_uniforms(self) -> int:
        n = 0
        for k, (i, o) in enumerate(self.shapes):
            n += 2 * i * o if k in self.recurrent else i * o
        return n

    def init(self, P: int, generator=None, device=None) -> torch.Tensor:
        """``[P, W]`` float32 random genomes with Keras' default initialisers.

        Kernels are glorot-uniform (limit sqrt(6 / (fan_in + fan_out))); recurrent kernels are
        orthogonal, drawn as ``self.orthogonal`` says (:func:`orthogonal_keras2`, the published one, or
        :func:`orthogonal_uniform`). Deterministic for a given ``torch.Generator`` (or
        :class:`nsr.random.KeyedStream`).
        """
        check_positive_int("P", P)
        u = uniform(generator, P, self._num_init_uniforms(), device=device)  # [P, U]
        parts, pos = [], 0
        for k, (i, o) in enumerate(self.shapes):
            if k in self.recurrent:
                n = i * o
                a = normal_from_uniform(u[:, pos:pos + n].double(), u[:, pos + n:pos + 2 * n].double())
                pos += 2 * n
                q = ORTHOGONAL_INITS[self.orthogonal](a.view(P, i, o))  # [P, i, o]
                parts.append(q.to(u.dtype).reshape(P, n))
            else:
                limit = math.sqrt(6.0 / (i + o))
                parts.append((u[:, pos:pos + i * o] * 2.0 - 1.0) * limit)
                pos += i * o
        return torch.cat(parts, dim=1).contiguous()

    # ---- the contract ------------------------------------------------------------------------
    def samples(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training samples ``(x [P, S, ...], y [P, S, ...])`` made from genomes ``w``."""
        raise NotImplementedError

    def forward(self, w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Outputs of the networks ``w`` ``[P, W]`` on inputs ``x`` ``[P, S, ...]``."""
        raise NotImplementedError

    def apply(self, a: torch.Tensor, b: torch.Tensor, generator=None) -> torch.Tensor:
        """``[P, W]``: network ``a[i]`` applied to genome ``b[i]``; ``apply(w, w)`` is self-application.

        The default: the outputs of ``a`` on the samples of ``b``, flattened in sample order, which
        must be one number per genome position (as when the targets are the genome itself);
        replicators whose outputs are not (e.g. aggregating) define their own.
        """
        self.check_weights(a, "a")
        self.check_weights(b, "b")
        if a.shape[0] != b.shape[0]:
            raise ValueError(f"a and b must hold the same number of particles, got {a.shape[0]} and {b.shape[0]}")
        if self.kernel is not None and self.kernel.reads_genome:
            return fused.apply(self, a, b)
        out = self.forward(a, self.samples(b)[0]).reshape(a.shape[0], -1)  # [P, S * outputs]
        if out.shape[1] != self.num_weights:
            raise ValueError(f"{type(self).__name__}: its outputs on a genome's samples are {out.shape[1]} numbers, "
                             f"not one per weight ({self.num_weights}); define apply")
        return out

    def loss_and_grad(self, w, x, y):
        """Per-particle MSE ``[P]`` and its gradient ``[P, W]``: by the kernel family's hand-written
        backpropagation where there is one (equal to autograd to float precision; tested), else autograd."""
        if self.kernel is not None:
            return fused.loss_and_grad(self, w, x, y)
        with torch.enable_grad():
            wv = w.detach().requires_grad_(True)
            loss = mse(self.forward(wv, x), y)  # [P]
            (g,) = torch.autograd.grad(loss.sum(), wv)
        return loss.detach(), g

    # ---- identity ---------------------------------------------------------------------------
    @property
    def hparams(self) -> dict:
        """The constructor arguments: enough to rebuild this replicator. The default reads the
        attributes named like the parameters of ``__init__``."""
        params = inspect.signature(type(self).__init__).parameters.values()
        return {p.name: getattr(self, p.name) for p in params if p.name != "self" and hasattr(self, p.name)
                and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}

    @property
    def class_path(self) -> str:
        """The import path of this replicator's class (``nsr.replicators.Weightwise`` for the built-ins)."""
        cls = type(self)
        if cls.__module__.startswith("nsr.replicators."):
            return f"nsr.replicators.{cls.__qualname__}"
        return f"{cls.__module__}.{cls.__qualname__}"

    def to_config(self) -> dict:
        return {"class_path": self.class_path, "init_args": dict(self.hparams)}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hparams.items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.hparams == other.hparams

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(self.hparams.items()))))


def mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-particle mean squared error ``[P]`` over every sample and output of that particle."""
    return (out - y).pow(2).flatten(1).mean(1)


def orthogonal_keras2(a: torch.Tensor) -> torch.Tensor:
    """The orthogonal initialiser of Keras 2 (2.1-2.2, the published runs) on a batch of standard normal
    matrices ``a`` ``[P, r, c]``: numpy's ``u, _, v = svd(a, full_matrices=False)``, then ``q = u if
    u.shape == (r, c) else v`` (gain 1).

    The factor (its signs) is a deterministic function of ``a`` fixed by LAPACK's SVD as numpy calls it
    (float64), so this runs numpy's batched SVD on the CPU whatever the device (torch's SVD may pick other
    signs, e.g. for wide matrices). Its law is not uniform over orthogonal matrices: a 2x2 kernel is
    always a reflection (determinant -1), a 3x3 one always a rotation.
    """
    P, r, c = a.shape
    u, _, vh = np.linalg.svd(a.detach().to("cpu", torch.float64).numpy(), full_matrices=False)  # [P, r, m], [P, m, c]
    q = u if r >= c else vh  # the factor of shape [r, c], as Keras picks it
    return torch.from_numpy(np.ascontiguousarray(q)).to(a.device)


def orthogonal_uniform(a: torch.Tensor) -> torch.Tensor:
    """An orthogonal matrix uniform over the orthogonal group (Haar; TensorFlow 2's and PyTorch's
    initialiser): QR of the normal matrices ``a`` ``[P, r, c]`` with the signs of R's diagonal."""
    P, r, c = a.shape
    flat = a if r >= c else a.transpose(1, 2)  # [P, max, min]
    q, rr = torch.linalg.qr(flat)
    d = torch.diagonal(rr, dim1=-2, dim2=-1).sign()
    d = torch.where(d == 0, torch.ones_like(d), d)
    q = q * d[:, None, :]
    return q if r >= c else q.transpose(1, 2)


ORTHOGONAL_INITS = {"keras2": orthogonal_keras2, "uniform": orthogonal_uniform}


class MLPReplicator(Replicator):
    """A replicator whose network is a stack of dense layers (no biases), e.g. weightwise and
    aggregating; its kernel family is :class:`nsr.kernels.MLPKernel`."""

    def forward(self, w, x):
        h = x  # [P, S, in]
        for K in self.kernels(w):
            h = activate(self.activation, torch.bmm(h, K))  # [P, S, out]
        return h
