"""Lineages (nsr.lineage) and the LineageRecorder on hand-built soups of two or three particles with
known ancestry: one invariant per test, stated in its name."""
import io
import math
import warnings

import pytest
import torch

from nsr.callbacks import LineageRecorder
from nsr.lineage import CAUSES, Phylogeny, extant_ancestry, lineage_metrics, mrca
from nsr.replicators import Weightwise
from nsr.soup import SoupState, generation_step
from soup_harness import drive, drive_sharded

REP = Weightwise()
NONE = torch.tensor([-1, -1, -1])
NO = torch.tensor([False, False, False])


def genomes(P, seed=0):
    return REP.init(P, generator=torch.Generator().manual_seed(seed))


def chain():
    """Generation 1: 0 attacks 1 (node 3); generation 2: slot 1 (node 3) attacks 2 (node 4), slot 0 is
    respawned (node 5, a root). Living: slot 0 -> 5, slot 1 -> 3, slot 2 -> 4."""
    ph = Phylogeny(torch.arange(3))
    ph.record_generation(torch.tensor([-1, 0, -1]), NO, torch.arange(3))
    ph.record_generation(torch.tensor([-1, -1, 1]), torch.tensor([True, False, False]), torch.tensor([3, 1, 2]))
    return ph


def test_attack_source_names_the_attacker_whose_network_wrote_the_victims_genome():
    w = genomes(2)
    state, ev = generation_step(REP, SoupState(w.clone(), torch.arange(2), 2, 0), attacking_rate=1.0)
    assert ev["attack_source"].tolist() == [1, 0]  # two particles always attack each other
    assert torch.allclose(state.weights, REP.apply(w.flip(0), w))  # b <- N_a(b), a the named source


def test_learn_from_source_names_the_teacher_and_respawn_mask_the_slots_with_new_ids():
    w = genomes(3)
    w[2] = math.nan
    state, ev = generation_step(REP, SoupState(w.clone(), torch.arange(3), 3, 0), learn_from_rate=1.0)
    src = ev["learn_from_source"]
    assert 2 not in src.tolist() and all(src[i] != i for i in range(3))  # the divergent particle teaches no one
    assert int((src >= 0).sum()) == ev["learn_from"] > 0
    assert ev["respawn_mask"].tolist() == [False, False, True]
    assert torch.equal(ev["respawn_mask"], state.ids != torch.arange(3))
    assert ev["attack_source"].tolist() == [-1, -1, -1]


def test_an_attack_makes_a_node_whose_ancestor_is_the_attackers_genome_and_ends_the_victims():
    ph = chain()
    assert ph.ancestor.tolist() == [-1, -1, -1, 0, 3, -1]
    assert ph.origin.tolist() == [0, 0, 0, 1, 2, 2] and ph.destruction.tolist() == [2, 1, 2, -1, -1, -1]
    assert ph.depth.tolist() == [0, 0, 0, 1, 2, 0]
    assert [CAUSES[c] for c in ph.cause.tolist()] == ["initial"] * 3 + ["attack", "attack", "respawn"]
    assert ph.particle.tolist() == [0, 1, 2, 1, 2, 3] and ph.living.tolist() == [5, 3, 4]


def test_learn_from_creates_no_node_and_counts_on_the_learners_genome():
    ph = Phylogeny(torch.arange(3))
    ph.record_generation(torch.tensor([-1, 0, -1]), NO, torch.arange(3), learn_from_source=torch.tensor([-1, 2, 1]))
    assert ph.size == 4 and ph.learn_from.tolist() == [0, 0, 1, 1]  # slot 1 learned after being attacked: node 3


def test_a_slot_attacked_and_respawned_in_one_generation_leaves_a_node_born_and_ended_together():
    ph = Phylogeny(torch.arange(2))
    ph.record_generation(torch.tensor([1, -1]), torch.tensor([True, False]), torch.tensor([2, 1]))
    assert ph.ancestor.tolist() == [-1, -1, 1, -1] and ph.origin[2] == ph.destruction[2] == 1


def test_mrca_of_descendants_of_one_root_is_the_deepest_shared_ancestor():
    ph = Phylogeny(torch.arange(3))
    ph.record_generation(torch.tensor([-1, 0, 0]), NO, torch.arange(3))  # 0 -> 3 (slot 1), 0 -> 4 (slot 2)
    ph.record_generation(torch.tensor([1, -1, -1]), NO, torch.arange(3))  # 3 -> 5 (slot 0)
    assert ph.living.tolist() == [5, 3, 4] and mrca(ph) == 0
    m = lineage_metrics(ph)
    assert m["mrca_depth"] == 0 and m["mrca_age"] == 2 and m["length"] == pytest.approx((2 + 1 + 1) / 3)
    assert m["phylogenetic_richness"] == 4 and m["extant_taxa"] == 3 and m["nodes"] == 6  # {0, 3, 4, 5}


def test_living_genomes_with_different_roots_have_no_mrca():
    ph = chain()
    assert mrca(ph) == -1 and math.isnan(lineage_metrics(ph)["mrca_depth"])
    assert extant_ancestry(ph).nonzero()[:, 0].tolist() == [0, 3, 4, 5]


def test_a_single_living_lineage_is_its_own_mrca():
    ph = Phylogeny(torch.arange(2))
    ph.record_generation(torch.tensor([1, -1]), NO[:2], torch.arange(2))
    ph.record_generation(torch.tensor([-1, 0]), NO[:2], torch.arange(2))  # both slots descend from node 1
    assert ph.living.tolist() == [2, 3] and mrca(ph) == 2 and lineage_metrics(ph)["mrca_depth"] == 1


@pytest.mark.parametrize("respawn", [0.0, 0.1])
def test_the_pruned_tree_kept_while_recording_equals_the_walk_from_scratch(respawn):
    g = torch.Generator().manual_seed(3)
    P, next_id, takeovers = 9, 9, 0
    ph = Phylogeny(torch.arange(P))
    for t in range(60):  # random attacks (some slots attacked and respawned at once), respawns, learn_from
        attack = torch.where(torch.rand(P, generator=g) < 0.3, torch.randint(P, (P,), generator=g), -1)
        dead = torch.rand(P, generator=g) < respawn
        ids = ph.particle[ph.living].clone()
        ids[dead] = next_id + torch.arange(int(dead.sum()))
        next_id += int(dead.sum())
        ph.record_generation(attack, dead, ids, torch.where(torch.rand(P, generator=g) < 0.3, 0, -1))
        assert str(ph.metrics()) == str(lineage_metrics(ph))  # NaN-safe equality of every metric
        assert torch.equal(ph._tree["in_tree"][: ph.size], extant_ancestry(ph)) and ph.mrca() == mrca(ph)
        takeovers += mrca(ph) >= 0
    assert str(Phylogeny.from_state_dict(ph.state_dict()).metrics()) == str(ph.metrics())
    assert takeovers > 0 or respawn  # without respawns one lineage takes over: the walk down is exercised


def test_native_recording_writes_exactly_the_columns_of_the_torch_recording():
    from nsr.kernels import compile_enabled, set_compile
    from nsr.kernels.lineage import LIBRARY

    def record(native):
        g = torch.Generator().manual_seed(5)
        P, next_id = 64, 64
        ph = Phylogeny(torch.arange(P))  # capacity 64: growth happens while recording
        before = compile_enabled()
        set_compile(native)
        try:
            for _ in range(30):  # chains of attacks within a generation (attackers attacked), respawns
                attack = torch.where(torch.rand(P, generator=g) < 0.4, torch.randint(P, (P,), generator=g), -1)
                dead = torch.rand(P, generator=g) < 0.05
                ids = ph.particle[ph.living].clone()
                ids[dead] = next_id + torch.arange(int(dead.sum()))
                next_id += int(dead.sum())
                dist = torch.where(attack >= 0, torch.rand(P, generator=g, dtype=torch.float64), math.nan)
                ph.record_generation(attack, dead, ids, torch.where(torch.rand(P, generator=g) < 0.3, 0, -1), dist)
            assert (LIBRARY.load() is not None) == native  # the C kernels were built and used, or not
        finally:
            set_compile(before)
        return ph

    native, eager = record(True), record(False)
    for k, v in eager.state_dict().items():
        a = native.state_dict()[k]
        assert a == v if k == "time" else torch.equal(a.nan_to_num(-1.0), v.nan_to_num(-1.0)), k
    assert all(torch.equal(native._tree[k][: native.size], eager._tree[k][: eager.size]) for k in eager._tree)
    assert str(native.metrics()) == str(eager.metrics()) == str(lineage_metrics(eager))
    assert native.to_csv() == eager.to_csv()


def test_native_event_slots_are_torchs_nonzero_of_the_sources():
    from nsr.kernels.lineage import nonnegative

    g = torch.Generator().manual_seed(1)
    for P, rate in ((0, 0.5), (1, 1.0), (1000, 0.0), (1000, 0.1), (1000, 1.0)):
        src = torch.where(torch.rand(P, generator=g) < rate, torch.randint(P or 1, (P,), generator=g), -1)
        assert torch.equal(nonnegative(src), (src >= 0).nonzero()[:, 0])


def test_csv_follows_the_alife_standard_and_state_dict_round_trips():
    ph = chain()
    lines = ph.to_csv().splitlines()
    assert lines[0].split(",")[:4] == ["id", "ancestor_list", "origin_time", "destruction_time"]
    assert lines[4].startswith("3,[0],1,inf,1,attack,1,") and lines[6].startswith("5,[none],2,inf,0,respawn,3,")
    assert [l.split(",")[0] for l in ph.to_csv(extant_only=True).splitlines()[1:]] == ["0", "3", "4", "5"]
    again = Phylogeny.from_state_dict(ph.state_dict())
    assert again.to_csv() == ph.to_csv() and again.living.tolist() == ph.living.tolist()


def test_a_standard_reader_turns_the_export_into_the_known_newick_trees():
    import pandas as pd

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import alifedata_phyloinformatics_convert as apc
    df = pd.read_csv(io.StringIO(chain().to_csv()))
    df["taxon_label"] = df["id"].astype(str)
    trees = apc.alife_dataframe_to_dendropy_trees(df)
    newick = sorted(t.as_string(schema="newick").replace("[&R] ", "").strip() for t in trees)
    assert newick == ["((4)3)0;", "1;", "2;", "5;"]  # node 0's lineage 0 -> 3 -> 4; three lone roots


def test_growth_keeps_every_column_and_memory_is_reported():
    ph = Phylogeny(torch.arange(2))
    for _ in range(40):
        ph.record_generation(torch.tensor([1, 0]), torch.tensor([False, False]), torch.arange(2))
    assert ph.size == 82 and ph.depth.max() == 40 and mrca(ph) == -1  # two lineages of attackers, never joined
    assert ph.memory_bytes() >= 82 * (8 * 5 + 1 + 4 + 4)


def test_recorder_on_a_soup_records_every_attack_and_respawn_as_a_birth():
    rec = LineageRecorder()
    soup = drive(REP, [rec], 12, 5, seed=1, attacking_rate=0.3, train=1, lr=0.5)
    births = [r["births"] + r["respawned"] for r in rec.history]
    ph = rec.phylogeny
    assert ph.size == 12 + sum(births) and ph.time == 5 and (ph.destruction < 0).sum() == 12
    assert torch.equal(ph.particle[ph.living], soup.state.ids)  # each living genome sits in its particle
    attack = ph.cause == CAUSES.index("attack")
    assert bool(torch.isfinite(ph.parent_distance[attack & (ph.destruction != ph.origin)]).all())


def test_parent_distance_is_to_the_attackers_genome_at_the_generations_start():
    w = genomes(2)
    rec = LineageRecorder()
    soup = drive(REP, [rec], 2, 1, start=SoupState(w.clone(), torch.arange(2), 2, 0), attacking_rate=1.0)
    child = REP.apply(w.flip(0), w)  # two particles attack each other: b <- N_a(b), no training
    assert torch.allclose(soup.state.weights, child)
    expected = (child.double() - w.flip(0).double()).norm(dim=1).float()  # to the attacker as it was
    assert torch.equal(rec.phylogeny.parent_distance[2:], expected)


def test_recorder_of_a_soup_sharded_over_two_processes_equals_one_process():
    kw = dict(seed=2, attacking_rate=0.3, learn_from_rate=0.3, learn_from_severity=1, train=1, lr=0.5)
    one = LineageRecorder()
    drive(REP, [one], 13, 5, **kw)
    for (two,) in drive_sharded(REP, lambda: [LineageRecorder()], 13, 5, **kw):
        assert two.phylogeny.to_csv() == one.phylogeny.to_csv()
        assert str(two.history) == str(one.history)  # NaN-safe equality of every metric
    assert sum(r["births"] for r in one.history) > 0 and sum(r["respawned"] for r in one.history) > 0


def test_phylogeny_switch_off_keeps_the_cheap_metrics():
    rec = LineageRecorder(phylogeny=False)
    drive(REP, [rec], 6, 2, attacking_rate=0.5)
    assert rec.phylogeny is None and "survival" in rec.history[-1] and "mrca_depth" not in rec.history[-1]
    assert LineageRecorder(auto_limit=5)._enabled(6) is False


@pytest.mark.parametrize("key, value", [("phylogeny", "yes"), ("every_n_epochs", 0), ("auto_limit", -1)])
def test_invalid_recorder_arguments_raise_naming_the_key(key, value):
    with pytest.raises(ValueError, match=key):
        LineageRecorder(**{key: value})
