"""ReplicatorModule: a population of single replicators, self-training the Lightning way.

    nsr fit --config configs/weightwise.yaml
    nsr fit --config configs/weightwise.yaml --trainer.accelerator cpu --trainer.devices 2

The population ``[P, W]`` is one parameter; the loss is the sum of the particles' own losses, and
the optimizer is elementwise, so P particles train exactly as P separate networks would. Every
epoch is one ``training_step``: it makes the samples of a snapshot of the genomes (the epoch's
start) and runs all of the epoch's SGD steps through ``nsr.training.train_epoch`` (the fused
kernels), visiting the samples as ``SelfReplicationDataModule``'s batch says (batch size, shuffling).

Randomness is keyed by the particle's global index (:class:`nsr.random.KeyedStream`): particle i
starts from ``rep.init`` keyed by ``(seed, 0, i, "init")`` and visits its samples in epoch e in the
order keyed by ``(seed, e, i, "train")``. A run with seed s therefore equals, bit for bit,
:func:`keyed_self_train` (``self_train`` one epoch at a time with those streams), on any number of
devices.

Several devices: the population is *sharded* (``trainer.strategy: population``, named in the
single-replicator configs, :class:`nsr.modules.strategy.PopulationStrategy`): each process owns a
contiguous slice of the particles and trains it as one device would; only metrics, figures and
checkpoints are gathered. Checkpoints hold the whole population (and momentum buffers) and resume
on any device count. Plain DDP, which would average gradients of different particles, is refused.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from nsr import kernels
from nsr.checkpoint import check_compatible
from nsr.data import epoch_samples
from nsr.fixpoints import SECOND_ORDER_TESTS, check_epsilon
from nsr.modules.population import PopulationModule, count_optimizer_step
from nsr.modules.strategy import check_sharding_strategy, population_shard
from nsr.random import KeyedStream, epoch_orders
from nsr.replicators import Replicator, Weightwise, from_config
from nsr.sharding import Shard, gather_rows
from nsr.training import check_hyperparameters, self_train, sgd_step, train_epoch

INIT_TAG, TRAIN_TAG = "init", "train"  # the KeyedStream tags of the initial genomes and the visiting orders
ORDERS_AHEAD = 1 << 16  # visiting-order entries (particles x samples x epochs) a small population draws at once


def initial_population(rep: Replicator, seed: int, start: int, stop: int, device=None) -> torch.Tensor:
    """``[stop - start, W]``: the initial genomes of particles ``start .. stop-1``, each keyed by
    ``(seed, 0, global index, "init")``, so any slice equals the same rows of the whole population."""
    idx = torch.arange(start, stop, dtype=torch.long, device=device)
    return rep.init(stop - start, generator=KeyedStream(seed, 0, idx, INIT_TAG), device=device)


def epoch_stream(seed: int, epoch: int, start: int, stop: int, device=None) -> KeyedStream:
    """The random numbers of particles ``start .. stop-1`` in epoch ``epoch`` (their visiting orders),
    keyed by ``(seed, epoch, global index, "train")``."""
    return KeyedStream(seed, epoch, torch.arange(start, stop, dtype=torch.long, device=device), TRAIN_TAG)


def keyed_self_train(rep: Replicator, w: torch.Tensor, epochs: int, seed: int, lr=0.01, batch_size=1,
                     momentum: float = 0.0, shuffle: bool = True, first_epoch: int = 0, start: int = 0,
                     velocity: Optional[torch.Tensor] = None):
    """What :class:`ReplicatorModule` computes: ``nsr.training.self_train`` one epoch at a time,
    epoch e drawing its visiting orders from :func:`epoch_stream` (particles ``start ..``, epochs
    ``first_epoch ..``). Returns a :class:`nsr.training.TrainState`. A run of ``nsr fit`` with seed s
    and P particles ends with ``keyed_self_train(rep, initial_population(rep, s, 0, P), epochs, s, ...)``.
    """
    P = w.shape[0]
    state = None
    for e in range(first_epoch, first_epoch + epochs):
        state = self_train(rep, w, 1, lr, batch_size, momentum, shuffle, epoch_stream(seed, e, start, start + P, w.device),
                           velocity, return_state=True)
        w, velocity = state.weights, state.velocity
    return state


class PopulationSGD(torch.optim.Optimizer):
    """torch's SGD rule (momentum, dampening 0, no Nesterov) computed by ``nsr.training.sgd_step``,
    so a Lightning run and ``self_train`` make the same floating-point operations. The momentum
    buffer is optimizer state, saved in checkpoints."""

    def __init__(self, params, lr: float = 0.01, momentum: float = 0.0):
        check_hyperparameters(lr=lr, momentum=momentum)
        super().__init__(params, {"lr": lr, "momentum": momentum})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                new, velocity = sgd_step(p, p.grad, state.get("velocity"), group["lr"], group["momentum"])
                p.copy_(new)
                if velocity is not None:
                    state["velocity"] = velocity.clone()
        return loss


class ReplicatorModule(PopulationModule):
    """P replicators of one architecture, self-training (the paper's experiment, batched). A
    :class:`nsr.modules.PopulationModule`: particle i is network i for the whole run.

    Args:
        replicator: the architecture (``nsr.replicators.Weightwise``, ``Aggregating``, ``Recurrent``);
            default ``Weightwise()``.
        population: P, the number of networks (>= 1).
        lr: SGD learning rate (>= 0).
        momentum: SGD momentum in [0, 1).
        epsilon: fixpoint tolerance (> 0).
        second_order: ``"orbit"`` (F(F(w)) = w) or ``"same_network"`` (N_w(N_w(w)), the published code).
        seed: keys the initial genomes and the visiting orders (by particle index and epoch); the
            same seed gives the same run on any number of devices.
        init_from: start from the population of an nsr checkpoint (same architecture and P) instead
            of random genomes, with fresh optimizer state and epoch counter (fine-tuning, on any
            number of devices); ``--ckpt_path`` instead resumes a run exactly.
    """

    def __init__(self, replicator: Optional[Replicator] = None, population: int = 1, lr: float = 0.01,
                 momentum: float = 0.0, epsilon: float = 1e-4, second_order: str = "orbit", seed: int = 0,
                 init_from: Optional[str] = None):
        super().__init__()
        if replicator is None:
            replicator = Weightwise()
        if isinstance(replicator, dict):
            replicator = from_config(replicator)
        if not isinstance(replicator, Replicator):
            raise ValueError(f"replicator must be an nsr.replicators.Replicator, got {type(replicator).__name__}")
        if isinstance(population, bool) or not isinstance(population, int) or population < 1:
            raise ValueError(f"population must be an integer >= 1, got {population!r}")
        check_hyperparameters(lr=lr, momentum=momentum)
        check_epsilon(epsilon)
        if second_order not in SECOND_ORDER_TESTS:
            raise ValueError(f"second_order must be one of {', '.join(SECOND_ORDER_TESTS)}, got {second_order!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        self.save_hyperparameters(ignore=["replicator"])
        self.hparams["replicator"] = replicator.to_config()
        self.automatic_optimization = False

        self.replicator = replicator
        self.size = population
        self.seed = seed
        self.epsilon = float(epsilon)
        self.second_order = second_order
        self.lr, self.momentum = lr, momentum
        self.epochs_trained = 0  # keys the visiting orders of the next epoch
        if init_from is not None:
            ckpt = check_compatible(init_from, replicator, population=population)
            w = replicator.check_weights(ckpt["nsr"]["weights"].to(torch.float32), f"the weights in {init_from}")
        else:
            w = initial_population(replicator, seed, 0, population)  # [P, W]
        # the whole population until configure_model() keeps this process's slice of it
        self.genomes = nn.Parameter(w)
        self._bounds, self._rank = (0, population), 0  # the shard bounds the parameter holds, and which slice
        self.particle_loss = torch.full((population,), math.nan)  # [P_local] mean loss of the last epoch

    # ---- the PopulationModule contract ---------------------------------------------------------
    @property
    def shard(self) -> Shard:
        """This process's slice of the population (the whole population outside a distributed run)."""
        return population_shard(self._trainer, self.size)

    @property
    def population(self) -> torch.Tensor:
        """``[P_local, W]`` this process's genomes, detached."""
        return self.genomes.detach()

    @property
    def particle_ids(self) -> torch.Tensor:
        """``LongTensor[P_local]``: the global indices of this process's particles (particle i is
        network i for the whole run)."""
        lo, hi = self._slice()
        return torch.arange(lo, hi, device=self.genomes.device)

    def gather_population(self) -> torch.Tensor:
        """``[P, W]`` the whole population, gathered from every process (a collective)."""
        return gather_rows(self.shard, self.population) if self._slice() != (0, self.size) else self.population

    def gather_particle_ids(self) -> torch.Tensor:
        """``LongTensor[P]``: ``0 .. P-1`` (no communication needed)."""
        return torch.arange(self.size, device=self.genomes.device)

    def _slice(self) -> tuple[int, int]:
        """``(start, stop)``: the global indices of the particles the parameter holds."""
        return int(self._bounds[self._rank]), int(self._bounds[self._rank + 1])

    # ---- Lightning ------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        check_sharding_strategy(self.trainer.strategy, "a population of replicators")

    def configure_model(self) -> None:
        """Keep this process's contiguous slice of the population (idempotent)."""
        shard = self.shard
        if shard.world == 1 or tuple(self._bounds) == tuple(shard.bounds):
            return
        if tuple(self._bounds) != (0, self.size):
            raise ValueError(f"this module is sharded over {len(self._bounds) - 1} processes already; "
                             f"make a new ReplicatorModule for {shard.world}")
        with torch.no_grad():
            self.genomes = nn.Parameter(self.genomes.detach()[shard.start:shard.stop].clone())
        self._bounds, self._rank = tuple(shard.bounds), shard.rank
        self.particle_loss = torch.full((shard.stop - shard.start,), math.nan)

    def configure_optimizers(self):
        return PopulationSGD([self.genomes], lr=self.lr, momentum=self.momentum)

    def training_step(self, batch, batch_idx):
        """One epoch of self-training of this process's particles over the samples of a snapshot of
        their genomes, visited as ``batch`` says (``SelfReplicationDataModule``: batch size, shuffling;
        a batch that brings its own samples ``x, y`` is used as given), through the fused kernels,
        each particle's visiting order keyed by (seed, epoch, global index). The epoch counts as one
        optimizer step in Lightning's counters (``global_step`` = epochs trained)."""
        batch_size, shuffle = batch.get("batch_size", 1), batch.get("shuffle", True)
        opt = self.optimizers()
        group, state = opt.param_groups[0], opt.optimizer.state[self.genomes]
        lo, hi = self._slice()
        if "x" not in batch and self.replicator.kernel is not None:
            # the fused kernels make the samples of the genomes at the epoch's start themselves:
            # the same steps as on epoch_samples(self), without building them in torch
            order = self._visiting_order(batch_size, shuffle)  # [P_local, S], or None: drawn from the stream
            stream = None if order is not None else epoch_stream(self.seed, self.epochs_trained, lo, hi, self.genomes.device)
            w, velocity, loss = kernels.train(self.replicator, self.population, 1, group["lr"], batch_size,
                                              group["momentum"], shuffle, stream, state.get("velocity"), order=order)
        else:
            x, y = (batch["x"], batch["y"]) if "x" in batch else epoch_samples(self)  # [P_local, S, ...]
            stream = epoch_stream(self.seed, self.epochs_trained, lo, hi, x.device)
            w, velocity, loss = train_epoch(self.replicator, self.population.clone(), x, y, group["lr"], batch_size,
                                            group["momentum"], shuffle, stream, state.get("velocity"))
        with torch.no_grad():
            self.genomes.copy_(w)
        if velocity is not None:
            state["velocity"] = velocity
        self.genomes.grad = None
        count_optimizer_step(opt)  # nothing left to apply: registers the epoch with Lightning (global_step)
        self.epochs_trained += 1
        self.particle_loss = loss.detach()

    def _visiting_order(self, batch_size, shuffle) -> Optional[torch.Tensor]:
        """``[P_local, S]``: this epoch's visiting orders, the ones :func:`epoch_stream` draws, for a
        small population: drawn for up to ``ORDERS_AHEAD`` numbers of epochs at once (a stream and
        a draw per epoch cost more than such an epoch's training). None otherwise (unshuffled, or a
        population large enough that the per-epoch draw does not matter)."""
        S = self.replicator.kernel.num_samples
        if not shuffle or batch_size is None or batch_size >= S or S <= 1:
            return None
        lo, hi = self._slice()
        ahead = ORDERS_AHEAD // max((hi - lo) * S, 1)
        if ahead < 8 or self.genomes.device.type != "cpu":
            return None
        e, key = self.epochs_trained, (self.seed, lo, hi, S)
        cached = getattr(self, "_orders", None)
        if cached is None or cached[0] != key or not cached[1] <= e < cached[1] + len(cached[2]):
            ids = torch.arange(lo, hi, dtype=torch.long)
            cached = self._orders = (key, e, epoch_orders(self.seed, range(e, e + ahead), ids, TRAIN_TAG, S))
        return cached[2][e - cached[1]]

    # ---- checkpoints: the whole population, whatever the device count ---------------------------
    def on_save_checkpoint(self, checkpoint):
        """Every process calls it (collectives): the parameter and the momentum buffers are written
        whole, so the checkpoint resumes on any number of devices."""
        weights = self.gather_population().detach().cpu().clone()  # [P, W]
        checkpoint["nsr"] = {"kind": self.kind, "replicator": self.replicator.to_config(), "weights": weights,
                             "epsilon": self.epsilon, "seed": self.seed, "epochs_trained": self.epochs_trained}
        if "state_dict" in checkpoint:
            checkpoint["state_dict"]["genomes"] = weights
        for opt_state in checkpoint.get("optimizer_states", []):
            # new dicts: the slots of a state_dict() are the optimizer's live state
            opt_state["state"] = {k: {name: self._gather(v).cpu() if name == "velocity" else v for name, v in slot.items()}
                                  for k, slot in opt_state.get("state", {}).items()}

    def _gather(self, local: torch.Tensor) -> torch.Tensor:
        return gather_rows(self.shard, local) if self._slice() != (0, self.size) else local

    def resume_population(self) -> int:
        return self.size

    def on_load_checkpoint(self, checkpoint):
        """Resume: this process's rows of the whole population and momentum buffers, and the epoch
        counter that keys the next visiting orders."""
        nsr = self.checked_entry(checkpoint, population=self.size)
        lo, hi = self._slice()
        if "state_dict" in checkpoint:
            checkpoint["state_dict"]["genomes"] = nsr["weights"][lo:hi].clone()
        for opt_state in checkpoint.get("optimizer_states", []):
            for slot in opt_state.get("state", {}).values():
                v = slot.get("velocity")
                if isinstance(v, torch.Tensor) and v.shape[0] == self.size:
                    slot["velocity"] = v[lo:hi].clone()
        self.epochs_trained = int(nsr.get("epochs_trained", checkpoint.get("global_step", 0)))
