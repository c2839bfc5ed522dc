"""Every shipped config, shrunk and run with its fixed seed through the real ``nsr fit``, ends with
exactly the population bits recorded in ``tests/population_bits.json`` (SHA-256 of the final
genomes' float32 bytes, read back from ``last.ckpt``): a speed-up of the kernels, the random
streams or the soup may change how fast a run is, never what it computes.

A change of results made on purpose (e.g. a new default initialiser) records the new bits with

    PYTHONPATH=src python tests/test_population_bits.py --record

and says why in its commit message.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = Path(__file__).with_name("population_bits.json")
SOUPS = ("soup", "mixed_soup", "learn_from_soup", "soup_trajectories", "soup_analytics")
# organism hosts have no population size to shrink; tests/test_organism.py pins their behaviour
OWN_TESTS = ("organism_addition", "organism_digits")


def shipped() -> list[str]:
    """The names of the shipped configs (``configs/*.yaml``)."""
    return sorted(p.stem for p in (ROOT / "configs").glob("*.yaml") if p.stem not in OWN_TESTS)


def shrunk_args(name: str) -> list[str]:
    """``nsr fit`` arguments of config ``name`` on 4 particles for 3 epochs (generations), on CPU."""
    size = "size" if name in SOUPS else "population"
    return ["fit", "--config", str(ROOT / "configs" / f"{name}.yaml"), f"--model.init_args.{size}", "4",
            "--trainer.max_epochs", "3", "--trainer.accelerator", "cpu", "--trainer.devices", "1",
            "--trainer.enable_checkpointing", "true"]


def population_hash(ckpt) -> str:
    """SHA-256 of the final genomes ``[P, W]`` of a checkpoint, as float32 bytes."""
    from nsr import load_population

    _, w = load_population(ckpt)
    return hashlib.sha256(w.detach().to(torch.float32).contiguous().numpy().tobytes()).hexdigest()


def run_config(name: str, folder: Path) -> str:
    """Run the shrunk config in ``folder``; the hash of its final population."""
    import os

    from nsr.cli import main

    folder.mkdir(parents=True, exist_ok=True)
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        status = main(shrunk_args(name))
    finally:
        os.chdir(cwd)
    assert status == 0, f"{name}: nsr fit exited {status}"
    ckpts = sorted(folder.glob("lightning_logs/version_*/checkpoints/*.ckpt"))
    return population_hash(ckpts[-1])


@pytest.mark.parametrize("name", shipped())
def test_fixed_seed_run_of_a_shipped_config_ends_with_the_recorded_population_bits(name, tmp_path, capsys):
    recorded = json.loads(FIXTURE.read_text())
    assert name in recorded, f"{name}: no recorded bits; record them (see this file's docstring)"
    torch.set_num_threads(1)
    assert run_config(name, tmp_path) == recorded[name]


def record() -> None:
    """Write ``tests/population_bits.json`` from this checkout's code."""
    import tempfile

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        bits = {name: run_config(name, Path(tmp) / name) for name in shipped()}
    FIXTURE.write_text(json.dumps(bits, indent=1, sort_keys=True) + "\n")
    print(f"recorded {len(bits)} configs in {FIXTURE}")


if __name__ == "__main__":
    if sys.argv[1:] != ["--record"]:
        sys.exit(__doc__)
    record()
