"""UNet pieces: sinusoid formula, ResBlock against a numpy reference, init, bfloat16."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage.measure import block_reduce

from talking_heads.nn import unet
from tests.nn.numpy_reference import f64, np_conv, np_dense, np_group_norm, np_silu, random_params


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
