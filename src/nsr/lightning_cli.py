"""``nsr fit`` and ``nsr validate``: LightningCLI in subclass mode, with nsr's defaults and checks.

    nsr fit --config weightwise
    nsr fit --config weightwise --trainer.default_root_dir runs          # runs/lightning_logs/version_N
    nsr fit --config weightwise --ckpt_path lightning_logs/version_0/checkpoints/last.ckpt --trainer.max_epochs 2000
    nsr validate --config weightwise --ckpt_path lightning_logs/version_0/checkpoints/last.ckpt

Where a run goes: TensorBoard logs, ``config.yaml`` and ``checkpoints/last.ckpt`` go to
``<default_root_dir>/lightning_logs/version_N`` (``default_root_dir`` defaults to the current
folder; an explicit ``--trainer.logger.init_args.save_dir`` wins). Resuming (``--ckpt_path``) or
validating a checkpoint that lies in a run folder continues that folder and its curves;
``--new_version true`` (or an explicit logger version) starts a new one.

Optimizers and schedulers are not options: a population trains with its module's own elementwise
SGD (``lr``, ``momentum``), so that every particle trains exactly as it would alone; ``--optimizer``
and ``--lr_scheduler`` are refused in one line.
"""
from __future__ import annotations

import importlib
import logging
import os
import re
import sys
import warnings

from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback

from nsr.atomic import AtomicWriteError
from nsr.messages import one_line

DESCRIPTION = ("nsr: self-replicating neural networks. `nsr fit --config weightwise` trains (`nsr configs` lists the "
               "shipped configs); `nsr validate ... --ckpt_path CKPT` measures a checkpoint. The model's own options: "
               "`nsr fit --model.help nsr.modules.ReplicatorModule` (or nsr.modules.SoupModule).")
EPILOG = ("The model's own options (population, lr, momentum, seed, ...) are listed by `nsr fit --model.help "
          "nsr.modules.ReplicatorModule` and `nsr fit --model.help nsr.modules.SoupModule`; set them as "
          "--model.init_args.NAME. `nsr --help` lists every command.")

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
    r".*The dirpath has changed from .* won't be reloaded.*",  # --new_version: a resumed run in a new folder
    r".*Checkpoint directory .* exists and is not empty.*",  # a resumed run continues its own folder
    r".*LightningCLI's args parameter is intended.*",  # nsr.cli.main hands over its arguments
]


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("\U0001f4a1 Tip")


class RunConfig(SaveConfigCallback):
    """Keeps the resolved config as ``config.yaml`` in the run folder. ``fit`` (also a resumed
    one) writes it; ``validate`` writes it only into a folder that has none, so validating a
    run's checkpoint keeps the config the run was trained with."""

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage != "fit":
            log_dir = trainer.log_dir
            if log_dir is not None and os.path.isfile(os.path.join(log_dir, self.config_filename)):
                return
        super().setup(trainer, pl_module, stage)


class NSRCLI(LightningCLI):
    """LightningCLI whose ``data:`` section is optional (a soup makes its own samples) and which
    checks what it can before any work starts: a writable log folder, a readable checkpoint of the
    same architecture, something to train. Subcommands: ``fit`` and ``validate``."""

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {"fit": {"model", "train_dataloaders", "val_dataloaders", "datamodule"},
                "validate": {"model", "dataloaders", "datamodule"}}

    def add_core_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(self.trainer_class, "trainer")
        parser.set_defaults({"trainer." + k: v for k, v in self.trainer_defaults.items() if k != "callbacks"})
        parser.add_lightning_class_args(self._model_class, "model", subclass_mode=True)
        parser.add_lightning_class_args(self._datamodule_class, "data", subclass_mode=True, required=False)

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument("--new_version", type=bool, default=False,
                            help="with --ckpt_path: log into a new version folder instead of continuing the "
                                 "checkpoint's own run folder")

    def _section(self):
        return self.config.get(str(self.subcommand), self.config) if self.subcommand else self.config

    def before_instantiate_classes(self) -> None:
        cfg = self._section()
        trainer = cfg.get("trainer")
        if trainer is None:
            return
        epochs = trainer.get("max_epochs")
        if self.subcommand == "fit" and epochs == 0:
            raise ValueError("trainer.max_epochs: 0 trains nothing; give a number of epochs >= 1 (-1: no limit)")
        if isinstance(epochs, int) and epochs < -1:
            raise ValueError(f"trainer.max_epochs: must be a number of epochs >= 1 (-1: no limit), got {epochs}")
        _place_logger(cfg, getattr(self, "_checkpoint", None))
        # `--trainer.enable_progress_bar false` also drops a config's progress-bar callback
        # (Lightning refuses the combination)
        if trainer.get("enable_progress_bar") is not False or not trainer.get("callbacks"):
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

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except ValueError as e:  # a module's or callback's own check: name the full key
            raise ValueError(_qualified(one_line(str(e)), self._section())) from None

    def _parse_ckpt_path(self) -> None:
        # Lightning would overwrite the configured model with the checkpoint's hyper-parameters;
        # nsr keeps the config as given and instead checks that the checkpoint fits it
        # (before_fit / before_validate). Here: the file must be a readable nsr checkpoint.
        if not self.config.get("subcommand"):
            return
        path = self.config[self.config.subcommand].get("ckpt_path")
        if _is_checkpoint_file(path):
            from nsr.checkpoint import read_checkpoint

            self._checkpoint = read_checkpoint(path)

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


def _place_logger(cfg, checkpoint=None) -> None:
    """Where the run's TensorBoard folder goes: ``default_root_dir`` (unless the logger's
    ``save_dir`` was given), and for ``--ckpt_path`` inside a run folder, that run folder (named
    as the run named it, so that ``ModelCheckpoint`` recognises its folder and rewrites the same
    file), unless ``--new_version``, a logger version, or a root elsewhere was asked for."""
    logger = cfg["trainer"].get("logger")
    if logger is None or isinstance(logger, (bool, list)) or "init_args" not in logger:
        return
    args = logger["init_args"]
    if "save_dir" not in args:
        return
    root = cfg["trainer"].get("default_root_dir")
    explicit = root is not None or os.fspath(args["save_dir"]) != "."
    if root is not None and os.fspath(args["save_dir"]) == ".":
        args["save_dir"] = os.fspath(root)
    run_dir = _run_folder(cfg.get("ckpt_path"), checkpoint)
    if run_dir is None or cfg.get("new_version") or args.get("version") is not None or "name" not in args:
        return
    parent = os.path.dirname(run_dir)
    here = os.path.join(os.fspath(args["save_dir"]), args["name"] or "")
    if not explicit or os.path.realpath(here) == os.path.realpath(parent):  # a folder asked for elsewhere wins
        args["save_dir"], args["name"], args["version"] = os.path.dirname(parent) or ".", os.path.basename(parent), \
            os.path.basename(run_dir)


def _run_folder(ckpt_path, checkpoint=None):
    """The run folder a checkpoint was written into (``<run>/checkpoints/x.ckpt``, ``<run>`` holding
    the run's ``config.yaml`` or ``hparams.yaml``), spelled as the run's ``ModelCheckpoint`` spelled
    it where that names the same folder; None if the checkpoint lies elsewhere."""
    if not _is_checkpoint_file(ckpt_path) or not os.path.isfile(ckpt_path):
        return None
    folder = os.path.dirname(ckpt_path)
    run = os.path.dirname(os.path.abspath(folder))
    if os.path.basename(os.path.abspath(folder)) != "checkpoints":
        return None
    if not any(os.path.isfile(os.path.join(run, f)) for f in ("config.yaml", "hparams.yaml")):
        return None
    for state in ((checkpoint or {}).get("callbacks") or {}).values():
        saved = state.get("dirpath") if isinstance(state, dict) else None
        if isinstance(saved, str) and os.path.realpath(saved) == os.path.realpath(folder):
            return os.path.dirname(saved)
    return os.path.dirname(folder) if os.path.dirname(folder) else run


def _qualified(message: str, cfg) -> str:
    """``message`` of a module's check (``population must be ...``) with the full key it concerns
    (``model.init_args.population must be ...``) when its first word names one."""
    m = re.match(r"(\w+)\b", message)
    if not m:
        return message
    word = m.group(1)
    candidates = []
    for section in ("model", "data"):
        node = cfg.get(section)
        if node is not None and "init_args" in node and node["init_args"] is not None:
            candidates.append((f"{section}.init_args", node["init_args"]))
            inner = node["init_args"].get("replicator") if hasattr(node["init_args"], "get") else None
            if inner is not None and "init_args" in inner:
                candidates.append((f"{section}.init_args.replicator.init_args", inner["init_args"]))
    if cfg.get("trainer") is not None:
        candidates.append(("trainer", cfg["trainer"]))
    for prefix, node in candidates:
        try:
            if word in node:
                return f"{prefix}.{message}"
        except TypeError:
            continue
    return message


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
    """Every fit logs the fixpoint scalars and prints the summary, even if a config forgot the
    monitor, and ends cleanly on Ctrl-C (``StopOnInterrupt``)."""
    from lightning.pytorch.callbacks import Checkpoint

    from nsr.callbacks import FixpointMonitor, StopOnInterrupt

    where = next((i for i, c in enumerate(trainer.callbacks) if isinstance(c, Checkpoint)), len(trainer.callbacks))
    if not any(isinstance(c, FixpointMonitor) for c in trainer.callbacks):
        trainer.callbacks.insert(where, FixpointMonitor())
        where += 1
    if not any(isinstance(c, StopOnInterrupt) for c in trainer.callbacks):  # after the monitor: its summary first
        trainer.callbacks.insert(where, StopOnInterrupt())


def _user_errors():
    from jsonargparse import ArgumentError
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    import argparse

    return (ArgumentError, argparse.ArgumentError, ValueError, FileNotFoundError, MisconfigurationException)


def cli(args=None) -> NSRCLI:
    """Run LightningCLI on ``args`` (a list of strings; default the command line)."""
    return NSRCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_callback=RunConfig,
        save_config_kwargs={"overwrite": True},
        trainer_defaults=TRAINER_DEFAULTS,
        auto_configure_optimizers=False,  # no --optimizer / --lr_scheduler: see the module docstring
        parser_kwargs={"exit_on_error": False, "prog": "nsr", "description": DESCRIPTION,
                       "fit": {"description": DESCRIPTION, "epilog": EPILOG},
                       "validate": {"description": DESCRIPTION, "epilog": EPILOG}},
        args=args,
    )


def run(argv: list[str], debug: bool = False) -> int:
    """``nsr fit|validate ...``: the exit status (0 on success, 2 on a user error, 1 when a file
    cannot be written, 130 after Ctrl-C), every failure reported in one line ``error: ...``."""
    tips = _DropTips()
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(tips)
    with warnings.catch_warnings():
        for pattern in _QUIET:
            warnings.filterwarnings("ignore", message=pattern)
        try:
            done = cli(argv)
            if any(getattr(c, "interrupted", False) for c in getattr(done.trainer, "callbacks", [])):
                return 130  # Ctrl-C: stopped cleanly, resumable
        except SystemExit as e:  # --help, --print_config, Ctrl-C
            return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except AtomicWriteError as e:  # e.g. no space left while writing a checkpoint
            if debug:
                raise
            print(f"error: {e}", file=sys.stderr)
            return 1
        except _user_errors() as e:
            if debug:
                raise
            print(f"error: {one_line(str(e))}", file=sys.stderr)
            return 2
        finally:
            logging.getLogger("lightning.pytorch.utilities.rank_zero").removeFilter(tips)
    return 0
