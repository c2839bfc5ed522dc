"""What every callback needs to log: the run's TensorBoard writer, per-epoch scalars, PNG files,
and the parts of the :class:`nsr.modules.PopulationModule` contract a duck-typed module may lack."""
from __future__ import annotations

import atexit
import time
import weakref
from typing import Optional, Sequence

import torch
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.compat.proto.summary_pb2 import Summary

from nsr.atomic import write_atomically
from nsr.callbacks.checkpointing import fit_ends_after_this_epoch
from nsr.kernels.events import EventFile, use_native_checksums


def second_order(pl_module) -> str:
    """The module's second-order test (``"orbit"`` unless it says otherwise)."""
    return getattr(pl_module, "second_order", "orbit")


def time_unit(pl_module) -> str:
    """What one epoch of the module is (``"epoch"`` unless it says otherwise)."""
    return getattr(pl_module, "time_unit", "epoch")


def gather_ids(pl_module, P: int) -> torch.Tensor:
    """``LongTensor[P]``: the ids of the whole population (a collective for sharded modules);
    slot numbers for a module that does not name its particles."""
    if hasattr(pl_module, "gather_particle_ids"):
        return pl_module.gather_particle_ids().cpu()
    ids = getattr(pl_module, "particle_ids", None)
    return ids.cpu() if ids is not None and ids.shape[0] == P else torch.arange(P)


_checksums: list = []


def native_checksums() -> None:
    """Once per process: TensorBoard's event files checksummed in C instead of pure Python (the
    same bytes; :func:`nsr.kernels.events.use_native_checksums`), before nsr writes to them."""
    if not _checksums:
        _checksums.append(use_native_checksums())


def tensorboard_writer(trainer):
    """The TensorBoard SummaryWriter of the run on rank 0, else None."""
    if not trainer.is_global_zero:
        return None
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            native_checksums()
            return logger.experiment
    return None


def tensorboard_root(trainer, log_dir) -> Optional[str]:
    """The folder to point ``tensorboard --logdir`` at."""
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.root_dir
    return log_dir


def save_figure(fig, path: str) -> None:
    """Save a matplotlib figure as PNG, atomically."""
    write_atomically(path, lambda f: fig.savefig(f, format="png", dpi=120))


def png_bytes(fig, dpi: int = 120) -> bytes:
    """A matplotlib figure rendered once, as PNG."""
    import io

    buf = io.BytesIO()
    # zlib level 1: the same pixels, 7% more bytes, written in less time than level 6
    fig.savefig(buf, format="png", dpi=dpi, pil_kwargs={"compress_level": 1})
    return buf.getvalue()


def log_figure(writer, tag: str, fig, step: int, path: Optional[str] = None) -> None:
    """A figure as a TensorBoard image ``tag`` (``writer`` may be None) and as the PNG file ``path``
    (if given), rendered once for both. (``SummaryWriter.add_figure`` renders it again, and
    imports pyplot to close it.)"""
    png = png_bytes(fig)
    if path:
        write_atomically(path, lambda f: f.write(png))
    if writer is not None:
        width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")  # the PNG's IHDR
        image = Summary.Image(height=height, width=width, colorspace=4, encoded_image_string=png)
        writer._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)


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


def log_final_hparams(trainer, pl_module, final: dict) -> None:
    """TensorBoard's HPARAMS tab: the run's hyper-parameters (the module's, ``max_epochs``) beside
    its final class shares ``final/<class>`` and mean fixpoint distance ``final/distance`` (also
    logged as scalars at the last epoch). ``final`` is :class:`FixpointMonitor`'s summary."""
    from lightning.fabric.utilities.logger import _convert_params, _flatten_dict
    from torch.utils.tensorboard.summary import hparams

    metrics = {f"final/{name}": float(share) for name, share in final["shares"].items()}
    metrics["final/distance"] = float(final["distance_mean"])
    params = dict(getattr(pl_module, "hparams", {}) or {})
    params["max_epochs"] = trainer.max_epochs
    params = _flatten_dict(_convert_params(params))
    params = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in params.items()}
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.log_metrics(metrics, step=final["epochs"])
            writer = logger.experiment._get_file_writer()
            for summary in hparams(params, metrics):
                writer.add_summary(summary)
            logger.experiment.flush()
