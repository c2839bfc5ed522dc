"""ReplicatorModule: a population of single replicators, self-training the Lightning way.

    nsr fit --config configs/weightwise.yaml

The population ``[P, W]`` is one parameter; the loss is the sum of the particles' own losses, and
the optimizer is elementwise, so P particles train exactly as P separate networks would. Every
epoch's samples come from ``SelfReplicationDataModule`` (a snapshot of the genomes at the epoch's
start); ``training_step`` runs all of the epoch's SGD steps with ``nsr.training``'s gradients and
update rule. With a seed s and one device, a run equals
``nsr.training.self_train(rep, rep.init(P, generator=g), epochs, lr, batch_size, momentum, generator=g)``
with ``g = torch.Generator().manual_seed(s)``, bit for bit.

Several devices (``--trainer.strategy ddp``) split every step's samples over the ranks
(data-parallel, each rank batch_size samples per particle) and average the gradients, weighted by
how many samples each rank had: a step on R devices is one step with R * batch_size samples.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from nsr.checkpoint import check_compatible
from nsr.fixpoints import SECOND_ORDER_TESTS, check_epsilon
from nsr.replicators import Replicator, Weightwise, from_config
from nsr.modules.population import PopulationModule
from nsr.training import check_hyperparameters, sgd_step, take, train_epoch, train_epoch_steps


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
        seed: seeds the initial genomes and the shuffling; the same seed gives the same run.
        init_from: start from the population of an nsr checkpoint (same architecture and P) instead
            of random genomes, with fresh optimizer state and epoch counter (fine-tuning);
            ``--ckpt_path`` instead resumes a run exactly.
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
        self.epsilon = float(epsilon)
        self.second_order = second_order
        self.lr, self.momentum = lr, momentum
        # one stream for the initial genomes, then the epochs' shuffling (as self_train would use it)
        self.generator = torch.Generator().manual_seed(seed)
        w = replicator.init(population, generator=self.generator)  # [P, W]
        if init_from is not None:
            ckpt = check_compatible(init_from, replicator, population=population)
            w = replicator.check_weights(ckpt["nsr"]["weights"].to(w.dtype), f"the weights in {init_from}")
        self.genomes = nn.Parameter(w)
        self.particle_loss = torch.full((population,), math.nan)  # [P] mean loss of the last epoch

    # ---- the PopulationModule contract ---------------------------------------------------------
    @property
    def population(self) -> torch.Tensor:
        """``[P, W]`` the genomes, detached (this process's particles: all of them)."""
        return self.genomes.detach()

    @property
    def particle_ids(self) -> torch.Tensor:
        """``LongTensor[P]``: particle i is network i for the whole run."""
        return torch.arange(self.genomes.shape[0], device=self.genomes.device)

    def gather_population(self) -> torch.Tensor:
        """``[P, W]`` the whole population. Data-parallel training keeps every rank's copy identical,
        so no communication is needed."""
        return self.population

    def gather_particle_ids(self) -> torch.Tensor:
        return self.particle_ids

    # ---- training ------------------------------------------------------------------------------
    def configure_optimizers(self):
        return PopulationSGD([self.genomes], lr=self.lr, momentum=self.momentum)

    def training_step(self, batch, batch_idx):
        """One epoch of self-training over the snapshot ``batch`` (see ``SelfReplicationDataModule``).

        On one device the epoch is ``nsr.training.train_epoch`` (the fused kernels); on several, each
        step's samples are split over the ranks and the gradients all-reduced. Either way the epoch
        counts as one optimizer step in Lightning's counters (``global_step`` = epochs trained).
        """
        x, y, batch_size, shuffle = batch["x"], batch["y"], batch["batch_size"], batch["shuffle"]  # [P, S, ...]
        opt = self.optimizers()
        group, state = opt.param_groups[0], opt.optimizer.state[self.genomes]
        if self.trainer.world_size == 1:
            w, velocity, loss = train_epoch(self.replicator, self.population.clone(), x, y, group["lr"], batch_size,
                                            group["momentum"], shuffle, self.generator, state.get("velocity"))
        else:
            w, velocity, loss = self._data_parallel_epoch(x, y, group["lr"], batch_size, group["momentum"], shuffle,
                                                          state.get("velocity"))
        with torch.no_grad():
            self.genomes.copy_(w)
        if velocity is not None:
            state["velocity"] = velocity
        self.genomes.grad = None
        opt.step()  # nothing left to apply: registers the epoch with Lightning (global_step, schedulers)
        self.particle_loss = loss.detach()

    def _data_parallel_epoch(self, x, y, lr, batch_size, momentum, shuffle, velocity):
        """The epoch on R ranks: :func:`nsr.training.train_epoch_steps` with every global step of
        R * batch_size samples per particle split over the ranks, and the gradients (weighted by
        each rank's share) summed across them, so a step is exactly one step on all R * batch_size samples."""
        R, r = self.trainer.world_size, self.trainer.global_rank
        P = x.shape[0]

        def step_grad(w, idx):  # idx [P, n]: the global step's samples
            n = idx.shape[1]
            mine = idx[:, (r * n) // R:((r + 1) * n) // R]  # [P, n_r], this rank's share
            k = mine.shape[1]
            if k:
                loss, grad = self.replicator.loss_and_grad(w, take(x, mine), take(y, mine))
                packed = torch.cat([grad * k, loss[:, None] * k], dim=1)  # [P, W + 1]
            else:
                packed = torch.zeros(P, w.shape[1] + 1, dtype=w.dtype, device=w.device)
            packed = self.trainer.strategy.reduce(packed, reduce_op="sum") / n
            return packed[:, -1], packed[:, :-1]

        return train_epoch_steps(self.replicator, self.population.clone(), x, y, lr, batch_size, momentum, shuffle,
                                 self.generator, velocity, ranks=R, step_grad=step_grad)

    # ---- checkpoints ---------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint):
        checkpoint["nsr"] = {
            "kind": self.kind,
            "replicator": self.replicator.to_config(),
            "weights": self.gather_population().detach().cpu().clone(),  # [P, W]
            "epsilon": self.epsilon,
            "generator": self.generator.get_state(),
        }

    def resume_population(self) -> int:
        return self.genomes.shape[0]

    def on_load_checkpoint(self, checkpoint):
        nsr = self.checked_entry(checkpoint, population=self.genomes.shape[0])
        if "generator" in nsr:
            self.generator.set_state(nsr["generator"])
