"""Checkpoints: reading populations back, checking compatibility, writing atomically.

Every nsr LightningModule stores ``checkpoint["nsr"] = {"replicator": rep.to_config(),
"weights": [P, W] (the whole population), "kind": "replicator" | "soup" | "organism", ...}`` beside
Lightning's own entries, so any checkpoint nsr writes can be read without knowing which module
wrote it.
"""
from __future__ import annotations

import os
import zipfile
from typing import Any, Optional

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from nsr.atomic import write_atomically
from nsr.replicators import Replicator, from_config

KINDS = ("replicator", "soup", "organism")


def read_checkpoint(path) -> dict:
    """The checkpoint dict at ``path``; ``ValueError`` naming the file if it is missing, unreadable,
    or not written by nsr."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"checkpoint {path}: no such file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, corrupt, or not a torch file at all
        if not zipfile.is_zipfile(path):
            raise ValueError(f"checkpoint {path}: corrupt or truncated (not a torch checkpoint file)") from None
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"checkpoint {path}: cannot be read ({reason[:120]})") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("nsr"), dict):
        raise ValueError(f"checkpoint {path}: not an nsr checkpoint (no 'nsr' entry)")
    nsr = ckpt["nsr"]
    if nsr.get("kind") not in KINDS or "replicator" not in nsr or not isinstance(nsr.get("weights"), torch.Tensor):
        raise ValueError(f"checkpoint {path}: its 'nsr' entry is incomplete")
    return ckpt


def load_population(path) -> tuple[Replicator, torch.Tensor]:
    """``(replicator, weights [P, W])`` from any checkpoint nsr writes (single replicators and soups).

    A missing, corrupt or non-nsr file raises ``ValueError`` naming the file.
    """
    nsr = read_checkpoint(path)["nsr"]
    try:
        rep = from_config(nsr["replicator"])
        w = rep.check_weights(nsr["weights"].float(), "weights")
    except (ValueError, TypeError) as e:
        raise ValueError(f"checkpoint {os.fspath(path)}: {e}") from None
    return rep, w


def check_entry(nsr, where: str, replicator: Replicator, kind: Optional[str] = None,
                population: Optional[int] = None, population_name: str = "this run's population") -> None:
    """Raise a one-line ``ValueError`` starting with ``where`` unless the checkpoint entry ``nsr``
    (``checkpoint["nsr"]``) holds this architecture and, if given, this kind of module (``"replicator"``,
    ``"soup"`` or ``"organism"``) and ``population`` particles (called ``population_name`` in the
    message). The one compatibility check: ``--ckpt_path``, ``init_from`` and the modules' ``on_load_checkpoint`` use it."""
    if not isinstance(nsr, dict) or nsr.get("kind") not in KINDS or "replicator" not in nsr:
        raise ValueError(f"{where}: not an nsr checkpoint (no 'nsr' entry)")
    try:
        theirs = from_config(nsr["replicator"])
    except (ValueError, TypeError) as e:
        raise ValueError(f"{where}: {e}") from None
    if theirs != replicator:
        raise ValueError(f"{where} holds {theirs!r}, but this run's replicator is {replicator!r}")
    if kind is not None and nsr["kind"] != kind:
        raise ValueError(f"{where} was written by a {nsr['kind']} run, this is a {kind} run")
    if population is not None and nsr["weights"].shape[0] != population:
        raise ValueError(f"{where} holds {nsr['weights'].shape[0]} particles, but {population_name} is {population}")


def check_compatible(path, replicator: Replicator, kind: Optional[str] = None, population: Optional[int] = None) -> dict:
    """Raise a one-line ``ValueError`` unless the checkpoint at ``path`` holds this architecture
    (and, if given, this kind of module and population size). Returns the checkpoint."""
    ckpt = read_checkpoint(path)
    check_entry(ckpt["nsr"], f"checkpoint {os.fspath(path)}", replicator, kind, population)
    return ckpt


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, made atomic: the checkpoint goes to a temporary file in the
    same folder, then ``os.replace`` puts it in place. A run killed while writing leaves the
    previous ``last.ckpt`` intact (and at worst a stray ``.tmp`` file)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Optional[Any] = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__}.save_checkpoint takes no storage_options")
        write_atomically(os.fspath(path), lambda f: torch.save(checkpoint, f))
