"""TaskReplicatorModule: a population of task replicators trained on replication and a task.

    nsr fit --config configs/task_digits.yaml
    nsr fit --config configs/task_addition.yaml

The task batches come from :class:`nsr.data_tasks.TaskDataModule`; every ``training_step`` (one
task batch) is one self-training epoch of every particle over a snapshot of its own samples (made
from the genomes at the step's start, as ``ReplicatorModule`` does per epoch), each SGD step on
``replication + alpha * task`` (``nsr.task_training.task_epoch``). A Lightning epoch is one pass
over the task's train split. With ``alpha = 0`` and a seed s, n training steps equal
``nsr.training.self_train(rep, rep.init(P, generator=g), n, lr, batch_size, momentum, generator=g)``
with ``g = torch.Generator().manual_seed(s)``, bit for bit.

Logged per epoch beside ``FixpointMonitor``'s ``train/loss`` (the replication loss) and
``fixpoint/*``: ``task/loss`` and ``task/<metric>`` (``task/accuracy`` or ``task/mse``) on the
test split (mean over finite particles), ``task/train_loss`` (the epoch's mean task loss) and
``task/solved`` (share of particles at the task's threshold); ``task/train_loss`` is NaN when every
alpha is 0 (no task gradient is computed then).

A :class:`nsr.modules.PopulationModule` (a population of replicators, ``kind`` ``"replicator"``): the
callbacks, ``nsr inspect``, ``nsr validate`` and the resume check of ``--ckpt_path`` treat it as they
treat ``ReplicatorModule``. Validation logs the population's ``val/loss``, ``val/distance`` and
``val/<class>`` (``PopulationModule.validation_step``, once per validation) beside ``val/task_loss`` and
``val/task_<metric>`` on the task's test split; a checkpoint resumes only a run of the same task and
population size.
"""
from __future__ import annotations

import math
from typing import Optional, Union

import torch
from torch import nn

from nsr.fixpoints import SECOND_ORDER_TESTS, check_epsilon
from nsr.modules.population import PopulationModule
from nsr.modules.replicator import PopulationSGD
from nsr.task_replicator import TaskWeightwise
from nsr.task_training import check_alpha, evaluate_task, task_epoch
from nsr.tasks import Task, from_config as task_from_config
from nsr.training import check_hyperparameters


def _finite_mean(x: torch.Tensor) -> float:
    finite = torch.isfinite(x)
    return float(x[finite].mean()) if bool(finite.any()) else math.nan


class TaskReplicatorModule(PopulationModule):
    """P task replicators trained on ``replication + alpha * task``.

    Args:
        task: the task (a name such as ``"digits"``, ``{"name"|"class_path", "init_args"}`` or a Task).
        replicator: a :class:`nsr.task_replicator.TaskWeightwise` (``{"class_path", "init_args"}`` in
            configs) whose task sizes match the task; default ``TaskWeightwise.for_task(task)``.
        population: P (>= 1).
        alpha: the task's weight, a number or one per particle (a list of P numbers); ``inf``: the
            task alone; 0: plain self-training.
        normalize: step on ``(replication + alpha * task) / (1 + alpha)`` instead.
        lr, momentum: SGD (PopulationSGD: P independent optimizers).
        batch_size: replication samples per SGD step (1: the paper's setting; ``None``: full batch).
        shuffle: visit the replication samples in a random order each self-training epoch.
        epsilon, second_order: the fixpoint test, as in ``ReplicatorModule``.
        seed: the initial genomes and the replication shuffling (the task batches have their own seed
            in the DataModule).
    """

    kind = "replicator"  # checkpoint["nsr"]["kind"]: a population of replicators (with its task)
    time_unit = "epoch"

    def __init__(self, task: Union[str, dict, Task] = "gaussian_addition", replicator: Optional[TaskWeightwise] = None,
                 population: int = 10, alpha: Union[float, list] = 1.0, normalize: bool = False, lr: float = 0.01,
                 momentum: float = 0.0, batch_size: Optional[int] = 1, shuffle: bool = True, epsilon: float = 1e-4,
                 second_order: str = "orbit", seed: int = 0):
        super().__init__()
        self.task = task_from_config(task)
        if replicator is None:
            replicator = TaskWeightwise.for_task(self.task)
        if isinstance(replicator, dict):
            replicator = TaskWeightwise(**replicator.get("init_args", {}))
        if not isinstance(replicator, TaskWeightwise):
            raise ValueError(f"replicator must be an nsr.task_replicator.TaskWeightwise, got {type(replicator).__name__}")
        if (replicator.task_inputs, replicator.task_outputs) != (self.task.num_inputs, self.task.num_outputs):
            raise ValueError(f"replicator has {replicator.task_inputs} task inputs and {replicator.task_outputs} outputs, "
                             f"task {self.task.name} needs {self.task.num_inputs} and {self.task.num_outputs}")
        if isinstance(population, bool) or not isinstance(population, int) or population < 1:
            raise ValueError(f"population must be an integer >= 1, got {population!r}")
        check_hyperparameters(lr=lr, batch_size=batch_size, momentum=momentum)
        check_epsilon(epsilon)
        if second_order not in SECOND_ORDER_TESTS:
            raise ValueError(f"second_order must be one of {', '.join(SECOND_ORDER_TESTS)}, got {second_order!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        self.alpha = check_alpha(torch.tensor(alpha, dtype=torch.float32) if isinstance(alpha, list) else alpha,
                                 population)  # [P]
        self.save_hyperparameters(ignore=["replicator", "task"])
        self.hparams["replicator"] = replicator.to_config()
        self.hparams["task"] = self.task.config()
        self.automatic_optimization = False

        self.replicator = replicator
        self.normalize = bool(normalize)
        self.epsilon, self.second_order = float(epsilon), second_order
        self.lr, self.momentum, self.batch_size, self.shuffle = lr, momentum, batch_size, shuffle
        self.generator = torch.Generator().manual_seed(seed)  # initial genomes, then the shuffling
        self.genomes = nn.Parameter(replicator.init(population, generator=self.generator))  # [P, W]
        self.particle_loss = torch.full((population,), math.nan)  # [P] replication loss, last step
        self._task_loss_sum = torch.zeros(population)
        self._steps = 0

    # ---- the contract nsr's callbacks rely on ------------------------------------------------------
    # population, particle_ids, gather_population(), gather_particle_ids(): PopulationModule's defaults
    # (the whole population in this process; particle p is host connection / slot p for the whole run)

    # ---- training ------------------------------------------------------------------------------------
    def configure_optimizers(self):
        return PopulationSGD([self.genomes], lr=self.lr, momentum=self.momentum)

    def training_step(self, batch, batch_idx):
        """One self-training epoch on ``replication + alpha * task`` with the task batch ``(x, y)``."""
        tx, ty = batch
        opt = self.optimizers()
        group, state = opt.param_groups[0], opt.optimizer.state[self.genomes]
        w = self.population.clone()
        x, y = self.replicator.samples(w)  # [P, S, 4], [P, S, 1]: the snapshot of this epoch
        out = task_epoch(self.replicator, self.task, w, x, y, tx, ty, self.alpha.to(w.device), group["lr"],
                         self.batch_size, group["momentum"], self.shuffle, self.generator, state.get("velocity"),
                         self.normalize)
        with torch.no_grad():
            self.genomes.copy_(out.weights)
        if out.velocity is not None:
            state["velocity"] = out.velocity
        self.genomes.grad = None
        opt.step()  # registers the step with Lightning (global_step)
        self.particle_loss = out.loss.detach()
        self._task_loss_sum = self._task_loss_sum.to(w.device) + out.task_loss  # NaN where no particle has a task
        self._steps += 1

    def on_train_epoch_start(self):
        self._task_loss_sum = torch.zeros(self.genomes.shape[0], device=self.genomes.device)
        self._steps = 0

    def task_scalars(self) -> dict[str, float]:
        """``task/loss``, ``task/<metric>``, ``task/solved`` of the population on the test split."""
        loss, metric = evaluate_task(self.replicator, self.task, self.population)
        return {"task/loss": _finite_mean(loss), f"task/{self.task.metric_name}": _finite_mean(metric),
                "task/solved": float(self.task.solves(metric).float().mean())}

    def on_train_epoch_end(self):
        scalars = self.task_scalars()
        if self._steps:
            scalars["task/train_loss"] = _finite_mean(self._task_loss_sum / self._steps)
        # straight to the loggers, one call per epoch, with the epochs trained as the step (as the
        # fixpoint callbacks log), and into callback_metrics for ModelCheckpoint / EarlyStopping
        trainer = self.trainer
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics(scalars, step=trainer.current_epoch + 1)
        trainer.callback_metrics.update({k: torch.tensor(v) for k, v in scalars.items()})
        key = f"task/{self.task.metric_name}"
        trainer.progress_bar_metrics[key] = scalars[key]

    def validation_step(self, batch, batch_idx):
        """The population's replication scalars once (``PopulationModule``), the task's on every batch."""
        if batch_idx == 0:
            with torch.no_grad():
                super().validation_step(batch, batch_idx)
        x, y = batch
        with torch.no_grad():
            out = self.replicator.task_forward(self.population, x)
            self.log("val/task_loss", _finite_mean(self.task.loss(out, y)), batch_size=1)
            self.log(f"val/task_{self.task.metric_name}", _finite_mean(self.task.metric(out, y)), batch_size=1)

    # ---- checkpoints -------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint):
        checkpoint["nsr"] = {
            "kind": "replicator",
            "replicator": self.replicator.to_config(),  # full import path of TaskWeightwise
            "weights": self.gather_population().detach().cpu().clone(),  # [P, W]
            "epsilon": self.epsilon,
            "generator": self.generator.get_state(),
            "task": self.task.config(),
        }

    def resume_population(self) -> int:
        return self.genomes.shape[0]

    def check_checkpoint(self, path) -> dict:
        """``PopulationModule.check_checkpoint`` (architecture, kind, population size), and the same task."""
        ckpt = super().check_checkpoint(path)
        _check_task(ckpt["nsr"], f"checkpoint {path}", self.task)
        return ckpt

    def on_load_checkpoint(self, checkpoint):
        nsr = self.checked_entry(checkpoint, self.genomes.shape[0])
        _check_task(nsr, "checkpoint", self.task)
        self.generator.set_state(nsr["generator"])


def _check_task(nsr: dict, where: str, task: Task) -> None:
    if nsr.get("task") != task.config():
        raise ValueError(f"{where} holds a run of task {nsr.get('task')!r}, this run's task is {task.config()!r}")
