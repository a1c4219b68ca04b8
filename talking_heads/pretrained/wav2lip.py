"""Wav2Lip checkpoints (`wav2lip.pth`, `wav2lip_gan.pth`, `visual_quality_disc.pth`) ->
`talking_heads.models.wav2lip` variables.

The block-level key layout and the training-checkpoint unwrapping are `third_party.wav2lip_keys`;
the maps below walk our layer tables (`FACE_ENCODER_BLOCKS`, ...), whose order and nesting follow
the torch `ModuleList`/`Sequential` indices.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from talking_heads.models import wav2lip as wav2lip_lib
from talking_heads.models.conv_blocks import ConvSpec
from talking_heads.models.conv_blocks import ConvTransposeSpec
from third_party import convert as convert_lib
from third_party import torch_reader
from third_party import wav2lip_keys

NameMap = convert_lib.NameMap


def blocks_map(torch_prefix: str, flax_prefix: str,
               specs: Sequence[ConvSpec | ConvTransposeSpec]) -> NameMap:
  """Entries for one table of blocks: torch `<prefix>.<i>` -> flax `<prefix>_<i>`."""
  return wav2lip_keys.blocks_map(torch_prefix, flax_prefix,
                                 [isinstance(s, ConvTransposeSpec) for s in specs])


def generator_map() -> NameMap:
  """Complete torch key -> flax target map for `Wav2Lip` -> `Wav2LipGenerator`."""
  out: NameMap = {}
  for i, specs in enumerate(wav2lip_lib.FACE_ENCODER_BLOCKS):
    out.update(blocks_map(f"face_encoder_blocks.{i}", f"face_encoder_blocks_{i}", specs))
  out.update(blocks_map("audio_encoder", "audio_encoder", wav2lip_lib.AUDIO_ENCODER))
  for i, specs in enumerate(wav2lip_lib.FACE_DECODER_BLOCKS):
    out.update(blocks_map(f"face_decoder_blocks.{i}", f"face_decoder_blocks_{i}", specs))
  out.update(wav2lip_keys.conv_block_map("output_block.0", "output_block_0"))
  out.update(convert_lib.map_conv("output_block.1", ("output_block_1",)))
  return out


def discriminator_map() -> NameMap:
  """Complete torch key -> flax target map for `Wav2Lip_disc_qual` -> `Wav2LipDiscriminator`."""
  out: NameMap = {}
  for i, block in enumerate(wav2lip_lib.DISC_BLOCKS):
    for j in range(len(block)):
      out.update(wav2lip_keys.plain_conv_block_map(f"face_encoder_blocks.{i}.{j}",
                                                   f"face_encoder_blocks_{i}_{j}"))
  out.update(convert_lib.map_conv("binary_pred.0", ("binary_pred",)))
  return out


def generator_variables_shape() -> Any:
  """Abstract variables of `Wav2LipGenerator` (no computation)."""
  model = wav2lip_lib.Wav2LipGenerator()
  mels = jnp.zeros((1, wav2lip_lib.MEL_BINS, wav2lip_lib.MEL_STEP, 1))
  faces = jnp.zeros((1, wav2lip_lib.FACE_SIZE, wav2lip_lib.FACE_SIZE, 6))
  return jax.eval_shape(
      lambda: model.init(jax.random.key(0), mels, faces, use_running_average=True))


def discriminator_variables_shape() -> Any:
  """Abstract variables of `Wav2LipDiscriminator` (no computation)."""
  model = wav2lip_lib.Wav2LipDiscriminator()
  faces = jnp.zeros((1, wav2lip_lib.FACE_SIZE, wav2lip_lib.FACE_SIZE, 3))
  return jax.eval_shape(lambda: model.init(jax.random.key(0), faces))


def convert_generator(state_dict: Mapping[str, np.ndarray], *,
                      source: str = "state dict") -> dict[str, Any]:
  """Generator state dict (or flattened training checkpoint) -> {'params', 'batch_stats'}."""
  return convert_lib.convert(wav2lip_keys.model_state_dict(state_dict), generator_map(),
                             generator_variables_shape(), source=source)


def convert_discriminator(state_dict: Mapping[str, np.ndarray], *,
                          source: str = "state dict") -> dict[str, Any]:
  """Discriminator state dict (or flattened training checkpoint) -> {'params'}."""
  return convert_lib.convert(wav2lip_keys.model_state_dict(state_dict), discriminator_map(),
                             discriminator_variables_shape(), source=source)


def load_generator(path: str | os.PathLike[str]) -> dict[str, Any]:
  """Reads `wav2lip.pth` / `wav2lip_gan.pth` (no torch) into `Wav2LipGenerator` variables."""
  return convert_generator(torch_reader.load_torch_file(path), source=os.fspath(path))


def load_discriminator(path: str | os.PathLike[str]) -> dict[str, Any]:
  """Reads `visual_quality_disc.pth` (no torch) into `Wav2LipDiscriminator` variables."""
  return convert_discriminator(torch_reader.load_torch_file(path), source=os.fspath(path))
