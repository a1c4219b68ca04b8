"""The default train step of a single-network stage: one gradient step on a loss function.

A stage that trains one network writes only its loss (vdm style):

  loss_fn(params, model_state, batch, rng) -> (loss, (metrics, new_model_state))

  params           the TrainState's trainable parameters (differentiated).
  model_state      its non-trainable collections (e.g. {"batch_stats": ...}), read-only.
  batch, rng       the step's batch and PRNG key.
  loss             float32 scalar.
  metrics          {name: scalar} to log.
  new_model_state  the collections after the step (e.g. BatchNorm's updated statistics), or
                   None to keep `model_state`.

`gradient_step` differentiates it, applies the update (EMA and model_state included) and adds
`loss` and `grad_norm` to the metrics; `make_train_step` binds a loss into a
(state, batch, rng) step; `stage.LossStage` makes `loss_fn` a stage's `train_step`.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
import optax

from talking_heads.training.state import TrainState

PyTree = Any
Batch = Mapping[str, Any]
LossFn = Callable[[PyTree, PyTree, Batch, jax.Array],
                  tuple[jax.Array, tuple[Mapping[str, jax.Array], PyTree | None]]]
TrainStep = Callable[[TrainState, Batch, jax.Array], tuple[TrainState, dict[str, jax.Array]]]


def gradient_step(state: TrainState, loss_fn: LossFn, batch: Batch, rng: jax.Array
                  ) -> tuple[TrainState, dict[str, jax.Array]]:
  """(state after one optimiser update on loss_fn, metrics + loss + grad_norm); pure."""
  (loss, (metrics, model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params, state.model_state, batch, rng)
  state = state.apply_gradients(grads, model_state=model_state)
  return state, {**metrics, "loss": loss, "grad_norm": optax.tree.norm(grads)}


def make_train_step(loss_fn: LossFn) -> TrainStep:
  """(state, batch, rng) -> (state, metrics): `gradient_step` on `loss_fn` (jit it)."""
  def train_step(state: TrainState, batch: Batch, rng: jax.Array):
    return gradient_step(state, loss_fn, batch, rng)
  return train_step
