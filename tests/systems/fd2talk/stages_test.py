"""FD2Talk's stage 1 on the tiny synthetic corpus (speech-driven visemes, so audio and mouth
really agree): the lip expert's loss falls and its in-sync probability exceeds the off-sync one
on held-out clips; the Exp Transformer trains against the frozen expert and resumes exactly as an
uninterrupted run; L_sync's gradient reaches the DiT and never the expert; the pose and joint
DiTs train a step; a missing expert is an error naming the field."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from data import synthetic
from experiments.configs.fd2talk import lip_expert as lip_expert_config
from experiments.configs.fd2talk import motion as motion_config
from talking_heads.io import dataset
from talking_heads.pipelines import base
from talking_heads.systems.fd2talk import features, lip_expert, motion
from talking_heads.training import checkpoint, loop


class _Interrupt(Exception):
  pass


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  """2 training identities (4 train clips, 2 test clips, 2-4 s each) + held-out ones."""
  root = tmp_path_factory.mktemp("fd2talk_corpus")
  synthetic.build_corpus(root, "tiny", workers=1, verbose=False, preview=False)
  return str(root)


def _tiny(module, root, overrides="", **fields):
  c = module.get_config("tiny" + overrides)
  c.data.root, c.progress_bar = root, False
  c.mesh.num_devices = 1   # 8 fake devices on 2 cores only slow the run down
  c.update(fields)
  return c


@pytest.fixture(scope="module")
def expert_run(corpus, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("fd2talk_lip_expert"))
  config = _tiny(lip_expert_config, corpus, total_steps=150, batch_size=32, log_every=1,
                 checkpoint_every=1000, eval_every=150, image_every=150)
  return workdir, loop.train_and_evaluate(config, workdir)


def test_pairs_are_in_sync_or_at_least_min_offset_apart():
  mouth, audio, y = lip_expert.draw_pairs(jax.random.key(0), 4000, 6, 2, 0.5)
  mouth, audio, y = np.asarray(mouth), np.asarray(audio), np.asarray(y).astype(bool)
  assert 0.45 < y.mean() < 0.55
  np.testing.assert_array_equal(mouth[y], audio[y])
  assert np.abs(mouth[~y] - audio[~y]).min() == 2 and np.abs(mouth[~y] - audio[~y]).max() == 5
  assert mouth.min() == 0 and mouth.max() == 5 and audio.min() == 0 and audio.max() == 5


def test_lip_expert_learns_sync_on_held_out_clips(expert_run):
  workdir, result = expert_run
  assert os.listdir(os.path.join(workdir, "images"))
  losses = np.array([h["loss"] for h in result.history])
  assert losses[-30:].mean() < losses[:30].mean() - 0.04, losses
  evals = result.eval_history[-1]    # the test split: clips the expert never saw
  assert evals["p_in_sync"] > evals["p_off_sync"] + 0.05, evals
  assert evals["offset_accuracy"] > 1.5 / 6, evals   # chance: 1 of the S = 6 audio windows


def test_expression_dit_trains_against_the_frozen_expert_and_resumes(corpus, expert_run,
                                                                    tmp_path):
  n, k = 12, 5
  config = _tiny(motion_config, corpus, total_steps=n, log_every=1, checkpoint_every=100,
                 eval_every=n, image_every=n)
  config.lip_expert.workdir = expert_run[0]
  full = loop.train_and_evaluate(config, str(tmp_path / "full"))

  def hook(step, state, metrics):
    if step == k:
      raise _Interrupt()

  workdir = str(tmp_path / "resumed")
  with pytest.raises(_Interrupt):
    loop.train_and_evaluate(config, workdir, hooks=[hook])
  assert checkpoint.Checkpointer(workdir).latest_step() == k
  resumed = loop.train_and_evaluate(config, workdir)
  assert resumed.step == n and len(resumed.history) == n - k
  for key in ("loss", "x0_loss", "sync_loss"):
    np.testing.assert_allclose([h[key] for h in resumed.history],
                               [h[key] for h in full.history[k:]], rtol=1e-5)
  for a, b in zip(jax.tree_util.tree_leaves(resumed.state), jax.tree_util.tree_leaves(full.state)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
  losses = [h["x0_loss"] for h in full.history]
  assert np.mean(losses[-3:]) < 0.7 * losses[0], losses
  for h in full.history:
    assert h["loss"] == pytest.approx(h["x0_loss"] + 0.01 * h["sync_loss"], rel=1e-5)
  # The normalisation is the train split's, carried in the state.
  _, clips = base.open_split(corpus, "train")
  expression = np.concatenate([c.expression for c in clips])
  np.testing.assert_allclose(full.state.model_state["motion_mean"], expression.mean(0),
                             rtol=1e-4, atol=1e-6)
  evals = full.eval_history[-1]
  assert evals["x0_mse"] > 0 and evals["sampled_mse"] > 0
  assert -1 <= evals["mouth_opening_corr"] <= 1
  assert os.listdir(os.path.join(tmp_path, "full", "images"))


def _batch(stage, size=4):
  it = stage.train_iterator(size, 0, 1)
  batch = next(it)
  it.close()
  return {k: jnp.asarray(v) for k, v in batch.items()}


def test_lsync_gradient_reaches_the_dit_and_not_the_expert(corpus, expert_run):
  with_sync = motion.MotionStage(_tiny(
      motion_config, corpus, f",loss.sync_weight=0.5,lip_expert.workdir={expert_run[0]}"))
  without = motion.MotionStage(_tiny(motion_config, corpus, ",loss.sync_weight=0"))
  batch = _batch(with_sync)
  state = jax.jit(with_sync.init_state)(jax.random.key(0))
  rng = jax.random.key(1)

  def loss_and_grads(stage):
    (loss, (metrics, _)), grads = jax.jit(jax.value_and_grad(stage.loss_fn, has_aux=True))(
        state.params, state.model_state, batch, rng)
    return loss, metrics, grads

  loss_1, metrics_1, grads_1 = loss_and_grads(with_sync)
  loss_0, metrics_0, grads_0 = loss_and_grads(without)
  assert "sync_loss" not in metrics_0 and metrics_1["sync_loss"] > 0
  assert float(loss_1) == pytest.approx(float(loss_0) + 0.5 * float(metrics_1["sync_loss"]),
                                        rel=1e-5)
  # The sync term's own gradient: nonzero in the DiT's output head and its first layer.
  difference = jax.tree_util.tree_map(lambda a, b: a - b, grads_1, grads_0)
  for name in ("motion_out", "motion_in", "layer_0"):
    norm = np.sqrt(sum(float(jnp.sum(x ** 2))
                       for x in jax.tree_util.tree_leaves(difference[name])))
    assert norm > 1e-6, name
  # Gradients exist for the DiT's parameters only; a step leaves the expert untouched.
  assert jax.tree_util.tree_structure(grads_1) == jax.tree_util.tree_structure(state.params)
  expert = with_sync.lip_expert()
  before = jax.tree_util.tree_map(np.array, expert.variables)
  new_state, _ = jax.jit(with_sync.train_step)(state, batch, rng)
  assert not np.allclose(new_state.params["motion_out"]["kernel"],
                         state.params["motion_out"]["kernel"])
  for a, b in zip(jax.tree_util.tree_leaves(before), jax.tree_util.tree_leaves(expert.variables)):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("motion_kind", ["pose", "joint"])
def test_pose_and_joint_dits_train_a_step(corpus, expert_run, motion_kind):
  config = _tiny(motion_config, corpus, f",model.motion={motion_kind},model.alignment_mask=false")
  config.lip_expert.workdir = expert_run[0] if motion_kind == "joint" else ""
  stage = motion.MotionStage(config)
  assert stage.model.window is None        # Table 3's "w/o alignment"
  batch = _batch(stage)
  state = jax.jit(stage.init_state)(jax.random.key(0))
  new_state, metrics = jax.jit(stage.train_step)(state, batch, jax.random.key(1))
  assert np.isfinite(float(metrics["loss"])) and int(new_state.step) == 1
  assert state.model_state["motion_mean"].shape == (6 if motion_kind == "pose" else 15,)
  if motion_kind == "pose":   # no mouth: L_sync is ignored, no expert needed
    assert "sync_loss" not in metrics
  else:
    assert metrics["sync_loss"] > 0
    assert float(metrics["x0_loss"]) == pytest.approx(
        (9 * float(metrics["x0_loss_expression"]) + 6 * float(metrics["x0_loss_pose"])) / 15,
        rel=1e-5)


def test_audio_features_are_each_frames_mel_or_a_named_cache(corpus):
  stage = motion.MotionStage(_tiny(motion_config, corpus, ",loss.sync_weight=0"))
  batch = _batch(stage, 2)
  audio = np.asarray(stage.audio.per_frame(batch))
  assert audio.shape == (2, 8, 320)
  clips = base.open_split(corpus, "train")[1]
  for b in range(2):
    clip, s = clips[int(batch["clip"][b])], int(batch["start"][b])
    mel = base.ClipReader(corpus, [clip.id]).mel(0, features.MEL)                # [T, 80]
    np.testing.assert_allclose(audio[b, 3], mel[4 * (s + 3):4 * (s + 4)].reshape(-1), rtol=1e-6)
    np.testing.assert_array_equal(batch["expression"][b], clip.expression[s:s + 8])
  wav2vec2 = motion.MotionStage(_tiny(
      motion_config, corpus, ",loss.sync_weight=0,audio.frontend=wav2vec2,audio.weights=w2v,"
      "audio.dim=1024"))
  with pytest.raises(dataset.DatasetError, match="precompute_audio_features"):
    wav2vec2.train_iterator(2, 0, 1)
  with pytest.raises(ValueError, match="needs audio.weights"):
    motion.MotionStage(_tiny(motion_config, corpus, ",audio.frontend=wav2vec2"))


def test_lsync_without_a_trained_expert_is_an_error(corpus, tmp_path):
  stage = motion.MotionStage(_tiny(motion_config, corpus))
  with pytest.raises(ValueError, match="lip_expert.workdir is empty.*sync_weight=0"):
    stage.train_iterator(2, 0, 1)
  config = _tiny(motion_config, corpus)
  config.lip_expert.workdir = str(tmp_path / "nowhere")
  with pytest.raises(FileNotFoundError, match="is not a trained 'fd2talk_lip_expert' workdir"):
    motion.MotionStage(config).train_iterator(2, 0, 1)
  with pytest.raises(ValueError, match="model.motion must be one of"):
    motion.MotionStage(_tiny(motion_config, corpus, ",model.motion=head"))
