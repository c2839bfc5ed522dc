"""configs/soup_analytics.yaml through the real ``nsr fit``, shrunk, on one process and sharded over two
gloo processes: the same phylogeny, lineage and species files, and the TensorBoard scalars and Muller
plot. Every run is a subprocess with a timeout (its process group is killed if it hangs)."""
from __future__ import annotations


import pytest
from launch import launch_nsr

from conftest import config

pytestmark = pytest.mark.slow

# 21 particles (10 + 11 on two ranks); a learning rate high enough that some particles diverge and are respawned
SOUP = ["--model.init_args.size", "21", "--model.init_args.attacking_rate", "0.3", "--model.init_args.learn_from_rate",
        "0.2", "--model.init_args.learn_from_severity", "2", "--model.init_args.train", "2", "--model.init_args.lr", "0.3",
        "--trainer.max_epochs", "6", "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false"]
FILES = ("phylogeny.csv", "lineage.csv", "species.csv")


def nsr_fit(cwd, devices, timeout=240):
    status, _, err = launch_nsr(cwd, ["fit", "--config", config("soup_analytics"), *SOUP], devices, timeout)
    assert status == 0, err[-3000:]
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
