"""PIR component B at the tiny size: planes, I_F under the corpus camera, the proxy upsampler,
a learning test (the proxy task fits a masked face)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from talking_heads.face import morphable
from talking_heads.models import triplane
from talking_heads.rendering import camera as cam
from talking_heads.systems.pir import sizes

TINY = sizes.sizes("tiny")
A, E = 15, 9


def _camera(batch, size):
  k = morphable.default_camera(size)
  pose = np.tile(morphable.default_pose(), (batch, 1))
  pose[:, 0] = np.linspace(-0.3, 0.3, batch)                   # yaw
  return cam.from_face_pose(pose, np.tile(k, (batch, 1, 1)), size)


def _inputs(batch=2, seed=0):
  rng = np.random.default_rng(seed)
  return (jnp.asarray(rng.normal(size=(batch, A)), jnp.float32),
          jnp.asarray(rng.uniform(size=(batch, E)), jnp.float32), _camera(batch, TINY.image_size))


def _init(module, *args):
  return jax.jit(module.init)(jax.random.key(0, impl="unsafe_rbg"), *args)


def _init_with_output(module, *args):
  """(output, variables) from one jitted init (one compilation instead of init + apply)."""
  return jax.jit(module.init_with_output)(jax.random.key(0, impl="unsafe_rbg"), *args)


def test_planes_feature_image_and_upsampler_shapes():
  generator = triplane.TriplaneGenerator(**TINY.triplane)
  identity, expression, _ = _inputs()
  # Two samples that differ in their expression only.
  identity = jnp.repeat(identity[:1], 2, axis=0)
  camera = cam.Camera(*(jnp.repeat(x[:1], 2, axis=0) for x in _camera(1, TINY.image_size)))
  out, variables = _init_with_output(generator, identity, expression, camera)
  r, c = TINY.triplane["neural_resolution"], TINY.triplane["plane_channels"]
  assert out.image.shape == (2, r, r, c) and out.depth.shape == out.opacity.shape == (2, r, r)
  assert bool(jnp.all((out.opacity >= 0) & (out.opacity <= 1 + 1e-6)))
  assert float(out.image.min()) >= -1.0 - 1e-6 and float(out.image.max()) <= 1.0 + 1e-6
  assert float(jnp.abs(out.image[0] - out.image[1]).max()) > 1e-4      # the expression counts
  planes = jax.eval_shape(lambda v, w: generator.apply(v, w, method="planes"), variables, out.w)
  assert planes.shape == (2, 3, 16, 16, c)


def test_w_equals_z_without_the_eg3d_mapping():
  generator = triplane.TriplaneGenerator(**TINY.triplane, eg3d_mapping=False)
  identity, expression, camera = _inputs()
  variables = jax.eval_shape(generator.init, jax.random.key(0), identity, expression, camera)
  assert "mapping" not in variables["params"] and "mapping" in jax.eval_shape(
      triplane.TriplaneGenerator(**TINY.triplane).init, jax.random.key(0), identity, expression,
      camera)["params"]
  w = jax.eval_shape(lambda v: generator.apply(v, identity, expression, method="style"),
                     variables)
  assert w.shape == (2, TINY.triplane["style_dim"])


@pytest.mark.slow
def test_proxy_task_learns_a_masked_face():
  """Component B's learning test: the generator + upsampler (output 32 px from I_F at 8 px) fit
  one masked frame (L2)."""
  generator = triplane.TriplaneGenerator(**TINY.triplane)
  upsampler = triplane.ProxyUpsampler(**TINY.upsampler)
  identity, expression, camera = _inputs(batch=1)
  s = TINY.image_size
  yy, xx = np.mgrid[:s, :s] / s
  target = jnp.asarray(np.stack([np.sin(6 * xx), np.cos(5 * yy), xx - yy], -1)[None], jnp.float32)
  mask = jnp.asarray(((xx - 0.5) ** 2 + (yy - 0.55) ** 2 < 0.12)[None, ..., None], jnp.float32)
  out = _init(generator, identity, expression, camera)
  face, upsampler_variables = _init_with_output(upsampler, jnp.zeros((1, 8, 8, 4)),
                                                jnp.zeros((1, 16)))
  assert face.shape == (1, s, s, 3)                                     # 8 -> 16 -> 32 px
  params = {"generator": out["params"], "upsampler": upsampler_variables["params"]}
  optimizer = optax.adam(1e-2)

  def loss_fn(p):
    rendered = generator.apply({"params": p["generator"]}, identity, expression, camera)
    face = upsampler.apply({"params": p["upsampler"]}, rendered.image, rendered.w)
    return jnp.mean(jnp.square(mask * (face - target)))

  @jax.jit
  def train(params):
    def step(carry, _):
      p, s_ = carry
      loss, grads = jax.value_and_grad(loss_fn)(p)
      updates, s_ = optimizer.update(grads, s_, p)
      return (optax.apply_updates(p, updates), s_), loss
    return jax.lax.scan(step, (params, optimizer.init(params)), None, length=60)[1]

  losses = train(params)
  assert bool(jnp.all(jnp.isfinite(losses)))
  assert float(losses[-5:].mean()) < 0.3 * float(losses[0])
