"""EpochProgressBar: one progress bar over a whole fit, one tick per epoch."""
from __future__ import annotations

import sys
import time

from lightning.pytorch.callbacks import ProgressBar


class EpochProgressBar(ProgressBar):
    """One progress bar over the whole fit, one tick per epoch, with the epoch's non-trivial share
    and loss: readable for runs of thousands of short epochs."""

    def __init__(self, refresh_s: float = 0.5):
        super().__init__()
        self.refresh_s = refresh_s
        self._enabled = True
        self._bar = None

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    @property
    def is_disabled(self) -> bool:
        return not self._enabled

    def on_train_start(self, trainer, pl_module):
        if not self._enabled or not trainer.is_global_zero:
            return
        from tqdm.auto import tqdm

        total = trainer.max_epochs if trainer.max_epochs is not None and trainer.max_epochs > 0 else None
        self._bar = tqdm(total=total, initial=trainer.current_epoch, desc="fit", unit="epoch", dynamic_ncols=True,
                         mininterval=self.refresh_s, file=sys.stderr, leave=True)

    def _set_postfix(self, trainer) -> None:
        metrics = trainer.progress_bar_metrics
        post = {}
        if "fixpoint/nontrivial" in metrics:
            post["nontrivial"] = f"{float(metrics['fixpoint/nontrivial']):.2f}"
        if "train/loss" in metrics:
            post["loss"] = f"{float(metrics['train/loss']):.2e}"
        self._bar.set_postfix(post, refresh=False)

    def on_train_epoch_end(self, trainer, pl_module):
        if self._bar is None:
            return
        # the monitor and the epoch's loss are logged after this hook: these are the previous epoch's;
        # written only when the bar is about to be redrawn (formatting them costs more than a small epoch)
        if time.time() - self._bar.last_print_t >= self.refresh_s:  # tqdm keeps time.time()
            self._set_postfix(trainer)
        self._bar.update(1)

    def on_train_end(self, trainer, pl_module):
        if self._bar is not None:
            self._set_postfix(trainer)  # the final bar shows the last epoch's values, as the summary does
            self._bar.close()
            self._bar = None

    def on_exception(self, trainer, pl_module, exception):
        self.on_train_end(trainer, pl_module)
