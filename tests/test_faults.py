"""Faults, injected for real: a truncated kernel cache entry, a compiler that fails, a disk that
fills up half-way through a checkpoint, and SIGKILL / SIGINT at a random moment of a run. Each ends
in one clear line (or a clean resume), never in a crash or a half-written file."""
import errno
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from conftest import ROOT, shrunk

import nsr as nsr_pkg
from nsr import atomic

ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
QUIET = ["--trainer.enable_progress_bar", "false"]


def python(code: str, timeout: float = 120, **env):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env={**ENV, **env})


def test_a_truncated_kernel_cache_entry_is_rebuilt_not_loaded(tmp_path):
    # in a subprocess: loading a truncated shared library can end the process with a bus error
    out = python("""
        import ctypes, os
        from nsr.kernels.build import compile_library, verified
        src = {"answer.c": "int nsr_answer(void) { return 42; }\\n"}
        path = compile_library("answer", src)
        size = os.path.getsize(path)
        with open(path, "r+b") as f:
            f.truncate(size // 2)                  # a full disk or a kill while the cache was written
        print(verified(path))
        again = compile_library("answer", src)
        print(again == path, os.path.getsize(path) == size, verified(path), ctypes.CDLL(path).nsr_answer())
    """, NSR_CACHE_DIR=str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True", "True", "True", "42"]


def test_a_failing_compiler_falls_back_to_the_eager_kernels_with_one_warning(tmp_path):
    out = python("""
        import warnings, torch
        from nsr.replicators import Weightwise, Recurrent
        from nsr.kernels import backend
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for rep in (Weightwise(), Recurrent()):
                w = rep.init(4, generator=torch.Generator().manual_seed(0))
                assert torch.isfinite(rep.apply(w, w)).all()
        print(len([c for c in caught if "native kernels unavailable" in str(c.message)]), backend(w))
    """, NSR_CACHE_DIR=str(tmp_path), CC="false")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "eager"]


class FullDisk:
    """A file that takes ``room`` bytes, then fails as a full disk does."""

    def __init__(self, f, room: int):
        self.f, self.room = f, room

    def write(self, data):
        if len(data) > self.room:
            self.f.write(bytes(data[: self.room]))
            self.room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        self.f.__enter__()
        return self

    def __exit__(self, *exc):
        return self.f.__exit__(*exc)


def test_a_full_disk_while_checkpointing_ends_in_one_line_and_keeps_the_previous_checkpoint(nsr, tmp_path, monkeypatch):
    real_fdopen, written = os.fdopen, []

    def fdopen(fd, *args, **kwargs):  # the second checkpoint runs out of space half-way
        name = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
        f = real_fdopen(fd, *args, **kwargs)
        if name.startswith(".last.ckpt.") and name.endswith(".tmp"):
            written.append(fd)
            if len(written) == 2:
                return FullDisk(f, room=2000)
        return f

    monkeypatch.setattr(atomic.os, "fdopen", fdopen)
    (tmp_path / "lean.yaml").write_text(LEAN)  # a checkpoint every epoch (the shipped configs: every 100)
    run = nsr("fit", "--config", "lean.yaml", "--trainer.max_epochs", "3")
    lines = [ln for ln in run.err.splitlines() if ln.startswith("error")]
    assert run.status == 1 and len(lines) == 1, run.err
    assert "last.ckpt" in lines[0] and "No space left on device" in lines[0]
    assert "Traceback" not in run.err + run.out
    folder = run.last_ckpt.parent
    assert sorted(p.name for p in folder.iterdir()) == ["last.ckpt"]  # no partial file left behind
    assert torch.load(run.last_ckpt, weights_only=True)["global_step"] == 1  # the previous one, intact
    rep, w = nsr_pkg.load_population(run.last_ckpt)
    assert w.shape == (3, rep.num_weights)


LEAN = """\
seed_everything: 0
model:
  class_path: nsr.modules.ReplicatorModule
  init_args: {population: 3, lr: 0.01, seed: 0}
data:
  class_path: nsr.data.SelfReplicationDataModule
trainer:
  max_epochs: 300
  accelerator: cpu
  enable_progress_bar: false
  callbacks:
    - class_path: nsr.callbacks.FixpointMonitor
    - class_path: lightning.pytorch.callbacks.ModelCheckpoint
      init_args: {filename: last, save_top_k: 1, every_n_epochs: 1, save_on_train_epoch_end: true}
"""


REFERENCE: dict = {}


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_a_run_stopped_at_a_random_moment_resumes_to_the_uninterrupted_result(nsr, tmp_path, sig):
    (tmp_path / "lean.yaml").write_text(LEAN)  # the paper's run, small, without the end-of-fit probes
    args = ["fit", "--config", "lean.yaml"]
    if "expected" not in REFERENCE:  # the uninterrupted run, once for both signals
        reference = nsr(*args, "--trainer.default_root_dir", "reference")
        assert reference.status == 0, reference.err
        REFERENCE["expected"] = nsr_pkg.load_population(tmp_path / "reference/lightning_logs/version_0/checkpoints/last.ckpt")[1]
    expected = REFERENCE["expected"]

    ckpt = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    proc = subprocess.Popen([sys.executable, "-m", "nsr.cli", *args], cwd=tmp_path, env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(random.Random(int(sig)).uniform(0.0, 0.3))  # somewhere in the run, maybe inside a checkpoint write
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    if sig == signal.SIGINT:  # stopped at the end of an epoch: the summary and how to resume
        assert proc.returncode == 130 and "Traceback" not in err, err
        assert "classes:" in out and "interrupted after" in out and "--ckpt_path " in out, out + err
        config = out.split("nsr fit --config ")[1].split()[0]
        assert os.path.isfile(tmp_path / config)
    else:
        assert proc.returncode == -signal.SIGKILL
    assert not [p for p in ckpt.parent.iterdir() if p.name != "last.ckpt" and not p.name.endswith(".tmp")]
    stopped_at = torch.load(ckpt, weights_only=True)["global_step"]  # a whole checkpoint, whatever the moment
    assert 1 <= stopped_at < 300

    resumed = nsr(*args, "--ckpt_path", str(ckpt))
    assert resumed.status == 0, resumed.err
    _, w = nsr_pkg.load_population(ckpt)
    assert torch.equal(w, expected)
