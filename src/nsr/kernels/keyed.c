/* Keyed random streams (nsr.random.KeyedStream) without temporaries: see nsr/kernels/keyed.py.
   The same splitmix64 arithmetic as the torch implementation, in uint64 (the int64 tensors there
   hold the same bit patterns), so every number is identical. */
#include <stdint.h>
#include <string.h>

#define GOLDEN 0x9E3779B97F4A7C15ULL
#define C1 0xBF58476D1CE4E5B9ULL
#define C2 0x94D049BB133111EBULL

static inline uint64_t splitmix64(uint64_t z) {
    z += GOLDEN;
    z = (z ^ (z >> 30)) * C1;
    z = (z ^ (z >> 27)) * C2;
    return z ^ (z >> 31);
}

/* keys[p] = splitmix64(ids[p] * C2 + base): a stream's per-particle keys */
int nsr_keyed_keys(int64_t P, const int64_t* ids, int64_t base, int64_t* keys) {
    for (int64_t p = 0; p < P; ++p) keys[p] = (int64_t)splitmix64((uint64_t)ids[p] * C2 + (uint64_t)base);
    return 0;
}

/* out[p, j] = splitmix64(keys[p] + (counter + j) * GOLDEN), j < n: KeyedStream.bits */
int nsr_keyed_bits(int64_t P, const int64_t* keys, int64_t counter, int n, int64_t* out) {
    for (int64_t p = 0; p < P; ++p) {
        const uint64_t k = (uint64_t)keys[p];
        for (int j = 0; j < n; ++j) out[p * n + j] = (int64_t)splitmix64(k + (uint64_t)(counter + j) * GOLDEN);
    }
    return 0;
}

/* out[p, j]: the top 24 bits of the same numbers as float32 in [0, 1): KeyedStream.rand */
int nsr_keyed_rand(int64_t P, const int64_t* keys, int64_t counter, int n, float* out) {
    for (int64_t p = 0; p < P; ++p) {
        const uint64_t k = (uint64_t)keys[p];
        for (int j = 0; j < n; ++j)
            out[p * n + j] = (float)(splitmix64(k + (uint64_t)(counter + j) * GOLDEN) >> 40) * (1.0f / 16777216.0f);
    }
    return 0;
}

/* order[p, :]: the indices of rand's S numbers of particle p in ascending order, equal numbers in
   index order (a stable sort); ties[p] = 1 where two numbers of the row are equal. A number's
   place is counted (how many numbers precede it): branch-free, so it vectorises; S is a genome's
   sample count, a few dozen at most. */
typedef uint32_t vu __attribute__((vector_size(64)));  /* 16 numbers of a row */
typedef int32_t vs __attribute__((vector_size(64)));

/* rows of up to 16 numbers: the places of all 16 at once, one vector step per number i */
static int place_row16(const uint32_t* v, int S, int64_t* order) {
    vu x;
    memcpy(&x, v, sizeof x);
    const vs lane = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    vs before = {0}, equal = {0};
    for (int i = 0; i < S; ++i) {
        const vs lt = (vs)((vu){0} + v[i] < x), eq = (vs)((vu){0} + v[i] == x);
        before -= lt | (eq & (i < lane));       /* comparisons are -1 where true */
        equal -= eq;
    }
    int tie = 0;
    for (int j = 0; j < S; ++j) { order[before[j]] = j; tie |= equal[j] > 1; }
    return tie;
}

static int place_row(const uint32_t* v, int S, int64_t* order) {
    int tie = 0;
    for (int j = 0; j < S; ++j) {
        const uint32_t x = v[j];
        int before = 0, equal = 0;
        for (int i = 0; i < S; ++i) {
            before += (v[i] < x) | ((v[i] == x) & (i < j));
            equal += v[i] == x;
        }
        tie |= equal > 1;
        order[before] = j;
    }
    return tie;
}

int nsr_keyed_order(int64_t P, const int64_t* keys, int64_t counter, int S, int64_t* order, int8_t* ties) {
    uint32_t v[256] __attribute__((aligned(64)));
    if (S > 256) return 2;
    for (int i = 0; i < 16; ++i) v[i] = 0xFFFFFFFFu;
    for (int64_t p = 0; p < P; ++p) {
        const uint64_t k = (uint64_t)keys[p];
        for (int j = 0; j < S; ++j) v[j] = (uint32_t)(splitmix64(k + (uint64_t)(counter + j) * GOLDEN) >> 40);
        ties[p] = (int8_t)(S <= 16 ? place_row16(v, S, order + p * S) : place_row(v, S, order + p * S));
    }
    return 0;
}
