"""Secondary tasks for replicators: data, loss and metric, batched over a population.

A :class:`Task` is a small object a replicator can learn beside self-replication (the goals of
Gabor et al. 2021, the auxiliary classifier of Chang & Lipson 2018, the toy task of the organism
networks; ``docs/tasks.md``). It is pure torch (and scikit-learn for the bundled digits): no
download, no Lightning. Outputs of a population come as ``[P, B, num_outputs]``, one row of B
samples per particle; loss and metric are per particle (``[P]``, each particle's own mean), so a
population summed over particles is P independent learners.

Add your own by subclassing :class:`Task` and setting ``name``, ``num_inputs``, ``num_outputs``,
``metric_name``, ``higher_is_better`` and ``data`` (``loss``/``metric`` are inherited for
classification (``num_classes`` > 0) and regression).

>>> task = GaussianAddition(train_size=8, test_size=4, seed=0)
>>> x, y = task.data("train")
>>> tuple(x.shape), tuple(y.shape), bool(torch.allclose(y[:, 0], x[:, 0] + x[:, 1]))
((8, 2), (8, 1), True)
>>> float(task.metric(y.expand(3, 8, 1), y)[0])
0.0
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

SPLITS = ("train", "test")


def _check_split(split: str) -> str:
    if split == "val":
        split = "test"
    if split not in SPLITS:
        raise ValueError(f"split {split!r}: expected one of train, val, test")
    return split


class Task:
    """A supervised task: ``data(split)`` gives ``(x, y)``; ``loss``/``metric`` score outputs per particle.

    ``x`` is ``[N, num_inputs]`` float32; ``y`` is ``[N]`` long (classification, ``num_classes`` > 0)
    or ``[N, num_outputs]`` float32 (regression). Targets may also come per particle (``[P, N]`` or
    ``[P, N, num_outputs]``). ``threshold`` is the metric level from which a particle counts as
    solving the task (:meth:`solves`).
    """

    name: str = "task"
    num_inputs: int = 1
    num_outputs: int = 1
    num_classes: int = 0  # > 0: classification over num_outputs logits
    metric_name: str = "mse"
    higher_is_better: bool = False
    threshold: float = 0.0

    def data(self, split: str, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The split's inputs and targets (deterministic for ``generator=None``)."""
        raise NotImplementedError

    # -- scoring, batched over particles -------------------------------------------------------
    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-particle training loss ``[P]`` of outputs ``out`` ``[P, B, num_outputs]``: cross
        entropy for classification, mean squared error for regression (mean over samples)."""
        if self.num_classes:
            y = y.expand(out.shape[:2])  # [P, B]
            ce = F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1), reduction="none")
            return ce.view(out.shape[:2]).mean(1)
        return (out - y.expand(out.shape)).square().mean((1, 2))

    def metric(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-particle metric ``[P]``: accuracy (classification) or mean squared error (regression)."""
        with torch.no_grad():
            if self.num_classes:
                return (out.argmax(-1) == y.expand(out.shape[:2])).float().mean(1)
            return (out - y.expand(out.shape)).square().mean((1, 2))

    def solves(self, metric: torch.Tensor) -> torch.Tensor:
        """Bool ``[P]``: the metric reaches ``threshold`` (``>=`` if higher is better, else ``<=``);
        NaN never solves."""
        return metric >= self.threshold if self.higher_is_better else metric <= self.threshold

    def config(self) -> dict:
        """``{"name": ..., "init_args": {...}}``, enough for :func:`from_config`."""
        return {"name": self.name, "init_args": dict(getattr(self, "_init_args", {}))}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in getattr(self, "_init_args", {}).items())
        return f"{type(self).__name__}({args})"


def _positive(name: str, value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


class GaussianAddition(Task):
    """Regression ``y = x1 + x2`` with ``x ~ N(0, 1)``: the organism networks' toy task.

    The train and test sets are drawn once from ``seed`` (disjoint streams). Passing a
    ``generator`` to :meth:`data` draws a fresh set of the split's size from it instead.
    A particle solves the task at mean squared error <= ``threshold`` (default 0.01; predicting
    0 gives 2, predicting one input gives 1).
    """

    name = "gaussian_addition"
    num_inputs = 2
    num_outputs = 1
    metric_name = "mse"
    higher_is_better = False

    def __init__(self, train_size: int = 512, test_size: int = 512, seed: int = 0, threshold: float = 0.01):
        self.train_size = _positive("train_size", train_size)
        self.test_size = _positive("test_size", test_size)
        self.seed = int(seed)
        self.threshold = float(threshold)
        self._init_args = {"train_size": train_size, "test_size": test_size, "seed": seed, "threshold": threshold}

    def data(self, split: str, generator: torch.Generator | None = None):
        split = _check_split(split)
        n = self.train_size if split == "train" else self.test_size
        if generator is None:
            generator = torch.Generator().manual_seed(self.seed * 2 + (split == "test"))
        x = torch.randn(n, 2, generator=generator)  # [N, 2]
        return x, x.sum(1, keepdim=True)  # [N, 1]


class Digits(Task):
    """Classification of scikit-learn's bundled 8x8 digits (1797 images, no download).

    Inputs are the 64 pixels scaled to [0, 1]; 10 classes. The split is a fixed permutation drawn
    from ``seed``: ``test_fraction`` of the images (stratified by nothing, just shuffled) form the
    test set. A particle solves the task at accuracy >= ``threshold`` (default 0.8; chance is 0.1).
    """

    name = "digits"
    num_inputs = 64
    num_outputs = 10
    num_classes = 10
    metric_name = "accuracy"
    higher_is_better = True

    def __init__(self, test_fraction: float = 0.3, seed: int = 0, threshold: float = 0.8, train_size: int | None = None):
        if not 0.0 < float(test_fraction) < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
        if train_size is not None:
            _positive("train_size", train_size)
        self.test_fraction = float(test_fraction)
        self.seed = int(seed)
        self.threshold = float(threshold)
        self.train_size = train_size
        self._init_args = {"test_fraction": test_fraction, "seed": seed, "threshold": threshold, "train_size": train_size}
        self._cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def _load(self):
        from sklearn.datasets import load_digits

        d = load_digits()
        x = torch.tensor(d.data, dtype=torch.float32) / 16.0  # [1797, 64] in [0, 1]
        y = torch.tensor(d.target, dtype=torch.long)  # [1797]
        perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(self.seed))
        n_test = int(round(len(y) * self.test_fraction))
        test, train = perm[:n_test], perm[n_test:]
        if self.train_size is not None:
            train = train[: self.train_size]
        self._cache = {"train": (x[train], y[train]), "test": (x[test], y[test])}

    def data(self, split: str, generator: torch.Generator | None = None):
        split = _check_split(split)
        if not self._cache:
            self._load()
        x, y = self._cache[split]
        if generator is not None:  # a fresh order of the same images
            perm = torch.randperm(len(y), generator=generator)
            x, y = x[perm], y[perm]
        return x.clone(), y.clone()


TASKS = {"gaussian_addition": GaussianAddition, "digits": Digits}


def by_name(name: str, **init_args) -> Task:
    """The task registered as ``name`` (:data:`TASKS`), built with ``init_args``."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}: expected one of {', '.join(TASKS)}")
    return TASKS[name](**init_args)


def from_config(config) -> Task:
    """A task from a name, a :class:`Task`, ``{"name": ..., "init_args": {...}}`` or
    ``{"class_path": "pkg.Module.Class", "init_args": {...}}`` (a user's own task)."""
    if isinstance(config, Task):
        return config
    if isinstance(config, str):
        return by_name(config)
    if not isinstance(config, dict):
        raise ValueError(f"task config must be a name or a dict, got {config!r}")
    init_args = dict(config.get("init_args") or {})
    if "class_path" in config:
        import importlib

        path = config["class_path"]
        module, _, cls = path.rpartition(".")
        try:
            klass = getattr(importlib.import_module(module), cls)
        except (ImportError, AttributeError, ValueError):
            raise ValueError(f"task class_path {path!r} cannot be imported") from None
        return klass(**init_args)
    return by_name(config.get("name", ""), **init_args)


__all__ = ["Task", "GaussianAddition", "Digits", "TASKS", "by_name", "from_config"]
