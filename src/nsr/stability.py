"""Linear stability of self-application: the Jacobian of F(w) = N_w(w), its spectrum, and the
classification of fixpoints into attracting, marginal, saddle and repelling (docs/stability.md).

Pure torch over populations ``[P, W]``. The Jacobian is taken of a *differentiable*
self-application built from the replicator's public contract (``samples`` and ``forward``), so it
works for every replicator, including one a user defines by subclassing
:class:`nsr.replicators.Replicator`; ``rep.apply`` may run native kernels that autograd cannot see.

>>> import torch
>>> from nsr.replicators import Weightwise
>>> rep = Weightwise()
>>> w = rep.identity_genome().double()
>>> [round(float(m), 4) for m in spectrum(rep, w).abs()[0, :3]]
[4.0, 1.6667, 1.0]
>>> StabilityClass(int(classify_stability(spectrum(rep, w))[0][0])).name
'SADDLE'
"""
from __future__ import annotations

from enum import IntEnum

import torch


class StabilityClass(IntEnum):
    """Linear stability of a fixpoint from the moduli of its Jacobian's eigenvalues."""

    ATTRACTING = 0  # every |lambda| < 1 - tol: small perturbations shrink
    MARGINAL = 1  # none > 1 + tol, some within tol of 1: the linearisation cannot decide
    SADDLE = 2  # some |lambda| > 1 + tol, not all: unstable along that many directions
    REPELLING = 3  # every |lambda| > 1 + tol
    UNDEFINED = 4  # the Jacobian is not finite (a divergent genome)


STABILITY_NAMES = tuple(c.name.lower() for c in StabilityClass)


def self_application(rep, w: torch.Tensor) -> torch.Tensor:
    """``[P, W]``: F(w) = N_w(w) computed with ``rep.samples`` and ``rep.forward`` only, so autograd
    and ``torch.func`` can differentiate it (with respect to both the network and its input).

    The network's outputs on its own samples are the new genome when they hold one value per weight
    (weightwise, recurrent, most user replicators). An aggregating replicator outputs its new
    aggregates; each is written to every weight of its chunk, as ``rep.apply`` does (``shuffle=True``
    is random and has no Jacobian: ValueError).
    """
    rep.check_weights(w)
    x, _ = rep.samples(w)
    out = rep.forward(w, x).reshape(w.shape[0], -1)  # [P, outputs]
    if hasattr(rep, "chunk_of") and hasattr(rep, "aggregate"):
        if getattr(rep, "shuffle", False):
            raise ValueError("rep: an Aggregating replicator with shuffle=True is random; its Jacobian is undefined")
        return out[:, rep.chunk_of(w.device)]  # [P, W]: each new aggregate written to its chunk
    if out.shape[1] != w.shape[1]:
        raise ValueError(f"rep: {rep!r} outputs {out.shape[1]} values per genome on its samples, not one per "
                         f"weight ({w.shape[1]}); its self-application is not forward(w, samples(w))")
    return out


def _iterate(rep, w, order: int):
    for _ in range(order):
        w = self_application(rep, w)
    return w


def jacobian(rep, w: torch.Tensor, order: int = 1, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``[P, W, W]``: the Jacobian dF(w)/dw of self-application at every genome of ``w`` ``[P, W]``
    (``order=2``: of F(F(w)), for second-order fixpoints). ``dtype=torch.float64`` for accuracy.

    Particles are independent, so the Jacobian of the population's summed outputs ``sum_p F(w)_p``
    with respect to ``w`` holds every particle's Jacobian: W reverse-mode passes over the whole
    population (``torch.func.jacrev``), not P. Linear weightwise replicators take an analytic fast
    path (:func:`weightwise_jacobian`), equal to autograd to rounding (tested).
    """
    if isinstance(order, bool) or order not in (1, 2):
        raise ValueError(f"order must be 1 or 2, got {order!r}")
    rep.check_weights(w)
    w = w.detach().to(dtype or w.dtype)
    if w.shape[0] == 0:
        return w.new_zeros(0, w.shape[1], w.shape[1])
    if order == 1 and _has_fast_path(rep):
        return weightwise_jacobian(rep, w)
    J = torch.func.jacrev(lambda v: _iterate(rep, v, order).sum(0))(w)  # [W_out, P, W_in]
    return J.permute(1, 0, 2).contiguous()


def _has_fast_path(rep) -> bool:
    from nsr.replicators import Weightwise

    return type(rep) is Weightwise and rep.activation == "linear"


def weightwise_jacobian(rep, w: torch.Tensor) -> torch.Tensor:
    """``[P, W, W]``: the Jacobian of a linear weightwise replicator's self-application, analytically.

    F_k(w) = x_k . m(w) with x_k = (w_k, ids_k) and m = K_1 K_2 ... K_L ``[4]`` the network's gain per
    input, so dF_k/dw_j = delta_kj m_0 + x_k . dm/dw_j, and dm/dK_l[a, b] = (K_1..K_{l-1})[:, a]
    (K_{l+1}..K_L)[b]: prefix and suffix products of the kernels.
    """
    P, W = w.shape
    Ks = rep.kernels(w)  # [P, in, out] each
    x = rep.encode(w)  # [P, W, 4]
    eye = torch.eye(4, dtype=w.dtype, device=w.device).expand(P, 4, 4)
    prefix = [eye]  # prefix[l] = K_1 .. K_l  [P, 4, out_l]
    for K in Ks:
        prefix.append(torch.bmm(prefix[-1], K))
    m = prefix[-1][:, :, 0]  # [P, 4]
    suffix = [None] * len(Ks)  # suffix[l] = K_{l+1} .. K_L  [P, out_l, 1]
    s = torch.ones(P, 1, 1, dtype=w.dtype, device=w.device)
    for l in range(len(Ks) - 1, -1, -1):
        suffix[l] = s
        s = torch.bmm(Ks[l], s)
    dm = []  # dm/dK_l[a, b] = prefix[l][:, :, a] * suffix[l][:, b]  -> [P, 4, in_l * out_l]
    for l, K in enumerate(Ks):
        dm.append((prefix[l][:, :, :, None] * suffix[l][:, None, None, :, 0]).reshape(P, 4, -1))
    dm = torch.cat(dm, dim=2)  # [P, 4, W]
    J = torch.bmm(x, dm)  # [P, W, W]: x_k . dm/dw_j
    J.diagonal(dim1=1, dim2=2).add_(m[:, :1])  # + delta_kj m_0
    return J


def spectrum(rep, w: torch.Tensor, order: int = 1, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``[P, W]`` complex: the eigenvalues of the Jacobian of self-application (of F∘F with
    ``order=2``), sorted by modulus, largest first; NaN where the Jacobian is not finite."""
    return eigenvalues(jacobian(rep, w, order, dtype))


def eigenvalues(J: torch.Tensor) -> torch.Tensor:
    """``[P, W]`` complex eigenvalues of Jacobians ``J`` ``[P, W, W]`` sorted by modulus, largest
    first; rows of NaN where J is not finite."""
    finite = torch.isfinite(J).flatten(1).all(1)  # [P]
    safe = torch.where(finite[:, None, None], J, torch.zeros_like(J))
    ev = torch.linalg.eigvals(safe)  # [P, W] complex
    ev = ev.gather(1, ev.abs().argsort(dim=1, descending=True, stable=True))
    nan = torch.full_like(ev, complex(float("nan"), float("nan")))
    return torch.where(finite[:, None], ev, nan)


def spectral_radius(rep, w: torch.Tensor, order: int = 1, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``[P]``: the largest eigenvalue modulus of the Jacobian of self-application (order 2: F∘F);
    NaN for a divergent genome. Below 1 at a fixpoint: attracting (noisy copies come back)."""
    return spectrum(rep, w, order, dtype).abs()[:, 0]


def classify_stability(eigs: torch.Tensor, tol: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """``(classes LongTensor[P], unstable LongTensor[P])`` from eigenvalues ``eigs`` ``[P, W]``:
    :class:`StabilityClass` values and the number of unstable directions (|lambda| > 1 + tol).

    attracting: every |lambda| < 1 - tol; marginal: none above 1 + tol, some within tol of 1;
    saddle: some above 1 + tol, not all; repelling: all above 1 + tol; undefined: not finite.
    """
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 <= tol < 1:
        raise ValueError(f"tol must be a number in [0, 1), got {tol!r}")
    r = eigs.abs()  # [P, W]
    unstable = (r > 1 + tol).sum(1)
    marginal = ((r - 1).abs() <= tol).sum(1)
    W = eigs.shape[1]
    c = torch.full((eigs.shape[0],), int(StabilityClass.SADDLE), dtype=torch.long, device=eigs.device)
    c[(unstable == 0) & (marginal == 0)] = StabilityClass.ATTRACTING
    c[(unstable == 0) & (marginal > 0)] = StabilityClass.MARGINAL
    c[unstable == W] = StabilityClass.REPELLING
    c[~torch.isfinite(r).all(1)] = StabilityClass.UNDEFINED
    return c, unstable


def stability_shares(classes: torch.Tensor) -> dict[str, float]:
    """Each :class:`StabilityClass`'s share of ``classes`` ``[P]``, keyed by lower-case name."""
    n = torch.bincount(classes.flatten(), minlength=len(StabilityClass)).double()
    total = max(float(n.sum()), 1.0)
    return {name: float(v) / total for name, v in zip(STABILITY_NAMES, n)}


def genome_gain(rep, w: torch.Tensor) -> torch.Tensor:
    """``[P]``: A(w), a weightwise network's gain on its weight input (the first entry of the product
    of its kernels, linear activation). At a linear weightwise fixpoint the genome is an eigenvector
    of the Jacobian with eigenvalue ``depth + 1 + A`` (3 + A for depth 2; docs/stability.md)."""
    m = rep.kernels(w)[0][:, 0, :]  # [P, out_1]: the weight input's row
    for K in rep.kernels(w)[1:]:
        m = torch.bmm(m[:, None, :], K)[:, 0, :]
    return m[:, 0]


def largest_singular_value(J: torch.Tensor, iterations: int = 20, v: torch.Tensor | None = None) -> torch.Tensor:
    """``[P]``: the largest singular value of ``J`` ``[P, W, W]`` by power iteration on J^T J (an upper
    bound of the spectral radius; below 1 makes a fixpoint attracting). Differentiable in J (the
    iteration's vector is held fixed, so the gradient is that of |J v|)."""
    if v is None:
        v = torch.ones(J.shape[0], J.shape[2], dtype=J.dtype, device=J.device)
    with torch.no_grad():
        Jd = J.detach()
        for _ in range(iterations):
            v = torch.bmm(Jd.transpose(1, 2), torch.bmm(Jd, v[:, :, None]))[:, :, 0]
            v = v / v.norm(dim=1, keepdim=True).clamp_min(1e-30)
    return torch.bmm(J, v[:, :, None])[:, :, 0].norm(dim=1)


def newton_fixpoints(rep, w: torch.Tensor, steps: int = 60, max_step: float = 1.0) -> torch.Tensor:
    """``[P, W]`` float64: Newton's method on F(w) - w = 0 from every genome of ``w``, whatever the
    stability of the fixpoint it converges to (self-training and self-application find mostly the
    fixpoints their own dynamics favour). Each step solves (J - I) d = F(w) - w by least squares and
    moves by d, shortened to at most ``max_step`` in norm. Rows that do not converge stay where they
    end; classify the result (nsr.fixpoints.classify) to keep the fixpoints."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an integer >= 0, got {steps!r}")
    w = w.detach().to(torch.float64)
    eye = torch.eye(w.shape[1], dtype=w.dtype, device=w.device)
    for _ in range(steps):
        r = self_application(rep, w) - w  # [P, W]
        J = jacobian(rep, w)
        ok = torch.isfinite(r).all(1) & torch.isfinite(J).flatten(1).all(1)
        A = torch.where(ok[:, None, None], J - eye, -eye)
        d = torch.linalg.lstsq(A, torch.where(ok[:, None], r, torch.zeros_like(r))[:, :, None]).solution[:, :, 0]
        d = torch.nan_to_num(d, nan=0.0, posinf=0.0, neginf=0.0)
        d = d * (max_step / d.norm(dim=1, keepdim=True).clamp_min(1e-300)).clamp(max=1.0)
        w = w - d
    return w
