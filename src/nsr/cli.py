"""The ``nsr`` command. ``fit`` and ``validate`` are LightningCLI (:mod:`nsr.lightning_cli`); the
other commands are nsr's own:

    nsr fit --config weightwise                      # a shipped config by name (nsr configs lists them)
    nsr fit --config configs/weightwise.yaml --model.init_args.population 500 --trainer.max_epochs 200
    nsr fit --config weightwise --ckpt_path lightning_logs/version_0/checkpoints/last.ckpt   # resume
    nsr validate --config weightwise --ckpt_path lightning_logs/version_0/checkpoints/last.ckpt
    nsr experiment NAME [...]                        # the paper's experiments
    nsr configs                                      # the shipped configs
    nsr inspect CKPT                                 # what a checkpoint holds
    nsr export CKPT --format npz|csv                 # its genomes, particle ids and classes

This module imports neither torch nor Lightning: each command imports what it needs when it runs,
so ``nsr --help`` answers at once. Mistakes in a command line or config (an unknown key, a bad
value, a missing file, a wrong checkpoint) print one line ``error: ...`` and exit with status 2;
set ``NSR_DEBUG=1`` for the full traceback.
"""
from __future__ import annotations

import os
import re
import sys

from nsr.messages import one_line

COMMANDS = {
    "fit": "train a population or a soup: nsr fit --config weightwise",
    "validate": "measure a checkpoint: nsr validate --config weightwise --ckpt_path CKPT",
    "experiment": "run one of the paper's experiments: nsr experiment NAME (nsr experiment --help lists them)",
    "configs": "list the configs shipped with nsr (nsr fit --config NAME runs one)",
    "inspect": "what a checkpoint holds: architecture, epoch, population, class shares, distance, config",
    "export": "a checkpoint's genomes, particle ids and classes as a file: nsr export CKPT --format npz|csv",
}

HELP = "\n".join([
    "usage: nsr COMMAND [options]",
    "",
    "nsr: self-replicating neural networks, alone and in soups.",
    "",
    "commands:",
    *(f"  {name:<11} {text}" for name, text in COMMANDS.items()),
    "",
    "`nsr COMMAND --help` shows a command's options. fit and validate are LightningCLI: any",
    "--trainer.* option works, and `nsr fit --model.help nsr.modules.ReplicatorModule` (or",
    "nsr.modules.SoupModule) lists a module's own options. Runs go to lightning_logs/ under",
    "--trainer.default_root_dir (default: the current folder).",
])

FIT_NEEDS_CONFIG = ("nsr {cmd} needs a config: `nsr {cmd} --config weightwise` (`nsr configs` lists the shipped ones, "
                    "`nsr {cmd} --help` the options)")


def _debug() -> bool:
    return os.environ.get("NSR_DEBUG", "") not in ("", "0")


def _exit_code(e: SystemExit) -> int:
    return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)


def _fail(message: str) -> int:
    print(f"error: {one_line(message)}", file=sys.stderr)
    return 2


def defer_s3_client() -> None:
    """Where boto3 is installed, TensorBoard's file layer imports it at start-up (0.2 s, longer
    than a small fit's figures) only to offer ``s3://`` log folders. Put a stand-in in its place
    that imports the real boto3 the first time anything of it is used (an ``s3://`` folder), so a
    run that never touches S3 never pays for it. Nothing changes where boto3 is not installed or
    already imported."""
    import importlib
    import importlib.util
    import types

    spec = None if "boto3" in sys.modules else importlib.util.find_spec("boto3")
    if spec is None:
        return

    class DeferredModule(types.ModuleType):
        def __getattr__(self, name):
            if sys.modules.get(self.__name__) is self:
                del sys.modules[self.__name__]
            return getattr(importlib.import_module(self.__name__), name)

    stand_in = DeferredModule("boto3")
    stand_in.__file__ = spec.origin  # what inspect reads of every module in sys.modules, without importing
    sys.modules["boto3"] = stand_in


def main(args=None) -> int:
    """Entry point of the ``nsr`` console script. Returns the exit status (0 on success, 2 on a
    user error, reported in one line)."""
    argv = sys.argv[1:] if args is None else [str(a) for a in args]
    if not argv or argv[0] in ("-h", "--help"):
        print(HELP)
        return 0 if argv else 2
    if argv[0] == "--version":
        from nsr import __version__

        print(f"nsr {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    if command == "experiment":
        return _experiment(rest)
    if command in ("configs", "inspect", "export"):
        return _tool(command, rest)
    if command in ("fit", "validate"):
        helping = any(a in ("-h", "--help", "--print_config") or a.startswith(("--print_config=", "--model.help"))
                      for a in rest)
        if not helping and not any(a in ("-c", "--config") or a.startswith(("--config=", "--model")) for a in rest):
            return _fail(FIT_NEEDS_CONFIG.format(cmd=command))
        try:
            rest = resolve_config_arguments(rest)
        except ValueError as e:
            return _fail(str(e))
        defer_s3_client()
        from nsr.lightning_cli import run

        return run([command, *rest], debug=_debug())
    return _fail(f"unknown command {command!r}; the commands are {', '.join(COMMANDS)} (nsr --help)")


def _experiment(argv: list[str]) -> int:
    from nsr import experiments

    try:
        return experiments.main(argv) or 0
    except SystemExit as e:  # argparse's --help and usage errors
        return _exit_code(e)


def _tool(command: str, argv: list[str]) -> int:
    from nsr import checkpoint_tools

    try:
        return checkpoint_tools.main(command, argv) or 0
    except SystemExit as e:
        return _exit_code(e)
    except (ValueError, FileNotFoundError) as e:
        if _debug():
            raise
        return _fail(str(e))
    except OSError as e:
        if _debug():
            raise
        return _fail(f"{e.filename or command}: {e.strerror or e}")


_NEGATIVE = re.compile(r"^-(?:(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?|inf(?:inity)?|nan)$", re.IGNORECASE)


def resolve_config_arguments(argv: list[str]) -> list[str]:
    """``argv`` with every ``--config NAME`` that names no file but a shipped config (``weightwise``
    or ``weightwise.yaml``) replaced by that config's path, and every ``--key -1e-4`` written
    ``--key=-1e-4`` (argparse takes a negative number in exponent form for an option).
    ``ValueError`` for a bare name that is neither a file nor a shipped config.

    >>> resolve_config_arguments(["--model.init_args.epsilon", "-1e-4", "--trainer.max_epochs", "-1"])
    ['--model.init_args.epsilon=-1e-4', '--trainer.max_epochs=-1']
    """
    from nsr.shipped_configs import resolve

    out, i = [], 0
    while i < len(argv):
        a = argv[i]
        if a in ("-c", "--config") and i + 1 < len(argv):
            out += [a, resolve(argv[i + 1])]
            i += 2
            continue
        if a.startswith("--") and "=" not in a and i + 1 < len(argv) and _NEGATIVE.match(argv[i + 1]):
            out.append(f"{a}={argv[i + 1]}")  # argparse would take -1e-4 for an option
            i += 2
            continue
        if a.startswith("--config="):
            out.append("--config=" + resolve(a.split("=", 1)[1]))
        else:
            out.append(a)
        i += 1
    return out


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
