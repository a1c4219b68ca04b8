"""Full frames with head masks and face parameters, for PIR's face and rendering stages.

Index space: every (clip, frame) pair of the split. Sample (S = image_size or the dataset's):

  image      uint8   [S, S, 3]  the frame
  head_mask  float32 [S, S, 1]  1 on the head (see `head_mask`)
  masked     uint8   [S, S, 3]  the frame with the head zeroed (the inpainting input I_M)
  landmarks  float32 [68, 2]    pixels at size S
  expression float32 [E]
  pose       float32 [6]        yaw, pitch, roll, tx, ty, tz
  alpha      float32 [A]        the clip's identity parameters
  K          float32 [3, 3]     intrinsics at size S
  clip       int32   []         clip position in the split
  start      int32   []         the frame
  valid      bool    []         eval variant only: False for padding entries

PIR takes its head mask from a face-parsing network, which is not available here; `head_mask`
approximates it from the 68 landmarks (documented below).
"""

from __future__ import annotations

import os
from typing import Any

import cv2
import grain
import numpy as np

from talking_heads.face import morphable
from talking_heads.pipelines import base

_SUBPIXEL_BITS = 4
_ARC_POINTS = 33


def head_polygon(landmarks: np.ndarray, crown: float = 1.6, margin: float = 0.1) -> np.ndarray:
  """Convex outline [K, 2] of the approximate head region for 68 (x, y) landmarks.

  The convex hull of the landmarks and a half-ellipse over the top of the head: the ellipse is
  centred between the jaw ends (landmarks 0 and 16, at the ears), with half their distance as
  one semi-axis and `crown` times it, pointing away from the chin, as the other (the skull top
  sits about 1.6 half face widths above the ear line on an adult head, hair included). The hull
  keeps every landmark inside when a turned head's far brow sticks out past the jaw ends. The
  outline is then grown by `margin` about the jaw ends' midpoint to take in the ears' and hair's
  edges.
  """
  landmarks = np.asarray(landmarks, np.float64)
  if landmarks.shape != (morphable.NUM_LANDMARKS, 2):
    raise ValueError(f"landmarks must be [68, 2], got {landmarks.shape}")
  if not np.all(np.isfinite(landmarks)):
    raise ValueError("landmarks contain NaN or infinite values")
  jaw = landmarks[list(morphable.JAW)]
  centre = (jaw[0] + jaw[-1]) / 2.0
  half = (jaw[-1] - jaw[0]) / 2.0
  up = np.array([half[1], -half[0]])
  chin = jaw[len(jaw) // 2]
  if np.dot(up, chin - centre) > 0:
    up = -up
  theta = np.linspace(0.0, np.pi, _ARC_POINTS)
  arc = centre + np.cos(theta)[:, None] * half + crown * np.sin(theta)[:, None] * up
  points = np.concatenate([landmarks, arc]).astype(np.float32)
  hull = cv2.convexHull(points)[:, 0].astype(np.float64)
  return centre + (1.0 + margin) * (hull - centre)


def head_mask(landmarks: np.ndarray, height: int, width: int, crown: float = 1.6,
              margin: float = 0.1) -> np.ndarray:
  """float32 [height, width, 1] mask, 1 inside `head_polygon` (filled at 1/16 pixel)."""
  polygon = head_polygon(landmarks, crown, margin)
  points = np.rint(polygon * (1 << _SUBPIXEL_BITS)).astype(np.int32)
  mask = np.zeros((height, width), np.uint8)
  cv2.fillPoly(mask, [points], 1, lineType=cv2.LINE_8, shift=_SUBPIXEL_BITS)
  return mask.astype(np.float32)[..., None]


class HeadSampler(grain.transforms.RandomMap):
  """Index element -> head sample (module docstring); picklable for grain workers."""

  def __init__(self, reader: base.ClipReader, image_size: int | None, crown: float,
               margin: float):
    self.reader = reader
    self.image_size = image_size
    self.crown = crown
    self.margin = margin

  def random_map(self, element: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    del rng  # every field is a deterministic function of the frame
    i, f = int(element["clip"]), int(element["start"])
    frames = self.reader.array(i, "frames")
    image = base.resize_frames(frames[f], self.image_size)
    scale = image.shape[0] / frames.shape[1]
    landmarks = base.rescale_pixels(np.asarray(self.reader.array(i, "landmarks")[f]), scale)
    try:
      mask = head_mask(landmarks, image.shape[0], image.shape[1], self.crown, self.margin)
    except ValueError as e:
      raise ValueError(f"dataset {self.reader.root}: clip {self.reader.clip_ids[i]!r}: frame "
                       f"{f}: {e}") from None
    return {
        "image": image,
        "head_mask": mask,
        "masked": (image * (1 - mask.astype(np.uint8))).astype(np.uint8),
        "landmarks": landmarks.astype(np.float32),
        "expression": np.array(self.reader.array(i, "expression")[f]),
        "pose": np.array(self.reader.array(i, "pose")[f]),
        "alpha": np.array(self.reader.array(i, "alpha")),
        "K": base.rescale_intrinsics(self.reader.array(i, "K"), scale),
        "clip": element["clip"], "start": element["start"],
    }


def _build(root: str | os.PathLike, split: str | None, stride: int, image_size: int | None,
           crown: float, margin: float) -> tuple[base.WindowIndex, HeadSampler]:
  if image_size is not None and image_size < 1:
    raise ValueError(f"image_size must be positive, got {image_size}")
  if crown <= 0 or margin <= -1:
    raise ValueError(f"need crown > 0 and margin > -1, got {crown}, {margin}")
  index, reader = base.frame_index(root, split, stride)
  return index, HeadSampler(reader, image_size, crown, margin)


def make_head_iterator(root: str | os.PathLike, *, batch_size: int, shard_index: int,
                       shard_count: int, seed: int, num_workers: int, split: str | None = "train",
                       image_size: int | None = None, crown: float = 1.6, margin: float = 0.1,
                       **grain_options: Any) -> grain.DatasetIterator:
  """Shuffled, repeated batches of frames with head masks (module docstring keys, leading B).

  Args:
    root: dataset directory.
    batch_size, shard_index, shard_count, seed, num_workers: see `base.build_iterator`.
    split: the split to sample (None: all clips).
    image_size: resize frames (and landmarks, K) to this size (None: the dataset's).
    crown, margin: head-mask shape (`head_polygon`).
    **grain_options: read_threads, prefetch, worker_buffer_size (`base.build_iterator`).
  """
  index, sampler = _build(root, split, 1, image_size, crown, margin)
  return base.build_iterator(index, sampler, batch_size=batch_size, shard_index=shard_index,
                             shard_count=shard_count, seed=seed, num_workers=num_workers,
                             train=True, **grain_options)


def make_head_eval_iterator(root: str | os.PathLike, *, batch_size: int, shard_index: int,
                            shard_count: int, seed: int, num_workers: int,
                            split: str | None = "val", stride: int = 1,
                            image_size: int | None = None, crown: float = 1.6,
                            margin: float = 0.1, **grain_options: Any) -> grain.DatasetIterator:
  """One pass over every `stride`-th frame of each clip."""
  index, sampler = _build(root, split, stride, image_size, crown, margin)
  return base.build_iterator(index, sampler, batch_size=batch_size, shard_index=shard_index,
                             shard_count=shard_count, seed=seed, num_workers=num_workers,
                             train=False, **grain_options)
