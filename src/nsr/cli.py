"""The ``nsr`` command: LightningCLI in subclass mode, plus ``nsr experiment NAME``.

    nsr fit --config configs/weightwise.yaml
    nsr fit --config configs/weightwise.yaml --model.init_args.population 500 --trainer.max_epochs 200
    nsr fit --config configs/weightwise.yaml --ckpt_path lightning_logs/version_0/checkpoints/last.ckpt
    nsr validate --config configs/weightwise.yaml --ckpt_path lightning_logs/version_0/checkpoints/last.ckpt
    nsr fit --config configs/weightwise.yaml --print_config
    nsr experiment NAME [...]

Runs log to TensorBoard under ``lightning_logs/``, keep their resolved ``config.yaml`` there, and
write ``checkpoints/last.ckpt`` atomically. Mistakes in a command line or config (an unknown key,
a bad value, a missing file, a wrong checkpoint) print one line ``error: ...`` and exit with
status 2; set ``NSR_DEBUG=1`` for the full traceback.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import sys
import warnings

from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import LightningCLI

DESCRIPTION = ("nsr: self-replicating neural networks. `nsr fit --config configs/weightwise.yaml` trains; "
               "`nsr validate ... --ckpt_path CKPT` measures a checkpoint; `nsr experiment NAME` runs one of "
               "the paper's experiments.")

TRAINER_DEFAULTS = {
    "logger": {"class_path": "lightning.pytorch.loggers.TensorBoardLogger",
               "init_args": {"save_dir": ".", "name": "lightning_logs", "default_hp_metric": False}},
    "plugins": [{"class_path": "nsr.checkpoint.AtomicCheckpointIO"}],
    "reload_dataloaders_every_n_epochs": 1,
    "num_sanity_val_steps": 0,
    "enable_model_summary": False,  # one parameter, the population: the table says nothing
}

_QUIET = [  # Lightning advice that does not apply to populations generated in memory
    r".*does not have many workers.*",
    r".*The number of training batches .* is smaller than the logging interval.*",
    r".*`training_step` returned `None`.*",
    r".*GPU available but not used.*",
    r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",
    r".*The dirpath has changed from .* won't be reloaded.*",  # every resume or validate logs to a new version
]


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("\U0001f4a1 Tip")


class NSRCLI(LightningCLI):
    """LightningCLI whose ``data:`` section is optional (a soup makes its own samples) and which
    checks what it can before any work starts: a writable log folder, a readable checkpoint of the
    same architecture. Subcommands: ``fit`` and ``validate``."""

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {"fit": {"model", "train_dataloaders", "val_dataloaders", "datamodule"},
                "validate": {"model", "dataloaders", "datamodule"}}

    def add_core_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(self.trainer_class, "trainer")
        parser.set_defaults({"trainer." + k: v for k, v in self.trainer_defaults.items() if k != "callbacks"})
        parser.add_lightning_class_args(self._model_class, "model", subclass_mode=True)
        parser.add_lightning_class_args(self._datamodule_class, "data", subclass_mode=True, required=False)

    def before_instantiate_classes(self) -> None:
        # `--trainer.enable_progress_bar false` also drops a config's progress-bar callback
        # (Lightning refuses the combination)
        cfg = self.config.get(str(self.subcommand), self.config) if self.subcommand else self.config
        trainer = cfg.get("trainer")
        if trainer is None or trainer.get("enable_progress_bar") is not False or not trainer.get("callbacks"):
            return
        from jsonargparse import Namespace
        from lightning.pytorch.callbacks import ProgressBar

        def is_bar(c) -> bool:
            if not isinstance(c, Namespace) or "class_path" not in c:
                return False
            module, _, name = c["class_path"].rpartition(".")
            try:
                return issubclass(getattr(importlib.import_module(module), name), ProgressBar)
            except (ImportError, AttributeError, TypeError):
                return False

        trainer["callbacks"] = [c for c in trainer["callbacks"] if not is_bar(c)]

    def _parse_ckpt_path(self) -> None:
        # Lightning would overwrite the configured model with the checkpoint's hyper-parameters;
        # nsr keeps the config as given and instead checks that the checkpoint fits it
        # (before_fit / before_validate). Here: the file must be a readable nsr checkpoint.
        if not self.config.get("subcommand"):
            return
        path = self.config[self.config.subcommand].get("ckpt_path")
        if _is_checkpoint_file(path):
            from nsr.checkpoint import read_checkpoint

            read_checkpoint(path)

    def _check_ckpt(self):
        path = self._get(self.config, "ckpt_path")
        if not _is_checkpoint_file(path):
            return
        from nsr.modules import PopulationModule

        if isinstance(self.model, PopulationModule):  # the module knows what it can resume from
            self.model.check_checkpoint(path)

    def _check_writable(self):
        folders = set()
        for logger in self.trainer.loggers:
            if getattr(logger, "save_dir", None):
                folders.add(os.fspath(logger.save_dir))
        ckpt = self.trainer.checkpoint_callback
        if ckpt is not None and getattr(ckpt, "dirpath", None):
            folders.add(os.fspath(ckpt.dirpath))
        if not self.trainer.loggers:
            folders.add(os.fspath(self.trainer.default_root_dir))
        for folder in sorted(folders):
            check_writable(folder)

    def before_fit(self):
        self._check_ckpt()
        if self.trainer.is_global_zero:
            self._check_writable()
        _ensure_fixpoint_monitor(self.trainer)

    def before_validate(self):
        self._check_ckpt()


def _is_checkpoint_file(path) -> bool:
    """Whether ``--ckpt_path`` names a file (not one of Lightning's keywords: last, best, ...)."""
    return path is not None and path not in ("last", "best", "hpc", "registry") and not str(path).startswith("registry:")


def check_writable(folder: str) -> None:
    """Raise ``ValueError`` naming ``folder`` unless files can be created in it (it is created)."""
    import tempfile

    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".nsr-write-check.")
        os.close(fd)
        os.remove(tmp)
    except OSError as e:
        raise ValueError(f"cannot write to the output folder {folder}: {e.strerror or e}") from None


def _ensure_fixpoint_monitor(trainer) -> None:
    """Every fit logs the fixpoint scalars and prints the summary, even if a config forgot the monitor."""
    from lightning.pytorch.callbacks import Checkpoint

    from nsr.callbacks import FixpointMonitor

    if any(isinstance(c, FixpointMonitor) for c in trainer.callbacks):
        return
    where = next((i for i, c in enumerate(trainer.callbacks) if isinstance(c, Checkpoint)), len(trainer.callbacks))
    trainer.callbacks.insert(where, FixpointMonitor())


_NOISE = re.compile(r"^(Does not validate against any of the Union subtypes|Subtypes: |Errors:|Given value type: |"
                    r"Given value: |Expected a <class 'NoneType'>)")


def one_line(message: str, limit: int = 300) -> str:
    """A jsonargparse or validation message folded into one line: the dotted key it concerns, then
    what is wrong with it (union bookkeeping dropped).

    >>> one_line('Parser key "model":\\n  Errors:\\n    - Problem with given class_path \\'M\\':\\n        Option \\'foo\\' is not accepted')
    "model.init_args: Option 'foo' is not accepted"
    >>> one_line('Parser key "config": File does not exist: x.yaml')
    'config: File does not exist: x.yaml'
    """
    path, leaves = [], []
    for raw in str(message).splitlines():
        line = raw.strip().lstrip("-").strip()
        if not line or _NOISE.match(line):
            continue
        m = re.fullmatch(r'Parser key "([^"]+)":(.*)', line)
        if m:
            path.append(m.group(1))
            if m.group(2).strip():
                leaves.append(m.group(2).strip())
            continue
        if re.fullmatch(r"Problem with given class_path '[^']+':", line):
            path.append("init_args")
            continue
        leaves.append(line)
    text = "; ".join(dict.fromkeys(leaves)) or re.sub(r"\s+", " ", str(message)).strip()
    text = re.sub(r"<class '(?:\w+\.)*(\w+)'>", r"\1", text)
    if path:
        text = ".".join(path) + ": " + text
    text = re.sub(r"\s+", " ", text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _user_errors():
    from jsonargparse import ArgumentError

    errors = [ArgumentError, argparse.ArgumentError, ValueError, FileNotFoundError]
    try:
        from lightning.fabric.utilities.exceptions import MisconfigurationException

        errors.append(MisconfigurationException)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


def cli(args=None) -> NSRCLI:
    """Run LightningCLI on ``args`` (a list of strings; default the command line)."""
    return NSRCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        trainer_defaults=TRAINER_DEFAULTS,
        parser_kwargs={"exit_on_error": False, "prog": "nsr", "description": DESCRIPTION},
        args=args,
    )


def main(args=None) -> int:
    """Entry point of the ``nsr`` console script. Returns the exit status (0 on success, 2 on a
    user error, reported in one line)."""
    argv = sys.argv[1:] if args is None else [str(a) for a in args]
    if argv and argv[0] == "experiment":
        from nsr import experiments

        try:
            return experiments.main(argv[1:]) or 0
        except SystemExit as e:  # argparse's --help and usage errors
            return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    debug = os.environ.get("NSR_DEBUG", "") not in ("", "0")
    tips = _DropTips()
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(tips)
    with warnings.catch_warnings():
        for pattern in _QUIET:
            warnings.filterwarnings("ignore", message=pattern)
        try:
            cli(None if args is None else argv)
        except SystemExit as e:  # --help, --print_config
            return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except _user_errors() as e:
            if debug:
                raise
            print(f"error: {one_line(str(e))}", file=sys.stderr)
            return 2
        finally:
            logging.getLogger("lightning.pytorch.utilities.rank_zero").removeFilter(tips)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
