"""Maps `config.stage` to a stage class.

Built-in stages are named by import path so that importing the registry imports no model;
tests and user code add their own with `register`.
"""

from __future__ import annotations

import importlib
from typing import Callable

import ml_collections

from talking_heads.training.stage import Stage

StageFactory = Callable[[ml_collections.ConfigDict], Stage]

_BUILTIN: dict[str, str] = {
    "dae": "talking_heads.systems.dae_talker:DAEStage",
    "face_regressor": "talking_heads.systems.face_regressor:FaceRegressorStage",
    "frame_autoencoder": "talking_heads.systems.frame_autoencoder:FrameAutoencoderStage",
    "sovqae": "talking_heads.systems.ladtalk:SOVQAEStage",
    "speech2latent": "talking_heads.systems.speech2latent:Speech2LatentStage",
    "syncnet": "talking_heads.systems.syncnet_expert:SyncNetStage",
    "wav2lip": "talking_heads.systems.wav2lip:Wav2LipStage",
}
_REGISTERED: dict[str, StageFactory] = {}


def register(name: str, factory: StageFactory) -> None:
  """Adds (or replaces) a stage under `name`."""
  _REGISTERED[name] = factory


def names() -> list[str]:
  return sorted(set(_BUILTIN) | set(_REGISTERED))


def get(name: str) -> StageFactory:
  if name in _REGISTERED:
    return _REGISTERED[name]
  if name not in _BUILTIN:
    raise KeyError(f"Unknown stage {name!r}; known stages: {', '.join(names())}.")
  module, attr = _BUILTIN[name].split(":")
  return getattr(importlib.import_module(module), attr)


def build(config: ml_collections.ConfigDict) -> Stage:
  return get(config.stage)(config)
