"""UNet pieces: sinusoid formula, ResBlock/attention against numpy references, resampling, init."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage.measure import block_reduce

from talking_heads.nn import unet


def random_params(abstract, seed: int):
  """Every leaf random (zero-initialised layers included): kernels ~ N(0, 1/fan_in)."""
  rng = np.random.default_rng(seed)

  def leaf(path, x):
    name = path[-1].key
    if name == "kernel":
      return jnp.asarray(rng.normal(size=x.shape) / np.sqrt(np.prod(x.shape[:-1])), x.dtype)
    if name == "scale":
      return jnp.asarray(1.0 + 0.2 * rng.normal(size=x.shape), x.dtype)
    return jnp.asarray(0.2 * rng.normal(size=x.shape), x.dtype)

  return jax.tree_util.tree_map_with_path(leaf, abstract)


def np_conv(x, kernel, bias, stride=1, pad=1):
  """NHWC cross-correlation with symmetric zero padding (PyTorch's Conv2d), in float64."""
  x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  kh, kw = kernel.shape[:2]
  ho = (x.shape[1] - kh) // stride + 1
  wo = (x.shape[2] - kw) // stride + 1
  out = np.zeros(x.shape[:1] + (ho, wo, kernel.shape[-1]))
  for i in range(kh):
    for j in range(kw):
      out += x[:, i:i + stride * ho:stride, j:j + stride * wo:stride, :] @ kernel[i, j]
  return out + bias


def np_group_norm(x, groups, scale, bias, eps=1e-5):
  b, h, w, c = x.shape
  g = x.reshape(b, h, w, groups, c // groups)
  mean = g.mean(axis=(1, 2, 4), keepdims=True)
  var = g.var(axis=(1, 2, 4), keepdims=True)
  return ((g - mean) / np.sqrt(var + eps)).reshape(x.shape) * scale + bias


def np_silu(x):
  return x / (1.0 + np.exp(-x))


def np_dense(x, p):
  return x @ np.asarray(p["kernel"], np.float64) + np.asarray(p["bias"], np.float64)


def f64(tree):
  return jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), tree)


def test_timestep_embedding_matches_the_sinusoid_formula():
  t = np.array([0, 1, 17.5, 999], np.float32)
  for dim in (128, 7):
    half = dim // 2
    expected = np.zeros((4, dim))
    for i in range(half):
      freq = 10000.0 ** (-i / half)
      expected[:, i] = np.cos(t * freq)
      expected[:, half + i] = np.sin(t * freq)
    got = np.asarray(unet.timestep_embedding(jnp.asarray(t), dim))
    assert got.shape == (4, dim) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=2e-4)
  # t = 0: all cosines 1, all sines 0 (cos first, as ADM/diffae); integer t works the same.
  np.testing.assert_array_equal(unet.timestep_embedding(jnp.array([0]), 6), [[1, 1, 1, 0, 0, 0]])
  with pytest.raises(ValueError, match=r"\[B\]"):
    unet.timestep_embedding(jnp.zeros((2, 1)), 8)


def test_timestep_embedding_mlp_is_dense_silu_dense():
  module = unet.TimestepEmbedding(features=32, frequency_dim=16)
  t = jnp.array([3, 250, 999])
  params = random_params(jax.eval_shape(module.init, jax.random.key(0), t)["params"], 0)
  assert params["dense_0"]["kernel"].shape == (16, 32)
  assert params["dense_1"]["kernel"].shape == (32, 32)
  got = module.apply({"params": params}, t)
  p = f64(params)
  sinusoid = np.asarray(unet.timestep_embedding(t, 16), np.float64)
  expected = np_dense(np_silu(np_dense(sinusoid, p["dense_0"])), p["dense_1"])
  np.testing.assert_allclose(got, expected, atol=1e-5)


def np_resblock(p, x, time_emb, cond, groups, resample):
  """diffae's ResBlock (two_cond, time first) written out in numpy."""
  def resample_fn(a):
    if resample == "up":
      return np.kron(a, np.ones((1, 2, 2, 1)))
    if resample == "down":
      return block_reduce(a, (1, 2, 2, 1), np.mean)
    return a
  h = np_silu(np_group_norm(x, groups, p["in_norm"]["scale"], p["in_norm"]["bias"]))
  h = np_conv(resample_fn(h), p["in_conv"]["kernel"], p["in_conv"]["bias"])
  x = resample_fn(x)
  scale_t, shift_t = np.split(np_dense(np_silu(time_emb), p["time_proj"]), 2, axis=-1)
  scale_c = np_dense(np_silu(cond), p["cond_proj"])
  h = np_group_norm(h, groups, p["out_norm"]["scale"], p["out_norm"]["bias"])
  h = h * (1 + scale_t[:, None, None]) + shift_t[:, None, None]
  h = h * (1 + scale_c[:, None, None])
  h = np_conv(np_silu(h), p["out_conv"]["kernel"], p["out_conv"]["bias"])
  if "skip" in p:
    x = np_conv(x, p["skip"]["kernel"], p["skip"]["bias"], pad=0)
  return x + h


@pytest.mark.parametrize("resample", ["none", "down", "up"])
def test_conditioned_resblock_matches_numpy_reference(resample):
  rng = np.random.default_rng(1)
  x = rng.normal(size=(2, 8, 8, 8)).astype(np.float32)
  time_emb = rng.normal(size=(2, 12)).astype(np.float32)
  cond = rng.normal(size=(2, 5)).astype(np.float32)
  block = unet.ResBlock(16, resample=resample, norm_groups=4)
  abstract = jax.eval_shape(block.init, jax.random.key(0), x, time_emb, cond)["params"]
  params = random_params(abstract, 2)
  assert params["time_proj"]["kernel"].shape == (12, 32)   # (scale_t, shift_t) of 2 D
  assert params["cond_proj"]["kernel"].shape == (5, 16)    # scale_c of D
  got = block.apply({"params": params}, x, time_emb, cond)
  size = {"none": 8, "down": 4, "up": 16}[resample]
  assert got.shape == (2, size, size, 16)
  expected = np_resblock(f64(params), x.astype(np.float64), time_emb, cond, 4, resample)
  np.testing.assert_allclose(got, expected, atol=2e-4, rtol=1e-4)


def test_fresh_resblock_is_its_skip_path_and_unconditioned_block_has_no_out_layers():
  rng = np.random.default_rng(3)
  x = jnp.asarray(rng.normal(size=(2, 4, 4, 8)), jnp.float32)
  time_emb = jnp.asarray(rng.normal(size=(2, 6)), jnp.float32)
  block = unet.ResBlock(norm_groups=4)
  variables = block.init(jax.random.key(0), x, time_emb)
  # Zero-initialised last conv: a fresh block returns its input exactly, whatever the time.
  np.testing.assert_array_equal(block.apply(variables, x, time_emb), x)
  assert "cond_proj" not in variables["params"]              # no latent given, no latent hook
  plain = unet.ResBlock(conditional=False, dropout=0.5, norm_groups=4)
  plain_vars = plain.init(jax.random.key(0), x)
  assert sorted(plain_vars["params"]) == ["in_conv", "in_norm"]
  # No dropout layer either: training mode needs no rng and changes nothing.
  np.testing.assert_array_equal(plain.apply(plain_vars, x, train=True), plain.apply(plain_vars, x))
  with pytest.raises(ValueError, match="needs time_emb"):
    block.apply(variables, x)


def test_resblock_dropout_only_in_training():
  rng = np.random.default_rng(4)
  x = jnp.asarray(rng.normal(size=(1, 4, 4, 8)), jnp.float32)
  time_emb = jnp.asarray(rng.normal(size=(1, 6)), jnp.float32)
  block = unet.ResBlock(dropout=0.5, norm_groups=4)
  params = random_params(jax.eval_shape(block.init, jax.random.key(0), x, time_emb)["params"], 5)
  apply = lambda seed, train: block.apply({"params": params}, x, time_emb, train=train,
                                          rngs={"dropout": jax.random.key(seed)})
  np.testing.assert_array_equal(apply(0, False), apply(1, False))
  np.testing.assert_array_equal(apply(0, True), apply(0, True))    # same key, same mask
  assert np.max(np.abs(np.asarray(apply(0, True) - apply(1, True)))) > 1e-3


def np_attention(p, x, heads, groups):
  b, h, w, c = x.shape
  k = c // heads
  y = np_group_norm(x, groups, p["norm"]["scale"], p["norm"]["bias"]).reshape(b, h * w, c)
  qkv = np_dense(y, p["qkv"])
  out = np.zeros((b, h * w, c))
  for n in range(heads):
    # ADM's legacy layout: head n owns channels [3Kn, 3K(n+1)) split as q, k, v.
    q, kk, v = np.split(qkv[..., 3 * k * n:3 * k * (n + 1)], 3, axis=-1)
    logits = q @ kk.transpose(0, 2, 1) / math.sqrt(k)
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    out[..., k * n:k * (n + 1)] = weights @ v
  return x + np_dense(out, p["proj_out"]).reshape(x.shape)


@pytest.mark.parametrize("heads", [1, 2])
def test_attention_matches_numpy_reference(heads):
  rng = np.random.default_rng(6)
  x = rng.normal(size=(2, 4, 4, 8)).astype(np.float32)
  block = unet.AttentionBlock(num_heads=heads, norm_groups=4)
  params = random_params(jax.eval_shape(block.init, jax.random.key(0), x)["params"], 7)
  got = block.apply({"params": params}, x)
  np.testing.assert_allclose(got, np_attention(f64(params), x.astype(np.float64), heads, 4),
                             atol=1e-4, rtol=1e-4)
  # head_channels picks the same split as num_heads.
  same = unet.AttentionBlock(head_channels=8 // heads, norm_groups=4).apply({"params": params}, x)
  np.testing.assert_allclose(same, got, atol=1e-6)
  with pytest.raises(ValueError, match="heads"):
    unet.AttentionBlock(num_heads=3, norm_groups=4).apply({"params": params}, x)


def test_fresh_attention_is_identity():
  x = jnp.asarray(np.random.default_rng(8).normal(size=(1, 4, 4, 8)), jnp.float32)
  block = unet.AttentionBlock(norm_groups=4)
  np.testing.assert_array_equal(block.apply(block.init(jax.random.key(0), x), x), x)


def test_resampling_matches_reference_operations():
  x = np.random.default_rng(9).normal(size=(2, 6, 4, 3)).astype(np.float32)
  np.testing.assert_array_equal(unet.upsample_nearest(jnp.asarray(x)),
                                np.kron(x, np.ones((1, 2, 2, 1), np.float32)))
  np.testing.assert_allclose(unet.downsample_average(jnp.asarray(x)),
                             block_reduce(x, (1, 2, 2, 1), np.mean), atol=1e-6)
  with pytest.raises(ValueError, match="even"):
    unet.downsample_average(jnp.zeros((1, 5, 4, 3)))
  # Strided-conv downsample: PyTorch's Conv2d(k 3, stride 2, padding 1).
  down = unet.Downsample(features=5)
  params = random_params(jax.eval_shape(down.init, jax.random.key(0), x)["params"], 10)
  got = down.apply({"params": params}, x)
  p = f64(params)["conv"]
  np.testing.assert_allclose(got, np_conv(x.astype(np.float64), p["kernel"], p["bias"], stride=2),
                             atol=1e-5)
  up = unet.Upsample(features=5)
  params = random_params(jax.eval_shape(up.init, jax.random.key(0), x)["params"], 11)
  p = f64(params)["conv"]
  np.testing.assert_allclose(up.apply({"params": params}, x),
                             np_conv(np.kron(x, np.ones((1, 2, 2, 1))), p["kernel"], p["bias"]),
                             atol=1e-5)
  with pytest.raises(ValueError, match="use_conv"):
    unet.Downsample(use_conv=False, features=5).apply({}, x)


def test_bfloat16_compute_keeps_float32_params_and_tracks_float32():
  rng = np.random.default_rng(12)
  x = jnp.asarray(rng.normal(size=(2, 4, 4, 8)), jnp.float32)
  time_emb = jnp.asarray(rng.normal(size=(2, 6)), jnp.float32)
  block32 = unet.ResBlock(16, norm_groups=4)
  block16 = unet.ResBlock(16, norm_groups=4, dtype=jnp.bfloat16)
  abstract = jax.eval_shape(block16.init, jax.random.key(0), x, time_emb)["params"]
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree_util.tree_leaves(abstract))
  params = random_params(abstract, 13)
  out16 = block16.apply({"params": params}, x, time_emb)
  assert out16.dtype == jnp.bfloat16
  out32 = block32.apply({"params": params}, x, time_emb)
  np.testing.assert_allclose(np.asarray(out16, np.float32), out32, atol=0.1, rtol=0.05)


def test_group_norm_uses_min_32_channels_groups():
  norm = unet.group_norm(16, 32, jnp.float32, "n")
  assert isinstance(norm, nn.GroupNorm) and norm.num_groups == 16 and norm.epsilon == 1e-5
  assert unet.group_norm(512, 32, jnp.float32, "n").num_groups == 32
  with pytest.raises(ValueError, match="divisible by 32"):
    unet.group_norm(48, 32, jnp.float32, "n")
