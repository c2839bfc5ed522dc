"""`nsr experiment NAME`: every experiment runs with tiny settings through main(), writes its run folder,
and shows the published trends where they are cheap to see."""
import csv
import math

import pytest
import torch

from nsr.experiments import EXPERIMENTS, main
from nsr.experiments.basins import basin_classes, sorted_manhattan
from nsr.experiments.fixpoint_classes import mixed
from nsr.experiments.robustness import time_clones
from nsr.fixpoints import CLASS_NAMES
from nsr.random import KeyedStream
from nsr.replicators import Weightwise

ALL = ["density", "applying", "training", "mixed", "robustness", "learn_from_soup", "mixed_soup",
       "soup_trajectories", "basins", "soup_phases", "emergence", "stability", "organism", "task_tradeoff", "task_soup"]


def run(tmp_path, *argv):
    out = tmp_path / argv[0]
    assert main([*argv, "--out", str(out), "--no-progress"]) == 0
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    return out, rows


def check_folder(out, rows, first_column, figures):
    files = {p.name for p in out.iterdir()}
    assert {"results.csv", "results.md"} <= files
    assert any(f.startswith("events.out.tfevents") for f in files)
    assert {f"{fig}.png" for fig in figures} <= files
    assert not [f for f in files if f.startswith(".")]  # no temporary files left behind
    assert list(rows[0])[0] == first_column
    md = (out / "results.md").read_text()
    assert "published" in md and "## Differences and why" in md


def check_shares(rows):
    for r in rows:
        total = sum(float(r[c]) for c in CLASS_NAMES)
        assert total == pytest.approx(1.0)
        assert all(0.0 <= float(r[c]) <= 1.0 for c in CLASS_NAMES)
        if r.get(f"{CLASS_NAMES[0]}_ci_low", "") != "":  # every share has its 95% interval around it
            for c in CLASS_NAMES:
                assert 0.0 <= float(r[f"{c}_ci_low"]) <= float(r[c]) <= float(r[f"{c}_ci_high"]) <= 1.0


# ---- the command line --------------------------------------------------------------------------------
def test_help_lists_every_experiment(capsys):
    assert sorted(EXPERIMENTS) == sorted(ALL)
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert all(name in text for name in ALL)


@pytest.mark.parametrize("name", ALL)
def test_each_experiment_help_lists_its_options(name, capsys):
    with pytest.raises(SystemExit) as e:
        main([name, "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert all(opt in text for opt in ("--trials", "--seed", "--out", "--epsilon", "--second-order"))


@pytest.mark.parametrize("argv, named", [
    (["nonsense"], "nonsense"),
    (["applying", "--trials", "0"], "--trials"),
    (["applying", "--architectures", "weightwise,foo"], "foo"),
    (["robustness", "--noise", "9..1"], "--noise"),
    (["mixed", "--trains", "10,x"], "--trains"),
    (["basins", "--batch-size", "0"], "--batch-size"),
    (["learn_from_soup", "--learn-from-rate", "1.5"], "--learn-from-rate"),
    (["training", "--no-such-option"], "--no-such-option"),
    (["robustness", "--activation", "tanh", "--trials", "1"], "activation"),  # caught by the experiment itself
])
def test_user_errors_are_one_line_naming_the_value_with_exit_code_2(argv, named, capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        main(argv + ["--out", str(tmp_path / "x"), "--no-progress"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error" in err and named in err and "Traceback" not in err


def test_no_experiment_named_exits_2(capsys):
    with pytest.raises(SystemExit) as e:
        main([])
    assert e.value.code == 2


# ---- the experiments, tiny ---------------------------------------------------------------------------
def test_density_random_networks_are_practically_never_fixpoints(tmp_path):
    out, rows = run(tmp_path, "density", "--trials", "1000", "--chunk", "400")
    check_folder(out, rows, "architecture", ["classes", "distance"])
    check_shares(rows)
    assert [r["architecture"] for r in rows] == ["weightwise", "aggregating", "recurrent"]
    assert all(float(r["fixpoint_density"]) == 0.0 and int(r["networks"]) == 1000 for r in rows)


def test_applying_weightwise_self_application_gives_no_nontrivial_fixpoint(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, rows = run(tmp_path, "applying", "--trials", "40", "--applications", "40")
    check_folder(out, rows, "architecture", ["classes"])
    acc = EventAccumulator(str(out))
    acc.Reload()
    assert "applying/weightwise/divergent" in acc.Tags()["scalars"]  # scalars per setting
    assert "figures/classes" in acc.Tags()["images"]
    check_shares(rows)
    ww = next(r for r in rows if r["architecture"] == "weightwise")
    assert float(ww["nontrivial"]) == 0.0
    assert 0.2 < float(ww["divergent"]) < 0.7  # published 0.46
    assert float(ww["divergent"]) + float(ww["zero"]) == pytest.approx(1.0)  # everything has settled


def test_training_weightwise_self_training_finds_nontrivial_fixpoints(tmp_path):
    out, rows = run(tmp_path, "training", "--architectures", "weightwise,aggregating", "--trials", "4",
                    "--epochs", "400", "--log-every", "200")
    check_folder(out, rows, "architecture", ["classes", "nontrivial_over_epochs"])
    check_shares(rows)
    ww, agg = rows
    assert float(ww["nontrivial"]) >= 3 / 4
    assert float(agg["nontrivial"]) == 0.0 and "aggregate_fixpoint" in agg


def test_mixed_sweeps_k_in_one_population(tmp_path):
    out, rows = run(tmp_path, "mixed", "--architectures", "weightwise", "--trials", "4", "--trains", "0,40",
                    "--rounds", "2")
    check_folder(out, rows, "architecture", ["fixpoint_share"])
    check_shares(rows)
    assert [int(r["k"]) for r in rows] == [0, 40]
    for r in rows:
        assert float(r["fixpoint"]) == pytest.approx(float(r["zero"]) + float(r["nontrivial"]))
        assert 1 <= float(r["rounds_mean"]) <= 2
    assert float(rows[0]["nontrivial"]) == 0.0  # self-application alone never makes a non-trivial fixpoint


def test_robustness_both_times_grow_as_the_noise_shrinks(tmp_path):
    out, rows = run(tmp_path, "robustness", "--trials", "25", "--noise", "1e-1,1e-4,1e-7,1e-9", "--trained", "0")
    check_folder(out, rows, "source", ["time_to_vergence_hand_built", "time_as_fixpoint_hand_built"])
    ttv = [float(r["time_to_vergence"]) for r in rows]
    taf = [float(r["time_as_fixpoint"]) for r in rows]
    assert ttv == sorted(ttv) and ttv[-1] > ttv[0] + 10
    assert taf == sorted(taf) and taf[0] == 0.0 and taf[-1] > 10
    for r in rows:  # the published count: one self-application fewer
        assert float(r["time_to_vergence_paper"]) == pytest.approx(float(r["time_to_vergence"]) - 1)
        assert float(r["time_to_vergence_median"]) <= float(r["time_to_vergence_max"])


def test_basins_clones_are_classified_and_distances_measured(tmp_path):
    out, rows = run(tmp_path, "basins", "--parents", "3", "--trials", "3", "--epochs", "300", "--lr", "0.01",
                    "--batch-size", "1", "--clone-epochs", "30", "--noise", "1e-2,1e-8")
    check_folder(out, rows, "noise", ["distance_before", "distance_after", "basin_classes"])
    for r in rows:
        assert sum(float(r[c]) for c in ("approaching", "distancing", "stationary")) == pytest.approx(1.0)
        assert {"mae_before", "mse_after", "mim_before", "mim_after"} <= set(r)
    assert float(rows[0]["mae_before"]) > float(rows[1]["mae_before"])


def test_learn_from_soup_counts_fixpoints_per_soup(tmp_path):
    out, rows = run(tmp_path, "learn_from_soup", "--trials", "2", "--particles", "4", "--generations", "3",
                    "--severities", "0,2", "--learn-from-rate", "0.5")
    check_folder(out, rows, "architecture", ["nontrivial_per_soup"])
    check_shares(rows)
    assert [int(r["severity"]) for r in rows] == [0, 2]
    for r in rows:
        assert float(r["nontrivial_per_soup"]) == pytest.approx(4 * float(r["nontrivial"]))
    assert float(rows[0]["events_learn_from"]) > 0


def test_mixed_soup_sweeps_training_per_generation(tmp_path):
    out, rows = run(tmp_path, "mixed_soup", "--trials", "2", "--particles", "4", "--generations", "2",
                    "--trains", "0,2", "--architectures", "weightwise")
    check_folder(out, rows, "architecture", ["nontrivial_per_soup"])
    check_shares(rows)
    assert [int(r["trains"]) for r in rows] == [0, 2]


def test_soup_trajectories_draws_pca_figures(tmp_path):
    out, rows = run(tmp_path, "soup_trajectories", "--particles", "5", "--generations", "4", "--train", "2")
    check_folder(out, rows, "soup", ["trajectories_pca", "trajectories_pca_3d", "classes_over_generations"])
    check_shares(rows)


@pytest.mark.parametrize("update", ["sequential", "synchronous"])
def test_soup_trajectories_reports_the_final_nontrivial_distribution_and_the_published_percentile(tmp_path, update):
    out, rows = run(tmp_path, "soup_trajectories", "--trials", "6", "--particles", "5", "--generations", "3",
                    "--train", "2", "--update", update)
    check_folder(out, rows, "soup", ["nontrivial_per_soup"])
    check_shares(rows)
    per_soup = [r for r in rows if r["soup"] != "all"]
    summary = next(r for r in rows if r["soup"] == "all")
    counts = [round(float(r["nontrivial"]) * 5) for r in per_soup]
    assert len(per_soup) == 6 and all(r["update"] == update for r in rows)
    assert float(summary["nontrivial_at_most_published"]) == pytest.approx(sum(c <= 13 for c in counts) / 6)
    assert float(summary["published_percentile"]) == pytest.approx(100.0)  # 13 is above every count of 5 particles
    low, mean, high = (float(summary[k]) for k in ("nontrivial_per_soup_ci_low", "nontrivial_per_soup",
                                                   "nontrivial_per_soup_ci_high"))
    assert mean == pytest.approx(sum(counts) / 6) and (low <= mean <= high or math.isnan(low))
    md = (out / "results.md").read_text()
    assert "The final non-trivial count per soup" in md and "percentile" in md
    assert "Is each published number consistent with ours?" in md


# ---- intervals and the whole paper in one command ----------------------------------------------------
def test_wilson_interval_contains_the_share_and_mirrors_and_the_binomial_test_is_exact():
    from nsr.experiments.intervals import binomial_p_value, mean_interval, t_quantile, wilson

    for k, n in ((0, 50), (38, 50), (3875, 5000), (50, 50)):
        lo, hi = wilson(k, n)
        assert 0 <= lo <= k / n <= hi <= 1
        mlo, mhi = wilson(n - k, n)
        assert (lo, hi) == pytest.approx((1 - mhi, 1 - mlo))
    assert wilson(38, 50)[1] - wilson(38, 50)[0] > 10 * (wilson(3800, 5000)[1] - wilson(3800, 5000)[0]) / 11
    # n = 10, p = 1/2, k = 2: P(X <= 2) + P(X >= 8) = 2 * (1 + 10 + 45) / 1024
    assert binomial_p_value(2, 10, 0.5) == pytest.approx(112 / 1024)
    assert binomial_p_value(5, 10, 0.5) == pytest.approx(1.0)
    assert t_quantile(10) == pytest.approx(2.2281, abs=2e-3) and t_quantile(1000) == pytest.approx(1.9623, abs=1e-3)
    m, lo, hi, sd = mean_interval([1.0, 2.0, 3.0])
    assert (m, sd) == (2.0, 1.0) and hi - m == pytest.approx(4.302653 / math.sqrt(3))


def test_a_published_count_far_from_ours_is_reported_not_consistent_and_a_close_one_consistent():
    from nsr.experiments.intervals import share_verdict

    assert share_verdict("x", 0.49, 5000, 38, 50).endswith("not consistent with ours (a real difference).")
    assert share_verdict("x", 0.775, 5000, 38, 50).endswith(": consistent with ours.")
    assert "consistent with ours" in share_verdict("x", 0.0, 5000, 0, 50)


def test_all_at_scale_100_runs_every_experiment_at_100x_the_published_trials():
    import argparse

    from nsr.experiments.combined import CAPS, plan

    runs = {label: (name, argv, why) for label, name, argv, why in
            plan(argparse.Namespace(scale=100, seed=0, only=None, no_progress=True))}
    trials = {label: int(argv[argv.index("--trials") + 1]) for label, (_, argv, _) in runs.items()}
    assert trials["applying"] == trials["training"] == 5000 and trials["mixed"] == 2000
    assert trials["robustness"] == 10_000 and trials["learn_from_soup"] == trials["mixed_soup"] == 1000
    assert trials["soup_trajectories"] == trials["soup_trajectories_synchronous"] == 1000
    assert "--update" in runs["soup_trajectories_synchronous"][1]
    assert trials["density"] == CAPS["density"][0] and runs["density"][2]  # capped, and says why
    from nsr.experiments.combined import PUBLISHED_TRIALS

    assert set(PUBLISHED_TRIALS) <= set(runs) <= set(EXPERIMENTS) | {"soup_trajectories_synchronous"}


def test_all_writes_one_report_and_the_experiments_page(tmp_path):
    out, docs = tmp_path / "all", tmp_path / "experiments.md"
    assert main(["all", "--only", "applying", "--out", str(out), "--docs", str(docs), "--no-progress"]) == 0
    report = (out / "report.md").read_text()
    assert "| applying |" in report and "published numbers consistent with ours" in report
    assert "### Is each published number consistent with ours?" in report
    assert (out / "applying" / "results.csv").exists()
    page = docs.read_text()
    assert page.startswith("# The paper's experiments") and "## Where we differ, and why" in page
    assert "| applying |" in page


# ---- the batched computations --------------------------------------------------------------------------
def test_mixed_particles_with_different_k_run_as_if_alone():
    rep = Weightwise()
    ks = torch.tensor([0, 3, 7])
    ids = torch.arange(3)
    w0 = rep.init(3, generator=KeyedStream(0, 0, ids, "init"))
    make = lambda g, idx: KeyedStream(0, g, ids[idx], "train")  # noqa: E731
    together, used = mixed(rep, w0.clone(), ks, 3, 0.01, 1, 0.0, 1e-4, make)
    for i in range(3):
        alone, used_i = mixed(rep, w0[i:i + 1].clone(), ks[i:i + 1], 3, 0.01, 1, 0.0, 1e-4,
                              lambda g, idx, i=i: KeyedStream(0, g, ids[i:i + 1][idx], "train"))
        assert torch.allclose(together[i:i + 1], alone, atol=1e-6, equal_nan=True)
        assert used[i] == used_i[0]
    # k = 0 is pure self-application
    x = w0[:1]
    for _ in range(int(used[0])):
        x = rep.apply(x, x)
    assert torch.equal(together[:1], x)


def test_robustness_published_count_is_one_less_and_excludes_the_clone_itself():
    rep = Weightwise()
    res = time_clones(rep, rep.identity_genome(), [1e-1, 1e-8], 10, 100, 1e-4, torch.Generator().manual_seed(0))
    big, small = res[1e-1], res[1e-8]
    assert torch.equal(big["time_to_vergence_paper"], big["time_to_vergence"] - 1)
    assert torch.equal(small["time_as_fixpoint_paper"], small["time_as_fixpoint"] - 1)  # tiny noise: still a fixpoint


def test_sorted_manhattan_is_permutation_invariant_and_basin_classes_follow_distances():
    a = torch.tensor([[1.0, 2.0, 3.0]])
    assert sorted_manhattan(a, a[:, [2, 0, 1]]).item() == 0.0
    assert sorted_manhattan(a, a + 1).item() == pytest.approx(1.0)
    before = torch.tensor([1.0, 1.0, 1.0, 1.0])
    after = torch.tensor([0.5, 1.5, 1.01, math.nan])
    assert basin_classes(before, after, rtol=0.05, atol=0.0).tolist() == [0, 1, 2, 1]


def test_the_robustness_experiment_times_the_same_clones_as_nsr_fixpoints_robustness():
    from nsr.fixpoints import robustness

    rep = Weightwise()
    w = torch.cat([rep.identity_genome(), rep.identity_genome() * 1.0001])
    ours = time_clones(rep, w, [1e-1, 1e-4], 5, 100, 1e-4, torch.Generator().manual_seed(0))
    ref = robustness(rep, w, [1e-1, 1e-4], trials=5, generator=torch.Generator().manual_seed(0))
    for s, (ttv, taf) in ref.items():
        assert torch.equal(ours[s]["time_to_vergence"], ttv) and torch.equal(ours[s]["time_as_fixpoint"], taf)


def test_run_folder_files_are_replaced_whole_with_the_usual_permissions(tmp_path):
    import os

    from nsr.experiments.runfolder import RunFolder

    folder = RunFolder("x", tmp_path / "run")
    folder.write_text("results.md", "old\n")
    p = folder.write_text("results.md", "noise 1e\u22121\n")
    umask = os.umask(0)
    os.umask(umask)
    assert p.read_text(encoding="utf-8") == "noise 1e\u22121\n" and (p.stat().st_mode & 0o777) == 0o666 & ~umask
    assert os.listdir(tmp_path / "run") == ["results.md"]  # no temporary file left behind


def test_soup_phases_heatmaps_every_cell_of_the_grid(tmp_path):
    out, rows = run(tmp_path, "soup_phases", "--trials", "3", "--particles", "4", "--generations", "3",
                    "--rates", "0,0.5", "--trains", "0,20")
    check_folder(out, rows, "attacking_rate", ["phases"])
    assert [(float(r["attacking_rate"]), int(r["train"])) for r in rows] == [(0, 0), (0.5, 0), (0, 20), (0.5, 20)]
    for r in rows:
        assert 0 <= float(r["nontrivial_share"]) <= 1 and 1 <= float(r["species_per_soup"]) <= 4
        assert sum(float(r[f"final_{c}"]) for c in CLASS_NAMES) == pytest.approx(1.0)
    assert float(rows[0]["never_nontrivial"]) == 1.0  # no training, no attacks: random networks stay random


def test_emergence_times_each_soup_until_half_of_it_is_nontrivial(tmp_path):
    out, rows = run(tmp_path, "emergence", "--trials", "6", "--particles", "4", "--generations", "4", "--train", "40")
    check_folder(out, rows, "soup", ["emergence"])
    assert len(rows) == 6
    for r in rows:
        taken = r["takeover_generation"]
        assert taken == "" or 0 <= int(taken) <= 4
        assert taken != "" or float(r["final_nontrivial_share"]) < 0.5  # never taken over: below half at the end
