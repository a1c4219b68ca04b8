"""Key layout of the LPIPS v0.1 linear layers shipped in the `lpips` wheel.

`lpips/weights/v0.1/{alex,vgg}.pth` hold `lin{l}.model.1.weight` of shape (1, C_l, 1, 1), index
1 because each layer is Sequential(Dropout, Conv2d 1x1 without bias). The released weights were
clamped non-negative in training; a negative weight means a wrong file.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from third_party import convert

NUM_LAYERS = 5  # Both alex and vgg tap five layers.


def linear_name_map(num_layers: int = NUM_LAYERS) -> convert.NameMap:
  """Name map of the linear layers onto flax params lin0..lin{L-1} (1x1 conv kernels)."""
  return {f"lin{l}.model.1.weight": ("params", (f"lin{l}", "kernel"), convert.conv_kernel)
          for l in range(num_layers)}


def check_non_negative(state_dict: Mapping[str, np.ndarray], source: str) -> None:
  """Raises ConversionError naming every key with a negative weight."""
  negative = [k for k, v in state_dict.items() if np.any(np.asarray(v) < 0)]
  if negative:
    raise convert.ConversionError(f"{source}: negative LPIPS linear weights in {negative}; the "
                                  "released v0.1 weights are non-negative (wrong file?)")
