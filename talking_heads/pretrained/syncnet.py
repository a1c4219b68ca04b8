"""SyncNet checkpoints -> Flax variables: official `syncnet_v2.model` (network S) and Wav2Lip's
`lipsync_expert.pth` (SyncNet_color).

`syncnet_v2.model` is a bare state dict of syncnet_python's `S`, whose towers are `nn.Sequential`s
with ReLU/max-pool entries between the weighted layers: in `netcnnaud` and `netcnnlip` the convs
sit at indices 0, 4, 8, 11, 14, 18, each followed by its BatchNorm; `netfcaud`/`netfclip` are
Linear (0), BatchNorm1d (1), ReLU, Linear (3). `lipsync_expert.pth` is a Wav2Lip training
checkpoint (see `third_party.wav2lip`) with `face_encoder.<i>` and `audio_encoder.<i>` blocks.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from talking_heads.models import syncnet as syncnet_lib
from third_party import convert as convert_lib
from third_party import torch_reader
from third_party import wav2lip as wav2lip_convert

NameMap = convert_lib.NameMap

# Indices of the weighted layers in S's conv towers (BatchNorm at index + 1).
S_CONV_INDICES = (0, 4, 8, 11, 14, 18)


def syncnet_s_map() -> NameMap:
  """Complete torch key -> flax target map for syncnet_python `S` -> `SyncNetS`."""
  out: NameMap = {}
  for tower, flax_tower in (("netcnnaud", "aud"), ("netcnnlip", "lip")):
    for k, i in enumerate(S_CONV_INDICES):
      out.update(convert_lib.map_conv(f"{tower}.{i}", (f"{flax_tower}_conv_{k}",)))
      out.update(convert_lib.map_batchnorm(f"{tower}.{i + 1}", (f"{flax_tower}_bn_{k}",)))
  for tower, flax_tower in (("netfcaud", "aud"), ("netfclip", "lip")):
    out.update(convert_lib.map_linear(f"{tower}.0", (f"{flax_tower}_fc1",)))
    out.update(convert_lib.map_batchnorm(f"{tower}.1", (f"{flax_tower}_fc_bn",)))
    out.update(convert_lib.map_linear(f"{tower}.3", (f"{flax_tower}_fc2",)))
  return out


def syncnet_color_map() -> NameMap:
  """Complete torch key -> flax target map for Wav2Lip `SyncNet_color` -> `SyncNetColor`."""
  return {**wav2lip_convert.blocks_map("face_encoder", "face_encoder", syncnet_lib.FACE_ENCODER),
          **wav2lip_convert.blocks_map("audio_encoder", "audio_encoder", syncnet_lib.AUDIO_ENCODER)}


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
  return convert_lib.convert(convert_lib.strip_prefix(state_dict, "module."), syncnet_s_map(),
                             syncnet_s_variables_shape(), source=source)


def convert_syncnet_color(state_dict: Mapping[str, np.ndarray], *,
                          source: str = "state dict") -> dict[str, Any]:
  """SyncNet_color state dict or flattened Wav2Lip checkpoint -> `SyncNetColor` variables."""
  return convert_lib.convert(wav2lip_convert.model_state_dict(state_dict), syncnet_color_map(),
                             syncnet_color_variables_shape(), source=source)


def load_syncnet_s(path: str | os.PathLike[str]) -> dict[str, Any]:
  """Reads `syncnet_v2.model` (no torch) into `SyncNetS` variables."""
  return convert_syncnet_s(torch_reader.load_torch_file(path), source=os.fspath(path))


def load_syncnet_color(path: str | os.PathLike[str]) -> dict[str, Any]:
  """Reads Wav2Lip's `lipsync_expert.pth` (no torch) into `SyncNetColor` variables."""
  return convert_syncnet_color(torch_reader.load_torch_file(path), source=os.fspath(path))
