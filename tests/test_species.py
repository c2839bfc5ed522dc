"""Species and diversity (nsr.species) and the SpeciesMonitor on hand-built soups of two or three
particles: metrics against hand computation, one invariant per test, stated in its name."""
import math

import pytest
import torch

from nsr.callbacks import SpeciesMonitor, muller_figure
from nsr.replicators import Weightwise
from nsr.species import (SpeciesRegistry, abundances, dbscan_keys, diversity, function_keys, genome_keys,
                         higher_order_entropy, pairwise_distance, quantise_bytes, sample_indices, sample_pairs,
                         sampled_diversity)
from soup_harness import drive, drive_sharded

REP = Weightwise()


def copier(a=1.0, b=1.0, c=1.0):
    """The hand-built weightwise fixpoint (genome indices 0, 8, 12), scaled a, b, c per layer."""
    w = torch.zeros(1, 14)
    w[0, 0], w[0, 8], w[0, 12] = a, b, c
    return w


def test_genomes_in_one_tolerance_cell_share_a_species_and_divergent_ones_have_none():
    w = torch.tensor([[0.10, 1.0], [0.1004, 1.0], [0.12, 1.0], [math.inf, 1.0]])
    k = genome_keys(w, 0.01)
    assert k[0] == k[1] and k[0] != k[2] and k[3] == -1 and bool((k[:3] >= 0).all())


def test_networks_with_different_weights_and_the_same_function_share_a_function_species():
    w = torch.cat([copier(), copier(2.0, 0.5, 1.0), copier(2.0, 1.0, 1.0)])  # the first two compute x -> x
    probes = REP.init(2, generator=torch.Generator().manual_seed(0))
    by_function, by_genome = function_keys(REP, w, probes, 1e-3), genome_keys(w, 1e-3)
    assert by_function[0] == by_function[1] != by_function[2]
    assert len(set(by_genome.tolist())) == 3


def test_dbscan_joins_a_chain_of_neighbours_that_the_grid_splits():
    w = torch.tensor([[0.0, 0.0], [0.008, 0.0], [0.016, 0.0], [1.0, 1.0]])
    d, g = dbscan_keys(w, 0.01), genome_keys(w, 0.01)
    assert d[0] == d[1] == d[2] != d[3] and len(set(g[:3].tolist())) > 1
    assert d[0] == g[:3].min()  # a cluster is named by its smallest grid key


def test_registry_keeps_a_species_id_while_it_lives_and_numbers_new_ones_by_first_particle():
    r = SpeciesRegistry(forget_after=1)
    assert r.assign(torch.tensor([50, 7, 50, -1]), 0).tolist() == [0, 1, 0, -1]
    assert r.assign(torch.tensor([9, 7, 8]), 1).tolist() == [2, 1, 3]
    assert r.assign(torch.tensor([7]), 2).tolist() == [1]
    assert r.assign(torch.tensor([50]), 3).tolist() == [4]  # unseen for 2 > forget_after generations: a new id


def test_diversity_indices_equal_the_hand_computation():
    d = diversity(abundances(torch.tensor([3, 3, 8, 5, -1])))  # species 3 x2, 8, 5
    p = torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64)
    assert d["species"] == 3 and d["largest_share"] == 0.5
    assert d["shannon"] == pytest.approx(float(-(p * p.log()).sum())) == pytest.approx(1.5 * math.log(2))
    assert d["simpson"] == pytest.approx(1 - (0.25 + 0.0625 + 0.0625))
    assert math.isnan(diversity(torch.zeros(0, dtype=torch.long))["shannon"])


def test_small_soups_use_every_pair_and_large_ones_distinct_keyed_pairs():
    assert sample_pairs(3, 10).tolist() == [[0, 1], [0, 2], [1, 2]]
    p = sample_pairs(1000, 500, seed=1, time=4)
    assert p.shape == (500, 2) and bool((p[:, 0] != p[:, 1]).all()) and int(p.max()) < 1000
    assert torch.equal(p, sample_pairs(1000, 500, seed=1, time=4)) and not torch.equal(p, sample_pairs(1000, 500, seed=1, time=5))
    for size in (1000, 10**7):  # dense (a permutation) and sparse (first distinct keyed draws)
        s = sample_indices(size, 100, seed=1, time=4)
        assert s.numel() == 100 and s.unique().numel() == 100 and bool((s[1:] > s[:-1]).all()) and int(s.max()) < size
        assert torch.equal(s, sample_indices(size, 100, seed=1, time=4))
        assert not torch.equal(s, sample_indices(size, 100, seed=1, time=5))


def test_a_sparse_keyed_sample_is_uniform_over_the_particles():
    hits = torch.cat([sample_indices(100_000, 500, seed=0, time=t) for t in range(200)]) // 10_000  # [10^5] in 10 bins
    share = torch.bincount(hits, minlength=10).double() / hits.numel()
    assert bool(((share - 0.1).abs() < 0.006).all())  # 6 standard errors of a bin's share


def test_sampled_diversity_is_exact_with_every_particle_and_its_errors_match_the_spread_of_samples():
    species = torch.repeat_interleave(torch.arange(4), torch.tensor([5000, 3000, 1500, 500]))  # shares .5 .3 .15 .05
    whole = sampled_diversity(abundances(species), 10_000)
    assert whole["sampled"] == 10_000 and whole["shannon_se"] == whole["simpson_se"] == whole["largest_share_se"] == 0
    assert whole["shannon"] == pytest.approx(diversity(abundances(species))["shannon"])
    runs = [sampled_diversity(abundances(species[sample_indices(10_000, 400, seed=0, time=t)]), 10_000)
            for t in range(300)]
    for key in ("shannon", "simpson", "largest_share"):
        values = torch.tensor([r[key] for r in runs], dtype=torch.float64)
        se = torch.tensor([r[key + "_se"] for r in runs]).mean()
        assert float(values.std()) == pytest.approx(float(se), rel=0.2)  # the stated error is the real spread
        assert float(values.mean()) == pytest.approx(whole[key], abs=3 * float(se) / math.sqrt(300) + 2 / 400)


def test_pairwise_distance_of_three_genomes_is_the_mean_of_the_hand_computed_distances():
    w = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0]])
    pairs = sample_pairs(3, 10)
    assert float(pairwise_distance(w[pairs[:, 0]], w[pairs[:, 1]]).mean()) == pytest.approx((5 + 1 + math.sqrt(18)) / 3)


def test_higher_order_entropy_is_zero_for_no_order_and_positive_for_repeated_random_blocks():
    assert quantise_bytes(torch.tensor([[-2.0, 0.0, 2.0, 9.0, math.nan]])).tolist() == [[0, 128, 255, 255, 128]]
    g = torch.Generator().manual_seed(0)
    block = torch.randint(0, 256, (4096,), generator=g, dtype=torch.uint8)
    iid = higher_order_entropy(torch.randint(0, 256, (65536,), generator=g, dtype=torch.uint8))
    repeated = higher_order_entropy(block.repeat(16))
    assert iid["entropy_per_byte"] == pytest.approx(8, abs=0.01) and iid["higher_order_entropy"] < 0.01
    assert repeated["entropy_per_byte"] == pytest.approx(8, abs=0.1) and repeated["higher_order_entropy"] > 5
    alternating = higher_order_entropy(torch.tensor([0, 1] * 500, dtype=torch.uint8), codec="bz2")
    assert alternating["entropy_per_byte"] == pytest.approx(1.0)


def test_monitor_on_a_soup_of_identical_copies_sees_one_species_with_zero_spread():
    start = drive(REP, [], 3, 0).state._replace(weights=copier().repeat(3, 1))
    mon = SpeciesMonitor()
    drive(REP, [mon], 3, 2, start=start, attacking_rate=1.0)  # the copy network copies its victim: nothing changes
    for row in mon.history:
        assert row["species"] == 1 and row["shannon"] == 0 and row["simpson"] == 0 and row["largest_share"] == 1
        assert row["pairwise_distance"] == 0
    assert mon.history[-1]["species_survival"] == 1 and [m[1].tolist() for m in mon.muller] == [[0]] * 3


def test_monitor_of_a_soup_sharded_over_two_processes_equals_one_process():
    kw = dict(seed=4, attacking_rate=0.3, learn_from_rate=0.3, train=1, lr=0.5)
    make = lambda: [SpeciesMonitor(by="function", tolerance=0.05, max_pairs=20, max_entropy_particles=7,  # noqa: E731
                                   max_species_particles=9)]  # species of a keyed sample of 9 of the 13
    one = make()[0]
    drive(REP, [one], 13, 4, **kw)
    for (two,) in drive_sharded(REP, make, 13, 4, **kw):
        assert str(two.history) == str(one.history)
        assert all(torch.equal(a[1], b[1]) and torch.equal(a[2], b[2]) for a, b in zip(two.muller, one.muller))
    assert one.history[-1]["species"] >= 1 and one.history[-1]["sampled"] == 9 and one.history[-1]["shannon_se"] >= 0


def test_a_sampled_monitor_keeps_the_species_id_of_a_soup_of_copies():
    start = drive(REP, [], 5, 0).state._replace(weights=copier().repeat(5, 1))
    mon = SpeciesMonitor(max_species_particles=3)
    drive(REP, [mon], 5, 3, start=start, attacking_rate=1.0)
    for row in mon.history:
        assert row["sampled"] == 3 and row["species"] == 1 and row["largest_share"] == 1 and row["largest_share_se"] == 0
    assert [m[1].tolist() for m in mon.muller] == [[0]] * 4 and [m[3] for m in mon.muller] == [3] * 4


def test_muller_plot_stacks_the_chosen_species_and_the_rest():
    records = [(0, torch.tensor([0, 1]), torch.tensor([2, 1]), 4), (1, torch.tensor([1, 2]), torch.tensor([3, 1]), 4)]
    fig = muller_figure(records, k=2)
    ax = fig.axes[0]
    assert len(ax.collections) == 3 and [t.get_text() for t in ax.get_legend().get_texts()] == \
        ["species 0", "species 1", "others / none"]


@pytest.mark.parametrize("key, value", [("by", "shape"), ("tolerance", 0), ("codec", "gzip"), ("max_pairs", 0),
                                        ("muller_species", 0), ("entropy_limit", -1.0), ("max_species_particles", 0)])
def test_invalid_monitor_arguments_raise_naming_the_key(key, value):
    with pytest.raises(ValueError, match=key):
        SpeciesMonitor(**{key: value})
