"""Small random datasets in the dataset format, for pipeline tests and throughput benchmarks.

Frames and audio are noise; landmarks, expression and pose come from the morphable face model
(`talking_heads.face.morphable`) with random identity, expression and a jittered frontal pose,
so head masks and landmark-based checks see plausible faces. Clips asked for a recorded head
mask get `head_region.head_mask` of their landmarks with a shorter crown (0.8) than the
approximation's default, so a reader can tell the two apart.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from talking_heads.audio.windows import SAMPLES_PER_FRAME
from talking_heads.face import head_region
from talking_heads.face import morphable
from talking_heads.io import dataset as dataset_lib


def write_random_dataset(root: str | os.PathLike, frame_counts: Sequence[int], *,
                         image_size: int = 32, seed: int = 0,
                         splits: Sequence[str] | None = None,
                         audio_offsets: Sequence[int] | None = None,
                         audio: Sequence[np.ndarray] | None = None,
                         frames: Sequence[np.ndarray] | None = None,
                         head_masks: Sequence[bool] | None = None) -> dataset_lib.Dataset:
  """Writes clips "clip000", "clip001", ... of the given lengths at 25 fps / 16 kHz.

  Args:
    root: the dataset directory (created).
    frame_counts: T of each clip.
    image_size: S.
    seed: everything is drawn from np.random.default_rng(seed).
    splits: each clip's split (default all "train").
    audio_offsets: samples added to (or, negative, removed from) each clip's 640 T audio
      samples; must stay within the format's +-639.
    audio: each clip's audio (float32 [640 T + offset]) instead of uniform noise.
    frames: each clip's frames (uint8 [T, S, S, 3]) instead of uniform noise.
    head_masks: whether each clip records a head mask (module docstring; default none does).

  Returns:
    The dataset, opened.
  """
  rng = np.random.default_rng(seed)
  model = morphable.default_model()
  camera = morphable.default_camera(image_size)
  splits = ["train"] * len(frame_counts) if splits is None else list(splits)
  offsets = [0] * len(frame_counts) if audio_offsets is None else list(audio_offsets)
  masked = [False] * len(frame_counts) if head_masks is None else list(head_masks)
  if not len(splits) == len(offsets) == len(frame_counts):
    raise ValueError(f"{len(frame_counts)} clips but {len(splits)} splits and {len(offsets)} "
                     "audio offsets")
  with dataset_lib.DatasetWriter(root, 25, 16000, image_size, model.exp_names,
                                 model.num_identity, provenance={"tool": __name__},
                                 generator={"seed": seed}) as writer:
    for k, (num_frames, split, offset, with_mask) in enumerate(
        zip(frame_counts, splits, offsets, masked, strict=True)):
      alpha = rng.normal(size=model.num_identity)
      expression = rng.uniform(0.0, 1.0, (num_frames, model.num_expression))
      pose = morphable.default_pose() + rng.normal(0.0, 1.0, (num_frames, 6)) * (
          0.05, 0.05, 0.05, 2.0, 2.0, 5.0)
      landmarks = morphable.landmarks_2d(model, alpha, expression, pose, camera)
      identity = f"id{k % 2}"
      writer.add_clip(
          f"clip{k:03d}", identity=identity, voice=identity, language="en", split=split,
          frames=(rng.integers(0, 256, (num_frames, image_size, image_size, 3), dtype=np.uint8)
                  if frames is None else frames[k]),
          audio=(rng.uniform(-0.5, 0.5, SAMPLES_PER_FRAME * num_frames + offset).astype(
              np.float32) if audio is None else audio[k]),
          landmarks=landmarks, alpha=alpha, expression=expression, pose=pose, K=camera,
          head_mask=np.stack([head_region.head_mask(f, image_size, image_size, crown=0.8)[..., 0]
                              for f in landmarks]).astype(np.uint8) if with_mask else None)
  return dataset_lib.Dataset(root)
