"""LaDTalk inference: upscaling, the SOVQAE round trip (encode, nearest code, decode) and the
paste-back of the SOVQAE faces, with randomly initialised small networks."""

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talking_heads.audio import windows
from talking_heads.face import crop as crop_lib
from talking_heads.io import audio as audio_io
from talking_heads.io import video as video_io
from talking_heads.models import vq as vq_lib
from talking_heads.models import wav2lip as wav2lip_lib
from talking_heads.systems import video_inference as wp
from talking_heads.systems.ladtalk import inference as ladtalk_inference

W2L_SIZE, VQ_SIZE = 32, 64


def random_variables(abstract, seed=0):
  """He-normal kernels, zero biases, identity normalisation (fast stand-in for `model.init`)."""
  rng = np.random.default_rng(seed)

  def leaf(path, x):
    name = path[-1].key
    if name == "kernel":
      return jnp.asarray(rng.normal(size=x.shape) * np.sqrt(2.0 / np.prod(x.shape[:-1])), x.dtype)
    if name == "codebook":
      return jnp.asarray(rng.normal(size=x.shape), x.dtype)
    return jnp.full(x.shape, 1.0 if name in ("scale", "var") else 0.0, x.dtype)

  return jax.tree_util.tree_map_with_path(leaf, abstract)


@pytest.fixture(scope="module")
def sovqae():
  module = vq_lib.SOVQAE(channels=(8, 16), num_codes=16, code_dim=4)
  abstract = jax.eval_shape(
      lambda: module.init(jax.random.key(0), jnp.zeros((1, VQ_SIZE, VQ_SIZE, 3))))
  return ladtalk_inference.SOVQAEModel(module, random_variables(abstract), VQ_SIZE, "random (test)")


@pytest.fixture(scope="module")
def wav2lip():
  module = wav2lip_lib.Wav2LipGenerator(width=0.125, image_size=W2L_SIZE)
  abstract = jax.eval_shape(lambda: module.init(
      jax.random.key(0), jnp.zeros((1, 80, 16, 1)), jnp.zeros((1, W2L_SIZE, W2L_SIZE, 6)),
      use_running_average=True))
  return ladtalk_inference.Wav2LipModel(module, random_variables(abstract, 1), bgr=True, source="random (test)")


@pytest.fixture(scope="module")
def faces():
  """Smooth random faces [6, 32, 32, 3]: low-frequency noise, upscaled."""
  rng = np.random.default_rng(0)
  small = rng.integers(0, 256, (6, 4, 4, 3), dtype=np.uint8)
  return np.stack([cv2.resize(f, (W2L_SIZE, W2L_SIZE), interpolation=cv2.INTER_CUBIC)
                   for f in small])


def test_upscale_is_bicubic_and_keeps_same_size(faces):
  up = ladtalk_inference.upscale(faces, VQ_SIZE)
  assert up.shape == (6, VQ_SIZE, VQ_SIZE, 3) and up.dtype == np.uint8
  np.testing.assert_array_equal(up[2], cv2.resize(faces[2], (VQ_SIZE, VQ_SIZE),
                                                  interpolation=cv2.INTER_CUBIC))
  assert ladtalk_inference.upscale(faces, W2L_SIZE) is faces
  flat = np.full((1, 8, 8, 3), 77, np.uint8)
  np.testing.assert_array_equal(ladtalk_inference.upscale(flat, 24), 77)


def test_denoise_is_the_sovqae_round_trip_and_batch_invariant(sovqae, faces):
  out, codes = ladtalk_inference.denoise_faces(sovqae, faces, batch_size=4, return_indices=True)
  assert out.shape == (6, VQ_SIZE, VQ_SIZE, 3) and out.dtype == np.uint8
  assert codes.shape == (6, VQ_SIZE // 4, VQ_SIZE // 4)
  # Written out: upscale, [-1, 1], encode -> nearest code -> decode, back to uint8.
  x = ladtalk_inference.upscale(faces, VQ_SIZE).astype(np.float32) / 127.5 - 1.0

  @jax.jit
  def round_trip(variables, x):
    apply = lambda *a, method: sovqae.module.apply(variables, *a, method=method)
    _, indices, _ = apply(apply(x, method=vq_lib.SOVQAE.encode), method=vq_lib.SOVQAE.quantize)
    codes = variables["params"]["quantizer"]["codebook"][indices]      # [B, h, w, c]
    return apply(codes, method=vq_lib.SOVQAE.decode), indices

  x_hat, indices = round_trip(sovqae.variables, x)
  expected = np.round(np.clip((np.asarray(x_hat) + 1.0) / 2.0, 0.0, 1.0) * 255.0).astype(np.uint8)
  np.testing.assert_array_equal(codes, np.asarray(indices))
  assert np.abs(out.astype(int) - expected).max() <= 1     # float round-off at .5 boundaries
  np.testing.assert_array_equal(ladtalk_inference.denoise_faces(sovqae, faces, batch_size=16), out)


def test_run_pastes_the_sovqae_faces(tmp_path, wav2lip, sovqae):
  t = np.arange(int(0.6 * windows.SAMPLE_RATE)) / windows.SAMPLE_RATE
  speech = (0.3 * np.sin(2 * np.pi * 220 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)))
  audio = audio_io.write_wav(tmp_path / "speech.wav", speech.astype(np.float32))
  rng = np.random.default_rng(2)
  video = video_io.write_video(tmp_path / "id.mp4",
                               rng.integers(0, 256, (4, 40, 56, 3), dtype=np.uint8))
  box = (10, 4, 42, 36)
  options = wp.Options(box=box, batch_size=16, feather=0.2)
  inputs = wp.prepare(audio, video, wav2lip.image_size, options)
  result = ladtalk_inference.run_ladtalk(wav2lip, sovqae, inputs, options)
  assert inputs.num_frames == 15 and result.frames.shape == (15, 40, 56, 3)
  np.testing.assert_array_equal(result.stage_faces["wav2lip"], ladtalk_inference.generate_faces(wav2lip, inputs))
  np.testing.assert_array_equal(result.faces,
                                ladtalk_inference.denoise_faces(sovqae, result.stage_faces["wav2lip"]))
  assert result.faces.shape == (15, VQ_SIZE, VQ_SIZE, 3)
  np.testing.assert_array_equal(
      result.frames[6], crop_lib.paste_face(inputs.frames[2], result.faces[6], box, feather=0.2))
  outside = np.ones((40, 56), bool)
  outside[4:36, 10:42] = False
  np.testing.assert_array_equal(result.frames[:, outside], inputs.frames[inputs.order][:, outside])
  assert {"wav2lip", "wav2lip_first_batch", "sovqae", "sovqae_first_batch", "paste"} <= set(
      result.seconds)
