"""Callbacks that watch a population train: fixpoint scalars, the robustness test, trajectories.

They rely only on the :class:`nsr.modules.PopulationModule` contract: ``replicator``, ``epsilon``,
``population`` (this process's ``[P_local, W]`` genomes), ``gather_population()`` (the whole
``[P, W]``, a collective call: every rank makes it) and, where present, ``particle_ids`` /
``gather_particle_ids()``, ``particle_loss`` (``[P_local]``, each particle's mean loss over the
last epoch), ``second_order`` and ``time_unit``. Scalars go through the loggers; figures go to
TensorBoard and, as PNG, to the run's log folder; both only from rank 0.

One module per concept: :mod:`~nsr.callbacks.fixpoint_monitor`, :mod:`~nsr.callbacks.robustness_probe`,
:mod:`~nsr.callbacks.trajectories`, :mod:`~nsr.callbacks.stability`, :mod:`~nsr.callbacks.analytics` (lineage, species),
:mod:`~nsr.callbacks.progress`, :mod:`~nsr.callbacks.interrupt`, :mod:`~nsr.callbacks.checkpointing`, the figures
(:mod:`~nsr.callbacks.figures`) and the logging helpers (:mod:`~nsr.callbacks.logs`).
"""
from nsr.callbacks.analytics import LineageRecorder, SpeciesMonitor, muller_figure
from nsr.callbacks.checkpointing import PeriodicCheckpoint
from nsr.callbacks.figures import pca, robustness_figure, trajectory_figures
from nsr.callbacks.fixpoint_monitor import FixpointMonitor, format_summary
from nsr.callbacks.interrupt import StopOnInterrupt
from nsr.callbacks.logs import log_epoch_metrics, save_figure
from nsr.callbacks.progress import EpochProgressBar
from nsr.callbacks.robustness_probe import RobustnessProbe
from nsr.callbacks.stability import StabilityMonitor
from nsr.callbacks.trajectories import TrajectoryRecorder
from nsr.fixpoints import DEFAULT_SCALES, noise_label

__all__ = ["FixpointMonitor", "PeriodicCheckpoint", "StopOnInterrupt", "RobustnessProbe", "StabilityMonitor", "LineageRecorder", "SpeciesMonitor",
           "muller_figure", "TrajectoryRecorder", "EpochProgressBar", "format_summary",
           "log_epoch_metrics", "save_figure", "pca", "robustness_figure", "trajectory_figures", "DEFAULT_SCALES",
           "noise_label"]
