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
            const int64_t pa = ancestor[size + i + AHEAD];
            __builtin_prefetch(&depth[pa]);
            __builtin_prefetch(&kids[pa], 1);
            __builtin_prefetch(&kid_sum[pa], 1);
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
