"""Optax optimisers built from a config.

The optimiser config (an `ml_collections.ConfigDict` or any mapping) has these fields:

  name: "adam" | "adamw" | "sgd".
  learning_rate: peak learning rate.
  b1, b2, eps: Adam moments (defaults 0.9, 0.999, 1e-8).
  weight_decay: decoupled weight decay for "adamw" (default 0).
  schedule: "constant" | "warmup_constant" | "warmup_cosine" | "warmup_linear".
  warmup_steps: linear warm-up length for the warm-up schedules.
  decay_steps: length of the cosine/linear decay (defaults to the run's total steps).
  end_lr_factor: final learning rate as a fraction of the peak (cosine/linear).
  grad_clip_norm: clip the global gradient norm to this value (0 or None: off).
  frozen: regular expressions over '/'-joined parameter paths; matching leaves get no update.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping, Sequence

import jax
import optax

from talking_heads.training.tree_utils import path_names

PyTree = Any


def _get(cfg: Mapping[str, Any], key: str, default: Any) -> Any:
  value = cfg.get(key, default) if hasattr(cfg, "get") else getattr(cfg, key, default)
  return default if value is None else value


def build_schedule(cfg: Mapping[str, Any], total_steps: int) -> optax.Schedule:
  """Learning-rate schedule from the optimiser config."""
  peak = float(_get(cfg, "learning_rate", 1e-4))
  kind = _get(cfg, "schedule", "constant")
  warmup = int(_get(cfg, "warmup_steps", 0))
  decay = int(_get(cfg, "decay_steps", 0)) or max(total_steps, warmup + 1)
  end = peak * float(_get(cfg, "end_lr_factor", 0.0))
  if kind == "constant":
    return optax.constant_schedule(peak)
  if kind == "warmup_constant":
    return optax.join_schedules(
        [optax.linear_schedule(0.0, peak, max(warmup, 1)), optax.constant_schedule(peak)], [warmup])
  if kind == "warmup_cosine":
    return optax.warmup_cosine_decay_schedule(0.0, peak, warmup, decay, end_value=end)
  if kind == "warmup_linear":
    return optax.join_schedules(
        [optax.linear_schedule(0.0, peak, max(warmup, 1)),
         optax.linear_schedule(peak, end, max(decay - warmup, 1))], [warmup])
  raise ValueError(f"Unknown learning-rate schedule {kind!r}; expected constant, warmup_constant, "
                   "warmup_cosine or warmup_linear.")


def frozen_mask(params: PyTree, patterns: Sequence[str]) -> PyTree:
  """True for every leaf whose path matches one of the regular expressions."""
  compiled = [re.compile(p) for p in patterns]
  return jax.tree_util.tree_map(lambda n: any(c.search(n) for c in compiled), path_names(params))


def build_optimizer(cfg: Mapping[str, Any], total_steps: int) -> optax.GradientTransformation:
  """The optax transformation described by `cfg` (see module docstring)."""
  schedule = build_schedule(cfg, total_steps)
  name = _get(cfg, "name", "adam")
  b1, b2 = float(_get(cfg, "b1", 0.9)), float(_get(cfg, "b2", 0.999))
  eps = float(_get(cfg, "eps", 1e-8))
  if name == "adam":
    tx = optax.adam(schedule, b1=b1, b2=b2, eps=eps)
  elif name == "adamw":
    tx = optax.adamw(schedule, b1=b1, b2=b2, eps=eps, weight_decay=float(_get(cfg, "weight_decay", 0.0)))
  elif name == "sgd":
    tx = optax.sgd(schedule, momentum=float(_get(cfg, "momentum", 0.0)) or None)
  else:
    raise ValueError(f"Unknown optimizer {name!r}; expected adam, adamw or sgd.")
  chain = []
  clip = _get(cfg, "grad_clip_norm", 0.0)
  if clip:
    chain.append(optax.clip_by_global_norm(float(clip)))
  chain.append(tx)
  tx = optax.chain(*chain) if len(chain) > 1 else tx
  frozen = tuple(_get(cfg, "frozen", ()))
  if frozen:
    tx = _freeze(tx, frozen)
  return tx


def _freeze(tx: optax.GradientTransformation, patterns: Sequence[str]) -> optax.GradientTransformation:
  label_fn: Callable[[PyTree], PyTree] = lambda params: jax.tree_util.tree_map(
      lambda frozen: "frozen" if frozen else "trained", frozen_mask(params, patterns))
  return optax.multi_transform({"trained": tx, "frozen": optax.set_to_zero()}, label_fn)
