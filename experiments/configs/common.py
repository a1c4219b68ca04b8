"""Shared config pieces: trainer defaults and variant parsing.

Every stage config is `get_config(arg)` where `arg` names a variant (`tiny`, `demo`, `paper`)
optionally followed by comma-separated `key=value` overrides, e.g. `tiny,total_steps=20`.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

import ml_collections

VARIANTS = ("tiny", "demo", "paper")


class ParsedArg(NamedTuple):
  variant: str
  overrides: dict[str, Any]


def parse_arg(arg: str | None, default_variant: str = "demo") -> ParsedArg:
  """'tiny,a.b=3,c=(1,2)' -> ParsedArg('tiny', {'a.b': 3, 'c': (1, 2)}).

  Values are parsed as int/float/bool when possible; a parenthesised, comma-separated value is a
  tuple of such values (commas inside parentheses do not separate overrides).
  """
  variant, overrides = default_variant, {}
  for part in (p for p in re.split(r",(?![^()]*\))", arg or "") if p):
    if "=" in part:
      key, value = part.split("=", 1)
      overrides[key] = _parse_value(value)
    else:
      variant = part
  if variant not in VARIANTS:
    raise ValueError(f"Unknown config variant {variant!r}; expected one of {VARIANTS}.")
  return ParsedArg(variant, overrides)


def _parse_value(value: str):
  if value.startswith("(") and value.endswith(")"):
    return tuple(_parse_value(v.strip()) for v in value[1:-1].split(",") if v.strip())
  for cast in (int, float):
    try:
      return cast(value)
    except ValueError:
      pass
  return {"true": True, "false": False}.get(value.lower(), value)


def trainer_config(stage: str, variant: str) -> ml_collections.ConfigDict:
  """Trainer fields shared by every stage (see `talking_heads/training/loop.py`)."""
  c = ml_collections.ConfigDict()
  c.stage = stage
  c.variant = variant
  c.seed = 0
  c.total_steps = 1000
  c.batch_size = 8
  c.eval_batch_size = 8
  c.ema_decay = 0.0
  c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "num_devices": 0})
  c.sharding = ml_collections.ConfigDict({"fsdp_min_size": 2**18, "rules": ()})
  c.optimizer = ml_collections.ConfigDict({
      "name": "adam", "learning_rate": 1e-4, "b1": 0.9, "b2": 0.999, "eps": 1e-8, "weight_decay": 0.0,
      "schedule": "constant", "warmup_steps": 0, "decay_steps": 0, "end_lr_factor": 0.0,
      "grad_clip_norm": 0.0, "frozen": ()})
  c.log_every = 50
  c.checkpoint_every = 500
  c.keep_checkpoints = 3
  c.eval_every = 0
  c.image_every = 0
  c.progress_bar = True
  c.distributed = ml_collections.ConfigDict({"enabled": False, "coordinator_address": "",
                                             "num_processes": 0, "process_id": -1})
  return c


def apply_overrides(config: ml_collections.ConfigDict, parsed: ParsedArg) -> ml_collections.ConfigDict:
  """Applies the `key=value` parts of the config argument (dotted keys address nested fields)."""
  for key, value in parsed.overrides.items():
    node = config
    *path, leaf = key.split(".")
    for p in path:
      node = node[p]
    node[leaf] = value
  return config
