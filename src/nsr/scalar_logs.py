"""Per-epoch scalars of a fit, logged the cheap way: one event per epoch holding all of its
scalars, in an event file of the run's own written in whole buffers (:class:`nsr.kernels.events.EventFile`),
and the same values in ``trainer.callback_metrics``. The modules and the callbacks log through
:func:`log_epoch_metrics`; Lightning's ``self.log`` costs about a millisecond per value, and its
first call in a process 0.2 s, more than a small population's epochs."""
from __future__ import annotations

import atexit
import time
import weakref
from typing import Optional, Sequence

import torch
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.compat.proto.summary_pb2 import Summary

from nsr.kernels.events import EventFile, use_native_checksums


def fit_ends_after_this_epoch(trainer) -> bool:
    """Whether the epoch now ending is the fit's last: ``max_epochs`` (or ``max_steps``) reached,
    or a callback asked the trainer to stop (Ctrl-C through ``StopOnInterrupt``, early stopping)."""
    if trainer.should_stop:
        return True
    if trainer.max_epochs is not None and trainer.max_epochs != -1 and trainer.current_epoch + 1 >= trainer.max_epochs:
        return True
    return trainer.max_steps != -1 and trainer.global_step >= trainer.max_steps


_checksums: list = []


def native_checksums() -> None:
    """Once per process: TensorBoard's event files checksummed in C instead of pure Python (the
    same bytes; :func:`nsr.kernels.events.use_native_checksums`), before nsr writes to them."""
    if not _checksums:
        _checksums.append(use_native_checksums())


FLUSH_SECONDS = 1.0  # per-epoch scalars reach their file at least this often, and at the end of a fit
_scalar_events: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def scalar_events(logger) -> Optional[EventFile]:
    """The event file of ``logger``'s per-epoch scalars (in its folder, beside its own file), or
    None where the folder is not on the local disk (``s3://`` and the like: its own writer then)."""
    if logger not in _scalar_events:
        folder = logger.experiment.get_logdir()
        _scalar_events[logger] = None if "://" in str(folder) else EventFile(folder)
        if _scalar_events[logger] is not None:
            weakref.finalize(logger, _scalar_events[logger].close)
    return _scalar_events[logger]


def flush_scalar_events(trainer) -> None:
    """Write the buffered per-epoch scalars of ``trainer``'s loggers to their files (at the end of a
    fit, on an exception, before a checkpoint is read by someone else)."""
    for logger in getattr(trainer, "loggers", ()):
        events = _scalar_events.get(logger) if isinstance(logger, TensorBoardLogger) else None
        if events is not None:
            events.flush()


@atexit.register
def _flush_all_scalar_events() -> None:
    for events in list(_scalar_events.values()):
        if events is not None:
            events.close()


def log_epoch_metrics(trainer, metrics: dict[str, float], prog_bar: Sequence[str] = (), step: Optional[int] = None) -> None:
    """Log scalars once per epoch, with the number of epochs trained as the step: straight to the
    loggers (rank 0) in one call, and into ``trainer.callback_metrics`` (all ranks) so that
    ``ModelCheckpoint(monitor=...)`` and ``EarlyStopping`` see them. ``pl_module.log`` would do the
    same at about a millisecond per value and epoch, which dominates short epochs."""
    per_epoch = step is None  # the scalars of an epoch of the loop, not a one-off (probe, summary)
    step = trainer.current_epoch + 1 if step is None else step
    for logger in trainer.loggers:
        if type(logger) is TensorBoardLogger and not logger._prefix:
            # one event holding every scalar of the step: the same values, tags and step as
            # ``add_scalar`` per value writes; rank 0 only, as log_metrics
            if not trainer.is_global_zero:
                continue
            native_checksums()
            summary = Summary(value=[Summary.Value(tag=k, simple_value=float(v)) for k, v in metrics.items()])
            events = scalar_events(logger)
            if events is None:
                logger.experiment._get_file_writer().add_summary(summary, step)
                continue
            events.add(summary, step, time.time())
            if not per_epoch or fit_ends_after_this_epoch(trainer) or time.monotonic() - events.last_flush >= FLUSH_SECONDS:
                events.flush()
        else:
            logger.log_metrics(metrics, step=step)
    if all(type(v) is float for v in metrics.values()):
        # one tensor made for all values (its 0-d views), not one per value: the same float32 values
        trainer.callback_metrics.update(zip(metrics, torch.tensor(list(metrics.values()), dtype=torch.float32).unbind()))
    else:
        trainer.callback_metrics.update({k: torch.tensor(v) for k, v in metrics.items()})
    trainer.progress_bar_metrics.update({k: v for k, v in metrics.items() if k in prog_bar})


_bins: list = []


def log_histogram(trainer, tag: str, values: torch.Tensor, step: int) -> None:
    """A TensorBoard histogram of ``values`` (finite, any shape) at ``step``: the summary
    ``SummaryWriter.add_histogram`` makes (TensorBoard's default buckets), written with the run's
    per-epoch events (rank 0; TensorBoard loggers without a prefix)."""
    import numpy as np
    from torch.utils.tensorboard.summary import histogram

    if not trainer.is_global_zero:
        return
    for logger in trainer.loggers:
        if type(logger) is not TensorBoardLogger or logger._prefix:
            continue
        writer = logger.experiment
        if not _bins:
            _bins.append(np.asarray(writer.default_bins))  # the same edges, made an array once
        summary = histogram(tag, values, _bins[0])
        events = scalar_events(logger)
        if events is None:
            writer._get_file_writer().add_summary(summary, step)
        else:
            native_checksums()
            events.add(summary, step, time.time())
            if time.monotonic() - events.last_flush >= FLUSH_SECONDS:
                events.flush()

