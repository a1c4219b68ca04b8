"""FD2Talk's latent UNet: phi1 reads only the motion and phi2 only the reference latent (in every
block), the concatenated ablation reads both in one attention, and the x0 objective fits."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from talking_heads.diffusion import parameterization, schedules
from talking_heads.models import fd2talk_unet
from talking_heads.systems.fd2talk import sizes

TINY = sizes.sizes("tiny")
H, C, D = TINY.latent_size, 3, 11


def _unet(**overrides):
  return fd2talk_unet.LatentUNet(latent_channels=C, motion_dim=D, **{**TINY.unet, **overrides})


def _inputs(seed=0):
  r = np.random.default_rng(seed)
  f = lambda *s: jnp.asarray(r.normal(size=s), jnp.float32)
  return f(2, H, H, C), jnp.array([5, 900]), f(2, D), f(2, H, H, C)


def _context_projections(model, params, inputs):
  """{path: output} of every key/value projection inside a cross-attention (they read only the
  attention's context)."""
  capture = jax.jit(lambda params, *inputs: model.apply(
      params, *inputs, capture_intermediates=lambda m, _: m.name in ("key", "value"),
      mutable=["intermediates"])[1])
  state = capture(params, *inputs)
  flat = jax.tree_util.tree_flatten_with_path(state["intermediates"])[0]
  out = {}
  for path, value in flat:
    names = tuple(getattr(p, "key", getattr(p, "idx", None)) for p in path)
    if any(n in ("phi1", "phi2", "cross_attn") for n in names):
      out[names] = np.asarray(value)
  return out


@pytest.mark.parametrize("conditioning", fd2talk_unet.CONDITIONINGS)
def test_each_cross_attention_reads_only_its_condition(conditioning):
  model = _unet(conditioning=conditioning)
  j_t, t, motion, reference = _inputs()
  params = model.init(jax.random.key(0), j_t, t, motion, reference)
  base = _context_projections(model, params, (j_t, t, motion, reference))
  moved_ref = _context_projections(model, params, (j_t, t, motion, reference + 1.0))
  moved_motion = _context_projections(model, params, (j_t, t, motion + 1.0, reference))
  names = {n for path in base for n in path if n in ("phi1", "phi2", "cross_attn")}
  blocks = {path[:-4] for path in base}
  # Every level's SpatialTransformer (attention_levels 0 and 1 at tiny, and the middle).
  assert len(blocks) == 2 * TINY.unet["num_res_blocks"] + 1 + 2 * (TINY.unet["num_res_blocks"]
                                                                    + 1)
  changed = lambda other, path: np.abs(other[path] - base[path]).max() > 1e-4
  for path in base:
    if "phi1" in path:
      assert not changed(moved_ref, path) and changed(moved_motion, path), path
    elif "phi2" in path:
      assert changed(moved_ref, path) and not changed(moved_motion, path), path
    else:
      assert changed(moved_ref, path) and changed(moved_motion, path), path
  assert names == ({"phi1", "phi2"} if conditioning == "two_attentions" else {"cross_attn"})


@pytest.mark.parametrize("tokens,count", [("per_coefficient", D), ("single", 1)])
def test_motion_tokens(tokens, count):
  ctx = fd2talk_unet.MotionContext(8, tokens)
  out, params = ctx.init_with_output(jax.random.key(0), jnp.ones((2, D)))
  assert out.shape == (2, count, 8)
  if tokens == "per_coefficient":  # token j moves only with coefficient j
    moved = ctx.apply(params, jnp.ones((2, D)).at[:, 3].set(2.0))
    diff = np.abs(np.asarray(moved - out)).max(axis=(0, 2))
    assert diff[3] > 0 and np.delete(diff, 3).max() == 0


def test_tiny_unet_fits_a_batch():
  """Eq. 16's x0 objective on one fixed batch: the loss falls, and the trained net's output
  depends on both conditions."""
  model = _unet()
  schedule = schedules.make_schedule("scaled_linear", 1000, 0.0015, 0.0195)
  j0, _, motion, reference = _inputs(1)
  params = model.init(jax.random.key(0), j0, jnp.zeros((2,), jnp.int32), motion, reference)
  tx = optax.adam(3e-3)

  def loss_fn(params, t, noise):
    x_t = parameterization.q_sample(schedule, j0, t, noise)
    return jnp.mean(parameterization.prediction_loss(
        model.apply(params, x_t, t, motion, reference), j0))

  @jax.jit
  def step(params, opt, rng):
    k_t, k_n = jax.random.split(rng)
    t, noise = schedules.random_timesteps(k_t, 2, 1000), jax.random.normal(k_n, j0.shape)
    loss, grads = jax.value_and_grad(loss_fn)(params, t, noise)
    updates, opt = tx.update(grads, opt)
    return optax.apply_updates(params, updates), opt, loss

  @jax.jit
  def held_out(params):
    ts = jnp.array([[50, 900], [300, 600], [600, 300], [900, 50]])
    noises = jax.random.normal(jax.random.key(99), (4,) + j0.shape)
    return jnp.mean(jax.vmap(lambda t, n: loss_fn(params, t, n))(ts, noises))

  before = float(held_out(params))
  opt = tx.init(params)
  for i in range(40):
    params, opt, _ = step(params, opt, jax.random.key(i))
  after = float(held_out(params))
  assert after < 0.7 * before, (before, after)
  apply = jax.jit(model.apply)
  x_t, t = j0 * 0.5, jnp.array([500, 500])
  out = apply(params, x_t, t, motion, reference)
  assert np.abs(np.asarray(apply(params, x_t, t, motion + 1.0, reference) - out)).max() > 1e-4
  assert np.abs(np.asarray(apply(params, x_t, t, motion, reference + 1.0) - out)).max() > 1e-4
