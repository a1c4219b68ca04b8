"""Tests for talking_heads.diffusion.parameterization: forward noising, epsilon / x0 / v
conversions, training targets, losses and x0 thresholding, against float64 numpy formulas and,
when installed, diffusers."""

import jax.numpy as jnp
import numpy as np
import pytest

from talking_heads.diffusion import parameterization as param
from talking_heads.diffusion import schedules

SCHED = schedules.make_schedule("linear", 1000)
ABAR = np.asarray(SCHED.alphas_cumprod, np.float64)


def _data(seed, shape=(4, 3, 5, 2)):
  rng = np.random.default_rng(seed)
  x0 = rng.uniform(-1, 1, shape).astype(np.float32)
  eps = rng.normal(size=shape).astype(np.float32)
  t = np.array([0, 17, 500, 999])[:shape[0]]
  return x0, eps, t


def _col(values, ndim):
  return np.asarray(values).reshape((-1,) + (1,) * (ndim - 1))


def test_q_sample_formula():
  x0, eps, t = _data(0)
  a = _col(ABAR[t], x0.ndim)
  want = np.sqrt(a) * x0 + np.sqrt(1 - a) * eps
  np.testing.assert_allclose(np.asarray(param.q_sample(SCHED, x0, t, eps)), want, atol=1e-6)
  # Scalar t broadcasts over the batch.
  got = param.q_sample(SCHED, x0, 500, eps)
  want = np.sqrt(ABAR[500]) * x0 + np.sqrt(1 - ABAR[500]) * eps
  np.testing.assert_allclose(np.asarray(got), want, atol=1e-6)


@pytest.mark.parametrize("prediction", ["epsilon", "x0", "v"])
def test_target_then_conversion_recovers_x0_and_eps(prediction):
  x0, eps, t = _data(1)
  x_t = param.q_sample(SCHED, x0, t, eps)
  target = param.training_target(prediction, SCHED, x0, eps, t)
  x0_hat, eps_hat = param.to_x0_eps(prediction, target, x_t, SCHED.alphas_cumprod[t])
  # eps from x0 divides by sqrt(1 - abar_0) = 0.01 at t = 0, so compare the noisier rows there.
  np.testing.assert_allclose(np.asarray(x0_hat)[1:], x0[1:], atol=2e-5)
  np.testing.assert_allclose(np.asarray(eps_hat)[1:], eps[1:], atol=2e-5)


def test_velocity_and_inverse_formulas():
  x0, eps, t = _data(2)
  a = _col(ABAR[t], x0.ndim)
  # float32 inputs, so both sides see the same x_t and v.
  x_t = (np.sqrt(a) * x0 + np.sqrt(1 - a) * eps).astype(np.float32)
  v = (np.sqrt(a) * eps - np.sqrt(1 - a) * x0).astype(np.float32)
  np.testing.assert_allclose(np.asarray(param.velocity(x0, eps, ABAR[t])), v, atol=1e-6)
  np.testing.assert_allclose(np.asarray(param.x0_from_v(x_t, v, ABAR[t])),
                             np.sqrt(a) * x_t - np.sqrt(1 - a) * v, atol=1e-6)
  np.testing.assert_allclose(np.asarray(param.eps_from_v(x_t, v, ABAR[t])),
                             np.sqrt(a) * v + np.sqrt(1 - a) * x_t, atol=1e-6)
  # At t = 999 x0 = (x_t - s eps) / 0.0064 magnifies float32 cancellation; checked to t = 500.
  np.testing.assert_allclose(np.asarray(param.x0_from_eps(x_t, eps, ABAR[t]))[:3],
                             ((x_t - np.sqrt(1 - a) * eps) / np.sqrt(a))[:3], atol=1e-6)
  np.testing.assert_allclose(np.asarray(param.eps_from_x0(x_t, x0, ABAR[t]))[1:],
                             ((x_t - np.sqrt(a) * x0) / np.sqrt(1 - a))[1:], atol=1e-6)


def test_prediction_loss_hand_values():
  out = jnp.array([[1.0, 2.0], [0.0, 0.0]])
  tgt = jnp.array([[0.0, 0.0], [3.0, -1.0]])
  np.testing.assert_allclose(np.asarray(param.prediction_loss(out, tgt, "l1")), [1.5, 2.0])
  np.testing.assert_allclose(np.asarray(param.prediction_loss(out, tgt, "l2")), [2.5, 5.0])
  with pytest.raises(ValueError, match="unknown loss norm"):
    param.prediction_loss(out, tgt, "huber")
  with pytest.raises(ValueError, match="target shape"):
    param.prediction_loss(out, tgt[:1], "l1")


def test_unknown_prediction_and_shape_errors():
  x = jnp.zeros((2, 3))
  with pytest.raises(ValueError, match="unknown prediction type 'sample'"):
    param.to_x0_eps("sample", x, x, 0.5)
  with pytest.raises(ValueError, match="model output shape"):
    param.to_x0_eps("epsilon", jnp.zeros((2, 4)), x, 0.5)
  with pytest.raises(ValueError, match="noise shape"):
    param.q_sample(SCHED, x, jnp.array([1, 2]), jnp.zeros((2, 4)))


def _threshold_reference(x0, ratio, max_value):
  flat = np.abs(x0.reshape(x0.shape[0], -1).astype(np.float64))
  s = np.clip(np.quantile(flat, ratio, axis=1), 1, max_value)[:, None]
  return (np.clip(x0.reshape(x0.shape[0], -1), -s, s) / s).reshape(x0.shape)


def test_dynamic_threshold_and_clip():
  rng = np.random.default_rng(3)
  x0 = (rng.normal(size=(3, 4, 4, 2)) * np.array([0.3, 2.0, 5.0])[:, None, None, None]).astype(
      np.float32)
  got = np.asarray(param.dynamic_threshold(x0, 0.9, 3.0))
  np.testing.assert_allclose(got, _threshold_reference(x0, 0.9, 3.0), atol=1e-6)
  np.testing.assert_array_equal(got[0], x0[0])  # s clamps to 1 and nothing exceeds it
  np.testing.assert_array_equal(np.asarray(param.clip_x0(x0, 1.5)), np.clip(x0, -1.5, 1.5))


@pytest.mark.parity
def test_matches_diffusers_add_noise_velocity_and_threshold():
  pytest.importorskip("diffusers")
  import diffusers  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  ref = diffusers.DDPMScheduler(num_train_timesteps=1000, thresholding=True,
                                dynamic_thresholding_ratio=0.9, sample_max_value=3.0)
  # The same float32 tables on both sides: 1 - abar cancels, so table rounding would show.
  sched = schedules.NoiseSchedule(betas=jnp.asarray(ref.betas.numpy()),
                                  alphas_cumprod=jnp.asarray(ref.alphas_cumprod.numpy()),
                                  num_train_timesteps=1000)
  x0, eps, t = _data(4, (4, 2, 3, 3))
  tt = torch.from_numpy(t)
  np.testing.assert_allclose(
      np.asarray(param.q_sample(sched, x0, t, eps)),
      ref.add_noise(torch.from_numpy(x0), torch.from_numpy(eps), tt).numpy(), atol=1e-6)
  np.testing.assert_allclose(
      np.asarray(param.training_target("v", sched, x0, eps, t)),
      ref.get_velocity(torch.from_numpy(x0), torch.from_numpy(eps), tt).numpy(), atol=1e-6)
  big = (x0 * 4).astype(np.float32)
  np.testing.assert_allclose(np.asarray(param.dynamic_threshold(big, 0.9, 3.0)),
                             ref._threshold_sample(torch.from_numpy(big)).numpy(), atol=1e-6)
