"""CPBD sharpness (Narvekar & Karam), exactly as the `cpbd` package (PyPI 1.0.7) computes it.

Dimension legend: B images, T frames, H height, W width, C colour channels.

Algorithm (grey levels in [0, 255], float64):
  1. Block classification edges: `skimage.feature.canny` with its defaults (sigma 1).
  2. Edge-width edges: vertical-edge Sobel [[1, 0, -1], [2, 0, -2], [1, 0, -1]] / 8 (scipy `convolve`,
     'reflect' border), squared; values <= 2 sqrt(mean(squared)) zeroed; a pixel is an edge when it is
     a strict local maximum horizontally or vertically (zero outside the image).
  3. Gradient angle atan2(gy, gx) in degrees from `np.gradient`, except that gx == 0 gives 0 (the
     package only sets 90 when gy == pi / 2); quantised to multiples of 45 (round half to even). If
     every angle is 0, no width is measured at all.
  4. Marziliano widths at edge pixels off the image border whose quantised angle is 0 or +-180 (other
     angles are skipped): from the edge, step outwards left and right while the intensity keeps
     falling (angle 0: towards the left) or rising (towards the right) — reversed for +-180 —
     at most 101 steps a side; width = (steps left, capped at 100) + 1 + (steps right, capped) + 1.
  5. Full 64x64 blocks (a partial last row/column of blocks is dropped); edge block when more than
     0.002 * 4096 Canny pixels; contrast int(max - min); w_JNB = 5 when that is <= 50 else 3.
  6. Per measured edge of an edge block P = 1 - exp(-(w / w_JNB)^3.6); histogram of round(100 P)
     (half to even) over 101 bins, divided by the number of edges.
  7. CPBD = sum of bins 0..63; 0 when no edge was measured. Higher is sharper.

The reference description in the project's notes (Sobel magnitude rescaled to 255, mean threshold)
differs from the package's code; this module follows the code. Deviations from the package: images
smaller than one 64x64 block, or with values outside [0, 255], raise `ValueError` instead of returning
0 or failing with an index error. Colour frames are reduced to grey levels as Pillow's `convert('L')`
does (the package's command-line entry reads images that way).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import scipy.ndimage
import skimage.feature

_BLOCK = 64
_EDGE_BLOCK_FRACTION = 0.002
_BETA = 3.6
_MAX_STEPS = 100  # Steps a side are counted up to 100; the width side is then capped at 101.
_SHARP_BINS = 64  # Bins 0..63, P(blur) <= 0.63.
# Vertical-edge Sobel, normalised by the sum of absolute weights.
_SOBEL_X = np.array([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]]) / 8.0
# ITU-R 601-2 luma in Pillow's 16-bit fixed point.
_LUMA_WEIGHTS = np.array([19595, 38470, 7471], dtype=np.int64)


def rgb_to_grey(frames: npt.ArrayLike) -> np.ndarray:
  """RGB uint8 `[..., H, W, 3]` -> grey uint8 `[..., H, W]` as Pillow's `convert('L')`."""
  frames = np.asarray(frames)
  if frames.dtype != np.uint8 or frames.ndim < 3 or frames.shape[-1] != 3:
    raise ValueError(f"rgb_to_grey expects uint8 [..., H, W, 3], got {frames.dtype} {frames.shape}")
  luma = frames.astype(np.int64) @ _LUMA_WEIGHTS
  return ((luma + 0x8000) >> 16).astype(np.uint8)


def _sobel_edges(image: np.ndarray) -> np.ndarray:
  """Thinned vertical-edge Sobel map `[H, W]` bool."""
  strength = np.square(scipy.ndimage.convolve(image, _SOBEL_X))
  strength[strength <= 2.0 * np.sqrt(np.mean(strength))] = 0.0
  padded = np.pad(strength, 1)
  centre = padded[1:-1, 1:-1]
  horizontal = (centre > padded[1:-1, :-2]) & (centre > padded[1:-1, 2:])
  vertical = (centre > padded[:-2, 1:-1]) & (centre > padded[2:, 1:-1])
  return horizontal | vertical


def _quantised_angles(image: np.ndarray) -> np.ndarray | None:
  """Gradient angles in degrees quantised to 45, or None when every raw angle is 0."""
  gy, gx = np.gradient(image)
  angles = np.zeros_like(image)
  nonzero = gx != 0
  angles[nonzero] = np.arctan2(gy[nonzero], gx[nonzero]) * (180.0 / np.pi)
  angles[(gx == 0) & (gy == np.pi / 2)] = 90.0
  if not np.any(angles):
    return None
  return 45.0 * np.round(angles / 45.0)


def _runs_left(step: np.ndarray) -> np.ndarray:
  """`[H, W]`: number of consecutive True of `step` at columns c, c-1, c-2, ... ."""
  cols = np.arange(step.shape[1])
  last_false = np.maximum.accumulate(np.where(step, -1, cols), axis=1)
  return cols - last_false


def _runs_right(step: np.ndarray) -> np.ndarray:
  """`[H, W]`: number of consecutive True of `step` at columns c, c+1, c+2, ... ."""
  width = step.shape[1]
  cols = np.arange(width)
  next_false = np.minimum.accumulate(np.where(step, width, cols)[:, ::-1], axis=1)[:, ::-1]
  return next_false - cols


def edge_widths(image: np.ndarray, edges: np.ndarray) -> np.ndarray:
  """Marziliano edge widths `[H, W]` float64 (0 where nothing is measured); image `[H, W]` float64."""
  widths = np.zeros_like(image)
  angles = _quantised_angles(image)
  if angles is None:
    return widths
  # Step from inner column i to outer column i-1 (left side) or i+1 (right side).
  left_of = np.full(image.shape, np.nan)
  left_of[:, 1:] = image[:, :-1]
  right_of = np.full(image.shape, np.nan)
  right_of[:, :-1] = image[:, 1:]
  # NaN compares False, so stepping out of the image ends a run, as the package's border check does.
  runs = {
      ("left", "falls"): _runs_left(left_of < image),
      ("left", "rises"): _runs_left(left_of > image),
      ("right", "rises"): _runs_right(right_of > image),
      ("right", "falls"): _runs_right(right_of < image),
  }
  inner = np.zeros(image.shape, dtype=bool)
  inner[1:-1, 1:-1] = True
  rows, cols = np.nonzero(edges & inner)
  for angle_mask, left_kind, right_kind in (
      (angles[rows, cols] == 0, "falls", "rises"),
      (np.abs(angles[rows, cols]) == 180, "rises", "falls"),
  ):
    r, c = rows[angle_mask], cols[angle_mask]
    left = np.minimum(runs[("left", left_kind)][r, c - 1], _MAX_STEPS) + 1
    right = np.minimum(runs[("right", right_kind)][r, c + 1], _MAX_STEPS) + 1
    widths[r, c] = left + right
  return widths


def cpbd(image: npt.ArrayLike) -> float:
  """CPBD of one grey image `[H, W]` with grey levels in [0, 255] (uint8 or float)."""
  image = np.asarray(image)
  if image.ndim != 2:
    raise ValueError(f"cpbd expects a grey image [H, W], got shape {image.shape}; "
                     "use video_cpbd or rgb_to_grey for colour frames")
  if image.shape[0] < _BLOCK or image.shape[1] < _BLOCK:
    raise ValueError(f"cpbd needs at least one {_BLOCK}x{_BLOCK} block, got an image of {image.shape}")
  image = image.astype(np.float64)
  if not np.all(np.isfinite(image)) or image.min() < 0 or image.max() > 255:
    raise ValueError("cpbd expects finite grey levels in [0, 255]; got values in "
                     f"[{np.nanmin(image)}, {np.nanmax(image)}]")
  canny = skimage.feature.canny(image)
  widths = edge_widths(image, _sobel_edges(image))

  histogram = np.zeros(101)
  for top in range(0, image.shape[0] - _BLOCK + 1, _BLOCK):
    for left in range(0, image.shape[1] - _BLOCK + 1, _BLOCK):
      block = (slice(top, top + _BLOCK), slice(left, left + _BLOCK))
      if np.count_nonzero(canny[block]) <= _BLOCK * _BLOCK * _EDGE_BLOCK_FRACTION:
        continue
      block_widths = widths[block][widths[block] != 0]
      contrast = int(image[block].max() - image[block].min())
      jnb = 5.0 if contrast <= 50 else 3.0
      p_blur = 1.0 - np.exp(-np.abs(block_widths / jnb) ** _BETA)
      histogram += np.bincount(np.round(p_blur * 100).astype(np.int64), minlength=101)
  total = histogram.sum()
  if total == 0:
    return 0.0
  return float(np.sum(histogram[:_SHARP_BINS] / total))


def video_cpbd(frames: npt.ArrayLike) -> np.ndarray:
  """Mean CPBD over frames: `[B, T, H, W, 3]` RGB uint8 (or `[B, T, H, W]` grey) -> `[B]` float64.

  Also accepts a single video `[T, H, W, 3]` / `[T, H, W]` -> scalar array.
  """
  frames = np.asarray(frames)
  grey = rgb_to_grey(frames) if frames.ndim >= 4 and frames.shape[-1] == 3 else frames
  if grey.ndim not in (3, 4):
    raise ValueError(f"video_cpbd expects [B, T, H, W(, 3)] or [T, H, W(, 3)], got {frames.shape}")
  if grey.shape[-3] == 0:
    raise ValueError(f"video_cpbd: video without frames, shape {frames.shape}")
  flat = grey.reshape((-1,) + grey.shape[-2:])
  scores = np.array([cpbd(frame) for frame in flat])
  return scores.reshape(grey.shape[:-2]).mean(axis=-1)
