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


@pytest.fixture(scope="session")
def autoencoder_runs(dataset, tmp_path_factory):
  """(workdir of the uninterrupted run, its result, the resumed result) of the tiny autoencoder
  config, 12 steps interrupted after 5; the UNet tests diffuse in its latent space."""
  from tests.systems.fd2talk import autoencoder_test  # pylint: disable=g-import-not-at-top
  tmp_path = tmp_path_factory.mktemp("fd2talk_ae")
  config = autoencoder_test.tiny_config(dataset, total_steps=12, log_every=1,
                                        checkpoint_every=100, eval_every=12, image_every=12)
  full, resumed = autoencoder_test.full_and_resumed(config, tmp_path, 5)
  return str(tmp_path / "full"), full, resumed
