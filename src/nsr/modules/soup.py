"""SoupModule: the soup (``nsr.soup``) as a LightningModule, one generation per epoch, sharded over devices.

    nsr fit --config configs/soup.yaml
    nsr fit --config configs/soup.yaml --model.init_args.size 100000
    nsr fit --config configs/soup.yaml --trainer.accelerator cpu --trainer.devices 2

The soup's samples change within a generation (attacks, learning from others), so the module
generates them itself: it uses manual optimization and its own step-count loader
(:class:`GenerationSteps`, one step per generation), and every step runs one
:func:`nsr.soup.generation_step`.

On several devices the population is *sharded*: each process owns a contiguous slice of the
particles (``configure_model``), partners' genomes are gathered from the whole population, and all
randomness is keyed by (seed, generation, global particle index), so 1 and N processes give the
same soup. :class:`nsr.modules.strategy.SoupStrategy` (registered as ``"soup"``) is Lightning's DDP
strategy without the DistributedDataParallel wrapper: plain DDP would broadcast rank 0's particles to every rank and
average the gradients of different particles. Checkpoints hold the whole population and resume on
any device count.
"""
from __future__ import annotations

import os
import warnings
from typing import Optional

import torch
from torch.utils.data import DataLoader, Dataset

from nsr.modules.population import PopulationModule, count_optimizer_step
from nsr.scalar_logs import log_epoch_metrics
from nsr.modules.strategy import SoupStrategy, check_sharding_strategy, population_shard  # noqa: F401 (re-exported)
from nsr.replicators import Replicator, Weightwise, from_config
from nsr.sharding import Shard, gather_rows
from nsr.soup import EVENT_COUNTS, SoupParams, SoupState, generation_step, initial_state, soup_bounds


class GenerationSteps(Dataset):
    """The soup's loader data: ``steps`` items per epoch, each only a step number. The samples
    themselves are made from the current genomes inside ``training_step``."""

    def __init__(self, steps: int = 1):
        self.steps = steps

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, i: int) -> int:
        return i


class GenerationCounter(torch.optim.Optimizer):
    """The soup's optimizer, for Lightning's step counting only: ``nsr.soup`` updates the genomes,
    and ``training_step`` calls :meth:`step` once per generation, so ``trainer.global_step`` counts
    generations (checkpoint triggers, ``max_steps`` and the TensorBoard x axis rely on it)."""

    def __init__(self):
        super().__init__([torch.zeros(())], {})

    def step(self, closure=None):
        return closure() if closure is not None else None


class SoupModule(PopulationModule):
    """A soup of ``size`` replicators evolving one generation per epoch (docs/science.md, "The soup").

    Each generation: attacks (``attacking_rate``), learning from others (``learn_from_rate``,
    ``learn_from_severity`` epochs), ``train`` epochs of self-training, and the respawn of divergent
    (``remove_divergent``) and zero (``remove_zero``) particles; see :mod:`nsr.soup`. ``seed`` keys
    all randomness (default: the run's ``seed_everything``). ``lr``, ``batch_size``, ``momentum``
    and ``shuffle`` are the training hyper-parameters of ``nsr.training``; ``epsilon`` the fixpoint
    tolerance used for zero particles and by the fixpoint callbacks. ``soup_size`` splits the
    population into independent soups of that many consecutive particles (default: one soup).
    ``update`` is ``"synchronous"`` (phase by phase, the default; it scales) or ``"sequential"`` (the
    published order, slot by slot; on several devices each process then holds whole soups).
    All of them but ``size`` are validated once into ``self.params``, an :class:`nsr.soup.SoupParams`.

    A :class:`nsr.modules.PopulationModule`: ``population`` is this process's ``[P_local, W]``,
    ``gather_population()`` the whole ``[P, W]``; a respawned particle gets a new id.
    """

    kind = "soup"
    time_unit = "generation"  # what one epoch is, for figures

    def __init__(self, replicator: Optional[Replicator] = None, size: int = 20, attacking_rate: float = 0.1,
                 learn_from_rate: float = 0.0, learn_from_severity: int = 1, train: int = 0, lr: float = 0.01,
                 batch_size: Optional[int] = 1, momentum: float = 0.0, shuffle: bool = True,
                 remove_divergent: bool = True, remove_zero: bool = False, epsilon: float = 1e-4,
                 seed: Optional[int] = None, soup_size: Optional[int] = None, update: str = "synchronous"):
        super().__init__()
        if replicator is None:
            replicator = Weightwise()
        elif isinstance(replicator, dict):  # from a checkpoint's hyper-parameters
            replicator = from_config(replicator)
        if not isinstance(replicator, Replicator):
            raise ValueError(f"replicator must be an nsr replicator, got {type(replicator).__name__}")
        if seed is None:
            seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be an integer >= 1, got {size!r}")
        params = SoupParams(attacking_rate=attacking_rate, learn_from_rate=learn_from_rate,
                            learn_from_severity=learn_from_severity, train=train, lr=lr, batch_size=batch_size,
                            momentum=momentum, shuffle=shuffle, remove_divergent=remove_divergent,
                            remove_zero=remove_zero, epsilon=epsilon, seed=seed, soup_size=soup_size, update=update)
        params.check_size(size)
        self.save_hyperparameters(ignore=["replicator"])
        self.hparams["replicator"] = replicator.to_config()
        self.hparams["seed"] = seed
        self.replicator = replicator
        self.size = size
        self.params = params
        self.epsilon = float(epsilon)
        self.automatic_optimization = False
        # the population lives in non-persistent buffers: they follow the module to its device,
        # and checkpoints store the whole gathered population under checkpoint["nsr"] instead
        self.register_buffer("genomes", torch.zeros(0, replicator.num_weights), persistent=False)  # [P_local, W]
        self.register_buffer("ids", torch.zeros(0, dtype=torch.long), persistent=False)  # [P_local]
        self.next_id = size
        self.generation = 0
        self.particle_loss = torch.full((0,), float("nan"))  # [P_local] self-training loss of the last generation
        self.events: dict = {}  # the last generation's events (nsr.soup.generation_step)
        self._bounds = None  # the shard bounds the population was made for
        self._version = 0  # counts state changes
        self._gathered_ids = None  # (version, LongTensor[P]) from the last gather_population()

    @property
    def seed(self) -> int:
        """The seed that keys the soup's randomness (``params.seed``)."""
        return self.params.seed

    # ---- the PopulationModule contract ---------------------------------------------------------
    @property
    def population(self) -> torch.Tensor:
        """``[P_local, W]``: the genomes this process owns, detached."""
        return self.genomes.detach()

    @property
    def particle_ids(self) -> torch.Tensor:
        """``LongTensor[P_local]``: the ids of this process's particles (a respawned slot gets a new id)."""
        return self.ids

    def gather_population(self) -> torch.Tensor:
        """``[P, W]``: the whole population, gathered from every process (a collective). The ids
        are gathered with it, so that :meth:`gather_particle_ids` right after needs no collective."""
        shard = self.shard
        self._gathered_ids = (self._version, gather_rows(shard, self.ids))
        return gather_rows(shard, self.genomes)

    def gather_particle_ids(self) -> torch.Tensor:
        """``LongTensor[P]``: the ids of the whole population. A collective, unless the population
        has not changed since the last :meth:`gather_population` (then any rank may call it alone)."""
        if self._gathered_ids is not None and self._gathered_ids[0] == self._version:
            return self._gathered_ids[1]
        return gather_rows(self.shard, self.ids)

    @property
    def state(self) -> SoupState:
        return SoupState(self.genomes, self.ids, self.next_id, self.generation)

    @property
    def shard(self) -> Shard:
        """This process's slice of the population (the whole population outside a distributed run)."""
        if self.params.update == "sequential":  # the sequential order visits a soup's slots in turn: whole soups
            return population_shard(self._trainer, self.size,
                                    lambda size, world: soup_bounds(size, world, self.params.soup_size or size))
        return population_shard(self._trainer, self.size)

    def _set_state(self, state: SoupState) -> None:
        self._version += 1
        self._gathered_ids = None
        self.genomes = state.weights.to(self.genomes.device)
        self.ids = state.ids.to(self.ids.device)
        self.next_id = int(state.next_id)
        self.generation = int(state.generation)
        if self._particle_loss.shape[0] != self.genomes.shape[0]:
            self._particle_loss = torch.full((self.genomes.shape[0],), float("nan"), device=self.genomes.device)

    @property
    def particle_loss(self) -> Optional[torch.Tensor]:
        """``[P_local]`` each particle's self-training loss in the last generation; None when the
        soup does not self-train (``train: 0``), so no meaningless ``train/loss`` is logged."""
        return self._particle_loss if self.params.train > 0 else None

    @particle_loss.setter
    def particle_loss(self, value: torch.Tensor) -> None:
        self._particle_loss = value

    # ---- Lightning ----------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        # the soup's loader only counts generations: more workers would not help
        warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
        check_sharding_strategy(self.trainer.strategy, "a soup", use="'soup' (nsr.modules.strategy.SoupStrategy)")

    def configure_model(self) -> None:
        """Make this process's shard of generation 0 (idempotent: an existing shard is kept)."""
        shard = self.shard
        if self._bounds == shard.bounds:
            return
        device = self.trainer.strategy.root_device if self._trainer is not None else self.genomes.device
        self._set_state(initial_state(self.replicator, self.size, self.seed, shard=shard, device=device))
        self._bounds = shard.bounds

    def train_dataloader(self) -> DataLoader:
        return DataLoader(GenerationSteps(1), batch_size=None)

    def val_dataloader(self) -> DataLoader:
        # `nsr validate` measures the soup as it is (PopulationModule.validation_step); a fit does
        # not validate every generation (no batches then)
        return DataLoader(GenerationSteps(0 if self.trainer.state.fn == "fit" else 1), batch_size=None)

    def configure_optimizers(self):
        return GenerationCounter()  # the genomes are updated by nsr.soup; this only counts generations

    def training_step(self, batch, batch_idx) -> None:
        state, events = generation_step(self.replicator, self.state, self.params, shard=self.shard)
        self._set_state(state)
        count_optimizer_step(self.optimizers())  # global_step = generations
        self.particle_loss = events["particle_loss"]  # [P_local], logged as train/loss by FixpointMonitor
        self.events = events

    def on_train_epoch_end(self) -> None:
        """Log the generation's events ``soup/attacks|learn_from|respawned``, counted over the whole
        soup (equal on every rank, so no reduction), with the generations done as the step, as the
        fixpoint callbacks do; they also go into ``trainer.callback_metrics`` on every rank."""
        metrics = {f"soup/{key}": float(self.events.get(key, 0)) for key in EVENT_COUNTS}
        log_epoch_metrics(self.trainer, metrics, step=self.generation)  # loggers write on rank 0 only

    # ---- checkpoints ----------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        weights = self.gather_population().cpu()  # [P, W]: every process's particles
        ids = self.gather_particle_ids().cpu()
        checkpoint["nsr"] = {"kind": self.kind, "replicator": self.replicator.to_config(), "weights": weights,
                             "ids": ids, "next_id": self.next_id, "generation": self.generation,
                             "seed": self.seed, "size": self.size, "epsilon": self.epsilon}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        nsr = self.checked_entry(checkpoint, population=self.size, population_name="model.init_args.size")
        weights, ids = nsr["weights"], nsr["ids"]
        self.params = self.params.replace(seed=int(nsr["seed"]))  # the run goes on with the randomness it started with
        self.hparams["seed"] = self.seed
        shard = self.shard
        lo, hi = shard.start, shard.stop
        self._set_state(SoupState(weights[lo:hi].clone(), ids[lo:hi].clone(), int(nsr["next_id"]), int(nsr["generation"])))
        self._bounds = shard.bounds
