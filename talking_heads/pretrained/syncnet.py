"""SyncNet checkpoints -> `talking_heads.models.syncnet` variables: official `syncnet_v2.model`
(network S, key layout in `third_party.syncnet_keys`) and Wav2Lip's `lipsync_expert.pth`
(SyncNet_color, a Wav2Lip training checkpoint with `face_encoder.<i>` and `audio_encoder.<i>`
blocks, `third_party.wav2lip_keys`).
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from talking_heads.models import syncnet as syncnet_lib
from talking_heads.pretrained import wav2lip as wav2lip_pretrained
from third_party import convert as convert_lib
from third_party import syncnet_keys
from third_party import torch_reader
from third_party import wav2lip_keys

NameMap = convert_lib.NameMap


def syncnet_color_map() -> NameMap:
  """Complete torch key -> flax target map for Wav2Lip `SyncNet_color` -> `SyncNetColor`."""
  return {
      **wav2lip_pretrained.blocks_map("face_encoder", "face_encoder", syncnet_lib.FACE_ENCODER),
      **wav2lip_pretrained.blocks_map("audio_encoder", "audio_encoder",
                                      syncnet_lib.AUDIO_ENCODER)}


def syncnet_s_variables_shape() -> Any:
  """Abstract variables of the published `SyncNetS` (no computation)."""
  model = syncnet_lib.SyncNetS()
  lips = jnp.zeros((1, syncnet_lib.SYNCNET_T, 224, 224, 3))
  mfcc = jnp.zeros((1, 13, 20, 1))
  return jax.eval_shape(lambda: model.init(jax.random.key(0), lips, mfcc))


def syncnet_color_variables_shape() -> Any:
  """Abstract variables of `SyncNetColor` (no computation)."""
  model = syncnet_lib.SyncNetColor()
  mels = jnp.zeros((1, syncnet_lib.MEL_BINS, syncnet_lib.MEL_STEP, 1))
  faces = jnp.zeros((1, syncnet_lib.FACE_SIZE // 2, syncnet_lib.FACE_SIZE,
                     3 * syncnet_lib.SYNCNET_T))
  return jax.eval_shape(
      lambda: model.init(jax.random.key(0), mels, faces, use_running_average=True))


def convert_syncnet_s(state_dict: Mapping[str, np.ndarray], *,
                      source: str = "state dict") -> dict[str, Any]:
  """S state dict (optionally 'module.'-prefixed) -> `SyncNetS` {'params', 'batch_stats'}."""
  return convert_lib.convert(convert_lib.strip_prefix(state_dict, "module."),
                             syncnet_keys.syncnet_s_map(), syncnet_s_variables_shape(),
                             source=source)


def convert_syncnet_color(state_dict: Mapping[str, np.ndarray], *,
                          source: str = "state dict") -> dict[str, Any]:
  """SyncNet_color state dict or flattened Wav2Lip checkpoint -> `SyncNetColor` variables."""
  return convert_lib.convert(wav2lip_keys.model_state_dict(state_dict), syncnet_color_map(),
                             syncnet_color_variables_shape(), source=source)


def load_syncnet_s(path: str | os.PathLike[str]) -> dict[str, Any]:
  """Reads `syncnet_v2.model` (no torch) into `SyncNetS` variables."""
  return convert_syncnet_s(torch_reader.load_torch_file(path), source=os.fspath(path))


def load_syncnet_color(path: str | os.PathLike[str]) -> dict[str, Any]:
  """Reads Wav2Lip's `lipsync_expert.pth` (no torch) into `SyncNetColor` variables."""
  return convert_syncnet_color(torch_reader.load_torch_file(path), source=os.fspath(path))
