"""Train states: EMA arithmetic, adversarial players, and checkpoint atomicity."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from talking_heads.training import checkpoint
from talking_heads.training.state import AdversarialTrainState, TrainState


def test_ema_follows_the_parameters():
  params = {"w": jnp.zeros((3,))}
  state = TrainState.create(params, optax.sgd(1.0), rng=jax.random.PRNGKey(0), ema_decay=0.5)
  state = state.apply_gradients({"w": -jnp.ones((3,))})   # w: 0 -> 1
  np.testing.assert_allclose(state.params["w"], 1.0)
  np.testing.assert_allclose(state.ema_params["w"], 0.5)   # 0.5 * 0 + 0.5 * 1
  state = state.apply_gradients({"w": -jnp.ones((3,))})   # w: 1 -> 2
  np.testing.assert_allclose(state.ema_params["w"], 1.25)  # 0.5 * 0.5 + 0.5 * 2
  assert int(state.step) == 2 and state.eval_params is state.ema_params


def test_gan_players_have_their_own_optimisers():
  g = TrainState.create({"w": jnp.ones(())}, optax.sgd(0.1), rng=jax.random.PRNGKey(0))
  d = TrainState.create({"w": jnp.ones(())}, optax.adam(0.1, b1=0.5), rng=jax.random.PRNGKey(1))
  state = AdversarialTrainState.create(g, {"d": d}, rng=jax.random.PRNGKey(2))

  @jax.jit
  def step(state):
    d_new = state.discriminators["d"].apply_gradients({"w": jnp.ones(())})
    g_new = state.generator.apply_gradients({"w": jnp.ones(())})
    return state.replace(step=state.step + 1, generator=g_new, discriminators={"d": d_new})

  state = step(state)
  np.testing.assert_allclose(state.generator.params["w"], 0.9, rtol=1e-6)       # sgd: 1 - 0.1
  # adam's first step: lr * sign
  np.testing.assert_allclose(state.discriminators["d"].params["w"], 0.9, rtol=1e-4)
  assert int(state.step) == int(state.generator.step) == int(state.discriminators["d"].step) == 1
  assert state.eval_params is state.generator.params


def test_a_crashed_save_leaves_the_last_good_checkpoint(tmp_path):
  tree = {"w": jnp.arange(4.0), "step": jnp.array(3)}
  ckpt = checkpoint.Checkpointer(str(tmp_path))
  ckpt.save(3, tree)
  ckpt.close()
  # A save that died half-way leaves only orbax's temporary directory behind.
  partial = tmp_path / "checkpoints" / "7.orbax-checkpoint-tmp-123"
  os.makedirs(partial / "state")
  (partial / "state" / "garbage").write_bytes(b"\x00" * 10)
  ckpt = checkpoint.Checkpointer(str(tmp_path))
  assert ckpt.latest_step() == 3
  abstract = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                                                   sharding=jax.sharding.SingleDeviceSharding(jax.devices()[0])), tree)
  step, restored = ckpt.restore(abstract)
  assert step == 3
  np.testing.assert_array_equal(restored["w"], np.arange(4.0))
  ckpt.close()


def test_keep_last_k(tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path), keep=2)
  for s in (1, 2, 3, 4):
    ckpt.save(s, {"w": jnp.full((2,), float(s))})
  ckpt.close()
  assert checkpoint.Checkpointer(str(tmp_path)).all_steps() == [3, 4]
