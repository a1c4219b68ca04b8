"""The default gradient step: equals a hand-written value_and_grad + optax update, keeps the EMA
and BatchNorm statistics, trains a tiny model; `LossStage` uses it."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from talking_heads.training import stage as stage_lib
from talking_heads.training import steps
from talking_heads.training.state import TrainState


class _Tiny(nn.Module):
  """Dense -> BatchNorm -> Dense; x [B, 3] -> [B, 1] (the first bias has ~0 gradient: BatchNorm
  removes it, so the reference update is SGD, which does not amplify that rounding as Adam does)."""

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = nn.Dense(4)(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.5)(x)
    return nn.Dense(1)(nn.relu(x))


MODEL = _Tiny()


def _loss_fn(params, model_state, batch, rng):
  del rng
  pred, updates = MODEL.apply({"params": params, **model_state}, batch["x"], train=True,
                              mutable=["batch_stats"])
  loss = jnp.mean(jnp.square(pred - batch["y"]))
  return loss, ({"mse": loss}, {"batch_stats": updates["batch_stats"]})


def _setup(ema_decay=0.0):
  rng = np.random.default_rng(0)
  batch = {"x": jnp.asarray(rng.normal(size=(8, 3)), jnp.float32),
           "y": jnp.asarray(rng.normal(size=(8, 1)), jnp.float32)}
  variables = MODEL.init(jax.random.PRNGKey(0), batch["x"], train=False)
  state = TrainState.create(variables["params"], optax.sgd(0.1), rng=jax.random.PRNGKey(1),
                            model_state={"batch_stats": variables["batch_stats"]},
                            ema_decay=ema_decay)
  return state, batch


def test_matches_a_hand_written_update():
  state, batch = _setup(ema_decay=0.9)
  new, metrics = jax.jit(steps.make_train_step(_loss_fn))(state, batch, jax.random.PRNGKey(2))

  (loss, (_, model_state)), grads = jax.value_and_grad(_loss_fn, has_aux=True)(
      state.params, state.model_state, batch, None)
  updates = jax.tree_util.tree_map(lambda g: -0.1 * g, grads)   # SGD, lr 0.1
  expected = optax.apply_updates(state.params, updates)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), new.params,
                         expected)
  jax.tree_util.tree_map(lambda a, p, e: np.testing.assert_allclose(a, 0.9 * p + 0.1 * e, atol=1e-6),
                         new.ema_params, state.params, expected)
  # BatchNorm statistics replaced by the step's (momentum 0.5 moves them off their init).
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6),
                         new.model_state, model_state)
  assert not np.allclose(new.model_state["batch_stats"]["BatchNorm_0"]["mean"], 0.0)
  np.testing.assert_allclose(metrics["loss"], loss, rtol=1e-6)
  np.testing.assert_allclose(metrics["mse"], loss, rtol=1e-6)
  np.testing.assert_allclose(metrics["grad_norm"], optax.tree.norm(grads), rtol=1e-6)
  assert int(new.step) == 1


def test_keeps_model_state_when_the_loss_returns_none():
  state = TrainState.create({"w": jnp.ones(2)}, optax.sgd(0.5), rng=jax.random.PRNGKey(0),
                            model_state={"count": jnp.zeros(())})
  loss_fn = lambda p, ms, b, r: (jnp.sum(p["w"] * b["x"]), ({}, None))
  new, metrics = steps.gradient_step(state, loss_fn, {"x": jnp.asarray([1.0, 2.0])}, None)
  np.testing.assert_allclose(new.params["w"], [0.5, 0.0])
  assert new.model_state is state.model_state
  np.testing.assert_allclose(metrics["grad_norm"], np.sqrt(5.0), rtol=1e-6)


def test_loss_falls_on_a_fixed_batch():
  state, batch = _setup()
  step = jax.jit(steps.make_train_step(_loss_fn), donate_argnums=(0,))
  losses = []
  for i in range(20):
    state, metrics = step(state, batch, jax.random.PRNGKey(i))
    losses.append(float(metrics["loss"]))
  assert losses[-1] < 0.5 * losses[0], losses


class _Stage(stage_lib.LossStage):

  def init_state(self, rng):
    return _setup()[0]

  def loss_fn(self, params, model_state, batch, rng):
    return _loss_fn(params, model_state, batch, rng)

  def train_iterator(self, batch_size, shard_index, shard_count):
    return iter(())


def test_loss_stage_trains_with_the_default_step():
  stage = _Stage(None)
  state, batch = _setup()
  new, metrics = jax.jit(stage.train_step)(state, batch, jax.random.PRNGKey(0))
  expected, expected_metrics = steps.gradient_step(state, _loss_fn, batch, jax.random.PRNGKey(0))
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), new.params,
                         expected.params)
  assert set(metrics) == set(expected_metrics) == {"mse", "loss", "grad_norm"}
