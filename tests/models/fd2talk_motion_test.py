"""FD2Talk's motion DiT: the alignment mask's band, x0-parameterised DDIM (Eq. 5) as FD2Talk
samples it (and diffusers' DDIMScheduler with prediction_type="sample"), a tiny-batch fit."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from talking_heads.diffusion import parameterization, samplers, schedules
from talking_heads.models import fd2talk_motion
from talking_heads.systems.fd2talk import sizes

F, E, A = 12, 5, 7
K = fd2talk_motion.ALIGNMENT_WINDOW


def _dit(**overrides):
  kw = dict(sizes.sizes("tiny").motion, expression_dim=E)
  kw.update(overrides)
  return fd2talk_motion.MotionDiT(**kw)


def _inputs(seed=0, d=E):
  r = np.random.default_rng(seed)
  return (jnp.asarray(r.normal(size=(2, F, d)), jnp.float32), jnp.array([10, 700]),
          jnp.asarray(r.normal(size=(2, F, A)), jnp.float32))


def test_alignment_mask_is_the_band():
  mask = fd2talk_motion.alignment_mask(9, 3)
  j, i = np.meshgrid(np.arange(9), np.arange(9), indexing="ij")
  np.testing.assert_array_equal(mask, np.abs(i - j) <= 3)
  assert fd2talk_motion.alignment_mask(9, None).all()


@pytest.mark.parametrize("num_layers,self_attention", [(2, False), (1, True)])
def test_audio_outside_the_band_does_not_reach_a_frame(num_layers, self_attention):
  """Frame j's output ignores audio at |i - j| > k (without self-attention for any depth; with
  it, in one layer, since self-attention mixes motion tokens, not audio)."""
  model = _dit(num_layers=num_layers, self_attention=self_attention)
  x, t, audio = _inputs()
  params = model.init(jax.random.key(0), x, t, audio)
  apply = jax.jit(model.apply)
  base = np.asarray(apply(params, x, t, audio))
  j = 5
  far = np.abs(np.arange(F) - j) > K
  outside = audio.at[:, far].add(3.0)
  inside = audio.at[:, j + K].add(3.0)
  np.testing.assert_allclose(np.asarray(apply(params, x, t, outside))[:, j], base[:, j], atol=1e-6)
  assert np.abs(np.asarray(apply(params, x, t, inside))[:, j] - base[:, j]).max() > 1e-3
  # Other frames that see the changed audio do change: the perturbation is not a no-op.
  assert np.abs(np.asarray(apply(params, x, t, outside))[:, 0] - base[:, 0]).max() > 1e-3
  # Without the mask ("w/o alignment") frame j hears the far audio.
  unmasked = jax.jit(_dit(num_layers=num_layers, self_attention=self_attention,
                          window=None).apply)
  leak = unmasked(params, x, t, outside)[:, j] - unmasked(params, x, t, audio)[:, j]
  assert np.abs(np.asarray(leak)).max() > 1e-3


@pytest.mark.parametrize("motion,d", [("pose", 6), ("joint", E + 6)])
def test_motion_field_sets_the_width(motion, d):
  model = _dit(motion=motion)
  x, t, audio = _inputs(d=d)
  out = jax.eval_shape(lambda: model.init_with_output(jax.random.key(0), x, t, audio)[0])
  assert out.shape == (2, F, d)
  with pytest.raises(ValueError, match=r"x_t must be \[B, F, 6\]"):
    _dit(motion="pose").init(jax.random.key(0), *_inputs())


def _eq5_loop(model_fn, x_T, abar_padded, timesteps, eta, noises):
  """Eq. 5 in float64 with DreamTalk's indexing: t in 1..T over an abar padded with abar[0] = 1,
  timesteps range(0, T, T // N) + 1, each step moving to the previous entry (0 at the end)."""
  x = np.asarray(x_T, np.float64)
  prev = [0] + list(timesteps[:-1])
  for i, (t, t_prev) in reversed(list(enumerate(zip(timesteps, prev)))):
    a, a_prev = abar_padded[t], abar_padded[t_prev]
    x0 = np.asarray(model_fn(jnp.asarray(x, jnp.float32), jnp.full((x.shape[0],), t - 1)),
                    np.float64)
    eps = (x - np.sqrt(a) * x0) / np.sqrt(1 - a)
    sigma = eta * np.sqrt((1 - a_prev) / (1 - a)) * np.sqrt(1 - a / a_prev)
    x = np.sqrt(a_prev) * x0 + np.sqrt(1 - a_prev - sigma**2) * eps + sigma * noises[i]
  return x


def _toy_x0(x, t):
  """A smooth stand-in for a trained x0 predictor (the loop is what is under test)."""
  return 0.7 * jnp.tanh(x) * (1.0 - t[:, None, None] / 2000.0)


@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_fd2talk_ddim_is_eq5_with_dreamtalk_indexing(eta):
  """50 steps over T = 1000 (leading spacing, final alpha 1, the next timestep as previous) is
  Eq. 5 on DreamTalk's 1-based padded schedule; with eta > 0 each step's z is given explicitly."""
  schedule = schedules.make_schedule("linear", 1000, 1e-4, 0.02)
  abar_padded = np.concatenate([[1.0], np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))])
  ts = schedules.make_timesteps("leading", 50, 1000)
  dreamtalk_ts = np.arange(0, 1000, 20) + 1
  np.testing.assert_array_equal(ts[::-1] + 1, dreamtalk_ts)
  r = np.random.default_rng(3)
  x_T = r.normal(size=(2, F, E)).astype(np.float32)
  noises = r.normal(size=(50, 2, F, E)).astype(np.float32)
  config = samplers.StepConfig(prediction="x0")
  # One step by hand against `ddim_step` (Eq. 5's three lines).
  a, a_prev = schedule.alphas_cumprod[ts[3]], schedule.alphas_cumprod[ts[4]]
  x0 = _toy_x0(jnp.asarray(x_T), jnp.full((2,), ts[3]))
  got, got_x0 = samplers.ddim_step(config, x0, jnp.asarray(x_T), a, a_prev, eta=eta,
                                   noise=jnp.asarray(noises[0]))
  a, a_prev, x0 = float(a), float(a_prev), np.asarray(x0, np.float64)
  eps = (x_T - np.sqrt(a) * x0) / np.sqrt(1 - a)
  sigma = eta * np.sqrt((1 - a_prev) / (1 - a)) * np.sqrt(1 - a / a_prev)
  want = np.sqrt(a_prev) * x0 + np.sqrt(1 - a_prev - sigma**2) * eps + sigma * noises[0]
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.asarray(got_x0), x0, rtol=1e-6)
  # The whole chain: `sample` draws step i's z from fold_in(step key, i); replay those.
  rng = jax.random.key(7)
  key_steps = jax.random.split(rng)[1]
  step_noises = np.asarray(jax.vmap(lambda i: jax.random.normal(
      jax.random.fold_in(key_steps, i), (2, F, E)))(jnp.arange(50)))
  got = samplers.sample(_toy_x0, (2, F, E), schedule, ts, rng, eta=eta, config=config,
                        x_T=jnp.asarray(x_T))
  # DreamTalk's loop runs from its last timestep down, so its step i is our step 49 - i.
  want = _eq5_loop(_toy_x0, x_T, abar_padded, dreamtalk_ts, eta, step_noises[::-1])
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parity
def test_fd2talk_ddim_matches_diffusers_sample_prediction():
  diffusers = pytest.importorskip("diffusers")
  import torch  # pylint: disable=g-import-not-at-top
  ref = diffusers.DDIMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02,
                                beta_schedule="linear", prediction_type="sample",
                                clip_sample=False, set_alpha_to_one=True,
                                timestep_spacing="leading")
  ref.set_timesteps(50)
  schedule = schedules.make_schedule("linear", 1000, 1e-4, 0.02)
  np.testing.assert_allclose(np.asarray(schedule.alphas_cumprod), ref.alphas_cumprod.numpy(),
                             rtol=1e-6)
  ts = schedules.make_timesteps("leading", 50, 1000)
  np.testing.assert_array_equal(ts, ref.timesteps.numpy())
  x_T = np.random.default_rng(4).normal(size=(2, F, E)).astype(np.float32)
  x = torch.from_numpy(x_T)
  for t in ref.timesteps:
    x0 = torch.from_numpy(np.array(_toy_x0(jnp.asarray(x.numpy()), jnp.full((2,), int(t)))))
    x = ref.step(x0, t, x, eta=0.0).prev_sample
  got = samplers.sample(_toy_x0, (2, F, E), schedule, ts, jax.random.key(0),
                        config=samplers.StepConfig(prediction="x0"), x_T=jnp.asarray(x_T))
  np.testing.assert_allclose(np.asarray(got), x.numpy(), rtol=1e-5, atol=1e-5)


def test_tiny_dit_fits_a_batch():
  """The x0 objective (Eq. 8) on one fixed batch of 2 clips falls, measured at fixed timesteps
  and noise before and after 60 steps at random ones."""
  model = _dit()
  schedule = schedules.make_schedule("linear", 1000, 1e-4, 0.02)
  x0, _, audio = _inputs(1)
  params = model.init(jax.random.key(0), x0, jnp.zeros((2,), jnp.int32), audio)
  tx = optax.adam(3e-3)

  def loss_fn(params, t, noise):
    x_t = parameterization.q_sample(schedule, x0, t, noise)
    return jnp.mean(parameterization.prediction_loss(model.apply(params, x_t, t, audio), x0))

  @jax.jit
  def step(params, opt, rng):
    k_t, k_n = jax.random.split(rng)
    t, noise = schedules.random_timesteps(k_t, 2, 1000), jax.random.normal(k_n, x0.shape)
    loss, grads = jax.value_and_grad(loss_fn)(params, t, noise)
    updates, opt = tx.update(grads, opt)
    return optax.apply_updates(params, updates), opt, loss

  @jax.jit
  def held_out(params):
    ts = jnp.array([[50, 900], [300, 600], [600, 300], [900, 50]])
    noises = jax.random.normal(jax.random.key(99), (4,) + x0.shape)
    return jnp.mean(jax.vmap(lambda t, n: loss_fn(params, t, n))(ts, noises))

  before = float(held_out(params))
  opt = tx.init(params)
  for i in range(60):
    params, opt, _ = step(params, opt, jax.random.key(i))
  after = float(held_out(params))
  assert after < 0.5 * before, (before, after)
