"""Lineages of a soup: who descended from whom, as tensors, and the phylogeny metrics of digital evolution.

A *genome* (a taxon, one node of the phylogeny) is born by one of three events (docs/soup_analytics.md):

- the initial population: every particle of generation 0 is a root (no ancestor);
- an **attack** a -> b: b's genome becomes N_a(b), written by a's network, so it is a new genome whose
  ancestor is a's genome as it was when a attacked; b's previous genome ends there;
- a **respawn**: a fresh random genome, a root (no ancestor); the replaced genome ends there.

Learning from a teacher (``learn_from``) and self-training change a genome gradually and create no
node: the particle's lineage goes on, and the node counts how often its genome learned from another
(the ``learn_from`` column). Particle ids (``SoupState.ids``) change only at a respawn: a particle is a
slot's life between respawns, a genome its content between attacks and respawns.

Everything is batched over the particles of a generation; the walks over ancestors (MRCA, the pruned
phylogeny) loop over depth levels, never over particles. :class:`Phylogeny` also keeps the phylogeny
pruned to the living up to date as it records (a node leaves it when it is dead and has no child left
there), so :meth:`Phylogeny.metrics` costs O(births) per generation, not O(history);
:func:`extant_ancestry`, :func:`mrca` and :func:`lineage_metrics` compute the same from scratch. Export follows the ALife Data Standards
phylogeny format (CSV: ``id``, ``ancestor_list`` like ``[3]`` or ``[none]``, ``origin_time``,
``destruction_time``; our own columns after them).

>>> import torch
>>> ph = Phylogeny(torch.arange(3))                       # generation 0: three roots
>>> ph.record_generation(attack_source=torch.tensor([-1, -1, 0]), respawned=torch.tensor([False, True, False]),
...                      ids=torch.tensor([0, 3, 2]))     # 0 attacks 2; 1 is respawned
>>> ph.living.tolist(), ph.ancestor.tolist(), ph.destruction.tolist()
([0, 4, 3], [-1, -1, -1, 0, -1], [-1, 1, 1, -1, -1])
>>> print(ph.to_csv().splitlines()[4])
3,[0],1,inf,1,attack,2,nan,0
"""
from __future__ import annotations

import io
import math
from typing import Optional

import torch

from nsr.kernels import lineage as _native

__all__ = ["Phylogeny", "CAUSES", "extant_ancestry", "mrca", "lineage_metrics"]

CAUSES = ("initial", "attack", "respawn")  # the event that created a node, by code
_FIELDS = ("ancestor", "origin", "destruction", "depth", "particle", "cause", "parent_distance", "learn_from")


class Phylogeny:
    """A soup's phylogeny, one row per genome ever present, in growable tensors (capacity doubles).

    Columns (``[N]`` each, N = :attr:`size`): ``ancestor`` (node id, -1 none), ``origin`` (generation of
    birth), ``destruction`` (generation it was overwritten, -1 while alive), ``depth`` (births from its
    root), ``particle`` (id of the particle it lived in), ``cause`` (index into :data:`CAUSES`),
    ``parent_distance`` (L2 distance to its parent's genome, NaN unknown), ``learn_from`` (times it
    learned from a teacher). ``living`` ``LongTensor[P]``: the node of every slot of the population.
    """

    def __init__(self, ids: torch.Tensor, time: int = 0):
        P = int(ids.shape[0])
        self._cols = {
            "ancestor": torch.full((P,), -1, dtype=torch.long), "origin": torch.full((P,), int(time), dtype=torch.long),
            "destruction": torch.full((P,), -1, dtype=torch.long), "depth": torch.zeros(P, dtype=torch.long),
            "particle": ids.detach().cpu().long().clone(), "cause": torch.zeros(P, dtype=torch.int8),
            "parent_distance": torch.full((P,), math.nan, dtype=torch.float32),
            "learn_from": torch.zeros(P, dtype=torch.int32)}
        self.size = P
        self.living = torch.arange(P, dtype=torch.long)  # [P] node of every slot
        self.time = int(time)
        self._rebuild_tree()

    # ---- columns ------------------------------------------------------------------------------
    def __getattr__(self, name):
        cols = self.__dict__.get("_cols")
        if cols is not None and name in cols:
            return cols[name][: self.size]
        raise AttributeError(name)

    def _append(self, n: int, **values) -> torch.Tensor:
        """Room for ``n`` new nodes; fills their columns from ``values``; returns their ids ``[n]``."""
        need = self._reserve(n)
        ids = torch.arange(self.size, need, dtype=torch.long)
        for k, v in self._cols.items():
            v[self.size:need] = values[k]
        for v in self._tree.values():  # a new node starts outside the pruned tree, childless
            v[self.size:need] = 0
        self.size = need
        return ids

    def _reserve(self, n: int) -> int:
        """Capacity for ``n`` more nodes (doubling); returns ``size + n``."""
        need = self.size + n
        cap = self._cols["ancestor"].shape[0]
        if need > cap:
            new = max(need, 2 * cap, 16)
            for cols in (self._cols, self._tree):  # (rows past size are written when appended: no fill)
                for k, v in cols.items():
                    grown = torch.empty(new, dtype=v.dtype)
                    grown[: self.size] = v[: self.size]
                    cols[k] = grown
        return need

    def memory_bytes(self) -> int:
        """Bytes held by the phylogeny's columns and its pruned-tree bookkeeping (allocated capacity)
        and the living map."""
        return (sum(v.numel() * v.element_size() for cols in (self._cols, self._tree) for v in cols.values())
                + self.living.numel() * 8)

    # ---- the phylogeny pruned to the living, kept up to date -------------------------------------------
    def _rebuild_tree(self) -> None:
        """The pruned-tree bookkeeping from scratch (:func:`extant_ancestry`): ``in_tree`` (the node is
        alive or an ancestor of a living node), ``kids`` (its children in the pruned tree), ``kid_sum``
        (the sum of their ids: the only child's id when ``kids == 1``)."""
        cap = self._cols["ancestor"].shape[0]
        in_tree = torch.zeros(cap, dtype=torch.bool)
        in_tree[: self.size] = extant_ancestry(self)
        nodes = in_tree[: self.size].nonzero()[:, 0]
        anc = self.ancestor[nodes]
        inner = anc >= 0
        kids = torch.zeros(cap, dtype=torch.int32).index_add_(0, anc[inner], torch.ones_like(anc[inner], dtype=torch.int32))
        kid_sum = torch.zeros(cap, dtype=torch.long).index_add_(0, anc[inner], nodes[inner])
        self._tree = {"in_tree": in_tree, "kids": kids, "kid_sum": kid_sum}
        roots = nodes[~inner]
        self._pruned, self._roots, self._root_sum = int(nodes.numel()), int(roots.numel()), int(roots.sum())
        depth = self.depth[self.living]
        self._depth_sum = int(depth.sum())
        self._depth_count = torch.bincount(depth, minlength=1)  # living genomes per lineage length
        self._mrca = -1

    def _grow_depths(self, depth: torch.Tensor, sign: int) -> None:
        """Adds (``sign`` 1) or removes (-1) living genomes of lineage lengths ``depth`` ``[n]``."""
        if not depth.numel():
            return
        top = int(depth.max()) + 1
        if top > self._depth_count.numel():
            self._depth_count = torch.cat([self._depth_count, self._depth_count.new_zeros(top - self._depth_count.numel())])
        self._depth_count.index_add_(0, depth, torch.full_like(depth, sign))
        self._depth_sum += sign * int(depth.sum())

    def _prune(self, dead: torch.Tensor) -> None:
        """Genomes ``dead`` ``[n]`` (distinct node ids) just ended: each leaves the pruned tree if it
        has no child there, and so on up its lineage while an ancestor is dead and childless (one step
        per depth level; every node leaves at most once, so O(births) amortised)."""
        tree, anc, des = self._tree, self._cols["ancestor"], self._cols["destruction"]
        native = _native.prune(self._cols, tree, dead)  # in C where the native kernels apply (the same tree)
        if native is not None:
            self._pruned -= native[0]
            self._roots -= native[1]
            self._root_sum -= native[2]
            return
        gone = dead[tree["kids"].index_select(0, dead) == 0]
        while gone.numel():
            tree["in_tree"].index_fill_(0, gone, False)
            self._pruned -= int(gone.numel())
            up = anc.index_select(0, gone)
            inner = up >= 0
            roots = gone[~inner]
            self._roots -= int(roots.numel())
            self._root_sum -= int(roots.sum())
            up, child = up[inner], gone[inner]
            tree["kids"].index_add_(0, up, torch.full_like(up, -1, dtype=torch.int32))
            tree["kid_sum"].index_add_(0, up, -child)
            childless = (tree["kids"].index_select(0, up) == 0) & (des.index_select(0, up) >= 0)
            gone = torch.unique(up[childless])  # siblings share a parent

    def _adopt(self, nodes: torch.Tensor, parent: Optional[torch.Tensor]) -> None:
        """New living genomes ``nodes`` ``[n]`` (children of ``parent`` ``[n]``, None: roots) join the
        pruned tree; their parents are in it already (they were alive when they gave birth)."""
        tree = self._tree
        tree["in_tree"].index_fill_(0, nodes, True)
        self._pruned += int(nodes.numel())
        if parent is None:  # all roots
            self._roots += int(nodes.numel())
            self._root_sum += int(nodes.sum())
            return
        # attack births: every parent is a node (index_add_ on int32/int64 columns: one pass each)
        tree["kids"].index_add_(0, parent, torch.ones(parent.numel(), dtype=torch.int32))
        tree["kid_sum"].index_add_(0, parent, nodes)

    def mrca(self) -> int:
        """:func:`mrca` from the pruned tree kept up to date: the single root, then down while a node has
        one child and is not alive. While the root stays the same the MRCA only moves down, so the walk
        goes on from the last one."""
        if self._roots != 1:
            self._mrca = -1
            return -1
        tree, des = self._tree, self._cols["destruction"]
        node = self._mrca if self._mrca >= 0 and bool(tree["in_tree"][self._mrca]) else self._root_sum
        kids, kid_sum = tree["kids"], tree["kid_sum"]
        while int(kids[node]) == 1 and int(des[node]) >= 0:  # one step per depth level
            node = int(kid_sum[node])
        self._mrca = node
        return node

    def metrics(self) -> dict[str, float]:
        """:func:`lineage_metrics` (the same values) from the bookkeeping kept up to date while
        recording: no walk over the whole history."""
        m = self.mrca()
        P = self.living.numel()
        nz = self._depth_count.nonzero()
        return {"mrca_depth": float(self._cols["depth"][m]) if m >= 0 else math.nan,
                "mrca_age": float(self.time - int(self._cols["origin"][m])) if m >= 0 else math.nan,
                "length": self._depth_sum / P if P else math.nan,
                "length_max": float(nz[-1, 0]) if P else math.nan,
                "phylogenetic_richness": float(self._pruned),
                "extant_taxa": float(P),  # every slot holds its own genome: the living nodes are distinct
                "nodes": float(self.size)}

    # ---- one generation -------------------------------------------------------------------------
    def record_generation(self, attack_source: torch.Tensor, respawned: torch.Tensor, ids: torch.Tensor,
                          learn_from_source: Optional[torch.Tensor] = None,
                          parent_distance: Optional[torch.Tensor] = None) -> None:
        """Add one generation of the whole population (global, ``[P]`` each, from
        :func:`nsr.soup.generation_step`'s events): attack births (slot order), learn_from counts,
        respawn births (slot order). ``ids``: the particle ids after the generation;
        ``parent_distance`` ``[P]``: each attacked slot's distance to its attacker's genome."""
        attack_source = attack_source.detach().cpu().long()
        hit = (attack_source >= 0).nonzero()[:, 0]  # [A] attacked slots, ascending
        learners = None if learn_from_source is None else (learn_from_source.detach().cpu() >= 0).nonzero()[:, 0]
        self.record_events(hit, attack_source[hit], respawned.detach().cpu().bool().nonzero()[:, 0], ids, learners,
                           None if parent_distance is None else parent_distance.detach().cpu()[hit])

    def record_events(self, attacked: torch.Tensor, attacker: torch.Tensor, respawned: torch.Tensor, ids: torch.Tensor,
                      learners: Optional[torch.Tensor] = None, parent_distance: Optional[torch.Tensor] = None) -> None:
        """:meth:`record_generation` from the events as slot indices: ``attacked`` ``[A]`` (ascending)
        and ``attacker`` ``[A]`` (the slot whose genome wrote each), ``respawned`` ``[R]`` (ascending),
        ``learners`` ``[L]``, ``parent_distance`` ``[A]``; ``ids`` ``[P]`` the particle ids after the
        generation. O(A + R + L) work on the phylogeny, no pass over all slots."""
        t = self.time + 1
        living = self.living  # updated in place (state_dict copies it)
        cols = self._cols
        ended = []
        # (index_select / index_copy_ / index_fill_ / index_add_: the cheapest random-access passes)
        native = None
        if attacked.numel():  # the attack births in C where the native kernels apply (the same columns)
            dist = (parent_distance if parent_distance is not None else torch.full((attacked.numel(),), math.nan))
            self._reserve(attacked.numel())
            native = _native.attacks(cols, self._tree, living, self.size, t, CAUSES.index("attack"), attacked,
                                     attacker, dist)
        if native is not None:
            old, old_depth = native
            depth = cols["depth"][self.size:self.size + attacked.numel()]
            self.size += attacked.numel()
            self._pruned += int(attacked.numel())
            self._grow_depths(old_depth, -1)
            self._grow_depths(depth, 1)
            ended.append(old)
        elif attacked.numel():
            parent = living.index_select(0, attacker)  # the attackers' genomes at the start of the phase
            old = living.index_select(0, attacked)
            cols["destruction"].index_fill_(0, old, t)
            dist = (parent_distance.float() if parent_distance is not None
                    else torch.full((attacked.numel(),), math.nan))
            depth = cols["depth"].index_select(0, parent) + 1
            born = self._append(attacked.numel(), ancestor=parent, origin=t, destruction=-1, depth=depth,
                                particle=cols["particle"].index_select(0, old), cause=CAUSES.index("attack"),
                                parent_distance=dist, learn_from=0)
            self._grow_depths(cols["depth"].index_select(0, old), -1)
            self._grow_depths(depth, 1)
            living.index_copy_(0, attacked, born)
            self._adopt(born, parent)
            ended.append(old)
        if (learners is not None and learners.numel()  # a node learns at most once per generation
                and not _native.learners(cols["learn_from"], living, learners)):
            cols["learn_from"].index_add_(0, living.index_select(0, learners),
                                          torch.ones(learners.numel(), dtype=torch.int32))
        if respawned.numel():
            old = living.index_select(0, respawned)
            cols["destruction"].index_fill_(0, old, t)
            born = self._append(respawned.numel(), ancestor=-1, origin=t, destruction=-1, depth=0,
                                particle=ids.detach().cpu().long().index_select(0, respawned),
                                cause=CAUSES.index("respawn"), parent_distance=math.nan, learn_from=0)
            self._grow_depths(cols["depth"].index_select(0, old), -1)
            self._grow_depths(torch.zeros_like(respawned), 1)
            living.index_copy_(0, respawned, born)
            self._adopt(born, None)
            ended.append(old)
        if ended:  # distinct nodes: they leave the pruned tree unless they have living descendants
            self._prune(torch.cat(ended))
        self.time = t

    # ---- export -----------------------------------------------------------------------------------
    def to_csv(self, extant_only: bool = False) -> str:
        """The phylogeny in the ALife Data Standards format: ``id,ancestor_list,origin_time,
        destruction_time`` (``inf`` while alive), then ``depth,cause,particle_id,parent_distance,
        learn_from``. ``extant_only``: only the living genomes and their ancestors."""
        keep = self._tree["in_tree"][: self.size] if extant_only else torch.ones(self.size, dtype=torch.bool)
        nodes = keep.nonzero()[:, 0].tolist()
        anc, org, des = self.ancestor.tolist(), self.origin.tolist(), self.destruction.tolist()
        dep, par, cau = self.depth.tolist(), self.particle.tolist(), self.cause.tolist()
        dist, lf = self.parent_distance.tolist(), self.learn_from.tolist()
        out = io.StringIO()
        out.write("id,ancestor_list,origin_time,destruction_time,depth,cause,particle_id,parent_distance,learn_from\n")
        for i in nodes:  # serialisation, one line per node
            a = f"[{anc[i]}]" if anc[i] >= 0 else "[none]"
            d = des[i] if des[i] >= 0 else "inf"
            out.write(f"{i},{a},{org[i]},{d},{dep[i]},{CAUSES[cau[i]]},{par[i]},{dist[i]:.6g},{lf[i]}\n")
        return out.getvalue()

    def state_dict(self) -> dict:
        return {**{k: v[: self.size].clone() for k, v in self._cols.items()}, "living": self.living.clone(),
                "time": self.time}

    @classmethod
    def from_state_dict(cls, state: dict) -> "Phylogeny":
        ph = cls(torch.zeros(0, dtype=torch.long))
        ph._cols = {k: state[k].clone() for k in _FIELDS}
        ph.size = int(state["ancestor"].shape[0])
        ph.living, ph.time = state["living"].clone(), int(state["time"])
        ph._rebuild_tree()
        return ph


def extant_ancestry(ph: Phylogeny) -> torch.Tensor:
    """``BoolTensor[N]``: the living genomes and all their ancestors (the phylogeny pruned to the
    living). One step per depth level."""
    marked = torch.zeros(ph.size, dtype=torch.bool)
    anc = ph.ancestor
    frontier = torch.unique(ph.living)
    while frontier.numel():
        marked[frontier] = True
        up = anc[frontier]
        up = up[up >= 0]
        frontier = torch.unique(up[~marked[up]])
    return marked


def mrca(ph: Phylogeny, ancestry: Optional[torch.Tensor] = None) -> int:
    """The most recent common ancestor of the living genomes (a node id; the genome itself if only
    one is alive), or -1 when their lineages have different roots (e.g. after respawns). From the
    phylogeny pruned to the living (``ancestry``, :func:`extant_ancestry`): its single root, then down
    while a node has exactly one child there and is not itself alive."""
    marked = extant_ancestry(ph) if ancestry is None else ancestry
    nodes = marked.nonzero()[:, 0]  # [M]
    anc = ph.ancestor[nodes]
    roots = nodes[anc < 0]
    if roots.numel() != 1:
        return -1
    inner = anc >= 0
    children = torch.bincount(anc[inner], minlength=ph.size)  # children within the pruned tree
    only = torch.full((ph.size,), -1, dtype=torch.long)
    only[anc[inner]] = nodes[inner]  # the child of every node with exactly one (others are not used)
    alive = torch.zeros(ph.size, dtype=torch.bool)
    alive[ph.living] = True
    node = int(roots[0])
    while children[node] == 1 and not alive[node]:  # one step per depth level
        node = int(only[node])
    return node


def lineage_metrics(ph: Phylogeny) -> dict[str, float]:
    """The phylogeny metrics of Dolson et al. ("Interpreting the Tape of Life") for the living genomes:
    ``mrca_depth`` (births from its root to their most recent common ancestor; NaN if none),
    ``mrca_age`` (generations since it was born; NaN if none), ``length`` (mean lineage length: births
    from the root to each living genome), ``length_max``, ``phylogenetic_richness`` (nodes of the
    phylogeny pruned to the living and their ancestors), ``extant_taxa`` (distinct living genomes),
    ``nodes`` (every genome ever recorded)."""
    ancestry = extant_ancestry(ph)
    m = mrca(ph, ancestry)
    depth = ph.depth[ph.living].double()
    return {"mrca_depth": float(ph.depth[m]) if m >= 0 else math.nan,
            "mrca_age": float(ph.time - int(ph.origin[m])) if m >= 0 else math.nan,
            "length": float(depth.mean()) if depth.numel() else math.nan,
            "length_max": float(depth.max()) if depth.numel() else math.nan,
            "phylogenetic_richness": float(ancestry.sum()),
            "extant_taxa": float(torch.unique(ph.living).numel()), "nodes": float(ph.size)}
