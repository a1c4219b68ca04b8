"""A small dataset for FD2Talk's stage tests: smooth frames (learnable in a few steps) whose
pattern moves with the frame's expression, with the morphable model's parameters."""

import numpy as np
import pytest

from talking_heads.pipelines import testing

FRAME_COUNTS = (16, 12, 12, 8)
SPLITS = ("train", "train", "train", "test")


def smooth_frames(num_frames, size, seed):
  """uint8 [T, S, S, 3]: per-clip colour phases, a pattern drifting over the frames."""
  r = np.random.default_rng(seed)
  yy, xx = np.mgrid[:size, :size] / size
  phase = r.uniform(0, 2 * np.pi, 3)
  t = np.arange(num_frames)[:, None, None, None] / num_frames
  x = np.sin(4 * xx[None, ..., None] + 3 * yy[None, ..., None] + phase + 2 * t)
  return np.round(127.5 * (x + 1)).astype(np.uint8)


@pytest.fixture(scope="session")
def dataset(tmp_path_factory):
  root = tmp_path_factory.mktemp("fd2talk_ds")
  testing.write_random_dataset(
      root, FRAME_COUNTS, image_size=32, splits=SPLITS,
      frames=[smooth_frames(n, 32, k) for k, n in enumerate(FRAME_COUNTS)])
  return str(root)
