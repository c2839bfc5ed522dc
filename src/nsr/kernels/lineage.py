"""A phylogeny's births by attack, learn_from counts and pruning in C (``lineage.c``): what
:meth:`nsr.lineage.Phylogeny.record_events` writes with a dozen torch passes (gathers, scatters,
index_add_ per column, each a random access into columns of millions of nodes), in one loop per
event list that touches every node's entries once, with prefetching. Integer bookkeeping and copied
floats only: the columns are exactly those of the torch code (tested), which runs wherever these
return False (the native kernels switched off or not built, tensors not on the CPU)."""
from __future__ import annotations

import torch

from nsr.kernels.build import Library, Signature, i64, ptr

LIBRARY = Library("lineage", ["lineage.c"], [
    Signature("nsr_lineage_attacks", A=i64, attacked=ptr, attacker=ptr, dist=ptr, living=ptr, size=i64, t=i64,
              cause_attack=i64, ancestor=ptr, origin=ptr, destruction=ptr, depth=ptr, particle=ptr, cause=ptr,
              parent_distance=ptr, learn_from=ptr, in_tree=ptr, kids=ptr, kid_sum=ptr, old=ptr, old_depth=ptr),
    Signature("nsr_lineage_learners", L=i64, learners=ptr, living=ptr, learn_from=ptr),
    Signature("nsr_lineage_prune", D=i64, dead=ptr, ancestor=ptr, destruction=ptr, in_tree=ptr, kids=ptr,
              kid_sum=ptr, counts=ptr),
    Signature("nsr_lineage_nonnegative", P=i64, source=ptr, out=ptr, counts=ptr),
])

_TYPES = {"ancestor": torch.int64, "origin": torch.int64, "destruction": torch.int64, "depth": torch.int64,
          "particle": torch.int64, "cause": torch.int8, "parent_distance": torch.float32,
          "learn_from": torch.int32, "in_tree": torch.bool, "kids": torch.int32, "kid_sum": torch.int64}


def _ready(*tensors) -> bool:
    return (all(t.device.type == "cpu" and t.is_contiguous() for t in tensors)
            and LIBRARY.load() is not None)


def attacks(cols: dict, tree: dict, living: torch.Tensor, size: int, t: int, cause_attack: int,
            attacked: torch.Tensor, attacker: torch.Tensor, dist: torch.Tensor):
    """Nodes ``size .. size + A - 1`` born by the attacks ``attacked`` ``[A]`` (ascending slots) by
    ``attacker`` ``[A]``, at distance ``dist`` ``[A]`` (float32) from their parents: every column of
    ``cols`` and ``tree`` (capacity >= size + A) and ``living`` written as the torch code does.
    Returns ``(old, old_depth)`` ``[A]`` each (the genomes that ended and their depths), or None
    where the native kernels do not apply."""
    attacked, attacker = attacked.to(torch.int64).contiguous(), attacker.to(torch.int64).contiguous()
    dist = dist.to(torch.float32).contiguous()
    columns = {**cols, **tree}
    if (living.dtype != torch.int64 or any(columns[k].dtype != d for k, d in _TYPES.items())
            or not _ready(attacked, attacker, dist, living, *columns.values())):
        return None
    old, old_depth = torch.empty_like(attacked), torch.empty_like(attacked)
    LIBRARY.call("nsr_lineage_attacks", A=attacked.numel(), attacked=attacked.data_ptr(),
                 attacker=attacker.data_ptr(), dist=dist.data_ptr(), living=living.data_ptr(), size=size, t=t,
                 cause_attack=cause_attack, **{k: columns[k].data_ptr() for k in _TYPES},
                 old=old.data_ptr(), old_depth=old_depth.data_ptr())
    return old, old_depth


def learners(learn_from: torch.Tensor, living: torch.Tensor, slots: torch.Tensor) -> bool:
    """``learn_from[living[slots]] += 1`` (``slots`` ``[L]``, distinct genomes); False where the native
    kernels do not apply."""
    slots = slots.to(torch.int64).contiguous()
    if (learn_from.dtype != torch.int32 or living.dtype != torch.int64
            or not _ready(learn_from, living, slots)):
        return False
    LIBRARY.call("nsr_lineage_learners", L=slots.numel(), learners=slots.data_ptr(), living=living.data_ptr(),
                 learn_from=learn_from.data_ptr())
    return True


def prune(cols: dict, tree: dict, dead: torch.Tensor):
    """The genomes ``dead`` ``[D]`` (distinct, just ended) leave the pruned tree as in
    :meth:`nsr.lineage.Phylogeny._prune` (``tree`` updated in place); returns how many nodes left,
    how many of them were roots and the sum of those roots' ids, or None where the native kernels
    do not apply."""
    dead = dead.to(torch.int64).contiguous()
    columns = [cols["ancestor"], cols["destruction"], tree["in_tree"], tree["kids"], tree["kid_sum"]]
    if any(c.dtype != _TYPES[k] for c, k in zip(columns, ("ancestor", "destruction", "in_tree", "kids", "kid_sum"))) \
            or not _ready(dead, *columns):
        return None
    counts = torch.zeros(3, dtype=torch.int64)
    LIBRARY.call("nsr_lineage_prune", D=dead.numel(), dead=dead.data_ptr(), ancestor=columns[0].data_ptr(),
                 destruction=columns[1].data_ptr(), in_tree=columns[2].data_ptr(), kids=columns[3].data_ptr(),
                 kid_sum=columns[4].data_ptr(), counts=counts.data_ptr())
    return tuple(counts.tolist())


def nonnegative(source: torch.Tensor) -> torch.Tensor:
    """``LongTensor[n]``: ``(source >= 0).nonzero()[:, 0]`` for a ``[P]`` int64 tensor of event
    sources (-1: none), in one pass where the native kernels apply, else in torch."""
    if source.dim() != 1 or source.dtype != torch.int64 or not _ready(source):
        return (source >= 0).nonzero()[:, 0]
    out, counts = torch.empty(source.numel() + 1, dtype=torch.int64), torch.zeros(1, dtype=torch.int64)
    LIBRARY.call("nsr_lineage_nonnegative", P=source.numel(), source=source.data_ptr(), out=out.data_ptr(),
                 counts=counts.data_ptr())
    return out[: int(counts[0])]


__all__ = ["LIBRARY", "attacks", "learners", "nonnegative", "prune"]
