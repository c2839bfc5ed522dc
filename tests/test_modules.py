"""ReplicatorModule and SelfReplicationDataModule: a Lightning run is the paper's self-training,
bit for bit; it is deterministic, resumes exactly, contains divergence, and runs data-parallel."""
import os
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, nsr_checkpoint, scalars, shrunk

import nsr as nsr_pkg
from nsr.checkpoint import read_checkpoint
from nsr.data import SelfReplicationDataModule
from nsr.fixpoints import FixpointClass, classify
from nsr.modules import PopulationSGD, ReplicatorModule
from nsr.replicators import Aggregating, Weightwise
from nsr.training import self_train, sgd_step


def test_fit_is_self_train_bit_for_bit_deterministic_and_resumes_exactly(nsr):
    args = shrunk("weightwise", 4, 4, "--model.init_args.momentum", "0.9", "--model.init_args.seed", "7")
    first, second = nsr(*args), nsr(*args)
    assert first.status == second.status == 0
    _, w1 = nsr_pkg.load_population(first.last_ckpt)
    _, w2 = nsr_pkg.load_population(second.last_ckpt)
    assert torch.equal(w1, w2)  # same config and seed: the same population, bit for bit

    rep, g = Weightwise(), torch.Generator().manual_seed(7)
    expected = self_train(rep, rep.init(4, generator=g), epochs=4, lr=0.01, momentum=0.9, batch_size=1, generator=g)
    assert torch.equal(w1, expected)  # the Lightning run is nsr.training's self-training

    half = nsr(*shrunk("weightwise", 4, 2, "--model.init_args.momentum", "0.9", "--model.init_args.seed", "7"))
    resumed = nsr(*args, "--ckpt_path", half.last_ckpt)  # momentum buffers and shuffling state come back
    assert resumed.status == 0, resumed.err
    _, w3 = nsr_pkg.load_population(resumed.last_ckpt)
    assert torch.equal(w3, w1)
    ckpt = read_checkpoint(resumed.last_ckpt)
    assert ckpt["epoch"] == 3 and ckpt["global_step"] == 4  # one optimizer step per epoch
    recorder = next(v for k, v in ckpt["callbacks"].items() if k.startswith("TrajectoryRecorder"))
    assert recorder["times"].tolist() == [0, 2, 4]  # the trajectories recorded before the interruption were kept


def test_a_divergent_particle_never_crashes_the_run_nor_changes_the_others(nsr, tmp_path):
    rep = Weightwise()
    healthy = rep.init(1, generator=torch.Generator().manual_seed(3))  # [1, 14]
    mixed = torch.cat([torch.full((1, 14), float("nan")), healthy])
    no_shuffle = ("--data.init_args.shuffle", "false")
    alone = nsr(*shrunk("weightwise", 1, 3, *no_shuffle, "--model.init_args.init_from",
                        nsr_checkpoint(tmp_path / "alone.ckpt", rep, healthy)))
    both = nsr(*shrunk("weightwise", 2, 3, *no_shuffle, "--model.init_args.init_from",
                       nsr_checkpoint(tmp_path / "mixed.ckpt", rep, mixed)))
    assert alone.status == both.status == 0, both.err
    _, wa = nsr_pkg.load_population(alone.last_ckpt)
    _, wb = nsr_pkg.load_population(both.last_ckpt)
    assert torch.isnan(wb[0]).all() and torch.equal(wb[1:], wa)
    s = scalars(both.log_dir)
    assert s["fixpoint/divergent"][-1][1] == 0.5 and torch.isfinite(torch.tensor(s["train/loss"][-1][1]))

    exploding = nsr(*shrunk("weightwise", 3, 3, "--model.init_args.lr", "1000"))
    assert exploding.status == 0
    assert scalars(exploding.log_dir)["fixpoint/divergent"][-1][1] == 1.0
    assert "every particle diverged" in exploding.out


def test_module_validates_its_arguments_naming_them():
    for kwargs, name in [({"population": 0}, "population"), ({"lr": -1.0}, "lr"), ({"momentum": 1.0}, "momentum"),
                         ({"epsilon": 0.0}, "epsilon"), ({"second_order": "twice"}, "second_order"),
                         ({"seed": -1}, "seed"), ({"replicator": "weightwise"}, "replicator")]:
        with pytest.raises(ValueError, match=name):
            ReplicatorModule(**kwargs)
    with pytest.raises(ValueError, match="batch_size"):
        SelfReplicationDataModule(batch_size=0)


def test_module_offers_the_callback_contract_and_checks_checkpoints_it_resumes():
    m = ReplicatorModule(Weightwise(), population=5, seed=1)
    assert m.population.shape == (5, 14) and not m.population.requires_grad
    assert torch.equal(m.gather_population(), m.population)
    assert m.particle_ids.tolist() == [0, 1, 2, 3, 4]
    assert torch.equal(m.population, Weightwise().init(5, generator=torch.Generator().manual_seed(1)))
    ckpt = {}
    m.on_save_checkpoint(ckpt)
    assert ckpt["nsr"]["kind"] == "replicator" and torch.equal(ckpt["nsr"]["weights"], m.population)
    ReplicatorModule(Weightwise(), population=5, seed=2).on_load_checkpoint(ckpt)  # same architecture and size
    for other, match in [(ReplicatorModule(Aggregating(), population=5), "Aggregating"),
                         (ReplicatorModule(Weightwise(width=3), population=5), "width=3"),
                         (ReplicatorModule(Weightwise(), population=6), "6")]:
        with pytest.raises(ValueError, match=match):
            other.on_load_checkpoint(ckpt)
    with pytest.raises(ValueError, match="not an nsr checkpoint"):
        m.on_load_checkpoint({"state_dict": {}})


def test_an_epoch_trains_on_a_snapshot_of_the_genomes_taken_at_its_start():
    m = ReplicatorModule(Weightwise(), population=3)
    batch = SelfReplicationDataModule().epoch(m)
    before = m.population.clone()
    with torch.no_grad():
        m.genomes.add_(1.0)  # what the optimizer does to the parameter during the epoch
    assert torch.equal(batch["y"][:, :, 0], before)  # the targets stay the genome the epoch started from


def test_population_sgd_is_nsr_training_update_rule():
    w = torch.randn(4, 14)
    p = torch.nn.Parameter(w.clone())
    opt = PopulationSGD([p], lr=0.1, momentum=0.9)
    ref, v = w.clone(), None
    for k in range(3):
        g = torch.randn(4, 14, generator=torch.Generator().manual_seed(k))
        p.grad = g
        opt.step()
        ref, v = sgd_step(ref, g, v, 0.1, 0.9)
    assert torch.equal(p.detach(), ref)


@pytest.mark.slow
def test_two_process_data_parallel_fine_tuning_matches_one_device(nsr, tmp_path):
    rep, g = Weightwise(), torch.Generator().manual_seed(0)
    trained = self_train(rep, rep.init(6, generator=g), epochs=300, lr=0.1, momentum=0.9, batch_size=None, generator=g)
    assert classify(rep, trained).tolist() == [2, 2, 2, 2, 2, 0]  # five fixpoints, one divergent particle
    start = nsr(*shrunk("weightwise", 6, 1, "--model.init_args.init_from",
                        nsr_checkpoint(tmp_path / "trained.ckpt", rep, trained)))
    assert start.status == 0, start.err
    tune = ["--ckpt_path", str(start.last_ckpt), "--trainer.enable_progress_bar", "false"]
    # two runs from the same checkpoint: the first in a new folder (resuming would continue, and rewrite, the start's)
    # two ranks take one sample each per step and average: one step on two samples, as batch size 2 on one device
    one = nsr(*shrunk("weightwise", 6, 6, "--data.init_args.batch_size", "2", *tune, "--new_version", "true"))
    assert one.status == 0, one.err
    _, w_one = nsr_pkg.load_population(one.last_ckpt)

    out = tmp_path / "ddp"
    script = os.path.join(os.path.dirname(sys.executable), "nsr")  # Lightning relaunches rank 1 with the same argv
    cmd = [script if os.path.exists(script) else shutil.which("nsr"), *shrunk("weightwise", 6, 6, *tune),
           "--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.logger.init_args.save_dir", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = sorted((out / "lightning_logs").glob("version_*"))
    assert len(runs) == 1  # logs and checkpoints from rank 0 only
    _, w_two = nsr_pkg.load_population(runs[0] / "checkpoints" / "last.ckpt")
    assert classify(rep, w_two).tolist() == classify(rep, w_one).tolist() == [2, 2, 2, 2, 2, 0]
    assert torch.allclose(w_two[:5], w_one[:5], atol=1e-6) and not torch.equal(w_one[:5], trained[:5])
    s = scalars(runs[0])
    assert s["fixpoint/nontrivial"][-1] == (6, pytest.approx(5 / 6)) and s["fixpoint/divergent"][-1] == (6, pytest.approx(1 / 6))


def test_last_ckpt_is_never_left_half_written(tmp_path):
    from nsr.checkpoint import AtomicCheckpointIO

    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"nsr": {"step": 1}}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("interrupted while writing")

    with pytest.raises(RuntimeError):  # the writer stops half-way through the new checkpoint
        io.save_checkpoint({"nsr": {"step": 2}, "blob": torch.zeros(1000), "stop": Unpicklable()}, path)
    assert torch.load(path, weights_only=True) == {"nsr": {"step": 1}} and os.listdir(tmp_path) == ["last.ckpt"]


# ---- the contract the callbacks and the CLI rely on -------------------------------------------------------
def test_both_modules_offer_the_population_module_contract():
    from nsr.modules import PopulationModule, SoupModule

    rep_module, soup_module = ReplicatorModule(population=3), SoupModule(size=4)
    soup_module.configure_model()  # generation 0 of this process's shard (no trainer: the whole soup)
    for module, kind, unit in ((rep_module, "replicator", "epoch"), (soup_module, "soup", "generation")):
        assert isinstance(module, PopulationModule) and module.kind == kind and module.time_unit == unit
        w = module.gather_population()
        assert torch.equal(module.population, w) and w.shape[1] == module.replicator.num_weights
        assert module.gather_particle_ids().tolist() == module.particle_ids.tolist() == list(range(w.shape[0]))


def test_resuming_checks_the_checkpoint_through_the_module(tmp_path):
    from nsr.modules import SoupModule

    soup_ckpt = nsr_checkpoint(tmp_path / "soup.ckpt", Weightwise(), torch.zeros(3, 14), kind="soup")
    with pytest.raises(ValueError, match="written by a soup run, this is a replicator run"):
        ReplicatorModule(population=3).check_checkpoint(soup_ckpt)
    assert SoupModule(size=3).check_checkpoint(soup_ckpt)["nsr"]["kind"] == "soup"
    with pytest.raises(ValueError, match="holds 3 particles, but this run's population is 2"):
        ReplicatorModule(population=2).check_checkpoint(nsr_checkpoint(tmp_path / "r.ckpt", Weightwise(), torch.zeros(3, 14)))


def test_importing_nsr_installs_no_warnings_filter():
    import subprocess
    import sys

    code = ("import warnings, lightning.pytorch; before = list(warnings.filters); "
            "import nsr.modules, nsr.callbacks, nsr.cli, nsr.experiments; print(warnings.filters == before)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "True", out.stderr
