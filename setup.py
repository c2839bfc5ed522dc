"""Packaging glue: ship the repository's ``configs/`` inside the package as ``nsr/configs/``
(``nsr fit --config NAME`` and ``nsr configs`` find them in an installed nsr). Everything else is
in pyproject.toml."""
import glob
import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithConfigs(build_py):
    """build_py that also copies ``configs/*.yaml`` into the built package."""

    def run(self):
        super().run()
        here = os.path.dirname(os.path.abspath(__file__))
        target = os.path.join(self.build_lib, "nsr", "configs")
        os.makedirs(target, exist_ok=True)
        for path in sorted(glob.glob(os.path.join(here, "configs", "*.yaml"))):
            shutil.copy(path, target)


setup(cmdclass={"build_py": BuildWithConfigs})
