"""Maps `config.stage` to a stage class.

Stages are declared by the system packages (`talking_heads.systems.api`: each package's
`SYSTEM.stages`), found when a name is first looked up; the trainer itself names no system.
Tests and user code add their own with `register`.
"""

from __future__ import annotations

import importlib
from typing import Callable

import ml_collections

from talking_heads.training.stage import Stage

StageFactory = Callable[[ml_collections.ConfigDict], Stage]

# Where declared stages come from: the systems layer, imported on first lookup (it sits above
# the trainer, so the trainer may not import it at module level).
DECLARATIONS = "talking_heads.systems.api"
_REGISTERED: dict[str, StageFactory] = {}


def register(name: str, factory: StageFactory) -> None:
  """Adds (or replaces) a stage under `name`."""
  _REGISTERED[name] = factory


def _declared() -> dict[str, str]:
  return importlib.import_module(DECLARATIONS).stage_paths()


def names() -> list[str]:
  return sorted(set(_declared()) | set(_REGISTERED))


def get(name: str) -> StageFactory:
  if name in _REGISTERED:
    return _REGISTERED[name]
  declared = _declared()
  if name not in declared:
    raise KeyError(f"Unknown stage {name!r}; known stages: {', '.join(names())}.")
  module, attr = declared[name].split(":")
  return getattr(importlib.import_module(module), attr)


def build(config: ml_collections.ConfigDict) -> Stage:
  return get(config.stage)(config)
