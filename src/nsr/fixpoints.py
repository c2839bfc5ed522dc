"""Fixpoints of self-application: classification, distance, shares, and the robustness of
fixpoints to noise (docs/science.md, "Self-replication as a fixpoint"). Pure functions over
populations ``[P, W]``.

>>> import torch
>>> from nsr.replicators import Weightwise
>>> rep = Weightwise()
>>> w = torch.cat([rep.identity_genome(), torch.zeros(1, 14), torch.full((1, 14), float("nan"))])
>>> [FixpointClass(int(c)).name for c in classify(rep, w)]
['NONTRIVIAL', 'ZERO', 'DIVERGENT']
"""
from __future__ import annotations

import math
from enum import IntEnum

import torch

from nsr.random import add_noise

SECOND_ORDER_TESTS = ("orbit", "same_network")


class FixpointClass(IntEnum):
    """The categories of a genome under self-application, tested in this order."""

    DIVERGENT = 0
    ZERO = 1
    NONTRIVIAL = 2
    SECOND_ORDER = 3
    OTHER = 4


CLASS_NAMES = tuple(c.name.lower() for c in FixpointClass)  # divergent, zero, nontrivial, second_order, other


def check_epsilon(epsilon) -> float:
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not math.isfinite(epsilon) or epsilon <= 0:
        raise ValueError(f"epsilon must be a finite number > 0, got {epsilon!r}")
    return float(epsilon)


def is_divergent(w: torch.Tensor) -> torch.Tensor:
    """``[P]`` bool: some weight is NaN or +-inf."""
    # w * 0 is 0 for a finite weight and NaN otherwise, so a row sums to 0 exactly when every weight
    # is finite (the same as ~isfinite(w).all(1), in two passes over w instead of five)
    return (w * 0).sum(dim=1) != 0


def is_fixpoint(rep, w: torch.Tensor, epsilon: float = 1e-4, generator=None) -> torch.Tensor:
    """``[P]`` bool: |F(w)_i - w_i| < epsilon for every weight i."""
    epsilon = check_epsilon(epsilon)
    return _close(rep.apply(w, w, generator=generator), w, epsilon)


def _close(a, b, epsilon):
    return ((a - b).abs() < epsilon).all(dim=1)  # NaN compares False


def classify(rep, w: torch.Tensor, epsilon: float = 1e-4, second_order: str = "orbit", generator=None) -> torch.Tensor:
    """``LongTensor[P]`` of :class:`FixpointClass` values for genomes ``w`` ``[P, W]``.

    divergent: some weight NaN/inf; zero: F(w) = w and every |w_i| < epsilon; nontrivial:
    F(w) = w otherwise; second order: F(F(w)) = w but not F(w) = w; other: none of these.
    ``second_order="orbit"`` tests the period-2 orbit F(F(w)) (the definition);
    ``"same_network"`` tests N_w(N_w(w)), the network w applied twice (the published code).
    """
    epsilon = check_epsilon(epsilon)
    if second_order not in SECOND_ORDER_TESTS:
        raise ValueError(f"second_order must be one of {', '.join(SECOND_ORDER_TESTS)}, got {second_order!r}")
    rep.check_weights(w)
    fw = rep.apply(w, w, generator=generator)  # [P, W]
    fixed = _close(fw, w, epsilon)
    zero = fixed & (w.abs() < epsilon).all(dim=1)
    ffw = rep.apply(fw, fw, generator=generator) if second_order == "orbit" else rep.apply(w, fw, generator=generator)
    second = _close(ffw, w, epsilon)
    c = torch.full((w.shape[0],), int(FixpointClass.OTHER), dtype=torch.long, device=w.device)
    c[second] = FixpointClass.SECOND_ORDER
    c[fixed] = FixpointClass.NONTRIVIAL
    c[zero] = FixpointClass.ZERO
    c[is_divergent(w)] = FixpointClass.DIVERGENT
    return c


def classify_and_distance(rep, w: torch.Tensor, epsilon: float = 1e-4, second_order: str = "orbit",
                          generator=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(classify(rep, w, ...), distance(rep, w))`` in one pass, with the same results: F(w) is
    computed once for both (two self-applications instead of three), and each test is one
    maximum per particle (``amax`` propagates NaN and inf, so "every |x_i| < epsilon" is
    "max_i |x_i| < epsilon", false for a NaN as the elementwise test is)."""
    epsilon = check_epsilon(epsilon)
    if second_order not in SECOND_ORDER_TESTS:
        raise ValueError(f"second_order must be one of {', '.join(SECOND_ORDER_TESTS)}, got {second_order!r}")
    rep.check_weights(w)
    fw = rep.apply(w, w, generator=generator)  # [P, W]
    ffw = rep.apply(fw, fw, generator=generator) if second_order == "orbit" else rep.apply(w, fw, generator=generator)
    d = (fw - w).abs().amax(dim=1)  # [P] the fixpoint distance (NaN where F(w) or w has a NaN)
    size = w.abs().amax(dim=1)  # [P] not finite: divergent
    fixed, second = d < epsilon, (ffw - w).abs().amax(dim=1) < epsilon
    c = torch.where(second, int(FixpointClass.SECOND_ORDER), int(FixpointClass.OTHER))
    c = torch.where(fixed, torch.where(size < epsilon, int(FixpointClass.ZERO), int(FixpointClass.NONTRIVIAL)), c)
    c = torch.where(torch.isfinite(size), c, int(FixpointClass.DIVERGENT))
    return c, torch.nan_to_num(d, nan=math.inf, posinf=math.inf)


def distance(rep, w: torch.Tensor, generator=None) -> torch.Tensor:
    """``[P]`` fixpoint distance max_i |F(w)_i - w_i|; inf where w or F(w) is not finite."""
    rep.check_weights(w)
    d = (rep.apply(w, w, generator=generator) - w).abs().amax(dim=1)
    return torch.where(torch.isfinite(d), d, torch.full_like(d, math.inf))


def aggregate_distance(rep, w: torch.Tensor) -> torch.Tensor:
    """``[P]`` for an Aggregating replicator: max_j |N_w(agg(w))_j - agg(w)_j|, the distance of
    the aggregates from being a fixpoint (inf where not finite)."""
    if not hasattr(rep, "apply_aggregates"):
        raise ValueError(f"rep must be an Aggregating replicator, got {rep!r}")
    d = (rep.apply_aggregates(w, w) - rep.aggregate(w)).abs().amax(dim=1)
    return torch.where(torch.isfinite(d), d, torch.full_like(d, math.inf))


def is_aggregate_fixpoint(rep, w: torch.Tensor, epsilon: float = 1e-4) -> torch.Tensor:
    """``[P]`` bool: an Aggregating genome whose aggregates are reproduced within epsilon (it need
    not be a fixpoint weight by weight)."""
    return aggregate_distance(rep, w) < check_epsilon(epsilon)


def counts(classes: torch.Tensor) -> torch.Tensor:
    """``LongTensor[5]``: how many particles fall in each :class:`FixpointClass`."""
    return torch.bincount(classes.flatten(), minlength=len(FixpointClass))


def shares(classes: torch.Tensor) -> dict[str, float]:
    """Each class's share of the population, keyed by lower-case name; the shares sum to 1."""
    c = counts(classes).double()
    total = max(float(c.sum()), 1.0)
    return {name: float(v) / total for name, v in zip(CLASS_NAMES, c)}


def vergence_times(rep, w: torch.Tensor, max_steps: int = 100, epsilon: float = 1e-4) -> tuple[torch.Tensor, torch.Tensor]:
    """Self-apply genomes ``w`` ``[N, W]`` up to ``max_steps`` times and time them (the paper's
    robustness measure). Returns ``(time_to_vergence, time_as_fixpoint)``, both ``LongTensor[N]``:

    - time to vergence: self-applications until the genome became zero (every |w_i| < epsilon)
      or divergent (NaN/inf); ``max_steps`` if it did neither;
    - time as fixpoint: how many of the genomes w_0 .. w_{t-1} before that (w_0 the start) were
      still non-trivial fixpoints, |F(w_t) - w_t| < epsilon.
    """
    epsilon = check_epsilon(epsilon)
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps must be an integer >= 1, got {max_steps!r}")
    rep.check_weights(w)
    N = w.shape[0]
    vergence = torch.full((N,), max_steps, dtype=torch.long, device=w.device)
    as_fixpoint = torch.zeros(N, dtype=torch.long, device=w.device)
    running = torch.ones(N, dtype=torch.bool, device=w.device)  # not yet zero or divergent
    for t in range(1, max_steps + 1):
        nxt = rep.apply(w, w)  # [N, W]
        as_fixpoint += (running & _close(nxt, w, epsilon)).long()
        w = nxt
        verged = running & (is_divergent(w) | (w.abs() < epsilon).all(dim=1))
        vergence[verged] = t
        running &= ~verged
        if not bool(running.any()):
            break
    return vergence, as_fixpoint


DEFAULT_SCALES = tuple(10.0 ** -k for k in range(10))  # 1e0 .. 1e-9, the paper's noise scales


def noise_label(scale: float) -> str:
    """``1e-3`` for noise scale 0.001: how tables, files and scalars name a noise scale.

    >>> [noise_label(s) for s in (1.0, 0.1, 1e-9, 0.5)]
    ['1e0', '1e-1', '1e-9', '0.5']
    """
    k = round(-math.log10(scale)) if scale > 0 else 0
    if scale > 0 and math.isclose(scale, 10.0 ** -k, rel_tol=1e-9):
        return f"1e{-k}" if k else "1e0"
    return f"{scale:g}"


def noisy_clones(w: torch.Tensor, scales, trials: int, generator=None) -> torch.Tensor:
    """``[S * trials * P, W]``: ``trials`` clones of every genome of ``w`` ``[P, W]`` per noise
    scale, each weight moved by +-U(0,1)*scale (``nsr.random.add_noise``); ordered scale-major,
    then trial, then genome."""
    S, P = len(scales), w.shape[0]
    clones = w[None, None].expand(S, trials, P, w.shape[1]).reshape(-1, w.shape[1])  # [S*trials*P, W]
    s = torch.tensor([float(x) for x in scales], dtype=w.dtype, device=w.device).repeat_interleave(trials * P)
    noise = add_noise(torch.zeros_like(clones), 1.0, generator=generator)  # +-U(0,1) per weight
    return clones + noise * s[:, None]  # each clone at its own scale


def time_noisy_clones(rep, w: torch.Tensor, scales, trials: int, max_steps: int = 100, epsilon: float = 1e-4,
                      generator=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The paper's robustness test as one batch: the :func:`noisy_clones` of ``w`` ``[P, W]``,
    timed by :func:`vergence_times`. Returns ``(clones [N, W], time_to_vergence [N],
    time_as_fixpoint [N])``, N = S * trials * P in the order of :func:`noisy_clones`."""
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ValueError(f"trials must be an integer >= 1, got {trials!r}")
    rep.check_weights(w)
    clones = noisy_clones(w, scales, trials, generator)
    ttv, taf = vergence_times(rep, clones, max_steps=max_steps, epsilon=epsilon)
    return clones, ttv, taf


def robustness(rep, w: torch.Tensor, scales=DEFAULT_SCALES, trials: int = 100,
               max_steps: int = 100, epsilon: float = 1e-4, generator=None) -> dict[float, tuple[torch.Tensor, torch.Tensor]]:
    """The paper's robustness test: for each noise scale, ``trials`` noisy clones of every genome
    in ``w`` ``[P, W]`` (noise +-U(0,1)*scale per weight), timed by :func:`vergence_times`.
    All clones of all scales run as one batch (:func:`time_noisy_clones`). Returns ``{scale:
    (time_to_vergence [P*trials], time_as_fixpoint [P*trials])}``."""
    scales = [float(s) for s in scales]
    _, ttv, taf = time_noisy_clones(rep, w, scales, trials, max_steps, epsilon, generator)
    n = trials * w.shape[0]
    return {sc: (ttv[i * n:(i + 1) * n], taf[i * n:(i + 1) * n]) for i, sc in enumerate(scales)}
