"""LaDTalk's SOVQAE stage: overfits, adaptive weight vs full gradients, trains/resumes/restores."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments.configs.ladtalk import sovqae as sovqae_config
from talking_heads.io import dataset as dataset_lib
from talking_heads.losses import gan as gan_losses
from talking_heads.metrics import lpips as lpips_lib
from talking_heads.pipelines import testing
from talking_heads.io.dataset import parse_identities
from talking_heads.systems.ladtalk.sovqae import SOVQAEStage
from talking_heads.training import loop, restore

# Tests that train or compile the stage's networks are `slow` (minutes on 2 cores; main_test trains
# the tiny stage in the default suite); its guards and error paths run by default.


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
  root = tmp_path_factory.mktemp("sovqae_ds")
  # Identities alternate id0, id1: id0 owns clip000 (train) and clip002 (test).
  testing.write_random_dataset(root, [24, 24, 16, 16], image_size=32,
                               splits=["train", "train", "test", "test"])
  return str(root)


def tiny_config(root="", **kw):
  c = sovqae_config.get_config("tiny")
  c.data.root = root
  c.progress_bar = False
  for k, v in kw.items():
    c[k] = v
  return c


def smooth_images(n, size=32, seed=0):
  """uint8 [n, size, size, 3] images of a few soft colour blobs (reconstructible, unlike noise)."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[:size, :size] / size
  out = np.zeros((n, size, size, 3))
  for i in range(n):
    out[i] = rng.uniform(0.2, 0.8, 3)
    for _ in range(3):
      cy, cx, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.1, 0.3)
      blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))[..., None]
      out[i] += (rng.uniform(0, 1, 3) - out[i]) * blob
  return np.clip(out * 255, 0, 255).astype(np.uint8)


def test_parse_identities():
  assert parse_identities("id01, id02,") == ("id01", "id02")
  assert parse_identities(("a",)) == ("a",) and parse_identities("") == ()


@pytest.mark.slow
def test_overfits_one_batch_with_the_gan_on():
  config = tiny_config()
  stage = SOVQAEStage(config)
  images = jnp.asarray(smooth_images(8))
  batch = {"image": images, "degraded": images}
  state = stage.init_state(jax.random.PRNGKey(0))
  step = jax.jit(stage.train_step)
  history = []
  for i in range(60):
    state, metrics = step(state, batch, jax.random.PRNGKey(i))
    history.append({k: float(v) for k, v in metrics.items()})
  first, last = history[0], history[-1]
  assert first["disc_factor"] == 0.0 and last["disc_factor"] == 1.0   # disc_start = 2
  assert last["d_weight"] > 0 and np.isfinite(last["d_loss"])
  assert last["reconstruction"] < 0.25 * first["reconstruction"], (first, last)
  assert last["psnr"] > first["psnr"] + 6
  assert int(state.step) == int(state.generator.step) == 60
  assert int(state.discriminators["patchgan"].step) == 60


@pytest.mark.slow
def test_gan_step_matches_gradients_through_the_whole_model():
  config = tiny_config()
  config.loss.disc_start = 0
  stage = SOVQAEStage(config)
  state = jax.jit(stage.init_state)(jax.random.PRNGKey(1))
  params, d_state = state.generator.params, state.discriminators["patchgan"]
  images = jnp.asarray(smooth_images(4, seed=1))
  batch = {"image": images, "degraded": images}
  target = jnp.asarray(images, jnp.float32) / 127.5 - 1.0
  apply = lambda p: stage.model.apply({"params": p}, target)[0]
  g_loss = lambda p: gan_losses.generator_loss(
      stage._logits(d_state.params, d_state.model_state, apply(p)).logits)
  nll = lambda p: stage._nll(apply(p), target)[0]
  rest = lambda p: stage._generate(p, None, batch, None).loss
  kernel = lambda grads: grads["decoder"]["conv_out"]["kernel"]

  @jax.jit
  def expected(p):
    weight = gan_losses.adaptive_weight(kernel(jax.grad(nll)(p)), kernel(jax.grad(g_loss)(p)),
                                        config.loss.disc_weight)
    grads = jax.grad(lambda q: rest(q) + weight * g_loss(q))(p)
    return weight, g_loss(p), optax.tree.norm(grads)

  weight, g, grad_norm = expected(params)
  _, metrics = jax.jit(stage.train_step)(state, batch, jax.random.PRNGKey(0))
  np.testing.assert_allclose(float(metrics["d_weight"]), float(weight), rtol=1e-4)
  np.testing.assert_allclose(float(metrics["g_loss"]), float(g), rtol=1e-5)
  np.testing.assert_allclose(float(metrics["loss"]), float(rest(params) + weight * g), rtol=1e-5)
  # The adversarial step's gradient (cotangent at x_hat) is the whole model's.
  np.testing.assert_allclose(float(metrics["grad_norm"]), float(grad_norm), rtol=1e-4)


def test_perceptual_loss_needs_the_public_weights(tmp_path):
  config = tiny_config()
  config.loss.perceptual_weight = 0.5
  assert SOVQAEStage(config).perceptual_variables is None   # no folder: off
  config.perceptual.weights_dir = str(tmp_path)
  with pytest.raises(FileNotFoundError, match="vgg16-397923af.pth"):
    SOVQAEStage(config)


@pytest.mark.slow
def test_perceptual_loss_wiring(tmp_path):
  config = tiny_config()
  config.loss.perceptual_weight = 0.5
  config.perceptual.weights_dir = str(tmp_path)
  # Stand-in LPIPS variables (real runs load the public files).
  x = jnp.asarray(smooth_images(2), jnp.float32) / 127.5 - 1.0
  y = jnp.asarray(smooth_images(2, seed=3), jnp.float32) / 127.5 - 1.0
  variables = jax.jit(lpips_lib.LPIPS(net="vgg").init)(jax.random.PRNGKey(0), x, y)
  stage = SOVQAEStage(config, perceptual_variables=variables)
  nll, parts = jax.jit(stage._nll)(x, y)
  expected = float(jnp.mean(lpips_lib.lpips_distance(variables, x, y, net="vgg")))
  np.testing.assert_allclose(float(parts["perceptual"]), expected, rtol=1e-5)
  np.testing.assert_allclose(float(nll), float(jnp.mean((x - y) ** 2)) + 0.5 * expected, rtol=1e-5)


@pytest.mark.slow
def test_eval_batches_and_metrics_skip_padding(dataset):
  stage = SOVQAEStage(tiny_config(dataset))
  # The eval set is id0's test clip only: 16 frames at stride 3 -> 6 frames and 2 padding rows.
  batches = list(stage.eval_batches(8, 0, 1))
  assert len(batches) == 1 and batches[0]["valid"].tolist() == [True] * 6 + [False] * 2
  frames = dataset_lib.Dataset(dataset).clip("clip002").frames[::3]
  np.testing.assert_array_equal(batches[0]["image"][:6], frames)
  state = jax.jit(stage.init_state)(jax.random.PRNGKey(0))
  metrics = jax.jit(stage.eval_step)(state, batches[0], None)
  recon, indices = jax.jit(stage.reconstruct)(state.eval_params, frames)
  mse = np.mean((np.asarray(recon, np.float64) - frames / 255.0) ** 2, axis=(1, 2, 3))
  np.testing.assert_allclose(float(metrics["psnr"]), np.mean(10 * np.log10(1 / mse)), rtol=1e-4)
  np.testing.assert_allclose(float(metrics["l2"]), np.mean(4 * mse), rtol=1e-4)
  assert float(metrics["eval_weight"]) == 6.0
  used = len(np.unique(np.asarray(indices)))
  assert float(metrics["usage"]) == pytest.approx(used / 32) and float(metrics["dead_codes"]) == 32 - used


@pytest.mark.slow
def test_trains_evaluates_resumes_restores_and_reconstructs(dataset, tmp_path):
  config = tiny_config(dataset, total_steps=4, checkpoint_every=2, eval_every=4, image_every=0, log_every=2)
  workdir = str(tmp_path / "run")
  stage = SOVQAEStage(config)
  result = loop.train_and_evaluate(config, workdir, stage=stage)
  assert result.step == 4 and all(np.isfinite(h["loss"]) for h in result.history)
  assert [h["disc_factor"] for h in result.history] == [0.0, 0.0, 1.0, 1.0]
  ev = result.eval_history[-1]
  assert {"psnr", "l2", "usage", "perplexity", "dead_codes", "d_C"} <= set(ev) and "eval_weight" not in ev
  assert 0 < ev["usage"] <= 1 and 1 <= ev["perplexity"] <= 32 and np.isfinite(ev["psnr"])

  config.total_steps = 6
  resumed = loop.train_and_evaluate(config, workdir, stage=stage)
  assert resumed.step == 6 and len(resumed.history) == 2

  restored_stage, state, step = restore.restore_stage(workdir)
  assert step == 6 and int(state.step) == 6
  frames = dataset_lib.Dataset(dataset).clip("clip002").frames[:8]
  recon, indices = jax.jit(restored_stage.reconstruct)(state.eval_params, frames)
  assert recon.shape == (8, 32, 32, 3) and indices.shape == (8, 8, 8)
  assert float(recon.min()) >= 0.0 and float(recon.max()) <= 1.0
  fn, args = restored_stage.inference(state)
  out, _ = fn(*args)
  assert out.shape == (config.batch_size, 32, 32, 3)
  grid = jax.jit(restored_stage.images)(state, {"image": frames, "degraded": frames}, None)
  np.testing.assert_allclose(np.asarray(grid["reconstruction"][:, :, :32]), frames / 255.0)
  np.testing.assert_allclose(np.asarray(grid["reconstruction"][:, :, 32:]), np.asarray(recon), atol=1e-5)


def test_needs_an_identity(dataset):
  stage = SOVQAEStage(tiny_config(dataset))
  stage.config.data.identities = ""
  with pytest.raises(ValueError, match="per identity"):
    stage.train_iterator(8, 0, 1)
  stage.config.data.identities = "id7"
  with pytest.raises(ValueError, match=r"its identities: \['id0', 'id1'\]"):
    stage.train_iterator(8, 0, 1)


@pytest.mark.slow
def test_degraded_inputs(dataset):
  config = tiny_config(dataset)
  config.data.degrade = True
  stage = SOVQAEStage(config)
  it = stage.train_iterator(8, 0, 1)
  batch = next(it)
  it.close()
  assert any(not np.array_equal(d, i) for d, i in zip(batch["degraded"], batch["image"]))
  state = jax.jit(stage.init_state)(jax.random.PRNGKey(0))
  grid = jax.jit(stage.images)(state, {k: batch[k] for k in ("image", "degraded")}, None)["reconstruction"]
  assert grid.shape == (8, 32, 96, 3)   # degraded input | reconstruction | clean target
  np.testing.assert_allclose(np.asarray(grid[:, :, :32]), batch["degraded"] / 255.0)
  np.testing.assert_allclose(np.asarray(grid[:, :, 64:]), batch["image"] / 255.0)
