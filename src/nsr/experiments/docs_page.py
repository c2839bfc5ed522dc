"""docs/experiments.md, regenerated from the report of ``nsr experiment all --scale N --docs docs/experiments.md``:
how to run the experiments (fixed text), the report (measured), and where we differ from the
publication, and why (fixed text: the explanations; the numbers are in the report above them)."""
from __future__ import annotations

INTRO = """\
# The paper's experiments: `nsr experiment`

This page is generated: `nsr experiment all --scale {scale} --docs docs/experiments.md` ran every experiment
at {scale}x the published trials and wrote it ({minutes:.1f} min wall clock, {cpu_minutes:.1f} min of CPU time, one
thread). Edit the fixed text in
`src/nsr/experiments/docs_page.py`, not here.

Every experiment of Gabor et al. (ALIFE 2019, Artificial Life 2022) is one command. It prints its table
beside the published numbers and writes a run folder (`--out`, default
`lightning_logs/experiments/NAME/version_N`):

- `results.csv`: one row per setting; the first columns name the setting (`architecture`, `k`, `source`,
  `noise`, `severity`, `trains`, `soup`), then the class shares `divergent`, `zero`, `nontrivial`,
  `second_order`, `other` (in 0..1, summing to 1) and the experiment's measures (`time_to_vergence`,
  `nontrivial_per_soup`, basin distances ...). **Every share and mean has its 95% interval** in the columns
  `NAME_ci_low`, `NAME_ci_high` (Wilson for shares, Student t for means; `nsr.experiments.intervals`);
- `results.md`: the settings (ours vs published), our table beside the published one, **for each published
  number whether it is consistent with ours** (the probability of the published count, or mean, if our
  measurement is the truth, given the published number of trials), the differences and why, the runtime;
- PNG figures (stacked class bars, box plots, sweep lines, PCA trajectories, the distribution of the soup of
  20) and TensorBoard logs (`tensorboard --logdir lightning_logs/experiments`).

```bash
nsr experiment --help                  # the experiments
nsr experiment robustness --help       # one experiment's options
nsr experiment applying --trials 500 --seed 3 --out runs/applying
nsr experiment soup_trajectories --trials 1000 --update synchronous
nsr experiment all --scale 100         # every experiment at 100x the published trials, one report.md
python -m nsr.experiments mixed        # the same without the console script
```

Options every experiment takes: `--trials` (its unit: networks, clones, soups), `--seed`, `--out`,
`--epsilon` (fixpoint tolerance, 1e-4), `--second-order orbit|same_network` (the definition F(F(w)) = w,
or the published code's N_w(N_w(w)) = w), `--activation`, `--width`, `--depth`, `--orthogonal keras2|uniform`
(the recurrent kernels' initialiser: the published Keras 2 one, or uniform over orthogonal matrices),
`--no-progress`; those that train also take `--lr`, `--batch-size` (an integer or `full`) and `--momentum`;
the soups take `--update sequential|synchronous` (the published order within a generation, or phase by
phase). Defaults are the published settings. A bad value is reported in one line naming it (exit code 2).

All trials of an experiment are one population `[P, W]`: `applying` self-applies all networks of an
architecture at once, `mixed` runs every k of its sweep in one population, `robustness` times all clones of
all noise scales at once, and the soups of one setting evolve together (partners are drawn within each soup;
in the sequential order every soup's slot s moves at once). Random numbers are keyed by (seed, trial), so
trial i is the same network whatever `--trials` is.

`nsr experiment all --scale N` runs each experiment with N times its published trials (density and basins
capped, see their sections), `soup_trajectories` with 10 N soups in both orders, into one folder with a
combined `report.md`; `--docs docs/experiments.md` writes this page.

"""

BEYOND = """\

## Experiments beyond the paper

Not part of `nsr experiment all` (no published tables to scale; `--only NAME` runs one at its defaults); default
settings, one thread:

| experiment | command | runtime | ours | published |
|---|---|---|---|---|
| soup_phases | `nsr experiment soup_phases` | 77 s (experiment) | 8 x 8 grid, 100 soups of 10 per cell: non-trivial share 1.00 at attack 0 / train >= 20, 0.2-0.4 at attack >= 0.5 / train 50; heatmaps of the share, species per soup, first non-trivial generation (docs/soup_analytics.md) | not published |
| emergence | `nsr experiment emergence` | 13 s (experiment) | 1000 soups of 10 (attack 0.1, train 10): half non-trivial after a median 27 [26, 28] generations; never within 100: 0.348 [0.319, 0.378] | not published (analogue of "Computational Life"'s time to replicators) |
| stability | `nsr experiment stability` | 75-140 s (experiment) | spectra of 10^4 self-trained networks per architecture: all 9,996 weightwise fixpoints have spectral radius >= 4 (repelling); the robustness slope predicted by it within 2% of the published one; attracting fixpoints only in families with a few isolated genomes (docs/stability.md) | not published |
| task_tradeoff | `nsr experiment task_tradeoff` | ~55 s (experiment) | digits, 10 alphas x 10 seeds, 2000 epochs: any task weight costs the fixpoints at 2000 epochs, they return by 20,000 with accuracy 0.956; on addition no hindrance up to alpha 1 (docs/tasks.md) | "the task does not hinder self-replication" (Gabor et al. 2021; no table) |
| task_soup | `nsr experiment task_soup` | ~51 s (experiment) | 100 guided vs 100 unguided soups of 10 (addition): solving non-guides 0.68 [0.61, 0.75] at generation 100 (1.00 by 300), unguided 0 (docs/tasks.md) | a guide spreads its task (no table) |
| organism | `nsr experiment organism` | 314 s (experiment) | digits host of 11,840 particles, 10 seeds: accuracy 0.954 +- 0.006 vs 0.964 +- 0.003 dense; zeroing the non-trivial particles costs 3.4 +- 1.4 points, more than magnitude pruning (docs/organisms.md) | ~0.9 on 15x15 MNIST, dropout of fixpoints -0.05% (not reproduced) |
"""

DIFFERENCES = """\

## Where we differ, and why

Reading the consistency lines: each is one test at the 5% level, and the report makes dozens of them, so
about one in twenty published numbers is expected to read "unlikely" by chance alone (the mixed curve's 11
points are an example: its points were measured on 20 networks each). "Not consistent" (probability below
0.001) is a real difference.

- **Recurrent self-training and the initialiser.** The published logs were produced by standalone Keras 2
  (2.1-2.2), whose `Orthogonal` initialiser is the left SVD factor of a Gaussian matrix (numpy's
  `svd(a, full_matrices=False)`, `q = u if u.shape == shape else v`). For a 2x2 recurrent kernel that
  factor is always a reflection (determinant -1). nsr's default, `--orthogonal keras2`, reproduces it (numpy's
  batched SVD of the keyed Gaussian matrices); `--orthogonal uniform` (QR, TensorFlow 2's and PyTorch's way)
  draws rotations half of the time, and rotations diverge far less often under self-training: about 0.5
  divergent instead of the published 0.76.
- **Soups: the order within a generation.** The soup experiments default to the published order
  (`--update sequential`): slot by slot, each particle attacks a partner drawn from all slots of its soup
  (itself included; written at once), learns from one, self-trains, and is checked for removal before the next
  slot's particle. A particle attacked by a later slot ends the generation perturbed and untrained.
  `--update synchronous` reads every phase's genomes as they were when the phase began (the scalable order;
  `SoupModule`'s default). The soup of 20 is bimodal over soups in both orders: most end with (nearly) all 20
  non-trivial, turbulent ones lower, a few (about 2% sequential, 0.5% synchronous) with no non-trivial particle
  left; the single published soup (13 non-trivial, 7 other) is one draw from that distribution. The two
  `soup_trajectories` sections compare the orders: the share of soups ending with at most 13 non-trivial, and
  the published soup's percentile, are larger in the published order.
- **Mixed**, weightwise: single points of the published curve (20 networks per k) are noisy (0.30, 0.15, 0.55
  at k = 50, 100, 150); compare the trend, and see each k's consistency line.
- **Aggregating** networks are never fixpoints weight by weight (each new aggregate is written to all
  weights of its chunk); `training` also reports how many reproduce their aggregates.
- **Basins** (journal extension) in float32, as published: part of the "stay put" at 1e-8..1e-9 is float32
  rounding (the noise is below the resolution of the weights, so most clones start exactly at the parent);
  `--dtype float64` perturbs every clone.
- **Robustness** is counted as the published code counted (the self-applications a clone survived before it
  verged, and the fixpoint checks after each self-application); `results.csv` also holds nsr's own count
  (`time_to_vergence`, one more).
- **Second-order fixpoints**: `--second-order orbit` (default) tests F(F(w)) = w; the published code applied
  the same network twice (`same_network`). No published experiment reports one, and none of ours finds one.
"""


def experiments_page(report: str, scale: int, seconds: float, cpu_seconds: float) -> str:
    """The experiments page: the fixed introduction, the combined report (headings one level down), the
    differences and why."""
    body = report.split("\n", 1)[1] if report.startswith("# ") else report
    title = f"## Results at {scale}x the published trials\n"
    return (INTRO.format(scale=scale, minutes=seconds / 60, cpu_minutes=cpu_seconds / 60) + title
            + body.replace("\n# ", "\n## ") + BEYOND + DIFFERENCES)
