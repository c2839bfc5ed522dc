/* A phylogeny's attack births and learn_from counts (nsr.lineage.Phylogeny.record_events) in one
   loop per event list instead of a torch pass per column: see nsr/kernels/lineage.py. Integer
   bookkeeping and copied floats only, so the columns hold exactly what the torch code writes. */
#include <stdint.h>

#define AHEAD 16 /* rows ahead whose random-access entries are prefetched */

/* The A attacks of a generation (attacked[i] ascending, written by the genome of slot attacker[i]):
   node size + i is born in slot attacked[i], child of the attacker's genome at the phase's start. */
int nsr_lineage_attacks(int64_t A, const int64_t* attacked, const int64_t* attacker, const float* dist,
                        int64_t* living, int64_t size, int64_t t, int64_t cause_attack,
                        int64_t* ancestor, int64_t* origin, int64_t* destruction, int64_t* depth,
                        int64_t* particle, int8_t* cause, float* parent_distance, int32_t* learn_from,
                        uint8_t* in_tree, int32_t* kids, int64_t* kid_sum, int64_t* old, int64_t* old_depth) {
    for (int64_t i = 0; i < A; ++i) { /* parents first: living changes below */
        if (i + AHEAD < A) __builtin_prefetch(&living[attacker[i + AHEAD]]);
        ancestor[size + i] = living[attacker[i]];
    }
    for (int64_t i = 0; i < A; ++i) {
        if (i + AHEAD < A) {
            const int64_t pa = ancestor[size + i + AHEAD], oa = living[attacked[i + AHEAD]];
            __builtin_prefetch(&depth[pa]);
            __builtin_prefetch(&kids[pa], 1);
            __builtin_prefetch(&kid_sum[pa], 1);
            __builtin_prefetch(&depth[oa]);
            __builtin_prefetch(&destruction[oa], 1);
            __builtin_prefetch(&particle[oa]);
        }
        const int64_t n = size + i, p = ancestor[n], o = living[attacked[i]];
        old[i] = o;
        old_depth[i] = depth[o];
        destruction[o] = t;
        origin[n] = t;
        destruction[n] = -1;
        depth[n] = depth[p] + 1;
        particle[n] = particle[o];
        cause[n] = (int8_t)cause_attack;
        parent_distance[n] = dist[i];
        learn_from[n] = 0;
        in_tree[n] = 1;
        kids[n] = 0;
        kid_sum[n] = 0;
        kids[p] += 1;
        kid_sum[p] += n;
        living[attacked[i]] = n;
    }
    return 0;
}

/* learn_from[living[learners[i]]] += 1: each learner's genome learned once more */
int nsr_lineage_learners(int64_t L, const int64_t* learners, const int64_t* living, int32_t* learn_from) {
    for (int64_t i = 0; i < L; ++i) {
        if (i + AHEAD < L) __builtin_prefetch(&learn_from[living[learners[i + AHEAD]]], 1);
        learn_from[living[learners[i]]] += 1;
    }
    return 0;
}

/* The genomes dead[i] (distinct, just ended) leave the pruned tree when childless there, and so on up
   their lineages while an ancestor is dead (destruction >= 0) and childless: the same nodes leave and
   the same counts change as in the torch walk by depth levels (the set that leaves is determined;
   counts[0..2] -= nodes that left, roots that left, the sum of those roots' ids). */
int nsr_lineage_prune(int64_t D, const int64_t* dead, const int64_t* ancestor, const int64_t* destruction,
                      uint8_t* in_tree, int32_t* kids, int64_t* kid_sum, int64_t* counts) {
    int64_t left = 0, roots = 0, root_sum = 0;
    for (int64_t i = 0; i < D; ++i) {
        if (i + AHEAD < D) {
            __builtin_prefetch(&kids[dead[i + AHEAD]]);
            __builtin_prefetch(&in_tree[dead[i + AHEAD]]);
            __builtin_prefetch(&ancestor[dead[i + AHEAD]]);
        }
        int64_t node = dead[i];
        if (!in_tree[node] || kids[node] != 0) continue;
        for (;;) { /* node leaves; then its parent, if now childless and dead */
            in_tree[node] = 0;
            ++left;
            const int64_t up = ancestor[node];
            if (up < 0) {
                ++roots;
                root_sum += node;
                break;
            }
            kids[up] -= 1;
            kid_sum[up] -= node;
            if (kids[up] != 0 || destruction[up] < 0) break;
            node = up;
        }
    }
    counts[0] = left;
    counts[1] = roots;
    counts[2] = root_sum;
    return 0;
}

/* out[0 .. count - 1] = the indices p < P with source[p] >= 0, ascending (torch's
   (source >= 0).nonzero() in one pass); returns count in counts[0]. */
int nsr_lineage_nonnegative(int64_t P, const int64_t* source, int64_t* out, int64_t* counts) {
    int64_t n = 0;
    for (int64_t p = 0; p < P; ++p) {
        out[n] = p;
        n += source[p] >= 0;
    }
    counts[0] = n;
    return 0;
}
