"""Organism networks (docs/organisms.md): a host whose connections are self-replicating particles.
Hand-built hosts give the output worked out by hand; a particle alone equals itself inside the host;
the replication gradient is self-training's; runs log, checkpoint and load back."""
from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger

import nsr
from conftest import scalars
from nsr.callbacks import FixpointMonitor
from nsr.data_tasks import TaskDataModule
from nsr.fixpoints import FixpointClass, classify
from nsr.modules import OrganismModule
from nsr.organism import Organism, Particle, dense_forward, drop_particles, magnitude_prune, smallest
from nsr.tasks import GaussianAddition
from nsr.training import self_train


def test_hand_built_host_of_identity_particles_computes_the_dense_network_of_their_gains():
    org = Organism([2, 2, 1], activation="relu")
    # gains of layer 0 (p = i * 2 + j) and layer 1: powers of two, so every product is exact
    gains = torch.tensor([1.0, -2.0, 0.5, 4.0, 2.0, -1.0])
    w = org.particle.identity_genome(gains)
    x = torch.tensor([[1.0, 2.0], [-1.0, 0.5]])
    # by hand: h = relu(x @ [[1, -2], [0.5, 4]]) = relu([[2, 6], [-0.75, 4]]) = [[2, 6], [0, 4]];
    # out = h @ [[2], [-1]] = [[-2], [-4]]
    expected = torch.tensor([[-2.0], [-4.0]])
    for exact in (False, True):
        org.exact = exact
        assert torch.equal(org.forward(w, x), expected)
    assert (classify(org.particle, w) == FixpointClass.NONTRIVIAL).all()  # every particle replicates itself


def test_the_plain_identity_replicator_sends_nothing_through_the_host():
    org = Organism([3, 2])
    w = org.particle.identity_genome().expand(org.num_particles, -1)  # copies its weight input; gain 0
    assert torch.equal(org.forward(w, torch.randn(4, 3)), torch.zeros(4, 2))
    assert bool((org.particle.apply(w, w) == w).all())


def test_one_particle_alone_equals_itself_inside_the_host():
    g = torch.Generator().manual_seed(0)
    for activation in ("linear", "tanh"):
        org = Organism([4, 3, 2], Particle(activation=activation), activation="tanh")
        w = org.init(generator=g)
        x = torch.randn(5, 4, generator=g)
        hidden = torch.tanh(org.contributions(w, 0, x).sum(1))  # [5, 3]: the input of layer 1
        for layer, inp in ((0, x), (1, hidden)):
            start, _, n_in, n_out = org.layers[layer]
            inside = org.contributions(w, layer, inp)  # [5, n_in, n_out]
            for i in range(n_in):
                for j in range(n_out):
                    p = start + i * n_out + j
                    signal = torch.zeros(1, 5, 5)
                    signal[0, :, 4] = inp[:, i]  # (0, 0, 0, 0, x_i): the host's embedding
                    alone = org.particle.forward(w[p:p + 1], signal)[0, :, 0]
                    torch.testing.assert_close(inside[:, i, j], alone, rtol=1e-6, atol=1e-7)


def test_the_gain_shortcut_of_linear_particles_is_the_same_function():
    org = Organism([6, 5, 3])
    w = org.init(generator=torch.Generator().manual_seed(1))
    x = torch.randn(7, 6, generator=torch.Generator().manual_seed(2))
    fast = org.forward(w, x)
    org.exact = True
    torch.testing.assert_close(fast, org.forward(w, x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(org.strength(w), org.particle.gain(w).abs())


def test_replication_gradient_equals_self_training():
    org = Organism([3, 4, 2])
    w = org.init(generator=torch.Generator().manual_seed(3))
    wv = w.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(org.replication_loss(wv).sum(), wv)
    _, reference = org.particle.loss_and_grad(w, *org.particle.samples(w))  # self-training's gradient
    torch.testing.assert_close(grad, reference, rtol=1e-6, atol=1e-8)
    stepped = self_train(org.particle, w, epochs=1, lr=0.1, batch_size=None)  # one full-batch SGD step
    torch.testing.assert_close(w - 0.1 * grad, stepped, rtol=1e-6, atol=1e-7)


def test_a_step_without_task_signal_is_a_self_training_step():
    """With a zero input the task loss does not move the particles: the module's step is self-training."""
    task = GaussianAddition(train_size=4, test_size=4)
    module = OrganismModule(task=task, hidden=[3], momentum=0.0, lr=0.05, seed=1)
    w0 = module.population.clone()
    loss = module.training_step((torch.zeros(4, 2), torch.zeros(4, 1)), 0)
    loss.backward()
    with torch.no_grad():
        module.genomes -= 0.05 * module.genomes.grad
    expected = self_train(module.replicator, w0, epochs=1, lr=0.05, batch_size=None)
    torch.testing.assert_close(module.population, expected, rtol=1e-6, atol=1e-7)


def test_particle_dropout_removes_connections_and_magnitude_pruning_the_smallest():
    org = Organism([2, 2])
    w = org.particle.identity_genome(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    x = torch.tensor([[1.0, 1.0]])
    dropped = drop_particles(w, torch.tensor([True, False, False, True]))  # zero the connections 0->0 and 1->1
    assert torch.equal(org.forward(dropped, x), torch.tensor([[3.0, 2.0]]))
    K = [torch.tensor([[1.0, -5.0], [0.5, 3.0]])]
    assert torch.equal(magnitude_prune(K, 0.5)[0], torch.tensor([[0.0, -5.0], [0.0, 3.0]]))
    assert torch.equal(dense_forward(K, x), torch.tensor([[1.5, -2.0]]))
    assert smallest(torch.tensor([3.0, 1.0, 2.0]), 1 / 3).tolist() == [False, True, False]


def test_invalid_hosts_are_refused_with_the_bad_value():
    with pytest.raises(ValueError, match="widths"):
        Organism([4])
    with pytest.raises(ValueError, match="activation"):
        Organism([2, 2], activation="swish")
    with pytest.raises(ValueError, match="replication_weight"):
        OrganismModule(task=GaussianAddition(), hidden=[2], replication_weight=-1.0)


def test_tiny_fit_logs_its_scalars_and_checkpoints_the_particles(tmp_path):
    torch.set_num_threads(1)
    task = GaussianAddition(train_size=32, test_size=16)
    module = OrganismModule(task=task, hidden=[3], learn_from_rate=0.5, attacking_rate=0.2, seed=2)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="last", save_on_train_epoch_end=True)
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", devices=1, logger=TensorBoardLogger(tmp_path, name="run"),
                         callbacks=[FixpointMonitor(summary=False), ckpt], enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0)
    trainer.fit(module, datamodule=TaskDataModule(task, batch_size=8, seed=2))  # Lightning refuses differing seeds
    s = scalars(trainer.log_dir)
    for tag in ("task/loss", "task/mse", "task/test_loss", "fixpoint/nontrivial", "fixpoint/other", "train/loss",
                "organism/learn_from", "organism/attacks"):
        assert len(s[tag]) == 2, tag  # one value per epoch
    assert [h["epoch"] for h in module.history] == [1, 2]
    assert sum(module.history[-1][c] for c in ("divergent", "zero", "nontrivial", "second_order", "other")) == 9
    rep, w = nsr.load_population(tmp_path / "ckpt" / "last.ckpt")
    assert rep == Particle() and torch.equal(w, module.population)
    back = OrganismModule.load_from_checkpoint(tmp_path / "ckpt" / "last.ckpt")
    assert torch.equal(back.population, module.population) and back.history == module.history


def test_experiment_writes_dropout_beside_magnitude_pruning(tmp_path):
    import csv

    from nsr.experiments import main

    out = tmp_path / "organism"
    assert main(["organism", "--trials", "2", "--epochs", "2", "--hidden", "4", "--out", str(out), "--no-progress"]) == 0
    rows = list(csv.DictReader(open(out / "results.csv")))
    epochs = [r for r in rows if r["kind"] == "epoch"]
    assert len(epochs) == 4  # 2 seeds x 2 epochs, each with its class shares summing to 1
    assert all(abs(sum(float(r[c]) for c in ("divergent", "zero", "nontrivial", "second_order", "other")) - 1) < 1e-9
               for r in epochs)
    dropout = [r for r in rows if r["kind"] == "dropout"]
    assert dropout and all(r["dense_magnitude"] != "" and r["class_zeroed"] != "" for r in dropout)
    assert {f.name for f in out.iterdir()} >= {"results.md", "classes_per_epoch.png", "accuracy.png", "dropout.png"}
    assert "magnitude" in (out / "results.md").read_text()
