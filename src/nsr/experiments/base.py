"""The experiment registry, the options and helpers every experiment shares.

An experiment is declared in :mod:`nsr.experiments.catalog` with :func:`declare` (a name, a one-line
help, a function that adds its options to an ``argparse`` parser, the module of its run function),
and its module marks ``run(args, folder) -> Report`` with ``@experiment(name)``. This module and the
catalog import no torch, so that the command line answers ``--help`` and option errors at once.
"""
from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import math
from dataclasses import dataclass, field
from typing import Callable, Optional

# the choices of the shared options, as nsr.fixpoints and nsr.replicators define them (tested to
# agree): written out here so that the options are read without importing torch
SECOND_ORDER_TESTS = ("orbit", "same_network")
ACTIVATIONS = ("linear", "tanh", "sigmoid", "relu")
ARCHITECTURE_NAMES = ("weightwise", "aggregating", "recurrent")
ORTHOGONAL = ("keras2", "uniform")


@dataclass
class Report:
    """What an experiment hands back for writing: ``rows`` for results.csv (one dict per setting),
    the comparison table with the published numbers (markdown ``headers`` and ``table`` rows),
    ``notes`` (differences and why), ``figures`` ``{file stem: matplotlib figure}``, and
    ``settings`` ``{name: (ours, theirs)}`` for the trials-and-settings table."""

    rows: list[dict]
    headers: list[str]
    table: list[list]
    notes: list[str] = field(default_factory=list)
    figures: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    extra_md: str = ""  # further markdown sections (e.g. a second table)
    consistency: list[str] = field(default_factory=list)  # per published number: consistent with ours? (intervals.py)


@dataclass
class Experiment:
    """One experiment of the registry: its name, one-line help, the function adding its options to
    an ``argparse`` parser (all torch-free: :mod:`nsr.experiments.catalog`), and the module whose
    ``@experiment(name)`` function runs it, imported only to run it."""
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    module: str
    text: str = ""

    @property
    def description(self) -> str:
        """The run function's docstring, read from its module's source without importing it."""
        return self.text or run_docstring(self.module, self.name) or self.help

    def run(self, args: argparse.Namespace, folder) -> Report:
        """Run the experiment with parsed ``args`` into ``folder``."""
        importlib.import_module(self.module)  # registers its run function
        return RUNS[self.name](args, folder)


EXPERIMENTS: dict[str, Experiment] = {}
RUNS: dict[str, Callable[[argparse.Namespace, object], Report]] = {}


def declare(name: str, help: str, add_arguments: Callable, module: str, description: str = "") -> None:
    """Register experiment ``name``: its help, options and the module of its run function."""
    EXPERIMENTS[name] = Experiment(name, help, add_arguments, module, description)


def experiment(name: str):
    """Decorator naming ``run(args, folder) -> Report`` the run function of declared experiment ``name``."""
    def register(run):
        RUNS[name] = run
        return run
    return register


def run_docstring(module: str, name: str) -> str:
    """The docstring of the function decorated ``@experiment(name)`` in ``module``'s source."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin:
        return ""
    with open(spec.origin, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and any(
                isinstance(d, ast.Call) and getattr(d.func, "id", "") == "experiment" and d.args
                and isinstance(d.args[0], ast.Constant) and d.args[0].value == name for d in node.decorator_list):
            return ast.get_docstring(node) or ""
    return ""


# ---- argument types: each raises ArgumentTypeError with a message naming the bad value ----------
def _number(cast, ok, expected: str):
    """An argparse type: ``cast(text)`` if it is a finite number with ``ok(value)``, else an
    ArgumentTypeError naming the bad value and what was ``expected``."""

    def parse(text: str):
        try:
            v = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not math.isfinite(v) or not ok(v):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return v

    return parse


positive_int = _number(int, lambda v: v >= 1, "an integer >= 1")
nonnegative_int = _number(int, lambda v: v >= 0, "an integer >= 0")
positive_float = _number(float, lambda v: v > 0, "a finite number > 0")
nonnegative_float = _number(float, lambda v: v >= 0, "a finite number >= 0")


def probability(text: str) -> float:
    v = nonnegative_float(text)
    if v > 1:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1], got {text!r}")
    return v


def momentum(text: str) -> float:
    v = nonnegative_float(text)
    if v >= 1:
        raise argparse.ArgumentTypeError(f"expected a momentum in [0, 1), got {text!r}")
    return v


def batch_size(text: str) -> Optional[int]:
    """An integer >= 1, or ``full`` (one batch of all samples)."""
    if text.lower() in ("full", "none"):
        return None
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1 or 'full', got {text!r}") from None


def list_of(item_type, name: str):
    """A comma-separated list of ``item_type`` values (at least one)."""

    def parse(text: str) -> list:
        parts = [p.strip() for p in text.split(",") if p.strip()]
        if not parts:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {name}, got {text!r}")
        return [item_type(p) for p in parts]

    parse.__name__ = f"list of {name}"
    return parse


def architectures(text: str) -> list[str]:
    names = [p.strip().lower() for p in text.split(",") if p.strip()]
    bad = [n for n in names if n not in ARCHITECTURE_NAMES]
    if not names or bad:
        raise argparse.ArgumentTypeError(
            f"unknown architecture {', '.join(bad) or text!r}: expected a comma-separated list of {', '.join(ARCHITECTURE_NAMES)}")
    return list(dict.fromkeys(names))


def noise_scales(text: str) -> list[float]:
    """Noise scales as a comma list (``1e-1,1e-3``) or a range of exponents ``1..9`` (10^-1..10^-9)."""
    if ".." in text:
        a, _, b = text.partition("..")
        try:
            lo, hi = int(a), int(b)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected exponents like 0..9 or a list like 1e-1,1e-2, got {text!r}") from None
        if lo > hi or lo < 0:
            raise argparse.ArgumentTypeError(f"expected exponents like 0..9 (low..high), got {text!r}")
        return [10.0 ** -k for k in range(lo, hi + 1)]
    return list_of(positive_float, "noise scales")(text)


# ---- options shared by all experiments ----------------------------------------------------------
def add_common(parser: argparse.ArgumentParser, trials: int, trials_help: str, architectures_default=None):
    """``--trials --seed --out --epsilon --second-order --activation --no-progress`` (and
    ``--architectures`` when ``architectures_default`` is given)."""
    parser.add_argument("--trials", type=positive_int, default=trials, help=f"{trials_help} (default {trials})")
    parser.add_argument("--seed", type=nonnegative_int, default=0, help="random seed (default 0)")
    parser.add_argument("--out", default=None,
                        help="run folder (default lightning_logs/experiments/NAME/version_N)")
    parser.add_argument("--epsilon", type=positive_float, default=1e-4,
                        help="fixpoint tolerance: |F(w)_i - w_i| < epsilon for every weight (default 1e-4)")
    parser.add_argument("--second-order", choices=SECOND_ORDER_TESTS, default="orbit",
                        help="second-order test: 'orbit' F(F(w)) = w (the definition) or 'same_network' "
                             "N_w(N_w(w)) = w (the published code) (default orbit)")
    parser.add_argument("--activation", choices=ACTIVATIONS, default="linear",
                        help="activation of every replicator (default linear, as published)")
    parser.add_argument("--width", type=positive_int, default=2, help="hidden units per layer (default 2)")
    parser.add_argument("--depth", type=positive_int, default=2, help="hidden layers (default 2)")
    parser.add_argument("--orthogonal", choices=ORTHOGONAL, default="keras2",
                        help="initialiser of recurrent kernels: 'keras2' (the published Keras 2 one, SVD-based) or "
                             "'uniform' (uniform over orthogonal matrices, QR-based) (default keras2)")
    if architectures_default is not None:
        parser.add_argument("--architectures", type=architectures, default=architectures_default,
                            help=f"comma-separated architectures (default {','.join(architectures_default)})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_training(parser: argparse.ArgumentParser, lr=0.01, batch=1, mom=0.0):
    """``--lr --batch-size --momentum``: the SGD of self-training (defaults: the published runs)."""
    parser.add_argument("--lr", type=nonnegative_float, default=lr, help=f"SGD learning rate (default {lr})")
    parser.add_argument("--batch-size", type=batch_size, default=batch,
                        help=f"samples per SGD step, or 'full' (default {'full' if batch is None else batch})")
    parser.add_argument("--momentum", type=momentum, default=mom, help=f"SGD momentum (default {mom})")


def make_replicator(name: str, args: argparse.Namespace):
    """The replicator ``name`` with the run's width, depth, activation (and orthogonal initialiser, for
    architectures with recurrent kernels)."""
    import inspect

    from nsr.replicators import ARCHITECTURES

    cls = ARCHITECTURES[name]
    extra = {}
    if "orthogonal" in inspect.signature(cls.__init__).parameters:
        extra["orthogonal"] = getattr(args, "orthogonal", "keras2")
    return cls(width=args.width, depth=args.depth, activation=args.activation, **extra)


# ---- helpers every experiment uses ----------------------------------------------------------------
def stream(args: argparse.Namespace, tag: str, ids, generation: int = 0):
    """Counter-based random numbers for particles ``ids`` keyed by (seed, generation, id, tag): trial
    i draws the same numbers whatever the number of trials or the batch it runs in."""
    import torch

    from nsr.random import KeyedStream

    return KeyedStream(args.seed, generation, torch.as_tensor(ids, dtype=torch.int64), f"{args.name}/{tag}")


def bar(args: argparse.Namespace, total: int, desc: str):
    """A tqdm progress bar (silent with ``--no-progress``)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=args.no_progress, leave=False, dynamic_ncols=True)


def fmt_share(x) -> str:
    """A share (or count per soup) for a table cell; empty when unknown."""
    return "" if x is None else f"{x:.2f}"


def versus(ours, theirs) -> str:
    """``ours / published`` for a table cell (``-`` where the publication gives no number)."""
    return f"{fmt_share(ours)} / {'-' if theirs is None else fmt_share(theirs)}"
