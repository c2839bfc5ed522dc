"""StopOnInterrupt: Ctrl-C ends a fit cleanly, at the end of the epoch in progress."""
from __future__ import annotations

import os
import signal
import threading

from lightning.pytorch.callbacks import Callback

from nsr.callbacks.logs import time_unit


class StopOnInterrupt(Callback):
    """Ctrl-C (SIGINT) during a fit finishes the epoch (generation) in progress, writes its
    checkpoint, runs the end of the fit (the summary, the figures) and prints the command that
    resumes the run; ``interrupted`` is then True. A second Ctrl-C interrupts at once, as
    Lightning does. Stopping between epochs, never inside one, keeps every file whole: no
    KeyboardInterrupt lands inside a checkpoint or TensorBoard write."""

    def __init__(self):
        self.interrupted = False
        self._previous = None

    def _handle(self, signum, frame):
        self.interrupted = True
        self._restore()  # a second Ctrl-C raises KeyboardInterrupt

    def _restore(self):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def on_train_start(self, trainer, pl_module):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)

    def on_train_epoch_end(self, trainer, pl_module):
        stop = self.interrupted
        if trainer.world_size > 1:  # every rank stops after the same epoch, if any rank was interrupted
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if stop:
            self.interrupted = True
            trainer.should_stop = True

    def on_train_end(self, trainer, pl_module):
        self._restore()

    def on_exception(self, trainer, pl_module, exception):
        self._restore()
        if isinstance(exception, KeyboardInterrupt) and trainer.is_global_zero:
            print(resume_hint(trainer, pl_module), flush=True)

    def on_fit_end(self, trainer, pl_module):
        if self.interrupted and trainer.is_global_zero:
            print(resume_hint(trainer, pl_module), flush=True)


def resume_hint(trainer, pl_module) -> str:
    """How to go on after an interrupted fit: ``nsr fit --config <run>/config.yaml --ckpt_path <ckpt>``."""
    ckpt = trainer.checkpoint_callback
    path = (getattr(ckpt, "last_model_path", "") or getattr(ckpt, "best_model_path", "")) if ckpt else ""
    done = f"nsr: interrupted after {trainer.current_epoch} {time_unit(pl_module)}s"
    if not path or not os.path.isfile(path):
        return f"{done}, before the first checkpoint: nothing to resume"
    log_dir = trainer.loggers[0].log_dir if trainer.loggers else None  # no broadcast: other ranks may be gone
    config = os.path.join(log_dir, "config.yaml") if log_dir else ""
    config = config if config and os.path.isfile(config) else "CONFIG"
    return f"{done}; resume with\n  nsr fit --config {config} --ckpt_path {path}"
