"""Linear stability of self-application: the Jacobian against references, the hand-built fixpoint's
spectrum derived by hand, the classification, the monitor and the experiment."""
import numpy as np
import pytest
import torch
from conftest import nsr_checkpoint, scalars, shrunk, tags

from nsr.experiments.stability_search import NormalizedWeightwise
from nsr.replicators import Aggregating, Recurrent, Weightwise
from nsr.stability import (StabilityClass, classify_stability, eigenvalues, genome_gain, jacobian,
                           largest_singular_value, self_application, spectral_radius, spectrum)
from nsr.training import self_train

REPLICATORS = [Weightwise(), Weightwise(activation="tanh"), Weightwise(width=3, depth=1, activation="sigmoid"),
               Aggregating(), Aggregating(aggregator="max", activation="relu"), Recurrent(), Recurrent(activation="tanh"),
               NormalizedWeightwise()]


def _genomes(rep, P=3, seed=0):
    return rep.init(P, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("rep", REPLICATORS, ids=repr)
def test_the_differentiable_self_application_equals_apply(rep):
    w = _genomes(rep, 5)
    assert torch.allclose(self_application(rep, w), rep.apply(w, w), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("rep", REPLICATORS, ids=repr)
def test_the_jacobian_equals_central_finite_differences_in_float64(rep):
    w = _genomes(rep, 2).double()
    J = jacobian(rep, w)  # [P, W, W]
    h, W = 1e-6, rep.num_weights
    fd = torch.empty_like(J)
    for j in range(W):  # the reference: one column per perturbed weight
        e = torch.zeros(W, dtype=torch.float64)
        e[j] = h
        fd[:, :, j] = (self_application(rep, w + e) - self_application(rep, w - e)) / (2 * h)
    assert torch.allclose(J, fd, atol=1e-6, rtol=1e-6)


def test_the_analytic_weightwise_jacobian_equals_autograd():
    rep = Weightwise(width=3, depth=3)
    w = _genomes(rep, 4).double()
    ref = torch.func.jacrev(lambda v: self_application(rep, v).sum(0))(w).permute(1, 0, 2)
    assert torch.allclose(jacobian(rep, w), ref, atol=1e-12)


def test_the_second_order_jacobian_is_the_chain_rule_of_two_self_applications():
    rep = Recurrent()
    w = _genomes(rep, 2).double()
    fw = self_application(rep, w)
    assert torch.allclose(jacobian(rep, w, order=2), torch.bmm(jacobian(rep, fw), jacobian(rep, w)), atol=1e-10)


def test_the_aggregating_jacobian_has_the_spectrum_of_its_aggregate_map():
    rep = Aggregating()
    w = _genomes(rep, 3).double()
    B = torch.nn.functional.one_hot(rep.chunk_of(), rep.aggregates).double()  # [W, A]: aggregates -> chunks
    amap = torch.func.vmap(torch.func.jacrev(  # [P, A, A]: d agg(F(w + B d)) / d d at d = 0
        lambda wi, d: rep.aggregate(self_application(rep, (wi + B @ d)[None]))[0], argnums=1), in_dims=(0, None))(
        w, torch.zeros(rep.aggregates, dtype=torch.float64))
    J = jacobian(rep, w)
    assert (torch.linalg.matrix_rank(J) <= rep.aggregates).all()
    big = eigenvalues(J)[:, :rep.aggregates]  # the rest are 0
    assert torch.allclose(eigenvalues(J)[:, rep.aggregates:].abs(), torch.zeros(3, 16, dtype=torch.float64), atol=1e-8)
    assert torch.allclose(big.abs(), eigenvalues(amap).abs(), atol=1e-9)


def test_a_particle_alone_has_the_spectrum_it_has_inside_a_population():
    for rep in (Weightwise(), Aggregating(), Recurrent()):
        w = _genomes(rep, 4).double()
        J = jacobian(rep, w)
        for i in range(4):
            assert torch.allclose(jacobian(rep, w[i:i + 1])[0], J[i], atol=1e-12)


def test_the_hand_built_fixpoint_has_moduli_4_five_thirds_and_twelve_ones():
    # Derivation (docs/stability.md): at the hand-built fixpoint m = K1 K2 K3 = e_0, so
    # J = I + w (e_0 + e_8 + e_12)^T + l e_2^T + c e_4^T + u e_6^T with l, c, u the layer, cell and weight
    # id columns. Its non-unit eigenvalues are 1 + those of the 4x4 matrix C[r, s] = v_r . u_s:
    # v_0 . w = w_0 + w_8 + w_12 = 3 and the cell ids c_2, c_4, c_6 = 1/3, 2/3, 1 give 1 + 3 and 1 + 2/3.
    rep = Weightwise()
    w = rep.identity_genome().double()
    ids = rep.identifiers().double()  # [W, 3]
    U = torch.stack([w[0], ids[:, 0], ids[:, 1], ids[:, 2]], dim=1)  # [W, 4]
    V = torch.zeros(14, 4, dtype=torch.float64)
    V[[0, 8, 12], 0] = 1
    V[2, 1] = V[4, 2] = V[6, 3] = 1
    assert torch.allclose(jacobian(rep, w)[0], torch.eye(14, dtype=torch.float64) + U @ V.T, atol=1e-12)
    C = V.T @ U
    assert sorted(torch.linalg.eigvals(C).abs().tolist(), reverse=True)[:2] == pytest.approx([3.0, 2 / 3])
    moduli = spectrum(rep, w).abs()[0]
    assert moduli[:2].tolist() == pytest.approx([4.0, 5 / 3], abs=1e-7)  # the ids are float32 (1/3 to 1e-8)
    assert moduli[2:].tolist() == pytest.approx([1.0] * 12, abs=1e-6)  # a defective eigenvalue 1: rounding ~1e-8
    cls, unstable = classify_stability(spectrum(rep, w))
    assert cls.tolist() == [StabilityClass.SADDLE] and unstable.tolist() == [2]


def test_the_genome_is_an_eigenvector_with_eigenvalue_3_plus_A_at_linear_weightwise_fixpoints():
    rep = Weightwise()
    g = torch.Generator().manual_seed(0)
    w = self_train(rep, rep.init(20, generator=g), epochs=300, generator=g).double()
    # everywhere (Euler's theorem for the degree-3 and degree-4 parts): J w = 3 F(w) + A(w) w
    J, A, fw = jacobian(rep, w), genome_gain(rep, w), self_application(rep, w)
    assert torch.allclose(torch.bmm(J, w[:, :, None])[:, :, 0], 3 * fw + A[:, None] * w, atol=1e-9)
    # at the fixpoints found, F(w) = w (to the fixpoint's distance), so J w = (3 + A) w
    fix = (fw - w).abs().amax(1) < 1e-6
    assert fix.sum() >= 2
    Jw = torch.bmm(J[fix], w[fix][:, :, None])[:, :, 0]
    assert torch.allclose(Jw, (3 + A[fix])[:, None] * w[fix], atol=1e-5)
    # ... and at least W - 4 eigenvalues equal A exactly: J - A I has rank 4
    for Ji, a in zip(J[fix], A[fix]):
        assert torch.linalg.matrix_rank(Ji - a * torch.eye(14, dtype=torch.float64)) <= 4


def test_classification_of_hand_made_diagonal_jacobians():
    d = torch.tensor([[0.5, -0.9, 0.1],  # attracting
                      [1.0, 0.5, 0.2],  # marginal: one modulus at 1
                      [2.0, 0.5, -3.0],  # saddle, 2 unstable directions
                      [1.5, -2.0, 4.0],  # repelling
                      [float("nan"), 0.0, 0.0]], dtype=torch.float64)
    ev = eigenvalues(torch.diag_embed(d))
    cls, unstable = classify_stability(ev)
    assert cls.tolist() == [StabilityClass.ATTRACTING, StabilityClass.MARGINAL, StabilityClass.SADDLE,
                            StabilityClass.REPELLING, StabilityClass.UNDEFINED]
    assert unstable.tolist()[:4] == [0, 0, 2, 3]
    assert ev.abs()[2].tolist() == [3.0, 2.0, 0.5]  # sorted by modulus, largest first
    with pytest.raises(ValueError, match="tol"):
        classify_stability(ev, tol=1.5)


def test_power_iteration_finds_the_largest_singular_value():
    J = torch.randn(5, 6, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.allclose(largest_singular_value(J, 200), torch.linalg.matrix_norm(J, 2), rtol=1e-6)


def test_spectral_radius_of_a_divergent_genome_is_nan_and_of_zero_is_zero():
    rep = Weightwise()
    w = torch.cat([torch.full((1, 14), float("nan")), torch.zeros(1, 14)]).double()
    r = spectral_radius(rep, w)
    assert torch.isnan(r[0]) and r[1] == 0  # the zero genome is super-attracting: F is cubic there
    assert spectrum(rep, w[:0]).shape == (0, 14) and spectral_radius(Recurrent(), torch.zeros(0, 17)).shape == (0,)


def test_newton_converges_to_fixpoints_whatever_their_stability():
    from nsr.stability import newton_fixpoints

    for rep in (Weightwise(), Weightwise(activation="sigmoid")):
        w = newton_fixpoints(rep, _genomes(rep, 40), steps=60)
        d = (self_application(rep, w) - w).abs().amax(1)
        nontrivial = (d < 1e-10) & (w.abs().amax(1) > 1e-3)
        assert nontrivial.sum() >= 4
        r = spectral_radius(rep, w[nontrivial])
        # linear weightwise fixpoints are never attracting (docs/stability.md); the sigmoid one is
        assert (r > 1).all() if rep.activation == "linear" else (r < 1).all()


def test_the_stability_monitor_logs_its_scalars_in_a_tiny_fit(nsr, tmp_path):
    rep = Weightwise()
    ckpt = nsr_checkpoint(tmp_path / "identity.ckpt", rep, rep.identity_genome().repeat(2, 1))
    run = nsr(*shrunk("weightwise_stability", 2, 2, "--model.init_args.init_from", ckpt))
    assert run.status == 0, run.err
    s = scalars(run.log_dir)  # every 100 epochs and at the last: epoch 2
    assert s["stability/spectral_radius"] == [(2, pytest.approx(4.0))]
    assert s["stability/fixpoints"] == [(2, 1.0)] and s["stability/attracting"] == [(2, 0.0)]
    assert s["stability/saddle"] == [(2, 1.0)]
    assert "stability/spectral_radius" in tags(run.log_dir, "histograms")


def test_the_experiment_runs_tiny_and_writes_fixpoints_npz(tmp_path):
    from nsr.experiments import main

    out = tmp_path / "run"
    assert main(["stability", "--trials", "6", "--epochs", "200", "--search-trials", "4", "--search-epochs", "20",
                 "--penalty-steps", "2", "--robustness-trials", "3", "--robustness-parents", "2", "--clones", "2",
                 "--noise", "1e-2,1e-3,1e-4", "--fit-range", "2,4", "--trained-fit-range", "2,4",
                 "--families", "weightwise,weightwise-sigmoid+newton,weightwise-tanh+penalty,weightwise+denoise",
                 "--newton-steps", "5",
                 "--out", str(out), "--no-progress"]) == 0
    z = np.load(out / "fixpoints.npz")
    N = len(z["architecture"])
    assert z["architecture"][0] == "hand_built" and z["spectral_radius"][0] == pytest.approx(4.0)
    assert z["weights"].shape[0] == z["spectral_radius"].shape[0] == z["num_weights"].shape[0] == N
    for i in range(N):  # every row's spectral radius recomputes from its weights
        rep = {"hand_built": Weightwise(), "weightwise": Weightwise(), "aggregating": Aggregating(),
               "recurrent": Recurrent()}[str(z["architecture"][i])]
        w = torch.from_numpy(z["weights"][i:i + 1, :z["num_weights"][i]])
        assert np.isnan(z["weights"][i, z["num_weights"][i]:]).all()
        assert float(spectral_radius(rep, w)[0]) == pytest.approx(float(z["spectral_radius"][i]), rel=1e-9)
    md = (out / "results.md").read_text()
    assert "Robustness predicted from the spectrum" in md and "Search for attracting replicators" in md
    for png in ("spectral_radius.png", "eigenvalues.png", "robustness_prediction.png"):
        assert (out / png).stat().st_size > 1000


def test_the_experiment_rejects_an_unknown_family(tmp_path, capsys):
    from nsr.experiments import main

    with pytest.raises(SystemExit) as e:
        main(["stability", "--families", "weightwise-cubic", "--out", str(tmp_path / "r"), "--no-progress"])
    assert e.value.code == 2 and "weightwise-cubic" in capsys.readouterr().err
