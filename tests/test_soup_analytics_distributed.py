"""configs/soup_analytics.yaml through the real ``nsr fit``, shrunk, on one process and sharded over two
gloo processes: the same phylogeny, lineage and species files, and the TensorBoard scalars and Muller
plot. Every run is a subprocess with a timeout (its process group is killed if it hangs)."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

import pytest

from conftest import config

pytestmark = pytest.mark.slow

# 21 particles (10 + 11 on two ranks); a learning rate high enough that some particles diverge and are respawned
SOUP = ["--model.init_args.size", "21", "--model.init_args.attacking_rate", "0.3", "--model.init_args.learn_from_rate",
        "0.2", "--model.init_args.learn_from_severity", "2", "--model.init_args.train", "2", "--model.init_args.lr", "0.3",
        "--trainer.max_epochs", "6", "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false"]
DDP_VARIABLES = ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "GLOBAL_RANK", "RANK", "MASTER_ADDR", "MASTER_PORT")
FILES = ("phylogeny.csv", "lineage.csv", "species.csv")


def nsr_fit(cwd, devices, timeout=240):
    script = os.path.join(os.path.dirname(sys.executable), "nsr")
    cmd = [script if os.path.exists(script) else shutil.which("nsr"), "fit", "--config", config("soup_analytics"),
           *SOUP, "--trainer.devices", str(devices)]
    env = {k: v for k, v in os.environ.items() if k not in DDP_VARIABLES}
    env["OMP_NUM_THREADS"] = "1"
    os.makedirs(cwd, exist_ok=True)
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        pytest.fail(f"nsr fit on {devices} devices did not finish in {timeout} s:\n{err[-2000:]}")
    assert proc.returncode == 0, err[-3000:]
    return cwd / "lightning_logs" / "version_0"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("analytics_ddp")
    return nsr_fit(root / "one", 1), nsr_fit(root / "two", 2)


def test_two_processes_record_the_phylogeny_and_metrics_of_one_process(runs):
    one, two = runs
    for name in FILES:
        assert (one / name).read_text() == (two / name).read_text(), name
    lines = (one / "phylogeny.csv").read_text().splitlines()
    assert len(lines) > 22 and any(",attack," in l for l in lines) and any(",respawn," in l for l in lines)


def test_tensorboard_holds_the_soup_scalars_and_the_muller_plot(runs):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(runs[0]))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for tag in ("soup/species", "soup/shannon", "soup/simpson", "soup/largest_share", "soup/pairwise_distance",
                "soup/higher_order_entropy", "soup/survival", "soup/parent_distance", "lineage/mrca_depth",
                "lineage/phylogenetic_richness", "lineage/length"):
        assert tag in tags, tag
    assert [e.step for e in acc.Scalars("soup/species")] == list(range(7))  # generation 0 .. 6
    assert "soup/muller" in acc.Tags()["images"] and (runs[0] / "muller.png").stat().st_size > 1000
