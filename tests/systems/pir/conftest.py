"""PIR's test dataset and tiny configs, shared by the stage and the inference tests."""

import pytest

from talking_heads.pipelines import base, testing


def _write_dataset(root, image_size):
  """Clips with recorded head masks. id0: clips 0, 2 (train), 4 (test) and 6 (heldout_voice);
  id1: clips 1, 3 (train, test) and 5 (test)."""
  testing.write_random_dataset(root, [24, 20, 20, 12, 16, 12, 14], image_size=image_size,
                               splits=["train", "train", "train", "test", "test", "test",
                                       "heldout_voice"],
                               head_masks=[True] * 7)
  base.precompute_features(root)
  return str(root)


@pytest.fixture(scope="module")
def write_dataset():
  """(root, image size) -> the clips of `_write_dataset` written there; returns the root."""
  return _write_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
  """The clips at the tiny networks' 32 px."""
  return _write_dataset(tmp_path_factory.mktemp("pir_ds"), 32)


@pytest.fixture(scope="module")
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
