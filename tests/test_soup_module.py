"""SoupModule in one process: it runs nsr.soup's generations exactly, through `nsr fit` on
configs/soup.yaml (shrunk), logs and checkpoints what the contracts say, resumes exactly and refuses
what it cannot do."""
from __future__ import annotations

import math
from types import SimpleNamespace

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.strategies import DDPStrategy

import nsr as nsr_pkg
from conftest import config, scalars
from nsr.callbacks import FixpointMonitor, TrajectoryRecorder
from nsr.modules import SoupModule
from nsr.modules.soup import SoupStrategy
from nsr.replicators import Weightwise
from nsr.soup import generation_step, initial_state

ARGS = dict(size=12, attacking_rate=0.3, learn_from_rate=0.3, learn_from_severity=2, train=2, remove_zero=True, seed=4)


def shrunk_soup(size=12, epochs=3, *extra):
    return ["fit", "--config", config("soup"), "--model.init_args.size", str(size), "--model.init_args.train", "2",
            "--trainer.max_epochs", str(epochs), "--trainer.enable_progress_bar", "false", *extra]


def fit(module, epochs, callbacks=(), root=None, **kw):
    torch.set_num_threads(1)
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=list(callbacks),
                         default_root_dir=root, **kw)
    trainer.fit(module)
    return trainer


def state_of(path):
    return torch.load(path, map_location="cpu", weights_only=True)["nsr"]


def test_each_epoch_is_one_generation_step_exactly(tmp_path):
    module = SoupModule(**ARGS)
    fit(module, 3, root=tmp_path)
    rep, kw = Weightwise(), {k: v for k, v in ARGS.items() if k not in ("size", "seed")}
    state = initial_state(rep, 12, seed=4)
    for _ in range(3):
        state, _ = generation_step(rep, state, seed=4, **kw)
    assert torch.equal(module.population, state.weights) and torch.equal(module.particle_ids, state.ids)
    assert (module.generation, module.next_id) == (3, state.next_id)
    assert torch.equal(module.gather_population(), state.weights)


def test_sequential_update_on_the_command_line_runs_the_published_order_exactly(nsr):
    run = nsr(*shrunk_soup(12, 2, "--model.init_args.update", "sequential", "--model.init_args.soup_size", "4"))
    assert run.status == 0, run.err
    kw = {k: v for k, v in ARGS.items() if k != "size"}
    kw.update(seed=0, train=2, attacking_rate=0.1, learn_from_rate=0.05, learn_from_severity=5)  # configs/soup.yaml
    state = initial_state(Weightwise(), 12, seed=0)
    for _ in range(2):
        state, _ = generation_step(Weightwise(), state, soup_size=4, update="sequential", **kw)
    rep, w = nsr_pkg.load_population(run.last_ckpt)
    assert torch.equal(w, state.weights)


def test_nsr_fit_logs_soup_events_and_fixpoint_shares_per_generation(nsr):
    run = nsr(*shrunk_soup())
    assert run.status == 0, run.err
    s = scalars(run.log_dir)
    for tag in ("soup/attacks", "soup/learn_from", "soup/respawned", "fixpoint/nontrivial", "fixpoint/divergent"):
        assert [step for step, _ in s[tag]] == [1, 2, 3], tag  # one value per generation, at its global step
    shares = sum(s[f"fixpoint/{c}"][-1][1] for c in ("divergent", "zero", "nontrivial", "second_order", "other"))
    assert shares == pytest.approx(1.0)
    assert (run.log_dir / "trajectories_pca_2d.png").exists() and (run.log_dir / "trajectories_pca_3d.png").exists()


def test_size_on_the_command_line_changes_the_population(nsr):
    run = nsr(*shrunk_soup(7, 1))
    assert run.status == 0, run.err
    rep, w = nsr_pkg.load_population(run.last_ckpt)
    assert w.shape == (7, rep.num_weights) and state_of(run.last_ckpt)["kind"] == "soup"


def test_reruns_give_bit_identical_populations(nsr):
    a = nsr(*shrunk_soup())
    b = nsr(*shrunk_soup())
    assert a.status == b.status == 0
    assert torch.equal(state_of(a.last_ckpt)["weights"], state_of(b.last_ckpt)["weights"])


def test_resume_from_last_ckpt_equals_the_uninterrupted_run(nsr):
    whole = nsr(*shrunk_soup(12, 4))
    half = nsr(*shrunk_soup(12, 2))
    assert state_of(half.last_ckpt)["generation"] == 2
    rest = nsr(*shrunk_soup(12, 4, "--ckpt_path", str(half.last_ckpt)))
    assert whole.status == half.status == rest.status == 0, rest.err
    a, b = state_of(whole.last_ckpt), state_of(rest.last_ckpt)
    assert torch.equal(a["weights"], b["weights"]) and torch.equal(a["ids"], b["ids"])
    assert (a["generation"], a["next_id"]) == (b["generation"], b["next_id"]) == (4, a["next_id"])


def test_resume_with_another_size_is_refused_naming_the_key(nsr):
    first = nsr(*shrunk_soup(12, 1))
    run = nsr(*shrunk_soup(13, 2, "--ckpt_path", str(first.last_ckpt)))
    assert run.status == 2 and "size" in run.err and "Traceback" not in run.err


def test_out_of_range_rate_on_the_command_line_gives_one_line_naming_it(nsr):
    run = nsr(*shrunk_soup(12, 1, "--model.init_args.attacking_rate", "1.5"))
    assert run.status == 2 and "attacking_rate" in run.err and "Traceback" not in run.err


def test_load_from_checkpoint_rebuilds_the_whole_population(nsr):
    run = nsr(*shrunk_soup(12, 2))
    module = SoupModule.load_from_checkpoint(run.last_ckpt)
    state = state_of(run.last_ckpt)
    assert torch.equal(module.population, state["weights"]) and module.generation == 2
    assert module.replicator == Weightwise()


def test_nan_particle_never_crashes_never_spreads_and_is_counted(tmp_path):
    module = SoupModule(**{**ARGS, "remove_zero": False}, remove_divergent=False)
    module.configure_model()
    module.genomes[5] = math.nan
    monitor = FixpointMonitor(summary=False)
    trainer = fit(module, 3, [monitor], root=tmp_path)
    w = module.population
    assert not bool(torch.isfinite(w[5]).all())
    assert bool(torch.isfinite(w[torch.arange(12) != 5]).all())  # it neither attacked nor taught anyone
    assert trainer.callback_metrics["fixpoint/divergent"] == pytest.approx(1 / 12)


def test_a_soup_whose_every_particle_diverged_ends_with_a_summary(capsys, tmp_path):
    module = SoupModule(**ARGS, remove_divergent=False)
    module.configure_model()
    module.genomes[:] = math.inf
    fit(module, 2, [FixpointMonitor(summary=True)], root=tmp_path)
    assert "every particle diverged" in capsys.readouterr().out


def test_respawned_slot_gets_a_new_id_so_trajectories_never_jump(tmp_path):
    module = SoupModule(**{**ARGS, "attacking_rate": 0.0, "learn_from_rate": 0.0})
    module.configure_model()
    module.genomes[3] = math.nan
    recorder = TrajectoryRecorder(every_n_epochs=1, histograms=False, embedding=False)
    fit(module, 2, [recorder], root=tmp_path)
    times, ids, _ = recorder.trajectories()
    assert module.particle_ids.tolist() == [0, 1, 2, 12] + list(range(4, 12)) and module.next_id == 13
    assert times[ids == 3].tolist() == [0] and times[ids == 12].tolist() == [1, 2]
    for pid in ids.unique().tolist():  # every id is one particle, recorded at consecutive generations
        t = times[ids == pid]
        assert t.tolist() == list(range(int(t[0]), int(t[0]) + len(t)))


def test_plain_ddp_is_refused_naming_the_soup_strategy():
    module = SoupModule(**ARGS)
    module._trainer = SimpleNamespace(strategy=DDPStrategy())
    with pytest.raises(ValueError, match="trainer.strategy.*SoupStrategy"):
        module.setup("fit")
    module._trainer = SimpleNamespace(strategy=SoupStrategy())
    module.setup("fit")


@pytest.mark.parametrize("key,value", [("size", 0), ("attacking_rate", 1.5), ("learn_from_rate", -0.5),
                                       ("learn_from_severity", -1), ("train", -2), ("epsilon", 0.0), ("lr", -1.0),
                                       ("update", "random")])
def test_invalid_arguments_raise_naming_the_key(key, value):
    with pytest.raises(ValueError, match=key):
        SoupModule(**{**ARGS, key: value})


def test_a_soup_that_does_not_self_train_reports_no_training_loss():
    from nsr.modules import SoupModule

    assert SoupModule(size=3, train=0, learn_from_rate=0.5).particle_loss is None
    assert SoupModule(size=3, train=2).particle_loss is not None
