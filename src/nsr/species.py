"""Species and diversity of a soup, as pure batched functions over a population ``[P, W]``.

A *species* is a set of particles whose genomes (``by="genome"``) or functions (``by="function"``:
the networks' outputs on a few fixed probe genomes) agree within a tolerance. The default grouping is
a grid: every value is quantised to ``round(x / tolerance)`` and the quantised row is hashed to an
int64 *species key*, O(P W) and equal for equal cells, so a species keeps its key, and through
:class:`SpeciesRegistry` its id, from one generation to the next. Two genomes closer than the
tolerance can still fall into neighbouring cells; :func:`dbscan_keys` (scikit-learn's DBSCAN, the
connected components of "closer than tolerance") avoids that for small soups. Non-finite genomes
have no species (key -1).

The diversity indices are those of Shvartzman & Ram (2024) and of "Computational Life" (2024):
richness, Shannon, Gini-Simpson, the largest species' share, mean pairwise genome distance (sampled
pairs at scale) and higher-order entropy (Shannon entropy per byte minus compressed bits per byte).

>>> import torch
>>> w = torch.tensor([[0.0, 1.0], [0.001, 1.0], [5.0, 5.0], [float("nan"), 0.0]])
>>> keys = genome_keys(w, tolerance=0.01)
>>> bool(keys[0] == keys[1]), bool(keys[0] == keys[2]), int(keys[3])
(True, False, -1)
>>> d = diversity(abundances(keys))
>>> d["species"], round(d["shannon"], 4), round(d["simpson"], 4), round(d["largest_share"], 4)
(2.0, 0.6365, 0.4444, 0.6667)
"""
from __future__ import annotations

import bz2
import lzma
import math
import zlib
from typing import Optional

import torch

from nsr.random import splitmix64

__all__ = ["genome_keys", "function_keys", "dbscan_keys", "SpeciesRegistry", "abundances", "diversity",
           "sampled_diversity", "sample_pairs", "sample_indices", "pairwise_distance", "gathered_distance",
           "quantise_bytes", "higher_order_entropy", "CODECS"]

CODECS = {"zlib": lambda b: zlib.compress(b, 9), "bz2": lambda b: bz2.compress(b, 9),
          "lzma": lambda b: lzma.compress(b, preset=6)}
_KEY_MASK = (1 << 63) - 1
_QMAX = float(1 << 52)  # quantised values beyond this are clamped (exact in float64, no int64 overflow)


def _check_tolerance(tolerance):
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not math.isfinite(tolerance) or tolerance <= 0:
        raise ValueError(f"tolerance must be a finite number > 0, got {tolerance!r}")
    return float(tolerance)


def _hash_rows(x: torch.Tensor, tolerance: float, chunk: int = 1 << 15) -> torch.Tensor:
    """``LongTensor[P]``: a non-negative hash of every row of ``x`` ``[P, D]`` quantised to the
    tolerance grid; -1 for rows with a non-finite value. Blocks of ``chunk`` rows keep the
    intermediates in cache."""
    out = torch.empty(x.shape[0], dtype=torch.long, device=x.device)
    # multiply-add with fixed random odd 64-bit multipliers (wrapping), then one splitmix64 round
    mult = splitmix64(torch.arange(x.shape[1], dtype=torch.long, device=x.device) + 0x5EED) | 1  # [D]
    for lo in range(0, x.shape[0], chunk):  # over blocks of rows, not over particles
        b = x[lo:lo + chunk]
        finite = torch.isfinite(b).all(dim=1)  # [B]
        q = torch.round(torch.nan_to_num(b.double(), nan=0.0, posinf=0.0, neginf=0.0) / tolerance)
        h = splitmix64((q.clamp_(-_QMAX, _QMAX).long() * mult).sum(dim=1))  # [B]
        out[lo:lo + chunk] = torch.where(finite, h & _KEY_MASK, torch.full_like(h, -1))
    return out


def genome_keys(w: torch.Tensor, tolerance: float = 1e-2) -> torch.Tensor:
    """``LongTensor[P]``: the species key of every genome of ``w`` ``[P, W]``: equal for genomes in
    the same cell of the tolerance grid, -1 for divergent (non-finite) genomes."""
    return _hash_rows(w, _check_tolerance(tolerance))


def probe_genomes(rep, probes: int = 2, seed: int = 0) -> torch.Tensor:
    """``[probes, W]``: fixed random genomes on which :func:`function_keys` compares networks."""
    return rep.init(probes, generator=torch.Generator().manual_seed(seed))


def function_keys(rep, w: torch.Tensor, probes: torch.Tensor, tolerance: float = 1e-2) -> torch.Tensor:
    """``LongTensor[P]``: species keys by function: each network ``w[i]`` applied to every probe
    genome ``probes`` ``[K, W]`` (``rep.apply``), the outputs ``[P, K * W]`` hashed on the tolerance grid.
    Networks computing the same map on the probes share a key whatever their weights."""
    tolerance = _check_tolerance(tolerance)
    P, W = w.shape
    outs = [rep.apply(w, probes[k].to(w).expand(P, W)) for k in range(probes.shape[0])]  # K x [P, W]
    keys = _hash_rows(torch.cat(outs, dim=1), tolerance)
    return torch.where(torch.isfinite(w).all(dim=1), keys, torch.full_like(keys, -1))


def dbscan_keys(w: torch.Tensor, tolerance: float = 1e-2) -> torch.Tensor:
    """``LongTensor[P]``: species as scikit-learn DBSCAN clusters (``eps=tolerance``, one sample
    suffices: the connected components of "L2 distance < tolerance"); each cluster's key is the
    smallest grid key (:func:`genome_keys`) among its members, so it is stable while that member is.
    Quadratic in the worst case: for small soups."""
    from sklearn.cluster import DBSCAN

    tolerance = _check_tolerance(tolerance)
    grid = genome_keys(w, tolerance)
    finite = grid >= 0
    out = torch.full_like(grid, -1)
    if bool(finite.any()):
        labels = torch.as_tensor(DBSCAN(eps=tolerance, min_samples=1).fit_predict(w[finite].double().cpu().numpy()))
        first = torch.full((int(labels.max()) + 1,), _KEY_MASK, dtype=torch.long)
        first = first.scatter_reduce(0, labels, grid[finite].cpu(), reduce="amin")  # [clusters]
        out[finite] = first[labels].to(out.device)
    return out


class SpeciesRegistry:
    """Stable species ids: a species key seen before keeps its id; new keys get the next ids, in the
    order of the first particle holding them. Keys unseen for more than ``forget_after`` generations
    are forgotten (a species that comes back after that gets a new id), so memory stays bounded: at
    most ``(forget_after + 1) * P`` keys, 24 bytes each."""

    def __init__(self, forget_after: Optional[int] = 2):
        self.keys = torch.zeros(0, dtype=torch.long)  # sorted
        self.ids = torch.zeros(0, dtype=torch.long)
        self.last_seen = torch.zeros(0, dtype=torch.long)
        self.next_id = 0
        self.forget_after = forget_after
        self.present = (torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long))

    def assign(self, keys: torch.Tensor, time: int = 0) -> torch.Tensor:
        """``LongTensor[P]``: the species id of every particle (-1 where ``keys`` is -1). The species
        present and their abundances are left in :attr:`present` ``(ids [S], counts [S])``."""
        keys = keys.cpu()
        valid = keys >= 0
        uk, inv, counts = torch.unique(keys[valid], return_inverse=True, return_counts=True)  # [U] sorted
        raw = torch.searchsorted(self.keys, uk)  # [U] insertion points
        pos = raw.clamp(max=max(len(self.keys) - 1, 0))
        known = (self.keys[pos] == uk) if len(self.keys) else torch.zeros_like(uk, dtype=torch.bool)
        sid = torch.where(known, self.ids[pos] if len(self.keys) else uk, torch.full_like(uk, -1))
        self.last_seen[pos[known]] = time
        new = (~known).nonzero()[:, 0]
        if new.numel():
            slot = torch.arange(inv.numel(), dtype=torch.long)
            first = torch.full((uk.numel(),), inv.numel(), dtype=torch.long).scatter_reduce(0, inv, slot, reduce="amin")
            order = new[first[new].argsort()]
            sid[order] = self.next_id + torch.arange(order.numel(), dtype=torch.long)
            self.next_id += order.numel()
            # merge the new keys (sorted, as uk is) into the sorted registry: O(N + U log N), no re-sort
            at = raw[new] + torch.arange(new.numel(), dtype=torch.long)
            old = torch.ones(len(self.keys) + new.numel(), dtype=torch.bool)
            old[at] = False
            merged = []
            for mine, theirs in ((self.keys, uk[new]), (self.ids, sid[new]),
                                 (self.last_seen, torch.full((new.numel(),), time, dtype=torch.long))):
                m = torch.empty(old.numel(), dtype=torch.long)
                m[old], m[at] = mine, theirs
                merged.append(m)
            self.keys, self.ids, self.last_seen = merged
        if self.forget_after is not None and len(self.keys) and int(self.last_seen.min()) < time - self.forget_after:
            keep = self.last_seen >= time - self.forget_after
            self.keys, self.ids, self.last_seen = self.keys[keep], self.ids[keep], self.last_seen[keep]
        self.present = (sid, counts)
        out = torch.full_like(keys, -1)
        out[valid] = sid[inv]
        return out

    def state_dict(self) -> dict:
        return {"keys": self.keys, "ids": self.ids, "last_seen": self.last_seen, "next_id": self.next_id}

    def load_state_dict(self, state: dict) -> None:
        self.keys, self.ids, self.last_seen = state["keys"], state["ids"], state["last_seen"]
        self.next_id = int(state["next_id"])


def abundances(species: torch.Tensor) -> torch.Tensor:
    """``LongTensor[S]``: the number of particles of every species (ids or keys ``[P]``, -1 ignored)."""
    s = species[species >= 0]
    return torch.unique(s, return_counts=True)[1] if s.numel() else torch.zeros(0, dtype=torch.long)


def diversity(counts: torch.Tensor) -> dict[str, float]:
    """Diversity of a community with species abundances ``counts`` ``[S]``: ``species`` (richness),
    ``shannon`` (-sum p ln p, nats), ``simpson`` (Gini-Simpson 1 - sum p^2: the chance that two
    particles drawn with replacement belong to different species), ``largest_share``."""
    n = counts.sum()
    if int(n) == 0:
        return {"species": 0.0, "shannon": math.nan, "simpson": math.nan, "largest_share": math.nan}
    p = counts.double() / n
    return {"species": float(counts.numel()), "shannon": float(-(p * p.log()).sum()),
            "simpson": float(1 - (p * p).sum()), "largest_share": float(p.max())}


def _generator(seed: int, time: int, tag: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(splitmix64(torch.tensor([seed * 1_000_003 + time * 7919 + tag]))[0]) & _KEY_MASK)


def sample_pairs(size: int, max_pairs: int, seed: int = 0, time: int = 0) -> torch.Tensor:
    """``LongTensor[M, 2]``: pairs of distinct particles: all ``size (size - 1) / 2`` when that is at
    most ``max_pairs``, else ``max_pairs`` uniform random pairs keyed by (seed, time)."""
    if size < 2:
        return torch.zeros(0, 2, dtype=torch.long)
    if size * (size - 1) // 2 <= max_pairs:
        return torch.triu_indices(size, size, offset=1).T.contiguous()
    g = _generator(seed, time, 1)
    i = torch.randint(size, (max_pairs,), generator=g)
    j = torch.randint(size - 1, (max_pairs,), generator=g)
    return torch.stack([i, j + (j >= i).long()], dim=1)


def pairwise_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``[M]``: L2 distance between genomes ``a[m]`` and ``b[m]`` (``[M, W]`` each)."""
    return (a.double() - b.double()).norm(dim=1)


def gathered_distance(a: torch.Tensor, ia: torch.Tensor, b: torch.Tensor, ib: torch.Tensor,
                      chunk: int = 2048) -> torch.Tensor:
    """``[M]``: :func:`pairwise_distance` between genomes ``a[ia[m]]`` and ``b[ib[m]]`` (``a``, ``b``
    ``[N, W]``; ``ia``, ``ib`` ``[M]``), the same numbers, gathered and measured ``chunk`` rows at a
    time so the temporaries stay in cache (a loop over chunks, not particles)."""
    out = torch.empty(ia.numel(), dtype=torch.float64, device=a.device)
    for i in range(0, ia.numel(), chunk):
        d = a.index_select(0, ia[i:i + chunk]).double()  # [chunk, W]
        d.sub_(b.index_select(0, ib[i:i + chunk]))  # (b's rows promoted exactly: a.double() - b.double())
        torch.linalg.vector_norm(d, dim=1, out=out[i:i + chunk])
    return out


def sample_indices(size: int, max_particles: int, seed: int = 0, time: int = 0, tag: int = 2) -> torch.Tensor:
    """``LongTensor[n]``: ascending particle indices, all of them or a uniform random subset of
    ``max_particles`` keyed by (seed, time, ``tag``). The subset is the first ``max_particles``
    distinct values of a keyed stream of uniform draws (a uniform subset by symmetry), so it costs
    O(n log n), not O(size) like a permutation."""
    if size <= max_particles:
        return torch.arange(size)
    if 2 * max_particles > size:  # dense: a permutation is as cheap
        return torch.randperm(size, generator=_generator(seed, time, tag))[:max_particles].sort().values
    g = _generator(seed, time, tag)
    draws = torch.zeros(0, dtype=torch.long)
    while True:  # expected extra draws: about max_particles^2 / (2 size); usually one round
        extra = max_particles + max_particles * max_particles // size + 16
        draws = torch.cat([draws, torch.randint(size, (extra,), generator=g)])
        uniq, inv = torch.unique(draws, return_inverse=True)
        if uniq.numel() >= max_particles:
            break
    first = torch.full((uniq.numel(),), draws.numel(), dtype=torch.long)
    first.scatter_reduce_(0, inv, torch.arange(draws.numel()), reduce="amin")  # first draw of each value
    return uniq[first.argsort()[:max_particles]].sort().values


def sampled_diversity(counts: torch.Tensor, size: int, sampled: Optional[int] = None) -> dict[str, float]:
    """:func:`diversity` of species abundances ``counts`` ``[S]`` counted on a uniform random sample
    of ``sampled`` (default ``counts.sum()``) of ``size`` particles (n = ``counts.sum()`` of them have
    a species), with ``sampled`` and the standard errors of
    the estimates (``shannon_se``, ``simpson_se``, ``largest_share_se``): delta-method variances of
    a multinomial sample of n (Var p = p(1-p)/n; Var sum p^2 = 4 (sum p^3 - (sum p^2)^2)/n;
    Var H = (sum p ln^2 p - H^2)/n) times the finite-population correction (size - n)/(size - 1),
    so they are 0 when every particle is counted. ``species`` is the richness of the sample, a lower
    bound of the soup's."""
    out = diversity(counts)
    n = int(counts.sum())
    sampled = n if sampled is None else int(sampled)
    out["sampled"] = float(sampled)
    if n == 0:
        return {**out, "shannon_se": math.nan, "simpson_se": math.nan, "largest_share_se": math.nan}
    fpc = (size - sampled) / (size - 1) if size > 1 else 0.0
    p = counts.double() / n
    lp = p.log()
    h, s2 = -float((p * lp).sum()), float((p * p).sum())
    var = {"shannon_se": max(float((p * lp * lp).sum()) - h * h, 0.0),
           "simpson_se": max(4 * (float((p ** 3).sum()) - s2 * s2), 0.0),
           "largest_share_se": out["largest_share"] * (1 - out["largest_share"])}
    out.update({k: math.sqrt(v / n * max(fpc, 0.0)) for k, v in var.items()})
    return out


def quantise_bytes(w: torch.Tensor, limit: float = 2.0) -> torch.Tensor:
    """``uint8 [P, W]``: every weight clipped to [-limit, limit] and quantised to 256 levels (NaN to 0)."""
    x = torch.nan_to_num(w.double(), nan=0.0, posinf=limit, neginf=-limit).clamp(-limit, limit)
    return torch.round((x + limit) / (2 * limit) * 255).to(torch.uint8)


def higher_order_entropy(data: torch.Tensor, codec: str = "zlib") -> dict[str, float]:
    """"Higher-order entropy" of a byte string (Aguera y Arcas et al., "Computational Life"):
    ``entropy_per_byte`` (Shannon entropy of the byte histogram, bits), ``compressed_bits_per_byte``
    (``codec``: zlib, bz2 or lzma from the standard library) and their difference
    ``higher_order_entropy``: the structure that single-byte statistics do not see. ``data``: uint8."""
    if codec not in CODECS:
        raise ValueError(f"codec must be one of {', '.join(CODECS)}, got {codec!r}")
    flat = data.reshape(-1).cpu()
    n = flat.numel()
    if n == 0:
        return {"entropy_per_byte": math.nan, "compressed_bits_per_byte": math.nan, "higher_order_entropy": math.nan}
    p = torch.bincount(flat.long(), minlength=256).double() / n
    p = p[p > 0]
    h = float(-(p * p.log2()).sum())
    c = 8.0 * len(CODECS[codec](flat.numpy().tobytes())) / n
    return {"entropy_per_byte": h, "compressed_bits_per_byte": c, "higher_order_entropy": h - c}
