"""The task soup: guides, learn_from through the teacher's answers, soups independent of their batch,
and the task_soup experiment."""
import pytest
import torch

from nsr.random import KeyedStream
from nsr.task_replicator import TaskWeightwise
from nsr.task_soup import guide_slots, initial_task_soup, task_generation_step, teacher_answers
from nsr.task_training import evaluate_task
from nsr.tasks import Digits, GaussianAddition
from nsr.training import self_train

TASK = GaussianAddition(train_size=64, test_size=64)
REP = TaskWeightwise.for_task(TASK)


def solver() -> torch.Tensor:
    """``[1, W]``: copies w_k through hidden unit 0 and adds the two task inputs through hidden unit 1."""
    w = REP.identity_genome()
    K0, K1, K2 = REP.kernels(w)
    K0[0, 4, 1] = K0[0, 5, 1] = 1.0  # x1 + x2 -> hidden unit 1
    K1[0, 1, 1] = 1.0
    K2[0, 1, 1] = 1.0  # hidden unit 1 -> the task output
    return w


def test_the_hand_built_solver_is_a_nontrivial_fixpoint_that_solves_the_task():
    from nsr.fixpoints import FixpointClass, classify

    w = solver()
    assert classify(REP, w).tolist() == [FixpointClass.NONTRIVIAL]
    assert float(evaluate_task(REP, TASK, w)[1][0]) < 1e-10


def test_guides_are_the_first_slots_of_every_soup():
    assert guide_slots(6, 2, soup_size=3).tolist() == [True, True, False, True, True, False]
    assert not guide_slots(4, 0).any()
    with pytest.raises(ValueError, match="guides"):
        guide_slots(6, 4, soup_size=3)
    with pytest.raises(ValueError, match="soup_size"):
        guide_slots(6, 1, soup_size=4)


def test_learn_from_passes_the_teachers_answers_on_right_or_wrong():
    w = torch.cat([solver(), REP.init(1, generator=torch.Generator().manual_seed(0))])
    state = initial_task_soup(REP, 2, guides=0)._replace(weights=w)
    before = evaluate_task(REP, TASK, w)[1]
    state, events = task_generation_step(REP, TASK, state, learn_from_rate=1.0, learn_from_severity=100,
                                         learn_from_alpha=10.0, train=0, momentum=0.9)
    after = evaluate_task(REP, TASK, state.weights)[1]
    assert events["learn_from"] == 2
    assert after[1] < 0.05 * before[1]  # the learner now adds its inputs
    assert after[0] > 100 * before[0] + 1e-6  # learn_from copies answers, right or wrong: the solver, learning
    # from the random particle (as it was before this phase), loses the task


def test_without_learn_from_nonguides_self_train_exactly_as_plain_self_training():
    state = initial_task_soup(REP, 4, guides=1, soup_size=2, seed=3)
    new, _ = task_generation_step(REP, TASK, state, seed=3, learn_from_rate=0.0, train=3, lr=0.02, momentum=0.0,
                                  batch_size=1, soup_size=2)
    ref = self_train(REP, state.weights, epochs=3, lr=0.02, batch_size=1,
                     generator=KeyedStream(3, 0, torch.arange(4), "task_soup/train"))
    others = ~state.guide
    assert torch.equal(new.weights[others], ref[others])
    assert not torch.equal(new.weights[state.guide], ref[state.guide])  # guides also learned the task


def test_a_soup_alone_equals_the_same_soup_inside_a_batch_of_soups():
    kw = dict(seed=1, learn_from_rate=0.5, learn_from_severity=3, train=2, attacking_rate=0.3, momentum=0.9)
    one = initial_task_soup(REP, 3, guides=1, soup_size=3, seed=1)
    many = initial_task_soup(REP, 9, guides=1, soup_size=3, seed=1)
    assert torch.equal(one.weights, many.weights[:3])
    for _ in range(3):
        one, _ = task_generation_step(REP, TASK, one, soup_size=3, **kw)
        many, _ = task_generation_step(REP, TASK, many, soup_size=3, **kw)
    assert torch.allclose(one.weights, many.weights[:3], rtol=0, atol=1e-6)


def test_teacher_answers_are_labels_for_classification_and_outputs_for_regression():
    x = TASK.data("train")[0][:5]
    assert teacher_answers(REP, TASK, solver(), x).shape == (1, 5, 1)
    digits = Digits(train_size=10)
    rep = TaskWeightwise.for_task(digits)
    labels = teacher_answers(rep, digits, rep.init(2), digits.data("train")[0])
    assert labels.shape == (2, 10) and labels.dtype == torch.long


def test_task_soup_experiment_writes_results(tmp_path):
    from nsr.experiments import main

    out = tmp_path / "soup"
    assert main(["task_soup", "--trials", "3", "--soup-size", "3", "--generations", "4", "--record-every", "2",
                 "--epochs", "2", "--learn-from-severity", "2", "--out", str(out), "--no-progress"]) == 0
    md = (out / "results.md").read_text()
    assert "Does the guide spread the task?" in md
    rows = (out / "results.csv").read_text().splitlines()
    assert len(rows) == 1 + 3 and "guided_solved" in rows[0]
    assert (out / "task_soup.png").stat().st_size > 0


def test_protected_guides_only_teach():
    state = initial_task_soup(REP, 6, guides=1, soup_size=3, seed=2)
    new, events = task_generation_step(REP, TASK, state, seed=2, learn_from_rate=1.0, learn_from_severity=2, train=0,
                                       soup_size=3, guides_learn_from=False)
    assert events["learn_from"] == 4  # every non-guide learned, no guide did
    assert torch.equal(new.weights[state.guide], state.weights[state.guide])
    assert not torch.equal(new.weights[~state.guide], state.weights[~state.guide])
