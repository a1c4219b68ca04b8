"""FD2Talk's lip expert: Eqs. 10-11 by hand, mouth points from the morphable model (gradient to
the expression), and an expert that learns in-sync from shifted pairs on a tiny synthetic set."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from talking_heads.face import morphable
from talking_heads.models import fd2talk_lip_expert as lip
from talking_heads.systems.fd2talk import sizes

MODEL = morphable.default_model()


def test_probability_and_losses_match_eqs_10_11():
  r = np.random.default_rng(0)
  v, a = np.abs(r.normal(size=(4, 6))), np.abs(r.normal(size=(4, 6)))
  cos = (v * a).sum(-1) / (np.linalg.norm(v, axis=-1) * np.linalg.norm(a, axis=-1))
  np.testing.assert_allclose(lip.sync_probability(jnp.asarray(v), jnp.asarray(a)), cos,
                             rtol=1e-6)
  np.testing.assert_allclose(lip.sync_loss(jnp.asarray(v), jnp.asarray(a)), -np.log(cos).mean(),
                             rtol=1e-5)
  y = np.array([1.0, 0.0, 1.0, 0.0])
  bce = -(y * np.log(cos) + (1 - y) * np.log(1 - cos)).mean()
  np.testing.assert_allclose(lip.expert_loss(jnp.asarray(v), jnp.asarray(a), jnp.asarray(y)), bce,
                             rtol=1e-5)
  # Orthogonal embeddings: P = 0 is clipped at 1e-7, a finite loss with finite gradients.
  e0, e1 = jnp.eye(2)[:1], jnp.eye(2)[1:]
  assert np.isclose(float(lip.sync_loss(e0, e1)), -np.log(1e-7), rtol=1e-5)
  assert np.isfinite(np.asarray(jax.grad(lip.sync_loss)(e0, e1))).all()


def test_mouth_points_follow_the_expression_and_carry_its_gradient():
  alpha = jnp.zeros((MODEL.num_identity,))
  beta = jnp.zeros((3, MODEL.num_expression)).at[1, MODEL.exp_names.index("jaw_open")].set(1.0)
  points = lip.mouth_points(MODEL, alpha, beta)                           # [3, N, 3]
  assert points.shape == (3, len(morphable.MOUTH_INDICES), 3)
  np.testing.assert_allclose(np.asarray(points.mean(axis=1)), 0.0, atol=1e-4)
  assert not np.allclose(points[0], points[1])
  np.testing.assert_allclose(points[0], points[2])
  grad = jax.grad(lambda b: jnp.sum(lip.mouth_points(MODEL, alpha, b) ** 2))(beta)
  assert np.abs(np.asarray(grad)).max() > 0


def test_windows_cover_every_five_frames():
  x = jnp.arange(2 * 8).reshape(2, 8)
  w = lip.frame_windows(x, 5)
  assert w.shape == (2, 4, 5)
  np.testing.assert_array_equal(w[1, 3], np.arange(11, 16))


def _clips(rng, n, frames):
  """Synthetic speech: audio features are a fixed random map of the expression (plus noise),
  so only aligned (mouth, audio) windows agree."""
  beta = np.abs(rng.normal(size=(n, frames, MODEL.num_expression))) * 0.5
  proj = np.random.default_rng(99).normal(size=(MODEL.num_expression, 12))
  audio = beta @ proj + 0.05 * rng.normal(size=(n, frames, 12))
  alpha = rng.normal(size=(n, 1, MODEL.num_identity)) * 0.5
  mouth = lip.mouth_points(MODEL, jnp.asarray(alpha), jnp.asarray(beta))  # [n, F, N, 3]
  return mouth, jnp.asarray(audio, jnp.float32)


def _pairs(mouth, audio, shift):
  """In-sync windows at frame 0 and off-sync ones with the audio `shift` frames later."""
  return (jnp.concatenate([mouth[:, :5], mouth[:, :5]]),
          jnp.concatenate([audio[:, :5], audio[:, shift:shift + 5]]),
          jnp.concatenate([jnp.ones(mouth.shape[0]), jnp.zeros(mouth.shape[0])]))


def test_tiny_expert_learns_sync_from_shifted_pairs():
  rng = np.random.default_rng(0)
  expert = lip.LipExpert(**sizes.sizes("tiny").lip_expert)
  train_mouth, train_audio = _clips(rng, 16, 10)
  test_mouth, test_audio = _clips(rng, 16, 10)
  mouth, audio, y = _pairs(train_mouth, train_audio, 5)
  params = expert.init(jax.random.key(0), mouth, audio)
  # At 1e-3 and above some in-sync pairs reach disjoint ReLU supports (P = 0: clamped loss, no
  # gradient) and the loss jumps; Wav2Lip trains its expert at 1e-4.
  tx = optax.adam(3e-4)

  def loss_fn(params):
    v, a = expert.apply(params, mouth, audio)
    return lip.expert_loss(v, a, y)

  @jax.jit
  def step(params, opt):
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt = tx.update(grads, opt)
    return optax.apply_updates(params, updates), opt, loss

  opt = tx.init(params)
  losses = []
  for _ in range(80):
    params, opt, loss = step(params, opt)
    losses.append(float(loss))
  assert losses[-1] < 0.5 * losses[0], losses
  # Held-out clips: every window of the aligned sequence vs the audio shifted by 5 frames.
  v, a = expert.apply(params, test_mouth[:, :5], test_audio[:, :5], method=lip.LipExpert.windows)
  v_off, a_off = expert.apply(params, test_mouth[:, :5], test_audio[:, 5:],
                              method=lip.LipExpert.windows)
  assert v.shape == (16, 1, 16)
  in_sync = float(jnp.mean(lip.sync_probability(v, a)))
  off_sync = float(jnp.mean(lip.sync_probability(v_off, a_off)))
  assert in_sync > off_sync + 0.1, (in_sync, off_sync)
