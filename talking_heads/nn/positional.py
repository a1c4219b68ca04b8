"""Fixed sinusoidal positional encodings for token sequences and flattened feature maps.

Dimensions: N positions, D encoding width, h, w grid size.

  sinusoidal_1d  the Transformer's encoding (Vaswani et al. 2017; DreamTalk's
                 `PositionalEncoding`): PE[n, 2i] = sin(n / 10000^(2i / D)),
                 PE[n, 2i + 1] = cos(n / 10000^(2i / D)); an odd D drops the last cosine.
  sinusoidal_2d  half the width for the row, half for the column: [sinusoidal_1d(row, D/2),
                 sinusoidal_1d(col, D/2)] per grid cell, cells in row-major order (the order
                 `x.reshape(B, h * w, C)` gives a [B, h, w, C] map).
Timestep embeddings (cos first) are `nn.unet.timestep_embedding`.
"""

from __future__ import annotations

import math

import numpy as np

BASE = 10000.0


def sinusoidal_1d(length: int, dim: int, base: float = BASE) -> np.ndarray:
  """[N, D] float32 encoding of positions 0 .. N - 1 (module docstring)."""
  if length < 1 or dim < 1:
    raise ValueError(f"sinusoidal_1d: length and dim must be >= 1, got {length} and {dim}")
  position = np.arange(length, dtype=np.float64)[:, None]
  inv = np.exp(-math.log(base) * np.arange(0, dim, 2, dtype=np.float64) / dim)   # [ceil(D/2)]
  pe = np.zeros((length, dim))
  pe[:, 0::2] = np.sin(position * inv)
  pe[:, 1::2] = np.cos(position * inv)[:, :dim // 2]
  return pe.astype(np.float32)


def sinusoidal_2d(height: int, width: int, dim: int, base: float = BASE) -> np.ndarray:
  """[h w, D] float32 encoding of a row-major grid: rows in the first D/2 channels, columns in
  the last D/2 (D must be even)."""
  if dim % 2:
    raise ValueError(f"sinusoidal_2d: dim must be even (half rows, half columns), got {dim}")
  rows = np.repeat(sinusoidal_1d(height, dim // 2, base), width, axis=0)      # [h w, D/2]
  cols = np.tile(sinusoidal_1d(width, dim // 2, base), (height, 1))           # [h w, D/2]
  return np.concatenate([rows, cols], axis=1)
