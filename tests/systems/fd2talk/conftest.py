"""A small dataset for FD2Talk's stage tests: smooth frames (learnable in a few steps) whose
pattern moves with the frame's expression, with the morphable model's parameters; the tiny
trained workdirs of every stage the inference and evaluation tests share."""

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


def tiny_config(module, root, overrides="", **fields):
  """`module`'s tiny config (with `overrides`) on `root`, one device, no progress bar."""
  c = module.get_config("tiny" + overrides)
  c.data.root, c.progress_bar = root, False
  c.mesh.num_devices = 1   # 8 fake devices on 2 cores only slow the run down
  c.update(fields)
  return c


@pytest.fixture(scope="session")
def unet_runs(dataset, autoencoder_runs, tmp_path_factory):
  """(config, uninterrupted result, resumed result, the uninterrupted workdir) of the tiny UNet
  config in the autoencoder's latent space, 14 steps interrupted after 6; evaluation and images
  are run once by the tests (each trainer run would compile them again)."""
  from experiments.configs.fd2talk import unet as unet_config  # pylint: disable=g-import-not-at-top
  from tests.systems.fd2talk import autoencoder_test  # pylint: disable=g-import-not-at-top
  tmp_path = tmp_path_factory.mktemp("fd2talk_unet")
  config = tiny_config(unet_config, dataset, total_steps=14, log_every=1, checkpoint_every=100,
                       eval_every=0, image_every=0)
  config.autoencoder.workdir = autoencoder_runs[0]
  full, resumed = autoencoder_test.full_and_resumed(config, tmp_path, 6)
  return config, full, resumed, str(tmp_path / "full")


@pytest.fixture(scope="session")
def motion_workdirs(dataset, tmp_path_factory):
  """{"expression", "pose"}: workdirs of the tiny Exp and Pose Transformers, 4 steps each on the
  dataset (without L_sync: no lip expert), neither evaluated nor imaged."""
  from experiments.configs.fd2talk import motion as motion_config  # pylint: disable=g-import-not-at-top
  from talking_heads.training import loop  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp("fd2talk_motion")
  short = dict(total_steps=4, log_every=1, checkpoint_every=100, eval_every=0, image_every=0)
  out = {}
  for motion in ("expression", "pose"):
    config = tiny_config(motion_config, dataset, f",model.motion={motion},loss.sync_weight=0",
                         **short)
    loop.train_and_evaluate(config, str(root / motion))
    out[motion] = str(root / motion)
  return out
