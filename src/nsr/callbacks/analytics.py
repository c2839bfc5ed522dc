"""Soup analytics callbacks: the phylogeny (``LineageRecorder``) and species and diversity
(``SpeciesMonitor``) of any ``SoupModule`` run, one record per generation.

    nsr fit --config configs/soup_analytics.yaml

They read what ``SoupModule`` offers: ``population`` (this process's ``[P_local, W]``), ``shard``,
``generation``, ``gather_particle_ids()`` and ``events`` (``nsr.soup.generation_step``'s, with each
particle's ``attack_source``, ``learn_from_source`` and ``respawn_mask``). On several devices every
per-particle quantity is gathered in global index order and every random sample is keyed by (seed,
generation) over global indices, so every rank holds the same phylogeny and species as a one-device
run; rank 0 logs and writes files: ``phylogeny.csv`` (ALife Data Standards), ``lineage.csv``,
``species.csv`` and ``muller.png`` in the run's log folder. See docs/soup_analytics.md.
"""
from __future__ import annotations

import csv
import io
import math
import os
from typing import Optional

import torch
from lightning.pytorch.callbacks import Callback

from nsr.atomic import write_atomically
from nsr.callbacks.logs import log_epoch_metrics, save_figure, tensorboard_writer
from nsr.kernels.lineage import nonnegative
from nsr.lineage import Phylogeny
from nsr.soup import gather_rows
from nsr.species import (CODECS, SpeciesRegistry, dbscan_keys, function_keys, gathered_distance, genome_keys,
                         higher_order_entropy, pairwise_distance, probe_genomes, quantise_bytes, sample_indices,
                         sample_pairs, sampled_diversity)

__all__ = ["LineageRecorder", "SpeciesMonitor", "muller_figure", "gather_where"]


def _check_int(name, v, minimum=1):
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {v!r}")
    return v


def gather_where(shard, local: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Rows ``index`` (``LongTensor[n]`` of global particle indices, the same on every process) of
    the whole population, from this process's ``local`` ``[P_local, ...]`` slice: ``[n, ...]``.
    A collective (every process calls it together); only the rows needed travel."""
    if shard.world == 1:
        return local.index_select(0, index.to(local.device))  # (faster than local[index] for rows)
    needed = torch.zeros(shard.size, dtype=torch.bool, device=local.device)
    needed[index] = True
    rows = gather_rows(shard, local, needed)  # [U, ...] in global index order
    return rows[torch.searchsorted(needed.nonzero()[:, 0], index.to(local.device))]


def _everyone(shard, local: torch.Tensor) -> torch.Tensor:
    """The whole population's rows of ``local`` (a collective on several processes; no copy on one)."""
    return local if shard.world == 1 else gather_rows(shard, local)


def _write_csv(path: str, rows: list[dict]) -> None:
    if not rows:
        return
    buf = io.StringIO()
    out = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    out.writeheader()
    out.writerows({k: (f"{v:.9g}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows)
    write_atomically(path, lambda f: f.write(buf.getvalue()), "w")


class LineageRecorder(Callback):
    """Records who descended from whom in a soup (``nsr.lineage.Phylogeny``: attacks and respawns
    create genomes, learn_from is counted) and logs, per generation, ``soup/survival`` (share of
    genomes neither attacked nor respawned), ``soup/births`` (attack births), ``soup/parent_distance``
    (mean L2 distance of an attacked particle's genome at the end of the generation to its attacker's
    genome at the start) and, with the phylogeny, ``lineage/mrca_depth``, ``lineage/mrca_age``,
    ``lineage/length``, ``lineage/phylogenetic_richness``, ``lineage/extant_taxa``, ``lineage/nodes``
    (every ``every_n_epochs`` generations). At the end it writes ``phylogeny.csv`` (ALife Data
    Standards; ``extant_only``: only the living and their ancestors) and ``lineage.csv``.

    ``phylogeny``: record the phylogeny (true/false); ``None`` records it for soups of up to
    ``auto_limit`` particles (its memory grows with every birth, docs/soup_analytics.md)."""

    def __init__(self, phylogeny: Optional[bool] = None, every_n_epochs: int = 1, auto_limit: int = 100_000,
                 extant_only: bool = False, write_csv: bool = True):
        if phylogeny is not None and not isinstance(phylogeny, bool):
            raise ValueError(f"phylogeny must be true, false or null, got {phylogeny!r}")
        self.every_n_epochs = _check_int("every_n_epochs", every_n_epochs)
        self.auto_limit = _check_int("auto_limit", auto_limit, 0)
        self.want, self.extant_only, self.write_csv = phylogeny, bool(extant_only), bool(write_csv)
        self.phylogeny: Optional[Phylogeny] = None
        self.history: list[dict] = []
        self._prev = None

    def _enabled(self, size: int) -> bool:
        return self.want if self.want is not None else size <= self.auto_limit

    def on_train_start(self, trainer, pl_module):
        ids = pl_module.gather_particle_ids().cpu()  # collective
        if self.phylogeny is None and self._enabled(int(ids.shape[0])):
            self.phylogeny = Phylogeny(ids, time=pl_module.generation)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        # [P_local, W] the genomes attackers attack with: a reference, not a copy (generation_step is a
        # pure function: it returns new genomes and leaves these untouched)
        self._prev = pl_module.population

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        ev, shard, w = pl_module.events, pl_module.shard, pl_module.population
        src, lf, dead = ev["attack_source"], ev["learn_from_source"], ev["respawn_mask"]
        # each attacked local particle's distance to its attacker's genome at the generation's start
        everyone = _everyone(shard, src)  # [P] (collective)
        attacked = nonnegative(everyone)  # [A] global slots, ascending
        attacker = everyone.index_select(0, attacked)  # [A]
        hit_dead = None  # [A] attacked slots respawned in the same generation
        if shard.world == 1:  # every slot is local: distances of the attacked slots only
            lf_all, dead_all = lf.cpu(), dead.cpu()
            # [A] every attacked slot's distance (row-wise, so the same numbers as for the kept ones
            # alone), then NaN where the child was respawned in its birth generation (no distance)
            dist_all = gathered_distance(w, attacked, self._prev, attacker).cpu()
            hit_dead = dead_all.index_select(0, attacked.cpu())
            dist_all.masked_fill_(hit_dead, math.nan)
        else:
            dist = torch.full((w.shape[0],), math.nan, dtype=torch.float64, device=w.device)
            if attacked.numel():
                parents = gather_where(shard, self._prev, attacker)  # [A, W]
                mine = (src >= 0) & ~dead
                rows = torch.searchsorted(attacked.to(w.device), mine.nonzero()[:, 0] + shard.start)
                dist[mine] = pairwise_distance(w[mine], parents[rows]).to(dist)
            packed = torch.stack([lf.double(), dead.double(), dist], dim=1)  # [P_local, 3]
            allp = gather_rows(shard, packed).cpu()  # [P, 3] (collective)
            lf_all, dead_all = allp[:, 0].long(), allp[:, 1].bool()
            dist_all = allp[:, 2][attacked.cpu()]  # [A]
        attacked, attacker = attacked.cpu(), attacker.cpu()
        ids = pl_module.gather_particle_ids().cpu()
        born = dist_all[torch.isfinite(dist_all)]
        respawned = dead_all.nonzero()[:, 0]  # [R]
        t, P = int(pl_module.generation), int(everyone.numel())
        if hit_dead is None:
            hit_dead = dead_all.index_select(0, attacked)
        n_hit_dead = int(hit_dead.sum())
        row = {"generation": t, "survival": (P - attacked.numel() - respawned.numel() + n_hit_dead) / P if P else math.nan,
               "births": float(attacked.numel()), "respawned": float(respawned.numel()),
               "parent_distance": float(born.mean()) if born.numel() else math.nan}
        if self.phylogeny is not None:
            self.phylogeny.record_events(attacked, attacker, respawned, ids, nonnegative(lf_all), dist_all)
            last = trainer.max_epochs is not None and trainer.current_epoch + 1 >= trainer.max_epochs
            if (trainer.current_epoch + 1) % self.every_n_epochs == 0 or last:
                row.update(self.phylogeny.metrics())
        self.history.append(row)
        metrics = {f"soup/{k}": row[k] for k in ("survival", "births", "parent_distance")}
        metrics.update({f"lineage/{k}": v for k, v in row.items() if k not in metrics and k not in
                        ("generation", "survival", "births", "respawned", "parent_distance")})
        log_epoch_metrics(trainer, metrics, step=t)
        self._prev = None

    def on_train_end(self, trainer, pl_module):
        log_dir = trainer.log_dir  # broadcasts
        if not trainer.is_global_zero or not self.write_csv or not log_dir:
            return
        os.makedirs(log_dir, exist_ok=True)
        if self.phylogeny is not None:
            text = self.phylogeny.to_csv(extant_only=self.extant_only)
            write_atomically(os.path.join(log_dir, "phylogeny.csv"), lambda f: f.write(text), "w")
        _write_csv(os.path.join(log_dir, "lineage.csv"), self.history)

    def state_dict(self):
        return {"phylogeny": None if self.phylogeny is None else self.phylogeny.state_dict(), "history": self.history}

    def load_state_dict(self, state_dict):
        ph = state_dict.get("phylogeny")
        self.phylogeny = None if ph is None else Phylogeny.from_state_dict(ph)
        self.history = list(state_dict.get("history", []))


class SpeciesMonitor(Callback):
    """Every ``every_n_epochs`` generations, the soup's species (``nsr.species``; ``by``: ``genome``
    grid, ``function`` grid on ``probes`` fixed probe genomes, or ``dbscan`` for small soups; within
    ``tolerance``) with ids stable across generations, and the scalars ``soup/species`` (richness),
    ``soup/shannon``, ``soup/simpson`` (Gini-Simpson), ``soup/largest_share``,
    ``soup/species_survival`` (share of the previous record's species still present); in soups of
    more than ``max_species_particles`` these are measured on that many particles, a uniform sample
    keyed by (seed, generation), with ``soup/sampled`` and the standard errors ``soup/shannon_se``,
    ``soup/simpson_se``, ``soup/largest_share_se`` (0 when every particle counts);
    ``soup/pairwise_distance`` (mean L2 genome distance over all pairs, or ``max_pairs`` sampled
    pairs), ``soup/entropy_per_byte``, ``soup/compressed_bits_per_byte``, ``soup/higher_order_entropy``
    (genomes quantised to bytes over [-entropy_limit, entropy_limit], at most ``max_entropy_particles``
    sampled, compressed with ``codec``). At the end: a Muller plot of the ``muller_species`` most
    abundant species (``muller.png`` and TensorBoard ``soup/muller``) and ``species.csv``. Species
    unseen for more than ``forget_after`` records lose their id. The whole population counts as one soup."""

    def __init__(self, by: str = "genome", tolerance: float = 1e-2, every_n_epochs: int = 1, max_pairs: int = 4096,
                 max_entropy_particles: int = 16384, entropy_limit: float = 2.0, codec: str = "zlib",
                 muller_species: int = 12, forget_after: Optional[int] = 2, probes: int = 2, seed: int = 0,
                 write_csv: bool = True, max_species_particles: int = 16384):
        if by not in ("genome", "function", "dbscan"):
            raise ValueError(f"by must be genome, function or dbscan, got {by!r}")
        if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not tolerance > 0 or not math.isfinite(tolerance):
            raise ValueError(f"tolerance must be a finite number > 0, got {tolerance!r}")
        if isinstance(entropy_limit, bool) or not isinstance(entropy_limit, (int, float)) or not entropy_limit > 0:
            raise ValueError(f"entropy_limit must be a number > 0, got {entropy_limit!r}")
        if codec not in CODECS:
            raise ValueError(f"codec must be one of {', '.join(CODECS)}, got {codec!r}")
        if forget_after is not None:
            _check_int("forget_after", forget_after, 0)
        self.by, self.tolerance, self.codec, self.entropy_limit = by, float(tolerance), codec, float(entropy_limit)
        self.every_n_epochs = _check_int("every_n_epochs", every_n_epochs)
        self.max_pairs = _check_int("max_pairs", max_pairs)
        self.max_entropy_particles = _check_int("max_entropy_particles", max_entropy_particles)
        self.max_species_particles = _check_int("max_species_particles", max_species_particles)
        self.muller_species = _check_int("muller_species", muller_species)
        self.probes, self.seed = _check_int("probes", probes), _check_int("seed", seed, 0)
        self.write_csv = bool(write_csv)
        self.registry = SpeciesRegistry(forget_after)
        self.history: list[dict] = []
        self.muller: list[tuple[int, torch.Tensor, torch.Tensor, int]] = []  # (generation, ids, counts, total)
        self._last_species: Optional[torch.Tensor] = None
        self._probes = None

    def species_keys(self, pl_module, sample: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``LongTensor[P]``: the species key of every particle of the whole soup, or ``[n]`` of the
        particles ``sample`` (global indices, the same on every process). A collective."""
        shard, w = pl_module.shard, pl_module.population
        if sample is not None:
            w = gather_where(shard, w, sample.to(w.device))  # [n, W] on every process
        elif self.by == "dbscan":
            w = pl_module.gather_population()
        if self.by == "dbscan":
            return dbscan_keys(w.cpu(), self.tolerance)
        if self.by == "function":
            if self._probes is None:
                self._probes = probe_genomes(pl_module.replicator, self.probes, self.seed)
            keys = function_keys(pl_module.replicator, w, self._probes, self.tolerance)
        else:
            keys = genome_keys(w, self.tolerance)
        return keys.cpu() if sample is not None else _everyone(shard, keys).cpu()

    def measure(self, pl_module) -> dict[str, float]:
        """This generation's species and diversity scalars (a collective: every rank calls it)."""
        shard, w, t = pl_module.shard, pl_module.population, int(pl_module.generation)
        P = shard.size
        entropy_sample = sample_indices(P, self.max_entropy_particles, self.seed, t)
        sample = None  # the species of every particle, or of a keyed sample (the entropy's, when as large)
        if P > self.max_species_particles:
            sample = (entropy_sample if self.max_species_particles == self.max_entropy_particles
                      else sample_indices(P, self.max_species_particles, self.seed, t, tag=3))
        species = self.registry.assign(self.species_keys(pl_module, sample), t)  # [P] or [n]
        ids, counts = self.registry.present  # [S] each
        row = {"generation": t, **sampled_diversity(counts, P, int(species.numel()))}
        prev = self._last_species
        if prev is not None and prev.numel() and ids.numel():
            srt = ids.sort().values
            row["species_survival"] = float((srt[torch.searchsorted(srt, prev).clamp(max=srt.numel() - 1)] == prev).double().mean())
        else:
            row["species_survival"] = math.nan if prev is None or not prev.numel() else 0.0
        self._last_species = ids
        pairs = sample_pairs(shard.size, self.max_pairs, self.seed, t)  # [M, 2]
        if pairs.numel():
            g = gather_where(shard, w, pairs.reshape(-1).to(w.device)).view(pairs.shape[0], 2, -1)
            d = pairwise_distance(g[:, 0], g[:, 1])
            d = d[torch.isfinite(d)]
            row["pairwise_distance"] = float(d.mean()) if d.numel() else math.nan
        else:
            row["pairwise_distance"] = math.nan
        data = quantise_bytes(gather_where(shard, w, entropy_sample.to(w.device)), self.entropy_limit)
        row.update(higher_order_entropy(data, self.codec))
        top = counts.argsort(descending=True, stable=True)[: 4 * self.muller_species]
        self.muller.append((t, ids[top].clone(), counts[top].clone(), int(species.numel())))
        self.history.append(row)
        return {f"soup/{k}": v for k, v in row.items() if k != "generation"}

    def on_train_start(self, trainer, pl_module):
        if not self.history:  # generation 0 (a resumed run holds its earlier records)
            log_epoch_metrics(trainer, self.measure(pl_module), step=int(pl_module.generation))

    def on_train_epoch_end(self, trainer, pl_module):
        last = trainer.max_epochs is not None and trainer.current_epoch + 1 >= trainer.max_epochs
        if (trainer.current_epoch + 1) % self.every_n_epochs and not last:
            return
        log_epoch_metrics(trainer, self.measure(pl_module), prog_bar=("soup/species",), step=int(pl_module.generation))

    def on_train_end(self, trainer, pl_module):
        log_dir = trainer.log_dir
        if not trainer.is_global_zero:
            return
        fig = muller_figure(self.muller, self.muller_species, getattr(pl_module, "time_unit", "generation"))
        writer = tensorboard_writer(trainer)
        if writer is not None and fig is not None:
            writer.add_figure("soup/muller", fig, global_step=int(pl_module.generation))
        if log_dir and self.write_csv:
            os.makedirs(log_dir, exist_ok=True)
            if fig is not None:
                save_figure(fig, os.path.join(log_dir, "muller.png"))
            _write_csv(os.path.join(log_dir, "species.csv"), self.history)

    def state_dict(self):
        return {"registry": self.registry.state_dict(), "history": self.history, "muller": self.muller,
                "last_species": self._last_species}

    def load_state_dict(self, state_dict):
        self.registry.load_state_dict(state_dict["registry"])
        self.history = list(state_dict["history"])
        self.muller = list(state_dict["muller"])
        self._last_species = state_dict["last_species"]


def muller_figure(records, k: int = 12, time_label: str = "generation"):
    """A Muller plot: the abundance (share of the soup) of the ``k`` species most abundant over the
    whole run, stacked over generations in the order they appeared, the rest as one grey band.
    ``records``: ``(generation, species ids, counts, population)`` per record. None if empty."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    if not records:
        return None
    times = torch.tensor([r[0] for r in records], dtype=torch.float64)
    ids = torch.cat([r[1] for r in records])
    counts = torch.cat([r[2] for r in records]).double()
    uid, inv = torch.unique(ids, return_inverse=True)
    total = torch.zeros(uid.numel(), dtype=torch.float64).index_add_(0, inv, counts)
    chosen = uid[total.argsort(descending=True, stable=True)[:k]].sort().values  # ids grow with first appearance
    share = torch.zeros(chosen.numel(), len(records), dtype=torch.float64)  # [k, T]
    for j, (_, i, c, n) in enumerate(records):  # over records (generations), not particles
        pos = torch.searchsorted(chosen, i).clamp(max=max(chosen.numel() - 1, 0))
        hit = chosen[pos] == i if chosen.numel() else torch.zeros_like(i, dtype=torch.bool)
        share[:, j].index_add_(0, pos[hit], c[hit].double() / max(n, 1))
    rest = (1 - share.sum(0)).clamp(min=0)
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot(1, 1, 1)
    cmap = colormaps["tab20"]
    ax.stackplot(times.numpy(), *share.numpy(), rest.numpy(),
                 colors=[cmap(i % 20) for i in range(chosen.numel())] + [(0.8, 0.8, 0.8)],
                 labels=[f"species {s}" for s in chosen.tolist()] + ["others / none"])
    ax.set_xlim(float(times.min()), float(times.max()) if len(records) > 1 else float(times.min()) + 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel(time_label)
    ax.set_ylabel("share of the soup")
    ax.set_title("Muller plot: species abundance")
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7)
    fig.tight_layout()
    return fig
