"""PIR's test datasets, tiny configs and tiny trained components, shared by the stage, inference
and evaluation tests (package scope: each is written or trained once per run)."""

import pytest

from experiments.configs.pir import audio2exp as audio2exp_config
from experiments.configs.pir import renderer as renderer_config
from experiments.configs.pir import triplane as triplane_config
from talking_heads.pipelines import base, testing
from talking_heads.systems.pir import audio2exp
from talking_heads.training import loop
from talking_heads.training import state_workdirs

SIZE64 = 64   # the evaluation's frames: the tiny networks' 32 px is below CPBD's 64 px block


def _write_dataset(root, image_size):
  """Clips with recorded head masks. id0: clips 0, 2 (train), 4 (test) and 6 (heldout_voice);
  id1: clips 1, 3 (train, test) and 5 (test)."""
  testing.write_random_dataset(root, [24, 20, 20, 12, 16, 12, 14], image_size=image_size,
                               splits=["train", "train", "train", "test", "test", "test",
                                       "heldout_voice"],
                               head_masks=[True] * 7)
  base.precompute_features(root)
  return str(root)


@pytest.fixture(scope="package")
def write_dataset():
  """(root, image size) -> the clips of `_write_dataset` written there; returns the root."""
  return _write_dataset


@pytest.fixture(scope="package")
def dataset(tmp_path_factory):
  """The clips at the tiny networks' 32 px."""
  return _write_dataset(tmp_path_factory.mktemp("pir_ds"), 32)


@pytest.fixture(scope="package")
def dataset64(tmp_path_factory):
  """The same clips at 64 px: the networks see them resized to 32 px."""
  return _write_dataset(tmp_path_factory.mktemp("pir_ds64"), SIZE64)


@pytest.fixture(scope="package")
def tiny():
  """config module, dataset root, **fields -> the module's tiny config on that dataset, one
  device (8 fake devices on 2 cores only slow the run down), no progress bar."""
  def make(module, root, **fields):
    c = module.get_config("tiny")
    c.data.root, c.progress_bar = root, False
    c.mesh.num_devices = 1
    c.update(fields)
    return c
  return make


SHORT = dict(total_steps=2, log_every=1, checkpoint_every=100, eval_every=0, image_every=0)


@pytest.fixture(scope="package")
def audio2exp_run(dataset64, tiny, tmp_path_factory):
  """(stage, workdir, train result) of component A trained for 12 steps (its loss falls)."""
  workdir = str(tmp_path_factory.mktemp("pir_a"))
  config = tiny(audio2exp_config, dataset64, total_steps=12, log_every=1, checkpoint_every=100,
                eval_every=0, image_every=0)
  result = loop.train_and_evaluate(config, workdir)
  return audio2exp.Audio2ExpressionStage(config), workdir, result


@pytest.fixture(scope="package")
def workdirs(dataset64, tiny, audio2exp_run, tmp_path_factory):
  """The three components on `dataset64`: A (12 steps), B and C (2 steps each: shapes, not
  quality), as `experiments.generate`'s weight flags."""
  root = tmp_path_factory.mktemp("pir_runs")
  loop.train_and_evaluate(tiny(triplane_config, dataset64, **SHORT), str(root / "b"))
  config = tiny(renderer_config, dataset64, **SHORT)
  config.triplane.workdir = str(root / "b")
  loop.train_and_evaluate(config, str(root / "c"))
  return {"pir_audio2exp_workdir": audio2exp_run[1], "pir_renderer_workdir": str(root / "c"),
          "pir_triplane_workdir": str(root / "b")}


@pytest.fixture(scope="package")
def experts(tmp_path_factory):
  """Random-weight tiny `syncnet` and `face_regressor` workdirs (LSE and LMD run; their values
  mean nothing)."""
  from experiments.configs.experts import face_regressor as regressor_config  # pylint: disable=g-import-not-at-top
  from experiments.configs.experts import syncnet as syncnet_config  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp("pir_experts")
  write = state_workdirs.write_state_workdir
  return {"syncnet": write(root / "syncnet", syncnet_config.get_config("tiny")),
          "regressor": write(root / "regressor", regressor_config.get_config("tiny"))}
