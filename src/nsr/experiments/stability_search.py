"""The search for attracting replicators (docs/stability.md): replicator families, the ways their
fixpoints are found (self-training, Newton, self-application, training that targets stability), and
the empirical test of attraction with noisy clones. Part of ``nsr experiment stability``.

    nsr experiment stability --families weightwise-sigmoid+newton,weightwise-tanh+penalty --search-trials 1000
"""
from __future__ import annotations

import math

import torch

from nsr.experiments.base import bar, stream
from nsr.replicators import Replicator, Weightwise
from nsr.replicators.base import ACTIVATIONS, activate
from nsr.experiments.fixpoint_classes import train_epochs
from nsr.fixpoints import FixpointClass, classify
from nsr.stability import (StabilityClass, classify_stability, eigenvalues, jacobian, largest_singular_value,
                           newton_fixpoints, self_application)
from nsr.training import add_noise

ARCHS = ["weightwise", "aggregating", "recurrent"]


class NormalizedWeightwise(Replicator):
    """A weightwise replicator whose kernels are divided by their Frobenius norm before use: the same
    genome layout, samples and ids as :class:`nsr.replicators.Weightwise`, but the network's map is
    invariant to the scale of each kernel, so self-application is no longer homogeneous of degree
    depth + 2 and the genome gain A = m_0 is at most 1 (docs/stability.md). Defined with the public
    subclassing API only (``samples``, ``forward``, ``apply`` in torch); it trains through the generic
    autograd path."""

    def __init__(self, width: int = 2, depth: int = 2, activation: str = "linear"):
        self._weightwise = Weightwise(width, depth, activation)
        self.width, self.depth, self.activation = width, depth, activation
        self.shapes = self._weightwise.shapes

    @property
    def hparams(self):
        return {"width": self.width, "depth": self.depth, "activation": self.activation}

    def samples(self, w):
        return self._weightwise.samples(w)

    def forward(self, w, x):
        h = x  # [P, S, 4]
        for K in self.kernels(w):
            K = K / K.flatten(1).norm(dim=1).clamp_min(1e-30)[:, None, None]  # unit-norm kernel
            h = activate(self.activation, torch.bmm(h, K))
        return h

    def apply(self, a, b, generator=None):
        self.check_weights(a, "a")
        self.check_weights(b, "b")
        return self.forward(a, self._weightwise.encode(b))[:, :, 0]
FAMILIES = ["weightwise", "weightwise+newton", "weightwise+penalty", "weightwise-relu+newton", "weightwise-tanh",
            "weightwise-tanh+newton", "weightwise-tanh+penalty", "weightwise-tanh+denoise", "weightwise-sigmoid",
            "weightwise-sigmoid+newton", "weightwise-sigmoid+applying", "aggregating+newton", "aggregating-tanh+newton",
            "recurrent", "recurrent+newton", "recurrent-tanh+newton", "normalized", "normalized+newton"]


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a share k / n."""
    if n == 0:
        return (math.nan, math.nan)
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, c - h), min(1.0, c + h))


def verify_attracting(rep, parents: torch.Tensor, clones: int = 10, noise: float = 1e-3, steps: int = 100,
                      epsilon: float = 1e-4, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Empirical attraction: ``clones`` noisy copies (noise +-U(0,1)*noise) of every parent ``[F, W]``
    self-applied ``steps`` times. Returns ``(attracting [F] bool, returned [F] bool)``: a parent counts
    as attracting when every clone is still a non-trivial fixpoint afterwards (it may be another
    one), and as returned when moreover every clone is back within ``noise`` of the parent (max
    absolute difference per weight)."""
    F, W = parents.shape
    if F == 0:
        return torch.zeros(0, dtype=torch.bool), torch.zeros(0, dtype=torch.bool)
    w = add_noise(parents.repeat(clones, 1), noise, generator=generator)  # [clones * F, W]
    for _ in range(steps):
        w = rep.apply(w, w)
    ok = (classify(rep, w, epsilon) == FixpointClass.NONTRIVIAL).view(clones, F)
    near = ((w - parents.repeat(clones, 1)).abs().amax(1) < noise).view(clones, F)
    return ok.all(0), (ok & near).all(0)


def stability_train(rep, w: torch.Tensor, steps: int, lr: float = 0.01, penalty: float = 0.0, target: float = 0.9,
                    denoise: float = 0.0, generator=None) -> torch.Tensor:
    """Training that targets stability: Adam, every particle on its own loss (summed over particles),
    the fixpoint residual mean (F(w) - w)^2 (differentiated through the network and its input) plus
    ``penalty * relu(sigma - target)^2``, sigma the largest singular value of the Jacobian of
    self-application by power iteration (sigma < 1 makes a fixpoint attracting). ``denoise > 0`` adds
    noisy copies trained back onto the genome: the network's outputs on weight inputs with noise
    +-U(0,1)*denoise must still be the genome. Returns ``[P, W]`` float64."""
    wv = w.detach().to(torch.float64).clone().requires_grad_(True)
    opt = torch.optim.Adam([wv], lr=lr)
    for _ in range(steps):
        loss = (self_application(rep, wv) - wv).pow(2).mean(1)  # [P]
        if penalty:
            J = torch.func.jacrev(lambda u: self_application(rep, u).sum(0))(wv).permute(1, 0, 2)  # [P, W, W]
            loss = loss + penalty * torch.relu(largest_singular_value(J, 10) - target).pow(2)
        if denoise:
            noisy = add_noise(wv.detach(), denoise, generator)  # [P, W]: the clones' genomes as inputs
            x, _ = rep.samples(noisy)
            out = rep.forward(wv, x).reshape(w.shape[0], -1)
            if out.shape[1] == w.shape[1]:
                loss = loss + (out - wv).pow(2).mean(1)
        opt.zero_grad()
        torch.nan_to_num(loss, nan=0.0, posinf=0.0).sum().backward()
        with torch.no_grad():
            wv.grad = torch.nan_to_num(wv.grad, nan=0.0, posinf=0.0, neginf=0.0)
        opt.step()
    return wv.detach()


METHODS = ("train", "newton", "applying", "penalty", "denoise")


def family(name: str, args):
    """``(replicator, method)`` of a search family ``ARCH[-ACTIVATION][+METHOD]``; ARCH is one of the
    three architectures or ``normalized`` (:class:`NormalizedWeightwise`); the method finds the
    fixpoints: ``train`` (self-training, the paper's way; the default), ``newton`` (Newton's method on
    F(w) = w: any fixpoint, whatever its stability), ``applying`` (100 self-applications: only what
    attracts), ``penalty`` and ``denoise`` (training that targets stability, then Newton)."""
    base, _, method = name.partition("+")
    arch, _, act = base.partition("-")
    if arch not in ARCHS + ["normalized"] or (act and act not in ACTIVATIONS) or method not in METHODS + ("",):
        raise ValueError(f"families: unknown family {name!r}: expected ARCH[-ACTIVATION][+METHOD] with METHOD one of "
                         f"{', '.join(METHODS)}, e.g. weightwise-tanh+penalty")
    from nsr.replicators import ARCHITECTURES

    cls = NormalizedWeightwise if arch == "normalized" else ARCHITECTURES[arch]
    return cls(width=args.width, depth=args.depth, activation=act or "linear"), method or "train"


def find_fixpoints(rep, method: str, w: torch.Tensor, args, generator) -> torch.Tensor:
    """Genomes ``[P, W]`` after the family's fixpoint-finding ``method`` from random genomes ``w``."""
    if method == "train":
        return train_epochs(rep, w, args.search_epochs, args.lr, args.batch_size, args.momentum, generator)
    if method == "applying":
        for _ in range(100):
            w = rep.apply(w, w)
        return w
    if method in ("penalty", "denoise"):
        w = newton_fixpoints(rep, w, args.newton_steps)
        w = stability_train(rep, w, args.penalty_steps, lr=args.penalty_lr,
                            penalty=args.penalty if method == "penalty" else 0.0,
                            denoise=1e-2 if method == "denoise" else 0.0, generator=generator)
    return newton_fixpoints(rep, w, args.newton_steps)


def search(args, folder):
    """The attracting-replicator search: per family, the non-trivial fixpoints found, how many are
    distinct, the share linearly attracting (every |lambda| < 1 - tol), the share with no unstable
    direction (attracting or marginal), and the share verified with noisy clones."""
    from nsr.experiments.runfolder import markdown_table

    rows, md_rows, planes = [], [], {}
    with bar(args, len(args.families), "attracting search") as pbar:
        for name in args.families:
            rep, method = family(name, args)
            ids = torch.arange(args.search_trials)
            w = rep.init(args.search_trials, generator=stream(args, f"search/{name}/init", ids))
            w = find_fixpoints(rep, method, w, args, stream(args, f"search/{name}/find", ids)).float()
            parents = w[classify(rep, w, args.epsilon) == FixpointClass.NONTRIVIAL]
            n = len(parents)
            lin = calm = ver = back = distinct = 0
            rmed = math.nan
            if n:
                ev = eigenvalues(jacobian(rep, parents, dtype=torch.float64))
                cls, unstable = classify_stability(ev, args.tol)
                r = ev.abs()[:, 0]
                lin, calm, rmed = int((cls == StabilityClass.ATTRACTING).sum()), int((unstable == 0).sum()), float(r.median())
                ok, returned = verify_attracting(rep, parents, args.clones, 1e-3, 100, args.epsilon,
                                          stream(args, f"search/{name}/clones", torch.arange(n * args.clones)))
                ver, back = int(ok.sum()), int(returned.sum())
                if calm:
                    planes[name] = ev[:50].numpy()
                distinct = len(torch.unique(parents.double().round(decimals=3), dim=0))
            lo_, hi_ = wilson(ver, n)
            row = {"source": f"search/{name}", "networks": args.search_trials, "fixpoints": n, "distinct": distinct,
                   "radius_median": rmed, "linearly_attracting": lin / n if n else math.nan,
                   "no_unstable_direction": calm / n if n else math.nan,
                   "verified_attracting": ver / n if n else math.nan, "verified_ci_low": lo_, "verified_ci_high": hi_,
                   "returned_to_parent": back / n if n else math.nan}
            rows.append(row)
            folder.log_scalars(f"search/{name}", row)
            md_rows.append([name, str(args.search_trials), str(n), str(distinct), f"{rmed:.3g}", f"{lin}/{n}",
                            f"{calm}/{n}", f"{ver}/{n}", "-" if not n else f"{ver / n:.2f} [{lo_:.2f}, {hi_:.2f}]",
                            f"{back}/{n}"])
            pbar.update(1)
    md = ("## Search for attracting replicators\n\n"
          f"Per family ARCH[-ACTIVATION][+METHOD]: {args.search_trials} random networks (width {args.width}, depth "
          f"{args.depth}); METHOD finds the fixpoints: self-training ({args.search_epochs} epochs, the default), "
          f"newton ({args.newton_steps} Newton steps on F(w) = w: any fixpoint, whatever its stability), applying "
          "(100 self-applications: only what attracts), penalty (Newton, then "
          f"{args.penalty_steps} Adam steps on the fixpoint residual + {args.penalty:g} * relu(sigma_max(J) - 0.9)^2, "
          "sigma_max by power iteration, then Newton), denoise (the same with noisy weight inputs (1e-2) trained back "
          "onto the genome instead of the penalty). Distinct: genomes that differ after rounding to 1e-3. Linearly "
          f"attracting: every |lambda| < 1 - {args.tol:g}; no unstable direction: every |lambda| <= 1 + {args.tol:g}. "
          f"Verified: every one of {args.clones} clones at noise 1e-3 is still a non-trivial fixpoint after 100 "
          "self-applications (float32, epsilon 1e-4; it may be another fixpoint); share with its 95% Wilson "
          "interval. Returned: every clone is moreover back within 1e-3 of the parent.\n\n"
          + markdown_table(["family", "networks", "non-trivial fixpoints", "distinct", "spectral radius median",
                            "linearly attracting", "no unstable direction", "verified attracting",
                            "verified share [95%]", "returned to parent"], md_rows))
    return md, rows, planes
