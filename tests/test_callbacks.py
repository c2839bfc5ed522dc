"""Callbacks: fixpoint scalars that add up across devices, the paper's robustness test, and
trajectories that follow particles (never slots) through weight space."""
import math
from types import SimpleNamespace

import pytest
import torch
from conftest import nsr_checkpoint, scalars, shrunk, tags

from nsr.callbacks import FixpointMonitor, RobustnessProbe, TrajectoryRecorder, pca, trajectory_figures
from nsr.metrics import PopulationStats
from nsr.replicators import Aggregating, Weightwise

NAN = float("nan")


def _module(rep, w, loss=None):
    return SimpleNamespace(replicator=rep, epsilon=1e-4, population=w, device=torch.device("cpu"), particle_loss=loss,
                           gather_population=lambda: w)


def test_monitor_measures_the_paper_classes_of_a_hand_built_population():
    rep = Weightwise()
    w = torch.cat([rep.identity_genome(), torch.zeros(1, 14), torch.full((1, 14), NAN), rep.identity_genome() * 0.5])
    out = FixpointMonitor().measure(_module(rep, w, loss=torch.tensor([0.0, 0.0, NAN, 0.5])))
    assert out["fixpoint/nontrivial"] == 0.25 and out["fixpoint/zero"] == 0.25 and out["fixpoint/divergent"] == 0.25
    assert out["fixpoint/other"] == 0.25 and out["fixpoint/second_order"] == 0.0
    # distance over the finite particles: 0, 0 and, for the halved identity (F(w) = w/8), max |w/8 - w| = 7/8 * 0.5
    assert out["fixpoint/distance"] == pytest.approx(0.4375 / 3)
    assert out["train/loss"] == pytest.approx(0.5 / 3)  # the divergent particle's NaN loss is left out


def test_shares_from_two_ranks_add_up_to_the_shares_of_the_whole_population():
    rep = Weightwise()
    w = rep.init(10, generator=torch.Generator().manual_seed(0))
    w[3] = NAN
    w[7] = rep.identity_genome()[0]
    whole, rank0, rank1 = PopulationStats(), PopulationStats(), PopulationStats()
    whole.update(rep, w)
    rank0.update(rep, w[:6])
    rank1.update(rep, w[6:])
    rank0.merge_state(rank1)  # what dist_reduce_fx="sum" does across devices
    assert rank0.compute() == pytest.approx(whole.compute())
    assert sum(v for k, v in whole.compute().items() if k.count("/") and k.split("/")[1] in
               ("divergent", "zero", "nontrivial", "second_order", "other")) == pytest.approx(1.0)


def test_aggregating_populations_are_also_measured_on_their_aggregates():
    rep = Aggregating()
    out = FixpointMonitor().measure(_module(rep, rep.init(4, generator=torch.Generator().manual_seed(0))))
    assert 0.0 <= out["fixpoint/aggregate_fixpoint"] <= 1.0 and out["fixpoint/aggregate_distance"] >= 0


def test_robustness_probe_times_grow_as_the_noise_shrinks():
    rep = Weightwise()
    probe = RobustnessProbe(scales=[1.0, 1e-2, 1e-6], trials=30, max_steps=100)
    results = probe.probe(_module(rep, rep.identity_genome().repeat(2, 1)), rep.identity_genome().repeat(2, 1))
    ttv = {s: float(t.double().mean()) for s, (t, _) in results.items()}
    taf = {s: float(t.double().mean()) for s, (_, t) in results.items()}
    assert ttv[1.0] < ttv[1e-2] < ttv[1e-6]  # the published trend (3.6 -> 6.5 -> 13.0)
    assert taf[1.0] == 0 and taf[1e-6] > 1  # large noise destroys the fixpoint at once
    assert probe.probe(_module(rep, torch.zeros(2, 14)), torch.zeros(2, 14)) is None  # no non-trivial fixpoint
    for bad in [{"scales": [0.0]}, {"trials": 0}, {"max_steps": 0}, {"every_n_epochs": 0}]:
        with pytest.raises(ValueError, match=next(iter(bad))):
            RobustnessProbe(**bad)


def test_a_respawned_slot_starts_a_new_trajectory():
    rec = TrajectoryRecorder(max_particles=2, histograms=False)
    trainer = SimpleNamespace(is_global_zero=True, loggers=[])
    w = torch.zeros(3, 14)
    ids = torch.tensor([0, 1, 2])
    module = SimpleNamespace(gather_population=lambda: w, gather_particle_ids=lambda: ids)
    for t in range(3):
        if t == 2:  # slot 1 is replaced by a fresh particle with a new id, far away in weight space
            ids = torch.tensor([0, 5, 2])
            w = w.clone()
            w[1] = 10.0
        w = w + 0.1
        rec.record(trainer, module, t)
    times, pids, weights = rec.trajectories()
    assert pids.tolist() == [0, 1, 0, 1, 0, 5]  # up to max_particles slots per record
    assert times[pids == 1].tolist() == [0, 1] and times[pids == 5].tolist() == [2]
    steps = (weights[pids == 1][1:] - weights[pids == 1][:-1]).abs().max()
    assert steps < 1  # particle 1's trajectory holds only particle 1: no jump to the newcomer
    fig2, fig3 = trajectory_figures(times, pids, weights)
    from matplotlib.collections import LineCollection, PathCollection

    ax = fig2.axes[0]
    paths = [c for c in ax.collections if isinstance(c, LineCollection)][0]
    marks = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(paths.get_segments()) == 3  # per particle id: its path, a start and an end marker
    assert len(marks[0].get_offsets()) == 3 and sum(len(m.get_offsets()) for m in marks[1:]) == 3


def test_pca_finds_the_direction_the_points_vary_along():
    direction = torch.tensor([3.0, 4.0, 0.0]) / 5
    points = torch.linspace(-1, 1, 7)[:, None] * direction + torch.tensor([1.0, 2.0, 3.0])
    mean, comps = pca(points, 2)
    assert torch.allclose(mean.float(), torch.tensor([1.0, 2.0, 3.0]), atol=1e-6)
    assert abs(float(comps[0].float() @ direction)) == pytest.approx(1.0, abs=1e-6)


def test_a_fit_of_hand_built_fixpoints_logs_robustness_and_figures(nsr, tmp_path):
    rep = Weightwise()
    ckpt = nsr_checkpoint(tmp_path / "identity.ckpt", rep, rep.identity_genome().repeat(2, 1))
    run = nsr(*shrunk("weightwise", 2, 2, "--model.init_args.init_from", ckpt))
    assert run.status == 0, run.err
    s = scalars(run.log_dir)
    assert s["fixpoint/nontrivial"] == [(1, 1.0), (2, 1.0)]  # the identity genome trains to itself (zero loss)
    for k in range(10):
        tag = f"1e-{k}" if k else "1e0"
        assert math.isfinite(s[f"robustness/time_to_vergence/{tag}"][0][1])
        assert math.isfinite(s[f"robustness/time_as_fixpoint/{tag}"][0][1])
    assert s["robustness/time_to_vergence/1e0"][0][1] < s["robustness/time_to_vergence/1e-9"][0][1]
    assert {"robustness/boxplot", "trajectories/pca_2d", "trajectories/pca_3d"} <= set(tags(run.log_dir, "images"))
    assert "weights/population" in tags(run.log_dir, "histograms")
    assert (run.log_dir / "projector_config.pbtxt").is_file()
    for png in ("robustness.png", "trajectories_pca_2d.png", "trajectories_pca_3d.png"):
        assert (run.log_dir / png).stat().st_size > 1000
    rows = (run.log_dir / "robustness.csv").read_text().splitlines()
    assert rows[0].startswith("noise,trials,time_to_vergence") and len(rows) == 11


def test_the_final_progress_bar_shows_the_last_epochs_shares(capsys):
    from nsr.callbacks import EpochProgressBar

    bar = EpochProgressBar()
    trainer = SimpleNamespace(is_global_zero=True, max_epochs=2, current_epoch=0, progress_bar_metrics={})
    bar.on_train_start(trainer, None)
    bar.on_train_epoch_end(trainer, None)  # an epoch's metrics are logged after this hook
    trainer.progress_bar_metrics = {"fixpoint/nontrivial": 0.3, "train/loss": 1.0}
    bar.on_train_epoch_end(trainer, None)
    trainer.progress_bar_metrics = {"fixpoint/nontrivial": 0.7, "train/loss": 0.5}
    bar.on_train_end(trainer, None)
    final = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    assert "nontrivial=0.70" in final and "loss=5.00e-01" in final, final
