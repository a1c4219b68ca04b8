"""Wav2Lip checkpoints (`wav2lip.pth`, `wav2lip_gan.pth`, `visual_quality_disc.pth`) -> Flax.

Wav2Lip saves `{"state_dict": model.state_dict(), "optimizer": ..., "global_step": ...,
"global_epoch": ...}`, with a 'module.' prefix on every key when trained under DataParallel.
Its blocks are `Conv2d`/`Conv2dTranspose` (`conv_block.0` conv, `conv_block.1` BatchNorm) and
`nonorm_Conv2d` (`conv_block.0` conv); the Flax blocks in `talking_heads.models.conv_blocks`
name those layers `conv` and `bn`, and lists of blocks are named `<attr>_<i>[_<j>]` after the
torch `ModuleList`/`Sequential` indices, so the maps below are built from the layer tables.
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

NameMap = convert_lib.NameMap


def conv_block_map(torch_prefix: str, flax_name: str) -> NameMap:
  """Wav2Lip `Conv2d` (conv + BatchNorm) -> `conv_blocks.ConvBlock`."""
  return {**convert_lib.map_conv(f"{torch_prefix}.conv_block.0", (flax_name, "conv")),
          **convert_lib.map_batchnorm(f"{torch_prefix}.conv_block.1", (flax_name, "bn"))}


def conv_transpose_block_map(torch_prefix: str, flax_name: str) -> NameMap:
  """Wav2Lip `Conv2dTranspose` (transposed conv + BatchNorm) -> `conv_blocks.ConvTransposeBlock`."""
  return {**convert_lib.map_conv_transpose(f"{torch_prefix}.conv_block.0", (flax_name, "conv")),
          **convert_lib.map_batchnorm(f"{torch_prefix}.conv_block.1", (flax_name, "bn"))}


def plain_conv_block_map(torch_prefix: str, flax_name: str) -> NameMap:
  """Wav2Lip `nonorm_Conv2d` (conv only) -> `conv_blocks.PlainConvBlock`."""
  return convert_lib.map_conv(f"{torch_prefix}.conv_block.0", (flax_name, "conv"))


def blocks_map(torch_prefix: str, flax_prefix: str,
               specs: Sequence[ConvSpec | ConvTransposeSpec]) -> NameMap:
  """Entries for one table of blocks: torch `<prefix>.<i>` -> flax `<prefix>_<i>`."""
  out: NameMap = {}
  for i, spec in enumerate(specs):
    block = conv_transpose_block_map if isinstance(spec, ConvTransposeSpec) else conv_block_map
    out.update(block(f"{torch_prefix}.{i}", f"{flax_prefix}_{i}"))
  return out


def generator_map() -> NameMap:
  """Complete torch key -> flax target map for `Wav2Lip` -> `Wav2LipGenerator`."""
  out: NameMap = {}
  for i, specs in enumerate(wav2lip_lib.FACE_ENCODER_BLOCKS):
    out.update(blocks_map(f"face_encoder_blocks.{i}", f"face_encoder_blocks_{i}", specs))
  out.update(blocks_map("audio_encoder", "audio_encoder", wav2lip_lib.AUDIO_ENCODER))
  for i, specs in enumerate(wav2lip_lib.FACE_DECODER_BLOCKS):
    out.update(blocks_map(f"face_decoder_blocks.{i}", f"face_decoder_blocks_{i}", specs))
  out.update(conv_block_map("output_block.0", "output_block_0"))
  out.update(convert_lib.map_conv("output_block.1", ("output_block_1",)))
  return out


def discriminator_map() -> NameMap:
  """Complete torch key -> flax target map for `Wav2Lip_disc_qual` -> `Wav2LipDiscriminator`."""
  out: NameMap = {}
  for i, block in enumerate(wav2lip_lib.DISC_BLOCKS):
    for j in range(len(block)):
      out.update(plain_conv_block_map(f"face_encoder_blocks.{i}.{j}",
                                      f"face_encoder_blocks_{i}_{j}"))
  out.update(convert_lib.map_conv("binary_pred.0", ("binary_pred",)))
  return out


def model_state_dict(flat: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """A Wav2Lip training checkpoint (flattened) -> the model's state dict.

  Keeps the 'state_dict.' subtree when there is one (dropping optimizer state), else takes the
  dict as a bare state dict; then strips DataParallel's 'module.' prefix.
  """
  if any(k.startswith("state_dict.") for k in flat):
    flat = convert_lib.subtree(flat, "state_dict.")
  return convert_lib.strip_prefix(flat, "module.")


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
  return convert_lib.convert(model_state_dict(state_dict), generator_map(),
                             generator_variables_shape(), source=source)


def convert_discriminator(state_dict: Mapping[str, np.ndarray], *,
                          source: str = "state dict") -> dict[str, Any]:
  """Discriminator state dict (or flattened training checkpoint) -> {'params'}."""
  return convert_lib.convert(model_state_dict(state_dict), discriminator_map(),
                             discriminator_variables_shape(), source=source)


def load_generator(path: str | os.PathLike[str]) -> dict[str, Any]:
  """Reads `wav2lip.pth` / `wav2lip_gan.pth` (no torch) into `Wav2LipGenerator` variables."""
  return convert_generator(torch_reader.load_torch_file(path), source=os.fspath(path))


def load_discriminator(path: str | os.PathLike[str]) -> dict[str, Any]:
  """Reads `visual_quality_disc.pth` (no torch) into `Wav2LipDiscriminator` variables."""
  return convert_discriminator(torch_reader.load_torch_file(path), source=os.fspath(path))
