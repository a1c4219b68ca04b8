"""Optimiser builder: schedules, clipping and frozen sub-trees."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from talking_heads.training import optimizers


def cfg(**kw):
  base = {"name": "adam", "learning_rate": 1e-3, "schedule": "constant", "warmup_steps": 0}
  base.update(kw)
  return ml_collections.ConfigDict(base)


def test_warmup_cosine_schedule_values():
  s = optimizers.build_schedule(cfg(schedule="warmup_cosine", warmup_steps=10, end_lr_factor=0.1), 110)
  assert float(s(0)) == 0.0
  np.testing.assert_allclose(float(s(5)), 5e-4, rtol=1e-6)
  np.testing.assert_allclose(float(s(10)), 1e-3, rtol=1e-6)
  np.testing.assert_allclose(float(s(60)), 1e-4 + 0.5 * (1e-3 - 1e-4), rtol=1e-5)  # half-way down the cosine
  np.testing.assert_allclose(float(s(110)), 1e-4, rtol=1e-5)


def test_warmup_constant_and_linear():
  s = optimizers.build_schedule(cfg(schedule="warmup_constant", warmup_steps=4), 100)
  np.testing.assert_allclose([float(s(i)) for i in (0, 2, 4, 50)], [0, 5e-4, 1e-3, 1e-3], rtol=1e-6)
  s = optimizers.build_schedule(cfg(schedule="warmup_linear", warmup_steps=0), 100)
  np.testing.assert_allclose(float(s(50)), 5e-4, rtol=1e-6)


def test_unknown_names_raise():
  with pytest.raises(ValueError, match="schedule"):
    optimizers.build_schedule(cfg(schedule="step"), 10)
  with pytest.raises(ValueError, match="optimizer"):
    optimizers.build_optimizer(cfg(name="lion"), 10)


def test_frozen_subtree_gets_no_update():
  params = {"encoder": {"kernel": jnp.ones((3, 3))}, "decoder": {"kernel": jnp.ones((3, 3))}}
  tx = optimizers.build_optimizer(cfg(frozen=("^encoder/",)), 10)
  state = tx.init(params)
  grads = jax.tree_util.tree_map(jnp.ones_like, params)
  updates, _ = tx.update(grads, state, params)
  assert float(jnp.abs(updates["encoder"]["kernel"]).max()) == 0.0
  assert float(jnp.abs(updates["decoder"]["kernel"]).min()) > 0.0


def test_gradient_clipping_caps_the_norm():
  params = {"w": jnp.zeros((4,))}
  tx = optimizers.build_optimizer(cfg(name="sgd", learning_rate=1.0, grad_clip_norm=1.0), 10)
  updates, _ = tx.update({"w": jnp.full((4,), 10.0)}, tx.init(params), params)
  np.testing.assert_allclose(float(optax.tree.norm(updates)), 1.0, rtol=1e-5)


def test_adamw_decays_weights():
  params = {"w": jnp.ones((2,))}
  tx = optimizers.build_optimizer(cfg(name="adamw", learning_rate=0.1, weight_decay=0.5), 10)
  updates, _ = tx.update({"w": jnp.zeros((2,))}, tx.init(params), params)
  np.testing.assert_allclose(np.asarray(updates["w"]), -0.05, rtol=1e-5)
