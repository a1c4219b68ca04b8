"""Pre-norm transformer block: numpy parity, names, cross-attention and its masks."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from talking_heads.nn import transformer
from tests.nn.numpy_reference import f64, random_params


def np_layer_norm(x, p, eps=1e-6):
  mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + eps) * p["scale"] + p["bias"]


def np_mha(p, x, context, heads):
  proj = lambda name, t: np.einsum("bnd,dhk->bnhk", t, p[name]["kernel"]) + p[name]["bias"]
  q, k, v = proj("query", x), proj("key", context), proj("value", context)
  logits = np.einsum("bnhk,bmhk->bhnm", q, k) / math.sqrt(q.shape[-1])
  weights = np.exp(logits - logits.max(-1, keepdims=True))
  weights /= weights.sum(-1, keepdims=True)
  out = np.einsum("bhnm,bmhk->bnhk", weights, v)
  return np.einsum("bnhk,hkd->bnd", out, p["out"]["kernel"]) + p["out"]["bias"]


def test_block_matches_numpy_reference():
  block = transformer.TransformerBlock(num_heads=2, mlp_ratio=2.0)
  x = jnp.asarray(np.random.default_rng(30).normal(size=(2, 5, 8)), jnp.float32)
  params = random_params(jax.eval_shape(block.init, jax.random.key(0), x)["params"], 31)
  assert set(params) == {"norm1", "attn", "norm2", "mlp"}
  assert set(params["mlp"]) == {"fc1", "fc2"} and params["mlp"]["fc1"]["kernel"].shape == (8, 16)
  got = block.apply({"params": params}, x)
  p, h = f64(params), np.asarray(x, np.float64)
  y = np_layer_norm(h, p["norm1"])
  h = h + np_mha(p["attn"], y, y, 2)
  y = np_layer_norm(h, p["norm2"])
  hidden = y @ p["mlp"]["fc1"]["kernel"] + p["mlp"]["fc1"]["bias"]
  hidden = 0.5 * hidden * (1 + special.erf(hidden / math.sqrt(2)))   # exact GELU
  expected = h + hidden @ p["mlp"]["fc2"]["kernel"] + p["mlp"]["fc2"]["bias"]
  np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)


def test_cross_attention_block_shapes_and_context_mask():
  block = transformer.TransformerBlock(num_heads=2, cross_attention=True)
  rng = np.random.default_rng(32)
  x = jnp.asarray(rng.normal(size=(2, 5, 8)), jnp.float32)
  context = jnp.asarray(rng.normal(size=(2, 3, 6)), jnp.float32)      # [B, M, E]
  params = random_params(jax.eval_shape(block.init, jax.random.key(0), x, context)["params"], 33)
  assert {"norm_cross", "cross_attn"} <= set(params)
  assert params["cross_attn"]["key"]["kernel"].shape == (6, 2, 4)
  apply = lambda c, **m: np.asarray(block.apply({"params": params}, x, c, **m))
  out = apply(context)
  assert out.shape == (2, 5, 8)
  valid = jnp.asarray([[True, True, False], [True, False, False]])
  changed = context.at[0, 2].set(7.0).at[1, 1:].set(-7.0)
  np.testing.assert_array_equal(apply(context, context_key_mask=valid),
                                apply(changed, context_key_mask=valid))
  # Self-attention padding: padded tokens of x do not reach the others.
  key_mask = jnp.asarray([[True] * 4 + [False]] * 2)
  padded = x.at[:, 4].set(5.0)
  moved = np.asarray(block.apply({"params": params}, padded, context, key_mask=key_mask))
  np.testing.assert_array_equal(apply(context, key_mask=key_mask)[:, :4], moved[:, :4])
  with pytest.raises(ValueError, match="context"):
    block.apply({"params": params}, x)


def test_bfloat16_compute_keeps_float32_params():
  block = transformer.TransformerBlock(num_heads=2, dtype=jnp.bfloat16)
  x = jnp.asarray(np.random.default_rng(34).normal(size=(1, 4, 8)), jnp.float32)
  variables = block.init(jax.random.key(0), x)
  assert all(a.dtype == jnp.float32 for a in jax.tree_util.tree_leaves(variables))
  assert block.apply(variables, x).dtype == jnp.bfloat16


def test_cross_attention_only_block_matches_numpy_reference():
  block = transformer.TransformerBlock(num_heads=2, mlp_ratio=2.0, self_attention=False,
                                       cross_attention=True)
  rng = np.random.default_rng(34)
  x = jnp.asarray(rng.normal(size=(2, 5, 8)), jnp.float32)
  context = jnp.asarray(rng.normal(size=(2, 3, 6)), jnp.float32)
  params = random_params(jax.eval_shape(block.init, jax.random.key(0), x, context)["params"], 35)
  assert set(params) == {"norm_cross", "cross_attn", "norm2", "mlp"}
  p, h = f64(params), np.asarray(x, np.float64)
  h = h + np_mha(p["cross_attn"], np_layer_norm(h, p["norm_cross"]), np.asarray(context), 2)
  y = np_layer_norm(h, p["norm2"])
  hidden = y @ p["mlp"]["fc1"]["kernel"] + p["mlp"]["fc1"]["bias"]
  hidden = 0.5 * hidden * (1 + special.erf(hidden / math.sqrt(2)))
  expected = h + hidden @ p["mlp"]["fc2"]["kernel"] + p["mlp"]["fc2"]["bias"]
  np.testing.assert_allclose(block.apply({"params": params}, x, context), expected, atol=1e-4,
                             rtol=1e-4)
