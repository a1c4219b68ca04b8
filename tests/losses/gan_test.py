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
