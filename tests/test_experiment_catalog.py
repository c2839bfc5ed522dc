"""The experiments' options are read without torch: ``nsr experiment --help``, ``NAME --help`` and a
bad option's one-line error import neither torch nor numpy, and the names the catalog spells out
agree with the modules that run the experiments."""
import inspect
import math
import subprocess
import sys

import pytest
from conftest import ROOT

from nsr.experiments import EXPERIMENTS, base, catalog, experiment_parser

NO_TORCH = ("import sys; from nsr.cli import main\n"
            "try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
            "print('LOADED', sorted(m for m in ('torch', 'numpy', 'lightning') if m in sys.modules))")


@pytest.mark.parametrize("argv", [["experiment", "--help"], ["experiment", "stability", "--help"],
                                  ["experiment", "training", "--trials", "0"]], ids=["list", "help", "bad option"])
def test_the_experiment_command_line_answers_without_importing_torch(argv):
    out = subprocess.run([sys.executable, "-c", NO_TORCH.format(argv=argv)], capture_output=True, text=True,
                         timeout=60, env={"PYTHONPATH": str(ROOT / "src"), "PATH": ""}, cwd=ROOT)
    assert "LOADED []" in out.stdout, out.stdout + out.stderr
    if argv[-1] == "0":
        assert out.stderr.strip() == "error: argument --trials: expected an integer >= 1, got '0' (nsr experiment training)"


def test_the_catalogs_names_are_the_ones_the_experiments_use():
    from nsr import fixpoints, replicators, soup, tasks
    from nsr.experiments import basins, fixpoint_classes, stability_search, task_tradeoff

    assert base.SECOND_ORDER_TESTS == tuple(fixpoints.SECOND_ORDER_TESTS)
    assert base.ACTIVATIONS == tuple(replicators.ACTIVATIONS)
    assert base.ARCHITECTURE_NAMES == tuple(replicators.ARCHITECTURES)
    assert base.ORTHOGONAL == tuple(replicators.base.ORTHOGONAL)
    assert catalog.ARCHS == fixpoint_classes.ARCHS == stability_search.ARCHS
    assert catalog.METRICS == tuple(basins.METRICS)
    assert catalog.UPDATES == tuple(soup.UPDATES)
    assert sorted(catalog.TASKS) == sorted(tasks.TASKS)
    assert catalog.FAMILIES == stability_search.FAMILIES
    assert catalog.DEFAULT_ALPHAS[:-1] == task_tradeoff.DEFAULT_ALPHAS[:-1] and math.isinf(task_tradeoff.DEFAULT_ALPHAS[-1])


def test_every_declared_experiment_has_a_run_function_and_its_docstring_is_the_description():
    for name, e in EXPERIMENTS.items():
        __import__(e.module)
        run = base.RUNS[name]
        assert e.description == inspect.cleandoc(run.__doc__ or e.help), name
        assert experiment_parser(name).description == e.description
