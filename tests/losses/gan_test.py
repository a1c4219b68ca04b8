"""GAN losses and the adaptive generator weight: hand-computed cases."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talking_heads.losses import gan


def test_hinge_hand_case():
  real = jnp.asarray([2.0, 0.5])    # relu(1 - real) = 0, 0.5 -> mean 0.25
  fake = jnp.asarray([-2.0, 0.5])   # relu(1 + fake) = 0, 1.5 -> mean 0.75
  assert float(gan.hinge_d_loss(real, fake)) == pytest.approx(0.5)
  assert float(gan.discriminator_loss(real, fake, "hinge")) == pytest.approx(0.5)
  # A confident, correct discriminator has zero hinge loss.
  assert float(gan.hinge_d_loss(jnp.full((2, 3, 3, 1), 1.5), jnp.full((2, 3, 3, 1), -1.0))) == 0.0


def test_vanilla_hand_case():
  real, fake = np.array([1.0, -0.5]), np.array([0.3, -2.0])
  softplus = lambda x: np.log1p(np.exp(x))
  expected = 0.5 * (softplus(-real).mean() + softplus(fake).mean())
  np.testing.assert_allclose(float(gan.discriminator_loss(jnp.asarray(real), jnp.asarray(fake), "vanilla")),
                             expected, rtol=1e-6)
  with pytest.raises(ValueError, match="hinge"):
    gan.discriminator_loss(jnp.zeros(2), jnp.zeros(2), "wasserstein")


def test_generator_loss():
  assert float(gan.generator_loss(jnp.asarray([[1.0, 3.0], [-2.0, 2.0]]))) == pytest.approx(-1.0)


def test_adaptive_weight_hand_cases():
  rec = {"kernel": jnp.asarray([3.0, 4.0])}           # norm 5
  g = {"kernel": jnp.asarray([0.0, 1.0])}             # norm 1
  assert float(gan.adaptive_weight(rec, g, 0.8)) == pytest.approx(0.8 * 5 / (1 + 1e-4), rel=1e-6)
  # Pytrees: the norm is global over the leaves (sqrt(1 + 4 + 4) = 3).
  tree = (jnp.asarray([1.0]), jnp.asarray([[2.0, 2.0]]))
  assert float(gan.adaptive_weight(tree, jnp.asarray([2.0]))) == pytest.approx(3 / (2 + 1e-4), rel=1e-6)
  # Clamped to 1e4 when the adversarial gradient vanishes.
  assert float(gan.adaptive_weight(rec, jnp.zeros(2), 0.8)) == pytest.approx(0.8 * 1e4)
  assert float(gan.adaptive_weight(rec, jnp.zeros(2), 1.0, max_weight=1.0)) == 1.0
  # No gradient flows through the weight.
  grads = jax.grad(lambda r, q: gan.adaptive_weight(r, q), argnums=(0, 1))(jnp.asarray([3.0, 4.0]),
                                                                           jnp.asarray([0.0, 1.0]))
  assert not any(np.asarray(x).any() for x in grads)


def test_disc_factor():
  assert [float(gan.disc_factor(jnp.asarray(s), 3)) for s in (0, 2, 3, 10)] == [0.0, 0.0, 1.0, 1.0]


# Fixed logits for the families: r = D(real), f = D(fake).
R, F = np.array([1.0, -0.5, 2.0]), np.array([0.3, -2.0, 0.0])


def _softplus(x):
  return np.log1p(np.exp(x))


@pytest.mark.parametrize("kind, d_expected, g_expected", [
    ("hinge", 0.5 * (np.mean([0.0, 1.5, 0.0]) + np.mean([1.3, 0.0, 1.0])), -np.mean(F)),
    ("vanilla", 0.5 * (_softplus(-R).mean() + _softplus(F).mean()), -np.mean(F)),
    ("non_saturating", _softplus(-R).mean() + _softplus(F).mean(), _softplus(-F).mean()),
    # BCE(sigmoid(l), y) = -y log s(l) - (1 - y) log(1 - s(l)).
    ("bce", -np.log(1 / (1 + np.exp(-R))).mean() - np.log(1 - 1 / (1 + np.exp(-F))).mean(),
     -np.log(1 / (1 + np.exp(-F))).mean()),
    ("least_squares", 0.5 * (np.mean((R - 1) ** 2) + np.mean(F ** 2)), np.mean((F - 1) ** 2)),
])
def test_families_hand_cases(kind, d_expected, g_expected):
  losses = gan.family(kind)
  np.testing.assert_allclose(losses.d(jnp.asarray(R), jnp.asarray(F)), d_expected, rtol=1e-6)
  np.testing.assert_allclose(losses.g(jnp.asarray(F)), g_expected, rtol=1e-6)


def test_bce_on_probabilities():
  p_real, p_fake = np.array([0.9, 0.6]), np.array([0.2, 0.7])
  losses = gan.family("bce_probs")
  np.testing.assert_allclose(losses.d(jnp.asarray(p_real), jnp.asarray(p_fake)),
                             -np.log(p_real).mean() - np.log(1 - p_fake).mean(), rtol=1e-6)
  np.testing.assert_allclose(losses.g(jnp.asarray(p_fake)), -np.log(p_fake).mean(), rtol=1e-6)
  # log clamped at -100 as torch's BCELoss: a certain wrong answer costs 100, not inf.
  assert float(losses.g(jnp.asarray([0.0]))) == pytest.approx(100.0)
  with pytest.raises(ValueError, match="least_squares"):
    gan.family("wasserstein")


def test_r1_hand_case():
  # D(x) = sum_j w_j x_j^2 per sample: grad_x = 2 w x; rows (1, 2) and (0, -1), w = (1, 3).
  w, x = jnp.asarray([1.0, 3.0]), jnp.asarray([[1.0, 2.0], [0.0, -1.0]])
  # ||(2, 12)||^2 = 148, ||(0, -6)||^2 = 36 -> mean 92; gamma/2 = 5.
  assert float(gan.r1_penalty(lambda v: jnp.sum(w * v ** 2, axis=1), x, 10.0)) == pytest.approx(460.0)


def test_feature_matching_hand_case():
  real = [[jnp.asarray([1.0, 2.0]), jnp.asarray([[0.0]])], [jnp.asarray([3.0, 3.0])]]
  fake = [[jnp.asarray([2.0, 0.0]), jnp.asarray([[4.0]])], [jnp.asarray([3.0, 1.0])]]
  # per map mean |fake - real|: 1.5, 4, 1 -> mean 6.5 / 3.
  assert float(gan.feature_matching(real, fake)) == pytest.approx(6.5 / 3)
  # The real features are targets: no gradient flows into them.
  grad_real = jax.grad(lambda r: gan.feature_matching(r, fake))(real)
  assert not any(np.asarray(g).any() for g in jax.tree_util.tree_leaves(grad_real))
  with pytest.raises(ValueError, match="equally many"):
    gan.feature_matching(real, fake[:1])
