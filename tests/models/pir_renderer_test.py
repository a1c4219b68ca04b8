"""PIR component C at the tiny size: the inpainting renderer (global generator with and without
the local enhancer, I_F fusion, skips) and the multi-scale discriminator's features."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talking_heads.losses import gan
from talking_heads.models import pir_renderer
from talking_heads.systems.pir import sizes

TINY = sizes.sizes("tiny")


def _init_with_output(module, *args):
  """(output, variables) from one jitted init (one compilation instead of init + apply)."""
  return jax.jit(module.init_with_output)(jax.random.key(0, impl="unsafe_rbg"), *args)


def _frames(seed=0, batch=2, size=32, r=8, c=4):
  rng = np.random.default_rng(seed)
  return (jnp.asarray(rng.uniform(-1, 1, (batch, size, size, 3)), jnp.float32),
          jnp.asarray(rng.uniform(-1, 1, (batch, r, r, c)), jnp.float32))


def test_instance_norm_and_average_pool_without_padding():
  x = jnp.asarray(np.random.default_rng(0).normal(3.0, 2.0, (2, 5, 6, 3)), jnp.float32)
  y = pir_renderer.instance_norm(x)
  np.testing.assert_allclose(y.mean(axis=(1, 2)), 0.0, atol=1e-5)
  np.testing.assert_allclose(y.var(axis=(1, 2)), 1.0, atol=1e-3)
  image = jnp.arange(16.0).reshape(1, 4, 4, 1)
  pooled = pir_renderer.downsample_avg(image)[0, :, :, 0]
  # The corner window holds 4 valid pixels (0, 1, 4, 5); the next one 6 (1, 2, 3, 5, 6, 7).
  np.testing.assert_allclose(pooled[0], [2.5, 4.0], atol=1e-6)


@pytest.mark.parametrize("local_enhancer", [True, False])
def test_renderer_shapes_and_dependence_on_both_inputs(local_enhancer):
  kwargs = dict(TINY.renderer, local_enhancer=local_enhancer)
  renderer = pir_renderer.InpaintingRenderer(**kwargs)
  masked, features = _frames()
  if not local_enhancer:                                    # 32 / 2^2 = 8: I_F used as is
    assert renderer.bottleneck_size(32) == 8
  # Samples are independent (instance norm): sample 1 changes I_F, sample 2 the masked frame.
  masked = jnp.stack([masked[0], masked[0], -masked[0]])
  features = jnp.stack([features[0], -features[0], features[0]])
  out, variables = _init_with_output(renderer, masked, features)
  assert out.shape == masked.shape and float(jnp.abs(out).max()) <= 1.0
  assert float(jnp.abs(out[1] - out[0]).max()) > 1e-4
  assert float(jnp.abs(out[2] - out[0]).max()) > 1e-4
  # The skip connection: the second up-conv reads its features plus the encoder's.
  params = variables["params"]
  width = lambda level: kwargs["base_features"] * (2 if local_enhancer else 1) * 2**level
  assert params["global_up1"]["kernel"].shape[2:] == (width(1) + width(1), width(0))
  assert params["global_up2"]["kernel"].shape[2:] == (width(2), width(1))
  with pytest.raises(ValueError, match="bottleneck"):
    jax.eval_shape(renderer.apply, variables, masked, features[:, :6, :6])


def test_multiscale_discriminator_outputs_and_feature_matching():
  d = pir_renderer.MultiscaleDiscriminator(**TINY.discriminator)       # 4 wide, 2 layers, 3 scales
  image = jnp.asarray(np.random.default_rng(1).uniform(-1, 1, (1, 32, 32, 6)), jnp.float32)
  # Samples are independent (instance norm): the second is a different image.
  both, _ = _init_with_output(d, jnp.concatenate([image, -image]))
  outputs = jax.tree_util.tree_map(lambda x: x[:1], both)
  other = jax.tree_util.tree_map(lambda x: x[1:], both)
  assert len(outputs) == 3 and all(len(o) == 4 for o in outputs)
  # Conv4 padding 2: stride 2 maps H -> H / 2 + 1, stride 1 maps H -> H + 1.
  assert [o.shape[1] for o in outputs[0]] == [17, 9, 10, 11]
  assert [o.shape[-1] for o in outputs[0]] == [4, 8, 16, 1]
  assert [o[-1].shape[1] for o in outputs] == [11, 7, 5]     # inputs 32, 16, 8
  features = lambda outs: [o[:-1] for o in outs]
  assert float(gan.feature_matching(features(outputs), features(outputs))) == 0.0
  assert float(gan.feature_matching(features(outputs), features(other))) > 0.0
