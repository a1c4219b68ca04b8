"""FaceRegressor: output shapes, coordinate convention, pose scaling, input checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talking_heads.models import face_regressor as fr


def test_shapes_dtypes_and_pose_scale():
  model = fr.FaceRegressor(channels=(8, 16), hidden=16, pose_scale=(0.01, 0.02, 0.03))
  x = jax.random.uniform(jax.random.PRNGKey(0), (3, 32, 32, 3), minval=-1, maxval=1)
  params = model.init(jax.random.PRNGKey(1), x)["params"]
  assert params["stage1_down"]["kernel"].shape == (3, 3, 8, 16)
  assert params["hidden"]["kernel"].shape == (8 * 8 * 16, 16)
  # The zero-initialised head outputs its bias: set it to check units and layout.
  bias = np.arange(2 * 68 + 3, dtype=np.float32)
  params = {**params, "head": {**params["head"], "bias": jnp.asarray(bias)}}
  out = model.apply({"params": params}, x)
  assert out["landmarks"].shape == (3, 68, 2) and out["pose"].shape == (3, 3)
  assert out["landmarks"].dtype == out["pose"].dtype == jnp.float32
  np.testing.assert_array_equal(out["landmarks"][1], bias[:136].reshape(68, 2))
  np.testing.assert_allclose(out["pose"][2], bias[136:] * np.array([0.01, 0.02, 0.03]), rtol=1e-6)


def test_bfloat16_compute_keeps_float32_outputs():
  model = fr.FaceRegressor(channels=(8,), hidden=8, dtype=jnp.bfloat16)
  x = jnp.zeros((2, 16, 16, 3))
  out = model.apply(model.init(jax.random.PRNGKey(0), x), x)
  assert out["landmarks"].dtype == out["pose"].dtype == jnp.float32


def test_coordinates_use_pixel_centres():
  # Pixel x covers [x - 0.5, x + 0.5]: the image's outer edges are -1 and 1.
  np.testing.assert_allclose(fr.pixels_to_normalised(jnp.array([-0.5, 31.5, 15.5]), 32), [-1, 1, 0])
  points = np.random.default_rng(0).uniform(-1, 64, (5, 68, 2)).astype(np.float32)
  np.testing.assert_allclose(fr.normalised_to_pixels(fr.pixels_to_normalised(points, 64), 64),
                             points, atol=1e-5)
  grid = fr.coordinate_channels(2, 4)
  assert grid.shape == (2, 4, 4, 2)
  np.testing.assert_allclose(grid[0, 1, 3], [0.75, -0.25])   # row y = 1, column x = 3


def test_bad_inputs():
  model = fr.FaceRegressor(channels=(8, 16, 32))
  with pytest.raises(ValueError, match=r"image size 20 is not divisible by 2\^3"):
    model.init(jax.random.PRNGKey(0), jnp.zeros((1, 20, 20, 3)))
  with pytest.raises(ValueError, match=r"expected images \[B, S, S, 3\]"):
    model.init(jax.random.PRNGKey(0), jnp.zeros((1, 16, 24, 3)))
  with pytest.raises(ValueError, match="pose_scale needs 3"):
    fr.FaceRegressor(channels=(8,), pose_scale=(0.1,)).init(jax.random.PRNGKey(0),
                                                            jnp.zeros((1, 16, 16, 3)))
