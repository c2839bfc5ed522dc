"""A soup driven through analytics callbacks without a Trainer: one process, or several shards as
threads whose ``all_gather`` is a barrier between them (the collectives of a sharded run)."""
from __future__ import annotations

import threading

import torch

from nsr.soup import Shard, SoupState, gather_rows, generation_step, initial_state, shard_bounds


class FakeTrainer:
    """What the analytics callbacks read from a Trainer."""

    def __init__(self, max_epochs: int, rank: int = 0):
        self.current_epoch, self.max_epochs, self.loggers = 0, max_epochs, []
        self.callback_metrics, self.progress_bar_metrics = {}, {}
        self.is_global_zero, self.log_dir = rank == 0, None


class FakeSoup:
    """What the analytics callbacks read from a SoupModule."""

    time_unit = "generation"

    def __init__(self, rep, state: SoupState, shard: Shard):
        self.replicator, self.state, self.shard, self.events = rep, state, shard, {}

    @property
    def population(self):
        return self.state.weights

    @property
    def generation(self):
        return self.state.generation

    def gather_particle_ids(self):
        return gather_rows(self.shard, self.state.ids)

    def gather_population(self):
        return gather_rows(self.shard, self.state.weights)


def drive(rep, callbacks, size, generations, shard=None, start=None, seed=0, **step):
    """Run ``generations`` generations of a soup through ``callbacks`` (their hooks in Lightning's order)."""
    shard = shard or Shard((0, size), 0, lambda x: x[None])
    state = start if start is not None else initial_state(rep, size, seed=seed, shard=shard)
    module, trainer = FakeSoup(rep, state, shard), FakeTrainer(generations, shard.rank)
    for cb in callbacks:
        cb.on_train_start(trainer, module)
    for epoch in range(generations):
        trainer.current_epoch = epoch
        for cb in callbacks:
            cb.on_train_batch_start(trainer, module, None, 0)
        module.state, module.events = generation_step(rep, module.state, seed=seed, shard=shard, **step)
        for cb in callbacks:
            cb.on_train_batch_end(trainer, module, None, None, 0)
        for cb in callbacks:
            cb.on_train_epoch_end(trainer, module)
    return module


def drive_sharded(rep, make_callbacks, size, generations, world=2, seed=0, **step):
    """The same soup split over ``world`` thread-shards; returns each rank's callbacks."""
    bounds = shard_bounds(size, world)
    slots, barrier, out, errors = [None] * world, threading.Barrier(world, timeout=60), [None] * world, []

    def gather(rank):
        def all_gather(x):
            slots[rank] = x
            barrier.wait()
            res = torch.stack(list(slots))
            barrier.wait()
            return res
        return all_gather

    def run(rank):
        try:
            cbs = make_callbacks()
            drive(rep, cbs, size, generations, shard=Shard(bounds, rank, gather(rank)), seed=seed, **step)
            out[rank] = cbs
        except BaseException as e:  # noqa: BLE001  (reported by the test)
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(r,)) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return out
