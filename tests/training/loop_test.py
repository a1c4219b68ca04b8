"""Trainer logic with a small fake stage registered only here (no real model involved)."""

import dataclasses
import json
import os
import signal

import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments.configs import common
from talking_heads.training import checkpoint, loop, registry, sharding, workdir_lock
from talking_heads.training.stage import Stage
from talking_heads.training.state import TrainState

IN, HIDDEN = 16, 64


@dataclasses.dataclass(frozen=True)
class RegressionSource:
  length: int = 512

  def __len__(self):
    return self.length

  def __getitem__(self, i):
    rng = np.random.default_rng(i)
    x = rng.normal(size=IN).astype(np.float32)
    return {"x": x, "y": np.sin(x[:4].sum(keepdims=True)).astype(np.float32)}


class FakeRegressionStage(Stage):
  """MLP regression; adds rng-driven input noise so the step key matters."""

  def __init__(self, config):
    super().__init__(config)
    self.tx = optax.adam(config.optimizer.learning_rate)

  def init_state(self, rng):
    k1, k2 = jax.random.split(rng)
    params = {"w1": jax.random.normal(k1, (IN, HIDDEN)) / 4.0, "b1": jnp.zeros((HIDDEN,)),
              "w2": jax.random.normal(k2, (HIDDEN, 1)) / 8.0}
    return TrainState.create(params, self.tx, rng=rng, ema_decay=self.config.ema_decay)

  def loss(self, params, batch, rng):
    x = batch["x"] + 0.01 * jax.random.normal(rng, batch["x"].shape)
    pred = jnp.tanh(x @ params["w1"] + params["b1"]) @ params["w2"]
    return jnp.mean(jnp.square(pred - batch["y"]))

  def train_step(self, state, batch, rng):
    loss, grads = jax.value_and_grad(self.loss)(state.params, batch, rng)
    nan_at = self.config.get("nan_at_step", -1)
    loss = jnp.where(state.step + 1 == nan_at, jnp.nan, loss)
    grads = jax.tree_util.tree_map(lambda g: jnp.where(state.step + 1 == nan_at, jnp.nan, g), grads)
    return state.apply_gradients(grads), {"loss": loss, "grad_norm": optax.tree.norm(grads)}

  def train_iterator(self, batch_size, shard_index, shard_count):
    ds = grain.MapDataset.source(RegressionSource())[shard_index::shard_count]
    return iter(ds.shuffle(seed=self.config.seed).repeat().batch(batch_size, drop_remainder=True)
                .to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=2)))

  def eval_step(self, state, batch, rng):
    return {"loss": self.loss(state.eval_params, batch, rng)}

  def eval_batches(self, batch_size, shard_index, shard_count):
    src = RegressionSource(64)
    for s in range(0, 64, batch_size):
      items = [src[i] for i in range(s, s + batch_size)]
      yield {k: np.stack([it[k] for it in items]) for k in items[0]}


registry.register("fake_regression", FakeRegressionStage)


def make_config(**overrides):
  c = common.trainer_config("fake_regression", "tiny")
  c.total_steps, c.batch_size, c.eval_batch_size = 6, 16, 16
  c.log_every, c.checkpoint_every, c.eval_every, c.image_every = 1, 100, 0, 0
  c.progress_bar = False
  c.optimizer.learning_rate = 1e-2
  c.sharding.fsdp_min_size = 256
  for key, value in overrides.items():
    node = c
    *path, leaf = key.split(".")
    for p in path:
      node = node[p]
    node[leaf] = value
  return c


def test_loss_falls(tmp_path):
  result = loop.train_and_evaluate(make_config(total_steps=60, log_every=10, eval_every=60), str(tmp_path))
  losses = [h["loss"] for h in result.history]
  assert len(losses) == 60
  assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:5])
  assert result.eval_history and result.eval_history[-1]["loss"] < losses[0]


def test_sharded_equals_single_device(tmp_path):
  assert jax.device_count() == 8
  one = loop.train_and_evaluate(make_config(**{"mesh.num_devices": 1}), str(tmp_path / "one"))
  eight = loop.train_and_evaluate(make_config(**{"mesh.data": 4, "mesh.fsdp": 2}), str(tmp_path / "eight"))
  # The large kernel really is split over fsdp in the 8-device run.
  assert eight.state.params["w1"].sharding.spec == jax.sharding.PartitionSpec(None, "fsdp")
  assert len(one.state.params["w1"].sharding.device_set) == 1
  np.testing.assert_allclose([h["loss"] for h in eight.history], [h["loss"] for h in one.history], rtol=1e-5)
  for a, b in zip(jax.tree_util.tree_leaves(eight.state.params), jax.tree_util.tree_leaves(one.state.params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


class _Interrupt(Exception):
  pass


def _interrupt_at(k):
  def hook(step, state, metrics):
    if step == k:
      raise _Interrupt(f"stopped after step {k}")
  return hook


@pytest.mark.parametrize("ema", [0.0, 0.9])
def test_resume_equals_uninterrupted(tmp_path, ema):
  n, k = 8, 3
  config = make_config(total_steps=n, ema_decay=ema, **{"mesh.data": 4, "mesh.fsdp": 2})
  full = loop.train_and_evaluate(config, str(tmp_path / "full"))
  with pytest.raises(_Interrupt):
    loop.train_and_evaluate(config, str(tmp_path / "resumed"), hooks=[_interrupt_at(k)])
  assert checkpoint.Checkpointer(str(tmp_path / "resumed")).latest_step() == k
  resumed = loop.train_and_evaluate(config, str(tmp_path / "resumed"))
  assert resumed.step == n and len(resumed.history) == n - k
  # Same data order after resume: the losses of steps k+1..n match the uninterrupted run.
  np.testing.assert_allclose([h["loss"] for h in resumed.history], [h["loss"] for h in full.history[k:]],
                             rtol=1e-6)
  for a, b in zip(jax.tree_util.tree_leaves(resumed.state), jax.tree_util.tree_leaves(full.state)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_resume_from_periodic_checkpoint_restores_iterator(tmp_path):
  config = make_config(total_steps=4, checkpoint_every=2)
  loop.train_and_evaluate(config, str(tmp_path / "a"))
  longer = make_config(total_steps=6, checkpoint_every=2)
  resumed = loop.train_and_evaluate(longer, str(tmp_path / "a"))
  full = loop.train_and_evaluate(longer, str(tmp_path / "b"))
  np.testing.assert_allclose([h["loss"] for h in resumed.history], [h["loss"] for h in full.history[4:]],
                             rtol=1e-6)


def test_nan_guard_fires_and_keeps_loadable_checkpoint(tmp_path):
  config = make_config(total_steps=10, checkpoint_every=2, nan_at_step=5)
  with pytest.raises(loop.NonFiniteLossError) as err:
    loop.train_and_evaluate(config, str(tmp_path))
  assert err.value.step == 5 and set(err.value.terms) == {"loss", "grad_norm"}
  assert "step 5" in str(err.value) and "checkpoint is step 4" in str(err.value)
  ckpt = checkpoint.Checkpointer(str(tmp_path))
  assert ckpt.latest_step() == 4
  stage = FakeRegressionStage(config)
  abstract = jax.eval_shape(stage.init_state, jax.random.PRNGKey(0))
  mesh = sharding.make_mesh(config.mesh)
  shardings = sharding.state_shardings(abstract, mesh, config.sharding)
  step, state = ckpt.restore(checkpoint.abstract_with_shardings(abstract, shardings))
  assert step == 4 and int(state.step) == 4
  assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree_util.tree_leaves(state.params))


def test_nan_guard_with_sparse_logging_names_first_bad_step(tmp_path):
  config = make_config(total_steps=10, log_every=5, checkpoint_every=100, nan_at_step=3)
  with pytest.raises(loop.NonFiniteLossError) as err:
    loop.train_and_evaluate(config, str(tmp_path))
  assert err.value.step == 3 and err.value.last_checkpoint is None
  assert checkpoint.Checkpointer(str(tmp_path)).latest_step() is None


def test_metrics_and_config_written(tmp_path):
  loop.train_and_evaluate(make_config(total_steps=4, log_every=2), str(tmp_path))
  lines = (tmp_path / "metrics.jsonl").read_text().strip().splitlines()
  assert len(lines) == 2 and '"loss"' in lines[0] and '"steps_per_second"' in lines[0]
  assert (tmp_path / "config.json").exists()


def test_relaunch_with_a_changed_config_records_it(tmp_path):
  """config.json follows the newest launch (loaders read it); the replaced one is kept."""
  loop.train_and_evaluate(make_config(total_steps=2, checkpoint_every=2), str(tmp_path))
  first = json.loads((tmp_path / "config.json").read_text())
  loop.train_and_evaluate(make_config(total_steps=2, checkpoint_every=2), str(tmp_path))
  assert not list(tmp_path.glob("config_until_step_*.json"))      # same config: nothing kept
  loop.train_and_evaluate(make_config(total_steps=4, checkpoint_every=2), str(tmp_path))
  assert json.loads((tmp_path / "config.json").read_text())["total_steps"] == 4
  assert json.loads((tmp_path / "config_until_step_2.json").read_text()) == first


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_saves_the_finished_steps(tmp_path, sig):
  """kill / a scheduler's SIGTERM, or SIGINT even where a background job ignores it."""
  previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if sig == signal.SIGINT else None

  def send_at_3(step, state, metrics):
    if step == 3:
      os.kill(os.getpid(), sig)
  try:
    with pytest.raises(KeyboardInterrupt, match=signal.Signals(sig).name):
      loop.train_and_evaluate(make_config(total_steps=8, checkpoint_every=100), str(tmp_path),
                              hooks=[send_at_3])
    assert signal.getsignal(sig) == (signal.SIG_IGN if previous is not None else
                                     signal.SIG_DFL)              # handler given back
  finally:
    if previous is not None:
      signal.signal(signal.SIGINT, previous)
  assert checkpoint.Checkpointer(str(tmp_path)).latest_step() == 3
  assert not (tmp_path / workdir_lock.LOCK_FILE).exists()      # the workdir's lock is released


def test_the_workdir_lock_is_released_after_a_run_and_after_a_failure(tmp_path):
  loop.train_and_evaluate(make_config(total_steps=2), str(tmp_path))
  assert not (tmp_path / workdir_lock.LOCK_FILE).exists()
  with pytest.raises(_Interrupt):
    loop.train_and_evaluate(make_config(total_steps=4), str(tmp_path), hooks=[_interrupt_at(3)])
  assert not (tmp_path / workdir_lock.LOCK_FILE).exists()
  with workdir_lock.hold(tmp_path):    # free for the next run
    pass


class _TruncatedFile(Exception):
  pass


class BrokenDataStage(FakeRegressionStage):
  """Its data source fails on every example, like a truncated frames.npy."""

  def train_iterator(self, batch_size, shard_index, shard_count):
    def unreadable(example):
      raise _TruncatedFile("frames.npy is truncated")
    ds = grain.MapDataset.source(RegressionSource()).map(unreadable)
    return iter(ds.repeat().batch(batch_size, drop_remainder=True).to_iter_dataset())


def test_a_run_that_fails_before_its_first_step_saves_nothing(tmp_path):
  """A step-0 checkpoint would hold the random initial weights and pass for a trained workdir."""
  config = make_config(total_steps=4, checkpoint_every=2)
  with pytest.raises(_TruncatedFile):
    loop.train_and_evaluate(config, str(tmp_path / "fresh"), stage=BrokenDataStage(config))
  assert checkpoint.Checkpointer(str(tmp_path / "fresh")).latest_step() is None
  # Resumed, then failing before a new step: the newest checkpoint stays the only one.
  loop.train_and_evaluate(make_config(total_steps=2, checkpoint_every=2), str(tmp_path / "resumed"))
  with pytest.raises(_TruncatedFile):
    loop.train_and_evaluate(config, str(tmp_path / "resumed"), stage=BrokenDataStage(config))
  assert checkpoint.Checkpointer(str(tmp_path / "resumed")).all_steps() == [2]
