"""The whole paper in one command: every experiment at a multiple of the published trials, one report.

    nsr experiment all                          # the published trial counts (scale 1)
    nsr experiment all --scale 100              # 100x: 5000 networks, 10^4 clones, 1000 soups per setting
    nsr experiment all --scale 100 --docs docs/experiments.md   # and regenerate the experiments page

Each of the paper's experiments (:data:`PUBLISHED_TRIALS`) runs as ``nsr experiment NAME`` would, with
``--trials`` set from its published trials times ``--scale`` (capped where :data:`CAPS` says why), into
``OUT/NAME`` (``--only`` may also name experiments beyond the paper: they run at their default trials); ``OUT/report.md`` collects
every ``results.md`` under a summary table (trials, runtime, how many published numbers are consistent
with ours). ``soup_trajectories`` runs in both orders of a generation (sequential, the published one,
and synchronous).
"""
from __future__ import annotations

import argparse
import re
import shlex
import time
from pathlib import Path

from nsr.experiments.base import EXPERIMENTS, nonnegative_int, positive_int

# the published trial count of every experiment (its unit: networks, clones, soups)
PUBLISHED_TRIALS = {"density": 100_000, "applying": 50, "training": 50, "mixed": 20, "robustness": 100,
                    "basins": 5, "learn_from_soup": 10, "mixed_soup": 10, "soup_trajectories": 1}

# trials at most, and why: the cost grows with the trials, and these are already far beyond the published
CAPS = {"density": (1_000_000, "10^6 random networks per architecture (10x the published 10^5): at 0 fixpoints "
                               "the 95% upper bound on the density is then 4e-6")}

# runs beside the default ones: (label, experiment, extra arguments)
VARIANTS = [("soup_trajectories_synchronous", "soup_trajectories", ["--update", "synchronous"])]

# soups of 20 whose outcome is a distribution: as many soups as the sweeps have per setting
SOUP_DISTRIBUTION = 10


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scale", type=positive_int, default=1,
                   help="trials as a multiple of the published ones (default 1; 100: 5000 networks, 10^4 clones, "
                        "1000 soups per setting)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="random seed of every experiment (default 0)")
    p.add_argument("--out", default=None, help="folder of the runs and report.md (default lightning_logs/experiments/"
                                               "all/version_N)")
    p.add_argument("--only", default=None, help="comma-separated experiments to run (default: the paper's nine)")
    p.add_argument("--docs", default=None, help="also write the experiments page (docs/experiments.md) from the report")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def trials_for(name: str, scale: int) -> tuple[int, str]:
    """The ``--trials`` of experiment ``name`` at ``scale``, and why it is capped (or "")."""
    if name in PUBLISHED_TRIALS:
        base = PUBLISHED_TRIALS[name] * (SOUP_DISTRIBUTION if name == "soup_trajectories" else 1)
    else:  # an experiment beyond the paper: no published trials to scale, its default --trials
        from nsr.experiments import experiment_parser

        return experiment_parser(name).get_default("trials"), "not a published experiment: its default trials"
    n = base * scale
    cap, why = CAPS.get(name, (None, ""))
    if cap is not None and n > cap:
        return cap, why
    return n, ""


def plan(args) -> list[tuple[str, str, list[str], str]]:
    """``(label, experiment, argv, cap note)`` of every run."""
    names = list(PUBLISHED_TRIALS) if not args.only else [n.strip() for n in args.only.split(",") if n.strip()]
    bad = [n for n in names if n not in EXPERIMENTS]
    if bad:
        raise ValueError(f"only: unknown experiment {', '.join(bad)}; expected some of {', '.join(EXPERIMENTS)}")
    runs = []
    for name in names:
        n, why = trials_for(name, args.scale)
        common = ["--trials", str(n), "--seed", str(args.seed)] + (["--no-progress"] if args.no_progress else [])
        runs.append((name, name, common, why))
        for label, exp, extra in VARIANTS:
            if exp == name:
                runs.append((label, exp, common + extra, why))
    return runs


def _consistency_counts(md: str) -> tuple[int, int]:
    """(published numbers judged, of them consistent with ours) from a results.md."""
    section = md.split("## Is each published number consistent with ours?")
    if len(section) < 2:
        return 0, 0
    items = [line for line in section[1].split("\n## ")[0].splitlines() if line.startswith("- ")]
    ok = sum(1 for line in items if re.search(r"\bconsistent\b", line) and "not consistent" not in line)
    return len(items), ok


def _demote(md: str) -> str:
    """Headings one level down, so a results.md becomes a section of the report."""
    return re.sub(r"^(#+) ", lambda m: "#" + m.group(1) + " ", md, flags=re.M)


def run_all(args, parser_for) -> tuple[Path, str]:
    """Run the plan; write ``report.md`` (and ``--docs``); returns (folder, report text)."""
    import torch

    from nsr.experiments import run as run_one
    from nsr.experiments.runfolder import RunFolder, markdown_table

    runs = plan(args)
    root = RunFolder("all", args.out).path
    summary, sections, total, cpu_total = [], [], 0.0, 0.0
    for label, name, argv, why in runs:
        ns = parser_for(name).parse_args(argv + ["--out", str(root / label)])
        ns.name = name
        command = "nsr experiment " + shlex.join([name] + argv)
        t0, c0 = time.perf_counter(), time.process_time()
        report, folder = run_one(name, ns, command)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        total += seconds
        cpu_total += cpu
        md = (folder.path / "results.md").read_text(encoding="utf-8")
        judged, ok = _consistency_counts(md)
        summary.append([label, f"`{command}`", ns.trials, f"{seconds:.0f} s", f"{cpu:.0f} s",
                        f"{ok} of {judged}" if judged else "-"])
        if label != name:  # a variant: its own heading
            md = md.replace(f"# {name}:", f"# {label}:", 1)
        sections.append(_demote(md) + (f"\nTrials capped: {why}.\n" if why else ""))
        print(f"{label}: {seconds:.0f} s ({cpu:.0f} s CPU), {ok} of {judged} published numbers consistent", flush=True)
    head = [f"# The paper at {args.scale}x the published trials", "",
            f"Command: `nsr experiment all --scale {args.scale}`  ",
            f"Runtime: {total / 60:.1f} min wall clock in all ({total:.0f} s), {cpu_total / 60:.1f} min of CPU time "
            f"({cpu_total:.0f} s), {torch.get_num_threads()} thread(s), torch {torch.__version__}; the wall clock "
            "includes waiting for the CPU when the machine is shared  ",
            f"Runs: `{root}`", "",
            markdown_table(["experiment", "command", "trials", "wall clock", "CPU time",
                            "published numbers consistent with ours"],
                           summary), ""]
    text = "\n".join(head) + "\n" + "\n".join(sections)
    (root / "report.md").write_text(text, encoding="utf-8")
    if args.docs:
        from nsr.experiments.docs_page import experiments_page

        Path(args.docs).write_text(experiments_page(text, args.scale, total, cpu_total), encoding="utf-8")
    return root, text




__all__ = ["PUBLISHED_TRIALS", "CAPS", "trials_for", "plan", "run_all"]
