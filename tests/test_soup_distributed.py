"""A soup sharded over two gloo processes, through the real ``nsr fit`` on configs/soup.yaml, shrunk:
the same population as one process, exact resume after SIGKILL on another device count. Every run is a subprocess with a timeout (its process group is killed if it hangs), so no
orphaned rank outlives a failing test."""
from __future__ import annotations

import os
import signal
import textwrap

import pytest
from launch import launch_nsr
import torch

from conftest import config

pytestmark = pytest.mark.slow

# 21 particles (10 + 11 on two ranks), attacks, learn_from, and a learning rate high enough that
# some particles diverge and are respawned with new ids
SOUP = ["--model.init_args.size", "21", "--model.init_args.attacking_rate", "0.2", "--model.init_args.learn_from_rate",
        "0.2", "--model.init_args.learn_from_severity", "2", "--model.init_args.train", "3", "--model.init_args.lr", "0.3",
        "--trainer.max_epochs", "6", "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false"]

# set by Lightning's launcher in the process that launched ranks; a child that sees LOCAL_RANK believes
# it is one of the ranks and waits for the others

KILLER = textwrap.dedent('''
    import os, signal
    from lightning.pytorch.callbacks import Callback

    class KillAt(Callback):
        """SIGKILL this process in the middle of generation ``epoch`` (after last.ckpt of the one before)."""
        def __init__(self, epoch: int = 3):
            self.epoch = epoch
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.current_epoch == self.epoch:
                os.kill(os.getpid(), signal.SIGKILL)
''')


def nsr_fit(cwd, *args, devices=1, timeout=300):
    """``nsr fit --config configs/soup.yaml`` shrunk, in ``cwd``, as a subprocess; returns (status, stderr)."""
    status, _, err = launch_nsr(cwd, ["fit", "--config", config("soup"), *SOUP, *args], devices, timeout, pythonpath=cwd)
    return status, err


def last_ckpt(cwd):
    runs = sorted((cwd / "lightning_logs").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    return runs[-1] / "checkpoints" / "last.ckpt"


def soup_state(path):
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    traj = next(v for k, v in ckpt["callbacks"].items() if "TrajectoryRecorder" in k)
    return ckpt["nsr"], traj


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two processes, uninterrupted; and one process SIGKILLed in generation 4, then resumed from
    its last.ckpt on two processes. Equal end states mean: 1 and 2 processes make the same soup
    (generations 0-3 ran on one, 4-6 on two), resume is exact, and checkpoints change device count."""
    root = tmp_path_factory.mktemp("soup_ddp")
    out = {}
    status, err = nsr_fit(root / "two", devices=2)
    assert status == 0, err[-3000:]
    out["two"] = last_ckpt(root / "two")
    killed = root / "killed"
    os.makedirs(killed)
    (killed / "soupkill.py").write_text(KILLER)
    status, _ = nsr_fit(killed, "--trainer.callbacks+=soupkill.KillAt", devices=1)
    out["killed_status"] = status
    out["killed_state"] = soup_state(last_ckpt(killed))[0]
    status, err = nsr_fit(killed, "--ckpt_path", str(last_ckpt(killed)), devices=2)
    assert status == 0, err[-3000:]
    out["resumed"] = last_ckpt(killed)
    return out


def test_sigkill_during_a_generation_leaves_the_last_ckpt_of_the_one_before(runs):
    assert runs["killed_status"] == -signal.SIGKILL
    state = runs["killed_state"]
    assert state["generation"] == 3 and state["weights"].shape == (21, 14)


def test_one_process_then_two_after_sigkill_give_the_soup_of_two_processes_throughout(runs):
    resumed, _ = soup_state(runs["resumed"])
    two, _ = soup_state(runs["two"])
    assert resumed["generation"] == two["generation"] == 6
    assert torch.allclose(resumed["weights"], two["weights"], atol=1e-6, equal_nan=True)
    assert torch.equal(resumed["ids"], two["ids"]) and resumed["next_id"] == two["next_id"] > 21  # respawns happened


def test_trajectories_survive_the_kill_and_the_change_of_device_count(runs):
    _, a = soup_state(runs["resumed"])
    _, b = soup_state(runs["two"])
    assert a.keys() == b.keys()
    for key in b:
        x, y = a[key], b[key]
        assert (torch.allclose(x, y, atol=1e-6, equal_nan=True) if isinstance(x, torch.Tensor) else x == y), key


def test_checkpoint_holds_the_whole_population_and_loads_with_load_population(runs):
    import nsr

    rep, w = nsr.load_population(runs["two"])
    state, _ = soup_state(runs["two"])
    assert w.shape == (21, rep.num_weights) and state["kind"] == "soup" and state["ids"].shape == (21,)
    assert len(set(state["ids"].tolist())) == 21  # ids stay unique across ranks
