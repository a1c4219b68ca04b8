"""Tests for talking_heads.metrics.lpips: the LPIPS head against a float64 numpy transcription of
its definition, and properties (identity, symmetry, batching, linearity in the weights).

Weights here are random (initialised, lin kernels made non-negative like the released ones);
parity with a reference PyTorch LPIPS is in tests/pretrained/vgg_lpips_test.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talking_heads.metrics import lpips
from talking_heads.models import vgg

SIZE = 32  # Smallest convenient size for AlexNet's five taps (>= 31).


def _variables(net="alex", seed=0, size=SIZE):
  """He-scaled random weights (numpy, fast on CPU); lin kernels non-negative like the released."""
  x = jnp.zeros((1, size, size, 3))
  shapes = jax.eval_shape(lpips.LPIPS(net=net).init, jax.random.key(0), x, x)
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = "/".join(p.key for p in path)
    if name.endswith("bias"):
      return rng.normal(0, 0.1, leaf.shape).astype(np.float32)
    fan_in = np.prod(leaf.shape[:-1])
    w = rng.normal(0, np.sqrt(2 / fan_in), leaf.shape).astype(np.float32)
    return np.abs(w) if "/lin" in name else w

  return jax.tree_util.tree_map_with_path(fill, shapes)


def _images(seed, batch=3, size=SIZE):
  rng = np.random.default_rng(seed)
  x = rng.uniform(-1, 1, (batch, size, size, 3)).astype(np.float32)
  y = np.clip(x + rng.normal(0, 0.4, x.shape), -1, 1).astype(np.float32)
  return x, y


def _numpy_lpips(variables, x, y, net):
  """LPIPS from its definition in float64, given the backbone's activations."""
  shift, scale = np.array(lpips.SHIFT), np.array(lpips.SCALE)
  trunk = vgg.AlexNetFeatures() if net == "alex" else vgg.VGGFeatures()
  backbone = {"params": variables["params"]["backbone"]}
  apply = jax.jit(trunk.apply)
  fx = apply(backbone, ((x - shift) / scale).astype(np.float32))
  fy = apply(backbone, ((y - shift) / scale).astype(np.float32))
  total = np.zeros(x.shape[0])
  for l, tap in enumerate(fx):
    a, b = np.asarray(fx[tap], np.float64), np.asarray(fy[tap], np.float64)
    a = a / (np.sqrt((a**2).sum(-1, keepdims=True)) + 1e-10)
    b = b / (np.sqrt((b**2).sum(-1, keepdims=True)) + 1e-10)
    w = np.asarray(variables["params"][f"lin{l}"]["kernel"], np.float64)[0, 0, :, 0]
    total += (((a - b) ** 2) @ w).mean(axis=(1, 2))
  return total


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_matches_numpy_definition(net):
  variables = _variables(net)
  x, y = _images(1)
  got = lpips.lpips_distance(variables, x, y, net=net)
  assert got.shape == (3,)
  np.testing.assert_allclose(np.asarray(got), _numpy_lpips(variables, x, y, net), rtol=1e-4)


def test_identity_symmetry_and_batching():
  variables = _variables()
  x, y = _images(2)
  d_xy = np.asarray(lpips.lpips_distance(variables, x, y))
  np.testing.assert_allclose(np.asarray(lpips.lpips_distance(variables, x, x)), 0.0, atol=1e-7)
  np.testing.assert_allclose(np.asarray(lpips.lpips_distance(variables, y, x)), d_xy, rtol=1e-5)
  assert np.all(d_xy > 0)
  single = [float(lpips.lpips_distance(variables, x[i:i + 1], y[i:i + 1])[0]) for i in range(3)]
  np.testing.assert_allclose(single, d_xy, rtol=1e-5)


def test_closer_images_score_lower():
  variables = _variables()
  rng = np.random.default_rng(3)
  x = rng.uniform(-1, 1, (1, SIZE, SIZE, 3)).astype(np.float32)
  noise = rng.normal(0, 1, x.shape).astype(np.float32)
  scores = [float(lpips.lpips_distance(variables, x, np.clip(x + s * noise, -1, 1))[0])
            for s in (0.05, 0.2, 0.8)]
  assert scores[0] < scores[1] < scores[2]


def test_linear_in_the_lin_weights_and_normalize_flag():
  variables = _variables()
  x, y = _images(4)
  base = np.asarray(lpips.lpips_distance(variables, x, y))
  doubled = jax.tree_util.tree_map_with_path(
      lambda path, v: 2 * v if path[1].key.startswith("lin") else v, variables)
  np.testing.assert_allclose(np.asarray(lpips.lpips_distance(doubled, x, y)), 2 * base, rtol=1e-5)
  unit = lpips.lpips_distance(variables, (x + 1) / 2, (y + 1) / 2, normalize=True)
  np.testing.assert_allclose(np.asarray(unit), base, rtol=1e-4)


def test_bad_inputs():
  variables = _variables()
  x, y = _images(5)
  with pytest.raises(ValueError, match="differ in shape"):
    lpips.lpips_distance(variables, x, y[:2])
  with pytest.raises(ValueError, match="net must be one of"):
    lpips.LPIPS(net="squeeze").init(jax.random.key(0), x, y)
