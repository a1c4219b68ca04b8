"""Tests for fitting the morphable model to 2D landmarks."""

import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talking_heads.face import fitting
from talking_heads.face import morphable as m

MODEL = m.default_model()
A, E = MODEL.num_identity, MODEL.num_expression


def _clip(seed: int, frames: int, image_size=256, max_yaw: float = 0.5):
  """A synthetic clip: one identity, varied poses, sparse expressions.

  About half of the expression coefficients are exactly 0 (on the lower
  bound), the rest uniform in [0.05, 1].
  """
  rng = np.random.default_rng(seed)
  alpha = rng.standard_normal(A)
  beta = rng.uniform(0.05, 1.0, (frames, E))
  beta *= rng.uniform(size=(frames, E)) < 0.5
  pose = np.tile(m.default_pose(), (frames, 1))
  pose[:, 0] += rng.uniform(-max_yaw, max_yaw, frames)
  pose[:, 1:3] += rng.uniform(-0.3, 0.3, (frames, 2))
  pose[:, 3:] += rng.uniform(-20.0, 20.0, (frames, 3))
  camera = m.default_camera(image_size)
  landmarks = m.landmarks_2d(MODEL, alpha, beta, pose, camera)
  return alpha, beta, pose, camera, landmarks, rng


def test_recovers_identity_pose_and_expression_without_noise():
  # Well-conditioned: 8 frames sharing alpha, yaw up to +-0.8 rad so the
  # depth of every landmark is seen, no priors, exact landmarks.
  alpha, beta, pose, camera, landmarks, _ = _clip(0, 8, max_yaw=0.8)
  fit = fitting.fit_landmarks(landmarks, camera, MODEL, identity_prior=0.0,
                              expression_prior=0.0)
  assert fit.alpha.shape == (A,)
  assert fit.beta.shape == (8, E) and fit.pose.shape == (8, 6)
  np.testing.assert_allclose(fit.alpha, alpha, atol=1e-3)
  np.testing.assert_allclose(fit.beta, beta, atol=1e-3)
  np.testing.assert_allclose(fit.pose[:, :3], pose[:, :3], atol=1e-3)
  np.testing.assert_allclose(fit.pose[:, 3:], pose[:, 3:], atol=1e-3)
  assert np.all(fit.error < 1e-6)


def test_known_identity_recovers_pose_and_expression():
  alpha, beta, pose, camera, landmarks, _ = _clip(1, 5, image_size=(240, 320))
  fit = fitting.fit_landmarks(landmarks, camera, MODEL, identity=alpha,
                              expression_prior=0.0)
  np.testing.assert_array_equal(fit.alpha, alpha)
  np.testing.assert_allclose(fit.beta, beta, atol=1e-3)
  np.testing.assert_allclose(fit.pose, pose, atol=1e-3)


def test_noisy_landmarks_fit_to_the_noise_level():
  sigma = 0.7  # pixels, per coordinate
  alpha, beta, pose, camera, landmarks, rng = _clip(2, 200)
  noisy = landmarks + sigma * rng.standard_normal(landmarks.shape)
  fit = fitting.fit_landmarks(noisy, camera, MODEL)
  # A least-squares fit of P parameters to 136 coordinates leaves an RMS
  # residual of sigma * sqrt(2) * sqrt(1 - P / 136) (P ~ 15 per frame).
  ratio = np.sqrt(np.mean(fit.error**2)) / (sigma * np.sqrt(2.0))
  assert 0.88 < ratio < 1.02, ratio
  # And the parameters stay near the truth (with sigma ~ 0.8 mm here).
  assert np.abs(fit.alpha - alpha).max() < 0.15
  assert np.abs(fit.beta - beta).mean() < 0.08
  assert np.abs(fit.pose[:, :3] - pose[:, :3]).max() < 0.03
  assert np.all((fit.beta >= 0.0) & (fit.beta <= 1.0))


def test_beta_range_is_respected():
  _, _, _, camera, landmarks, rng = _clip(3, 20)
  noisy = landmarks + 2.0 * rng.standard_normal(landmarks.shape)
  fit = fitting.fit_landmarks(noisy, camera, MODEL, beta_range=(0.1, 0.6))
  assert fit.beta.min() >= 0.1 and fit.beta.max() <= 0.6
  assert np.any(fit.beta == 0.1) and np.any(fit.beta == 0.6)


def test_per_frame_identity_mode():
  _, _, _, camera, landmarks, _ = _clip(4, 6)
  fit = fitting.fit_landmarks(landmarks, camera, MODEL, shared_identity=False)
  assert fit.alpha.shape == (6, A)
  assert np.all(fit.error < 0.2)  # pixels; only the priors hold it back


def test_fit_is_deterministic():
  _, _, _, camera, landmarks, rng = _clip(5, 10)
  noisy = landmarks + rng.standard_normal(landmarks.shape)
  first = fitting.fit_landmarks(noisy, camera)
  second = fitting.fit_landmarks(noisy, camera)
  for name in ("alpha", "beta", "pose", "error"):
    np.testing.assert_array_equal(getattr(first, name), getattr(second, name))


def test_analytic_jacobian_matches_jax_autodiff():
  alpha, beta, pose, camera, _, _ = _clip(6, 3)
  uv, d_pose, d_alpha, d_beta = fitting.landmarks_and_jacobian(
      MODEL, alpha, beta, pose, camera)
  np.testing.assert_allclose(
      uv, m.landmarks_2d(MODEL, alpha, beta, pose, camera), atol=1e-9)

  def project(a, b, p):
    return m.landmarks_2d(MODEL, a, b, p, camera)

  jac = jax.jacfwd(project, argnums=(0, 1, 2))(
      jnp.asarray(alpha), jnp.asarray(beta), jnp.asarray(pose))
  frames = np.arange(3)
  # jax gives d uv[t] / d x[s] for all frame pairs; keep t == s.
  want_alpha = np.asarray(jac[0])
  want_beta = np.asarray(jac[1])[frames, :, :, frames]
  want_pose = np.asarray(jac[2])[frames, :, :, frames]
  for got, want in ((d_alpha, want_alpha), (d_beta, want_beta),
                    (d_pose, want_pose)):
    scale = np.abs(want).max()
    np.testing.assert_allclose(got, want, atol=2e-4 * scale)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((4, 68, 3)), r"\[T, 68, 2\]"),
    (np.zeros((0, 68, 2)), "no frames"),
])
def test_malformed_landmarks(bad, message):
  with pytest.raises(ValueError, match=message):
    fitting.fit_landmarks(bad, m.default_camera(64))


def test_non_finite_frames_are_named():
  _, _, _, camera, landmarks, _ = _clip(7, 6)
  landmarks = landmarks.copy()
  landmarks[4, 10, 0] = np.nan
  with pytest.raises(ValueError, match=r"1 frame\(s\), first frames \[4\]"):
    fitting.fit_landmarks(landmarks, camera)


def test_bad_options():
  _, _, _, camera, landmarks, _ = _clip(8, 2)
  with pytest.raises(ValueError, match="beta_range"):
    fitting.fit_landmarks(landmarks, camera, beta_range=(1.0, 0.0))
  with pytest.raises(ValueError, match="identity must be"):
    fitting.fit_landmarks(landmarks, camera, identity=np.zeros(3))
  with pytest.raises(ValueError, match="priors"):
    fitting.fit_landmarks(landmarks, camera, identity_prior=-1.0)
  with pytest.raises(ValueError, match="camera K"):
    fitting.fit_landmarks(landmarks, -camera)


@pytest.mark.slow
def test_long_clip_fits_in_seconds():
  sigma = 1.0
  _, _, _, camera, landmarks, rng = _clip(9, 3000)
  noisy = landmarks + sigma * rng.standard_normal(landmarks.shape)
  start = time.perf_counter()
  fit = fitting.fit_landmarks(noisy, camera)
  elapsed = time.perf_counter() - start
  assert elapsed < 30.0, elapsed  # about 3 s on 2 shared CPU cores
  ratio = np.sqrt(np.mean(fit.error**2)) / (sigma * np.sqrt(2.0))
  assert 0.88 < ratio < 1.02, ratio


def test_degenerate_landmarks_are_named():
  _, _, _, camera, landmarks, _ = _clip(10, 3)
  landmarks = landmarks.copy()
  landmarks[2] = landmarks[2, :1]  # every point on top of the first
  with pytest.raises(ValueError, match=r"degenerate.*first frames \[2\]"):
    fitting.fit_landmarks(landmarks, camera)
