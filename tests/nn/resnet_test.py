"""Convolutional blocks: taming's ResnetBlock and resampling, ADM's resampling vs numpy."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage.measure import block_reduce

from talking_heads.nn import resnet
from tests.nn.numpy_reference import f64, np_conv, random_params


def _image(shape, seed=0):
  return jnp.asarray(np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32))


def _delta_kernel(row, col, channels):
  kernel = np.zeros((3, 3, channels, channels), np.float32)
  kernel[row, col] = np.eye(channels)
  return jnp.asarray(kernel)


def test_downsample_pads_bottom_right_only():
  x = _image((1, 8, 8, 2))
  block = resnet.Downsample(padding=resnet.TAMING_DOWN_PAD)
  variables = block.init(jax.random.PRNGKey(0), x)
  run = lambda r, c: np.asarray(block.apply(
      {"params": {"conv": {"kernel": _delta_kernel(r, c, 2), "bias": jnp.zeros(2)}}}, x))
  # The top-left tap reads pixel (2i, 2j): no padding on the top/left.
  np.testing.assert_allclose(run(0, 0), np.asarray(x)[:, ::2, ::2])
  # The bottom-right tap reads (2i + 2, 2j + 2): the last row/column read the zero pad.
  expected = np.zeros((1, 4, 4, 2), np.float32)
  expected[:, :3, :3] = np.asarray(x)[:, 2::2, 2::2]
  np.testing.assert_allclose(run(2, 2), expected)
  assert variables["params"]["conv"]["kernel"].shape == (3, 3, 2, 2)


def test_upsample_is_nearest_then_conv():
  x = _image((1, 3, 4, 2))
  out = resnet.Upsample().apply(
      {"params": {"conv": {"kernel": _delta_kernel(1, 1, 2), "bias": jnp.zeros(2)}}}, x)
  np.testing.assert_allclose(np.asarray(out), np.repeat(np.repeat(np.asarray(x), 2, 1), 2, 2))


def test_resnet_block_is_identity_when_its_last_conv_is_zero():
  x = _image((2, 8, 8, 16))
  block = resnet.ResnetBlock(16)
  params = flax.core.unfreeze(block.init(jax.random.PRNGKey(0), x)["params"])
  params["conv2"] = jax.tree_util.tree_map(jnp.zeros_like, params["conv2"])
  np.testing.assert_allclose(np.asarray(block.apply({"params": params}, x)), np.asarray(x),
                             atol=1e-6)


def test_resampling_matches_reference_operations():
  x = np.random.default_rng(9).normal(size=(2, 6, 4, 3)).astype(np.float32)
  np.testing.assert_array_equal(resnet.upsample_nearest(jnp.asarray(x)),
                                np.kron(x, np.ones((1, 2, 2, 1), np.float32)))
  np.testing.assert_allclose(resnet.downsample_average(jnp.asarray(x)),
                             block_reduce(x, (1, 2, 2, 1), np.mean), atol=1e-6)
  with pytest.raises(ValueError, match="even"):
    resnet.downsample_average(jnp.zeros((1, 5, 4, 3)))
  # Strided-conv downsample: PyTorch's Conv2d(k 3, stride 2, padding 1).
  down = resnet.Downsample(features=5)
  params = random_params(jax.eval_shape(down.init, jax.random.key(0), x)["params"], 10)
  got = down.apply({"params": params}, x)
  p = f64(params)["conv"]
  np.testing.assert_allclose(got, np_conv(x.astype(np.float64), p["kernel"], p["bias"], stride=2),
                             atol=1e-5)
  up = resnet.Upsample(features=5)
  params = random_params(jax.eval_shape(up.init, jax.random.key(0), x)["params"], 11)
  p = f64(params)["conv"]
  np.testing.assert_allclose(up.apply({"params": params}, x),
                             np_conv(np.kron(x, np.ones((1, 2, 2, 1))), p["kernel"], p["bias"]),
                             atol=1e-5)
  with pytest.raises(ValueError, match="use_conv"):
    resnet.Downsample(use_conv=False, features=5).apply({}, x)
