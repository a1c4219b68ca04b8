"""SE-ResNets: SE and SAP against numpy, block strides, CBAM's gates, the encoders' shapes, norms
and the speaker encoder's per-bin input normalisation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talking_heads.nn import se_resnet
from tests.nn.numpy_reference import f64

RNG = np.random.default_rng(5)


def init(module, *args):
  """Jitted init with an unsafe_rbg key (eager or threefry inits cost seconds per layer on CPU)."""
  return jax.jit(module.init)(jax.random.key(0, impl="unsafe_rbg"), *args)


def sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def test_squeeze_excitation_matches_numpy():
  x = RNG.normal(size=(2, 3, 4, 16))
  se = se_resnet.SqueezeExcitation(reduction=8)
  p = f64(init(se, jnp.asarray(x, jnp.float32))["params"])
  assert p["fc1"]["kernel"].shape == (16, 2)
  s = x.mean(axis=(1, 2)) @ p["fc1"]["kernel"] + p["fc1"]["bias"]
  s = sigmoid(np.maximum(s, 0) @ p["fc2"]["kernel"] + p["fc2"]["bias"])
  np.testing.assert_allclose(se.apply({"params": p}, jnp.asarray(x, jnp.float32)),
                             x * s[:, None, None, :], rtol=1e-5, atol=1e-5)


def test_self_attentive_pooling_matches_numpy():
  x = RNG.normal(size=(3, 7, 8))
  sap = se_resnet.SelfAttentivePooling()
  p = f64(init(sap, jnp.asarray(x, jnp.float32))["params"])
  e = np.tanh(x @ p["linear"]["kernel"] + p["linear"]["bias"]) @ p["attention"][:, 0]  # [B, T]
  w = np.exp(e - e.max(axis=1, keepdims=True))
  w /= w.sum(axis=1, keepdims=True)
  np.testing.assert_allclose(sap.apply({"params": p}, jnp.asarray(x, jnp.float32)),
                             (w[..., None] * x).sum(axis=1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("norm,activation", [("batch", "relu"), ("instance", "lrelu")])
def test_se_basic_block_strides_shortcut_and_norm_state(norm, activation):
  x = jnp.asarray(RNG.normal(size=(2, 8, 6, 4)), jnp.float32)
  block = se_resnet.SEBasicBlock(8, (2, 1), norm=norm, activation=activation)
  variables = init(block, x)
  assert "shortcut" in variables["params"]
  assert ("batch_stats" in variables) == (norm == "batch")
  y, updates = jax.jit(lambda v, x: block.apply(v, x, True, mutable=["batch_stats"]))(variables, x)
  if norm == "batch":
    assert not np.allclose(updates["batch_stats"]["norm1"]["mean"], 0.0)
  assert y.shape == (2, 4, 6, 8)
  if activation == "relu":
    assert float(y.min()) >= 0.0
  same = se_resnet.SEBasicBlock(4, norm=norm)
  shapes = jax.eval_shape(same.init, jax.random.key(0), x)["params"]
  assert "shortcut" not in shapes                                           # identity shortcut


def test_cbam_gates_channels_then_positions():
  x = jnp.asarray(RNG.normal(size=(2, 5, 5, 32)), jnp.float32)
  cbam = se_resnet.CBAM(reduction=16, norm="instance")
  variables = init(cbam, x)
  assert variables["params"]["mlp_fc1"]["kernel"].shape == (32, 2)
  assert variables["params"]["spatial_conv"]["kernel"].shape == (7, 7, 2, 1)
  y = np.asarray(jax.jit(cbam.apply)(variables, x))
  ratio = y / np.asarray(x)                      # = channel gate [B, C] * spatial gate [B, H, W]
  assert np.all((ratio > 0) & (ratio < 1))
  channel = ratio / ratio[:, :, :, :1]           # constant over positions
  np.testing.assert_allclose(channel, np.broadcast_to(channel[:, :1, :1], channel.shape),
                             rtol=1e-4)


def test_speaker_encoder_shapes_and_per_bin_input_normalisation():
  encoder = se_resnet.SpeakerEncoder(embed_dim=12, channels=(4, 8), blocks=(1, 1),
                                     strides=(1, 2), norm="instance", activation="lrelu")
  mel = RNG.normal(size=(2, 80, 20))
  variables = init(encoder, jnp.asarray(mel, jnp.float32))
  apply = jax.jit(encoder.apply)
  out = apply(variables, jnp.asarray(mel, jnp.float32))
  assert out.shape == (2, 12)
  # A per-bin offset and scale (a level change of every band) is normalised away.
  shifted = mel * 3.0 + RNG.normal(size=(1, 80, 1)) * 5.0
  np.testing.assert_allclose(apply(variables, jnp.asarray(shifted, jnp.float32)), out,
                             rtol=1e-3, atol=1e-4)
  # ResNetSE34L's trunk: 80 x 20 -> stem (2, 1) -> 40 x 20 -> /2 -> /2 -> 10 x 5 (T = 5).
  trunk = jax.eval_shape(lambda: se_resnet.ResNetSE(
      (4, 8, 8, 16), (1, 1, 1, 1), (1, 2, 2, 1), stem_strides=(2, 1),
      norm="instance").init_with_output(jax.random.key(0), jnp.zeros((1, 80, 20, 1)))[0])
  assert trunk.shape == (1, 10, 5, 16)


def test_visual_encoder_on_stacked_grayscale_frames():
  encoder = se_resnet.VisualEncoder(embed_dim=12, channels=(4, 8), blocks=(1, 1), strides=(1, 2))
  frames = jnp.asarray(RNG.normal(size=(2, 24, 24, 5)), jnp.float32)
  variables = init(encoder, frames)
  out, updates = jax.jit(lambda v, f: encoder.apply(v, f, True, mutable=["batch_stats"]))(
      variables, frames)
  assert out.shape == (2, 12) and "cbam" in updates["batch_stats"]
  assert not np.allclose(updates["batch_stats"]["trunk"]["stem_norm"]["mean"], 0.0)
