"""OrganismModule: a host network made of self-replicating particles, trained on a task
(docs/organisms.md).

    nsr fit --config configs/organism_digits.yaml

The particles are one parameter ``[P, W]`` (P = host connections, see :mod:`nsr.organism`). Every
step minimises, over one batch of the task,

    loss = task loss of the host  +  replication_weight * sum_p replication MSE of particle p

(the replication term summed over particles, each particle's own mean, as everywhere in nsr: its
gradient is every particle's own self-training gradient, scaled by ``replication_weight``; 1.0 is
the authors' weight). After every epoch, optionally, the particles of each host layer form a soup
for one generation (``attacking_rate``, ``learn_from_rate``: :func:`nsr.soup.generation_step`,
train 0, divergent particles respawned), as the authors let particles of the same layer interact.

Logged per epoch: ``task/loss`` (mean over the epoch's batches), ``task/<metric>`` (e.g.
``task/accuracy``) and ``task/test_loss`` on the task's test split, ``organism/events`` of the soup;
``fixpoint/*`` and ``train/loss`` (the particles' replication loss) come from
``nsr.callbacks.FixpointMonitor`` through the module contract (``replicator``, ``epsilon``,
``population``, ``gather_population()``, ``particle_loss``). Checkpoints carry
``checkpoint["nsr"]`` of kind ``organism``: ``nsr.load_population(ckpt)`` returns
``(Particle, [P, W])``.

Why a :class:`nsr.modules.PopulationModule`: its particles are a population of replicators ``[P, W]``
like any other: fixpoint classes and distances (``FixpointMonitor``), ``nsr inspect`` and the resume
check of ``--ckpt_path`` apply as they are, so it is one. Two parts of the contract differ on purpose:
``validation_step`` scores the host (``val/loss``, ``val/<metric>`` on the task), its purpose, not the
particles' replication; and ``particle_ids`` never change (host connection p keeps id p, a respawned
particle too). It runs in one process: its soup generations are per host layer, not sharded. ``DenseModule``,
the dense reference host, holds no particles and is a plain ``LightningModule``.
"""
from __future__ import annotations

import math
import time
from typing import Optional, Union

import lightning as L
import torch
from torch import nn

from nsr.fixpoints import SECOND_ORDER_TESTS, check_epsilon, classify, counts
from nsr.modules.population import PopulationModule
from nsr.modules.replicator import PopulationSGD
from nsr.organism import Organism, Particle, check_widths, dense_forward, dense_init
from nsr.replicators import from_config
from nsr.soup import SoupState, check_soup_args, generation_step
from nsr.tasks import Task
from nsr.tasks import from_config as task_from_config


class OrganismModule(PopulationModule):
    """An organism network on a task.

    Args:
        task: a :class:`nsr.tasks.Task` or a registered name (``digits``, ``gaussian_addition``).
        hidden: widths of the host's hidden layers (its input and output widths are the task's).
        particle: the :class:`nsr.organism.Particle` (default width 2, depth 2, linear).
        activation: the host's activation between its layers.
        replication_weight: weight of the summed replication loss (>= 0; 0: no self-replication training).
        lr, momentum: SGD on the particles (elementwise: P independent optimizers).
        attacking_rate, learn_from_rate, learn_from_severity: one soup generation per epoch among
            the particles of each host layer (0: no interactions).
        epsilon, second_order: the fixpoint test.
        exact: evaluate every particle network on its signal even when linear (see ``nsr.organism.Organism``).
        seed: seeds the initial particles and the soup.
    """

    time_unit = "epoch"
    kind = "organism"  # checkpoint["nsr"]["kind"]

    def __init__(self, task: Union[Task, str, dict] = "digits", hidden: list[int] = [160],  # noqa: B006 (jsonargparse)
                 particle: Optional[Particle] = None, activation: str = "relu", replication_weight: float = 1.0,
                 lr: float = 0.01, momentum: float = 0.9, attacking_rate: float = 0.0, learn_from_rate: float = 0.0,
                 learn_from_severity: int = 1, epsilon: float = 1e-4, second_order: str = "orbit",
                 exact: bool = False, seed: int = 0):
        super().__init__()
        self.task = task_from_config(task)
        if isinstance(particle, dict):
            particle = from_config(particle)
        particle = Particle() if particle is None else particle
        if isinstance(hidden, int):
            hidden = [hidden]
        widths = check_widths([self.task.num_inputs, *list(hidden), self.task.num_outputs])
        self.organism = Organism(widths, particle, activation, exact)
        if isinstance(replication_weight, bool) or not isinstance(replication_weight, (int, float)) \
                or not math.isfinite(replication_weight) or replication_weight < 0:
            raise ValueError(f"replication_weight must be a finite number >= 0, got {replication_weight!r}")
        check_soup_args(attacking_rate=attacking_rate, learn_from_rate=learn_from_rate,
                        learn_from_severity=learn_from_severity, lr=lr, momentum=momentum, epsilon=epsilon, seed=seed)
        if second_order not in SECOND_ORDER_TESTS:
            raise ValueError(f"second_order must be one of {', '.join(SECOND_ORDER_TESTS)}, got {second_order!r}")
        self.save_hyperparameters(ignore=["particle", "task"])
        self.hparams["particle"] = particle.to_config()
        self.hparams["task"] = self.task.config()
        self.replicator = particle  # the module contract: the population's architecture
        self.epsilon = check_epsilon(epsilon)
        self.second_order = second_order
        self.replication_weight = float(replication_weight)
        self.lr, self.momentum, self.seed = lr, momentum, seed
        self.soup_kwargs = dict(attacking_rate=attacking_rate, learn_from_rate=learn_from_rate,
                                learn_from_severity=learn_from_severity, lr=lr, batch_size=1, momentum=0.0,
                                remove_divergent=True, remove_zero=False, epsilon=epsilon)
        self.genomes = nn.Parameter(self.organism.init(generator=torch.Generator().manual_seed(seed)))  # [P, W]
        self.particle_loss = torch.full((self.organism.num_particles,), math.nan)  # [P] replication loss, last step
        self.events = {"attacks": 0, "learn_from": 0, "respawned": 0}
        self.history: list[dict] = []  # one row per epoch: seconds of its steps, class counts, task scores
        self._epoch_loss = []

    # ---- the nsr module contract -----------------------------------------------------------------
    # population, particle_ids, gather_population(), gather_particle_ids(): PopulationModule's defaults
    # (the whole population in this process; particle p is host connection / slot p for the whole run)

    # ---- the host ----------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, w: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``[B, O]``: the host's output on ``x`` ``[B, I]`` through the particles (or genomes ``w``)."""
        return self.organism.forward(self.genomes if w is None else w, x)

    @torch.no_grad()
    def evaluate(self, w: Optional[torch.Tensor] = None, split: str = "test") -> dict:
        """``{"loss", metric_name}`` of the host (particles ``w``, default its own) on a task split."""
        x, y = self.task.data(split)
        x, y = x.to(self.device), y.to(self.device)
        out = self.forward(x, w)[None]  # [1, B, O]
        return {"loss": float(self.task.loss(out, y)[0]), self.task.metric_name: float(self.task.metric(out, y)[0])}

    # ---- training ------------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        theirs = getattr(dm, "task", None)
        if isinstance(theirs, Task) and theirs.config() != self.task.config():
            raise ValueError(f"data.init_args.task is {theirs!r}, but model.init_args.task is {self.task!r}: "
                             "the host must be trained on its own task")

    def configure_optimizers(self):
        return PopulationSGD([self.genomes], lr=self.lr, momentum=self.momentum)

    def training_step(self, batch, batch_idx):
        x, y = batch
        out = self.forward(x)[None]  # [1, B, O]
        task_loss = self.task.loss(out, y)[0]
        loss = task_loss
        if self.replication_weight:
            rep = self.organism.replication_loss(self.genomes)  # [P]
            loss = loss + self.replication_weight * rep.sum()
            self.particle_loss = rep.detach()
        self._epoch_loss.append(task_loss.detach())
        return loss

    def on_train_epoch_start(self) -> None:
        self._epoch_loss = []
        self._epoch_start = time.perf_counter()

    def on_train_epoch_end(self) -> None:
        seconds = time.perf_counter() - self._epoch_start  # the epoch's training steps
        if self.soup_kwargs["attacking_rate"] or self.soup_kwargs["learn_from_rate"]:
            self._soup_generation()
        if not self.replication_weight:
            with torch.no_grad():
                self.particle_loss = self.organism.replication_loss(self.population)
        scores = self.evaluate()
        train_loss = float(torch.stack(self._epoch_loss).mean()) if self._epoch_loss else math.nan
        metrics = {"task/loss": train_loss, f"task/{self.task.metric_name}": scores[self.task.metric_name],
                   "task/test_loss": scores["loss"]}
        metrics.update({f"organism/{k}": float(v) for k, v in self.events.items()})
        for k, v in metrics.items():
            self.log(k, v, on_epoch=True, batch_size=1)
        c = counts(classify(self.replicator, self.population, self.epsilon, self.second_order)).tolist()
        self.history.append({"epoch": self.current_epoch + 1, "seconds": seconds, **metrics,
                             **dict(zip(("divergent", "zero", "nontrivial", "second_order", "other"), c))})

    def validation_step(self, batch, batch_idx):
        """``val/loss`` and ``val/<metric>`` of the host on a batch of the task's test split
        (``nsr validate``; the fit configs log the same as ``task/*`` every epoch instead)."""
        x, y = batch
        out = self.forward(x)[None]
        self.log("val/loss", self.task.loss(out, y)[0], batch_size=len(x))
        self.log(f"val/{self.task.metric_name}", self.task.metric(out, y)[0], batch_size=len(x))

    @torch.no_grad()
    def _soup_generation(self) -> None:
        """One soup generation among the particles of each host layer (a loop over host layers)."""
        epoch = self.current_epoch
        w = self.population.clone()
        totals = dict.fromkeys(self.events, 0)
        for l, (start, stop, _, _) in enumerate(self.organism.layers):
            n = stop - start
            state = SoupState(w[start:stop], torch.arange(n, device=w.device), n, epoch)
            state, events = generation_step(self.replicator, state, seed=self.seed * 1009 + l, train=0,
                                            **self.soup_kwargs)
            w[start:stop] = state.weights
            for k in totals:
                totals[k] += int(events[k])
        self.genomes.copy_(w)
        self.events = totals

    # ---- checkpoints -----------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["nsr"] = {"kind": "organism", "replicator": self.replicator.to_config(),
                             "weights": self.population.cpu().clone(),  # [P, W]
                             "widths": list(self.organism.widths), "activation": self.organism.activation,
                             "task": self.task.config(), "epsilon": self.epsilon, "history": list(self.history)}

    def resume_population(self) -> int:
        return self.organism.num_particles

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        nsr = self.checked_entry(checkpoint, self.organism.num_particles, "this host's number of connections")
        if list(nsr["widths"]) != self.organism.widths:
            raise ValueError(f"checkpoint holds an organism of widths {nsr['widths']}, this run's is {self.organism.widths}")
        self.history = list(nsr.get("history", []))


class DenseModule(L.LightningModule):
    """The reference for organism networks: a dense network of the host's shape (``hidden``,
    ``activation``; no biases, glorot-uniform kernels) trained on the task alone with the same SGD.
    Logs ``task/loss``, ``task/<metric>`` and ``task/test_loss`` per epoch and keeps ``history``."""

    def __init__(self, task: Union[Task, str, dict] = "digits", hidden: list[int] = [160],  # noqa: B006
                 activation: str = "relu", lr: float = 0.01, momentum: float = 0.9, seed: int = 0):
        super().__init__()
        self.task = task_from_config(task)
        if isinstance(hidden, int):
            hidden = [hidden]
        self.widths = check_widths([self.task.num_inputs, *list(hidden), self.task.num_outputs])
        Organism(self.widths, activation=activation)  # validates the activation
        check_soup_args(lr=lr, momentum=momentum, seed=seed)
        self.save_hyperparameters(ignore=["task"])
        self.hparams["task"] = self.task.config()
        self.activation, self.lr, self.momentum = activation, lr, momentum
        self.kernels = nn.ParameterList(dense_init(self.widths, generator=torch.Generator().manual_seed(seed)))
        self.history: list[dict] = []
        self._epoch_loss = []

    def forward(self, x: torch.Tensor, kernels=None) -> torch.Tensor:
        return dense_forward(list(self.kernels) if kernels is None else kernels, x, self.activation)

    @torch.no_grad()
    def evaluate(self, kernels=None, split: str = "test") -> dict:
        """``{"loss", metric_name}`` of the network (or of ``kernels``) on a task split."""
        x, y = self.task.data(split)
        out = self.forward(x.to(self.device), kernels)[None]
        y = y.to(self.device)
        return {"loss": float(self.task.loss(out, y)[0]), self.task.metric_name: float(self.task.metric(out, y)[0])}

    def configure_optimizers(self):
        return PopulationSGD(list(self.kernels), lr=self.lr, momentum=self.momentum)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = self.task.loss(self.forward(x)[None], y)[0]
        self._epoch_loss.append(loss.detach())
        return loss

    def on_train_epoch_start(self) -> None:
        self._epoch_loss = []
        self._epoch_start = time.perf_counter()

    def on_train_epoch_end(self) -> None:
        seconds = time.perf_counter() - self._epoch_start
        scores = self.evaluate()
        metrics = {"task/loss": float(torch.stack(self._epoch_loss).mean()) if self._epoch_loss else math.nan,
                   f"task/{self.task.metric_name}": scores[self.task.metric_name], "task/test_loss": scores["loss"]}
        for k, v in metrics.items():
            self.log(k, v, on_epoch=True, batch_size=1)
        self.history.append({"epoch": self.current_epoch + 1, "seconds": seconds, **metrics})


__all__ = ["OrganismModule", "DenseModule"]
