"""The experiments' names, one-line help and options: what ``nsr experiment --help``,
``nsr experiment NAME --help`` and a bad option's one-line error need, importable without torch.

Each experiment's run function lives in its own module (``fixpoint_classes``, ``soups``, ...), which
imports torch; it is imported only when the experiment runs (:meth:`nsr.experiments.base.Experiment.run`)
or its description is shown (read from the module's source, not imported). The names below that the
run functions also define (architectures, metrics, update orders, families, tasks, alphas) are
checked against theirs by tests/test_experiment_catalog.py.
"""
from __future__ import annotations

import math

from nsr.experiments.base import (ACTIVATIONS, add_common, add_training, architectures, batch_size, declare, list_of,
                                  momentum, noise_scales, nonnegative_float, nonnegative_int, positive_float,
                                  positive_int, probability)

ARCHS = ["weightwise", "aggregating", "recurrent"]  # nsr.experiments.fixpoint_classes.ARCHS
METRICS = ("mae", "mse", "mim")  # the keys of nsr.experiments.basins.METRICS
UPDATES = ("synchronous", "sequential")  # nsr.soup.UPDATES
TASKS = ("digits", "gaussian_addition")  # the keys of nsr.tasks.TASKS
DEFAULT_ALPHAS = [0.0, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 100.0, math.inf]  # nsr.experiments.task_tradeoff
FAMILIES = ["weightwise", "weightwise+newton", "weightwise+penalty", "weightwise-relu+newton", "weightwise-tanh",
            "weightwise-tanh+newton", "weightwise-tanh+penalty", "weightwise-tanh+denoise", "weightwise-sigmoid",
            "weightwise-sigmoid+newton", "weightwise-sigmoid+applying", "aggregating+newton", "aggregating-tanh+newton",
            "recurrent", "recurrent+newton", "recurrent-tanh+newton", "normalized", "normalized+newton"]  # stability_search


def density_args(p):
    add_common(p, 100_000, "random networks per architecture", ARCHS)
    p.add_argument("--chunk", type=positive_int, default=100_000, help="networks classified per batch (default 100000)")


def applying_args(p):
    add_common(p, 50, "random networks per architecture", ARCHS)
    p.add_argument("--applications", type=nonnegative_int, default=100,
                   help="self-applications per network (default 100)")


def training_args(p):
    add_common(p, 50, "networks per architecture", ARCHS)
    p.add_argument("--epochs", type=nonnegative_int, default=1000, help="self-training epochs (default 1000)")
    add_training(p)
    p.add_argument("--log-every", type=positive_int, default=10,
                   help="classify the population every N epochs for TensorBoard and the figure (default 10)")


def mixed_args(p):
    add_common(p, 20, "networks per k and architecture", ARCHS)
    p.add_argument("--rounds", type=positive_int, default=4, help="rounds of (self-application, k epochs) (default 4)")
    p.add_argument("--trains", type=list_of(nonnegative_int, "epoch counts"), default=[50 * i for i in range(11)],
                   help="comma-separated k, the self-training epochs after each self-application "
                        "(default 0,50,...,500)")
    add_training(p)


def robustness_args(p):
    add_common(p, 100, "noisy clones per fixpoint and noise scale")
    p.add_argument("--noise", type=noise_scales, default=[10.0 ** -k for k in range(10)],
                   help="noise scales: exponents 0..9 (10^0..10^-9, the default) or a list like 1e-1,1e-5")
    p.add_argument("--max-steps", type=positive_int, default=100, help="self-applications at most (default 100)")
    p.add_argument("--trained", type=nonnegative_int, default=10,
                   help="also test fixpoints found by self-training this many random weightwise networks "
                        "(the non-trivial ones among them); 0: only the hand-built fixpoint (default 10)")
    p.add_argument("--epochs", type=nonnegative_int, default=1000,
                   help="self-training epochs of the trained fixpoints (default 1000)")
    add_training(p)


def basins_args(p):
    add_common(p, 10, "clones per parent and noise scale")
    p.add_argument("--parents", type=positive_int, default=10,
                   help="random weightwise networks self-trained into parents (the non-trivial fixpoints among "
                        "them are used) (default 10)")
    p.add_argument("--noise", type=noise_scales, default=[10.0 ** -k for k in range(1, 10)],
                   help="noise scales: exponents 1..9 (the default) or a list like 1e-2,1e-4")
    p.add_argument("--epochs", type=nonnegative_int, default=2500, help="self-training epochs of the parents (default 2500)")
    p.add_argument("--clone-epochs", type=nonnegative_int, default=2500,
                   help="self-training epochs of the clones after cloning (default 2500)")
    add_training(p, lr=0.04, batch=None, mom=0.0)
    p.add_argument("--metric", choices=tuple(METRICS), default="mim",
                   help="distance that classifies a clone approaching / distancing / stationary (default mim, "
                        "the permutation-invariant mean Manhattan distance)")
    p.add_argument("--rtol", type=nonnegative_float, default=0.05,
                   help="stationary when |after - before| <= rtol * before + atol (default 0.05)")
    p.add_argument("--atol", type=nonnegative_float, default=0.0, help="see --rtol (default 0)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                   help="weights' precision (default float32, as published)")


def add_update(p):
    """``--update sequential|synchronous``: the order of a generation (default: the published one)."""
    p.add_argument("--update", choices=UPDATES, default="sequential",
                   help="order within a generation: 'sequential' (the published order: each particle in turn "
                        "attacks, learns, trains and is checked) or 'synchronous' (phase by phase over all "
                        "particles) (default sequential)")


def soup_options(p, soups, particles):
    add_common(p, soups, "soups per setting")
    p.add_argument("--particles", type=positive_int, default=particles, help=f"particles per soup (default {particles})")
    add_training(p)
    add_update(p)
    p.add_argument("--remove-divergent", action="store_true", help="respawn divergent particles (default off, as published)")
    p.add_argument("--remove-zero", action="store_true", help="respawn zero fixpoints (default off, as published)")


def learn_from_soup_args(p):
    soup_options(p, 10, 10)
    p.add_argument("--generations", type=positive_int, default=100, help="generations per soup (default 100)")
    p.add_argument("--learn-from-rate", type=probability, default=0.1,
                   help="probability that a particle learns from another per generation (default 0.1)")
    p.add_argument("--severities", type=list_of(nonnegative_int, "epoch counts"), default=[10 * i for i in range(11)],
                   help="comma-separated learn_from severities (epochs) (default 0,10,...,100)")
    p.add_argument("--train", type=nonnegative_int, default=0, help="self-training epochs per generation (default 0)")
    p.add_argument("--architecture", choices=("weightwise", "aggregating", "recurrent"), default="weightwise",
                   help="replicator of the soups (default weightwise, as published)")


def mixed_soup_args(p):
    soup_options(p, 10, 10)
    p.add_argument("--generations", type=positive_int, default=5, help="generations per soup (default 5)")
    p.add_argument("--attacking-rate", type=probability, default=0.1,
                   help="probability that a particle attacks another per generation (default 0.1)")
    p.add_argument("--trains", type=list_of(nonnegative_int, "epoch counts"), default=[10 * i for i in range(11)],
                   help="comma-separated self-training epochs per generation (default 0,10,...,100)")
    p.add_argument("--architectures", type=architectures,
                   default=["weightwise", "aggregating"],
                   help="comma-separated architectures (default weightwise,aggregating, as published)")


def soup_trajectories_args(p):
    add_common(p, 1, "soups")
    p.add_argument("--particles", type=positive_int, default=20, help="particles per soup (default 20)")
    p.add_argument("--generations", type=positive_int, default=100, help="generations (default 100)")
    p.add_argument("--attacking-rate", type=probability, default=0.1, help="attack probability (default 0.1)")
    p.add_argument("--learn-from-rate", type=probability, default=0.0, help="learn_from probability (default 0)")
    p.add_argument("--learn-from-severity", type=nonnegative_int, default=1, help="learn_from epochs (default 1)")
    p.add_argument("--train", type=nonnegative_int, default=30, help="self-training epochs per generation (default 30)")
    add_training(p)
    add_update(p)
    p.add_argument("--keep-divergent", action="store_true", help="do not respawn divergent particles (default: respawn)")
    p.add_argument("--keep-zero", action="store_true", help="do not respawn zero fixpoints (default: respawn)")
    p.add_argument("--architecture", choices=("weightwise", "aggregating", "recurrent"), default="weightwise",
                   help="replicator of the soup (default weightwise)")


def soup_phase_options(p, trials, particles, generations):
    add_common(p, trials, "soups per setting")
    p.add_argument("--particles", type=positive_int, default=particles, help=f"particles per soup (default {particles})")
    p.add_argument("--generations", type=positive_int, default=generations, help=f"generations (default {generations})")
    p.add_argument("--learn-from-rate", type=probability, default=0.0, help="learn_from probability (default 0)")
    p.add_argument("--learn-from-severity", type=nonnegative_int, default=1, help="learn_from epochs (default 1)")
    add_training(p)
    p.add_argument("--keep-divergent", action="store_true", help="do not respawn divergent particles (default: respawn)")
    p.add_argument("--keep-zero", action="store_true", help="do not respawn zero fixpoints (default: respawn)")


def soup_phases_args(p):
    soup_phase_options(p, 100, 10, 50)
    p.add_argument("--rates", type=list_of(probability, "attacking rates"),
                   default=[0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0],
                   help="comma-separated attacking rates (default 0,0.05,0.1,0.2,0.3,0.5,0.7,1)")
    p.add_argument("--trains", type=list_of(nonnegative_int, "epoch counts"), default=[0, 1, 2, 5, 10, 20, 30, 50],
                   help="comma-separated self-training epochs per generation (default 0,1,2,5,10,20,30,50)")
    p.add_argument("--species-by", choices=("function", "genome"), default="function",
                   help="species: networks computing the same map on two probe genomes, or equal genomes (default function)")
    p.add_argument("--tolerance", type=positive_float, default=1e-2, help="species tolerance (default 0.01)")


def emergence_args(p):
    soup_phase_options(p, 1000, 10, 100)
    p.add_argument("--attacking-rate", type=probability, default=0.1, help="attack probability (default 0.1)")
    p.add_argument("--train", type=nonnegative_int, default=10, help="self-training epochs per generation (default 10)")
    p.add_argument("--threshold", type=probability, default=0.5,
                   help="share of a soup that must be non-trivial fixpoints (default 0.5: half)")


def stability_args(p):
    add_common(p, 10_000, "networks self-trained per architecture", ARCHS)
    p.add_argument("--epochs", type=nonnegative_int, default=1000, help="self-training epochs (default 1000)")
    add_training(p)
    p.add_argument("--tol", type=positive_float, default=1e-3,
                   help="eigenvalues within tol of modulus 1 count as marginal (default 1e-3)")
    p.add_argument("--noise", type=list_of(positive_float, "noise scales"), default=[10.0 ** -k for k in range(13)],
                   help="noise scales of the robustness comparison (default 1e0..1e-12)")
    p.add_argument("--fit-range", type=list_of(nonnegative_int, "exponents"), default=[2, 7],
                   help="noise exponents low,high of the linear range for the hand-built fixpoint's slopes "
                        "(default 2,7: 1e-2..1e-7, as published)")
    p.add_argument("--subresolution-range", type=list_of(nonnegative_int, "exponents"), default=[8, 12],
                   help="noise exponents below float32 resolution, where the second eigenvalue sets the "
                        "hand-built fixpoint's slope (default 8,12)")
    p.add_argument("--float64-fit-range", type=list_of(nonnegative_int, "exponents"), default=[2, 12],
                   help="the linear range of the hand-built fixpoint in float64 (default 2,12)")
    p.add_argument("--trained-fit-range", type=list_of(nonnegative_int, "exponents"), default=[2, 6],
                   help="the same for trained fixpoints, whose own fixpoint distance (~1e-6 in float32) ends "
                        "their linear range earlier (default 2,6)")
    p.add_argument("--robustness-trials", type=positive_int, default=1000,
                   help="noisy clones per fixpoint and noise scale (default 1000; the publication used 100, "
                        "whose slopes scatter by about +-0.06 per decade)")
    p.add_argument("--robustness-parents", type=positive_int, default=10,
                   help="trained weightwise fixpoints in the robustness comparison (default 10)")
    p.add_argument("--families", type=list_of(str, "families"), default=FAMILIES,
                   help=f"replicator families of the attracting search (default {','.join(FAMILIES)})")
    p.add_argument("--search-trials", type=positive_int, default=200, help="networks per family (default 200)")
    p.add_argument("--search-epochs", type=nonnegative_int, default=1000,
                   help="self-training epochs of the +train families (default 1000)")
    p.add_argument("--newton-steps", type=nonnegative_int, default=60, help="Newton steps (default 60)")
    p.add_argument("--penalty-steps", type=nonnegative_int, default=300,
                   help="Adam steps of penalty or denoise training (default 300)")
    p.add_argument("--penalty-lr", type=positive_float, default=0.01, help="Adam learning rate of those (default 0.01)")
    p.add_argument("--penalty", type=positive_float, default=1.0, help="weight of the Jacobian penalty (default 1)")
    p.add_argument("--clones", type=positive_int, default=10, help="clones per fixpoint in the verification (default 10)")


def organism_args(p):
    add_common(p, 10, "seeds (one organism and one dense network each)")
    p.add_argument("--task", choices=("digits", "gaussian_addition"), default="digits", help="the task (default digits)")
    p.add_argument("--hidden", type=list_of(positive_int, "widths"), default=[160],
                   help="hidden widths of the host, comma-separated (default 160: 64 -> 160 -> 10, 11,840 particles)")
    p.add_argument("--host-activation", choices=ACTIVATIONS, default="relu", help="the host's activation (default relu)")
    p.add_argument("--epochs", type=positive_int, default=30, help="epochs of both networks (default 30)")
    p.add_argument("--lr", type=nonnegative_float, default=0.01, help="SGD learning rate (default 0.01)")
    p.add_argument("--momentum", type=momentum, default=0.9, help="SGD momentum (default 0.9)")
    p.add_argument("--batch-size", type=batch_size, default=64, help="task samples per step (default 64)")
    p.add_argument("--replication-weight", type=nonnegative_float, default=1.0,
                   help="weight of the summed replication loss (default 1.0, the authors' alpha)")
    p.add_argument("--attacking-rate", type=probability, default=0.0, help="soup attacks per epoch within a layer (default 0)")
    p.add_argument("--learn-from-rate", type=probability, default=0.0, help="soup learn_from per epoch within a layer (default 0)")


def alpha_value(text: str) -> float:
    if text.strip().lower() in ("inf", "task"):
        return math.inf
    return nonnegative_float(text)


def add_task_options(parser, epochs: int, width: int, lr: float = 0.04, mom: float = 0.9):
    """``--task --epochs --width`` and the optimizer options shared by the task experiments."""
    parser.add_argument("--task", choices=sorted(TASKS), default="digits", help="the task (default digits)")
    parser.add_argument("--epochs", type=positive_int, default=epochs,
                        help=f"self-training epochs, each with one task batch (default {epochs})")
    parser.add_argument("--lr", type=nonnegative_float, default=lr, help=f"SGD learning rate (default {lr})")
    parser.add_argument("--momentum", type=momentum, default=mom, help=f"SGD momentum (default {mom})")
    parser.add_argument("--batch-size", type=batch_size, default=None,
                        help="replication samples per SGD step, or 'full' (default full)")
    parser.add_argument("--task-batch-size", type=positive_int, default=64, help="task samples per epoch (default 64)")
    parser.set_defaults(width=width)


def task_tradeoff_args(parser):
    add_common(parser, 10, "seeds per alpha")
    add_task_options(parser, epochs=2000, width=8)
    parser.add_argument("--alphas", type=list_of(alpha_value, "alphas (numbers >= 0 or inf)"), default=DEFAULT_ALPHAS,
                        help="task weights; inf = the task alone (default 0,0.01,0.03,0.1,0.3,1,3,10,100,inf)")
    parser.add_argument("--noise", type=nonnegative_float, default=1e-6,
                        help="robustness: the time to vergence of the trained genomes plus noise at this scale, "
                             "under self-application (default 1e-6)")
    parser.add_argument("--no-normalize", action="store_true",
                        help="step on replication + alpha * task as is (default: divided by 1 + alpha, so the step "
                             "size does not grow with alpha)")


def task_soup_args(parser):
    add_common(parser, 100, "soups per arm (guided and unguided)")
    add_task_options(parser, epochs=10, width=2)
    parser.set_defaults(task="gaussian_addition")
    parser.add_argument("--soup-size", type=positive_int, default=10, help="particles per soup (default 10)")
    parser.add_argument("--guides", type=nonnegative_int, default=1, help="guides per guided soup (default 1)")
    parser.add_argument("--generations", type=positive_int, default=100, help="generations (default 100)")
    parser.add_argument("--learn-from-rate", type=probability, default=0.2, help="learn_from probability (default 0.2)")
    parser.add_argument("--learn-from-severity", type=nonnegative_int, default=50,
                        help="epochs of a learn_from event (default 50)")
    parser.add_argument("--learn-from-alpha", type=float, default=10.0,
                        help="weight of the teacher's task answers in learn_from (default 10)")
    parser.add_argument("--guide-alpha", type=float, default=1.0, help="the guides' task weight (default 1)")
    parser.add_argument("--attacking-rate", type=probability, default=0.0, help="attack probability (default 0)")
    parser.add_argument("--protect-guides", action="store_true",
                        help="guides only teach: they never learn_from others (default: they do, like everyone)")
    parser.add_argument("--record-every", type=positive_int, default=5, help="generations between records (default 5)")


# ---- the registry: name, help, options, the module of the run function --------------------------
declare("density", 'fixpoint density: the classes of random networks, 10^5 per architecture',
        density_args, "nsr.experiments.fixpoint_classes")
declare("applying", 'random networks self-applied 100 times, then classified',
        applying_args, "nsr.experiments.fixpoint_classes")
declare("training", 'random networks self-trained for 1000 epochs, then classified',
        training_args, "nsr.experiments.fixpoint_classes")
declare("mixed", 'self-application then k self-training epochs, up to 4 rounds, k swept',
        mixed_args, "nsr.experiments.fixpoint_classes")
declare("robustness", 'noisy clones of the hand-built and of trained weightwise fixpoints, noise 1e0..1e-9',
        robustness_args, "nsr.experiments.robustness")
declare("basins", 'journal extension: clones of trained fixpoints at noise 1e-1..1e-9, trained on',
        basins_args, "nsr.experiments.basins")
declare("learn_from_soup", 'soups where particles learn from each other; learn_from severity swept',
        learn_from_soup_args, "nsr.experiments.soups")
declare("mixed_soup", 'soups with attacks and self-training; training epochs per generation swept',
        mixed_soup_args, "nsr.experiments.soups")
declare("soup_trajectories", "a soup's weight trajectories in PCA space; classes at the end",
        soup_trajectories_args, "nsr.experiments.soups")
declare("soup_phases", 'phase diagram of soups: attacking rate x self-training epochs per generation',
        soup_phases_args, "nsr.experiments.soup_phases")
declare("emergence", 'generations until non-trivial replicators make up half of a soup, over many soups',
        emergence_args, "nsr.experiments.soup_phases")
declare("stability", 'linear stability of fixpoints: spectra, robustness predicted, attracting replicators',
        stability_args, "nsr.experiments.stability")
declare("organism", 'organism networks (a host made of self-replicating particles) vs a dense network: classes per epoch, accuracy, particle dropout vs magnitude pruning',
        organism_args, "nsr.experiments.organism")
declare("task_tradeoff", 'replication vs a task: alpha swept from pure replication to pure task',
        task_tradeoff_args, "nsr.experiments.task_tradeoff")
declare("task_soup", 'a guide spreads its task through learn_from: guided vs unguided soups',
        task_soup_args, "nsr.experiments.task_soup")
