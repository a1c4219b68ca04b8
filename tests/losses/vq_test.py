"""VQ loss (Eq. 12, legacy switch, the SOVQAE stage's terms), codebook regulariser (Eq. 11),
codebook statistics and dead-code restarts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial import distance

from experiments.configs.ladtalk import sovqae as sovqae_config
from talking_heads.losses import vq
from talking_heads.systems.ladtalk.sovqae import SOVQAEStage


@pytest.mark.parametrize("legacy", [False, True])
def test_beta_lands_on_the_term_the_legacy_switch_names(legacy):
  rng = np.random.default_rng(0)
  z_e = jnp.asarray(rng.normal(size=(6, 4)).astype(np.float32))
  z_q = jnp.asarray(rng.normal(size=(6, 4)).astype(np.float32))
  beta = 0.25

  def loss(z_e, z_q):
    return vq.vq_loss(*vq.codebook_and_commitment(z_e, z_q), beta=beta, legacy=legacy)

  g_e, g_q = jax.grad(loss, argnums=(0, 1))(z_e, z_q)
  unit = 2 * np.asarray(z_e - z_q) / z_e.size   # d/dz_e of mean((z_e - z_q)^2)
  encoder_weight, codebook_weight = (1.0, beta) if legacy else (beta, 1.0)
  np.testing.assert_allclose(np.asarray(g_e), encoder_weight * unit, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(g_q), -codebook_weight * unit, rtol=1e-5)
  mse = float(np.mean(np.asarray(z_e - z_q) ** 2))
  np.testing.assert_allclose(float(loss(z_e, z_q)), (1 + beta) * mse, rtol=1e-5)


def test_paper_beta_weighs_both_terms_equally():
  assert float(vq.vq_loss(2.0, 3.0)) == float(vq.vq_loss(2.0, 3.0, legacy=True)) == 5.0


def test_sovqae_stage_vq_terms_equal_the_former_in_model_terms():
  """The stage computes the VQ terms from the model's aux (z_e, z_q); they are the terms the
  quantiser used to return: codebook_and_commitment(z_e, codebook[nearest]), both the mean
  squared distance of each latent to its nearest code."""
  config = sovqae_config.get_config("tiny")
  config.loss.disc_weight = 0.0                       # no discriminator state needed
  stage = SOVQAEStage(config)
  x = jnp.asarray(np.random.default_rng(5).uniform(-1, 1, (2, 32, 32, 3)), jnp.float32)
  params = stage.model.init(jax.random.PRNGKey(0), x)["params"]
  batch = {"image": jnp.round((x + 1.0) * 127.5).astype(jnp.uint8)}
  x = batch["image"].astype(jnp.float32) / 127.5 - 1.0   # what the stage feeds the model
  loss = jax.jit(lambda p: stage.loss_fn(p, {}, batch, jax.random.PRNGKey(0)))
  _, (metrics, _) = loss(params)
  model = stage.model
  z_e = model.apply({"params": params}, x, method=model.encode)
  _, indices, _ = model.apply({"params": params}, z_e, method=model.quantize)
  codebook = params["quantizer"]["codebook"]
  former = vq.codebook_and_commitment(z_e, jnp.take(codebook, indices, axis=0))
  # (Equal up to float32 rounding: the stage runs jitted and fused, `former` eagerly.)
  np.testing.assert_allclose(metrics["codebook_loss"], former[0], rtol=1e-5)
  np.testing.assert_allclose(metrics["commitment_loss"], former[1], rtol=1e-5)
  np.testing.assert_allclose(metrics["vq_loss"], former[0] + former[1], rtol=1e-5)   # beta = 1
  # And independently: nearest codes by brute force in float64.
  z, e = np.asarray(z_e, np.float64), np.asarray(codebook, np.float64)
  nearest = e[np.argmin(((z[..., None, :] - e) ** 2).sum(-1), axis=-1)]
  np.testing.assert_allclose(float(metrics["codebook_loss"]), np.mean((z - nearest) ** 2),
                             rtol=1e-5)


def _codebook():
  """Five codes; codes 1 and 3 are the closest pair (distance 0.1)."""
  return jnp.asarray([[0.0, 0.0], [1.0, 0.0], [0.0, 1.5], [1.0, 0.1], [-1.2, -0.4]], jnp.float32)


def test_distances_match_scipy():
  codebook = np.random.default_rng(0).normal(size=(40, 6)).astype(np.float32)
  pairwise = distance.pdist(codebook)
  np.testing.assert_allclose(float(vq.minimal_distance(jnp.asarray(codebook))), pairwise.min(), rtol=1e-5)
  np.testing.assert_allclose(float(vq.average_distance(jnp.asarray(codebook))), pairwise.mean(), rtol=1e-5)
  assert tuple(int(i) for i in vq.closest_pair(_codebook())) in ((1, 3), (3, 1))


def test_minimal_regulariser_pushes_only_the_closest_pair_apart():
  codebook = _codebook()
  loss, d = vq.codebook_regulariser(codebook, "minimal", theta=1.0)
  np.testing.assert_allclose(float(d), 0.1, rtol=1e-5)
  np.testing.assert_allclose(float(loss), 0.9, rtol=1e-5)
  grad = np.asarray(jax.grad(lambda c: vq.codebook_regulariser(c, "minimal", 1.0)[0])(codebook))
  assert not grad[[0, 2, 4]].any()            # far codes: exactly zero
  # Unit-length pushes along the pair's axis, in opposite directions.
  np.testing.assert_allclose(grad[1], [0.0, 1.0], atol=1e-5)
  np.testing.assert_allclose(grad[3], [0.0, -1.0], atol=1e-5)
  stepped = codebook - 0.01 * grad
  assert float(jnp.linalg.norm(stepped[1] - stepped[3])) > 0.1
  # Above theta the same loss pulls the pair together.
  wide = codebook * 20.0                      # closest distance 2.0
  grad = np.asarray(jax.grad(lambda c: vq.codebook_regulariser(c, "minimal", 1.0)[0])(wide))
  stepped = wide - 0.01 * grad
  assert float(jnp.linalg.norm(stepped[1] - stepped[3])) < 2.0


def test_average_regulariser_moves_every_code_and_raises_the_mean():
  codebook = _codebook()
  loss, d = vq.codebook_regulariser(codebook, "average", theta=2.0)
  mean = distance.pdist(np.asarray(codebook)).mean()
  np.testing.assert_allclose(float(d), mean, rtol=1e-5)
  np.testing.assert_allclose(float(loss), abs(mean - 2.0), rtol=1e-5)
  grad = jax.grad(lambda c: vq.codebook_regulariser(c, "average", 2.0)[0])(codebook)
  assert np.all(np.linalg.norm(np.asarray(grad), axis=1) > 0)
  assert float(vq.average_distance(codebook - 0.01 * grad)) > float(d)


def test_regulariser_off_and_bad_mode():
  loss, d = vq.codebook_regulariser(_codebook(), "off")
  assert float(loss) == 0.0
  np.testing.assert_allclose(float(d), 0.1, rtol=1e-5)
  grad = jax.grad(lambda c: vq.codebook_regulariser(c, "off")[0])(_codebook())
  assert not np.asarray(grad).any()
  with pytest.raises(ValueError, match="minimal"):
    vq.codebook_regulariser(_codebook(), "median")


def test_identical_codes_give_finite_gradients():
  codebook = jnp.asarray([[0.5, 0.5], [0.5, 0.5], [2.0, 0.0]], jnp.float32)
  for mode in ("minimal", "average"):
    grad = jax.grad(lambda c: vq.codebook_regulariser(c, mode, 1.0)[0])(codebook)
    assert np.all(np.isfinite(np.asarray(grad)))
  assert float(vq.minimal_distance(codebook)) < 1e-5


def test_codebook_stats_hand_cases():
  stats = vq.codebook_stats(jnp.asarray([[0, 0], [1, 1]]), num_codes=4)
  np.testing.assert_allclose([float(stats["usage"]), float(stats["perplexity"]), float(stats["dead_codes"])],
                             [0.5, 2.0, 2.0], rtol=1e-6)
  one = vq.codebook_stats(jnp.full((3, 2, 2), 5), num_codes=8)
  assert float(one["perplexity"]) == pytest.approx(1.0) and float(one["dead_codes"]) == 7
  every = vq.codebook_stats(jnp.arange(16).reshape(2, 8), num_codes=16)
  assert float(every["perplexity"]) == pytest.approx(16.0) and float(every["usage"]) == 1.0
  # p = (3/4, 1/4): exp(-(0.75 ln 0.75 + 0.25 ln 0.25)).
  skewed = vq.codebook_stats(jnp.asarray([[2, 2, 2, 7]]), num_codes=8)
  entropy = -(0.75 * np.log(0.75) + 0.25 * np.log(0.25))
  np.testing.assert_allclose(float(skewed["perplexity"]), np.exp(entropy), rtol=1e-6)
  # A zero-weight (padding) example does not count.
  padded = vq.codebook_stats(jnp.asarray([[0, 1], [2, 3]]), num_codes=4, weights=jnp.asarray([1.0, 0.0]))
  assert float(padded["usage"]) == 0.5 and float(padded["perplexity"]) == pytest.approx(2.0)


def test_code_usage_is_a_moving_average_of_vectors_per_code():
  usage = vq.code_usage(jnp.asarray([2.0, 0.0, 1.0]), jnp.asarray([[0, 0], [2, 0]]), decay=0.5)
  np.testing.assert_allclose(np.asarray(usage), [0.5 * 2 + 0.5 * 3, 0.0, 0.5 * 1 + 0.5 * 1])


def test_dead_codes_move_onto_batch_latents_and_live_codes_stay():
  rng = np.random.default_rng(0)
  codebook = jnp.asarray(rng.normal(size=(6, 3)), jnp.float32)
  latents = jnp.asarray(rng.normal(size=(40, 3)) + 10.0, jnp.float32)
  usage = jnp.asarray([5.0, 0.2, 3.0, 0.0, 1.0, 0.99])
  new, new_usage, restarted = vq.restart_dead_codes(codebook, usage, latents,
                                                    jax.random.PRNGKey(1), threshold=1.0)
  dead = np.asarray(usage) < 1.0
  assert int(restarted) == dead.sum() == 3
  np.testing.assert_array_equal(np.asarray(new)[~dead], np.asarray(codebook)[~dead])
  for row in np.asarray(new)[dead]:          # each one is a latent of the batch
    assert np.min(np.abs(np.asarray(latents) - row).sum(axis=1)) == 0
  assert len({tuple(r) for r in np.asarray(new)[dead]}) == 3     # drawn without replacement
  np.testing.assert_allclose(np.asarray(new_usage), np.where(dead, 40 / 6, np.asarray(usage)))


def test_restarts_revive_a_collapsed_codebook():
  """taming's uniform(-1/N, 1/N) codebook against latents 100 times wider: only the codes at the
  codebook's outer edge ever win; after one restart from zero usage the batch uses nearly all."""
  num_codes = 64
  latents = jax.random.normal(jax.random.PRNGKey(0), (512, 3)) * 2.0
  codebook = jax.random.uniform(jax.random.PRNGKey(1), (num_codes, 3), minval=-1 / num_codes,
                                maxval=1 / num_codes)

  def usage_of(codes):
    d = jnp.sum((latents[:, None] - codes[None]) ** 2, axis=-1)
    return float(vq.codebook_stats(jnp.argmin(d, axis=1)[None], num_codes)["usage"])

  before = usage_of(codebook)
  restarted, _, count = vq.restart_dead_codes(codebook, jnp.zeros(num_codes), latents,
                                              jax.random.PRNGKey(2), threshold=1.0)
  assert int(count) == num_codes
  assert before < 0.5 and usage_of(restarted) > 0.9, (before, usage_of(restarted))
