"""`Stage.after_eval`: the loop calls it after every evaluation, then trains on and checkpoints
the state it returns."""

import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments.configs import common
from talking_heads.training import checkpoint, loop
from talking_heads.training.stage import Stage
from talking_heads.training.state import TrainState


class CountingStage(Stage):
  """Fits y = 2x; `after_eval` records its calls and adds 1 to a counter kept in the state."""

  def __init__(self, config):
    super().__init__(config)
    self.tx = optax.sgd(0.1)
    self.calls: list[tuple[int, dict[str, float]]] = []

  def init_state(self, rng):
    return TrainState.create({"w": jnp.zeros(())}, self.tx, rng=rng,
                             model_state={"evals_seen": jnp.zeros((), jnp.float32)})

  def loss(self, params, batch):
    return jnp.mean(jnp.square(params["w"] * batch["x"] - 2.0 * batch["x"]))

  def train_step(self, state, batch, rng):
    loss, grads = jax.value_and_grad(self.loss)(state.params, batch)
    metrics = {"loss": loss, "evals_seen": state.model_state["evals_seen"]}
    return state.apply_gradients(grads), metrics

  def train_iterator(self, batch_size, shard_index, shard_count):
    x = np.linspace(-1.0, 1.0, 64, dtype=np.float32)
    ds = grain.MapDataset.source(x)[shard_index::shard_count].repeat().map(lambda v: {"x": v})
    return iter(ds.batch(batch_size, drop_remainder=True).to_iter_dataset())

  def eval_step(self, state, batch, rng):
    return {"loss": self.loss(state.params, batch), "w": state.params["w"]}

  def eval_batches(self, batch_size, shard_index, shard_count):
    yield {"x": np.linspace(-1.0, 1.0, batch_size, dtype=np.float32)}

  def after_eval(self, state, eval_metrics):
    self.calls.append((int(state.step), dict(eval_metrics)))
    seen = state.model_state["evals_seen"]
    bumped = jax.jit(lambda v: v + 1.0, out_shardings=seen.sharding)(seen)
    return state.replace(model_state={"evals_seen": bumped})


def make_config(**overrides):
  c = common.trainer_config("counting", "tiny")
  c.batch_size = c.eval_batch_size = 8
  c.total_steps, c.log_every, c.eval_every, c.checkpoint_every, c.image_every = 6, 1, 2, 100, 0
  c.progress_bar = False
  c.update(overrides)
  return c


def test_after_eval_runs_after_each_evaluation_and_its_state_is_trained_on(tmp_path):
  stage = CountingStage(make_config())
  result = loop.train_and_evaluate(stage.config, str(tmp_path), stage=stage)
  assert [step for step, _ in stage.calls] == [2, 4, 6]
  # It receives the evaluation's metrics, the same ones the loop records.
  assert [m for _, m in stage.calls] == [{k: v for k, v in e.items() if k != "step"}
                                         for e in result.eval_history]
  # Step s trains on the state after the evaluations before it (the counter is read in the step).
  assert [h["evals_seen"] for h in result.history] == [0, 0, 1, 1, 2, 2]
  assert float(result.state.model_state["evals_seen"]) == 3.0


def test_the_changed_state_is_checkpointed_and_resumed(tmp_path):
  class Interrupt(Exception):
    pass

  def stop_after_step_3(step, state, metrics):
    if step == 3:
      raise Interrupt()

  stage = CountingStage(make_config())
  with pytest.raises(Interrupt):
    loop.train_and_evaluate(stage.config, str(tmp_path), stage=stage, hooks=[stop_after_step_3])
  assert checkpoint.Checkpointer(str(tmp_path)).latest_step() == 3
  resumed_stage = CountingStage(make_config())
  resumed = loop.train_and_evaluate(resumed_stage.config, str(tmp_path), stage=resumed_stage)
  # Steps 4-6: the counter restored from the checkpoint (1 evaluation before step 3), then 2.
  assert [h["evals_seen"] for h in resumed.history] == [1, 2, 2]
  assert [step for step, _ in resumed_stage.calls] == [4, 6]


def test_default_after_eval_returns_the_state_unchanged():
  stage = CountingStage(make_config())
  state = stage.init_state(jax.random.PRNGKey(0))
  assert Stage.after_eval(stage, state, {"loss": 0.0}) is state
