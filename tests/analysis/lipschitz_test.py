"""Lipschitz bounds: conv norms against dense matrices, GroupNorm against its Jacobian, and the
encoder bound against measured ratios ||E(x) - E(y)|| / ||x - y|| on the real SOVQAE encoder."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talking_heads.analysis import lipschitz
from talking_heads.models.vq import SOVQAE


def random_variables(model, x, seed):
  """Variables of `model` drawn with numpy (a compiled flax init costs 15+ s on a busy CPU):
  kernels N(0, 1 / fan_in), GroupNorm scales 1 + N(0, 0.1), biases N(0, 0.05), codes U(-1, 1)."""
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    name = path[-1].key
    if name == "kernel":
      value = rng.normal(size=leaf.shape) / np.sqrt(np.prod(leaf.shape[:-1]))
    elif name == "scale":
      value = 1.0 + 0.1 * rng.normal(size=leaf.shape)
    elif name == "codebook":
      value = rng.uniform(-1.0, 1.0, leaf.shape)
    else:
      value = 0.05 * rng.normal(size=leaf.shape)
    return jnp.asarray(value, leaf.dtype)

  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
  return jax.tree_util.tree_map_with_path(draw, shapes)


def dense_matrix(fn, shape):
  """The matrix [out, in] of a linear map on arrays of `shape`, from its images of basis vectors."""
  size = int(np.prod(shape))
  columns = jax.vmap(lambda v: fn(v.reshape(shape)).reshape(-1))(jnp.eye(size, dtype=jnp.float32))
  return np.asarray(columns, np.float64).T


def conv_fn(kernel, strides, pads):
  return lambda x: jax.lax.conv_general_dilated(
      x[None], kernel, strides, pads, dimension_numbers=("NHWC", "HWIO", "NHWC"),
      precision=jax.lax.Precision.HIGHEST)[0]


def test_swish_constant_is_the_largest_derivative():
  value = lipschitz.swish_lipschitz()
  assert abs(value - 1.0998) < 1e-4
  x = jnp.linspace(-12.0, 12.0, 200_001)
  derivative = jax.vmap(jax.grad(nn.swish))(x)
  assert float(jnp.max(jnp.abs(derivative))) <= value + 1e-6
  assert float(jnp.max(jnp.abs(derivative))) >= value - 1e-6


@pytest.mark.parametrize("k, stride, padding, hw, cin, cout", [
    (3, 1, "SAME", (6, 7), 3, 4),
    (3, 2, ((0, 1), (0, 1)), (8, 8), 3, 5),     # SOVQAE's Downsample
    (3, 1, "VALID", (5, 5), 2, 3),
    (5, 1, 2, (6, 6), 2, 2),
    (3, 2, "SAME", (7, 9), 3, 3),
])
def test_conv_norm_matches_dense_matrix(k, stride, padding, hw, cin, cout):
  rng = np.random.default_rng(k + stride)
  kernel = jnp.asarray(rng.normal(size=(k, k, cin, cout)), jnp.float32)
  pads = lipschitz.conv_pads(padding, (k, k), (stride, stride), hw)
  exact = np.linalg.norm(dense_matrix(conv_fn(kernel, (stride, stride), pads), (*hw, cin)), 2)
  norm = lipschitz.conv_operator_norm(kernel, stride, padding, hw, num_iters=2000, tol=1e-8)
  assert exact * (1 - 1e-3) <= norm.estimate <= exact * (1 + 1e-5)
  assert norm.upper >= exact * (1 - 1e-6)
  # The circular embedding's slack: a few % here, worst for a 5x5 kernel on a 6x6 map.
  assert norm.upper <= exact * 1.3


@pytest.mark.parametrize("stride, grid", [(1, (6, 5)), (2, (8, 6)), (3, (6, 9))])
def test_circular_norm_is_exact(stride, grid):
  kernel = jnp.asarray(np.random.default_rng(stride).normal(size=(3, 3, 2, 3)), jnp.float32)

  def circular(x):
    wrapped = jnp.pad(x, ((0, 2), (0, 2), (0, 0)), mode="wrap")   # x[(s o + t) mod N]
    return conv_fn(kernel, (stride, stride), "VALID")(wrapped)

  exact = np.linalg.norm(dense_matrix(circular, (*grid, 2)), 2)
  value = lipschitz.circular_conv_norm(np.asarray(kernel), (stride, stride), grid)
  np.testing.assert_allclose(value, exact, rtol=1e-6)


@pytest.mark.parametrize("stride", [1, 2])
def test_pointwise_conv_norm_is_largest_singular_value(stride):
  w = np.random.default_rng(3).normal(size=(5, 7))
  norm = lipschitz.conv_operator_norm(w[None, None], stride, 0, (6, 6), num_iters=500)
  np.testing.assert_allclose(norm.upper, np.linalg.norm(w, 2), rtol=1e-9)
  np.testing.assert_allclose(norm.estimate, np.linalg.norm(w, 2), rtol=1e-5)


def test_bad_padding_and_shapes_are_rejected():
  kernel = np.ones((3, 3, 1, 1))
  with pytest.raises(ValueError, match="not zero padding"):
    lipschitz.conv_operator_norm(kernel, 1, "CIRCULAR", (4, 4))
  with pytest.raises(ValueError, match="smaller than the kernel"):
    lipschitz.conv_operator_norm(kernel, 1, "VALID", (2, 2))
  with pytest.raises(ValueError, match=r"\[kh, kw, Cin, Cout\]"):
    lipschitz.conv_operator_norm(np.ones((3, 3)), 1, "SAME", (4, 4))


class _Norm(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.GroupNorm(num_groups=2, epsilon=1e-6, name="norm")(x)


def test_group_norm_factor_bounds_its_jacobian_at_the_calibration_input():
  model = _Norm()
  x = jnp.asarray(np.random.default_rng(0).normal(size=(1, 3, 3, 4)) * [0.2, 0.3, 2.0, 3.0],
                  jnp.float32)
  variables = random_variables(model, x, 0)
  scale = jnp.array([0.5, -1.5, 1.0, 0.25])
  variables = {"params": {"norm": {**variables["params"]["norm"], "scale": scale}}}
  report = lipschitz.encoder_lipschitz_bound(model, variables, x, method="__call__")
  (layer,) = report.layers
  assert layer.kind == "group_norm"
  jacobian = jax.jacfwd(lambda v: model.apply(variables, v[None])[0])(x[0])
  spectral = np.linalg.norm(np.asarray(jacobian, np.float64).reshape(36, 36), 2)
  assert spectral <= report.bound * (1 + 1e-5)
  assert spectral >= 0.9 * report.bound          # frozen statistics are nearly attained
  assert report.bound_loose == pytest.approx(1.5 / np.sqrt(1e-6))


class _Pointwise(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Conv(3, (1, 1), name="conv")(x)


def test_bound_is_tight_for_a_linear_encoder():
  model = _Pointwise()
  x = jnp.zeros((1, 4, 4, 2))
  variables = random_variables(model, x, 1)
  report = lipschitz.encoder_lipschitz_bound(model, variables, x, method="__call__", num_iters=0)
  w = np.asarray(variables["params"]["conv"]["kernel"][0, 0], np.float64)
  _, singular, vt = np.linalg.svd(w.T)
  direction = jnp.broadcast_to(jnp.asarray(vt[0], jnp.float32), (1, 4, 4, 2))
  shift = model.apply(variables, direction) - model.apply(variables, x)
  ratio = float(jnp.linalg.norm(shift) / jnp.linalg.norm(direction))
  np.testing.assert_allclose([report.bound, ratio], singular[0], rtol=1e-5)


class _Padded(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Conv(3, (3, 3), name="a")(x))
    x = jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))
    return nn.Conv(2, (3, 3), strides=2, padding="VALID", name="b")(x)


class _Scaled(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Conv(2, (3, 3), name="b")(3.0 * nn.Conv(3, (3, 3), name="a")(x))


class _Dense(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Dense(2, name="dense")(x)


def test_links_are_recognised_and_unknown_operations_raise():
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 6, 6, 2))
  model = _Padded()
  report = lipschitz.encoder_lipschitz_bound(model, random_variables(model, x, 0), x,
                                             method="__call__", num_iters=0)
  assert [layer.kind for layer in report.layers] == ["conv", "relu", "zero_pad", "conv"]
  for model, message in ((_Scaled(), "does not know"), (_Dense(), "not supported")):
    with pytest.raises(lipschitz.UnsupportedModuleError, match=message):
      lipschitz.encoder_lipschitz_bound(model, random_variables(model, x, 0), x,
                                        method="__call__", num_iters=0)


def _smooth_images(rng, count, size):
  """Images in [-1, 1] with face-like low-frequency content (random noise upsampled)."""
  coarse = rng.uniform(-1.0, 1.0, (count, size // 4, size // 4, 3))
  return jnp.asarray(np.repeat(np.repeat(coarse, 4, axis=1), 4, axis=2), jnp.float32)


def test_bound_is_never_below_measured_ratios_on_the_sovqae_encoder():
  model = SOVQAE(channels=(8, 16), num_codes=32, code_dim=8)
  rng = np.random.default_rng(0)
  calibration = _smooth_images(rng, 4, 32)
  variables = random_variables(model, calibration, 0)
  report = lipschitz.encoder_lipschitz_bound(model, variables, calibration, num_iters=0)
  names = [layer.name for layer in report.layers]
  assert names[:3] == ["encoder/conv_in", "encoder/down_0_res", "encoder/down_0_down/conv"]
  assert [l.kind for l in report.layers if l.name == "encoder/mid_attn"] == ["attention"]
  assert report.bound == pytest.approx(np.prod([layer.local for layer in report.layers]))
  assert report.bound_loose >= report.bound

  encode = jax.jit(lambda x: model.apply(variables, x, method="encode"))
  ratio = lambda x, y: np.asarray(
      jnp.linalg.norm((encode(x) - encode(y)).reshape(len(x), -1), axis=1)
      / jnp.linalg.norm((x - y).reshape(len(x), -1), axis=1))
  # Pairs near the calibration images: what the local (frozen-statistics) bound covers.
  for scale in (1e-3, 1e-2, 1e-1):
    for seed in range(3):
      delta = scale * jax.random.normal(jax.random.PRNGKey(seed), calibration.shape)
      measured = ratio(calibration + delta, calibration)
      assert measured.max() <= report.bound, (scale, measured.max(), report.bound)
  # Independent random-noise pairs, far from the calibration images: the loose bound covers them,
  # and so does the local bound calibrated on them.
  a = jnp.asarray(rng.uniform(-1, 1, (4, 32, 32, 3)), jnp.float32)
  b = jnp.asarray(rng.uniform(-1, 1, (4, 32, 32, 3)), jnp.float32)
  measured = ratio(a, b)
  assert measured.max() <= report.bound_loose
  local = lipschitz.encoder_lipschitz_bound(model, variables, jnp.concatenate([a, b]), num_iters=0)
  assert measured.max() <= local.bound
