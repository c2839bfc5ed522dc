"""The published numbers (Gabor et al., ALIFE 2019 / Artificial Life 2022, and the result logs
published with the authors' code), as listed in docs/science.md."""

# Random networks after 100 self-applications, counts of 50 (divergent, zero, nontrivial, other)
APPLYING = {"trials": 50, "applications": 100, "counts": {
    "weightwise": {"divergent": 23, "zero": 27, "nontrivial": 0, "other": 0},
    "aggregating": {"divergent": 4, "zero": 46, "nontrivial": 0, "other": 0},
    "recurrent": {"divergent": 46, "zero": 4, "nontrivial": 0, "other": 0},
}}

# Self-training, 1000 epochs, counts of 50
TRAINING = {"trials": 50, "epochs": 1000, "counts": {
    "weightwise": {"divergent": 0, "zero": 0, "nontrivial": 50, "other": 0},
    "aggregating": {"divergent": 0, "zero": 0, "nontrivial": 0, "other": 50},
    "recurrent": {"divergent": 38, "zero": 0, "nontrivial": 0, "other": 12},
}}

# Mixed: share ending as a (zero or non-trivial) fixpoint, k = 0, 50, ..., 500, 20 nets each
MIXED = {"trials": 20, "rounds": 4, "trains": [50 * i for i in range(11)], "fixpoint": {
    "weightwise": [0.2, 0.3, 0.15, 0.55, 0.7, 0.85, 0.8, 0.95, 0.9, 1.0, 1.0],
    "aggregating": (0.8, 1.0),  # "0.8-1.0 throughout": a range, not a list
    "recurrent": (0.0, 0.1),    # "<= 0.1"
}}

# Robustness of the hand-built weightwise fixpoint, 100 trials per scale, up to 100 self-applications:
# scale exponent k (noise 10^-k) -> (mean, median, min, max)
ROBUSTNESS = {"trials": 100, "max_steps": 100,
              "time_to_vergence": {
                  0: (3.63, 4, 1, 8), 1: (5.02, 5, 3, 9), 2: (6.46, 7, 4, 9), 3: (8.04, 8, 6, 11),
                  4: (9.61, 10, 8, 13), 5: (11.23, 11, 9, 14), 6: (12.99, 13, 11, 16), 7: (14.58, 14, 13, 20),
                  8: (21.95, 22, 18, 30), 9: (26.45, 26, 23, 34)},
              "time_as_fixpoint": {
                  0: (0, 0, 0, 0), 1: (0, 0, 0, 0), 2: (0, 0, 0, 0), 3: (0, 0, 0, 0), 4: (0.04, 0, 0, 2),
                  5: (1.38, 1, 0, 3), 6: (3.23, 3, 2, 6), 7: (4.84, 5, 4, 9), 8: (11.91, 11, 9, 21),
                  9: (16.47, 16, 14, 24)}}

# Learn-from soup: 10 particles, learn_from_rate 0.1, 100 generations, 10 soups;
# non-trivial fixpoints per soup for severity 0, 10, ..., 100 (zero fixpoints: none)
LEARN_FROM_SOUP = {"soups": 10, "particles": 10, "generations": 100, "learn_from_rate": 0.1,
                   "severities": [10 * i for i in range(11)],
                   "nontrivial_per_soup": [0.0, 1.2, 5.2, 7.4, 8.1, 9.1, 9.6, 9.8, 10.0, 9.9, 9.9],
                   "zero_per_soup": [0.0] * 11}

# Mixed soup: 10 particles, attack 0.1, train t per generation, 5 generations, 10 soups;
# non-trivial fixpoints per soup for t = 0, 10, ..., 100
MIXED_SOUP = {"soups": 10, "particles": 10, "generations": 5, "attacking_rate": 0.1,
              "trains": [10 * i for i in range(11)],
              "nontrivial_per_soup": {
                  "weightwise": [0.0, 0.0, 0.7, 1.9, 3.6, 4.3, 6.0, 6.1, 8.3, 7.7, 8.8],
                  "aggregating": [0.0] * 11}}

# Soup of 20, attack 0.1, train 30, 100 generations, removal on: counts at the end
SOUP = {"particles": 20, "attacking_rate": 0.1, "train": 30, "generations": 100,
        "counts": {"divergent": 0, "zero": 0, "nontrivial": 13, "other": 7}}

# Basins of attraction (journal extension): a qualitative finding
BASINS = ("at noise 1e-1..1e-3 nearly all clones move back toward the parent (a basin); at 1e-7..1e-9 "
          "most drift or stay put; clones never return to exactly the parent's fixpoint")
