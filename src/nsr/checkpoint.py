"""Checkpoints: reading populations back, checking compatibility, writing atomically.

Every nsr LightningModule stores ``checkpoint["nsr"] = {"replicator": rep.to_config(),
"weights": [P, W] (the whole population), "kind": "replicator" | "soup" | "organism", ...}`` beside
Lightning's own entries, so any checkpoint nsr writes can be read without knowing which module
wrote it.
"""
from __future__ import annotations

import os
import tempfile
import zipfile
from typing import Any, Optional

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

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


def check_compatible(path, replicator: Replicator, kind: Optional[str] = None, population: Optional[int] = None) -> dict:
    """Raise a one-line ``ValueError`` unless the checkpoint at ``path`` holds this architecture
    (and, if given, this kind of module and population size). Returns the checkpoint."""
    ckpt = read_checkpoint(path)
    nsr = ckpt["nsr"]
    try:
        theirs = from_config(nsr["replicator"])
    except (ValueError, TypeError) as e:
        raise ValueError(f"checkpoint {os.fspath(path)}: {e}") from None
    if theirs != replicator:
        raise ValueError(f"checkpoint {os.fspath(path)} holds {theirs!r}, but this run's replicator is {replicator!r}")
    if kind is not None and nsr["kind"] != kind:
        raise ValueError(f"checkpoint {os.fspath(path)} was written by a {nsr['kind']} run, this is a {kind} run")
    if population is not None and nsr["weights"].shape[0] != population:
        raise ValueError(f"checkpoint {os.fspath(path)} holds {nsr['weights'].shape[0]} particles, "
                         f"but this run's population is {population}")
    return ckpt


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, made atomic: the checkpoint goes to a temporary file in the
    same folder, then ``os.replace`` puts it in place. A run killed while writing leaves the
    previous ``last.ckpt`` intact (and at worst a stray ``.tmp`` file)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Optional[Any] = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__}.save_checkpoint takes no storage_options")
        write_atomically(os.fspath(path), lambda f: torch.save(checkpoint, f))


def write_atomically(path: str, write, mode: str = "wb") -> None:
    """Create or replace the file ``path`` so that it is never seen half-written: ``write(f)``
    fills a temporary file (an open file object, or its path with ``mode=None``) in the same
    folder, which ``os.replace`` then puts in place. A kill midway leaves the old file intact."""
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        if mode is None:
            os.close(fd)
            write(tmp)
        else:
            with os.fdopen(fd, mode) as f:
                write(f)
        umask = os.umask(0)  # mkstemp made the file 0600; give it what open() would have
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
