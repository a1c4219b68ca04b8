"""Agreement of two scorers: Spearman's rank correlation (ties get their average rank), and
Pearson's correlation of paired values.

Used to report how far two lip-sync experts agree on LSE-C over the same (system, clip) pairs:
rho = Pearson correlation of the two rank vectors (scipy.stats.spearmanr's definition). NaN when
either side is constant (no ranking to compare) or fewer than 2 pairs are given.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def average_ranks(values: npt.ArrayLike) -> np.ndarray:
  """Ranks 1..N of a 1-D array, tied values sharing the mean of their ranks."""
  values = np.asarray(values, np.float64)
  order = np.argsort(values, kind="stable")
  ranks = np.empty(values.shape[0], np.float64)
  ranks[order] = np.arange(1, values.shape[0] + 1)
  _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
  sums = np.bincount(inverse, weights=ranks)
  return sums[inverse] / counts[inverse]


def pearson(x: npt.ArrayLike, y: npt.ArrayLike) -> float:
  """Pearson's correlation of paired 1-D samples; NaN when either side is constant or fewer than
  2 pairs are given.

  Raises:
    ValueError: the samples are not 1-D of one length, or are not finite.
  """
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  if x.ndim != 1 or x.shape != y.shape:
    raise ValueError(f"correlation: expected two 1-D samples of one length, got shapes {x.shape} "
                     f"and {y.shape}")
  if not (np.isfinite(x).all() and np.isfinite(y).all()):
    raise ValueError("correlation: samples must be finite")
  if x.shape[0] < 2:
    return float("nan")
  dx, dy = x - x.mean(), y - y.mean()
  norm = np.sqrt(np.sum(dx * dx) * np.sum(dy * dy))
  return float(np.sum(dx * dy) / norm) if norm > 0 else float("nan")


def spearman(x: npt.ArrayLike, y: npt.ArrayLike) -> float:
  """Spearman's rho of paired 1-D samples (module docstring): `pearson` of their average ranks.

  Raises:
    ValueError: the samples are not 1-D of one length, or are not finite.
  """
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  pearson(x, y)   # the checks, on the values
  if x.shape[0] < 2:
    return float("nan")
  return pearson(average_ranks(x), average_ranks(y))
