"""LaDTalk's sliding evaluation: the generated sequence as a window sliding over the reference.

Dimension legend: N generated frames, M reference frames (M >= N), K offsets, H, W, C image.

Generated videos are often shorter than their ground truth and need not start at its first frame.
LaDTalk therefore slides the generated sequence along the reference timeline: at offset k
(k = 0, stride, 2 stride, ... <= M - N) generated frame i is compared with reference frame k + i for
all i < N, the quality over that window is computed, and the best value over all offsets is the
result (the maximum for higher-is-better metrics such as PSNR; the minimum, i.e. again the best,
for lower-is-better ones such as FID). Two forms:
  `sliding_frame_metric`: a per-frame metric (PSNR, SSIM, LPIPS ...), averaged over the N frame pairs
    of each window (the mean of per-frame values, as LaDTalk averages image quality over the frames);
  `sliding_set_metric`: a metric of two frame sets (FID), evaluated on the N generated frames and the
    N reference frames of each window.
Equal lengths give the single offset 0, i.e. the ordinary paired evaluation. A generated sequence
longer than the reference is an error (trim it first: which end to keep is the caller's decision).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import numpy as np
import numpy.typing as npt

FrameMetric = Callable[[jax.Array, jax.Array], jax.Array]  # [N, ...] x 2 -> [N]
SetMetric = Callable[[np.ndarray, np.ndarray], float]  # [N, ...] x 2 -> scalar


@dataclasses.dataclass(frozen=True)
class SlidingResult:
  """Outcome of a sliding evaluation.

  Attributes:
    best: the best window score (max if higher is better, else min).
    best_offset: reference frame where the best window starts (the first such offset on ties).
    offsets: `[K]` window start frames evaluated.
    scores: `[K]` the score of each window.
  """

  best: float
  best_offset: int
  offsets: np.ndarray
  scores: np.ndarray


def window_offsets(num_generated: int, num_reference: int, stride: int = 1) -> np.ndarray:
  """Reference start frames 0, stride, ... <= M - N of the sliding windows: `[K]` int."""
  if stride < 1:
    raise ValueError(f"sliding evaluation: stride must be >= 1, got {stride}")
  if num_generated < 1:
    raise ValueError("sliding evaluation: the generated sequence has no frames")
  if num_generated > num_reference:
    raise ValueError(f"sliding evaluation: the generated sequence ({num_generated} frames) is longer than the "
                     f"reference ({num_reference} frames); trim it to at most {num_reference} frames first")
  return np.arange(0, num_reference - num_generated + 1, stride)


def _best(offsets: np.ndarray, scores: np.ndarray, higher_is_better: bool) -> SlidingResult:
  if np.isnan(scores).any():
    bad = int(offsets[np.argmax(np.isnan(scores))])
    raise ValueError(f"sliding evaluation: the window at reference offset {bad} scored NaN")
  index = int(np.argmax(scores) if higher_is_better else np.argmin(scores))
  return SlidingResult(best=float(scores[index]), best_offset=int(offsets[index]), offsets=offsets, scores=scores)


def sliding_frame_metric(metric: FrameMetric, generated: npt.ArrayLike, reference: npt.ArrayLike, *,
                         higher_is_better: bool, stride: int = 1) -> SlidingResult:
  """Best mean per-frame score over windows: generated `[N, ...]`, reference `[M, ...]`.

  Args:
    metric: per-frame metric over a batch of frame pairs, `[N, ...]` x 2 -> `[N]` (e.g.
      `functools.partial(image.psnr, data_range=255)`); jitted metrics compile once, every window
      having the same shape.
    generated: the generated frames.
    reference: the reference frames; M >= N.
    higher_is_better: True for PSNR/SSIM, False for distances such as LPIPS.
    stride: offset step in frames.
  """
  generated, reference = np.asarray(generated), np.asarray(reference)
  if generated.shape[1:] != reference.shape[1:]:
    raise ValueError(f"sliding evaluation: generated frames {generated.shape[1:]} and reference frames "
                     f"{reference.shape[1:]} differ in shape")
  n = generated.shape[0]
  offsets = window_offsets(n, reference.shape[0], stride)
  scores = np.array([float(np.mean(np.asarray(metric(generated, reference[k:k + n]), dtype=np.float64)))
                     for k in offsets])
  return _best(offsets, scores, higher_is_better)


def sliding_set_metric(metric: SetMetric, generated: npt.ArrayLike, reference: npt.ArrayLike, *,
                       higher_is_better: bool, stride: int = 1) -> SlidingResult:
  """Best set-level score (e.g. FID) over windows: generated `[N, ...]` vs reference windows `[N, ...]`.

  `generated` and `reference` may be frames or per-frame features (e.g. Inception activations computed
  once for the whole reference), as `metric` expects.
  """
  generated, reference = np.asarray(generated), np.asarray(reference)
  n = generated.shape[0]
  offsets = window_offsets(n, reference.shape[0], stride)
  scores = np.array([float(metric(generated, reference[k:k + n])) for k in offsets])
  return _best(offsets, scores, higher_is_better)
