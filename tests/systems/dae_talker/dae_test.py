"""DAE-Talker's diffusion-autoencoder stage: trains, evaluates, resumes, restores; shared x_T
makes frames with equal latents identical; DDIM inversion reconstructs better than a random x_T."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs.dae_talker import dae as dae_config
from talking_heads.io import dataset as dataset_lib
from talking_heads.metrics import image as image_metrics
from talking_heads.pipelines import testing
from talking_heads.systems.dae_talker.dae import DAEStage
from talking_heads.training import loop, restore

# Tests that train or compile the stage's networks are `slow` (minutes on 2 cores; main_test trains
# the tiny stage in the default suite); its guards and error paths run by default.


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
  root = tmp_path_factory.mktemp("dae_ds")
  # Identities alternate id0, id1: id0 owns clip000 (train) and clip002 (test).
  testing.write_random_dataset(root, [24, 24, 16, 16], image_size=32,
                               splits=["train", "train", "test", "test"])
  return str(root)


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
  """A tiny run: 4 steps with an evaluation, then resumed to 6."""
  config = dae_config.get_config("tiny")
  config.data.root = dataset
  config.update(total_steps=4, checkpoint_every=2, eval_every=4, image_every=4, log_every=2,
                progress_bar=False)
  workdir = str(tmp_path_factory.mktemp("dae_run"))
  first = loop.train_and_evaluate(config, workdir)
  config.total_steps = 6
  resumed = loop.train_and_evaluate(config, workdir)
  return workdir, first, resumed


@pytest.mark.slow
def test_trains_evaluates_and_resumes(trained):
  _, first, resumed = trained
  assert first.step == 4 and all(np.isfinite(h["loss"]) for h in first.history)
  ev = first.eval_history[-1]
  assert {"loss", "psnr", "ssim"} <= set(ev) and "eval_weight" not in ev
  assert np.isfinite(ev["psnr"]) and -1 <= ev["ssim"] <= 1
  assert resumed.step == 6 and len(resumed.history) == 2


@pytest.mark.slow
def test_restored_stage_decodes_with_shared_or_independent_noise(trained, dataset):
  workdir, _, _ = trained
  stage, state, step = restore.restore_stage(workdir)
  assert step == 6 and isinstance(stage, DAEStage)
  variables = DAEStage.variables(state)
  assert set(variables) == {"params", "latent_stats"}     # the tiny config centres the latent
  frames = dataset_lib.Dataset(dataset).clip("clip002").frames[:4]
  frames = jnp.asarray(np.stack([np.asarray(jax.image.resize(f, (16, 16, 3), "linear"))
                                 for f in frames.astype(np.float32)]).round().astype(np.uint8))
  z = jax.jit(stage.encode)(variables, frames)
  assert z.shape == (4, 16)
  same_z = jnp.broadcast_to(z[:1], z.shape)
  rng = jax.random.PRNGKey(3)
  shared = stage.decode(variables, same_z, rng, shared_noise=True)
  independent = stage.decode(variables, same_z, rng, shared_noise=False)
  assert shared.shape == (4, 16, 16, 3) and 0 <= float(shared.min()) <= float(shared.max()) <= 1
  # One x_T and equal latents: equal frames; one x_T per frame: different frames.
  np.testing.assert_allclose(np.asarray(shared), np.asarray(shared[:1]).repeat(4, 0), atol=1e-6)
  assert float(jnp.abs(independent - independent[:1]).max()) > 1e-3
  fn, args = stage.inference(state)
  assert fn(*args).shape == (stage.config.batch_size, 16, 16, 3)


@pytest.mark.slow
def test_inverted_noise_reconstructs_better_than_random_noise(trained, dataset):
  workdir, _, _ = trained
  stage, state, _ = restore.restore_stage(workdir)
  frames = dataset_lib.Dataset(dataset).clip("clip002").frames[:4]
  frames = np.stack([np.asarray(jax.image.resize(f, (16, 16, 3), "linear"))
                     for f in frames.astype(np.float32)]).round().astype(np.uint8)
  target = frames / 255.0
  reconstruct = jax.jit(stage.reconstruct, static_argnames=("steps", "inverted"))
  rng = jax.random.PRNGKey(0)
  from_inverted = reconstruct(DAEStage.variables(state), frames, rng, steps=4, inverted=True)
  from_random = reconstruct(DAEStage.variables(state), frames, rng, steps=4, inverted=False)
  psnr = lambda x: float(jnp.mean(image_metrics.psnr(x, target, data_range=1.0)))
  assert psnr(from_inverted) > psnr(from_random) + 3.0


def test_rejects_unknown_loss_and_prediction():
  config = dae_config.get_config("tiny")
  config.diffusion.loss = "huber"
  with pytest.raises(ValueError, match="diffusion.loss"):
    DAEStage(config)
  config = dae_config.get_config("tiny")
  config.diffusion.prediction = "score"
  with pytest.raises(ValueError, match="diffusion.prediction"):
    DAEStage(config)


def test_paper_config_samples_diffae_ddim100_timesteps():
  """diffae's DDIM sampler uses "ddim100": 990, 980, ..., 0 (not linspace's 999, 989, ...)."""
  stage = DAEStage(dae_config.get_config("paper"))
  np.testing.assert_array_equal(stage.timesteps(), np.arange(990, -1, -10))
  np.testing.assert_array_equal(stage.timesteps(20), np.arange(950, -1, -50))
