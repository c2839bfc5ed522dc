"""The aggregating replicator's samples: the genome cut into chunks, each reduced to one number.

:func:`aggregate` is the definition (torch's ``mean`` or ``amax`` of every chunk).
:class:`AggregatesKernel`, the aggregating replicator's MLP kernel family, makes the same numbers
inside the native training kernel (``aggregates.h``): a self-training or learn_from epoch then runs
no torch operation, the kernel reading its one sample from the genome as weightwise's does.

The native aggregates reproduce torch's order of float32 operations on a contiguous row, which
depends on the width of torch's CPU vectors (8 floats in torch's AVX2 kernels; see
``aggregates.h``). On first use a family checks, bit for bit, the native aggregates of a set of
genomes with extreme values against :func:`aggregate` for each candidate width; where none agrees
it leaves the aggregates to torch (``reads_genome`` False), so the results never depend on which
computes them.
"""
from __future__ import annotations

import ctypes

import torch

from nsr.kernels.build import native_tensors
from nsr.kernels.mlp import LIBRARY, MLPKernel
from nsr.kernels.parallel import empty, run

NATIVE = True  # the native kernels make the aggregates where they equal torch's (False: torch, the same bits)
AGGREGATOR_CODES = {"mean": 0, "max": 1}
VECTOR_WIDTHS = (8, 16, 4)  # torch's float vectors: AVX2 (and its default build), AVX512, 128-bit
_widths: dict = {}  # (aggregator, bounds) -> the vector width that reproduces torch, or None
_descriptions: dict = {}  # (aggregator, bounds, width) -> its C description (kept out of pickled objects)


def aggregate(b: torch.Tensor, bounds, aggregator: str) -> torch.Tensor:
    """``[P, A]``: the aggregates of genomes ``b [P, W]``, chunk ``a`` being ``b[:, s:e]`` for
    ``(s, e) = bounds[a]``, reduced by its mean or its max."""
    cols = [b[:, s:e].mean(1) if aggregator == "mean" else b[:, s:e].amax(1) for s, e in bounds]
    return torch.stack(cols, dim=1)


def description(bounds, aggregator: str, width: int):
    """The C int array ``{aggregator, width, A, bounds...}`` that ``aggregates.h`` reads (cached)."""
    key = (aggregator, tuple(tuple(b) for b in bounds), width)
    if key not in _descriptions:
        edges = [s for s, _ in bounds] + [bounds[-1][1]]
        _descriptions[key] = (ctypes.c_int * (3 + len(edges)))(AGGREGATOR_CODES[aggregator], width, len(bounds), *edges)
    return _descriptions[key]


def native_aggregate(b: torch.Tensor, bounds, aggregator: str, width: int) -> torch.Tensor:
    """``[P, A]``: the aggregates of float32 CPU genomes ``b`` as the native kernels make them,
    with torch's vectors taken as ``width`` floats wide."""
    if LIBRARY.load() is None:
        raise RuntimeError(f"native kernels unavailable: {LIBRARY.error or 'disabled'}")
    b = b.detach().contiguous()
    P, W = b.shape
    out = empty(P, len(bounds))
    agg = description(bounds, aggregator, width)

    def call(p0, p1):
        return LIBRARY.call("nsr_mlp_aggregate", P=p1 - p0, W=W, agg=agg,
                            b=ctypes.c_void_p(b.data_ptr() + p0 * W * 4), out=ctypes.c_void_p(out.data_ptr() + p0 * len(bounds) * 4))

    run("mlp_aggregate", P, call)
    return out


def extreme_genomes(W: int, seed: int = 0, per_kind: int = 64) -> torch.Tensor:
    """``[5 * per_kind, W]`` float32 genomes that tell torch's orders of summation apart: values
    of every magnitude and sign, signed zeros among negatives (the max's ties), infinities, NaNs,
    subnormals and the largest floats sprinkled among ordinary values, sums that cancel, and NaNs
    of four signs and payloads (which of two NaNs a sum keeps)."""
    g = torch.Generator().manual_seed(seed)
    n = (per_kind, W)
    wide = torch.randn(n, generator=g) * torch.exp2(torch.randint(-40, 40, n, generator=g).float())
    pick = torch.randint(0, 3, n, generator=g)
    zeros = torch.where(pick == 0, 0.0, torch.where(pick == 1, -0.0, -torch.rand(n, generator=g)))
    special = torch.tensor([float("inf"), -float("inf"), float("nan"), 1e-42, -1e-42, 3.4e38, -3.4e38, 0.0, -0.0])
    sprinkled = torch.randn(n, generator=g)
    hit = torch.rand(n, generator=g) < 0.15
    sprinkled[hit] = special[torch.randint(0, len(special), (int(hit.sum()),), generator=g)]
    cancelling = torch.randn(n, generator=g) * 1e30
    cancelling[:, 1::2] = -cancelling[:, 0::2][:, : W // 2] + torch.randn(per_kind, W // 2, generator=g)
    # NaNs 0x7FC00000 (torch's), 0x7FC00123, 0xFFC00456, 0xFFC00000 (x86's default NaN)
    payloads = torch.tensor([0x7FC00000, 0x7FC00123, -0x3FFBAA, -0x400000], dtype=torch.int32).view(torch.float32)
    nans = torch.randn(n, generator=g) * 1e3
    hit = torch.rand(n, generator=g) < 0.3
    nans[hit] = payloads[torch.randint(0, len(payloads), (int(hit.sum()),), generator=g)]
    return torch.cat([wide, zeros, sprinkled, cancelling, nans]).contiguous()


def torch_vector_width(bounds, aggregator: str):
    """The vector width with which the native aggregates equal torch's bit for bit on
    :func:`extreme_genomes`, or None (then torch computes the aggregates). Checked once per layout."""
    key = (aggregator, tuple(tuple(b) for b in bounds))
    if LIBRARY.load() is None:
        return None
    if key not in _widths:
        b = extreme_genomes(bounds[-1][1])
        want = aggregate(b, bounds, aggregator).view(torch.int32)
        _widths[key] = next((v for v in VECTOR_WIDTHS
                             if torch.equal(native_aggregate(b, bounds, aggregator, v).view(torch.int32), want)), None)
    return _widths[key]


class AggregatesKernel(MLPKernel):
    """The MLP family of an aggregating replicator: one sample per genome, its aggregates (as the
    inputs and as the targets), made inside the native training kernel where they equal torch's
    bit for bit (``reads_genome``), else by :func:`aggregate` before each epoch."""

    def __init__(self, shapes, activation: str, bounds, aggregator: str):
        self.shapes, self.activation, self.ids = list(shapes), activation, None
        self.num_weights = sum(i * o for i, o in self.shapes)
        self.num_samples = 1
        self.dims = [i for i, _ in self.shapes] + [self.shapes[-1][1]]
        self.bounds, self.aggregator = [tuple(b) for b in bounds], aggregator
        if self.dims[0] != len(self.bounds) or self.dims[-1] != len(self.bounds):
            raise ValueError(f"an AggregatesKernel maps its {len(self.bounds)} aggregates to as many, got {self.dims}")

    @property
    def reads_genome(self) -> bool:
        """Whether the native kernel makes the aggregates itself (the same bits as torch's)."""
        return self.native_width() is not None

    def native_width(self):
        """Torch's vector width the native aggregates follow, or None where they are not used."""
        if not NATIVE or not self.native_ready():
            return None
        return torch_vector_width(self.bounds, self.aggregator)

    def aggregate(self, b: torch.Tensor) -> torch.Tensor:
        """``[P, A]``: the aggregates of genomes ``b [P, W]`` (natively for contiguous float32 CPU
        genomes where that gives torch's bits, else by torch)."""
        width = self.native_width() if b.is_contiguous() and native_tensors(b) else None
        if width is None:
            return aggregate(b, self.bounds, self.aggregator)
        return native_aggregate(b, self.bounds, self.aggregator, width)

    # ---- eager: the aggregates by torch, of particle-first rows as the replicator's samples ----
    def samples_pl(self, bT):
        """Genomes ``bT [W, P]`` as input columns ``[1, 1, P]`` of their aggregates and targets ``[1, A, P]``."""
        agg = aggregate(bT.t().contiguous(), self.bounds, self.aggregator)[:, None, :]  # [P, 1, A]
        return self.samples_pl_from(agg, agg)

    def apply_pl(self, aT, bT):
        raise NotImplementedError("an aggregating network's outputs are its aggregates: see Aggregating.apply")

    def native_apply(self, a, b):
        raise NotImplementedError("an aggregating network's outputs are its aggregates: see Aggregating.apply")

    # ---- native -----------------------------------------------------------------------------------
    def native_train(self, *, w, out, vel, vel_init, loss, src, self_samples, X, Y, order, batch, lr, lr_stride,
                     momentum, epochs):
        agg = None if X is not None else description(self.bounds, self.aggregator, self.native_width())
        self._native_train(w, out, vel, vel_init, loss, src, self_samples, X, Y, 1, 0 if X is not None else 2,
                           None, agg, order, batch, lr, lr_stride, momentum, epochs)
