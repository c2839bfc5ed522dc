"""PeriodicCheckpoint: ``last.ckpt`` every N epochs, and always at the end of a fit."""
from __future__ import annotations

from lightning.pytorch.callbacks import ModelCheckpoint

from nsr.scalar_logs import fit_ends_after_this_epoch  # noqa: F401 - also importable from here


class PeriodicCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` (same arguments) that writes at the end of every
    ``every_n_epochs``-th epoch **and** at the end of the fit's last epoch, whatever its number:
    when ``max_epochs`` is reached, when ``StopOnInterrupt`` stops at Ctrl-C, or when another
    callback stops the fit. (``ModelCheckpoint(every_n_epochs=N)`` alone skips the final save
    unless the last epoch is a multiple of N.)

    A run's random numbers are keyed by (seed, epoch, particle), so a run killed between two
    checkpoints (SIGKILL, a crash) and resumed from the older one recomputes the lost epochs and
    ends with the same population bits; N only sets how many epochs such a restart recomputes.
    Writing ``last.ckpt`` every epoch costs more than the epoch itself for small populations."""

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self._should_skip_saving_checkpoint(trainer) or not self._should_save_on_train_epoch_end(trainer):
            return
        if self._every_n_epochs < 1:
            return
        if (trainer.current_epoch + 1) % self._every_n_epochs and not fit_ends_after_this_epoch(trainer):
            return
        candidates = self._monitor_candidates(trainer)
        self._save_topk_checkpoint(trainer, candidates)
        self._save_last_checkpoint(trainer, candidates)

    def on_train_end(self, trainer, pl_module) -> None:
        super().on_train_end(trainer, pl_module)
        # a fit that ended outside an epoch's end (e.g. max_time) still leaves its last state
        if self._every_n_epochs >= 1 and not self._should_skip_saving_checkpoint(trainer):
            candidates = self._monitor_candidates(trainer)
            self._save_topk_checkpoint(trainer, candidates)
            self._save_last_checkpoint(trainer, candidates)
