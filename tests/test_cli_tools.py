"""The `nsr` command as a Lightning user expects it: commands listed, shipped configs by name (also
from a built wheel), runs that go where default_root_dir says and resume in their own folder, soup
checkpoints validated, the HPARAMS tab filled, `nsr inspect` / `nsr export`, one-line refusals."""
import csv
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import CONFIGS, ROOT, scalars, shrunk

import nsr as nsr_pkg
from nsr.fixpoints import CLASS_NAMES, classify

QUIET = ["--trainer.enable_progress_bar", "false"]
LIGHTNING_INFO = ("INFO:", "Seed set", "GPU available", "TPU available")


def error_lines(run) -> list[str]:
    return [ln for ln in run.err.splitlines() if ln.strip() and not ln.startswith(LIGHTNING_INFO)]


def soup_args(size=4, generations=2, *extra):
    return ["fit", "--config", "soup", "--model.init_args.size", str(size), "--trainer.max_epochs", str(generations),
            "--trainer.accelerator", "cpu", *QUIET, *extra]


def test_help_lists_every_command_and_imports_neither_torch_nor_lightning():
    code = ("import sys, nsr.cli; status = nsr.cli.main(['--help']); "
            "print('heavy:', sorted(m for m in ('torch', 'lightning') if m in sys.modules), status)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(ROOT / "src")}).stdout
    for command in ("fit", "validate", "experiment", "configs", "inspect", "export"):
        assert f"\n  {command} " in out
    assert "--model.help nsr.modules.ReplicatorModule" in out
    assert out.strip().endswith("heavy: [] 0")


def test_plain_fit_points_to_config_and_fit_help_to_the_model_options(nsr):
    run = nsr("fit")
    assert run.status == 2 and error_lines(run) == [error_lines(run)[0]] and "--config" in run.err
    run = nsr("fit", "--help")
    assert run.status == 0 and "--model.help nsr.modules.ReplicatorModule" in run.out


def test_a_bare_config_name_finds_the_shipped_config_and_nsr_configs_lists_them(nsr):
    run = nsr("configs")
    assert run.status == 0
    assert [ln.split()[0] for ln in run.out.splitlines()[: len(list(CONFIGS.glob("*.yaml")))]] == \
        sorted(p.stem for p in CONFIGS.glob("*.yaml"))
    for spelling in (["--config", "soup"], ["--config=soup.yaml"]):
        run = nsr("fit", *spelling, "--print_config")
        assert run.status == 0 and "class_path: nsr.modules.SoupModule" in run.out
    run = nsr("fit", "--config", "soupp")
    assert run.status == 2 and "soupp" in error_lines(run)[0] and "weightwise" in error_lines(run)[0]


def test_optimizers_and_schedulers_are_refused_in_one_line(nsr):
    for option in (["--optimizer", "Adam"], ["--lr_scheduler", "StepLR"]):
        run = nsr(*shrunk("weightwise", 2, 1), *option)
        lines = error_lines(run)
        assert run.status == 2 and len(lines) == 1 and option[0] in lines[0], run.err


def test_max_epochs_0_is_refused_before_any_folder_is_made(nsr, tmp_path):
    run = nsr(*shrunk("weightwise", 2, 0))
    assert run.status == 2 and "trainer.max_epochs" in error_lines(run)[0]
    assert not (tmp_path / "lightning_logs").exists()


def test_messages_name_the_full_key_and_what_is_wrong(nsr):
    cases = [(["--model.init_args.lr", "nan"], "model.init_args.lr", "finite"),
             (["--model.init_args.population", "x"], "model.init_args.population", "expected an integer"),
             (["--model.init_args.population", "-3"], "model.init_args.population", ">= 1"),
             (["--model.init_args.replicator.init_args.width", "0"], "model.init_args.replicator.init_args.width", ">= 1")]
    for option, key, says in cases:
        run = nsr(*shrunk("weightwise", 2, 1), *option)
        line = error_lines(run)[0]
        assert run.status == 2 and key in line and says in line and "Expected a int" not in line, line


def test_default_root_dir_decides_where_the_run_goes(nsr, tmp_path):
    run = nsr(*shrunk("weightwise", 2, 1), *QUIET, "--trainer.default_root_dir", "runs")
    assert run.status == 0, run.err
    assert (tmp_path / "runs" / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt").is_file()
    assert (tmp_path / "runs" / "lightning_logs" / "version_0" / "config.yaml").is_file()
    assert not (tmp_path / "lightning_logs").exists()


def test_resuming_continues_the_runs_own_folder_and_curves_unless_asked(nsr, tmp_path):
    first = nsr(*shrunk("weightwise", 3, 2), *QUIET)
    ckpt = first.last_ckpt
    run = nsr(*shrunk("weightwise", 3, 4), *QUIET, "--ckpt_path", str(ckpt))
    assert run.status == 0, run.err
    assert [p.name for p in (tmp_path / "lightning_logs").iterdir()] == ["version_0"]
    assert [step for step, _ in scalars(first.log_dir)["train/loss"]] == [1, 2, 3, 4]  # one curve
    assert sorted(p.name for p in ckpt.parent.iterdir()) == ["last.ckpt"]  # the same file, rewritten
    assert torch.load(ckpt, weights_only=True)["global_step"] == 4
    run = nsr(*shrunk("weightwise", 3, 5), *QUIET, "--ckpt_path", str(ckpt), "--new_version", "true")
    assert run.status == 0 and run.log_dir.name == "version_1"
    run = nsr(*shrunk("weightwise", 3, 5), *QUIET, "--ckpt_path", str(ckpt), "--trainer.default_root_dir", "branch")
    assert run.status == 0 and (tmp_path / "branch/lightning_logs/version_0/checkpoints/last.ckpt").is_file()
    assert torch.load(ckpt, weights_only=True)["global_step"] == 4  # a run asked for elsewhere leaves the source alone


def test_soup_run_checkpoints_once_validates_inspects_and_exports(nsr, tmp_path):
    run = nsr(*soup_args(4, 2))
    assert run.status == 0, run.err
    assert sorted(p.name for p in run.last_ckpt.parent.iterdir()) == ["last.ckpt"]  # not also epoch=N-step=M.ckpt
    config_before = (run.log_dir / "config.yaml").read_text()
    val = nsr("validate", "--config", "soup", "--model.init_args.size", "4", "--trainer.accelerator", "cpu",
              "--ckpt_path", str(run.last_ckpt))
    assert val.status == 0, val.err
    assert "val/nontrivial" in val.out
    assert val.log_dir == run.log_dir and (run.log_dir / "config.yaml").read_text() == config_before
    s = scalars(run.log_dir)
    assert [step for step, _ in s["val/nontrivial"]] == [2]  # on the run's own curves, at its generation
    rep, w = nsr_pkg.load_population(run.last_ckpt)
    classes = classify(rep, w)
    assert s["val/nontrivial"][0][1] == pytest.approx(float((classes == 2).float().mean()))

    out = nsr("inspect", str(run.last_ckpt))
    assert out.status == 0, out.err
    for text in ("Weightwise(width=2, depth=2", "generation 2", "4 particles", str(run.log_dir / "config.yaml"),
                 "distance:", *CLASS_NAMES):
        assert text in out.out, text

    ids = torch.load(run.last_ckpt, weights_only=True)["nsr"]["ids"]
    assert nsr("export", str(run.last_ckpt), "--out", "soup.npz").status == 0
    data = np.load(tmp_path / "soup.npz")
    assert np.array_equal(data["genomes"], w.numpy()) and np.array_equal(data["ids"], ids.numpy())
    assert np.array_equal(data["classes"], classes.numpy()) and list(data["class_names"]) == list(CLASS_NAMES)
    assert nsr("export", str(run.last_ckpt), "--format", "csv").status == 0
    rows = list(csv.reader(open(tmp_path / "last.csv")))
    assert rows[0] == ["id", "class"] + [f"w{i}" for i in range(rep.num_weights)] and len(rows) == 5
    assert [float(x) for x in rows[1][2:]] == w[0].tolist() and rows[1][1] == CLASS_NAMES[int(classes[0])]


def test_every_shipped_config_writes_one_checkpoint_file():
    for path in sorted(CONFIGS.glob("*.yaml")):
        callbacks = yaml.safe_load(path.read_text())["trainer"]["callbacks"]
        ckpt = [c["init_args"] for c in callbacks if c["class_path"].endswith(("ModelCheckpoint", "PeriodicCheckpoint"))]
        assert len(ckpt) == 1 and ckpt[0].get("filename") == "last" and not ckpt[0].get("save_last"), path.name


def test_hparams_tab_holds_the_hyperparameters_with_the_final_shares_and_distance(nsr):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = nsr(*shrunk("weightwise", 3, 2), *QUIET)
    s = scalars(run.log_dir)
    for c in CLASS_NAMES:
        assert s[f"final/{c}"] == [(2, s[f"fixpoint/{c}"][-1][1])]
    assert s["final/distance"] == [(2, s["fixpoint/distance"][-1][1])]
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = {}
    for path in sorted(run.log_dir.glob("events.out.tfevents.*")):  # the logger's file and nsr's scalars
        acc = EventAccumulator(str(path))
        acc.Reload()
        try:
            content = acc.PluginTagToContent("hparams")
        except KeyError:  # nsr's per-epoch scalars: no hparams there
            continue
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["population"].number_value == 3 and start.hparams["lr"].number_value == 0.01
    assert start.hparams["replicator/class_path"].string_value == "nsr.replicators.Weightwise"
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert {m.name.tag for m in experiment.metric_infos} >= {"final/nontrivial", "final/distance"}


def test_a_built_wheel_ships_the_configs_and_finds_them_installed(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        (src / name).write_bytes((ROOT / name).read_bytes())
    import shutil

    shutil.copytree(ROOT / "configs", src / "configs")
    shutil.copytree(ROOT / "src" / "nsr", src / "src" / "nsr", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(src)], check=True, capture_output=True, timeout=300)
    wheel = next((tmp_path / "dist").glob("nsr-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        shipped = {n for n in z.namelist() if n.startswith("nsr/configs/")}
        assert shipped == {f"nsr/configs/{p.name}" for p in CONFIGS.glob("*.yaml")}
        z.extractall(tmp_path / "site")  # what a non-editable install puts into site-packages
    code = ("import sys, nsr.shipped_configs as s; print(s.resolve('weightwise')); "
            "from nsr.cli import main; sys.exit(main(['configs']))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(tmp_path / "site")})
    assert out.returncode == 0, out.stderr
    first, *listing = out.stdout.splitlines()
    assert Path(first) == tmp_path / "site" / "nsr" / "configs" / "weightwise.yaml"
    assert any(line.startswith("soup_trajectories ") for line in listing)
