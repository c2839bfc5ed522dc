"""Shared fixtures: run the real ``nsr`` entry point on the shipped configs, shrunk, and read back
what a run leaves behind (TensorBoard scalars, checkpoints)."""
from __future__ import annotations

import glob
import logging
import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"


def config(name: str) -> str:
    """Path of ``configs/<name>.yaml``."""
    return str(CONFIGS / f"{name}.yaml")


def shrunk(name: str, population: int = 3, epochs: int = 2, *extra: str) -> list[str]:
    """``nsr fit`` arguments for a shipped ReplicatorModule config on a tiny population, few epochs, CPU."""
    return ["fit", "--config", config(name), "--model.init_args.population", str(population),
            "--trainer.max_epochs", str(epochs), "--trainer.accelerator", "cpu", *extra]


class Run:
    """The outcome of one ``nsr`` invocation: status, captured output, and its run folder (the
    newest ``lightning_logs/version_*`` when it ended)."""

    def __init__(self, status: int, out: str, err: str, cwd: Path):
        self.status, self.out, self.err, self.cwd = status, out, err, cwd
        runs = sorted((cwd / "lightning_logs").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
        self.log_dir = runs[-1] if runs else None

    @property
    def last_ckpt(self) -> Path:
        return self.log_dir / "checkpoints" / "last.ckpt"


@pytest.fixture
def nsr(tmp_path, monkeypatch, capsys):
    """``nsr(*args) -> Run``: ``nsr.cli.main`` in-process, in a scratch working folder."""
    from nsr.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["nsr"])
    torch.set_num_threads(1)

    def run(*args) -> Run:
        capsys.readouterr()
        for name in ("lightning", "lightning.pytorch", "lightning.fabric"):  # handlers keep the stream of import time
            for handler in logging.getLogger(name).handlers:
                if isinstance(handler, logging.StreamHandler):
                    monkeypatch.setattr(handler, "stream", sys.stderr)
        status = main([str(a) for a in args])
        captured = capsys.readouterr()
        return Run(status, captured.out, captured.err, tmp_path)

    return run


def scalars(log_dir) -> dict[str, list[tuple[int, float]]]:
    """Every scalar TensorBoard holds for a run folder: ``{tag: [(step, value), ...]}``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(glob.glob(os.path.join(str(log_dir), "events.out.tfevents.*"))):
        acc = EventAccumulator(path, size_guidance={"scalars": 0, "images": 0, "histograms": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return out


def tags(log_dir, kind: str) -> list[str]:
    """TensorBoard tags of one kind (``images``, ``histograms``, ...) in a run folder."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    found = []
    for path in sorted(glob.glob(os.path.join(str(log_dir), "events.out.tfevents.*"))):
        acc = EventAccumulator(path, size_guidance={kind: 0})
        acc.Reload()
        found += acc.Tags()[kind]
    return found


def nsr_checkpoint(path, replicator, weights, kind: str = "replicator") -> str:
    """A minimal checkpoint in nsr's format (what ``load_population`` and ``init_from`` read)."""
    torch.save({"nsr": {"kind": kind, "replicator": replicator.to_config(), "weights": weights}}, str(path))
    return str(path)
