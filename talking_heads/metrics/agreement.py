"""Agreement of two scorers: Spearman's rank correlation (ties get their average rank).

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


def spearman(x: npt.ArrayLike, y: npt.ArrayLike) -> float:
  """Spearman's rho of paired 1-D samples (module docstring).

  Raises:
    ValueError: the samples are not 1-D of one length, or are not finite.
  """
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  if x.ndim != 1 or x.shape != y.shape:
    raise ValueError(f"spearman: expected two 1-D samples of one length, got shapes {x.shape} "
                     f"and {y.shape}")
  if not (np.isfinite(x).all() and np.isfinite(y).all()):
    raise ValueError("spearman: samples must be finite")
  if x.shape[0] < 2:
    return float("nan")
  rx, ry = average_ranks(x) - (x.shape[0] + 1) / 2, average_ranks(y) - (x.shape[0] + 1) / 2
  norm = np.sqrt(np.sum(rx * rx) * np.sum(ry * ry))
  return float(np.sum(rx * ry) / norm) if norm > 0 else float("nan")
