"""FD2Talk stage 2a: the tiny autoencoder config trains on pairs of one clip (its loss falls),
resumes exactly as an uninterrupted run, evaluates and logs images; the perceptual term never
runs on random weights; the frozen loader refuses what is not a trained autoencoder."""

import os

import jax
import numpy as np
import pytest

from experiments.configs.fd2talk import autoencoder as autoencoder_config
from talking_heads.io import dataset as dataset_lib
from talking_heads.systems.fd2talk import autoencoder
from talking_heads.training import checkpoint, loop


class _Interrupt(Exception):
  pass


def tiny_config(root, **fields):
  c = autoencoder_config.get_config("tiny")
  c.data.root, c.progress_bar = root, False
  c.mesh.num_devices = 1   # 8 fake devices on 2 cores only slow the run down
  c.update(fields)
  return c


def full_and_resumed(config, tmp_path, interrupt_at):
  """(uninterrupted result, resumed result): the second run stops after `interrupt_at` steps
  and is relaunched to `config.total_steps`."""
  full = loop.train_and_evaluate(config, str(tmp_path / "full"))

  def hook(step, state, metrics):
    if step == interrupt_at:
      raise _Interrupt()

  workdir = str(tmp_path / "resumed")
  with pytest.raises(_Interrupt):
    loop.train_and_evaluate(config, workdir, hooks=[hook])
  assert checkpoint.Checkpointer(workdir).latest_step() == interrupt_at
  return full, loop.train_and_evaluate(config, workdir)


def check_resume_and_learning(full, resumed, n, k, key="loss", fall=0.2):
  """Resumed steps k+1..n equal the uninterrupted run's; the mean of `key` over the last 3 steps
  is at least `fall` below its first value."""
  assert resumed.step == n and len(resumed.history) == n - k
  np.testing.assert_allclose([h[key] for h in resumed.history],
                             [h[key] for h in full.history[k:]], rtol=1e-5)
  for a, b in zip(jax.tree_util.tree_leaves(resumed.state), jax.tree_util.tree_leaves(full.state)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
  losses = [h[key] for h in full.history]
  assert np.mean(losses[-3:]) < (1 - fall) * losses[0], losses


def test_autoencoder_trains_resumes_and_evaluates(autoencoder_runs):
  workdir, full, resumed = autoencoder_runs
  check_resume_and_learning(full, resumed, 12, 5, key="l2", fall=0.3)
  for h in full.history:   # no perceptual term at tiny: the loss is L2 + the VQ terms
    assert "perceptual" not in h
    assert h["loss"] == pytest.approx(h["l2"] + h["vq_loss"], rel=1e-5)
  evals = full.eval_history[-1]
  assert np.isfinite(evals["psnr"]) and 0 < evals["ssim"] <= 1
  assert os.listdir(os.path.join(workdir, "images"))
  # Usage starts at 0: the first update seeds from the batch's latents every code the batch
  # did not give 100 vectors (threshold 1 / (1 - decay 0.99)): most of them, so the codebook
  # is not the collapsed uniform(-1/N, 1/N) one taming starts from.
  num_codes = full.state.params["quantizer"]["codebook"].shape[0]
  assert full.history[0]["restarted_codes"] >= num_codes // 2
  assert all(h["restarted_codes"] == 0 for h in full.history[1:10])   # restart_every = 10
  assert full.state.model_state["code_usage"].shape == (num_codes,)
  assert np.abs(np.asarray(full.state.params["quantizer"]["codebook"])).max() > 1.0 / num_codes


def test_pairs_come_from_one_clip(dataset):
  stage = autoencoder.AutoencoderStage(tiny_config(dataset))
  it = stage.train_iterator(4, 0, 1)
  batch = next(it)
  it.close()
  clips = dataset_lib.Dataset(dataset).clips("train")
  for b in range(4):
    frames = clips[int(batch["clip"][b])].frames
    np.testing.assert_array_equal(batch["image"][b], frames[int(batch["start"][b])])
    assert any((batch["reference"][b] == f).all() for f in frames)


def test_perceptual_term_needs_the_public_weights(dataset):
  config = tiny_config(dataset)
  config.loss.perceptual_weight = 1.0
  with pytest.raises(ValueError, match=r"lpips perceptual loss needs the public weights .*"
                                       r"weights_dir is empty"):
    autoencoder.AutoencoderStage(config).train_iterator(4, 0, 1)
  config.perceptual.kind = "vgg19"
  with pytest.raises(ValueError, match="perceptual.kind must be one of"):
    autoencoder.AutoencoderStage(config)


def test_frozen_autoencoder(autoencoder_runs, tmp_path):
  workdir, full, _ = autoencoder_runs
  frozen = autoencoder.load_frozen_autoencoder(workdir)
  assert frozen.image_size == 32 and frozen.latent_shape == (8, 8, 3)
  np.testing.assert_array_equal(
      jax.tree_util.tree_leaves(frozen.params)[0],
      np.asarray(jax.tree_util.tree_leaves(full.state.eval_params)[0]))
  with pytest.raises(ValueError, match="autoencoder.workdir is empty"):
    autoencoder.load_frozen_autoencoder("")
  with pytest.raises(FileNotFoundError, match="is not a trained 'fd2talk_autoencoder' workdir"):
    autoencoder.load_frozen_autoencoder(str(tmp_path))
