"""DAE-Talker inference pieces: pose specs, x_T sharing, batch-size and chunk-size independence,
input errors, the reference check."""

import dataclasses
import logging

import jax
import numpy as np
import pytest
from skimage import data as skdata

from experiments.configs.dae_talker import dae as dae_config
from talking_heads.audio import windows
from talking_heads.io import video as video_io
from talking_heads.systems.dae_talker import inference as pipeline
from talking_heads.systems.dae_talker.dae import DAEStage


@pytest.fixture(scope="module")
def stage_and_variables():
  """The tiny stage with random parameters (drawn on the host: compiling init takes longer)."""
  stage = DAEStage(dae_config.get_config("tiny"))
  abstract_state = jax.eval_shape(stage.init_state, jax.random.PRNGKey(0))
  abstract = abstract_state.params
  rng = np.random.default_rng(0)

  def leaf(path, x):
    name = getattr(path[-1], "key", "")
    if name == "kernel":   # the output conv too, so the model depends on z
      return rng.normal(size=x.shape).astype(np.float32) / np.sqrt(np.prod(x.shape[:-1]))
    return np.full(x.shape, 1.0 if name == "scale" else 0.0, np.float32)

  model_state = jax.tree_util.tree_map(lambda x: np.zeros(x.shape, x.dtype),
                                       abstract_state.model_state)
  return stage, {"params": jax.tree_util.tree_map_with_path(leaf, abstract), **model_state}


def test_parse_pose_specs(tmp_path):
  assert pipeline.parse_pose("natural", 5) is None
  pose = pipeline.parse_pose("yaw=10, roll=-4", 5)
  np.testing.assert_allclose(pose, np.repeat(np.deg2rad([[10.0, 0.0, -4.0]]), 5, 0), rtol=1e-6)
  path = tmp_path / "poses.npy"
  np.save(path, np.array([[0.0, 0.0, 0.0], [20.0, 10.0, 0.0]]))
  pose = pipeline.parse_pose(str(path), 3)                      # resampled over time to T
  np.testing.assert_allclose(np.rad2deg(pose), [[0, 0, 0], [10, 5, 0], [20, 10, 0]], atol=1e-4)
  text = tmp_path / "poses.csv"
  text.write_text("1,2,3\n")
  np.testing.assert_allclose(np.rad2deg(pipeline.parse_pose(str(text), 2)), [[1, 2, 3]] * 2,
                             atol=1e-5)


@pytest.mark.parametrize("spec,error,match", [
    ("tilt=3", ValueError, "unknown angle 'tilt'"),
    ("yaw=left", ValueError, "not a number of degrees"),
    ("missing.npy", FileNotFoundError, "missing.npy does not exist"),
])
def test_parse_pose_errors(spec, error, match):
  with pytest.raises(error, match=match):
    pipeline.parse_pose(spec, 4)


def test_parse_pose_rejects_wrong_width(tmp_path):
  path = tmp_path / "poses.npy"
  np.save(path, np.zeros((4, 2)))
  with pytest.raises(ValueError, match=r"expected \[3\] or \[T, 3\]"):
    pipeline.parse_pose(str(path), 4)


def test_shared_noise_and_batch_size_independence(stage_and_variables):
  stage, variables = stage_and_variables
  z = np.repeat(np.random.default_rng(0).normal(size=(1, 16)).astype(np.float32), 5, axis=0)
  options = pipeline.Options(sample_steps=3, batch_size=2, noise="shared")
  shared, seconds = pipeline.decode_latents(stage, variables, z, options)
  assert shared.shape == (5, 16, 16, 3) and shared.dtype == np.uint8
  assert set(seconds) == {"decode", "decode_first_batch"}
  # Equal latents from one x_T: equal frames, whatever batch they fell in.
  assert (shared == shared[:1]).all()
  independent, _ = pipeline.decode_latents(
      stage, variables, z, pipeline.Options(sample_steps=3, batch_size=2, noise="independent"))
  assert np.abs(independent.astype(int) - independent[:1]).max() > 0
  again, _ = pipeline.decode_latents(
      stage, variables, z, pipeline.Options(sample_steps=3, batch_size=3, noise="independent"))
  np.testing.assert_array_equal(again, independent)            # frame i's x_T depends on i only


def test_reference_noise_is_the_inverted_frame(stage_and_variables):
  stage, variables = stage_and_variables
  frame = np.random.default_rng(2).integers(0, 256, (32, 32, 3), dtype=np.uint8)   # resized
  x_T = pipeline.reference_noise(stage, variables, frame, steps=3)
  assert x_T.shape == (1, 16, 16, 3)
  small = np.clip(np.round(np.asarray(jax.image.resize(frame.astype(np.float32), (16, 16, 3),
                                                       "linear"))), 0, 255).astype(np.uint8)
  expected = stage.invert(variables, small[None], stage.encode(variables, small[None]), steps=3)
  np.testing.assert_allclose(x_T, np.asarray(expected), atol=1e-5)
  z = np.zeros((3, 16), np.float32)
  options = pipeline.Options(sample_steps=3, batch_size=2, noise="reference")
  frames, _ = pipeline.decode_latents(stage, variables, z, options, reference_frame=frame)
  assert (frames == frames[:1]).all()
  with pytest.raises(ValueError, match="needs a reference frame"):
    pipeline.decode_latents(stage, variables, z, options)


def test_audio_errors(stage_and_variables):
  stage, variables = stage_and_variables
  model = pipeline.DAETalkerModel(stage, variables, speech2latent=None, sources={})
  with pytest.raises(ValueError, match="speech.wav: audio too short"):
    pipeline.run_arrays(model, np.ones(100, np.float32), audio_id="speech.wav")
  with pytest.raises(windows.SilentAudioError):
    pipeline.run_arrays(model, np.zeros(6400, np.float32), audio_id="speech.wav")
  with pytest.raises(ValueError, match="mono audio"):
    pipeline.run_arrays(model, np.zeros((2, 6400), np.float32))
  with pytest.raises(ValueError, match="noise must be one of"):
    pipeline.Options(noise="fresh")


@pytest.mark.parametrize("noise", ["shared", "independent", "reference"])
def test_chunked_decoding_is_bit_identical_to_one_pass(stage_and_variables, noise):
  stage, variables = stage_and_variables
  z = np.random.default_rng(3).normal(size=(7, 16)).astype(np.float32)
  frame = np.random.default_rng(4).integers(0, 256, (16, 16, 3), dtype=np.uint8)
  options = pipeline.Options(sample_steps=2, batch_size=2, noise=noise, seed=5, chunk_frames=8)
  whole, _ = pipeline.decode_latents(stage, variables, z, options, reference_frame=frame)
  seconds = {}
  chunked = pipeline.decode_chunks(stage, variables, z, dataclasses.replace(options, chunk_frames=3),
                                   reference_frame=frame, seconds=seconds)
  chunks = list(chunked)
  assert [len(c) for c in chunks] == [4, 3]      # 3 rounded up to two batches of 2
  np.testing.assert_array_equal(np.concatenate(chunks), whole)
  assert set(seconds) == {"decode", "decode_first_batch"}


def test_reference_without_a_face_is_a_warning_naming_it(tmp_path, caplog):
  wall = video_io.write_video(tmp_path / "wall.mp4", np.full((1, 64, 64, 3), 90, np.uint8))
  with caplog.at_level(logging.WARNING):
    pipeline.check_request("speech.wav", str(wall), {"noise": "reference"})
  assert "wall.mp4: no face found in the reference frame" in caplog.text
  caplog.clear()
  face = video_io.write_video(tmp_path / "face.mp4", skdata.astronaut()[None, ::2, ::2])
  with caplog.at_level(logging.WARNING):
    pipeline.check_request("speech.wav", str(face), {"noise": "reference"})
    pipeline.check_request("speech.wav", str(wall), {"noise": "shared"})   # not read
  assert caplog.text == ""
  with pytest.raises(FileNotFoundError, match="nowhere.png"):
    pipeline.check_request("speech.wav", str(tmp_path / "nowhere.png"), {"noise": "reference"})
