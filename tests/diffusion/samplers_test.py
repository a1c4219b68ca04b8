"""Tests for talking_heads.diffusion.samplers.

Parity: single DDIM / DDPM / inversion steps against float64 numpy transcriptions of the
documented formulas (diffusers' `DDIMScheduler.step` / `DDPMScheduler.step`, diffae's respaced
`ddim_sample` / `ddim_reverse_sample`) and, when installed, against diffusers itself; whole loops
against numpy loops in both formulations. Properties: DDIM inversion then reconstruction with a
model of known epsilon, DDPM / DDIM sample statistics on 1-D Gaussian data with the analytic
epsilon, shared noise, classifier-free guidance, jit == no jit, determinism.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talking_heads.diffusion import parameterization as param
from talking_heads.diffusion import samplers
from talking_heads.diffusion import schedules

T = 1000
SCHED = schedules.make_schedule("linear", T)
ABAR = np.asarray(SCHED.alphas_cumprod).astype(np.float64)  # the float32 table, exactly


# ----------------------------------------------------------------------------- references

def _col(value, ndim):
  value = np.asarray(value, np.float64)
  return value if value.ndim == 0 else value.reshape((-1,) + (1,) * (ndim - 1))


def _ref_x0_eps(prediction, out, x, a, clip=None, recompute=False):
  a = _col(a, x.ndim)
  if prediction == "epsilon":
    x0, eps = (x - np.sqrt(1 - a) * out) / np.sqrt(a), out
  elif prediction == "x0":
    x0, eps = out, (x - np.sqrt(a) * out) / np.sqrt(1 - a)
  else:
    x0, eps = np.sqrt(a) * x - np.sqrt(1 - a) * out, np.sqrt(a) * out + np.sqrt(1 - a) * x
  if clip is not None:
    x0 = np.clip(x0, -clip, clip)
    if recompute:
      eps = (x - np.sqrt(a) * x0) / np.sqrt(1 - a)
  return x0, eps


def _ref_ddim(prediction, out, x, a, a_prev, eta=0.0, noise=None, clip=None, recompute=False):
  """DDIM step as written in diffusers' DDIMScheduler.step (float64)."""
  x0, eps = _ref_x0_eps(prediction, out, x, a, clip, recompute)
  a, a_prev = _col(a, x.ndim), _col(a_prev, x.ndim)
  std = eta * np.sqrt((1 - a_prev) / (1 - a) * (1 - a / a_prev))
  x_prev = np.sqrt(a_prev) * x0 + np.sqrt(1 - a_prev - std ** 2) * eps
  if noise is not None:
    x_prev = x_prev + std * noise
  return x_prev, x0


def _ref_ddpm(prediction, out, x, a, a_prev, variance, noise=None):
  """DDPM ancestral step as written in diffusers' DDPMScheduler.step (float64)."""
  x0, _ = _ref_x0_eps(prediction, out, x, a)
  beta = 1 - a / a_prev
  mean = np.sqrt(a_prev) * beta / (1 - a) * x0 + np.sqrt(1 - beta) * (1 - a_prev) / (1 - a) * x
  if noise is None:
    return mean, x0
  var = max((1 - a_prev) / (1 - a) * beta, 1e-20) if variance == "fixed_small" else beta
  return mean + np.sqrt(var) * noise, x0


def _np_model(x, t):
  """A nonlinear, time-dependent stand-in network (float64)."""
  t = np.asarray(t, np.float64).reshape((-1,) + (1,) * (x.ndim - 1))
  return 0.9 * np.tanh(x * (1 + t / T)) + 0.1 * np.sin(t / 37.0)


def _jax_model(x, t):
  t = t.astype(jnp.float32).reshape((-1,) + (1,) * (x.ndim - 1))
  return 0.9 * jnp.tanh(x * (1 + t / T)) + 0.1 * jnp.sin(t / 37.0)


def _sampler_noise(rng, shape, n_steps):
  """The noise `sample` draws: x_T from the first split key, step i from fold_in(second, i)."""
  key_init, key_steps = jax.random.split(rng)
  x_t = np.asarray(jax.random.normal(key_init, shape, jnp.float32), np.float64)
  steps = [np.asarray(jax.random.normal(jax.random.fold_in(key_steps, i), shape, jnp.float32),
                      np.float64) for i in range(n_steps)]
  return x_t, steps


def _diffae_ddim_loop(x_t, use_timesteps, eta, noises, clip=None):
  """diffae's respaced chain: respaced betas, alphas_cumprod_prev = [1, ...], model at the
  original timestep (timestep_map), x0 clipped and eps recomputed from it."""
  use = sorted(use_timesteps)
  abar = np.asarray([ABAR[i] for i in use])  # respacing keeps abar at the kept timesteps
  abar_prev = np.concatenate([[1.0], abar[:-1]])
  x = x_t
  for k, i in enumerate(reversed(range(len(use)))):
    out = _np_model(x, np.full(x.shape[0], use[i]))
    x0, eps = _ref_x0_eps("epsilon", out, x, abar[i], clip, recompute=clip is not None)
    sigma = eta * np.sqrt((1 - abar_prev[i]) / (1 - abar[i])) * np.sqrt(1 - abar[i] /
                                                                        abar_prev[i])
    x = x0 * np.sqrt(abar_prev[i]) + np.sqrt(1 - abar_prev[i] - sigma ** 2) * eps
    if i > 0:
      x = x + sigma * noises[k]
  return x


def _diffusers_ddim_loop(x_t, timesteps, eta, noises, final_alpha, clip=None):
  """diffusers' DDIM chain: prev = t - T // N, final alpha below zero."""
  stride = T // len(timesteps)
  x = x_t
  for k, t in enumerate(timesteps):
    a_prev = ABAR[t - stride] if t - stride >= 0 else final_alpha
    out = _np_model(x, np.full(x.shape[0], t))
    x, _ = _ref_ddim("epsilon", out, x, ABAR[t], a_prev, eta, noises[k], clip)
  return x


# ----------------------------------------------------------------------------- single steps

@pytest.mark.parametrize("prediction", ["epsilon", "x0", "v"])
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("clip,recompute", [(None, False), (1.0, False), (1.0, True)])
def test_ddim_step_matches_formula(prediction, eta, clip, recompute):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(4, 3, 3, 2)).astype(np.float32)
  out = rng.normal(size=x.shape).astype(np.float32)
  noise = rng.normal(size=x.shape).astype(np.float32)
  config = samplers.StepConfig(prediction=prediction, clip_x0=clip, recompute_eps=recompute)
  # Per-example levels; the last two are final steps, to alpha 1 and to abar_0 (the identity).
  t = np.array([980, 500, 20, 0])
  a = ABAR[t]
  a_prev = np.array([ABAR[960], ABAR[480], 1.0, ABAR[0]])
  got_x, got_x0 = samplers.ddim_step(config, out, x, jnp.asarray(a, jnp.float32),
                                     jnp.asarray(a_prev, jnp.float32), eta=eta, noise=noise)
  want_x, want_x0 = _ref_ddim(prediction, out.astype(np.float64), x.astype(np.float64), a,
                              a_prev, eta, noise, clip, recompute)
  np.testing.assert_allclose(np.asarray(got_x0), want_x0, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(np.asarray(got_x), want_x, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("prediction", ["epsilon", "x0", "v"])
@pytest.mark.parametrize("variance", ["fixed_small", "fixed_large"])
def test_ddpm_step_matches_formula(prediction, variance):
  rng = np.random.default_rng(1)
  x = rng.normal(size=(2, 5)).astype(np.float32)
  out = rng.normal(size=x.shape).astype(np.float32)
  noise = rng.normal(size=x.shape).astype(np.float32)
  config = samplers.StepConfig(prediction=prediction)
  for t, t_prev in [(999, 998), (600, 580), (10, 0), (0, -1)]:
    a, a_prev = ABAR[t], (ABAR[t_prev] if t_prev >= 0 else 1.0)
    step_noise = noise if t_prev >= 0 else None
    got_x, got_x0 = samplers.ddpm_step(config, out, x, jnp.float32(a), jnp.float32(a_prev),
                                       variance=variance, noise=step_noise)
    want_x, want_x0 = _ref_ddpm(prediction, out.astype(np.float64), x.astype(np.float64), a,
                                a_prev, variance, step_noise)
    np.testing.assert_allclose(np.asarray(got_x0), want_x0, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.asarray(got_x), want_x, rtol=1e-6, atol=1e-6)


def test_posterior_variance_clamped_at_final_step():
  var = samplers.posterior_variance(jnp.float32(ABAR[0]), jnp.float32(1.0), "fixed_small")
  assert float(var) == pytest.approx(1e-20)
  assert np.isfinite(np.log(float(var)))
  large = samplers.posterior_variance(jnp.float32(ABAR[5]), jnp.float32(ABAR[4]), "fixed_large")
  assert float(large) == pytest.approx(1 - ABAR[5] / ABAR[4], rel=1e-5)


def test_inversion_step_formula():
  rng = np.random.default_rng(2)
  x = rng.normal(size=(3, 4)).astype(np.float32)
  out = rng.normal(size=x.shape).astype(np.float32)
  config = samplers.StepConfig(clip_x0=1.0, recompute_eps=True)
  got, _ = samplers.ddim_inversion_step(config, out, x, jnp.float32(ABAR[100]),
                                        jnp.float32(ABAR[150]))
  x0, eps = _ref_x0_eps("epsilon", out.astype(np.float64), x.astype(np.float64), ABAR[100], 1.0,
                        True)
  np.testing.assert_allclose(np.asarray(got), np.sqrt(ABAR[150]) * x0 +
                             np.sqrt(1 - ABAR[150]) * eps, rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------- whole loops

def test_ddim_loop_matches_diffae_and_diffusers_formulations():
  """ddim20 (== leading with N | T): our loop, diffae's respaced chain and diffusers' stride
  chain agree, eta > 0 included (same noises)."""
  shape, rng = (3, 4, 2), jax.random.key(7)
  ts = schedules.make_timesteps("ddim", 20, T)
  x_t, noises = _sampler_noise(rng, shape, len(ts))
  config = samplers.StepConfig(clip_x0=1.0, recompute_eps=True)
  got = samplers.sample(_jax_model, shape, SCHED, ts, rng, eta=0.5, config=config)
  diffae = _diffae_ddim_loop(x_t, set(ts.tolist()), 0.5, noises, clip=1.0)
  np.testing.assert_allclose(np.asarray(got), diffae, atol=1e-5)
  got_stride = samplers.sample(_jax_model, shape, SCHED, ts, rng, eta=0.5,
                               config=samplers.StepConfig(prev_rule="stride"))
  diffusers_like = _diffusers_ddim_loop(x_t, ts, 0.5, noises, final_alpha=1.0)
  np.testing.assert_allclose(np.asarray(got_stride), diffusers_like, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("spacing", ["linspace", "trailing"])
def test_stride_rule_and_final_alpha_on_uneven_spacings(spacing):
  shape, rng = (2, 6), jax.random.key(3)
  ts = schedules.make_timesteps(spacing, 30, T)  # 30 does not divide 1000
  x_t, noises = _sampler_noise(rng, shape, len(ts))
  config = samplers.StepConfig(prev_rule="stride", set_alpha_to_one=False, clip_x0=1.0)
  got = samplers.sample(_jax_model, shape, SCHED, ts, rng, eta=0.3, config=config)
  want = _diffusers_ddim_loop(x_t, ts, 0.3, noises, final_alpha=ABAR[0], clip=1.0)
  np.testing.assert_allclose(np.asarray(got), want, atol=1e-5)


def test_ddim_eta_one_equals_ddpm_fixed_small():
  shape, rng = (3, 5), jax.random.key(11)
  ts = schedules.make_timesteps("leading", 25, T)
  ddim = samplers.sample(_jax_model, shape, SCHED, ts, rng, method="ddim", eta=1.0)
  ddpm = samplers.sample(_jax_model, shape, SCHED, ts, rng, method="ddpm")
  np.testing.assert_allclose(np.asarray(ddim), np.asarray(ddpm), rtol=1e-5, atol=1e-5)


def test_ddim_inversion_matches_diffae_reverse_loop():
  rng = np.random.default_rng(4)
  x0 = rng.uniform(-1, 1, (2, 3, 3)).astype(np.float32)
  ts = schedules.make_timesteps("ddim", 10, T)
  got = samplers.ddim_invert(_jax_model, x0, SCHED, ts, to_pure_noise=True)
  use = sorted(ts.tolist())
  abar_next = [ABAR[i] for i in use[1:]] + [0.0]
  x = x0.astype(np.float64)
  for i, t in enumerate(use):
    x0_hat, eps = _ref_x0_eps("epsilon", _np_model(x, np.full(2, t)), x, ABAR[t])
    x = np.sqrt(abar_next[i]) * x0_hat + np.sqrt(1 - abar_next[i]) * eps
  np.testing.assert_allclose(np.asarray(got), x, rtol=1e-5, atol=1e-5)


def _point_model(x_star):
  """Data is the single point x*: the exact eps(x_t, t) = (x_t - sqrt(abar) x*) / sqrt(1-abar)."""
  def model_fn(x, t):
    a = param.broadcast_to_data(SCHED.alphas_cumprod[t], x.ndim)
    return (x - jnp.sqrt(a) * x_star) / jnp.sqrt(1 - a)
  return model_fn


@pytest.mark.parametrize("spacing,n", [("ddim", 20), ("leading", 50), ("linspace", 7)])
def test_ddim_inversion_then_reconstruction_round_trip(spacing, n):
  rng = np.random.default_rng(5)
  x_star = rng.uniform(-1, 1, (1, 4, 4, 3)).astype(np.float32)
  x0 = (x_star + rng.uniform(-0.3, 0.3, (5, 4, 4, 3))).astype(np.float32)
  model_fn = _point_model(x_star)
  ts = schedules.make_timesteps(spacing, n, T)
  assert ts[-1] == 0
  x_T = samplers.ddim_invert(model_fn, x0, SCHED, ts)
  assert float(jnp.std(x_T - jnp.sqrt(ABAR[ts[0]]) * x_star)) > 0.5  # really noised
  # With the final alpha abar_0 the last step (t = 0 -> final) is the identity: the chain
  # returns exactly to x0.
  keep = samplers.StepConfig(set_alpha_to_one=False)
  recon = samplers.sample(model_fn, x0.shape, SCHED, ts, jax.random.key(0), x_T=x_T, config=keep)
  np.testing.assert_allclose(np.asarray(recon), x0, atol=1e-4)
  # With alpha 1 the last step denoises fully, onto the data point.
  clean = samplers.sample(model_fn, x0.shape, SCHED, ts, jax.random.key(0), x_T=x_T)
  np.testing.assert_allclose(np.asarray(clean), np.broadcast_to(x_star, x0.shape), atol=1e-4)


def _gaussian_model(mu, s, prediction):
  """Optimal output for data N(mu, s^2): E[eps | x_t] = sqrt(1-a)(x - sqrt(a) mu)/(a s^2 + 1-a)."""
  def model_fn(x, t):
    abar = SCHED.alphas_cumprod[t]
    a = param.broadcast_to_data(abar, x.ndim)
    eps = jnp.sqrt(1 - a) * (x - jnp.sqrt(a) * mu) / (a * s ** 2 + 1 - a)
    return param.from_x0_eps(prediction, param.x0_from_eps(x, eps, abar), eps, abar)
  return model_fn


@pytest.mark.parametrize("variance", ["fixed_small", "fixed_large"])
def test_ddpm_gaussian_statistics(variance):
  mu, s, n = 0.7, 0.5, 20000
  ts = np.arange(T - 1, -1, -1, dtype=np.int32)
  x = samplers.sample(_gaussian_model(mu, s, "epsilon"), (n, 1), SCHED, ts, jax.random.key(0),
                      method="ddpm", variance=variance)
  x = np.asarray(x)[:, 0]
  # Standard errors: s / sqrt(n) = 0.0035 (mean), s / sqrt(2n) = 0.0025 (std).
  assert abs(x.mean() - mu) < 0.015
  assert abs(x.std() - s) < 0.015


def test_ddim_gaussian_statistics_and_parameterisations_agree():
  mu, s, n = -0.4, 0.8, 8000
  ts = schedules.make_timesteps("leading", 100, T)
  outs = {p: np.asarray(samplers.sample(_gaussian_model(mu, s, p), (n, 1), SCHED, ts,
                                        jax.random.key(1),
                                        config=samplers.StepConfig(prediction=p)))[:, 0]
          for p in ("epsilon", "x0", "v")}
  np.testing.assert_allclose(outs["x0"], outs["epsilon"], atol=1e-4)
  np.testing.assert_allclose(outs["v"], outs["epsilon"], atol=1e-4)
  assert abs(outs["epsilon"].mean() - mu) < 0.03
  assert abs(outs["epsilon"].std() - s) < 0.03


# ----------------------------------------------------------------------------- properties

def test_shared_noise_gives_identical_frames():
  shape, ts = (6, 4, 4, 3), schedules.make_timesteps("leading", 10, T)
  rng = jax.random.key(2)
  frames = np.asarray(samplers.sample(_jax_model, shape, SCHED, ts, rng, shared_noise=True))
  np.testing.assert_array_equal(frames, np.broadcast_to(frames[:1], shape))
  both = np.asarray(samplers.sample(_jax_model, shape, SCHED, ts, rng, eta=0.7,
                                    shared_noise=True, shared_step_noise=True))
  np.testing.assert_array_equal(both, np.broadcast_to(both[:1], shape))
  start_only = np.asarray(samplers.sample(_jax_model, shape, SCHED, ts, rng, eta=0.7,
                                          shared_noise=True))
  assert np.abs(start_only[0] - start_only[1]).max() > 1e-2
  independent = np.asarray(samplers.sample(_jax_model, shape, SCHED, ts, rng))
  assert np.abs(independent[0] - independent[1]).max() > 1e-2
  # An explicit [1, ...] x_T is broadcast like shared noise.
  x_T = jax.random.normal(jax.random.key(9), (1,) + shape[1:])
  given = np.asarray(samplers.sample(_jax_model, shape, SCHED, ts, rng, x_T=x_T))
  np.testing.assert_array_equal(given, np.broadcast_to(given[:1], shape))


def _cond_model(x, t, *, audio):
  """A conditional eps-model: the condition shifts and scales the output per example."""
  del t
  return jnp.tanh(x) * (1 + audio[:, None]) + audio[:, None]


def test_guidance_scale_one_is_conditional_and_joint_batch_matches():
  shape, ts = (3, 5), schedules.make_timesteps("leading", 8, T)
  cond = {"audio": jnp.array([0.5, -0.2, 1.0])}
  null = {"audio": jnp.zeros(3)}
  rng = jax.random.key(4)
  plain = samplers.sample(_cond_model, shape, SCHED, ts, rng, cond=cond)
  guided = samplers.sample(_cond_model, shape, SCHED, ts, rng, cond=cond,
                           guidance=samplers.GuidanceConfig(1.0, null))
  np.testing.assert_allclose(np.asarray(guided), np.asarray(plain), atol=1e-6)
  separate = samplers.sample(_cond_model, shape, SCHED, ts, rng, cond=cond,
                             guidance=samplers.GuidanceConfig(3.0, null))
  joint = samplers.sample(_cond_model, shape, SCHED, ts, rng, cond=cond,
                          guidance=samplers.GuidanceConfig(3.0, null, joint_batch=True))
  np.testing.assert_allclose(np.asarray(joint), np.asarray(separate), atol=1e-6)
  assert np.abs(np.asarray(separate) - np.asarray(plain)).max() > 1e-2


def test_guided_output_formula_and_parameterisation_invariance():
  x = jax.random.normal(jax.random.key(5), (3, 5))
  t = jnp.full((3,), 400, jnp.int32)
  cond, null = {"audio": jnp.array([0.5, -0.2, 1.0])}, {"audio": jnp.zeros(3)}
  guide = samplers.GuidanceConfig(2.5, null)
  got = samplers.model_output(_cond_model, x, t, cond, guide)
  e_c, e_u = _cond_model(x, t, **cond), _cond_model(x, t, **null)
  np.testing.assert_allclose(np.asarray(got), np.asarray(e_u + 2.5 * (e_c - e_u)), atol=1e-6)
  # The same network reparameterised to predict x0: guiding x0 outputs gives the guided eps's x0.
  a = SCHED.alphas_cumprod[t]

  def x0_model(x, t, *, audio):
    return param.x0_from_eps(x, _cond_model(x, t, audio=audio), SCHED.alphas_cumprod[t])

  guided_x0 = samplers.model_output(x0_model, x, t, cond, guide)
  np.testing.assert_allclose(np.asarray(guided_x0), np.asarray(param.x0_from_eps(x, got, a)),
                             atol=1e-5)


def test_jit_matches_eager_and_seed_determinism():
  shape, ts = (4, 3, 3), schedules.make_timesteps("trailing", 12, T)
  run = functools.partial(samplers.sample, _jax_model, shape, SCHED, ts, eta=0.4,
                          config=samplers.StepConfig(clip_x0=2.0))
  eager = run(jax.random.key(8))
  jitted = jax.jit(run)(jax.random.key(8))
  np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), atol=1e-6)
  np.testing.assert_array_equal(np.asarray(run(jax.random.key(8))), np.asarray(eager))
  assert np.abs(np.asarray(run(jax.random.key(9))) - np.asarray(eager)).max() > 1e-2
  # Timesteps and the guidance scale may be traced too.
  traced = jax.jit(lambda ts, rng: samplers.sample(_jax_model, shape, SCHED, ts, rng, eta=0.4,
                                                   config=samplers.StepConfig(clip_x0=2.0)))
  np.testing.assert_allclose(np.asarray(traced(jnp.asarray(ts), jax.random.key(8))),
                             np.asarray(eager), atol=1e-6)


def test_trajectory_records_every_step():
  shape, ts = (2, 3), schedules.make_timesteps("leading", 5, T)
  x, traj = samplers.sample(_jax_model, shape, SCHED, ts, jax.random.key(0),
                            return_trajectory=True)
  assert traj.x.shape == (5, 2, 3) and traj.x0.shape == (5, 2, 3)
  np.testing.assert_array_equal(np.asarray(traj.x[-1]), np.asarray(x))
  # The final step to alpha 1 lands on its own x0 prediction.
  np.testing.assert_allclose(np.asarray(traj.x0[-1]), np.asarray(x), atol=1e-6)


def test_bad_arguments():
  ts = schedules.make_timesteps("leading", 5, T)
  key = jax.random.key(0)
  with pytest.raises(ValueError, match="unknown sampling method"):
    samplers.sample(_jax_model, (2, 3), SCHED, ts, key, method="euler")
  with pytest.raises(ValueError, match="DDIM only"):
    samplers.sample(_jax_model, (2, 3), SCHED, ts, key, method="ddpm", eta=0.5)
  with pytest.raises(ValueError, match="eta must be in"):
    samplers.sample(_jax_model, (2, 3), SCHED, ts, key, eta=1.5)
  with pytest.raises(ValueError, match="x_T shape"):
    samplers.sample(_jax_model, (2, 3), SCHED, ts, key, x_T=jnp.zeros((2, 4)))
  with pytest.raises(ValueError, match="strictly decreasing"):
    samplers.sample(_jax_model, (2, 3), SCHED, ts[::-1].copy(), key)
  with pytest.raises(ValueError, match="null_cond"):
    samplers.sample(_cond_model, (3, 5), SCHED, ts, key, cond={"audio": jnp.zeros(3)},
                    guidance=samplers.GuidanceConfig(2.0, {"text": jnp.zeros(3)}))
  with pytest.raises(ValueError, match="clip_x0 or threshold_ratio"):
    samplers.StepConfig(clip_x0=1.0, threshold_ratio=0.99)
  with pytest.raises(ValueError, match="unknown prediction type"):
    samplers.StepConfig(prediction="sample")


# ----------------------------------------------------------------------------- diffusers

def _diffusers_schedule(ref):
  return schedules.NoiseSchedule(betas=jnp.asarray(ref.betas.numpy()),
                                 alphas_cumprod=jnp.asarray(ref.alphas_cumprod.numpy()),
                                 num_train_timesteps=ref.config.num_train_timesteps)


# Both sides compute in float32 and, for inputs that are not a denoiser's, x0_hat reaches ~300 at
# t = 999: the absolute tolerance is 1e-6 of the largest |x0_hat| (at least 1e-6).
@pytest.mark.parity
@pytest.mark.parametrize("prediction,diffusers_pred", [("epsilon", "epsilon"), ("x0", "sample"),
                                                       ("v", "v_prediction")])
@pytest.mark.parametrize("set_alpha_to_one", [True, False])
@pytest.mark.parametrize("x0_mode,clipped_output", [("none", False), ("clip", False),
                                                    ("clip", True), ("threshold", True)])
def test_ddim_steps_match_diffusers(prediction, diffusers_pred, set_alpha_to_one, x0_mode,
                                    clipped_output):
  diffusers = pytest.importorskip("diffusers")
  import torch  # pylint: disable=g-import-not-at-top
  ref = diffusers.DDIMScheduler(num_train_timesteps=T, prediction_type=diffusers_pred,
                                clip_sample=x0_mode == "clip", clip_sample_range=1.5,
                                thresholding=x0_mode == "threshold",
                                dynamic_thresholding_ratio=0.9, sample_max_value=2.0,
                                set_alpha_to_one=set_alpha_to_one, timestep_spacing="trailing")
  ref.set_timesteps(10)
  sched = _diffusers_schedule(ref)
  config = samplers.StepConfig(prediction=prediction,
                               clip_x0=1.5 if x0_mode == "clip" else None,
                               threshold_ratio=0.9 if x0_mode == "threshold" else None,
                               threshold_max=2.0, recompute_eps=clipped_output,
                               set_alpha_to_one=set_alpha_to_one, prev_rule="stride")
  ts = ref.timesteps.numpy()
  prev = np.asarray(schedules.previous_timesteps(ts, T, "stride"))
  rng = np.random.default_rng(6)
  for t, t_prev in zip(ts, prev):  # includes the final step (prev < 0)
    x = rng.normal(size=(2, 3, 4, 4)).astype(np.float32)
    out = rng.normal(size=x.shape).astype(np.float32)
    noise = rng.normal(size=x.shape).astype(np.float32)
    for eta in (0.0, 0.6):
      want = ref.step(torch.from_numpy(out), int(t), torch.from_numpy(x), eta=eta,
                      use_clipped_model_output=clipped_output,
                      variance_noise=torch.from_numpy(noise))
      a = schedules.alpha_bar(sched, jnp.int32(t), set_alpha_to_one)
      a_prev = schedules.alpha_bar(sched, jnp.int32(t_prev), set_alpha_to_one)
      got_x, got_x0 = samplers.ddim_step(config, out, x, a, a_prev, eta=eta, noise=noise)
      want_x0 = want.pred_original_sample.numpy()
      tol = 1e-6 * max(1.0, np.abs(want_x0).max())
      np.testing.assert_allclose(np.asarray(got_x0), want_x0, rtol=1e-6, atol=tol)
      np.testing.assert_allclose(np.asarray(got_x), want.prev_sample.numpy(), rtol=1e-6,
                                 atol=tol)


@pytest.mark.parity
@pytest.mark.parametrize("variance", ["fixed_small", "fixed_large"])
@pytest.mark.parametrize("prediction,diffusers_pred",
                         [("epsilon", "epsilon"), ("v", "v_prediction")])
def test_ddpm_steps_match_diffusers(variance, prediction, diffusers_pred):
  diffusers = pytest.importorskip("diffusers")
  import torch  # pylint: disable=g-import-not-at-top
  ref = diffusers.DDPMScheduler(num_train_timesteps=T, variance_type=variance,
                                prediction_type=diffusers_pred, clip_sample=False)
  ref.set_timesteps(20)  # leading: 950 .. 0, so the last step is t = 0
  sched = _diffusers_schedule(ref)
  config = samplers.StepConfig(prediction=prediction)
  ts = ref.timesteps.numpy()
  prev = np.asarray(schedules.previous_timesteps(ts, T, "sequence"))
  rng = np.random.default_rng(7)
  for seed, (t, t_prev) in enumerate(zip(ts, prev)):
    x = rng.normal(size=(2, 3, 4)).astype(np.float32)
    out = rng.normal(size=x.shape).astype(np.float32)
    want = ref.step(torch.from_numpy(out), int(t), torch.from_numpy(x),
                    generator=torch.Generator().manual_seed(seed))
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed)).numpy()
    got_x, got_x0 = samplers.ddpm_step(
        config, out, x, schedules.alpha_bar(sched, jnp.int32(t)),
        schedules.alpha_bar(sched, jnp.int32(t_prev)), variance=variance,
        noise=noise if t_prev >= 0 else None)
    want_x0 = want.pred_original_sample.numpy()
    tol = 1e-6 * max(1.0, np.abs(want_x0).max())
    np.testing.assert_allclose(np.asarray(got_x0), want_x0, rtol=1e-6, atol=tol)
    np.testing.assert_allclose(np.asarray(got_x), want.prev_sample.numpy(), rtol=1e-6, atol=tol)


@pytest.mark.parity
def test_ddim_loop_matches_diffusers_pipeline_loop():
  diffusers = pytest.importorskip("diffusers")
  import torch  # pylint: disable=g-import-not-at-top
  ref = diffusers.DDIMScheduler(num_train_timesteps=T, timestep_spacing="linspace",
                                clip_sample=True, set_alpha_to_one=False)
  ref.set_timesteps(15)
  sched = _diffusers_schedule(ref)
  shape, rng = (2, 3, 4), jax.random.key(12)
  ts = ref.timesteps.numpy()
  x_t, noises = _sampler_noise(rng, shape, len(ts))
  x = torch.from_numpy(x_t.astype(np.float32))
  for k, t in enumerate(ts):
    out = torch.from_numpy(_np_model(x.numpy().astype(np.float64),
                                     np.full(shape[0], t)).astype(np.float32))
    x = ref.step(out, int(t), x, eta=0.5,
                 variance_noise=torch.from_numpy(noises[k].astype(np.float32))).prev_sample
  config = samplers.StepConfig(clip_x0=1.0, set_alpha_to_one=False, prev_rule="stride")
  got = samplers.sample(_jax_model, shape, sched, ts.astype(np.int32), rng, eta=0.5,
                        config=config)
  np.testing.assert_allclose(np.asarray(got), x.numpy(), atol=1e-5)
