"""Tests for talking_heads.diffusion.schedules: beta schedules and timestep spacings against
per-element re-derivations of the documented formulas and, when installed, diffusers' schedulers."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talking_heads.diffusion import schedules


def _cosine_betas_loop(num_timesteps):
  """Nichol & Dhariwal's alpha-bar discretisation, element by element in Python floats."""
  def f(u):
    return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2
  return np.array([min(1 - f((i + 1) / num_timesteps) / f(i / num_timesteps), 0.999)
                   for i in range(num_timesteps)])


def _space_timesteps_ddim(num_timesteps, n):
  """improved-diffusion's `space_timesteps(T, "ddimN")`, written from its description."""
  for stride in range(1, num_timesteps):
    if len(range(0, num_timesteps, stride)) == n:
      return sorted(set(range(0, num_timesteps, stride)), reverse=True)
  return None


def test_linear_and_scaled_linear_hand_values():
  sched = schedules.make_schedule("linear", 5, 0.1, 0.5)
  np.testing.assert_allclose(np.asarray(sched.betas), [0.1, 0.2, 0.3, 0.4, 0.5], atol=1e-7)
  np.testing.assert_allclose(np.asarray(sched.alphas_cumprod),
                             np.cumprod([0.9, 0.8, 0.7, 0.6, 0.5]), atol=1e-7)
  scaled = schedules.make_schedule("scaled_linear", 3, 0.01, 0.09)
  np.testing.assert_allclose(np.asarray(scaled.betas), [0.01, 0.04, 0.09], atol=1e-7)
  assert sched.num_train_timesteps == 5
  assert sched.betas.dtype == jnp.float32


def test_cosine_matches_loop_and_is_capped():
  betas = schedules.make_betas("cosine", 1000)
  np.testing.assert_allclose(betas, _cosine_betas_loop(1000), rtol=1e-12, atol=1e-15)
  assert betas.max() == pytest.approx(0.999)
  assert np.all(np.diff(betas) > 0)


def test_schedule_is_a_pytree_with_static_length():
  sched = schedules.make_schedule("linear", 10)
  doubled = jax.jit(lambda s: s.alphas_cumprod * s.num_train_timesteps)(sched)
  np.testing.assert_allclose(np.asarray(doubled), 10 * np.asarray(sched.alphas_cumprod))


@pytest.mark.parametrize("n", [1, 7, 10, 50, 61, 333, 1000])
def test_leading_trailing_linspace_formulas(n):
  t_train = 1000
  ratio = t_train // n
  np.testing.assert_array_equal(schedules.make_timesteps("leading", n, t_train),
                                [ratio * (n - 1 - i) for i in range(n)])
  if ratio * (n - 1) + 1 < t_train:
    np.testing.assert_array_equal(schedules.make_timesteps("leading", n, t_train, steps_offset=1),
                                  [ratio * (n - 1 - i) + 1 for i in range(n)])
  else:
    with pytest.raises(ValueError, match="outside"):
      schedules.make_timesteps("leading", n, t_train, steps_offset=1)
  trailing = [round(t_train - i * (t_train / n)) - 1 for i in range(n)]
  np.testing.assert_array_equal(schedules.make_timesteps("trailing", n, t_train), trailing)
  # linspace's arithmetic is i * step (at n = 61, i = 30 that is 499.49999.., not 499.5).
  linspace = [round(i * ((t_train - 1) / (n - 1))) if n > 1 else 0 for i in range(n)][::-1]
  np.testing.assert_array_equal(schedules.make_timesteps("linspace", n, t_train), linspace)


def test_hand_spacings_t10_n4():
  np.testing.assert_array_equal(schedules.make_timesteps("leading", 4, 10), [6, 4, 2, 0])
  # trailing: round(10, 7.5, 5, 2.5) - 1 with round half to even.
  np.testing.assert_array_equal(schedules.make_timesteps("trailing", 4, 10), [9, 7, 4, 1])
  np.testing.assert_array_equal(schedules.make_timesteps("linspace", 4, 10), [9, 6, 3, 0])
  np.testing.assert_array_equal(schedules.make_timesteps("ddim", 4, 10), [9, 6, 3, 0])


@pytest.mark.parametrize("t_train,n", [(1000, 20), (1000, 100), (1000, 30), (1000, 3),
                                       (10, 4), (250, 7), (1000, 1000)])
def test_ddim_spacing_matches_space_timesteps(t_train, n):
  np.testing.assert_array_equal(schedules.make_timesteps("ddim", n, t_train),
                                _space_timesteps_ddim(t_train, n))


def test_ddim_spacing_equals_leading_when_n_divides_t():
  for n in (10, 20, 50, 100, 250):
    np.testing.assert_array_equal(schedules.make_timesteps("ddim", n, 1000),
                                  schedules.make_timesteps("leading", n, 1000))


def test_spacing_errors():
  with pytest.raises(ValueError, match="no integer stride"):
    schedules.make_timesteps("ddim", 1, 1000)
  with pytest.raises(ValueError, match="num_inference_steps"):
    schedules.make_timesteps("leading", 1001, 1000)
  with pytest.raises(ValueError, match="steps_offset"):
    schedules.make_timesteps("trailing", 10, 1000, steps_offset=1)
  with pytest.raises(ValueError, match="unknown timestep spacing"):
    schedules.make_timesteps("karras", 10, 1000)
  with pytest.raises(ValueError, match="unknown beta schedule"):
    schedules.make_schedule("sigmoid")
  with pytest.raises(ValueError, match="strictly decreasing"):
    schedules.check_timesteps(np.array([0, 5, 10]), 1000)
  with pytest.raises(ValueError, match=r"\[0, 1000\)"):
    schedules.check_timesteps(np.array([1000, 5]), 1000)
  with pytest.raises(ValueError, match="betas must lie"):
    schedules.schedule_from_betas([0.1, 1.0])


def test_previous_timesteps_rules():
  ts = schedules.make_timesteps("leading", 4, 10, steps_offset=1)  # 7 5 3 1
  np.testing.assert_array_equal(schedules.previous_timesteps(ts, 10, "sequence"), [5, 3, 1, -1])
  np.testing.assert_array_equal(schedules.previous_timesteps(ts, 10, "stride"), [5, 3, 1, -1])
  lin = schedules.make_timesteps("linspace", 4, 10)  # 9 6 3 0
  np.testing.assert_array_equal(schedules.previous_timesteps(lin, 10, "stride"), [7, 4, 1, -2])


def test_alpha_bar_final_alpha():
  sched = schedules.make_schedule("linear", 10)
  abar = np.asarray(sched.alphas_cumprod)
  got = schedules.alpha_bar(sched, jnp.array([3, 0, -1, -5]))
  np.testing.assert_allclose(np.asarray(got), [abar[3], abar[0], 1.0, 1.0])
  got = schedules.alpha_bar(sched, jnp.array([-1]), set_alpha_to_one=False)
  np.testing.assert_allclose(np.asarray(got), [abar[0]])


def test_random_timesteps_range_and_determinism():
  t = schedules.random_timesteps(jax.random.key(3), 4096, 10)
  assert t.dtype == jnp.int32 and int(t.min()) == 0 and int(t.max()) == 9
  np.testing.assert_array_equal(t, schedules.random_timesteps(jax.random.key(3), 4096, 10))


# diffusers parity (optional dependency).

@pytest.mark.parity
@pytest.mark.parametrize("kind,diffusers_kind,start,end", [
    ("linear", "linear", 1e-4, 0.02), ("scaled_linear", "scaled_linear", 0.00085, 0.012),
    ("cosine", "squaredcos_cap_v2", 1e-4, 0.02)])
def test_schedules_match_diffusers(kind, diffusers_kind, start, end):
  diffusers = pytest.importorskip("diffusers")
  ref = diffusers.DDIMScheduler(num_train_timesteps=1000, beta_schedule=diffusers_kind,
                                beta_start=start, beta_end=end)
  sched = schedules.make_schedule(kind, 1000, start, end)
  np.testing.assert_allclose(np.asarray(sched.betas), ref.betas.numpy(), rtol=1e-6, atol=1e-8)
  np.testing.assert_allclose(np.asarray(sched.alphas_cumprod), ref.alphas_cumprod.numpy(),
                             rtol=0, atol=1e-6)


@pytest.mark.parity
@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("n", [1, 10, 50, 99, 333, 1000])
def test_spacings_match_diffusers(spacing, n):
  diffusers = pytest.importorskip("diffusers")
  for offset in ((0, 1) if spacing == "leading" else (0,)):
    ref = diffusers.DDIMScheduler(num_train_timesteps=1000, timestep_spacing=spacing,
                                  steps_offset=offset)
    ref.set_timesteps(n)
    if spacing == "leading" and offset and n == 1000:
      continue  # diffusers would step from t = 1000, outside the schedule; we raise instead.
    np.testing.assert_array_equal(
        schedules.make_timesteps(spacing, n, 1000, steps_offset=offset), ref.timesteps.numpy())
