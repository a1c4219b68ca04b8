"""Train states: one network, a generator/discriminator pair, or a generator with named
discriminators (`training.adversarial`), each player with its own optimiser.

A state is a pytree (flax.struct dataclass) so it can be sharded, donated, checkpointed and
passed through `jax.jit`; the optax transformation is static metadata.
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

PyTree = Any


@flax.struct.dataclass
class TrainState:
  """Parameters, optimiser state, optional EMA copy and mutable model collections.

  Attributes:
    step: number of applied updates (int32 scalar).
    params: trainable parameters.
    opt_state: optax state for `params`.
    model_state: non-trainable collections (e.g. {"batch_stats": ...}); empty dict if none.
    rng: base PRNG key of the run (raw uint32[2]); the loop derives step keys with
      `fold_in(rng, step)`, so a resumed run draws the same randomness as an uninterrupted one.
    ema_params: exponential moving average of `params`, or None when `ema_decay` is 0.
    tx: the optax transformation (static).
    ema_decay: EMA decay per step (static); 0 disables the EMA.
  """
  step: jax.Array
  params: PyTree
  opt_state: PyTree
  model_state: PyTree
  ema_params: PyTree | None
  rng: jax.Array
  tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)
  ema_decay: float = flax.struct.field(pytree_node=False, default=0.0)

  @classmethod
  def create(cls, params: PyTree, tx: optax.GradientTransformation, rng: jax.Array,
             model_state: PyTree | None = None, ema_decay: float = 0.0) -> "TrainState":
    return cls(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=tx.init(params),
        model_state={} if model_state is None else model_state,
        ema_params=jax.tree_util.tree_map(jnp.copy, params) if ema_decay else None,
        rng=rng,
        tx=tx,
        ema_decay=ema_decay)

  def apply_gradients(self, grads: PyTree, model_state: PyTree | None = None) -> "TrainState":
    """One optimiser update; also refreshes the EMA and the mutable collections."""
    updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
    params = optax.apply_updates(self.params, updates)
    ema = self.ema_params
    if self.ema_decay:
      d = self.ema_decay
      ema = jax.tree_util.tree_map(lambda e, p: d * e + (1.0 - d) * p, ema, params)
    return self.replace(
        step=self.step + 1, params=params, opt_state=opt_state, ema_params=ema,
        model_state=self.model_state if model_state is None else model_state)

  @property
  def eval_params(self) -> PyTree:
    """The parameters to evaluate and generate with: the EMA when kept."""
    return self.params if self.ema_params is None else self.ema_params


def frozen_state(params: PyTree, rng: jax.Array, model_state: PyTree | None = None) -> TrainState:
  """A player that is held but never optimised (e.g. a fixed lip-sync expert).

  Its optimiser is `optax.set_to_zero` (no optimiser state); the adversarial step never calls
  its `apply_gradients`, so its variables stay bit-identical.
  """
  return TrainState.create(params, optax.set_to_zero(), rng=rng, model_state=model_state)


@flax.struct.dataclass
class AdversarialTrainState:
  """A generator and any number of named discriminators (`training.adversarial`).

  Attributes:
    step: generator updates (int32 scalar); cadences and start steps count these.
    generator: the generator's TrainState.
    discriminators: {name: TrainState}; each player's `step` counts its own updates (lazy R1
      counts these); frozen players (`frozen_state`) keep step 0.
    rng: base PRNG key of the run (raw uint32[2]).
  """
  step: jax.Array
  generator: TrainState
  discriminators: dict[str, TrainState]
  rng: jax.Array

  @classmethod
  def create(cls, generator: TrainState, discriminators: dict[str, TrainState],
             rng: jax.Array) -> "AdversarialTrainState":
    return cls(step=jnp.zeros((), jnp.int32), generator=generator,
               discriminators=dict(discriminators), rng=rng)

  @property
  def eval_params(self) -> PyTree:
    return self.generator.eval_params
