"""Conformer: depthwise convolution (centred / causal), relative attention, padding masks, sizes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talking_heads.nn import conformer

D, H, FFN, K, T = 16, 2, 32, 5, 12


def _block(causal=False, dropout=0.0):
  return conformer.ConformerBlock(H, FFN, K, causal=causal, dropout_rate=dropout,
                                  attention_dropout_rate=dropout)


def _init(module, *args, seed=0):
  return module.init(jax.random.key(seed), *args, deterministic=True)


def _init_apply(module, x, mask=None, seed=0):
  variables = _init(module, x, mask, seed=seed)
  return lambda y, m=mask: module.apply(variables, y, m, deterministic=True)


def _inputs(seed=0, shape=(2, T, D)):
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def test_conv_padding_hand_cases():
  assert conformer.conv_padding(13, causal=False) == (6, 6)
  assert conformer.conv_padding(13, causal=True) == (12, 0)
  assert conformer.conv_padding(4, causal=True) == (3, 0)
  with pytest.raises(ValueError, match="odd"):
    conformer.conv_padding(4, causal=False)
  with pytest.raises(ValueError, match="positive"):
    conformer.conv_padding(0, causal=True)


@pytest.mark.parametrize("causal", [False, True])
def test_depthwise_conv_matches_numpy_and_has_the_configured_support(causal):
  channels, t0 = 3, 6
  conv = conformer.DepthwiseConv1D(K, causal=causal)
  x = _inputs(1, (1, T, channels))
  variables = conv.init(jax.random.key(0), x)
  kernel = np.asarray(variables["params"]["conv"]["kernel"])[:, 0, :]         # [k, C]
  bias = np.asarray(variables["params"]["conv"]["bias"])
  variables = {"params": {"conv": {"kernel": variables["params"]["conv"]["kernel"],
                                   "bias": jnp.asarray(bias + 0.5)}}}
  left = K - 1 if causal else K // 2

  # Independent reference: out[t, c] = bias[c] + sum_m w[m, c] x[t + m - left, c].
  xn = np.asarray(x[0])
  padded = np.pad(xn, ((left, K - 1 - left), (0, 0)))
  want = np.stack([(padded[t:t + K] * kernel).sum(0) for t in range(T)]) + bias + 0.5
  np.testing.assert_allclose(conv.apply(variables, x)[0], want, rtol=1e-5, atol=1e-5)

  impulse = jnp.zeros((1, T, channels)).at[0, t0].set(1.0)
  response = np.asarray(conv.apply(variables, impulse) - conv.apply(variables, 0 * impulse))[0]
  touched = np.flatnonzero(np.abs(response).max(axis=1) > 0)
  if causal:
    np.testing.assert_array_equal(touched, np.arange(t0, t0 + K))
  else:  # a unit impulse spreads k // 2 frames to each side
    np.testing.assert_array_equal(touched, np.arange(t0 - K // 2, t0 + K // 2 + 1))
  # The response is the kernel itself, flipped in time.
  np.testing.assert_allclose(response[touched], kernel[::-1], rtol=1e-6)


@pytest.mark.parametrize("causal", [False, True])
def test_convolution_module_receptive_field(causal):
  module = conformer.ConvolutionModule(K, causal=causal, dropout_rate=0.0)
  x = _inputs(2, (1, T, D))
  apply = _init_apply(module, x)
  t0 = 6
  # A random change (a constant one would vanish in the LayerNorm).
  moved = x.at[0, t0].add(_inputs(3, (D,)))
  changed = np.abs(np.asarray(apply(moved) - apply(x))[0]).max(axis=1) > 1e-6
  window = np.arange(t0, t0 + K) if causal else np.arange(t0 - K // 2, t0 + K // 2 + 1)
  np.testing.assert_array_equal(np.flatnonzero(changed), window)


@pytest.mark.parametrize("module", [
    conformer.ConvolutionModule(K, causal=True, dropout_rate=0.0),
    conformer.RelativeSelfAttention(H, causal=True, dropout_rate=0.0, attention_dropout_rate=0.0),
    conformer.Conformer(2, H, FFN, K, causal=True, dropout_rate=0.0, attention_dropout_rate=0.0),
], ids=["conv", "attention", "stack"])
def test_causal_output_at_t_ignores_inputs_after_t(module):
  x = _inputs(3)
  apply = _init_apply(module, x)
  t0 = 5
  future = x.at[:, t0 + 1:].set(_inputs(4)[:, t0 + 1:])
  base, moved = apply(x), apply(future)
  np.testing.assert_allclose(moved[:, :t0 + 1], base[:, :t0 + 1], atol=1e-6)
  assert float(jnp.abs(moved[:, t0 + 1:] - base[:, t0 + 1:]).max()) > 1e-3


def test_centred_block_does_see_the_future():
  x = _inputs(3)
  apply = _init_apply(_block(causal=False), x)
  future = x.at[:, 6:].set(_inputs(4)[:, 6:])
  assert float(jnp.abs(apply(future)[:, :6] - apply(x)[:, :6]).max()) > 1e-3


@pytest.mark.parametrize("module", [
    conformer.RelativeSelfAttention(H, dropout_rate=0.0, attention_dropout_rate=0.0),
    conformer.ConvolutionModule(K, dropout_rate=0.0),
    conformer.Conformer(2, H, FFN, K, dropout_rate=0.0, attention_dropout_rate=0.0),
], ids=["attention", "conv", "stack"])
def test_padded_frames_do_not_reach_valid_frames(module):
  lengths = np.array([T, 7])
  mask = jnp.asarray(np.arange(T)[None, :] < lengths[:, None])
  x = _inputs(5)
  apply = _init_apply(module, x, mask)
  garbage = jnp.where(mask[..., None], x, 100.0 * _inputs(6))
  base, moved = apply(x), apply(garbage)
  valid = np.asarray(mask)
  np.testing.assert_allclose(np.asarray(moved)[valid], np.asarray(base)[valid], atol=1e-5)
  # The same change without the mask does move valid frames: the check above is not vacuous.
  everything = jnp.ones_like(mask)
  unmasked = np.asarray(apply(garbage, everything) - apply(x, everything))[1, :7]
  assert np.abs(unmasked).max() > 1e-3


def test_fully_padded_sequence_stays_finite():
  x = _inputs(7)
  mask = jnp.zeros((2, T), bool)
  out = _init_apply(_block(), x, mask)(x)
  assert np.isfinite(np.asarray(out)).all()


def test_relative_sinusoids_hand_values():
  table = conformer.relative_sinusoids(3, 4)                                 # offsets 2..-2
  assert table.shape == (5, 4)
  offsets = np.array([2, 1, 0, -1, -2], np.float64)
  np.testing.assert_allclose(table[:, 0], np.sin(offsets), atol=1e-7)
  np.testing.assert_allclose(table[:, 1], np.cos(offsets), atol=1e-7)
  np.testing.assert_allclose(table[:, 2], np.sin(offsets / 100.0), atol=1e-7)
  np.testing.assert_allclose(table[:, 3], np.cos(offsets / 100.0), atol=1e-7)
  with pytest.raises(ValueError, match="even"):
    conformer.relative_sinusoids(3, 5)


def test_relative_logits_match_a_loop_over_offsets():
  rng = np.random.default_rng(8)
  length, heads, width = 6, 2, 3
  q = rng.normal(size=(2, length, heads, width)).astype(np.float32)
  pos = rng.normal(size=(2 * length - 1, heads, width)).astype(np.float32)
  want = np.zeros((2, heads, length, length), np.float32)
  for i in range(length):
    for j in range(length):
      row = length - 1 - (i - j)                                             # offset i - j
      want[:, :, i, j] = np.einsum("bhk,hk->bh", q[:, i], pos[row])
  np.testing.assert_allclose(conformer.relative_logits(jnp.asarray(q), jnp.asarray(pos)), want,
                             rtol=1e-5, atol=1e-5)


def test_block_parameter_count_is_the_derived_one():
  d, f, k = 256, 1024, 13
  ffn = 2 * d + d * f + f + f * d + d
  attention = 2 * d + 3 * (d * d + d) + d * d + 2 * d + d * d + d   # LN, qkv, pos, u v, out
  conv = 2 * d + d * 2 * d + 2 * d + k * d + d + 2 * d + d * d + d
  want = 2 * ffn + attention + conv + 2 * d
  block = conformer.ConformerBlock(2, f, k)
  shapes = jax.eval_shape(lambda: block.init(jax.random.key(0), jnp.zeros((1, 8, d)),
                                             deterministic=True))
  got = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(shapes))
  assert got == want


def test_every_parameter_gets_a_gradient():
  x = _inputs(9)
  mask = jnp.asarray(np.arange(T)[None, :] < np.array([[T], [8]]))
  block = _block()
  params = _init(block, x, mask)["params"]
  target = _inputs(10)
  grads = jax.jit(jax.grad(lambda p: jnp.sum(
      (block.apply({"params": p}, x, mask, deterministic=True) - target) ** 2)))(params)
  for path, g in jax.tree_util.tree_leaves_with_path(grads):
    assert float(jnp.abs(g).max()) > 0, jax.tree_util.keystr(path)


def test_dropout_is_seeded():
  x = _inputs(11)
  ffn = conformer.FeedForward(FFN, dropout_rate=0.3)
  variables = _init(ffn, x)
  run = lambda seed: ffn.apply(variables, x, deterministic=False,
                               rngs={"dropout": jax.random.key(seed)})
  np.testing.assert_array_equal(run(1), run(1))
  assert float(jnp.abs(run(1) - run(2)).max()) > 1e-3
  np.testing.assert_array_equal(ffn.apply(variables, x, deterministic=True),
                                ffn.apply(variables, x, deterministic=True))


def test_bad_shapes_raise():
  x = _inputs(12)
  with pytest.raises(ValueError, match="divisible"):
    conformer.RelativeSelfAttention(3).init(jax.random.key(0), x, deterministic=True)
  with pytest.raises(ValueError, match="mask shape"):
    _block().init(jax.random.key(0), x, jnp.ones((2, T + 1), bool), deterministic=True)
