"""`nsr` end to end: the shipped configs run (shrunk), log the scalars of docs/architecture.md to TensorBoard,
write checkpoints nsr can read back, and user mistakes give one line naming the key or file."""
import pytest
import torch
from conftest import config, nsr_checkpoint, scalars, shrunk

import nsr as nsr_pkg
from nsr.fixpoints import CLASS_NAMES
from nsr.replicators import Aggregating, Recurrent, Weightwise

LIGHTNING_INFO = ("INFO:", "Seed set", "GPU available", "TPU available")  # Lightning's own start-up lines
SHIPPED = {"weightwise": Weightwise(), "aggregating": Aggregating(), "recurrent": Recurrent(),
           "weightwise_tanh": Weightwise(activation="tanh")}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_config_runs_logs_the_fixpoint_scalars_and_checkpoints_the_population(nsr, name):
    run = nsr(*shrunk(name, population=3, epochs=2))
    assert run.status == 0, run.err
    s = scalars(run.log_dir)
    for tag in ["train/loss", "fixpoint/distance"] + [f"fixpoint/{c}" for c in CLASS_NAMES]:
        assert [step for step, _ in s[tag]] == [1, 2], tag  # one value per epoch
    for epoch in range(2):  # the class shares are fractions of the population: they sum to 1
        assert sum(s[f"fixpoint/{c}"][epoch][1] for c in CLASS_NAMES) == pytest.approx(1.0)
    if name == "aggregating":
        assert "fixpoint/aggregate_fixpoint" in s
    rep, w = nsr_pkg.load_population(run.last_ckpt)
    assert rep == SHIPPED[name] and w.shape == (3, rep.num_weights)
    assert (run.log_dir / "config.yaml").is_file()
    assert "tensorboard --logdir" in run.out and str(run.last_ckpt.name) in run.out


def test_paper_run_shrunk_in_epochs_keeps_training_and_reports_shares_that_match_the_checkpoint(nsr):
    run = nsr(*shrunk("weightwise", population=4, epochs=3))
    s = scalars(run.log_dir)
    losses = [v for _, v in s["train/loss"]]
    assert losses[-1] < losses[0]  # self-training lowers the self-replication error
    rep, w = nsr_pkg.load_population(run.last_ckpt)
    from nsr.fixpoints import classify, shares

    measured = shares(classify(rep, w))
    assert {c: s[f"fixpoint/{c}"][-1][1] for c in CLASS_NAMES} == pytest.approx(measured)


def test_help_print_config_and_validate(nsr, tmp_path):
    assert nsr("--help").status == 0
    run = nsr("fit", "--config", config("weightwise"), "--print_config")
    assert run.status == 0 and "class_path: nsr.modules.ReplicatorModule" in run.out
    assert "class_path: nsr.replicators.Weightwise" in run.out
    ckpt = nsr_checkpoint(tmp_path / "identity.ckpt", Weightwise(), Weightwise().identity_genome().repeat(2, 1))
    run = nsr("validate", "--config", config("weightwise"), "--model.init_args.population", "2",
              "--model.init_args.init_from", ckpt, "--trainer.accelerator", "cpu")
    assert run.status == 0, run.err
    assert "val/nontrivial" in run.out  # the hand-built fixpoint is measured as one
    assert scalars(run.log_dir)["val/nontrivial"][-1][1] == 1.0


def test_nsr_experiment_is_dispatched_before_lightning(nsr):
    run = nsr("experiment", "--help")
    assert run.status == 0 and "nsr experiment" in run.out


def _bad_inputs(tmp_path):
    (tmp_path / "corrupt.ckpt").write_bytes(b"not a checkpoint")
    torch.save({"state_dict": {}}, tmp_path / "plain.ckpt")
    other = nsr_checkpoint(tmp_path / "aggregating.ckpt", Aggregating(), torch.zeros(3, 20))
    (tmp_path / "a_file").write_text("")
    fit = shrunk("weightwise", 3, 1)
    return [
        (fit + ["--model.init_args.replicator.init_args.width", "0"], "width"),
        (fit + ["--model.init_args.lr", "-0.5"], "lr"),
        (fit + ["--model.init_args.epsilon", "0"], "epsilon"),
        (fit + ["--model.init_args.population", "0"], "population"),
        (fit + ["--model.init_args.momentum", "1.5"], "momentum"),
        (fit + ["--model.init_args.colour", "red"], "colour"),
        (fit + ["--trainer.colour", "red"], "colour"),
        (fit + ["--model.init_args.replicator.class_path", "nsr.replicators.Hexagonal"], "Hexagonal"),
        (fit + ["--data.init_args.batch_size", "0"], "batch_size"),
        (["fit", "--config", str(tmp_path / "missing.yaml")], "missing.yaml"),
        (fit + ["--ckpt_path", str(tmp_path / "corrupt.ckpt")], "corrupt.ckpt"),
        (fit + ["--ckpt_path", str(tmp_path / "plain.ckpt")], "plain.ckpt"),
        (fit + ["--ckpt_path", str(tmp_path / "nowhere.ckpt")], "nowhere.ckpt"),
        (fit + ["--ckpt_path", other], "Aggregating"),
        (fit + ["--model.init_args.init_from", other], "Aggregating"),
        (fit + ["--trainer.logger.init_args.save_dir", str(tmp_path / "a_file" / "logs")], "a_file"),
    ]


def test_user_mistakes_give_one_line_naming_the_key_or_file(nsr, tmp_path):
    for args, named in _bad_inputs(tmp_path):
        run = nsr(*args)
        lines = [ln for ln in run.err.splitlines() if ln.strip() and not ln.startswith(LIGHTNING_INFO)]
        assert run.status == 2, (args, run.err)
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, run.err)
        assert named in lines[0], (args, lines[0])
        assert "Traceback" not in run.err + run.out
    assert not (tmp_path / "lightning_logs").exists()  # every mistake was caught before any work started
