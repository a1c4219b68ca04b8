"""Full frames with head masks and face parameters, for PIR's face and rendering stages.

Index space: every (clip, frame) pair of the split (of `identities`, if given). Sample (S =
image_size or the dataset's):

  image        uint8   [S, S, 3]  the frame
  head_mask    float32 [S, S, 1]  1 on the head: the clip's own `head_mask` array when it has one
                                  (the synthetic corpus: exact), else `head_region.head_mask`'s
                                  approximation from the 68 landmarks (ingested video)
  inpaint_mask float32 [S, S, 1]  what the renderer must fill (see `inpainting_mask`)
  masked       uint8   [S, S, 3]  the frame with the inpaint mask zeroed (the inpainting input I_M)
  landmarks    float32 [68, 2]    pixels at size S
  expression   float32 [E]
  pose         float32 [6]        yaw, pitch, roll, tx, ty, tz
  alpha        float32 [A]        the clip's identity parameters
  K            float32 [3, 3]     intrinsics at size S
  clip         int32   []         clip position in the split
  start        int32   []         the frame
  valid        bool    []         eval variant only: False for padding entries

The inpaint mask (PIR spec §4, "masked image I_M", unspecified by the paper): the head mask
dilated by `dilate` x S pixels (15 px at 512), united with a box over the jaw's width from the
nose tip (landmark 30) to `jaw_drop` x S pixels below the chin (landmark 8), so that neither the
head's edge nor the ground-truth jaw silhouette, which depends on the audio, shows through.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import cv2
import grain
import numpy as np

from talking_heads.face.head_region import head_mask
from talking_heads.pipelines import base

DILATE = 15 / 512
JAW_DROP = 0.1
_NOSE_TIP, _CHIN, _JAW_SIDES = 30, 8, (3, 13)


def inpainting_mask(head: np.ndarray, landmarks: np.ndarray, dilate: float = DILATE,
                    jaw_drop: float = JAW_DROP) -> np.ndarray:
  """float32 [S, S, 1] inpaint mask (module docstring) of a head mask [S, S(, 1)] and the frame's
  68 landmarks (pixels)."""
  head = np.asarray(head, np.float32).reshape(head.shape[:2])
  size = head.shape[0]
  radius = int(round(dilate * size))
  mask = head.astype(np.uint8)
  if radius > 0:
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1,) * 2)
    mask = cv2.dilate(mask, kernel)
  points = np.asarray(landmarks, np.float64)
  sides = points[list(range(_JAW_SIDES[0], _JAW_SIDES[1] + 1))]
  x0, x1 = np.floor(sides[:, 0].min()), np.ceil(sides[:, 0].max())
  y0 = np.floor(points[_NOSE_TIP, 1])
  y1 = np.ceil(points[_CHIN, 1] + jaw_drop * size)
  x0, x1, y0, y1 = (int(np.clip(v, 0, size)) for v in (x0, x1 + 1, y0, y1 + 1))
  mask[y0:y1, x0:x1] = 1
  return mask.astype(np.float32)[..., None]


class HeadSampler(grain.transforms.RandomMap):
  """Index element -> head sample (module docstring); picklable for grain workers."""

  def __init__(self, reader: base.ClipReader, image_size: int | None, crown: float,
               margin: float, dilate: float = DILATE, jaw_drop: float = JAW_DROP):
    self.reader = reader
    self.image_size = image_size
    self.crown = crown
    self.margin = margin
    self.dilate = dilate
    self.jaw_drop = jaw_drop

  def _head_mask(self, i: int, f: int, landmarks: np.ndarray, size: int) -> np.ndarray:
    """float32 [S, S, 1]: the clip's recorded mask resized to S (nearest), or the landmark
    approximation."""
    if self.reader.clip(i).has("head_mask"):
      mask = np.asarray(self.reader.array(i, "head_mask")[f])
      if mask.shape[0] != size:
        mask = cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST)
      return mask.astype(np.float32)[..., None]
    try:
      return head_mask(landmarks, size, size, self.crown, self.margin)
    except ValueError as e:
      raise ValueError(f"dataset {self.reader.root}: clip {self.reader.clip_ids[i]!r}: frame "
                       f"{f}: {e}") from None

  def random_map(self, element: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    del rng  # every field is a deterministic function of the frame
    i, f = int(element["clip"]), int(element["start"])
    frames = self.reader.array(i, "frames")
    image = base.resize_frames(frames[f], self.image_size)
    scale = image.shape[0] / frames.shape[1]
    landmarks = base.rescale_pixels(np.asarray(self.reader.array(i, "landmarks")[f]), scale)
    mask = self._head_mask(i, f, landmarks, image.shape[0])
    inpaint = inpainting_mask(mask, landmarks, self.dilate, self.jaw_drop)
    return {
        "image": image,
        "head_mask": mask,
        "inpaint_mask": inpaint,
        "masked": (image * (1 - inpaint.astype(np.uint8))).astype(np.uint8),
        "landmarks": landmarks.astype(np.float32),
        "expression": np.array(self.reader.array(i, "expression")[f]),
        "pose": np.array(self.reader.array(i, "pose")[f]),
        "alpha": np.array(self.reader.array(i, "alpha")),
        "K": base.rescale_intrinsics(self.reader.array(i, "K"), scale),
        "clip": element["clip"], "start": element["start"],
    }


def _build(root: str | os.PathLike, split: str | None, stride: int, image_size: int | None,
           crown: float, margin: float, identities: Sequence[str] | None = None
           ) -> tuple[base.WindowIndex, HeadSampler]:
  if image_size is not None and image_size < 1:
    raise ValueError(f"image_size must be positive, got {image_size}")
  if crown <= 0 or margin <= -1:
    raise ValueError(f"need crown > 0 and margin > -1, got {crown}, {margin}")
  index, reader = base.frame_index(root, split, stride, identities)
  return index, HeadSampler(reader, image_size, crown, margin)


def make_head_iterator(root: str | os.PathLike, *, batch_size: int, shard_index: int,
                       shard_count: int, seed: int, num_workers: int, split: str | None = "train",
                       image_size: int | None = None, crown: float = 1.6, margin: float = 0.1,
                       identities: Sequence[str] | None = None,
                       **grain_options: Any) -> grain.DatasetIterator:
  """Shuffled, repeated batches of frames with head masks (module docstring keys, leading B).

  Args:
    root: dataset directory.
    batch_size, shard_index, shard_count, seed, num_workers: see `base.build_iterator`.
    split: the split to sample (None: all clips).
    image_size: resize frames (and landmarks, K) to this size (None: the dataset's).
    crown, margin: the approximate head mask's shape (`face.head_region.head_polygon`), for
      clips without one.
    identities: only frames of these identities (None: all).
    **grain_options: read_threads, prefetch, worker_buffer_size (`base.build_iterator`).
  """
  index, sampler = _build(root, split, 1, image_size, crown, margin, identities)
  return base.build_iterator(index, sampler, batch_size=batch_size, shard_index=shard_index,
                             shard_count=shard_count, seed=seed, num_workers=num_workers,
                             train=True, **grain_options)


def make_head_eval_iterator(root: str | os.PathLike, *, batch_size: int, shard_index: int,
                            shard_count: int, seed: int, num_workers: int,
                            split: str | None = "val", stride: int = 1,
                            image_size: int | None = None, crown: float = 1.6,
                            margin: float = 0.1, identities: Sequence[str] | None = None,
                            **grain_options: Any) -> grain.DatasetIterator:
  """One pass over every `stride`-th frame of each clip (of `identities`, if given)."""
  index, sampler = _build(root, split, stride, image_size, crown, margin, identities)
  return base.build_iterator(index, sampler, batch_size=batch_size, shard_index=shard_index,
                             shard_count=shard_count, seed=seed, num_workers=num_workers,
                             train=False, **grain_options)
