"""Any torch replicator works: a fourth architecture defined outside nsr (tests/replicators_for_tests.py,
the example of docs/extending.md) self-trains, self-applies, is classified, lives in soups, runs
under ``nsr fit`` and survives a checkpoint, with nothing but its layout, ``samples`` and ``forward``."""
import re
from pathlib import Path

import pytest
import torch
from replicators_for_tests import FusedPositional, Positional

from nsr import load_population, soup
from nsr.fixpoints import FixpointClass, classify
from nsr.random import epoch_order
from nsr.replicators import Replicator, Weightwise, from_config
from nsr.training import learn_from, self_train, sgd_step, take

ROOT = Path(__file__).resolve().parents[1]


def gen(seed):
    return torch.Generator().manual_seed(seed)


def test_the_extending_guide_shows_the_tested_file_verbatim():
    doc = (ROOT / "docs" / "extending.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", doc, flags=re.S)
    assert (ROOT / "tests" / "replicators_for_tests.py").read_text() in blocks


def test_self_training_through_autograd_is_sgd_on_the_mse_of_its_own_samples():
    rep = Positional(activation="tanh")
    w = rep.init(6, generator=gen(0))
    got = self_train(rep, w, epochs=2, lr=0.05, batch_size=2, generator=gen(1))
    ref, g1 = w, gen(1)
    for _ in range(2):
        x, y = rep.samples(ref)
        for idx in epoch_order(6, x.shape[1], True, g1).split(2, dim=1):
            with torch.enable_grad():
                wv = ref.detach().requires_grad_(True)
                loss = (rep.forward(wv, take(x, idx)) - take(y, idx)).pow(2).flatten(1).mean(1).sum()
                (g,) = torch.autograd.grad(loss, wv)
            ref, _ = sgd_step(ref, g, None, 0.05, 0.0)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-7)
    assert not torch.equal(got, w)


def test_a_particle_alone_learns_from_a_teacher_as_inside_the_population():
    rep = Positional()
    w, t = rep.init(5, generator=gen(2)), rep.init(5, generator=gen(3))
    whole = learn_from(rep, w, t, epochs=2, batch_size=None)
    alone = learn_from(rep, w[3:4], t[3:4], epochs=2, batch_size=None)
    assert torch.equal(whole[3:4], alone)


def test_the_default_self_application_is_the_outputs_on_the_genome_samples():
    rep = Positional()
    w = rep.init(4, generator=gen(4))
    assert torch.equal(rep.apply(w, w), rep.forward(w, rep.samples(w)[0])[:, :, 0])
    identity = torch.zeros(1, rep.num_weights)
    identity[0, [0, 6]] = 1.0  # the first hidden unit copies w_k, the output copies that unit
    assert torch.equal(rep.apply(identity, identity), identity)
    assert classify(rep, identity).tolist() == [FixpointClass.NONTRIVIAL]
    assert classify(rep, torch.zeros(1, rep.num_weights)).tolist() == [FixpointClass.ZERO]


def test_a_kernel_family_trains_the_same_network_as_autograd():
    w = Positional().init(7, generator=gen(5))
    auto = self_train(Positional(), w, epochs=3, lr=0.05, momentum=0.5, generator=gen(6))
    fused = self_train(FusedPositional(), w, epochs=3, lr=0.05, momentum=0.5, generator=gen(6))
    torch.testing.assert_close(fused, auto, rtol=1e-6, atol=1e-7)


def test_a_soup_of_the_new_architecture_runs_its_generations():
    rep = Positional()
    state = soup.initial_state(rep, 12, seed=1)
    for _ in range(2):
        state, events = soup.generation_step(rep, state, seed=1, attacking_rate=0.3, learn_from_rate=0.3, train=1)
    assert state.weights.shape == (12, rep.num_weights) and torch.isfinite(state.weights).all()
    assert events["attacks"] > 0


def test_the_class_path_is_the_import_path_and_from_config_rebuilds_it():
    rep = Positional(width=4, activation="tanh")
    assert rep.class_path == "replicators_for_tests.Positional"
    assert rep.to_config() == {"class_path": "replicators_for_tests.Positional",
                               "init_args": {"width": 4, "activation": "tanh"}}
    assert from_config(rep.to_config()) == rep
    assert Weightwise().class_path == "nsr.replicators.Weightwise"
    for path in ("nsr.replicators.Weightwise", "weightwise", "nsr.replicators.weightwise.Weightwise"):
        assert from_config({"class_path": path, "init_args": {"width": 3}}) == Weightwise(width=3)


@pytest.mark.parametrize("path, says", [("no_such_module.Rep", "does not import"),
                                        ("replicators_for_tests.Nope", "does not import"),
                                        ("torch.nn.Linear", "not a subclass"),
                                        ("nsr.replicators.Convolutional", "unknown architecture")])
def test_from_config_refuses_a_bad_class_path_in_one_line(path, says):
    with pytest.raises(ValueError, match=says) as e:
        from_config({"class_path": path})
    assert "\n" not in str(e.value) and path in str(e.value)


def test_nsr_fit_trains_it_from_a_config_and_the_checkpoint_brings_it_back(nsr, tmp_path):
    cfg = tmp_path / "positional.yaml"
    cfg.write_text("""\
seed_everything: 0
model:
  class_path: nsr.modules.ReplicatorModule
  init_args:
    replicator:
      class_path: replicators_for_tests.Positional
      init_args: {width: 2, activation: linear}
    population: 3
data:
  class_path: nsr.data.SelfReplicationDataModule
  init_args: {batch_size: 1, shuffle: true}
trainer:
  max_epochs: 2
  accelerator: cpu
  devices: 1
  reload_dataloaders_every_n_epochs: 1
  callbacks:
    - class_path: lightning.pytorch.callbacks.ModelCheckpoint
      init_args: {save_last: true}
""")
    run = nsr("fit", "--config", cfg)
    assert run.status == 0, run.err
    rep, w = load_population(run.last_ckpt)
    assert type(rep) is Positional and rep == Positional(width=2)
    assert w.shape == (3, rep.num_weights) and torch.isfinite(w).all()
    assert isinstance(rep, Replicator)
