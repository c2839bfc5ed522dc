"""``last.ckpt`` every N epochs (``nsr.callbacks.PeriodicCheckpoint``): the checkpoint at the end of
a fit is always written, whatever max_epochs, and a run killed between two checkpoints resumes
from the older one to the bits of the uninterrupted run (randomness keyed by (seed, epoch,
particle)). Also the fused pieces of the per-epoch fixpoint scalars equal their definitions."""
import math
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import ROOT, scalars
from test_faults import ENV

import nsr as nsr_pkg
from nsr.callbacks import PeriodicCheckpoint
from nsr.fixpoints import classify, classify_and_distance, distance
from nsr.replicators import Aggregating, Recurrent, Weightwise

LEAN = """\
seed_everything: 0
model:
  class_path: nsr.modules.ReplicatorModule
  init_args: {{population: 3, lr: 0.01, seed: 0}}
data:
  class_path: nsr.data.SelfReplicationDataModule
trainer:
  max_epochs: {epochs}
  accelerator: cpu
  enable_progress_bar: false
  reload_dataloaders_every_n_epochs: 0
  callbacks:
    - class_path: nsr.callbacks.FixpointMonitor
    - class_path: nsr.callbacks.PeriodicCheckpoint
      init_args: {{filename: last, save_top_k: 1, every_n_epochs: {every}, save_on_train_epoch_end: true}}
"""


def lean(tmp_path, epochs: int, every: int) -> str:
    path = tmp_path / f"lean_{epochs}_{every}.yaml"
    path.write_text(LEAN.format(epochs=epochs, every=every))
    return str(path)


def saved_epochs(ckpt) -> int:
    return torch.load(ckpt, weights_only=True)["global_step"]  # one optimizer step per epoch


def test_the_checkpoint_at_the_end_of_a_fit_is_written_when_max_epochs_is_not_a_multiple_of_n(nsr, tmp_path):
    run = nsr("fit", "--config", lean(tmp_path, 7, 3))
    assert run.status == 0, run.err
    assert saved_epochs(run.last_ckpt) == 7  # lightning's ModelCheckpoint(every_n_epochs=3) stops at 6
    assert [s for s, _ in scalars(run.log_dir)["train/loss"]] == list(range(1, 8))  # one scalar per epoch


def test_a_run_resumed_from_an_older_checkpoint_ends_with_the_bits_of_the_uninterrupted_run(nsr, tmp_path):
    whole = nsr("fit", "--config", lean(tmp_path, 9, 4), "--trainer.default_root_dir", "whole")
    older = nsr("fit", "--config", lean(tmp_path, 4, 4), "--trainer.default_root_dir", "older")  # the save at epoch 4
    assert whole.status == 0 and older.status == 0, whole.err + older.err
    ckpt = tmp_path / "older/lightning_logs/version_0/checkpoints/last.ckpt"
    assert saved_epochs(ckpt) == 4
    resumed = nsr("fit", "--config", lean(tmp_path, 9, 4), "--ckpt_path", str(ckpt))
    assert resumed.status == 0, resumed.err
    assert saved_epochs(ckpt) == 9
    expected = nsr_pkg.load_population(tmp_path / "whole/lightning_logs/version_0/checkpoints/last.ckpt")[1]
    assert torch.equal(nsr_pkg.load_population(ckpt)[1], expected)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_a_run_stopped_between_periodic_checkpoints_resumes_to_the_uninterrupted_result(nsr, tmp_path, sig):
    config = lean(tmp_path, 400, 7)
    reference = nsr("fit", "--config", config, "--trainer.default_root_dir", "reference")
    assert reference.status == 0, reference.err
    expected = nsr_pkg.load_population(tmp_path / "reference/lightning_logs/version_0/checkpoints/last.ckpt")[1]
    ckpt = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    proc = subprocess.Popen([sys.executable, "-m", "nsr.cli", "fit", "--config", config], cwd=tmp_path, env=ENV,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    time.sleep(0.05)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    stopped_at = saved_epochs(ckpt)
    if sig == signal.SIGINT:  # the epoch in progress ends, and its checkpoint is written, multiple of 7 or not
        assert proc.returncode == 130 and "Traceback" not in err, err
        assert f"interrupted after {stopped_at} epochs" in out, out
    else:  # the last periodic checkpoint: the epochs since are recomputed
        assert proc.returncode == -signal.SIGKILL and stopped_at % 7 == 0
    assert 1 <= stopped_at < 400
    resumed = nsr("fit", "--config", config, "--ckpt_path", str(ckpt))
    assert resumed.status == 0, resumed.err
    assert saved_epochs(ckpt) == 400
    assert torch.equal(nsr_pkg.load_population(ckpt)[1], expected)


def test_periodic_checkpoint_takes_model_checkpoints_arguments():
    cb = PeriodicCheckpoint(filename="last", every_n_epochs=100, save_on_train_epoch_end=True)
    assert cb._every_n_epochs == 100 and cb.filename == "last"


@pytest.mark.parametrize("rep", [Weightwise(), Aggregating(), Recurrent()], ids=lambda r: type(r).__name__)
@pytest.mark.parametrize("second_order", ["orbit", "same_network"])
def test_classify_and_distance_in_one_pass_equal_classify_and_distance(rep, second_order):
    g = torch.Generator().manual_seed(1)
    w = rep.init(200, generator=g) * torch.logspace(-6, 2, 200)[:, None]  # from near zero to diverging
    w[0] = math.nan
    w[1, 3] = math.inf
    w[2] = 0.0
    if hasattr(rep, "identity_genome"):
        w[3] = rep.identity_genome()[0]
    classes, d = classify_and_distance(rep, w, 1e-4, second_order=second_order)
    assert torch.equal(classes, classify(rep, w, 1e-4, second_order=second_order))
    assert torch.equal(d, distance(rep, w))
    assert int(classes[0]) == int(classes[1]) == 0 and math.isinf(float(d[0]))  # divergent
