"""TrajectoryRecorder: genomes of a few particles over a fit, drawn in one PCA of weight space."""
from __future__ import annotations

import os

import torch
from lightning.pytorch.callbacks import Callback

from nsr.callbacks.figures import trajectory_figures
from nsr.callbacks.logs import gather_ids, log_figure, second_order, tensorboard_writer, time_unit
from nsr.fixpoints import CLASS_NAMES, classify
from nsr.scalar_logs import flush_scalar_events, log_histogram


class TrajectoryRecorder(Callback):
    """Every ``every_n_epochs`` epochs, the genomes of up to ``max_particles`` particles (the first
    slots of the population) and a histogram of the population's weights. At the end: one PCA
    fitted on all recorded genomes, and the trajectories in it (2D, and 3D with time as the third
    axis; a colour per particle id, start ``o`` and end ``x``), plus an embedding-projector snapshot
    of the final population labelled by fixpoint class. A slot whose particle is replaced gets a new
    id and so a new trajectory: trajectories never jump."""

    def __init__(self, every_n_epochs: int = 10, max_particles: int = 50, histograms: bool = True,
                 embedding: bool = True, max_embedding: int = 5000):
        for name, v in (("every_n_epochs", every_n_epochs), ("max_particles", max_particles), ("max_embedding", max_embedding)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        self.every_n_epochs, self.max_particles = every_n_epochs, max_particles
        self.histograms, self.embedding, self.max_embedding = histograms, embedding, max_embedding
        self.times: list[int] = []
        self.ids: list[torch.Tensor] = []  # LongTensor[n] per record
        self.weights: list[torch.Tensor] = []  # [n, W] per record

    def record(self, trainer, pl_module, time: int) -> None:
        w = pl_module.gather_population()  # collective
        ids = gather_ids(pl_module, w.shape[0])  # may be a collective too: every rank calls it
        if not trainer.is_global_zero:
            return
        n = min(self.max_particles, w.shape[0])
        self.times.append(int(time))
        self.ids.append(ids[:n].clone())
        self.weights.append(w[:n].detach().float().cpu().clone())
        if self.histograms:
            values = w[:10_000].detach().cpu().flatten()
            values = values[values.abs() < 1e20]  # finite, and inside TensorBoard's default buckets (it fails beyond)
            if values.numel():
                log_histogram(trainer, "weights/population", values, time)

    def on_train_start(self, trainer, pl_module):
        if not self.times:  # a resumed run already holds its earlier records
            self.record(trainer, pl_module, trainer.current_epoch)

    def on_train_epoch_end(self, trainer, pl_module):
        epoch = trainer.current_epoch + 1
        last = trainer.max_epochs is not None and epoch >= trainer.max_epochs
        if epoch % self.every_n_epochs == 0 or last:
            self.record(trainer, pl_module, epoch)

    def on_train_end(self, trainer, pl_module):
        flush_scalar_events(trainer)  # the histograms recorded so far
        w = pl_module.gather_population()
        ids = gather_ids(pl_module, w.shape[0])  # may be a collective too: every rank calls it
        log_dir = trainer.log_dir
        if not trainer.is_global_zero:
            return
        if self.times and self.times[-1] != trainer.current_epoch:
            self.times.append(trainer.current_epoch)
            n = min(self.max_particles, w.shape[0])
            self.ids.append(ids[:n].clone())
            self.weights.append(w[:n].detach().float().cpu().clone())
        writer = tensorboard_writer(trainer)
        times, ids_all, weights = self.trajectories()
        figs = trajectory_figures(times, ids_all, weights, time_label=time_unit(pl_module),
                                  end_classes=self.end_classes(pl_module, times, ids_all, weights))
        if figs is not None:
            for name, fig in zip(("pca_2d", "pca_3d"), figs):
                log_figure(writer, f"trajectories/{name}", fig, trainer.current_epoch,
                           os.path.join(log_dir, f"trajectories_{name}.png") if log_dir else None)
        if self.embedding and writer is not None:
            w = w[: self.max_embedding].detach().cpu()
            classes = classify(pl_module.replicator, w, pl_module.epsilon, second_order=second_order(pl_module))
            labels = [CLASS_NAMES[c] for c in classes.tolist()]
            writer.add_embedding(torch.nan_to_num(w.float(), nan=0.0, posinf=0.0, neginf=0.0), metadata=labels,
                                 tag="population", global_step=trainer.current_epoch)

    @staticmethod
    def end_classes(pl_module, times, ids, weights) -> dict:
        """``{id: FixpointClass}``: the class of every trajectory's last recorded genome."""
        if not ids.numel():
            return {}
        order = torch.argsort(times, stable=True)
        last = {}
        for row, pid in zip(order.tolist(), ids[order].tolist()):
            last[pid] = row  # the latest record of each id wins
        rows = torch.tensor(list(last.values()))
        classes = classify(pl_module.replicator, weights[rows], pl_module.epsilon, second_order=second_order(pl_module))
        return dict(zip(last.keys(), classes.tolist()))

    def trajectories(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """All records stacked: ``times [N]``, ``ids [N]``, ``weights [N, W]``."""
        if not self.times:
            return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), torch.zeros(0, 0)
        times = torch.cat([torch.full((i.shape[0],), t, dtype=torch.long) for t, i in zip(self.times, self.ids)])
        return times, torch.cat(self.ids), torch.cat(self.weights)

    def state_dict(self):
        # a few stacked tensors rather than two per record: a checkpoint is written every epoch,
        # and each tensor costs a record of its own in the file
        times, ids, weights = self.trajectories()
        sizes = torch.tensor([i.shape[0] for i in self.ids], dtype=torch.long)
        return {"times": torch.tensor(self.times, dtype=torch.long), "sizes": sizes, "ids": ids, "weights": weights}

    def load_state_dict(self, state_dict):
        sizes = state_dict["sizes"].tolist()
        self.times = state_dict["times"].tolist()
        self.ids = list(state_dict["ids"].split(sizes)) if sizes else []
        self.weights = list(state_dict["weights"].split(sizes)) if sizes else []
