"""Attention: spatial blocks (taming, ADM) and multi-head attention vs numpy, masks, shapes."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talking_heads.nn import attention
from tests.nn.numpy_reference import f64, np_dense, np_group_norm, random_params


def _image(shape, seed=0):
  return jnp.asarray(np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32))


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
def test_adm_attention_matches_numpy_reference(heads):
  rng = np.random.default_rng(6)
  x = rng.normal(size=(2, 4, 4, 8)).astype(np.float32)
  block = attention.SpatialSelfAttention(num_heads=heads, norm_groups=4)
  params = random_params(jax.eval_shape(block.init, jax.random.key(0), x)["params"], 7)
  assert set(params) == {"norm", "qkv", "proj_out"}
  got = block.apply({"params": params}, x)
  np.testing.assert_allclose(got, np_attention(f64(params), x.astype(np.float64), heads, 4),
                             atol=1e-4, rtol=1e-4)
  # head_channels picks the same split as num_heads.
  same = attention.SpatialSelfAttention(head_channels=8 // heads, norm_groups=4).apply(
      {"params": params}, x)
  np.testing.assert_allclose(same, got, atol=1e-6)
  with pytest.raises(ValueError, match="heads"):
    attention.SpatialSelfAttention(num_heads=3, norm_groups=4).apply({"params": params}, x)


def test_fresh_adm_attention_is_identity():
  x = jnp.asarray(np.random.default_rng(8).normal(size=(1, 4, 4, 8)), jnp.float32)
  block = attention.SpatialSelfAttention(norm_groups=4)
  np.testing.assert_array_equal(block.apply(block.init(jax.random.key(0), x), x), x)


def test_taming_non_local_block_matches_numpy():
  x = np.asarray(_image((2, 4, 5, 8)), np.float64)
  block = attention.SpatialSelfAttention("conv", norm_eps=1e-6, norm_rule="divisor",
                                         zero_init=False)
  params = block.init(jax.random.PRNGKey(1), jnp.asarray(x, jnp.float32))["params"]
  p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)
  assert set(p) == {"norm", "q", "k", "v", "proj_out"}
  h = np_group_norm(x, 8, p["norm"]["scale"], p["norm"]["bias"], eps=1e-6)
  lin = lambda name, t: t @ p[name]["kernel"][0, 0] + p[name]["bias"]
  q, k, v = (lin(n, h).reshape(2, 20, 8) for n in ("q", "k", "v"))
  logits = q @ k.transpose(0, 2, 1) / np.sqrt(8)
  attn = np.exp(logits - logits.max(-1, keepdims=True))
  attn /= attn.sum(-1, keepdims=True)
  expected = x + lin("proj_out", (attn @ v).reshape(2, 4, 5, 8))
  out = block.apply({"params": params}, jnp.asarray(x, jnp.float32))
  np.testing.assert_allclose(np.asarray(out), expected, atol=1e-4)


def np_softmax_attention(q, k, v, mask=None):
  """softmax(q k^T / sqrt(K)) v per head in float64; q [B, N, H, K], k, v [B, M, H, K]."""
  logits = np.einsum("bnhk,bmhk->bhnm", q, k) / math.sqrt(q.shape[-1])
  if mask is not None:
    logits = np.where(mask, logits, -np.inf)
  weights = np.exp(logits - logits.max(-1, keepdims=True))
  weights /= weights.sum(-1, keepdims=True)
  return np.einsum("bhnm,bmhk->bnhk", weights, v)


def test_dot_product_attention_matches_numpy():
  rng = np.random.default_rng(20)
  shapes = ((2, 5, 3, 4), (2, 7, 3, 4), (2, 7, 3, 4))                # q, k, v
  q, k, v = (rng.normal(size=shape).astype(np.float32) for shape in shapes)
  f = lambda a: np.asarray(a, np.float64)
  np.testing.assert_allclose(attention.dot_product_attention(q, k, v),
                             np_softmax_attention(f(q), f(k), f(v)), atol=1e-5)
  mask = rng.uniform(size=(2, 1, 5, 7)) < 0.6
  mask[..., 0] = True                                              # no empty row
  np.testing.assert_allclose(attention.dot_product_attention(q, k, v, mask),
                             np_softmax_attention(f(q), f(k), f(v), mask), atol=1e-5)


def _mha(seed=21, **kw):
  module = attention.MultiHeadAttention(num_heads=2, **kw)
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.normal(size=(2, 5, 8)), jnp.float32)          # [B, N, D]
  context = jnp.asarray(rng.normal(size=(2, 7, 6)), jnp.float32)    # [B, M, E]
  params = random_params(jax.eval_shape(module.init, jax.random.key(0), x, context)["params"], seed)
  return module, params, x, context


def test_multi_head_attention_matches_numpy_and_has_cross_shapes():
  module, params, x, context = _mha()
  assert params["query"]["kernel"].shape == (8, 2, 4)
  assert params["key"]["kernel"].shape == (6, 2, 4)
  assert params["out"]["kernel"].shape == (2, 4, 8)
  got = module.apply({"params": params}, x, context)
  assert got.shape == (2, 5, 8) and got.dtype == jnp.float32
  p = f64(params)
  proj = lambda name, t: np.einsum("bnd,dhk->bnhk", t, p[name]["kernel"]) + p[name]["bias"]
  xs, cs = np.asarray(x, np.float64), np.asarray(context, np.float64)
  out = np_softmax_attention(proj("query", xs), proj("key", cs), proj("value", cs))
  expected = np.einsum("bnhk,hkd->bnd", out, p["out"]["kernel"]) + p["out"]["bias"]
  np.testing.assert_allclose(got, expected, atol=1e-5)
  # Without a context it is self-attention over x.
  self_module = attention.MultiHeadAttention(num_heads=2, head_dim=3)
  variables = self_module.init(jax.random.key(0), x)
  assert variables["params"]["key"]["kernel"].shape == (8, 2, 3)
  assert self_module.apply(variables, x).shape == (2, 5, 8)


def test_masks_really_mask():
  module, params, x, context = _mha()
  apply = lambda c, **m: np.asarray(module.apply({"params": params}, x, c, **m))
  key_mask = jnp.asarray([[True] * 4 + [False] * 3, [True] * 6 + [False]])
  changed = context.at[0, 4:].set(100.0).at[1, 6].set(-50.0)        # only masked-out entries
  np.testing.assert_array_equal(apply(context, key_mask=key_mask),
                                apply(changed, key_mask=key_mask))
  assert np.abs(apply(context) - apply(changed)).max() > 1e-3      # unmasked, they matter
  # A per-pair mask: query n sees context entries <= n (a causal-like alignment).
  pair = jnp.broadcast_to(jnp.tril(jnp.ones((5, 7), bool)), (2, 5, 7))
  out, out_changed = apply(context, mask=pair), apply(context.at[:, 3:].set(9.0), mask=pair)
  np.testing.assert_array_equal(out[:, :3], out_changed[:, :3])
  assert np.abs(out[:, 3:] - out_changed[:, 3:]).max() > 1e-3
  # Both masks combine; fully visible masks equal no mask.
  both = apply(changed, mask=pair, key_mask=key_mask)
  np.testing.assert_array_equal(both, apply(context, mask=pair, key_mask=key_mask))
  visible = apply(context, mask=jnp.ones((2, 5, 7), bool), key_mask=jnp.ones((2, 7), bool))
  np.testing.assert_array_equal(visible, apply(context))
  with pytest.raises(ValueError, match=r"\[B, M\]"):
    apply(context, key_mask=jnp.ones((2, 5), bool))
  with pytest.raises(ValueError, match=r"\[B, N, M\]"):
    apply(context, mask=jnp.ones((2, 7, 5), bool))


def _np_layer_norm(x, p, eps=1e-5):
  mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + eps) * p["scale"] + p["bias"]


def _np_mha_no_qkv_bias(p, x, context):
  proj = lambda name, t: np.einsum("bnd,dhk->bnhk", t, p[name]["kernel"])
  out = np_softmax_attention(proj("query", x), proj("key", context), proj("value", context))
  return np.einsum("bnhk,hkd->bnd", out, p["out"]["kernel"]) + p["out"]["bias"]


def test_spatial_transformer_matches_numpy_and_reads_contexts_in_order():
  from scipy import special  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(11)
  x = rng.normal(size=(2, 3, 4, 8)).astype(np.float32)
  motion = rng.normal(size=(2, 5, 6)).astype(np.float32)
  reference = rng.normal(size=(2, 12, 4)).astype(np.float32)
  block = attention.SpatialTransformer(("phi1", "phi2"), head_channels=4, norm_groups=4)
  params = random_params(jax.eval_shape(block.init, jax.random.key(0), x,
                                        (motion, reference))["params"], 12)
  assert {"phi1", "phi2", "norm_phi1", "norm_phi2", "attn", "ff", "proj_in",
          "proj_out"} <= set(params)
  assert "bias" not in params["phi1"]["key"] and params["phi1"]["key"]["kernel"].shape == (6, 2, 4)
  got = block.apply({"params": params}, x, (motion, reference))
  p = f64(params)
  xs = x.astype(np.float64)
  y = np_group_norm(xs, 4, p["norm"]["scale"], p["norm"]["bias"], eps=1e-6).reshape(2, 12, 8)
  t = np_dense(y, p["proj_in"])
  t = t + _np_mha_no_qkv_bias(p["attn"], _np_layer_norm(t, p["norm_attn"]),
                              _np_layer_norm(t, p["norm_attn"]))
  t = t + _np_mha_no_qkv_bias(p["phi1"], _np_layer_norm(t, p["norm_phi1"]), motion)
  t = t + _np_mha_no_qkv_bias(p["phi2"], _np_layer_norm(t, p["norm_phi2"]), reference)
  a, g = np.split(np_dense(_np_layer_norm(t, p["norm_ff"]), p["ff"]["proj"]), 2, axis=-1)
  t = t + np_dense(a * 0.5 * g * (1 + special.erf(g / np.sqrt(2))), p["ff"]["out"])
  expected = xs + np_dense(t, p["proj_out"]).reshape(xs.shape)
  np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)
  fresh = block.init(jax.random.key(0), x, (motion, reference))
  np.testing.assert_array_equal(block.apply(fresh, x, (motion, reference)), x)
  with pytest.raises(ValueError, match="need as many contexts"):
    block.apply({"params": params}, x, (motion,))
