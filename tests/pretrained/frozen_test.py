"""Tests for talking_heads.pretrained.frozen: one loader for a trained workdir or a public file."""

import re

import jax
import numpy as np
import pytest

from experiments.configs import frame_autoencoder
from talking_heads.pretrained import frozen
from talking_heads.training import loop
from talking_heads.training import restore
from third_party import weights

VGG19_FILE = "vgg19-dcbb9e9d.pth"


def _params_of(stage, state):
  return {"params": state.params}


def _fake_convert(path):
  return {"params": {"w": np.full((2,), float(len(path.read_bytes())), np.float32)}}


def _load(**kwargs):
  """A frame-autoencoder 'network' whose public file is registered as the VGG19 checkpoint."""
  return frozen.load_frozen(stage="frame_autoencoder", variables_of=_params_of,
                            weights_key="vgg19", convert=_fake_convert, what="test.net",
                            **kwargs)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  config = frame_autoencoder.get_config("tiny")
  config.total_steps, config.checkpoint_every, config.log_every = 2, 2, 1
  config.eval_every = config.image_every = 0
  config.progress_bar = False
  path = str(tmp_path_factory.mktemp("frame_ae"))
  loop.train_and_evaluate(config, path)
  return path


def test_round_trip_through_a_trained_workdir(workdir):
  got = _load(workdir=workdir)
  _, state, step = restore.restore_stage(workdir)
  assert step == 2 and got.source == f"{workdir} step 2"
  assert got.config.stage == "frame_autoencoder" and got.config.total_steps == 2
  leaves, want = jax.tree.leaves(got.variables), jax.tree.leaves({"params": state.params})
  assert leaves and all(isinstance(x, np.ndarray) for x in leaves)     # numpy, on the host
  for a, b in zip(leaves, want):
    np.testing.assert_array_equal(a, np.asarray(b))


def test_wrong_stage_names_workdir_and_both_stages(workdir):
  with pytest.raises(ValueError, match=rf"test.net: {workdir} trained stage 'frame_autoencoder', "
                                       "not 'syncnet'"):
    frozen.load_frozen(stage="syncnet", variables_of=_params_of, weights_key="vgg19",
                       convert=_fake_convert, workdir=workdir, what="test.net")


def test_missing_workdir_and_missing_checkpoint_give_the_train_command(tmp_path):
  with pytest.raises(FileNotFoundError, match=r"config.json is missing.*experiments.train "
                                              r"--config=experiments/configs/frame_autoencoder"):
    _load(workdir=tmp_path / "nowhere")
  (tmp_path / "untrained").mkdir()
  (tmp_path / "untrained" / "config.json").write_text('{"stage": "frame_autoencoder"}')
  with pytest.raises(FileNotFoundError, match=r"No checkpoint.*experiments.train"):
    _load(workdir=tmp_path / "untrained", train_config="my.py:tiny")


def test_public_file_or_its_folder(tmp_path):
  (tmp_path / VGG19_FILE).write_bytes(b"abc")
  for checkpoint in (tmp_path / VGG19_FILE, tmp_path):
    got = _load(checkpoint=checkpoint)
    assert got.config is None and got.source == str(tmp_path / VGG19_FILE)
    np.testing.assert_array_equal(got.variables["params"]["w"], [3.0, 3.0])


def test_missing_public_file_is_named_with_its_source(tmp_path):
  with pytest.raises(weights.MissingWeightsError,
                     match=rf"nope.pth.*{VGG19_FILE}.*download.pytorch.org"):
    _load(checkpoint=tmp_path / "nope.pth")
  with pytest.raises(weights.MissingWeightsError, match=rf"missing .*{VGG19_FILE}"):
    _load(checkpoint=tmp_path)


def test_both_or_neither_source_is_an_error(tmp_path):
  with pytest.raises(ValueError, match="not both"):
    _load(workdir=tmp_path, checkpoint=tmp_path / VGG19_FILE)
  with pytest.raises(ValueError, match=r"never random.*'frame_autoencoder'.*vgg19-dcbb9e9d.pth"):
    _load()


def test_an_untrained_workdir_is_refused(untrained_workdir):
  """Checkpoint 0 holds random initial weights: never loaded as a trained network."""
  config = frame_autoencoder.get_config("tiny")
  workdir = untrained_workdir(config)
  name = re.escape(workdir)
  with pytest.raises(restore.UntrainedWorkdirError, match=rf"{name} was never trained"):
    restore.restore_stage(workdir)
  with pytest.raises(FileNotFoundError,
                     match=rf"test.net: workdir='{name}' is not a trained 'frame_autoencoder' "
                           rf"stage \({name} was never trained.*experiments.train"):
    _load(workdir=workdir)
