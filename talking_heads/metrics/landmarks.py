"""Landmark distances on iBUG-68 landmarks: LMD variants (named explicitly) and landmark jitter.

Dimension legend: ... leading batch dimensions (e.g. B videos), T frames, P = 68 points,
D coordinates (2 for (x, y) pixels; 3 works too).

LMD (ATVGnet `evaluation_matrix.py`): per frame, the 20 mouth points 48-67 of the generated and the
reference face are each centred on their own centroid; the per-point Euclidean distances between the
two centred mouths are then reduced over the 20 points, and the result averaged over frames. The
variants differ in two explicit choices:
  reduction  "sum"  (ATVGnet's LMD) or "mean" over the 20 points;
  normalise  False (pixels) or True: divided per frame by the reference's inter-ocular distance,
             between the outer eye corners 36 and 45 (unitless, comparable across face sizes).
`LMD_VARIANTS` names the four combinations: lmd_mouth_sum, lmd_mouth_mean, lmd_mouth_sum_iod,
lmd_mouth_mean_iod. Centring removes head translation but not scale or rotation (as ATVGnet).

Point error (`point_error`): the mean over frames and all 68 points of the Euclidean distance
between generated and reference landmarks, not centred: it counts where the face sits (a shifted or
rescaled face), which LMD's centring removes.

Landmark jitter: the mean over frames t = 1..T-2 and points of the norm of the second temporal
difference l[t+1] - 2 l[t] + l[t-1] (frame-to-frame acceleration; constant-velocity motion scores 0,
a landmark shaking by +-e each frame scores 4e). With a reference, the same norm is taken of the
difference between the generated and the reference second differences, so motion that the reference
also has is not counted. Optionally normalised by the reference's (or, without a reference, the
sequence's own) per-frame inter-ocular distance.

Inputs are checked for shape and finite values on the host (a missing face is often stored as NaN):
a `ValueError` names the array, video index and frame. The array math is jitted.
"""

from __future__ import annotations

import functools
from typing import Callable, Literal

import jax
import jax.numpy as jnp
import numpy as np
import numpy.typing as npt

NUM_LANDMARKS = 68
MOUTH = slice(48, 68)
OUTER_EYE_CORNERS = (36, 45)
Reduction = Literal["sum", "mean"]


def _check_landmarks(name: str, landmarks: npt.ArrayLike, min_frames: int) -> np.ndarray:
  array = np.asarray(landmarks)
  if array.ndim < 3 or array.shape[-2] != NUM_LANDMARKS or array.shape[-1] not in (2, 3):
    raise ValueError(f"{name}: expected landmarks [..., T, {NUM_LANDMARKS}, 2 or 3], got shape {array.shape}")
  if array.shape[-3] < min_frames:
    raise ValueError(f"{name}: needs at least {min_frames} frame(s), got {array.shape[-3]}")
  finite = np.isfinite(array).all(axis=(-2, -1))  # [..., T]
  if not finite.all():
    index = np.argwhere(~finite)[0]
    video = f"video {tuple(int(i) for i in index[:-1])}, " if len(index) > 1 else ""
    raise ValueError(f"{name}: {video}frame {int(index[-1])} has non-finite landmarks (missing face?)")
  return array


def _check_pair(name: str, generated: npt.ArrayLike, reference: npt.ArrayLike,
                min_frames: int) -> tuple[np.ndarray, np.ndarray]:
  generated = _check_landmarks(f"{name} generated", generated, min_frames)
  reference = _check_landmarks(f"{name} reference", reference, min_frames)
  if generated.shape != reference.shape:
    raise ValueError(f"{name}: generated landmarks {generated.shape} and reference {reference.shape} differ "
                     "(trim both to the same frames first)")
  return generated, reference


def _check_scale(name: str, landmarks: np.ndarray) -> None:
  left, right = OUTER_EYE_CORNERS
  zero = np.linalg.norm(landmarks[..., right, :] - landmarks[..., left, :], axis=-1) == 0  # [..., T]
  if zero.any():
    raise ValueError(f"{name}: inter-ocular distance is 0 at index {tuple(np.argwhere(zero)[0])} "
                     "(video..., frame); cannot normalise")


def inter_ocular_distance(landmarks: jax.Array) -> jax.Array:
  """Distance between the outer eye corners 36 and 45: `[..., P, D]` -> `[...]`."""
  left, right = OUTER_EYE_CORNERS
  return jnp.linalg.norm(landmarks[..., right, :] - landmarks[..., left, :], axis=-1)


@functools.partial(jax.jit, static_argnames=("reduction", "normalise"))
def _lmd(generated: jax.Array, reference: jax.Array, reduction: Reduction, normalise: bool) -> jax.Array:
  reference = reference.astype(jnp.float32)
  # (g - mean g) - (r - mean r) = d - mean d for d = g - r; centring d loses less precision.
  d = generated[..., MOUTH, :].astype(jnp.float32) - reference[..., MOUTH, :]  # [..., T, 20, D]
  dist = jnp.linalg.norm(d - d.mean(axis=-2, keepdims=True), axis=-1)  # [..., T, 20]
  per_frame = dist.sum(axis=-1) if reduction == "sum" else dist.mean(axis=-1)  # [..., T]
  if normalise:
    per_frame = per_frame / inter_ocular_distance(reference)
  return per_frame.mean(axis=-1)


def lmd(generated: npt.ArrayLike, reference: npt.ArrayLike, *, reduction: Reduction = "sum",
        normalise: bool = False) -> jax.Array:
  """Mouth landmark distance per video: `[..., T, 68, D]` x 2 -> `[...]` float32.

  Args:
    generated: landmarks of the generated frames.
    reference: landmarks of the matching reference frames (same shape).
    reduction: "sum" (ATVGnet) or "mean" over the 20 mouth points.
    normalise: divide each frame by the reference's inter-ocular distance (points 36-45).
  """
  if reduction not in ("sum", "mean"):
    raise ValueError(f"lmd: reduction must be 'sum' or 'mean', got {reduction!r}")
  generated, reference = _check_pair("lmd", generated, reference, 1)
  if normalise:
    _check_scale("lmd reference", reference)
  return _lmd(jnp.asarray(generated), jnp.asarray(reference), reduction, normalise)


LMD_VARIANTS: dict[str, Callable[[npt.ArrayLike, npt.ArrayLike], jax.Array]] = {
    "lmd_mouth_sum": functools.partial(lmd, reduction="sum", normalise=False),
    "lmd_mouth_mean": functools.partial(lmd, reduction="mean", normalise=False),
    "lmd_mouth_sum_iod": functools.partial(lmd, reduction="sum", normalise=True),
    "lmd_mouth_mean_iod": functools.partial(lmd, reduction="mean", normalise=True),
}


def point_error(generated: npt.ArrayLike, reference: npt.ArrayLike) -> jax.Array:
  """Mean uncentred distance over frames and points per video: `[..., T, P, D]` x 2 -> `[...]`
  float32 (the units of the landmarks, e.g. pixels)."""
  generated, reference = _check_pair("point_error", generated, reference, 1)
  d = jnp.asarray(generated, jnp.float32) - jnp.asarray(reference, jnp.float32)
  return jnp.linalg.norm(d, axis=-1).mean(axis=(-2, -1))


def _second_difference(x: jax.Array) -> jax.Array:
  return x[..., 2:, :, :] - 2.0 * x[..., 1:-1, :, :] + x[..., :-2, :, :]


@functools.partial(jax.jit, static_argnames=("normalise", "has_reference"))
def _jitter(landmarks: jax.Array, anchor: jax.Array, normalise: bool, has_reference: bool) -> jax.Array:
  """`anchor` is the reference when `has_reference`, else `landmarks` itself (the scale source)."""
  landmarks = landmarks.astype(jnp.float32)
  anchor = anchor.astype(jnp.float32)
  accel = _second_difference(landmarks)  # [..., T-2, P, D]
  if has_reference:
    accel = accel - _second_difference(anchor)
  per_frame = jnp.linalg.norm(accel, axis=-1).mean(axis=-1)  # [..., T-2]
  if normalise:
    per_frame = per_frame / inter_ocular_distance(anchor[..., 1:-1, :, :])
  return per_frame.mean(axis=-1)


def landmark_jitter(landmarks: npt.ArrayLike, reference: npt.ArrayLike | None = None, *,
                    normalise: bool = False) -> jax.Array:
  """Mean landmark acceleration norm per video: `[..., T, 68, D]` -> `[...]` float32 (T >= 3).

  Args:
    landmarks: landmarks of the generated video.
    reference: optional landmarks of the reference video; its own acceleration is subtracted.
    normalise: divide by the per-frame inter-ocular distance (of `reference`, else of `landmarks`).
  """
  if reference is None:
    landmarks = _check_landmarks("landmark_jitter", landmarks, 3)
    anchor = landmarks
  else:
    landmarks, anchor = _check_pair("landmark_jitter", landmarks, reference, 3)
  if normalise:
    _check_scale("landmark_jitter", anchor)
  return _jitter(jnp.asarray(landmarks), jnp.asarray(anchor), normalise, reference is not None)
