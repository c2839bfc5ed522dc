"""Single replicators sharded over 1, 2 and 3 gloo processes through the real ``nsr fit`` on
configs/weightwise.yaml, shrunk: every rank trains its contiguous slice of the particles with the
fused kernels, randomness keyed by the particle's global index, so the final population is bit-identical
to one process; checkpoints resume on another device count; ``init_from`` fine-tunes on any device
count; the logged scalars equal the one-process values. Every sharded run is a subprocess with a
timeout (its process group is killed if it hangs), so no orphaned rank outlives a failing test."""
from __future__ import annotations


import pytest
from launch import launch_nsr
import torch
from conftest import config, nsr_checkpoint, scalars, shrunk

import nsr as nsr_pkg
from nsr.checkpoint import read_checkpoint
from nsr.fixpoints import FixpointClass, classify
from nsr.modules.replicator import initial_population, keyed_self_train
from nsr.replicators import Weightwise
from nsr.training import self_train

pytestmark = pytest.mark.slow

P = 7  # 3 + 4 particles on two ranks, 2 + 2 + 3 on three
QUIET = ("--trainer.enable_progress_bar", "false")
# momentum (its buffers are sharded and must survive the change of device count) and validation
RUN = ("--model.init_args.momentum", "0.9", "--model.init_args.seed", "7", "--trainer.check_val_every_n_epoch", "2", *QUIET)


def nsr_fit(cwd, args, devices, timeout=300):
    """``nsr ARGS --trainer.devices N`` in ``cwd`` as a subprocess; returns the newest run folder and stdout."""
    status, out, err = launch_nsr(cwd, args, devices, timeout)
    assert status == 0, err[-3000:]
    runs = sorted((cwd / "lightning_logs").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    return runs[-1], out


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bit-identical float32 tensors (NaNs of divergent particles included)."""
    return a.shape == b.shape and torch.equal(a.view(torch.int32), b.view(torch.int32))


def same_scalars(ours: dict, theirs: dict) -> None:
    """Equal tags, steps and values (float rounding allowed only where sums over ranks are added in another order)."""
    assert ours.keys() == theirs.keys()
    for tag in theirs:
        assert [s for s, _ in ours[tag]] == [s for s, _ in theirs[tag]], tag
        a, b = torch.tensor([v for _, v in ours[tag]]), torch.tensor([v for _, v in theirs[tag]])
        assert torch.allclose(a, b, rtol=1e-6, atol=0, equal_nan=True), tag


def test_sharded_runs_on_2_and_3_processes_equal_one_process_bit_for_bit(nsr, tmp_path):
    # one process, in-process: the reference run and its scalars
    one = nsr(*shrunk("weightwise", P, 4, *RUN))
    assert one.status == 0, one.err
    _, w_one = nsr_pkg.load_population(one.last_ckpt)
    rep = Weightwise()
    expected = keyed_self_train(rep, initial_population(rep, 7, 0, P), 4, 7, lr=0.01, momentum=0.9).weights
    assert torch.equal(w_one, expected)  # the documented equality

    # two processes for epochs 1-2, then resumed on three for epochs 3-4
    sharded = tmp_path / "sharded"
    half, _ = nsr_fit(sharded, shrunk("weightwise", P, 2, *RUN), devices=2)
    _, w_half = nsr_pkg.load_population(half / "checkpoints" / "last.ckpt")
    assert w_half.shape == (P, 14)  # the whole population, not rank 0's slice
    rest, out = nsr_fit(sharded, [*shrunk("weightwise", P, 4, *RUN), "--ckpt_path", half / "checkpoints" / "last.ckpt"],
                        devices=3)
    _, w_three = nsr_pkg.load_population(rest / "checkpoints" / "last.ckpt")
    assert torch.equal(w_three, w_one)
    assert f"nsr: {P} x Weightwise" in out  # the summary, once, from rank 0, over the whole population
    # logs from rank 0 only, and the resumed run continues its own folder
    assert list(sharded.glob("lightning_logs/version_*")) == [half] and rest == half

    # fixpoint/*, train/loss and val/* of the sharded run equal the one-process values, epoch by epoch
    s_one, s_rest = scalars(one.log_dir), scalars(rest)
    # (final/* is written at the end of each fit: the resumed run's last one is the one-process run's)
    assert {tag: s_rest[tag][-1:] for tag in s_one if tag.startswith("final/")} == \
        {tag: s_one[tag] for tag in s_one if tag.startswith("final/")}
    same_scalars({tag: s_rest.get(tag, []) for tag in s_one if not tag.startswith("final/")},
                 {tag: v for tag, v in s_one.items() if not tag.startswith("final/")})
    assert "val/nontrivial" in s_one and "fixpoint/nontrivial" in s_one


def test_init_from_fine_tunes_on_two_processes_as_on_one_with_the_same_probes(nsr, tmp_path):
    rep, g = Weightwise(), torch.Generator().manual_seed(0)
    trained = self_train(rep, rep.init(P, generator=g), epochs=300, lr=0.1, momentum=0.9, batch_size=None, generator=g)
    classes = classify(rep, trained)
    assert (classes == FixpointClass.NONTRIVIAL).sum() >= 3 and (classes == FixpointClass.DIVERGENT).any()
    start = nsr_checkpoint(tmp_path / "trained.ckpt", rep, trained)
    tune = shrunk("weightwise", P, 3, "--model.init_args.init_from", start, "--model.init_args.lr", "0.05", *QUIET)

    one = nsr(*tune)
    assert one.status == 0, one.err
    _, w_one = nsr_pkg.load_population(one.last_ckpt)
    two, _ = nsr_fit(tmp_path / "two", tune, devices=2)
    _, w_two = nsr_pkg.load_population(two / "checkpoints" / "last.ckpt")
    assert same_bits(w_two, w_one) and not torch.equal(w_one[:5], trained[:5])
    assert same_bits(w_one, keyed_self_train(rep, trained, 3, 0, lr=0.05).weights)  # fresh epoch counter: keys from 0
    s_one, s_two = scalars(one.log_dir), scalars(two)
    assert any(tag.startswith("robustness/") for tag in s_one)  # the probe found the fixpoints on every rank's slice
    same_scalars(s_two, s_one)
    for name in ("trajectories_pca_2d.png", "robustness.png"):
        assert (two / name).is_file(), name
    recorded = [next(v for k, v in read_checkpoint(c)["callbacks"].items() if k.startswith("TrajectoryRecorder"))
                for c in (one.last_ckpt, two / "checkpoints" / "last.ckpt")]
    assert recorded[0].keys() == recorded[1].keys()  # the trajectories of the whole population, as on one process
    for key, a in recorded[0].items():
        b = recorded[1][key]
        assert same_bits(a, b) if isinstance(a, torch.Tensor) and a.is_floating_point() else \
            (torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b), key

    # `nsr validate` of the fine-tuned checkpoint on three processes measures what one process measures
    measure = ["validate", "--config", config("weightwise"), "--model.init_args.population", P, "--trainer.accelerator",
               "cpu", "--ckpt_path", two / "checkpoints" / "last.ckpt", "--new_version", "true", *QUIET]  # own folders
    one_val = nsr(*map(str, measure))
    assert one_val.status == 0, one_val.err
    three_val, _ = nsr_fit(tmp_path / "three", measure, devices=3)
    s_one, s_three = scalars(one_val.log_dir), scalars(three_val)
    assert {k for k in s_one if k.startswith("val/")} >= {"val/loss", "val/distance", "val/nontrivial", "val/divergent"}
    same_scalars(s_three, s_one)
