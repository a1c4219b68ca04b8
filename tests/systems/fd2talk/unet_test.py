"""FD2Talk stage 2b: the tiny UNet config trains in the frozen autoencoder's latent space (its loss
falls), resumes exactly as an uninterrupted run, and its evaluation decodes DDIM-sampled frames;
the stage feeds phi1 the frame's standardised motion and phi2 the reference frame's latent (in
training and in sampling), and the generated frame follows the reference; without a trained
autoencoder it stops before any step. (The module-level perturbations, phi1 reading only the
motion and phi2 only the reference, are tests/models/fd2talk_unet_test.py.)"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs.fd2talk import unet as unet_config
from talking_heads.io import dataset as dataset_lib
from talking_heads.models import fd2talk_unet
from talking_heads.systems.fd2talk import unet

from tests.systems.fd2talk.autoencoder_test import check_resume_and_learning


def _tiny(module, root, **fields):
  c = module.get_config("tiny")
  c.data.root, c.progress_bar = root, False
  c.mesh.num_devices = 1   # 8 fake devices on 2 cores only slow the run down
  c.update(fields)
  return c


@pytest.fixture(scope="module")
def autoencoder_workdir(autoencoder_runs):
  return autoencoder_runs[0]


def _unet_config(dataset, autoencoder_workdir, **fields):
  c = _tiny(unet_config, dataset, **fields)
  c.autoencoder.workdir = autoencoder_workdir
  return c


@pytest.fixture(scope="module")
def trained(unet_runs):
  """(config, uninterrupted result, resumed result) of the session's tiny UNet run."""
  return unet_runs[:3]


def test_unet_trains_resumes_and_evaluates(trained):
  """Resuming repeats the uninterrupted run; the loss on training frames at fixed (t, eps) draws
  falls from the initial state's (the step losses are noisy in t); evaluation decodes
  DDIM-sampled held-out frames, and images are drawn."""
  config, full, resumed = trained
  check_resume_and_learning(full, resumed, 14, 6, fall=0.0)
  stage = unet.UNetStage(config)
  eval_step = jax.jit(stage.eval_step)
  seen = {**_batch(stage), "valid": jnp.ones((4,), bool)}
  initial = eval_step(stage.init_state(jax.random.PRNGKey(config.seed)), seen, jax.random.key(0))
  after = eval_step(full.state, seen, jax.random.key(0))
  assert float(after["loss"]) < 0.7 * float(initial["loss"])
  batch = next(iter(stage.eval_batches(4, 0, 1)))
  evals = jax.device_get(eval_step(full.state, batch, jax.random.key(0)))
  assert -1 <= evals["ssim"] <= 1 and np.isfinite(evals["psnr"])
  assert np.isfinite(evals["psnr_autoencoder"])
  assert evals["eval_weight"] == 2   # frames 0 and 4 of the 8-frame test clip (stride 4)
  images = jax.jit(stage.images)(full.state, batch, jax.random.key(0))
  grid = images["reference_target_generated"]
  assert grid.shape == (4, 32, 96, 3) and 0 <= grid.min() and grid.max() <= 1


def _batch(stage, n=4):
  it = stage.train_iterator(n, 0, 1)
  batch = next(it)
  it.close()
  return {k: jnp.asarray(batch[k]) for k in unet.KEYS}


def _recording_contexts(seen, fn):
  """fn() with what the UNet's motion and reference contexts read recorded into `seen` (as
  "motion", "reference") by host callbacks each time the traced fn runs, also from inside the
  sampler's scan."""

  def record(name):
    return lambda x: seen.__setitem__(name, np.asarray(x))

  def interceptor(next_fun, args, kwargs, context):
    if context.method_name == "__call__":
      if isinstance(context.module, fd2talk_unet.MotionContext):
        jax.debug.callback(record("motion"), args[0])
      elif isinstance(context.module, fd2talk_unet.ReferenceContext):
        jax.debug.callback(record("reference"), args[0])
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(interceptor):
    return fn()


def test_phi1_reads_the_motion_and_phi2_the_reference_latent(dataset, trained):
  config, full, _ = trained
  stage = unet.UNetStage(config)
  variables = stage.variables(full.state)
  batch = _batch(stage)
  # The motion statistics are the train frames' [expression, pose] mean and std.
  clips = dataset_lib.Dataset(dataset).clips("train")
  motion = np.concatenate([np.concatenate([c.expression, c.pose], 1) for c in clips])
  np.testing.assert_allclose(variables["motion_mean"], motion.mean(0), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(variables["motion_std"], motion.std(0), rtol=1e-4)
  standardised = (np.concatenate([batch["expression"], batch["pose"]], 1)
                  - motion.mean(0)) / motion.std(0)
  reference_latent = np.asarray(stage.latents(batch["reference"]))
  assert np.abs(reference_latent - np.asarray(stage.latents(batch["image"]))).max() > 1e-3

  seen = {}
  train = jax.jit(lambda: _recording_contexts(seen, lambda: stage.loss_fn(
      variables["params"], full.state.model_state, batch, jax.random.key(0))))
  generate = jax.jit(lambda reference: _recording_contexts(seen, lambda: stage.generate(
      variables, reference, batch["expression"], batch["pose"], jax.random.key(1), steps=2)))
  for name, fn in (("training", train), ("sampling", lambda: generate(batch["reference"]))):
    seen.clear()
    out = jax.block_until_ready(fn())
    np.testing.assert_allclose(seen["reference"], reference_latent, rtol=1e-5, atol=1e-5,
                               err_msg=name)
    np.testing.assert_allclose(seen["motion"], standardised, rtol=1e-4, atol=1e-4, err_msg=name)
  # The generated frame follows the reference: another clip's reference changes it, at the
  # same motion and noise.
  other = jnp.roll(batch["reference"], 1, axis=0)
  assert np.abs(np.asarray(generate(other) - out)).max() > 1e-4


def test_concatenated_ablation_reads_both_in_one_attention(dataset, autoencoder_workdir):
  config = _unet_config(dataset, autoencoder_workdir)
  config.model.conditioning = "concatenated"
  stage = unet.UNetStage(config)
  params = stage.init_state(jax.random.key(0)).params
  assert "cross_attn" in str(jax.tree_util.tree_structure(params))
  assert "phi1" not in str(jax.tree_util.tree_structure(params))
  config.model.conditioning = "sum"
  with pytest.raises(ValueError, match="model.conditioning must be one of"):
    unet.UNetStage(config)


def test_unet_needs_a_trained_autoencoder(dataset, tmp_path):
  config = _tiny(unet_config, dataset)
  with pytest.raises(ValueError, match="autoencoder.workdir is empty"):
    unet.UNetStage(config).train_iterator(4, 0, 1)
  config.autoencoder.workdir = str(tmp_path)
  with pytest.raises(FileNotFoundError, match="is not a trained 'fd2talk_autoencoder' workdir"):
    unet.UNetStage(config).train_iterator(4, 0, 1)
  config.motion.expression_dim = 64
  with pytest.raises(ValueError, match="motion.expression_dim=64 but .* has 9 expression"):
    unet.UNetStage(config)
