"""PIR's stages: each tiny config trains (its loss falls), resumes exactly as an uninterrupted run,
evaluates and logs images; the renderer trains against the frozen, trained component B with
K-jitter. Component A's run is in the default suite; B's and C's compile EG3D's volume renderer
(minutes of CPU on 2 shared cores) and are `slow`."""

import os

import jax
import numpy as np
import pytest

from experiments.configs.pir import audio2exp as audio2exp_config
from experiments.configs.pir import renderer as renderer_config
from experiments.configs.pir import triplane as triplane_config
from talking_heads.systems.pir import audio2exp, renderer, triplane
from talking_heads.pipelines import base
from talking_heads.training import checkpoint, loop


class _Interrupt(Exception):
  pass


def _full_and_resumed(config, tmp_path, interrupt_at):
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


def _check_resume_and_learning(full, resumed, n, k, key="loss", fall=0.2):
  """Resumed steps k+1..n equal the uninterrupted run's; the mean of `key` over the last 3 steps
  is at least `fall` below its first value."""
  assert resumed.step == n and len(resumed.history) == n - k
  np.testing.assert_allclose([h[key] for h in resumed.history],
                             [h[key] for h in full.history[k:]], rtol=1e-5)
  for a, b in zip(jax.tree_util.tree_leaves(resumed.state),     # every player's, optimisers'
                  jax.tree_util.tree_leaves(full.state)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
  losses = [h[key] for h in full.history]
  assert np.mean(losses[-3:]) < (1 - fall) * losses[0], losses


def test_audio2exp_trains_resumes_and_evaluates(dataset, tiny, tmp_path):
  n, k = 12, 5
  config = tiny(audio2exp_config, dataset, total_steps=n, log_every=1, checkpoint_every=100,
                 eval_every=n, image_every=n)
  full, resumed = _full_and_resumed(config, tmp_path, k)
  _check_resume_and_learning(full, resumed, n, k)
  evals = full.eval_history[-1]
  assert evals["teacher_forced_mse"] > 0 and evals["autoregressive_mse"] > 0
  assert os.listdir(os.path.join(tmp_path, "full", "images"))


@pytest.fixture(scope="module")
def triplane_runs(dataset, tiny, tmp_path_factory):
  tmp_path = tmp_path_factory.mktemp("pir_triplane")
  config = tiny(triplane_config, dataset, total_steps=12, log_every=1, checkpoint_every=100,
                 eval_every=12, image_every=12)
  return tmp_path, _full_and_resumed(config, tmp_path, 5)


@pytest.mark.slow
def test_triplane_trains_resumes_and_evaluates(triplane_runs):
  tmp_path, (full, resumed) = triplane_runs
  _check_resume_and_learning(full, resumed, 12, 5)
  evals = full.eval_history[-1]
  assert np.isfinite(evals["psnr_head"]) and 0 <= evals["opacity"] <= 1
  assert os.listdir(os.path.join(tmp_path, "full", "images"))


@pytest.mark.slow
def test_renderer_trains_against_the_frozen_triplane_and_resumes(dataset, tiny, triplane_runs,
                                                                 tmp_path):
  n, k = 8, 3
  config = tiny(renderer_config, dataset, total_steps=n, log_every=1, checkpoint_every=100,
                 eval_every=n, image_every=n)
  config.triplane.workdir = str(triplane_runs[0] / "full")
  full, resumed = _full_and_resumed(config, tmp_path, k)
  # 8 adversarial steps at the paper's learning rate on noise frames: L2 falls by a few percent.
  _check_resume_and_learning(full, resumed, n, k, key="l2", fall=0.02)
  for h in full.history:
    assert h["adv_loss"] > 0 and h["disc_loss"] > 0 and h["feature_matching"] > 0
    # Unit weights: the generator's loss is L2 + FM (times the maps per scale) + GAN.
    assert h["loss"] == pytest.approx(h["l2"] + 3 * h["feature_matching"] + h["adv_loss"],
                                      rel=1e-4)
  evals = full.eval_history[-1]
  assert np.isfinite(evals["psnr"]) and np.isfinite(evals["psnr_inpainted"])
  assert os.listdir(os.path.join(tmp_path, "full", "images"))


def test_renderer_needs_a_trained_triplane(dataset, tiny, tmp_path):
  config = tiny(renderer_config, dataset)
  with pytest.raises(ValueError, match="triplane.workdir is empty"):
    renderer.RendererStage(config).frozen_triplane
  config.triplane.workdir = str(tmp_path)
  with pytest.raises(FileNotFoundError, match="is not a trained 'pir_triplane' workdir"):
    renderer.RendererStage(config).frozen_triplane
  config.loss.gan = "hinge"
  with pytest.raises(ValueError, match="loss.gan must be one of"):
    renderer.RendererStage(config)


def test_triplane_region_frame_makes_b_reconstruct_the_whole_frame(dataset, tiny):
  """The "without rendering" ablation's B: its mask is the whole frame, the paper's the head."""
  batch = {"head_mask": np.zeros((2, 32, 32, 1), np.float32)}
  config = tiny(triplane_config, dataset)
  assert config.loss.region == "head"
  np.testing.assert_array_equal(triplane.TriplaneStage(config).region_mask(batch), 0.0)
  config.loss.region = "frame"
  np.testing.assert_array_equal(triplane.TriplaneStage(config).region_mask(batch), 1.0)
  config.loss.region = "torso"
  with pytest.raises(ValueError, match="loss.region must be one of"):
    triplane.TriplaneStage(config)


def test_audio2exp_batches_hold_each_frames_mel_and_expression(dataset, tiny):
  stage = audio2exp.Audio2ExpressionStage(tiny(audio2exp_config, dataset))
  it = stage.train_iterator(4, 0, 1)
  batch = next(it)
  it.close()
  features = np.asarray(stage.features(batch))
  assert features.shape == (4, 8, 320) and batch["expression"].shape == (4, 8, 9)
  chosen = base.open_split(dataset, "train", ["id0"])[1]
  for b in range(4):
    clip, s = chosen[int(batch["clip"][b])], int(batch["start"][b])
    assert clip.identity == "id0"
    mel = base.ClipReader(dataset, [clip.id]).mel(0, audio2exp.MEL)             # [F, 80]
    np.testing.assert_allclose(features[b, 3], mel[4 * (s + 3):4 * (s + 4)].reshape(-1),
                               rtol=1e-6)
    np.testing.assert_array_equal(batch["expression"][b], clip.expression[s:s + 8])
    np.testing.assert_array_equal(batch["alpha"][b], clip.alpha)
