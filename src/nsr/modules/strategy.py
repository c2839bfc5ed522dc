"""PopulationStrategy: Lightning's DDP processes for a population sharded over devices.

A population is P independent networks. On R devices each process owns a contiguous slice of the
particles (:mod:`nsr.sharding`) and trains it exactly as one device would; only metrics, figures
and checkpoints are gathered. Plain ``DDPStrategy`` is wrong for this: it broadcasts rank 0's
parameters when it wraps the module (every rank would start from rank 0's particles) and averages
gradients across ranks, i.e. across different particles. :class:`PopulationStrategy` is DDP
without the ``DistributedDataParallel`` wrapper: Lightning's launchers (``--trainer.devices``,
``--trainer.num_nodes``), process group, collectives, ``barrier`` and rank-0 checkpoint writing
work as usual. Name it in a config as ``trainer.strategy: population`` (``soup`` is the same
strategy under the name the soup configs use).
"""
from __future__ import annotations

import torch
from lightning.pytorch.strategies import DDPStrategy, SingleDeviceStrategy, Strategy, StrategyRegistry
from lightning.pytorch.trainer.states import TrainerFn

from nsr.sharding import Shard, shard_bounds, whole

__all__ = ["PopulationStrategy", "SoupStrategy", "check_sharding_strategy", "population_shard"]


class PopulationStrategy(DDPStrategy):
    """DDP for a sharded population: processes, collectives and checkpoint gathering as in
    Lightning's ``DDPStrategy``, but the module is not wrapped in ``DistributedDataParallel``, so
    nothing broadcasts one rank's particles or averages gradients across particles. Works on one
    device too (no process group: collectives are the identity)."""

    strategy_name = "population"

    def configure_ddp(self) -> None:
        pass  # each rank's particles are its own: no wrapper

    def _setup_model(self, model):
        return model  # never DistributedDataParallel

    def setup(self, trainer) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            return super().setup(trainer)
        # validate/test/predict: DDPStrategy would broadcast rank 0's parameters to every rank
        # (its replacement for the wrapper); here each rank keeps its own particles
        Strategy.setup(self, trainer)

    def _configure_launcher(self) -> None:
        if self.num_nodes * self.num_processes > 1:
            return super()._configure_launcher()
        self._launcher = None  # one process: nothing to launch (and no DDP variables left in os.environ)

    def setup_distributed(self) -> None:
        if self.num_nodes * self.num_processes > 1:
            return super().setup_distributed()
        self.set_world_ranks()  # one process: no process group, collectives are the identity

    def all_gather(self, tensor: torch.Tensor, group=None, sync_grads: bool = False) -> torch.Tensor:
        """``[world, ...]``: ``tensor`` from every process, in rank order (no autograd)."""
        if not torch.distributed.is_available() or not torch.distributed.is_initialized():
            return tensor[None]
        tensor = tensor.contiguous()
        parts = [torch.empty_like(tensor) for _ in range(torch.distributed.get_world_size(group))]
        torch.distributed.all_gather(parts, tensor, group=group)
        return torch.stack(parts)

    @classmethod
    def register_strategies(cls, strategy_registry) -> None:
        strategy_registry.register(cls.strategy_name, cls,
                                   description="DDP processes for a population sharded over devices (no DDP wrapper)")


class SoupStrategy(PopulationStrategy):
    """:class:`PopulationStrategy` under the name the soup configs use (``trainer.strategy: soup``)."""

    strategy_name = "soup"


for _cls in (PopulationStrategy, SoupStrategy):
    if _cls.strategy_name not in StrategyRegistry:
        _cls.register_strategies(StrategyRegistry)


def check_sharding_strategy(strategy, what: str,
                            use: str = "'population' (nsr.modules.strategy.PopulationStrategy)") -> None:
    """Raise a one-line ``ValueError`` unless ``strategy`` keeps every rank's particles its own
    (:class:`PopulationStrategy`, or a single device). ``what`` names the population in the message,
    ``use`` the strategy to name instead."""
    if isinstance(strategy, (PopulationStrategy, SingleDeviceStrategy)):
        return
    raise ValueError(f"trainer.strategy: {type(strategy).__name__} would broadcast rank 0's particles and average the "
                     f"gradients of different particles, but {what} is sharded over devices, each rank training its "
                     f"own particles: use {use}")


def population_shard(trainer, size: int, bounds=shard_bounds) -> Shard:
    """This process's contiguous slice of a population of ``size`` particles (the whole population
    outside a distributed run); its ``all_gather`` is the strategy's. ``bounds(size, world)`` gives
    the slices' cumulative offsets (default: balanced slices)."""
    world = trainer.world_size if trainer is not None else 1
    if world == 1:
        return whole(size)
    strategy = trainer.strategy
    return Shard(bounds(size, world), trainer.global_rank, lambda x: strategy.all_gather(x))
