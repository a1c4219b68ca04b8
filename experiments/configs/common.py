"""Shared config pieces: trainer defaults and variant parsing.

Every stage config is `get_config(arg)` where `arg` names a variant (`tiny`, `demo`, `paper`)
optionally followed by comma-separated `key=value` overrides, e.g. `tiny,total_steps=20`.

`trainer_config(stage, variant)` starts every config with the variant's trainer defaults
(`TRAINER_DEFAULTS`); a stage config sets only the values that are its own:

  field              tiny   demo   paper
  total_steps          10   1000   50000
  batch_size            8      8      64
  eval_batch_size       8     64      64
  log_every             5     50     100
  checkpoint_every      5    250    5000
  eval_every           10    250    5000
  image_every          10    500    5000
  data.num_workers      0      0       8
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

import ml_collections

VARIANTS = ("tiny", "demo", "paper")
TRAINER_DEFAULTS = {  # the table in the module docstring
    "tiny": {"total_steps": 10, "batch_size": 8, "eval_batch_size": 8, "log_every": 5,
             "checkpoint_every": 5, "eval_every": 10, "image_every": 10, "data.num_workers": 0},
    "demo": {"total_steps": 1000, "batch_size": 8, "eval_batch_size": 64, "log_every": 50,
             "checkpoint_every": 250, "eval_every": 250, "image_every": 500, "data.num_workers": 0},
    "paper": {"total_steps": 50_000, "batch_size": 64, "eval_batch_size": 64, "log_every": 100,
              "checkpoint_every": 5000, "eval_every": 5000, "image_every": 5000, "data.num_workers": 8}}


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
  """Trainer fields shared by every stage (see `talking_heads/training/loop.py`), with the
  variant's `TRAINER_DEFAULTS`; `data` holds only `num_workers` (a stage `update`s it)."""
  d = TRAINER_DEFAULTS[variant]
  c = ml_collections.ConfigDict()
  c.stage = stage
  c.variant = variant
  c.seed = 0
  c.total_steps = d["total_steps"]
  c.batch_size = d["batch_size"]
  c.eval_batch_size = d["eval_batch_size"]
  c.ema_decay = 0.0
  c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "num_devices": 0})
  c.sharding = ml_collections.ConfigDict({"fsdp_min_size": 2**18, "rules": ()})
  c.optimizer = ml_collections.ConfigDict({
      "name": "adam", "learning_rate": 1e-4, "b1": 0.9, "b2": 0.999, "eps": 1e-8, "weight_decay": 0.0,
      "schedule": "constant", "warmup_steps": 0, "decay_steps": 0, "end_lr_factor": 0.0,
      "grad_clip_norm": 0.0, "frozen": ()})
  c.log_every = d["log_every"]
  c.checkpoint_every = d["checkpoint_every"]
  c.keep_checkpoints = 3
  c.eval_every = d["eval_every"]
  c.image_every = d["image_every"]
  c.progress_bar = True
  c.distributed = ml_collections.ConfigDict({"enabled": False, "coordinator_address": "",
                                             "num_processes": 0, "process_id": -1})
  c.data = ml_collections.ConfigDict({"num_workers": d["data.num_workers"]})
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
