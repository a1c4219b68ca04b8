"""Key layout of Wav2Lip checkpoints (`wav2lip.pth`, `wav2lip_gan.pth`, `visual_quality_disc.pth`,
`lipsync_expert.pth`).

Wav2Lip saves `{"state_dict": model.state_dict(), "optimizer": ..., "global_step": ...,
"global_epoch": ...}`, with a 'module.' prefix on every key when trained under DataParallel.
Its blocks are `Conv2d`/`Conv2dTranspose` (`conv_block.0` conv, `conv_block.1` BatchNorm) and
`nonorm_Conv2d` (`conv_block.0` conv); the flax blocks name those layers `conv` and `bn`, and
lists of blocks are named `<attr>_<i>[_<j>]` after the torch `ModuleList`/`Sequential` indices.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from third_party import convert


def conv_block_map(torch_prefix: str, flax_name: str) -> convert.NameMap:
  """Wav2Lip `Conv2d` (conv + BatchNorm) -> a flax block with `conv` and `bn`."""
  return {**convert.map_conv(f"{torch_prefix}.conv_block.0", (flax_name, "conv")),
          **convert.map_batchnorm(f"{torch_prefix}.conv_block.1", (flax_name, "bn"))}


def conv_transpose_block_map(torch_prefix: str, flax_name: str) -> convert.NameMap:
  """Wav2Lip `Conv2dTranspose` (transposed conv + BatchNorm) -> a flax block with `conv`, `bn`."""
  return {**convert.map_conv_transpose(f"{torch_prefix}.conv_block.0", (flax_name, "conv")),
          **convert.map_batchnorm(f"{torch_prefix}.conv_block.1", (flax_name, "bn"))}


def plain_conv_block_map(torch_prefix: str, flax_name: str) -> convert.NameMap:
  """Wav2Lip `nonorm_Conv2d` (conv only) -> a flax block with `conv`."""
  return convert.map_conv(f"{torch_prefix}.conv_block.0", (flax_name, "conv"))


def blocks_map(torch_prefix: str, flax_prefix: str,
               transposed: Sequence[bool]) -> convert.NameMap:
  """Entries for one list of blocks: torch `<prefix>.<i>` -> flax `<prefix>_<i>`.

  Args:
    transposed: per block, whether it is a `Conv2dTranspose` (else a `Conv2d`).
  """
  out: convert.NameMap = {}
  for i, is_transposed in enumerate(transposed):
    block = conv_transpose_block_map if is_transposed else conv_block_map
    out.update(block(f"{torch_prefix}.{i}", f"{flax_prefix}_{i}"))
  return out


def model_state_dict(flat: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """A Wav2Lip training checkpoint (flattened) -> the model's state dict.

  Keeps the 'state_dict.' subtree when there is one (dropping optimizer state), else takes the
  dict as a bare state dict; then strips DataParallel's 'module.' prefix.
  """
  if any(k.startswith("state_dict.") for k in flat):
    flat = convert.subtree(flat, "state_dict.")
  return convert.strip_prefix(flat, "module.")
