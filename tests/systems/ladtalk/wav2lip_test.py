"""Wav2Lip stage: trains, switches the sync weight after evaluation, resumes with it, restores and
generates; the sync loss matches an independent computation; GAN step; missing-expert errors."""

import functools
import json
import os
import re

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs.experts import syncnet as syncnet_config
from experiments.configs.ladtalk import wav2lip as wav2lip_config
from talking_heads.models import syncnet as syncnet_lib
from talking_heads.pipelines import base, testing
from talking_heads.systems.ladtalk import wav2lip
from talking_heads.systems.experts.syncnet import SyncNetStage
from talking_heads.training import checkpoint, loop, restore
from talking_heads.training.state import AdversarialTrainState
from third_party import weights

# Tests that train or compile the stage's networks are `slow` (minutes on 2 cores; main_test trains
# the tiny stage in the default suite); its guards and error paths run by default.
TRAIN_KEYS = ("frames", "masked", "reference", "mel", "indiv_mels")


class _Interrupt(Exception):
  pass


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
  root = tmp_path_factory.mktemp("w2l_ds")
  testing.write_random_dataset(root, [30, 30, 25], image_size=64, splits=["train", "train", "val"])
  base.precompute_features(root)
  return str(root)


@pytest.fixture(scope="module")
def expert_workdir(tmp_path_factory):
  """A workdir of the tiny `syncnet` stage, as its training writes it, with random weights
  (restored exactly as a trained one; the stage's 96 px expert sees resized 64 px frames)."""
  workdir = str(tmp_path_factory.mktemp("expert"))
  config = syncnet_config.get_config("tiny")
  stage = SyncNetStage(config)
  abstract = jax.eval_shape(stage.init_state, jax.random.PRNGKey(0))
  rng = np.random.default_rng(0)

  def leaf(path, x):
    name = getattr(path[-1], "key", "")
    if name == "kernel":
      return rng.normal(size=x.shape).astype(x.dtype) * np.sqrt(2.0 / np.prod(x.shape[:-1]))
    return np.full(x.shape, 1 if name in ("scale", "var") else 0, x.dtype)

  state = jax.tree_util.tree_map_with_path(leaf, abstract)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    json.dump(loop.config_to_dict(config), f)
  saver = checkpoint.Checkpointer(workdir)
  saver.save(1, state, config=loop.config_to_dict(config))
  saver.close()
  return workdir


def tiny_config(root, expert, **kw):
  c = wav2lip_config.get_config("tiny")
  c.data.root, c.sync_expert.workdir, c.progress_bar = root, expert, False
  c.mesh.num_devices = 1   # 8 fake devices on 2 cores only slow the run down
  c.update(kw)
  return c


@pytest.fixture(scope="module")
def trained(dataset, expert_workdir, tmp_path_factory):
  """Trains the tiny config with a threshold every eval passes, interrupted after step 3, then
  relaunched to step 5 with a threshold no eval passes (and no evaluation)."""
  workdir = str(tmp_path_factory.mktemp("w2l_run"))
  seen = []

  def record(step, state, metrics):
    seen.append((step, float(metrics["sync_weight"]), float(metrics["sync_loss"])))
    if step == 3:
      raise _Interrupt()

  config = tiny_config(dataset, expert_workdir, total_steps=5, eval_every=2, image_every=2,
                       checkpoint_every=100, log_every=1)
  config.loss.sync_threshold = 1e9
  with pytest.raises(_Interrupt):
    loop.train_and_evaluate(config, workdir, hooks=[record])
  interrupted_at = checkpoint.Checkpointer(workdir).latest_step()
  config.loss.sync_threshold = -1.0
  config.eval_every = config.image_every = 0
  resumed = loop.train_and_evaluate(config, workdir)
  return workdir, seen, interrupted_at, resumed


@pytest.mark.slow
def test_sync_weight_switches_after_eval_and_survives_resume(trained):
  workdir, seen, interrupted_at, resumed = trained
  # sw = 0 (no expert pass) until the eval at step 2, then the published 0.01.
  assert [s for s, _, _ in seen] == [1, 2, 3]
  assert [w for _, w, _ in seen] == pytest.approx([0.0, 0.0, 0.01])
  assert seen[0][2] == seen[1][2] == 0.0 and seen[2][2] > 0.0
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    evals = [r for r in map(json.loads, f) if "eval/sync_loss" in r]
  assert [r["step"] for r in evals] == [2]
  assert evals[0]["eval/sync_loss"] > 0 and 0 < evals[0]["eval/l1"] < 1
  assert os.listdir(os.path.join(workdir, "images"))
  # The relaunch resumes at step 3 and, unable to switch anything, trains with the restored 0.01.
  assert interrupted_at == 3
  assert resumed.step == 5 and len(resumed.history) == 2
  assert [h["sync_weight"] for h in resumed.history] == pytest.approx([0.01, 0.01])
  assert all(h["sync_loss"] > 0 and np.isfinite(h["loss"]) for h in resumed.history)
  stage, state, step = restore.restore_stage(workdir)
  assert step == 5 and float(stage.sync_weight(state)) == pytest.approx(0.01)


@pytest.mark.slow
def test_restored_stage_generates_faces(trained):
  stage, state, _ = restore.restore_stage(trained[0])
  variables = jax.device_get(stage.variables(state))
  rng = np.random.default_rng(0)
  faces = rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
  mels = rng.uniform(-4, 4, (3, 80, 16)).astype(np.float32)
  generate = jax.jit(stage.generate_faces)
  out = np.asarray(generate(variables, mels, faces))
  assert out.shape == (3, 64, 64, 3) and out.dtype == np.float32
  assert np.all((out >= 0) & (out <= 1))
  # The faces' lower halves are masked: only the reference shows them.
  other = faces.copy()
  other[:, 32:] = rng.integers(0, 256, other[:, 32:].shape, dtype=np.uint8)
  np.testing.assert_allclose(generate(variables, mels, other, faces), out, atol=1e-6)
  assert np.max(np.abs(np.asarray(generate(variables, mels[::-1], faces)) - out)) > 0
  # Channel order: a BGR generator fed RGB equals an RGB generator fed the flipped faces.
  rgb_config = stage.config.copy_and_resolve_references()
  rgb_config.data.bgr = False
  rgb = jax.jit(wav2lip.Wav2LipStage(rgb_config).generate_faces)
  np.testing.assert_allclose(np.asarray(rgb(variables, mels, faces[..., ::-1]))[..., ::-1], out,
                             atol=1e-6)


def _batch(stage, batch_size=8):
  it = stage.train_iterator(batch_size, 0, 1)
  batch = next(it)
  it.close()
  return {k: jnp.asarray(batch[k]) for k in TRAIN_KEYS}


@pytest.mark.slow
def test_l1_overfits_a_batch_and_the_sync_loss_trains_the_generator(dataset, expert_workdir):
  config = tiny_config(dataset, expert_workdir)
  config.optimizer.learning_rate = 3e-3
  stage = wav2lip.Wav2LipStage(config)
  batch = _batch(stage)
  state = jax.jit(stage.init_state)(jax.random.PRNGKey(0))
  with_weight = lambda state, w: state.replace(
      model_state={**state.model_state, "sync_weight": jnp.float32(w)})
  step = jax.jit(stage.train_step)

  def run(state, n):
    history = []
    for i in range(n):
      state, metrics = step(state, batch, jax.random.PRNGKey(i))
      history.append({k: float(v) for k, v in metrics.items()})
    return state, history

  # L1 only (sw = 0): no sync loss, and the batch is fitted.
  state, l1_run = run(state, 40)
  assert all(h["sync_loss"] == 0.0 for h in l1_run)
  assert l1_run[-1]["l1"] < 0.75 * l1_run[0]["l1"], [h["l1"] for h in l1_run]
  # Sync loss only (sw = 1): the expert's gradient reaches the generator and lowers the loss.
  _, sync_run = run(with_weight(state, 1.0), 10)
  sync = [h["sync_loss"] for h in sync_run]
  assert sync[-1] < 0.9 * sync[0], sync
  for h in l1_run[:1] + sync_run[:1]:
    assert h["loss"] == pytest.approx((1 - h["sync_weight"]) * h["l1"]
                                      + h["sync_weight"] * h["sync_loss"], rel=1e-5)


@pytest.mark.slow
def test_eval_metrics_match_an_independent_computation(trained, expert_workdir):
  stage, state, _ = restore.restore_stage(trained[0])
  batch = {k: np.asarray(v) for k, v in _batch(stage, 4).items()}
  batch["valid"] = np.array([True, True, True, False])
  metrics = jax.jit(stage.eval_step)(state, batch, jax.random.PRNGKey(0))

  variables = jax.device_get(stage.variables(state))
  generated = np.asarray(stage.generate_faces(variables, batch["indiv_mels"], batch["frames"],
                                              batch["reference"]))[:3]    # [3, 5, 64, 64, 3]
  target = batch["frames"][:3] / 255.0
  mse = np.mean((generated - target) ** 2, axis=(1, 2, 3, 4))
  np.testing.assert_allclose(metrics["l1"], np.mean(np.abs(generated - target)), rtol=1e-5)
  np.testing.assert_allclose(metrics["psnr"], np.mean(-10 * np.log10(mse)), rtol=1e-5)
  assert float(metrics["eval_weight"]) == 3.0
  # Expert input by hand: bilinear 64 -> 96 px, lower halves, BGR, frame-major channels.
  expert_stage, expert_state, _ = restore.restore_stage(expert_workdir)
  up = np.stack([[cv2.resize(f, (96, 96), interpolation=cv2.INTER_LINEAR) for f in w]
                 for w in generated])                                     # [3, 5, 96, 96, 3]
  faces = up[:, :, 48:, :, ::-1].transpose(0, 2, 3, 1, 4).reshape(3, 48, 96, 15)
  expert = syncnet_lib.SyncNetColor(width=expert_stage.config.model.width)
  audio, face = jax.jit(functools.partial(expert.apply, use_running_average=True))(
      expert_stage.variables(expert_state), batch["mel"][:3, ..., None], faces)
  cos = np.sum(np.asarray(audio) * np.asarray(face), axis=1)
  np.testing.assert_allclose(metrics["sync_loss"], np.mean(-np.log(cos)), rtol=2e-4)


@pytest.mark.slow
def test_gan_variant_trains_both_players(dataset, expert_workdir):
  config = tiny_config(dataset, expert_workdir)
  config.gan.enabled = True
  stage = wav2lip.Wav2LipStage(config)
  state = jax.jit(stage.init_state)(jax.random.PRNGKey(0))
  assert isinstance(state, AdversarialTrainState)
  state = stage.after_eval(state, {"sync_loss": 0.1})          # switch sw on: the GAN's 0.03
  assert float(stage.sync_weight(state)) == pytest.approx(0.03)
  batch = _batch(stage)
  new, m = jax.jit(stage.train_step)(state, batch, jax.random.PRNGKey(0))
  m = {k: float(v) for k, v in m.items()}
  assert all(np.isfinite(v) for v in m.values()), m
  assert m["sync_loss"] > 0 and m["adv_loss"] > 0 and m["disc_loss"] > 0
  assert m["disc_loss"] == pytest.approx(m["disc_real_loss"] + m["disc_fake_loss"], rel=1e-5)
  assert m["loss"] == pytest.approx(0.03 * m["sync_loss"] + 0.07 * m["adv_loss"]
                                    + (1 - 0.03 - 0.07) * m["l1"], rel=1e-5)
  assert int(new.step) == int(new.generator.step) == int(new.discriminators["visual"].step) == 1
  for old, updated in ((state.generator.params, new.generator.params),
                       (state.discriminators["visual"].params,
                        new.discriminators["visual"].params)):
    assert any(np.any(np.asarray(a) != np.asarray(b)) for a, b in
               zip(jax.tree.leaves(old), jax.tree.leaves(updated)))


def test_after_eval_switches_once_and_keeps_sharding(dataset, expert_workdir):
  stage = wav2lip.Wav2LipStage(tiny_config(dataset, expert_workdir))
  abstract = jax.eval_shape(stage.init_state, jax.random.PRNGKey(0))
  mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  state = jax.tree.map(lambda x: jax.device_put(np.zeros(x.shape, x.dtype), replicated), abstract)
  assert stage.after_eval(state, {"sync_loss": 0.75}) is state     # not below the threshold
  assert stage.after_eval(state, {"l1": 0.1}) is state             # no sync loss measured
  on = stage.after_eval(state, {"sync_loss": 0.7})
  assert float(stage.sync_weight(on)) == pytest.approx(0.01)
  assert stage.sync_weight(on).sharding == replicated
  assert stage.after_eval(on, {"sync_loss": 0.1}) is on            # already on: unchanged


def _zero_state(stage):
  abstract = jax.eval_shape(stage.init_state, jax.random.PRNGKey(0))
  return jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), abstract)


@pytest.mark.parametrize("variant", ["demo", "paper"])
def test_switch_rule_flips_exactly_when_the_eval_loss_crosses_it(dataset, expert_workdir, variant):
  """The variant's switch rule under the tiny config: a falling eval sync loss, the expert's loss
  on the true frames fixed at 0.5 (demo: on below 3 x 0.5; paper: on below 0.75 only)."""
  config = tiny_config(dataset, expert_workdir)
  config.loss = wav2lip_config.get_config(variant).loss
  stage = wav2lip.Wav2LipStage(config)
  crossing = {"demo": 1.5, "paper": 0.75}[variant]
  state = _zero_state(stage)
  weights = []
  for sync in (3.0, 2.0, 1.5, 1.49, 1.0, 0.75, 0.74, 0.5):
    state = stage.after_eval(state, {"sync_loss": sync, "sync_loss_truth": 0.5})
    weights.append((sync, float(stage.sync_weight(state))))
  assert [w > 0 for _, w in weights] == [sync < crossing for sync, _ in weights], weights
  assert weights[-1][1] == pytest.approx(0.01)


def test_switch_rule_reasons():
  rule = wav2lip_config.get_config("paper").loss
  assert wav2lip.sync_switch_due(rule, {"l1": 0.1}, 10) is None         # no sync loss measured
  assert "threshold" in wav2lip.sync_switch_due(rule, {"sync_loss": 0.7}, 10)
  assert wav2lip.sync_switch_due(rule, {"sync_loss": 1.0, "sync_loss_truth": 0.1}, 10**6) is None
  rule.sync_switch_step = 100
  assert wav2lip.sync_switch_due(rule, {"sync_loss": 9.0}, 99) is None
  assert "sync_switch_step" in wav2lip.sync_switch_due(rule, {"sync_loss": 9.0}, 100)


def test_sync_loss_alone_trains_the_generator(dataset, expert_workdir):
  """A generator overfit test in the default suite: with sw = 1 the frozen expert's gradient
  lowers the sync loss of one batch (L1 plays no part)."""
  config = tiny_config(dataset, expert_workdir)
  config.optimizer.learning_rate = 3e-3
  stage = wav2lip.Wav2LipStage(config)
  batch = _batch(stage)
  state = jax.jit(stage.init_state)(jax.random.PRNGKey(0))
  state = state.replace(model_state={**state.model_state, "sync_weight": jnp.float32(1.0)})
  step = jax.jit(stage.train_step)
  sync = []
  for i in range(8):
    state, metrics = step(state, batch, jax.random.PRNGKey(i))
    sync.append(float(metrics["sync_loss"]))
  assert sync[-1] < 0.9 * sync[0], sync


def test_missing_expert_errors(dataset, tmp_path):
  def load(**fields):
    config = tiny_config(dataset, "")
    config.sync_expert.update(fields)
    return wav2lip.Wav2LipStage(config).sync_expert

  with pytest.raises(ValueError, match=r"sync_expert\.workdir .* sync_expert\.checkpoint .*never "
                                       r"trains against random expert weights"):
    load()
  missing = str(tmp_path / "weights" / "lipsync_expert.pth")
  with pytest.raises(weights.MissingWeightsError,
                     match=rf"sync_expert\.checkpoint='{re.escape(missing)}' does not exist: "
                           r"it should be lipsync_expert\.pth"):
    load(checkpoint=missing)
  with pytest.raises(FileNotFoundError, match=r"sync_expert\.workdir='.*nowhere' is not a trained"):
    load(workdir=str(tmp_path / "nowhere"))
  with pytest.raises(ValueError, match="only one of"):
    load(workdir=str(tmp_path), checkpoint=missing)
  # Through the trainer: it fails before writing anything.
  with pytest.raises(ValueError, match="sync_expert"):
    loop.train_and_evaluate(tiny_config(dataset, ""), str(tmp_path / "run"))
  assert not os.path.exists(tmp_path / "run" / "checkpoints")
  assert not os.path.exists(tmp_path / "run" / "config.json")


def test_bad_image_size_fails_when_the_stage_is_built(dataset, expert_workdir):
  config = tiny_config(dataset, expert_workdir)
  config.data.image_size = 80
  with pytest.raises(ValueError, match="multiple of 32"):
    wav2lip.Wav2LipStage(config)
