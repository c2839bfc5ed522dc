"""What every callback needs to log: the run's TensorBoard writer, per-epoch scalars, PNG files,
and the parts of the :class:`nsr.modules.PopulationModule` contract a duck-typed module may lack."""
from __future__ import annotations

from typing import Optional

import torch
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.compat.proto.summary_pb2 import Summary

from nsr.atomic import write_atomically
from nsr.scalar_logs import (  # noqa: F401 - re-exported: the callbacks' logging
    flush_scalar_events, log_epoch_metrics, native_checksums, scalar_events)


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
