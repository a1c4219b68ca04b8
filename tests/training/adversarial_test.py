"""The multi-player adversarial step against hand-computed updates: two discriminators (one
frozen), lazy R1, cadence, start, adaptive weight, feature matching, jit with donation."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from talking_heads.losses import gan
from talking_heads.training import adversarial
from talking_heads.training.state import AdversarialTrainState, TrainState, frozen_state

B, K, N = 4, 3, 2        # batch, latent width, data width
LR_G, LR_D = 0.1, 0.05

_rng = np.random.default_rng(0)
Z = _rng.normal(size=(B, K)).astype(np.float32)
REAL = _rng.normal(size=(B, N)).astype(np.float32)
W_G = _rng.normal(size=(K, N)).astype(np.float32)
W_1 = _rng.normal(size=(N,)).astype(np.float32)
W_2 = _rng.normal(size=(N,)).astype(np.float32)
BATCH = {"z": jnp.asarray(Z), "real": jnp.asarray(REAL)}


def generate(params, model_state, batch, rng):
  """fake = z W [B, N]; non-adversarial loss 0.5 mean(fake^2)."""
  del model_state, rng
  fake = batch["z"] @ params["w"]
  loss = 0.5 * jnp.mean(jnp.square(fake))
  return adversarial.GeneratorOutput(fake=fake, real=batch["real"], loss=loss,
                                     metrics={"rec": loss}, reference_loss=loss)


def linear_d(params, model_state, x, batch, rng):
  """logits = x w [B]."""
  del batch, rng
  return adversarial.DiscriminatorOutput(logits=x @ params["w"])


def quadratic_d(params, model_state, x, batch, rng):
  """logits_b = sum_j w_j x_bj^2: grad_x = 2 w x."""
  del batch, rng
  return adversarial.DiscriminatorOutput(logits=jnp.sum(params["w"] * jnp.square(x), axis=-1))


def make_state(**discriminators):
  key = jax.random.PRNGKey(0)
  g = TrainState.create({"w": jnp.asarray(W_G)}, optax.sgd(LR_G), rng=key)
  return AdversarialTrainState.create(g, discriminators, rng=key)


def trainable(w):
  return TrainState.create({"w": jnp.asarray(w)}, optax.sgd(LR_D), rng=jax.random.PRNGKey(0))


sigmoid = lambda x: 1.0 / (1.0 + np.exp(-x))
softplus = lambda x: np.log1p(np.exp(x))


def test_two_discriminators_one_frozen_against_a_hand_computed_update():
  players = {
      "visual": adversarial.Discriminator(linear_d, "non_saturating", g_weight=0.5, d_weight=2.0),
      "sync": adversarial.Discriminator(linear_d, "least_squares", g_weight=0.3, frozen=True),
  }
  state = make_state(visual=trainable(W_1), sync=frozen_state({"w": jnp.asarray(W_2)},
                                                                jax.random.PRNGKey(0)))
  new, metrics = jax.jit(adversarial.make_adversarial_step(generate, players))(
      state, BATCH, jax.random.PRNGKey(1))

  # Closed form in float64. fake = Z W_G; l1 = fake w1, l2 = fake w2.
  fake = Z.astype(np.float64) @ W_G
  l1, l2 = fake @ W_1, fake @ W_2
  d_fake = fake / fake.size                                       # d 0.5 mean(fake^2)
  d_fake += 0.5 * (-sigmoid(-l1) / B)[:, None] * W_1[None]        # d mean softplus(-l1)
  d_fake += 0.3 * (2.0 * (l2 - 1.0) / B)[:, None] * W_2[None]     # d mean (l2 - 1)^2
  expected_g = W_G - LR_G * Z.T @ d_fake
  r = REAL.astype(np.float64) @ W_1
  grad_w1 = REAL.T @ (-sigmoid(-r) / B) + fake.T @ (sigmoid(l1) / B)
  expected_w1 = W_1 - LR_D * 2.0 * grad_w1

  np.testing.assert_allclose(new.generator.params["w"], expected_g, atol=1e-6)
  np.testing.assert_allclose(new.discriminators["visual"].params["w"], expected_w1, atol=1e-6)
  assert np.array_equal(np.asarray(new.discriminators["sync"].params["w"]), W_2)
  assert int(new.discriminators["sync"].step) == 0 and int(new.discriminators["visual"].step) == 1
  assert int(new.step) == 1 and int(new.generator.step) == 1
  g_visual, g_sync = softplus(-l1).mean(), np.square(l2 - 1.0).mean()
  np.testing.assert_allclose(metrics["visual/g_loss"], g_visual, rtol=1e-5)
  np.testing.assert_allclose(metrics["sync/g_loss"], g_sync, rtol=1e-5)
  np.testing.assert_allclose(metrics["loss"], 0.5 * np.mean(fake ** 2) + 0.5 * g_visual
                             + 0.3 * g_sync, rtol=1e-5)
  np.testing.assert_allclose(metrics["visual/d_loss"],
                             softplus(-r).mean() + softplus(l1).mean(), rtol=1e-5)
  np.testing.assert_allclose(metrics["visual/logits_real"], r.mean(), rtol=1e-5)
  np.testing.assert_allclose(metrics["visual/logits_fake"], l1.mean(), rtol=1e-5)
  assert "sync/d_loss" not in metrics and float(metrics["visual/updated"]) == 1.0


def test_r1_against_the_explicit_gradient_norm():
  x, w, gamma = REAL.astype(np.float64), W_1.astype(np.float64), 10.0
  by_hand = gamma / 2 * np.mean(np.sum(np.square(2 * w * x), axis=1))
  logits_fn = lambda v: quadratic_d({"w": jnp.asarray(W_1)}, None, v, None, None).logits
  np.testing.assert_allclose(gan.r1_penalty(logits_fn, jnp.asarray(REAL), gamma), by_hand,
                             rtol=1e-5)
  # Linear D: grad_x = w for every sample.
  linear = lambda v: v @ jnp.asarray(W_1)
  np.testing.assert_allclose(gan.r1_penalty(linear, jnp.asarray(REAL), gamma),
                             gamma / 2 * np.sum(W_1.astype(np.float64) ** 2), rtol=1e-5)


def test_lazy_r1_every_r1_every_steps_scaled_by_r1_every():
  gamma, every = 10.0, 4
  # d_weight 0: only R1 moves D, so its updates are the R1 gradient alone.
  players = {"d": adversarial.Discriminator(quadratic_d, "hinge", d_weight=0.0, r1_gamma=gamma,
                                            r1_every=every)}
  state = make_state(d=trainable(W_1))
  step = jax.jit(adversarial.make_adversarial_step(generate, players))
  x = REAL.astype(np.float64)
  for i in range(6):
    w = np.asarray(state.discriminators["d"].params["w"], np.float64)
    due = i % every == 0                        # the player's own step equals i here (every=1)
    expected_r1 = every * gamma / 2 * np.mean(np.sum(np.square(2 * w * x), axis=1)) if due else 0.0
    expected_w = w - LR_D * every * gamma / 2 * np.mean(8 * w * x ** 2, axis=0) if due else w
    state, metrics = step(state, BATCH, jax.random.PRNGKey(i))
    np.testing.assert_allclose(metrics["d/r1"], expected_r1, rtol=1e-5)
    np.testing.assert_allclose(state.discriminators["d"].params["w"], expected_w, rtol=1e-5,
                               atol=1e-7)


def test_cadence_and_start():
  players = {"d": adversarial.Discriminator(linear_d, "hinge", every=2, start=3)}
  state = make_state(d=trainable(W_1))
  step = jax.jit(adversarial.make_adversarial_step(generate, players))
  changed, updated, weights = [], [], []
  for i in range(6):
    before = np.asarray(state.discriminators["d"].params["w"])
    state, metrics = step(state, BATCH, jax.random.PRNGKey(i))
    changed.append(not np.array_equal(before, np.asarray(state.discriminators["d"].params["w"])))
    updated.append(float(metrics["d/updated"]))
    weights.append(float(metrics["d/weight"]))
  # Updates on steps 0, 2, 4; before start (3) the factor is 0, so its gradient is 0 (SGD: no move).
  assert updated == [1, 0, 1, 0, 1, 0]
  assert changed == [False, False, False, False, True, False]
  assert weights == [0, 0, 0, 1, 1, 1]
  assert int(state.discriminators["d"].step) == 3 and int(state.step) == 6


def test_adaptive_weight_and_dynamic_weights():
  def generate_weighted(params, model_state, batch, rng):
    out = generate(params, model_state, batch, rng)
    return out._replace(weights={"d": jnp.float32(0.25)})

  players = {"d": adversarial.Discriminator(linear_d, "vanilla", g_weight=0.8, adaptive=True)}
  state = make_state(d=trainable(W_1))
  new, metrics = adversarial.adversarial_step(state, generate_weighted, players, BATCH,
                                              jax.random.PRNGKey(0),
                                              adaptive_layer=lambda p: p["w"])
  params = state.generator.params
  rec_grad = jax.grad(lambda p: generate(p, None, BATCH, None).loss)(params)["w"]
  g_loss = lambda p: gan.generator_loss(linear_d(state.discriminators["d"].params, None,
                                                 generate(p, None, BATCH, None).fake, None, None).logits)
  gan_grad = jax.grad(g_loss)(params)["w"]
  weight = 0.25 * gan.adaptive_weight(rec_grad, gan_grad, 0.8)
  np.testing.assert_allclose(metrics["d/weight"], weight, rtol=1e-5)
  np.testing.assert_allclose(metrics["d/adaptive_weight"], weight / 0.25, rtol=1e-5)
  expected = params["w"] - LR_G * (rec_grad + weight * gan_grad)
  np.testing.assert_allclose(new.generator.params["w"], expected, atol=1e-6)
  with pytest.raises(ValueError, match="adaptive_layer"):
    adversarial.adversarial_step(state, generate, players, BATCH, jax.random.PRNGKey(0))


def test_feature_matching_term_in_the_step():
  def featured_d(params, model_state, x, batch, rng):
    h = x * params["w"]                                    # [B, N]
    return adversarial.DiscriminatorOutput(logits=jnp.sum(h, -1), features=[h, jnp.tanh(h)])

  players = {"d": adversarial.Discriminator(featured_d, "least_squares", g_weight=0.0,
                                            feature_matching=2.0, frozen=True)}
  state = make_state(d=frozen_state({"w": jnp.asarray(W_1)}, jax.random.PRNGKey(0)))
  new, metrics = adversarial.adversarial_step(state, generate, players, BATCH,
                                              jax.random.PRNGKey(0))

  def total(p):
    fake = generate(p, None, BATCH, None).fake
    hr, hf = REAL * W_1, fake * W_1
    fm = 0.5 * (jnp.mean(jnp.abs(hf - hr)) + jnp.mean(jnp.abs(jnp.tanh(hf) - jnp.tanh(hr))))
    return generate(p, None, BATCH, None).loss + 2.0 * fm, fm

  (_, fm), grads = jax.value_and_grad(total, has_aux=True)(state.generator.params)
  np.testing.assert_allclose(metrics["d/feature_matching"], fm, rtol=1e-6)
  np.testing.assert_allclose(new.generator.params["w"],
                             state.generator.params["w"] - LR_G * grads["w"], atol=1e-6)


def test_jits_with_donated_state():
  players = {"a": adversarial.Discriminator(linear_d, "bce", every=2),
             "b": adversarial.Discriminator(quadratic_d, "hinge", r1_gamma=1.0, r1_every=2),
             "c": adversarial.Discriminator(linear_d, "least_squares", frozen=True)}
  make = lambda: make_state(a=trainable(W_1), b=trainable(W_2),
                            c=frozen_state({"w": jnp.asarray(W_2)}, jax.random.PRNGKey(0)))
  train_step = adversarial.make_adversarial_step(generate, players)
  plain, donated = jax.jit(train_step), jax.jit(train_step, donate_argnums=(0,))
  # Fresh buffers per leaf (the players share key arrays; a donated call may not see one twice).
  s1 = make()
  s2 = jax.tree_util.tree_map(jnp.copy, s1)
  for i in range(3):
    s1, m1 = plain(s1, BATCH, jax.random.PRNGKey(i))
    s2, m2 = donated(s2, BATCH, jax.random.PRNGKey(i))
  jax.tree_util.tree_map(np.testing.assert_array_equal, s1, s2)
  assert set(m1) == set(m2) and all(np.isfinite(float(v)) for v in m2.values())


def test_mismatched_players_raise():
  with pytest.raises(ValueError, match="do not match"):
    adversarial.adversarial_step(make_state(d=trainable(W_1)), generate,
                                 {"e": adversarial.Discriminator(linear_d)}, BATCH,
                                 jax.random.PRNGKey(0))
