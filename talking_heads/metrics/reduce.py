"""Valid-weighted means: the one reduction every stage's evaluation and masked loss uses.

Eval batches are padded to a fixed size and carry a boolean `valid` [B]; a per-example value
averages over the valid examples only, and the batch reports its weight so that the training
loop can average batches by weight (`eval_weight`).
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp


def example_weights(batch: Mapping[str, Any], batch_size: int) -> jax.Array:
  """float32 [B] weights: the batch's `valid` mask, or ones when it has none."""
  valid = batch.get("valid")
  return jnp.ones((batch_size,), jnp.float32) if valid is None else valid.astype(jnp.float32)


def weighted_mean(per_example: jax.Array, weights: jax.Array) -> jax.Array:
  """sum(w x) / max(sum(w), 1): the mean over weighted examples, 0 when all weights are 0."""
  return jnp.sum(per_example * weights) / jnp.maximum(jnp.sum(weights), 1.0)
