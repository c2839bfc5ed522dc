"""The paper's experiments, one command each, batched over all trials at once.

    nsr experiment --help
    nsr experiment applying --trials 50 --seed 0 --out runs/applying
    python -m nsr.experiments robustness --help

Each run writes into its own folder (``--out``, default ``lightning_logs/experiments/NAME/version_N``):
``results.csv`` (one row per setting), ``results.md`` (our table beside the published one, with the
differences explained), PNG figures and TensorBoard logs; the table is printed at the end.

From Python: ``nsr.experiments.main(["applying", "--trials", "5", "--out", "tmp/run"])``.
"""
from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time

from nsr.experiments.base import EXPERIMENTS, Report  # noqa: F401  (the registry)
from nsr.experiments import catalog  # noqa: F401,E402  (declares the experiments; torch is imported only to run one)
from nsr.experiments import combined  # noqa: E402  (nsr experiment all)
from nsr.experiments.runfolder import RunFolder, markdown_table


class ExperimentParser(argparse.ArgumentParser):
    """argparse with one-line errors (exit code 2, no usage block, no traceback)."""

    def error(self, message):
        self.exit(2, f"error: {message} ({self.prog})\n")


def build_parser() -> argparse.ArgumentParser:
    parser = ExperimentParser(
        prog="nsr experiment",
        description="Run one of the paper's experiments; print its table beside the published numbers and write "
                    "results.csv, results.md, figures (PNG) and TensorBoard logs into its run folder.",
        epilog="`nsr experiment NAME --help` lists the options of experiment NAME.")
    sub = parser.add_subparsers(dest="name", metavar="NAME", title="experiments", parser_class=ExperimentParser)
    for e in EXPERIMENTS.values():
        p = sub.add_parser(e.name, help=e.help, description=e.description)
        e.add_arguments(p)
    p = sub.add_parser("all", help="every experiment at --scale times the published trials; one combined report",
                       description=combined.__doc__)
    combined.add_arguments(p)
    return parser


def experiment_parser(name: str) -> argparse.ArgumentParser:
    """The option parser of experiment ``name`` alone."""
    e = EXPERIMENTS[name]
    p = ExperimentParser(prog=f"nsr experiment {name}", description=e.description)
    e.add_arguments(p)
    return p


def results_markdown(name: str, command: str, report: Report, seconds: float, folder: RunFolder) -> str:
    import torch

    exp = EXPERIMENTS[name]
    lines = [f"# {name}: {exp.help}", "", f"Command: `{command}`  ", f"Runtime: {seconds:.1f} s (experiment and figures) on "
             f"{torch.get_num_threads()} thread(s), torch {torch.__version__}, {platform.machine()}  ",
             f"Run folder: `{folder.path}`", ""]
    if report.settings:
        lines += ["## Settings: ours vs published", "",
                  markdown_table(["setting", "ours", "published"],
                                 [[k, str(o), str(t)] for k, (o, t) in report.settings.items()]), ""]
    lines += ["## Results beside the published numbers", "", markdown_table(report.headers, report.table), ""]
    if report.extra_md:
        lines += [report.extra_md, ""]
    if report.consistency:
        lines += ["## Is each published number consistent with ours?", "",
                  "Every share and mean in `results.csv` has its 95% interval (`NAME_ci_low`, `NAME_ci_high`: Wilson "
                  "for shares, Student t for means). Below, for each published number, how probable it is if our "
                  "measurement is the truth, given the published number of trials.", ""]
        lines += [f"- {c}" for c in report.consistency] + [""]
    if report.notes:
        lines += ["## Differences and why", ""] + [f"- {n}" for n in report.notes] + [""]
    files = ["results.csv", "results.md"] + [f"{s}.png" for s in report.figures] + ["events.out.tfevents.* (TensorBoard)"]
    lines += ["## Files", "", ", ".join(f"`{f}`" for f in files), ""]
    return "\n".join(lines)


def run(name: str, args: argparse.Namespace, command: str = "") -> tuple[Report, RunFolder]:
    """Run experiment ``name`` with parsed ``args`` and write its run folder; returns the report."""
    folder = RunFolder(name, args.out)
    t0 = time.perf_counter()
    try:
        report = EXPERIMENTS[name].run(args, folder)
        folder.write_csv(report.rows)
        for stem, fig in report.figures.items():
            folder.save_figure(stem, fig)
        seconds = time.perf_counter() - t0  # the experiment and its figures, not the imports
        folder.writer.add_text("results", results_markdown(name, command, report, seconds, folder))
        folder.write_text("results.md", results_markdown(name, command, report, seconds, folder))
    finally:
        folder.close()
    return report, folder


def main(argv: list[str] | None = None) -> int:
    """``nsr experiment NAME [options]``: returns 0; user errors exit with code 2 and a one-line message."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.name is None:
        parser.exit(2, f"error: name an experiment: {', '.join(EXPERIMENTS)} ({parser.prog})\n")
    command = "nsr experiment " + shlex.join(argv)
    if args.out is not None and os.path.exists(args.out) and not os.path.isdir(args.out):
        parser.exit(2, f"error: --out {args.out!r} is a file, not a folder ({parser.prog} {args.name})\n")
    if args.name == "all":
        try:
            root, _ = combined.run_all(args, experiment_parser)
        except ValueError as e:
            parser.exit(2, f"error: {e} ({parser.prog} all)\n")
        print(f"\nreport: {root}/report.md")
        return 0
    try:
        report, folder = run(args.name, args, command)
    except ValueError as e:  # invalid settings caught by the science layer
        parser.exit(2, f"error: {e} ({parser.prog} {args.name})\n")
    except OSError as e:
        parser.exit(2, f"error: cannot write the run folder: {e} ({parser.prog} {args.name})\n")
    print(f"\n{args.name}: ours / published\n")
    print(markdown_table(report.headers, report.table))
    print(f"\nresults: {folder.path}/results.md")
    return 0
