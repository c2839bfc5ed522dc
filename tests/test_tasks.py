"""Task replicators: the tasks' data and scores, the task path, training on replication + alpha * task,
the Lightning module through the real ``nsr fit`` on configs/task_*.yaml, the task_tradeoff experiment."""
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import config, scalars

from nsr.fixpoints import FixpointClass, classify
from nsr.task_replicator import PlainTaskNetwork, TaskWeightwise
from nsr.task_training import TaskBatches, combine, task_loss_and_grad, task_train, train_on_task
from nsr.tasks import Digits, GaussianAddition, Task, by_name, from_config
from nsr.training import self_train


def gen(seed):
    return torch.Generator().manual_seed(seed)


# ---- tasks ------------------------------------------------------------------------------------------
def test_gaussian_addition_targets_are_the_sum_and_splits_are_deterministic_and_distinct():
    t = GaussianAddition(train_size=16, test_size=8, seed=3)
    x, y = t.data("train")
    assert x.shape == (16, 2) and y.shape == (16, 1) and x.dtype == torch.float32
    assert torch.equal(y[:, 0], x[:, 0] + x[:, 1])
    assert torch.equal(x, GaussianAddition(train_size=16, test_size=8, seed=3).data("train")[0])
    assert not torch.equal(x[:8], t.data("test")[0])
    assert not torch.equal(x, GaussianAddition(train_size=16, seed=4).data("train")[0])
    assert t.data("val")[0].shape == (8, 2)


def test_digits_are_64_pixels_in_unit_range_10_classes_and_a_fixed_disjoint_split():
    t = Digits(seed=0)
    (x, y), (xt, yt) = t.data("train"), t.data("test")
    assert x.shape[1] == 64 and len(x) + len(xt) == 1797 and len(xt) == round(1797 * 0.3)
    assert y.dtype == torch.long and set(y.tolist()) == set(range(10))
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert torch.equal(x, Digits(seed=0).data("train")[0])
    assert not torch.equal(xt, Digits(seed=1).data("test")[0])
    train_rows = {tuple(r) for r in x.tolist()}
    assert sum(tuple(r) in train_rows for r in xt.tolist()) < 0.05 * len(xt)  # only the dataset's own duplicates


def test_loss_and_metric_are_per_particle_means_equal_to_a_loop():
    t = Digits(train_size=20)
    x, y = t.data("train")
    out = torch.randn(3, len(y), 10, generator=gen(0))
    loss, metric = t.loss(out, y), t.metric(out, y)
    for p in range(3):
        assert loss[p] == pytest.approx(float(F.cross_entropy(out[p], y)), rel=1e-6)
        assert metric[p] == pytest.approx(float((out[p].argmax(1) == y).float().mean()))
    assert t.solves(torch.tensor([0.79, 0.8])).tolist() == [False, True]
    assert GaussianAddition().solves(torch.tensor([0.02, 0.01, math.nan])).tolist() == [False, True, False]


def test_task_registry_and_config_roundtrip_and_errors():
    t = by_name("gaussian_addition", train_size=5)
    assert from_config(t.config()).data("train")[0].shape == (5, 2)
    assert isinstance(from_config({"class_path": "nsr.tasks.Digits", "init_args": {"seed": 2}}), Digits)
    for bad in ("mnist", {"class_path": "nope.Task"}):
        with pytest.raises(ValueError, match="task"):
            from_config(bad)
    with pytest.raises(ValueError, match="split"):
        t.data("holdout")
    assert issubclass(Digits, Task)


# ---- the task replicator --------------------------------------------------------------------------
def test_replication_interface_ignores_the_task_weights_and_the_identity_is_a_nontrivial_fixpoint():
    rep = TaskWeightwise(task_inputs=3, task_outputs=2)
    w = rep.identity_genome()
    assert classify(rep, w).tolist() == [FixpointClass.NONTRIVIAL]
    x, _ = rep.samples(rep.init(2, generator=gen(0)))
    a = rep.init(2, generator=gen(1))
    b = a.clone()
    K0, Kl = rep.kernels(b)[0], rep.kernels(b)[-1]
    K0[:, 4:] += 1.0  # task input rows
    Kl[:, :, 1:] += 1.0  # task output columns
    assert torch.equal(rep.forward(a, x), rep.forward(b, x))
    assert not torch.equal(rep.task_forward(a, torch.ones(4, 3)), rep.task_forward(b, torch.ones(4, 3)))


def test_a_particle_alone_equals_the_same_particle_inside_the_population():
    task = GaussianAddition(train_size=64, test_size=16)
    rep = TaskWeightwise.for_task(task)
    w = rep.init(4, generator=gen(0))
    alpha = torch.tensor([0.0, 0.5, 3.0, math.inf])
    kw = dict(epochs=5, lr=0.02, momentum=0.9, batch_size=None, task_batch_size=16)
    whole = task_train(rep, task, w, alpha=alpha, task_generator=gen(1), **kw)
    for p in range(4):
        alone = task_train(rep, task, w[p:p + 1], alpha=alpha[p:p + 1], task_generator=gen(1), **kw)
        assert torch.allclose(alone.weights, whole.weights[p:p + 1], rtol=0, atol=1e-6)
        assert torch.allclose(alone.loss, whole.loss[p:p + 1], rtol=1e-5, atol=1e-7)


def test_task_gradient_equals_autograd_of_each_network_built_from_its_genome():
    task = Digits(train_size=32)
    rep = TaskWeightwise.for_task(task, width=3, depth=2, activation="tanh")
    w = rep.init(3, generator=gen(0))
    x, y = task.data("train")
    loss, g = task_loss_and_grad(rep, task, w, x, y)
    for p in range(3):
        wp = w[p].clone().requires_grad_(True)
        (K0, K1, K2) = rep.kernels(wp[None])
        h = torch.tanh(x @ K0[0, 4:])  # task inputs enter below the four replication rows
        h = torch.tanh(h @ K1[0])
        out = torch.tanh(h @ K2[0, :, 1:])  # task outputs after the replication output
        ref = F.cross_entropy(out, y)
        (gp,) = torch.autograd.grad(ref, wp)
        assert loss[p] == pytest.approx(float(ref.detach()), rel=1e-5)
        assert torch.allclose(g[p], gp, atol=1e-6)


def test_combine_is_exactly_replication_at_alpha_zero_and_exactly_task_at_inf():
    g_rep, g_task = torch.randn(4, 5, generator=gen(0)), torch.randn(4, 5, generator=gen(1))
    alpha = torch.tensor([0.0, 1.0, 2.0, math.inf])
    for normalize in (False, True):
        g = combine(g_rep, g_task, alpha, normalize)
        assert torch.equal(g[0], g_rep[0]) and torch.equal(g[3], g_task[3])
    assert torch.allclose(combine(g_rep, g_task, alpha)[2], g_rep[2] + 2 * g_task[2])
    assert torch.allclose(combine(g_rep, g_task, alpha, True)[2], (g_rep[2] + 2 * g_task[2]) / 3)


@pytest.mark.parametrize("batch_size,momentum", [(1, 0.0), (5, 0.9), (None, 0.9)])
def test_alpha_zero_reproduces_plain_self_training_bit_for_bit(batch_size, momentum):
    task = GaussianAddition(train_size=32)
    rep = TaskWeightwise.for_task(task)
    w = rep.init(3, generator=gen(0))
    ref = self_train(rep, w, epochs=4, lr=0.02, batch_size=batch_size, momentum=momentum, generator=gen(1))
    out = task_train(rep, task, w, epochs=4, alpha=0.0, lr=0.02, batch_size=batch_size, momentum=momentum,
                     generator=gen(1), task_generator=gen(2)).weights
    assert torch.equal(out, ref)


def test_task_training_learns_the_task_and_the_plain_reference_too():
    task = GaussianAddition(train_size=128, test_size=64)
    rep = TaskWeightwise.for_task(task)
    w = rep.init(2, generator=gen(0))
    from nsr.task_training import evaluate_task

    before = evaluate_task(rep, task, w)[1]
    state = task_train(rep, task, w, epochs=300, alpha=1.0, lr=0.04, momentum=0.9, batch_size=None,
                       task_generator=gen(1))
    after = evaluate_task(rep, task, state.weights)[1]
    assert (after < 0.01 * before).all()
    plain = PlainTaskNetwork(2, 1)
    pw = train_on_task(plain, task, plain.init(2, generator=gen(3)), epochs=300, lr=0.04, momentum=0.9,
                       task_batches=TaskBatches(task, 64, gen(1)))
    assert (evaluate_task(plain, task, pw)[1] < 0.01).all()


# ---- Lightning ----------------------------------------------------------------------------------
def test_module_with_alpha_zero_equals_self_train_bit_for_bit():
    import lightning as L

    from nsr.data_tasks import TaskDataModule
    from nsr.modules import TaskReplicatorModule

    task = GaussianAddition(train_size=24, test_size=8)
    module = TaskReplicatorModule(task=task, population=3, alpha=0.0, lr=0.02, batch_size=1, seed=5)
    w0 = module.population.clone()
    dm = TaskDataModule(batch_size=8)  # the model's task: 3 steps per epoch
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        limit_val_batches=0)
    trainer.fit(module, datamodule=dm)
    g = gen(5)
    rep = module.replicator
    assert torch.equal(rep.init(3, generator=g), w0)
    assert torch.equal(module.population, self_train(rep, w0, epochs=6, lr=0.02, batch_size=1, generator=g))


@pytest.mark.parametrize("name,metric", [("task_addition", "mse"), ("task_digits", "accuracy")])
def test_task_configs_log_task_scalars_beside_the_fixpoint_scalars(nsr, name, metric):
    run = nsr("fit", "--config", config(name), "--model.init_args.population", "2", "--trainer.max_epochs", "2",
              "--trainer.limit_train_batches", "3")
    assert run.status == 0, run.err
    s = scalars(run.log_dir)
    for tag in ("task/loss", f"task/{metric}", "task/solved", "task/train_loss", "fixpoint/nontrivial", "train/loss"):
        assert [step for step, _ in s[tag]] == [1, 2], tag
    assert all(math.isfinite(v) for _, v in s["task/loss"])


def test_module_refuses_a_replicator_sized_for_another_task():
    from nsr.modules import TaskReplicatorModule

    with pytest.raises(ValueError, match="task inputs"):
        TaskReplicatorModule(task="digits", replicator=TaskWeightwise(2, 1))
    with pytest.raises(ValueError, match="alpha"):
        TaskReplicatorModule(task="gaussian_addition", alpha=-1.0)


# ---- the experiment -----------------------------------------------------------------------------
def test_task_tradeoff_experiment_writes_results_with_the_verdict_and_the_plain_reference(tmp_path):
    from nsr.experiments import main

    out = tmp_path / "tradeoff"
    assert main(["task_tradeoff", "--task", "gaussian_addition", "--width", "2", "--trials", "2", "--epochs", "20",
                 "--alphas", "0,1,inf", "--out", str(out), "--no-progress"]) == 0
    md = (out / "results.md").read_text()
    assert "Which claim holds" in md and "plain network" in md
    csv = (out / "results.csv").read_text().splitlines()
    assert len(csv) == 1 + 3 + 1 and csv[0].startswith("alpha,")
    assert (out / "pareto.png").stat().st_size > 0


def test_task_module_is_a_population_module_whose_checkpoint_resumes_only_its_task_and_size(nsr):
    from nsr.modules import PopulationModule, TaskReplicatorModule

    assert issubclass(TaskReplicatorModule, PopulationModule)
    run = nsr("fit", "--config", config("task_addition"), "--model.init_args.population", "2",
              "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2")
    assert run.status == 0, run.err
    other_size = TaskReplicatorModule(task="gaussian_addition", population=3)
    with pytest.raises(ValueError, match="holds 2 particles"):
        other_size.check_checkpoint(run.last_ckpt)
    other_task = TaskReplicatorModule(task=GaussianAddition(train_size=16, test_size=8), population=2)
    with pytest.raises(ValueError, match="task"):
        other_task.check_checkpoint(run.last_ckpt)
