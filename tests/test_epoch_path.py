"""The per-epoch path of a small population (``nsr fit`` of the paper's run) computes exactly what
the general functions do: the native fixpoint tests and sums, the visiting orders drawn for many
epochs at once, the fused epoch without torch-made samples, and TensorBoard's checksums in C."""
import math
import random

import pytest
import torch

from nsr.kernels import build
from nsr.kernels.classify import fixpoint_tests
from nsr.kernels.events import masked_crc32c, use_native_checksums
from nsr.metrics import population_scalars, population_states, scalars
from nsr.modules.replicator import ReplicatorModule, epoch_stream
from nsr.random import KeyedStream, epoch_order, epoch_orders
from nsr.replicators import Aggregating, Recurrent, Weightwise
from nsr.training import self_train


def _population(rep, P, g):
    """Genomes of every class: random, trained towards fixpoints, identity, zero, NaN, inf, huge, tiny."""
    w = torch.cat([rep.init(P, generator=g), self_train(rep, rep.init(P, generator=g), epochs=30, generator=g)])
    w[0, 0] = math.nan
    w[1, 2] = math.inf
    w[2] = 0.0
    w[3] *= 1e20
    w[4] *= 1e-6
    if hasattr(rep, "identity_genome"):
        w[5] = rep.identity_genome()[0]
    return w


@pytest.mark.parametrize("rep", [Weightwise(), Weightwise(activation="tanh"), Recurrent()], ids=repr)
@pytest.mark.parametrize("second_order", ["orbit", "same_network"])
def test_native_scalars_equal_the_torch_scalars_bit_for_bit(rep, second_order):
    g = torch.Generator().manual_seed(1)
    w = _population(rep, 12, g)
    loss = torch.rand(w.shape[0], generator=g)
    loss[3] = math.nan
    for l in (None, loss):
        fast = population_scalars(rep, w, 1e-4, second_order, l)
        ref = scalars(population_states(rep, w, 1e-4, second_order, l))
        assert fast.keys() == ref.keys()
        for k in ref:
            assert fast[k] == ref[k] or (math.isnan(fast[k]) and math.isnan(ref[k])), k


def test_native_fixpoint_tests_give_the_classes_and_distances_of_classify_and_distance():
    from nsr.fixpoints import classify_and_distance, counts

    rep = Weightwise()
    g = torch.Generator().manual_seed(2)
    w = _population(rep, 20, g)
    fw = rep.apply(w, w)
    t = fixpoint_tests(w, fw, rep.apply(fw, fw), 1e-4, per_particle=True)
    assert t is not None
    classes, d = classify_and_distance(rep, w, 1e-4)
    assert torch.equal(t.classes, classes) and torch.equal(t.distance, d)
    assert t.counts == counts(classes).tolist()
    assert set(classes.tolist()) >= {0, 1, 2}  # divergent, zero and non-trivial genomes were tested


def test_aggregating_scalars_keep_the_aggregate_scalars():
    rep = Aggregating()
    w = rep.init(6, generator=torch.Generator().manual_seed(3))
    fast, ref = population_scalars(rep, w, 1e-4), scalars(population_states(rep, w, 1e-4))
    assert fast == ref and "fixpoint/aggregate_fixpoint" in fast


@pytest.mark.parametrize("P,S", [(50, 14), (3, 200), (1, 2)])
def test_orders_drawn_for_many_epochs_equal_one_stream_per_epoch(P, S):
    ids = torch.arange(7, 7 + P)
    orders = epoch_orders(5, range(20, 31), ids, "train", S)
    for k, e in enumerate(range(20, 31)):
        assert torch.equal(orders[k], epoch_order(P, S, True, KeyedStream(5, e, ids, "train")))


def test_module_epochs_equal_keyed_self_train_across_the_orders_cache():
    """More epochs than one batch of precomputed orders, and a second module resumed mid-way."""
    from nsr.modules import replicator as mod

    rep, P, epochs = Weightwise(), 5, 12
    old = mod.ORDERS_AHEAD
    mod.ORDERS_AHEAD = P * rep.num_weights * 8  # 8 epochs per draw: the cache is refilled once
    try:
        m = ReplicatorModule(population=P, seed=4)
        for e in range(epochs):
            order = m._visiting_order(1, True)
            assert torch.equal(order, epoch_order(P, rep.num_weights, True, epoch_stream(4, e, 0, P)))
            m.epochs_trained += 1
        m.epochs_trained = 3  # a resumed run draws from its own epoch on
        assert torch.equal(m._visiting_order(1, True), epoch_order(P, rep.num_weights, True, epoch_stream(4, 3, 0, P)))
    finally:
        mod.ORDERS_AHEAD = old
    assert ReplicatorModule(population=P)._visiting_order(None, True) is None  # a full batch: no order
    assert ReplicatorModule(population=P)._visiting_order(1, False) is None


def test_tensorboard_checksums_in_c_equal_tensorboards_own():
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as reference

    if build.available():
        r = random.Random(0)
        for n in list(range(40)) + [255, 4096, 10007]:
            data = bytes(r.getrandbits(8) for _ in range(n))
            assert masked_crc32c(data) == reference(data), n
        assert use_native_checksums()
        from tensorboard.summary.writer import record_writer

        assert record_writer.masked_crc32c is masked_crc32c
    else:
        assert not use_native_checksums()


def test_a_fit_defers_boto3_until_s3_is_used(tmp_path):
    """TensorBoard imports boto3 (when installed) only to offer s3:// folders: ``nsr fit`` leaves a
    stand-in that runs the real module at its first use, and not before (inspect, TensorBoard)."""
    import subprocess
    import sys

    pkg = tmp_path / "boto3"
    pkg.mkdir()
    marker = tmp_path / "imported"
    (pkg / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\ndef client(name):\n    return 'client ' + name\n")
    code = (f"import sys; sys.path.insert(0, {str(tmp_path)!r})\n"
            "import os, inspect\n"
            "from nsr.cli import defer_s3_client\n"
            "defer_s3_client()\n"
            "import torch.utils.tensorboard\n"
            "inspect.getmodule(inspect)\n"
            f"assert not os.path.exists({str(marker)!r}), 'boto3 ran before its first use'\n"
            "from tensorboard.compat.tensorflow_stub.io import gfile\n"
            "assert gfile.S3_ENABLED and gfile.boto3.client('s3') == 'client s3'\n"
            f"assert os.path.exists({str(marker)!r})\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_an_event_file_of_the_runs_own_reads_back_in_tensorboard_with_or_without_the_native_kernels(tmp_path):
    """The per-epoch scalars' own event file: records framed as TensorBoard frames them, the same
    bytes whether the checksums are computed in C or by TensorBoard's Python, read back by
    TensorBoard with their tags, steps and values."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.compat.proto.summary_pb2 import Summary

    from nsr.kernels.events import EventFile

    data = bytes(range(200))
    native = EventFile.record(data)
    build.set_enabled(False)
    try:
        assert EventFile.record(data) == native  # TensorBoard's checksums: the same record
        events = EventFile(str(tmp_path))
        for step in range(1, 4):
            events.add(Summary(value=[Summary.Value(tag="fixpoint/nontrivial", simple_value=step / 4)]), step, 1.0)
        events.close()
    finally:
        build.set_enabled(True)
    acc = EventAccumulator(events.path)
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("fixpoint/nontrivial")] == [(1, 0.25), (2, 0.5), (3, 0.75)]
